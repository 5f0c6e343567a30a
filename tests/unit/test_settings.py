from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamproc.errors import ConfigError
from streamproc.settings import load_settings


def test_defaults_are_valid() -> None:
    settings = load_settings()
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.web_host == "127.0.0.1"  # loopback unless configured otherwise


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMPROC_LATENCY_TARGET_MS", "25")
    monkeypatch.setenv("STREAMPROC_INPUT_TOPIC", "texts")
    settings = load_settings()
    assert settings.latency_target_ms == 25.0
    assert settings.input_topic == "texts"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STREAMPROC_LATENCY_TARGET_MS", "fast"),
        ("STREAMPROC_LATENCY_TARGET_MS", "-1"),
        ("STREAMPROC_WEB_PORT", "70000"),
        ("STREAMPROC_PROCESSING_GUARANTEE", "maybe_once"),
        ("STREAMPROC_BOOTSTRAP_SERVERS", "no-port-here"),
        ("STREAMPROC_MODEL_THREADS", "-1"),
        ("STREAMPROC_MODEL_RUNTIME", "tensorflow"),
        ("STREAMPROC_INFERENCE_TIMEOUT_S", "0"),
        ("STREAMPROC_READY_STALL_S", "-1"),
        ("STREAMPROC_MAX_BUFFERED_BYTES", "0"),
    ],
)
def test_invalid_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert name in str(info.value)
    assert "\n" not in str(info.value)


def test_reliability_bounds_have_defaults_and_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defaults = load_settings()
    assert defaults.inference_timeout_s == 30.0
    assert defaults.ready_stall_s == 30.0
    assert defaults.max_buffered_bytes == 64 * 1024 * 1024
    monkeypatch.setenv("STREAMPROC_INFERENCE_TIMEOUT_S", "2.5")
    monkeypatch.setenv("STREAMPROC_READY_STALL_S", "10")
    monkeypatch.setenv("STREAMPROC_MAX_BUFFERED_BYTES", "1048576")
    settings = load_settings()
    assert settings.inference_timeout_s == 2.5
    assert settings.ready_stall_s == 10.0
    assert settings.max_buffered_bytes == 1048576
    env = settings.to_env()  # what a worker process is handed
    assert env["STREAMPROC_INFERENCE_TIMEOUT_S"] == "2.5"
    assert env["STREAMPROC_MAX_BUFFERED_BYTES"] == "1048576"


def test_publish_timeout_and_replication_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings()
    assert defaults.publish_timeout_s == 120.0
    assert defaults.replication_factor == -1  # the broker's default.replication.factor
    monkeypatch.setenv("STREAMPROC_PUBLISH_TIMEOUT_S", "15")
    monkeypatch.setenv("STREAMPROC_REPLICATION_FACTOR", "3")
    settings = load_settings()
    assert (settings.publish_timeout_s, settings.replication_factor) == (15.0, 3)
    for bad in ("0", "-2"):
        monkeypatch.setenv("STREAMPROC_REPLICATION_FACTOR", bad)
        with pytest.raises(ConfigError, match="STREAMPROC_REPLICATION_FACTOR"):
            load_settings()


def test_co_partitioning_names_every_short_topic_and_the_counts() -> None:
    from streamproc.kafka import check_co_partitioning

    check_co_partitioning(("in", 4), {"out": 4, "dlq": 6})  # enough: nothing raised
    with pytest.raises(ConfigError) as raised:
        check_co_partitioning(("in", 4), {"out": 2, "dlq": 3})
    message = str(raised.value)
    assert "the input topic in has 4 partitions and out has 2, dlq has 3" in message
    assert "--partitions 4" in message


def test_model_threads_keeps_reading_its_old_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().model_threads == 1
    monkeypatch.setenv("STREAMPROC_TORCH_THREADS", "2")  # its name before ONNX Runtime
    assert load_settings().model_threads == 2
    monkeypatch.setenv("STREAMPROC_MODEL_THREADS", "3")  # the new name wins
    assert load_settings().model_threads == 3
    assert load_settings(model_threads=4).to_env()["STREAMPROC_MODEL_THREADS"] == "4"


def test_batch_bounds_must_be_ordered() -> None:
    with pytest.raises(ConfigError, match="STREAMPROC_MIN_BATCH_SIZE"):
        load_settings(min_batch_size=64, max_batch_size=8)


def test_sasl_needs_credentials_and_never_prints_the_password() -> None:
    with pytest.raises(ConfigError, match="STREAMPROC_SASL_USERNAME"):
        load_settings(security_protocol="SASL_PLAINTEXT")
    settings = load_settings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="alice",
        sasl_password="s3cret-pw",
    )
    assert "s3cret-pw" not in repr(settings)
    assert "s3cret-pw" not in str(settings.model_dump())
    conf = settings.confluent_config()
    assert conf["sasl.password"] == "s3cret-pw"
    assert conf["security.protocol"] == "SASL_PLAINTEXT"


def test_cli_reports_a_bad_setting_in_one_line() -> None:
    env = {"STREAMPROC_LATENCY_TARGET_MS": "soon", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "streamproc", "tail", "--count", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3  # configuration (errors.EXIT_CODES)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: STREAMPROC_LATENCY_TARGET_MS")
    assert "Traceback" not in proc.stderr


def test_local_broker_cluster_ids_never_look_like_options() -> None:
    from streamproc.broker.local import _new_cluster_id

    ids = [_new_cluster_id() for _ in range(2000)]  # ~31 would start with '-' by chance
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)


def test_the_tools_environment_is_read_in_settings_too(tmp_path: Path) -> None:
    from streamproc.settings import tool_environment

    tools = tool_environment(
        {
            "STREAMPROC_CACHE_DIR": str(tmp_path / "cache"),
            "STREAMPROC_BROKER_DIR": str(tmp_path / "broker"),
            "STREAMPROC_KAFKA_VERSION": "3.8.1",
            "KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
            "STREAMPROC_TEST_DOCKER": "0",
        }
    )
    assert tools.cache_dir == tmp_path / "cache"
    assert tools.broker_dir == (tmp_path / "broker").resolve()
    assert (tools.kafka_version, tools.test_bootstrap_servers, tools.test_docker) == (
        "3.8.1",
        "kafka:9092",
        False,
    )
    defaults = tool_environment({})
    assert defaults.cache_dir == Path.home() / ".cache" / "streamproc"
    assert defaults.broker_dir == Path(".streamproc/broker").resolve()
    assert (defaults.kafka_version, defaults.test_bootstrap_servers, defaults.test_docker) == (
        None,
        None,
        True,
    )
