"""Load generation, result collection and CPU accounting for ``streamproc bench``.

Why threads in the bench process and not ``produce_events``: the benchmark needs a generator that
keeps a rate *and* can inject a 10,000-event burst mid-run while its sent counter is read live (to
draw lag over time), and a consumer that timestamps each prediction the moment it is received.
Both sit in the bench process, apart from the worker process they measure.

Latency is reported two ways: ``received`` = the bench consumer's receive time minus the event's
send stamp ``ts`` (the honest end-to-end number: it includes publishing the prediction and the
output topic's hop) and ``worker`` = the prediction's own ``latency_ms`` (``predicted_at - ts``).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError

from streamproc.errors import BrokerError
from streamproc.kafka import make_ready_producer
from streamproc.tools.bench.results import BusyProcess, CpuUsage

__all__ = [
    "CpuSample",
    "LoadGenerator",
    "Outcome",
    "ResultCollector",
    "busy_processes",
    "child_pids",
    "cpu_sample",
    "cpu_usage",
    "process_cpu_s",
    "sched_s",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int | None, *, tree: bool = False) -> float | None:
    """User + system CPU seconds of a process (all its threads), from ``/proc/<pid>/stat``;
    ``tree``: plus its live descendants' (a worker's model process)."""
    if pid is None:
        return None
    try:
        raw = open(f"/proc/{pid}/stat", "rb").read()  # noqa: SIM115 - one read, closed by GC
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()  # after "(comm)": comm may contain spaces
    own = (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime
    if not tree:
        return own
    return own + sum(process_cpu_s(child, tree=True) or 0.0 for child in child_pids(pid))


def sched_s(pid: int | None, *, tree: bool = False) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of a process's threads, from
    ``/proc/<pid>/task/*/schedstat``; ``tree``: plus its live descendants'. The wait is what CPU
    sharing costs a process: on 2 cores the worker, its model process, the broker and the load
    generator take turns."""
    if pid is None:
        return None
    run = wait = 0.0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        with (
            contextlib.suppress(OSError, ValueError),
            open(f"/proc/{pid}/task/{task}/schedstat") as fh,
        ):
            fields = fh.read().split()
            run += int(fields[0]) / 1e9
            wait += int(fields[1]) / 1e9
    if tree:
        for child in child_pids(pid):
            below = sched_s(child, tree=True)
            if below is not None:
                run, wait = run + below[0], wait + below[1]
    return run, wait


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (``/proc/<pid>/task/<tid>/children``; none if unreadable)."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as fh:
                children += [int(child) for child in fh.read().split()]
    return children


def _machine_busy_s() -> float:
    """Non-idle CPU seconds of the whole machine since boot (all cores), from ``/proc/stat``."""
    with open("/proc/stat", "rb") as fh:
        parts = fh.readline().split()[1:]
    values = [int(v) for v in parts[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / _CLK_TCK


@dataclass(frozen=True, slots=True)
class CpuSample:
    wall: float
    worker: float | None
    broker: float | None
    bench: float
    machine: float
    # (on-CPU s, waiting-for-a-CPU s): the worker's own process, its children (the model
    # process), the broker
    worker_sched: tuple[float, float] | None = None
    model_sched: tuple[float, float] | None = None
    broker_sched: tuple[float, float] | None = None
    model_cpu: float | None = None  # CPU seconds of the worker's children (its model process)


def cpu_sample(worker_pid: int | None, broker_pid: int | None) -> CpuSample:
    children = child_pids(worker_pid) if worker_pid is not None else []
    model: tuple[float, float] | None = None
    model_cpu: float | None = None
    for child in children:
        below = sched_s(child, tree=True)
        if below is not None:
            model = below if model is None else (model[0] + below[0], model[1] + below[1])
        cpu = process_cpu_s(child, tree=True)
        if cpu is not None:
            model_cpu = (model_cpu or 0.0) + cpu
    return CpuSample(
        time.monotonic(),
        process_cpu_s(worker_pid, tree=True),
        process_cpu_s(broker_pid),
        process_cpu_s(os.getpid()) or 0.0,
        _machine_busy_s(),
        worker_sched=sched_s(worker_pid),
        model_sched=model,
        broker_sched=sched_s(broker_pid),
        model_cpu=model_cpu,
    )


def _wait_per_run(
    start: tuple[float, float] | None, end: tuple[float, float] | None
) -> float | None:
    """Seconds a process waited for a CPU per second it ran, over a window."""
    if start is None or end is None or end[0] - start[0] <= 0:
        return None
    return round((end[1] - start[1]) / (end[0] - start[0]), 3)


def cpu_usage(start: CpuSample, end: CpuSample) -> CpuUsage:
    """Cores used by each party over the window (CPU seconds / wall seconds), plus the rest."""
    wall = max(1e-9, end.wall - start.wall)

    def cores(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round((b - a) / wall, 3)

    worker = cores(start.worker, end.worker)
    model_cpu = (
        None
        if start.model_cpu is None or end.model_cpu is None
        else end.model_cpu - start.model_cpu
    )
    broker = cores(start.broker, end.broker)
    bench = cores(start.bench, end.bench)
    machine = cores(start.machine, end.machine)
    known = sum(x for x in (worker, broker, bench) if x is not None)
    return CpuUsage(
        worker_cores=worker,
        broker_cores=broker,
        bench_cores=bench,
        machine_cores=machine,
        # Everything else on the machine (a training job, other engineers): contention.
        other_cores=None if machine is None else round(max(0.0, machine - known), 3),
        # Run-queue waits (schedstat): s waiting for a CPU per s on one, per process
        worker_wait_per_run=_wait_per_run(start.worker_sched, end.worker_sched),
        model_process_wait_per_run=_wait_per_run(start.model_sched, end.model_sched),
        broker_wait_per_run=_wait_per_run(start.broker_sched, end.broker_sched),
        model_process_cpu_s=None if model_cpu is None else round(model_cpu, 3),
    )


def busy_processes(window_s: float = 1.0, min_cores: float = 0.2) -> list[BusyProcess]:
    """Processes using at least ``min_cores`` over a short window: who else is on the CPU."""

    def snapshot() -> dict[int, float]:
        out = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                cpu = process_cpu_s(int(entry))
                if cpu is not None:
                    out[int(entry)] = cpu
        return out

    before = snapshot()
    time.sleep(window_s)
    after = snapshot()
    busy = []
    for pid, cpu in after.items():
        used = (cpu - before.get(pid, cpu)) / window_s
        if used >= min_cores:
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()  # noqa: SIM115
            except OSError:
                cmd = "?"
            busy.append(BusyProcess(pid=pid, cores=round(used, 2), cmd=cmd.strip()[:160]))
    return sorted(busy, key=lambda p: -p.cores)


@dataclass(slots=True)
class Outcome:
    """One delivered prediction, as the bench consumer saw it."""

    received_ms: float
    ts_ms: float
    worker_latency_ms: float | None
    batch_size: int


class ResultCollector(threading.Thread):
    """Consumes a topic from the beginning; keeps the first outcome per event id."""

    def __init__(self, conf: Mapping[str, Any], topic: str, group_id: str) -> None:
        super().__init__(name=f"bench-collect-{topic}", daemon=True)
        self.conf = dict(conf)
        self.topic = topic
        self.group_id = group_id
        self.outcomes: dict[str, Outcome] = {}
        self.duplicates = 0
        self.errors: list[str] = []
        self.assigned = threading.Event()
        self._halt = threading.Event()

    def count(self, prefix: str) -> int:
        return sum(1 for key in list(self.outcomes) if key.startswith(prefix))

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def run(self) -> None:
        consumer = Consumer(
            {
                **dict(self.conf),
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 50,  # an idle fetch returns this often; data returns at once
            }
        )
        consumer.subscribe([self.topic], on_assign=lambda c, parts: self.assigned.set())
        try:
            while not self._halt.is_set():
                # poll() returns as soon as one message is there; consume(n, timeout) would wait
                # for n messages or the whole timeout, adding up to that timeout to the latency.
                first = consumer.poll(0.05)
                if first is None:
                    continue
                now_ms = time.time() * 1000.0  # receive time: stamped once per fetched batch
                messages = [first, *consumer.consume(num_messages=5000, timeout=0)]
                for msg in messages:
                    error = msg.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            self.errors.append(str(error))
                        continue
                    self._record(msg.value(), now_ms)
        finally:
            consumer.close()

    def _record(self, value: bytes | None, now_ms: float) -> None:
        try:
            doc = orjson.loads(value or b"")
            event_id = str(doc["id"])
            ts = float(doc["ts"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.errors.append(f"unreadable record: {value[:80]!r}" if value else "empty record")
            return
        if event_id in self.outcomes:
            self.duplicates += 1
            return
        latency = doc.get("latency_ms")
        self.outcomes[event_id] = Outcome(
            now_ms,
            ts,
            float(latency) if latency is not None else None,
            int(doc.get("batch_size") or 0),
        )


class LoadGenerator(threading.Thread):
    """Sends ``s-<i>`` events at ``rate``/s until stopped, plus an optional burst of ``b-<j>``.

    The schedule is absolute (event i is due at ``start + i/rate``): a late wake-up sends every
    event that fell due, so the offered rate holds even when sleeps overshoot. Each event's ``ts``
    is stamped right before it is handed to librdkafka.
    """

    def __init__(
        self,
        conf: Mapping[str, Any],
        topic: str,
        texts: Sequence[str],
        *,
        rate: float,
        max_duration_s: float,
        burst: int = 0,
        burst_at_s: float = 0.0,
    ) -> None:
        super().__init__(name=f"bench-load-{topic}", daemon=True)
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self._producer = make_ready_producer(conf, topic)
        self._topic = topic
        self._texts = itertools.cycle(texts)
        self.rate = rate
        self.max_duration_s = max_duration_s
        self.burst = burst
        self.burst_at_s = burst_at_s
        self.sent = 0  # read live by the bench (ints are swapped atomically under the GIL)
        self.first_send_ms: float | None = None
        self.last_send_ms: float | None = None
        self.burst_sent_ms: tuple[float, float] | None = None  # first, last burst send
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def warm_up(self, count: int) -> None:
        """Send ``w-<i>`` events and wait for the broker: the first sends through a new
        connection pay for its warm-up (and the worker's), which must not be measured."""
        for i in range(count):
            self._send(f"w-{i}", count=False)
        if self._producer.flush(30):
            raise BrokerError("warm-up events were not delivered to the broker within 30 s")

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # surfaced by the bench, never lost in a thread
            self.error = exc

    def _run(self) -> None:
        start = time.perf_counter()
        steady = 0
        burst_done = self.burst == 0
        while not self._halt.is_set():
            elapsed = time.perf_counter() - start
            if elapsed >= self.max_duration_s:
                break
            due = int(elapsed * self.rate) + 1
            while steady < due:
                self._send(f"s-{steady}")
                steady += 1
            if not burst_done and elapsed >= self.burst_at_s:
                first = time.time() * 1000.0
                for j in range(self.burst):
                    self._send(f"b-{j}")
                self.burst_sent_ms = (first, time.time() * 1000.0)
                burst_done = True
            self._producer.poll(0)
            next_due = steady / self.rate
            time.sleep(min(0.005, max(0.0002, next_due - (time.perf_counter() - start))))
        if self._producer.flush(60):
            raise BrokerError("the load generator could not deliver every event within 60 s")

    def _send(self, event_id: str, *, count: bool = True) -> None:
        now_ms = time.time() * 1000.0
        value = orjson.dumps({"id": event_id, "text": next(self._texts), "ts": now_ms})
        while True:
            try:
                self._producer.produce(self._topic, key=event_id.encode(), value=value)
                break
            except BufferError:  # librdkafka's queue is full: let it deliver
                self._producer.poll(0.01)
        if not count:
            return
        if self.first_send_ms is None:
            self.first_send_ms = now_ms
        self.last_send_ms = now_ms
        self.sent += 1
