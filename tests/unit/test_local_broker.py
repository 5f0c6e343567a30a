"""Pure helpers of the local broker: port choice and the error text a failed start shows."""

from __future__ import annotations

from streamproc.broker.local import _tail, free_ports

JAVA_FAILURE = """\
Exception in thread "main" java.lang.IllegalArgumentException: requirement failed: If you have \
two listeners on the same port then one needs to be IPv4 and the other IPv6, port: 55253
\tat scala.Predef$.require(Predef.scala:337)
\tat kafka.server.KafkaConfig.<init>(KafkaConfig.scala:184)
\tat kafka.tools.StorageTool$.$anonfun$execute$1(StorageTool.scala:79)
\tat scala.Option.flatMap(Option.scala:283)
\tat kafka.tools.StorageTool$.execute(StorageTool.scala:79)
\tat kafka.tools.StorageTool.main(StorageTool.scala)
"""


def test_free_ports_are_distinct_every_time() -> None:
    # Ports chosen one at a time collided about once in 100 broker starts; all at once, never.
    for _ in range(200):
        ports = free_ports(3)
        assert len(set(ports)) == 3
        assert all(1024 <= port < 65536 for port in ports)


def test_a_failed_java_tool_reports_its_exception_not_only_the_stack_tail() -> None:
    text = _tail(JAVA_FAILURE)
    assert text.startswith('Exception in thread "main" java.lang.IllegalArgumentException')
    assert "two listeners on the same port" in text
    assert text.endswith("at kafka.tools.StorageTool.main(StorageTool.scala)")


def test_tail_of_plain_text_is_its_last_lines() -> None:
    assert _tail("a\nb\nc\nd\ne", lines=2) == "d | e"
