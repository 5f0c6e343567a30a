"""Faults against the real broker: workers killed mid-stream, SIGTERM, output topic unwritable."""

from __future__ import annotations

import collections
import os
import re
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from streamproc.settings import Settings
from tests.helpers import (
    LiveCollector,
    WorkerProcess,
    collect,
    committed_offsets,
    make_settings,
    produce_payloads,
    text_events,
)
from tests.verification import judge, wait_until_committed_to_end

pytestmark = [pytest.mark.kafka, pytest.mark.reliability, pytest.mark.slow]

COST = {"FAKE_COST_S": "0.003", "FAKE_COST_PER_ITEM_S": "0.0002"}


def _feed(settings, events, *, chunk: int, pause_s: float) -> threading.Thread:  # type: ignore[no-untyped-def]
    def run() -> None:
        for start in range(0, len(events), chunk):
            produce_payloads(settings, events[start : start + chunk])
            time.sleep(pause_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_worker_killed_three_times_mid_stream_loses_nothing(
    kafka_bootstrap: str, unique: str, tmp_path: Path, guarantee: str
) -> None:
    n = 20_000
    settings = make_settings(
        kafka_bootstrap, unique, session_timeout_s=6, processing_guarantee=guarantee
    )
    expected = {f"e-{i}" for i in range(n)}
    eos = guarantee == "exactly_once"
    collector = LiveCollector(settings, settings.output_topic, unique=unique, read_committed=eos)
    feeder = _feed(settings, text_events(n), chunk=1000, pause_s=0.4)
    worker = WorkerProcess(settings, name="w0", log_dir=tmp_path, env=COST)
    kills = []
    try:
        for round_, fraction in enumerate((0.2, 0.45, 0.7), start=1):
            reached = collector.wait_for(lambda c, f=fraction: len(set(c.ids())) >= f * n, 180)
            assert reached, worker.log_tail()
            worker.signal(signal.SIGKILL)  # no goodbye: in-flight batches and acks are lost
            worker.wait(30)
            kills.append(len(set(collector.ids())))
            worker = WorkerProcess(settings, name=f"w{round_}", log_dir=tmp_path, env=COST)
        feeder.join()
        assert collector.wait_for_ids(expected, 240), worker.log_tail()
        assert wait_until_committed_to_end(settings, 60), worker.log_tail()
        time.sleep(2)  # late duplicates
    finally:
        worker.stop()
        collector.stop()
    counts = collections.Counter(collector.ids())
    assert not expected - set(counts), "every input id has a prediction"
    duplicates = sum(c - 1 for c in counts.values())
    verdict = judge(settings)
    print(
        f"\n{guarantee}: SIGKILL at {kills} distinct predictions; {n} ids all predicted, "
        f"{duplicates} duplicates ({duplicates / n:.1%}); {verdict.summary()}"
    )
    # Offset by offset (the verifier): nothing lost or left behind, outputs in input order;
    # exactly_once: outputs are exactly the committed input prefix, no transaction left open.
    assert verdict.holds, verdict.violations
    assert verdict.lost == verdict.pending == 0 and verdict.inputs == n
    assert verdict.duplicated == duplicates
    if eos:
        assert duplicates == 0, "exactly_once: read_committed consumers see each id once"


def test_sigterm_finishes_in_flight_batches_commits_and_exits_promptly(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    n = 3000
    # No periodic commit (30 s); a small buffer, so the stop lands with events still unread.
    settings = make_settings(kafka_bootstrap, unique, commit_interval_s=30, max_buffered_events=256)
    collector = LiveCollector(settings, settings.output_topic, unique=unique)
    produce_payloads(settings, text_events(n))
    worker = WorkerProcess(
        settings,
        name="term",
        log_dir=tmp_path,
        env={"FAKE_COST_S": "0.02", "FAKE_COST_PER_ITEM_S": "0.001"},
    )
    try:
        assert collector.wait_for(lambda c: c.count() >= 300, 120), worker.log_tail()
        started = time.monotonic()
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.log_tail()
        took = time.monotonic() - started
        committed = {p: max(0, o) for p, o in committed_offsets(settings).items()}  # -1001: none
        collector.wait_for(lambda c: len(set(c.ids())) >= sum(committed.values()), 15)
        time.sleep(1)  # a prediction the worker published past its commit would show up here
        predicted = set(collector.ids())
        # Per partition, exactly: the offsets predicted before the stop are 0..committed-1. Nothing
        # committed that was not published, nothing published that the stop did not commit (with
        # a 30 s commit period, only the shutdown path can have committed).
        source = {
            orjson.loads(r.value or b"")["id"]: (r.partition, r.offset)
            for r in collect(settings, settings.input_topic, n, unique=unique, timeout_s=60)
        }
        offsets: dict[int, set[int]] = collections.defaultdict(set)
        for event_id in predicted:
            partition, offset = source[event_id]
            offsets[partition].add(offset)
        for partition in range(settings.input_partitions):
            assert offsets[partition] == set(range(committed[partition])), (
                f"partition {partition}: committed {committed[partition]}, predicted "
                f"{len(offsets[partition])} offsets (max {max(offsets[partition], default=None)})"
            )
        assert sum(committed.values()) > 0
        restart = WorkerProcess(settings, name="again", log_dir=tmp_path)
        try:
            assert collector.wait_for_ids({f"e-{i}" for i in range(n)}, 120), restart.log_tail()
            time.sleep(2)
        finally:
            restart.stop()
    finally:
        collector.stop()
    counts = collections.Counter(collector.ids())
    duplicates = sum(c - 1 for c in counts.values())
    print(
        f"\nSIGTERM: exited in {took:.1f}s after {len(predicted)} predictions; committed "
        f"{dict(committed)}; {duplicates} duplicates after restart"
    )
    assert took < 20
    assert duplicates <= 0.01 * n, "a graceful stop commits what it finished"


def test_unwritable_output_topic_commits_nothing_unacknowledged_and_recovers(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, unique, partitions=1)
    admin = AdminClient(settings.confluent_config())

    def set_max_message_bytes(value: str) -> None:
        entry = ConfigEntry("max.message.bytes", value, incremental_operation=AlterConfigOpType.SET)
        resource = ConfigResource("topic", settings.output_topic, incremental_configs=[entry])
        for future in admin.incremental_alter_configs([resource]).values():
            future.result(30)

    collector = LiveCollector(settings, settings.output_topic, unique=unique)
    worker = WorkerProcess(settings, name="unwritable", log_dir=tmp_path)
    try:
        produce_payloads(settings, text_events(200, prefix="before"))
        assert collector.wait_for(lambda c: c.count() >= 200, 120), worker.log_tail()
        time.sleep(2.5)  # let the commit of the first 200 land
        # Every prediction is now "too large": the broker rejects each produce request.
        set_max_message_bytes("64")
        produce_payloads(settings, text_events(300, prefix="during"))
        time.sleep(6)
        during = committed_offsets(settings)[0]
        assert collector.count() == 200, "nothing was written while the topic refused"
        assert during <= 200, f"committed offset {during} passed unacknowledged events"
        set_max_message_bytes("1048588")
        expected = {f"before-{i}" for i in range(200)} | {f"during-{i}" for i in range(300)}
        assert collector.wait_for_ids(expected, 120), worker.log_tail()
        time.sleep(2.5)
        after = committed_offsets(settings)[0]
    finally:
        worker.stop()
        collector.stop()
    log = worker.log_path.read_text()
    assert "retrying" in log, "the worker retried with backoff"
    assert after == 500


def test_a_failed_pipeline_stops_the_worker_with_an_error_instead_of_idling(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    # A bug that kills a pipeline loop must not leave a zombie that keeps its partitions and
    # does nothing: the worker exits non-zero, so the group (or Kubernetes) moves on.
    settings = make_settings(kafka_bootstrap, unique, partitions=1, session_timeout_s=6)
    produce_payloads(settings, text_events(200))
    worker = WorkerProcess(
        settings, name="broken", log_dir=tmp_path, env={"FAKE_LOOP_DIES_AFTER": "1"}
    )
    try:
        code = worker.wait(60)
    except Exception:
        worker.stop()
        raise AssertionError("the worker kept running after its pipeline died") from None
    log = worker.log_path.read_text()
    assert code != 0, log[-2000:]
    assert "injected pipeline bug" in log
    # Nothing past what was settled was committed; a healthy worker then predicts everything.
    assert committed_offsets(settings)[0] < 200
    collector = LiveCollector(settings, settings.output_topic, unique=unique)
    _a_healthy_worker_predicts_all(settings, collector, tmp_path, count=200)


def test_a_killed_model_process_stops_the_worker_and_loses_nothing(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    # The model's child process dies mid-stream (OOM killer, a crash in native code): the worker
    # must not dead-letter what it reads next as "inference errors", nor idle with its
    # partitions. It exits non-zero naming the dead process; a restart predicts everything.
    settings = make_settings(
        kafka_bootstrap, unique, partitions=1, session_timeout_s=6, max_batch_size=10
    )
    produce_payloads(settings, text_events(300))
    collector = LiveCollector(settings, settings.output_topic, unique=unique)
    started_file = tmp_path / "started"
    worker = WorkerProcess(
        settings,
        name="model-killed",
        log_dir=tmp_path,
        env={"FAKE_COST_S": "0.05", "FAKE_STARTED_FILE": str(started_file)},
    )
    try:
        worker.wait_for_file(started_file)
        served = re.search(r"serves from child process (\d+)", worker.log_path.read_text())
        assert served, worker.log_tail()
        os.kill(int(served.group(1)), signal.SIGKILL)
        code = worker.wait(60)
    except Exception:
        worker.stop()
        collector.stop()
        raise
    log = worker.log_path.read_text()
    assert code != 0, log[-3000:]
    assert "exited: killed by SIGKILL" in log, log[-3000:]
    assert "inference_error" not in log, "events were dead-lettered for a dead model"
    assert committed_offsets(settings)[0] < 300
    _a_healthy_worker_predicts_all(settings, collector, tmp_path, count=300)


def test_an_event_the_model_hangs_on_is_dead_lettered_and_the_worker_carries_on(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    # A poison event that makes the model hang used to stop the worker at every restart (the
    # group re-delivered it): its partition never moved again. With the model in its own
    # process, the process is restarted and the event, having hung alone twice, dead-lettered.
    settings = make_settings(
        kafka_bootstrap,
        unique,
        partitions=1,
        max_batch_size=10,
        inference_timeout_s=2,
        model_isolation="process",
    )
    events = text_events(60)
    poison = orjson.loads(events[37][1])["text"]
    produce_payloads(settings, events)
    collector = LiveCollector(settings, settings.output_topic, unique=unique)
    dead = LiveCollector(settings, settings.dead_letter_topic, unique=f"{unique}-dlq")
    worker = WorkerProcess(settings, name="poison", log_dir=tmp_path, env={"FAKE_HANG_ON": poison})
    try:
        wanted = {f"e-{i}" for i in range(60) if i != 37}
        assert collector.wait_for_ids(wanted, 120), worker.log_tail()
        assert dead.wait_for_ids({"e-37"}, 60), worker.log_tail()
        assert worker.proc.poll() is None, worker.log_tail()
    finally:
        worker.stop()
        collector.stop()
        dead.stop()
    log = worker.log_path.read_text()
    assert "restarting the model process" in log
    assert log.count("serves from child process") >= 4, "first + batch + the event alone twice"
    assert committed_offsets(settings)[0] == 60


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_a_hung_model_call_stops_the_worker_and_commits_nothing_past_it(
    kafka_bootstrap: str, unique: str, tmp_path: Path, isolation: str
) -> None:
    # A model call that never returns used to stall the worker forever, partitions held, no
    # error. Now it times out: the worker logs the suspects' offsets and exits non-zero (even
    # though the call still runs, in its thread or its model process), and no commit passes
    # the hung batch. In a model process, the hang comes back after each restart (every call
    # from the third on hangs): the model, not an event, is wedged.
    settings = make_settings(
        kafka_bootstrap,
        unique,
        partitions=1,
        session_timeout_s=6,
        max_batch_size=10,
        inference_timeout_s=3,
        model_isolation=isolation,
    )
    produce_payloads(settings, text_events(200))
    collector = LiveCollector(settings, settings.output_topic, unique=unique)
    env = {"FAKE_HANG_AFTER": "2", "FAKE_CALL_LOG": str(tmp_path / "calls")}
    worker = WorkerProcess(settings, name="hung", log_dir=tmp_path, env=env)
    started = time.monotonic()
    try:
        code = worker.wait(90)
    except Exception:
        worker.stop()
        collector.stop()
        raise AssertionError("the worker kept running with a hung model call") from None
    took = time.monotonic() - started
    log = worker.log_path.read_text()
    assert code != 0, log[-3000:]
    assert "model call 3 hangs" in log, log[-3000:]
    assert "did not return within 3s" in log, log[-3000:]
    if isolation == "thread":  # the call never returned: only the pre-join exit hook let it end
        assert "a timed-out model call is still running: exiting without it" in log, log[-3000:]
    else:  # the model process was stopped with the worker, not waited for
        assert took < 60, log[-3000:]
        assert "restarting the model process" in log, log[-3000:]
        assert "did not stop in" not in log, log[-3000:]
    suspects = re.search(rf"suspects: {re.escape(settings.input_topic)}\[0\] (\d+)\.\.(\d+)", log)
    assert suspects, log[-3000:]
    first, last = int(suspects.group(1)), int(suspects.group(2))
    assert 0 < first <= last < 200
    committed = committed_offsets(settings)[0]
    assert committed <= first, f"committed {committed} passed the hung batch {first}..{last}"
    time.sleep(1)
    published = {int(i.split("-")[1]) for i in collector.ids()}
    assert published and max(published) < first, "nothing of the hung batch was published"
    # The group re-delivers the hung batch: a healthy worker predicts everything.
    _a_healthy_worker_predicts_all(settings, collector, tmp_path, count=200)
    print(
        f"\nhung model call: worker exited {code} after {took:.1f}s; suspects {first}..{last}, "
        f"committed {committed}, {len(published)} predicted before the hang"
    )


def test_a_dead_letter_too_large_to_send_is_truncated_not_retried_forever(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    # A ~1.2 MB input is dead-lettered as `oversized` with its original bytes, which exceed the
    # producer's maximum request size (1 MB): retrying the same bytes can never succeed, and used
    # to stall every later event of the worker forever.
    import orjson

    from streamproc.kafka import make_producer

    settings = make_settings(kafka_bootstrap, unique, partitions=1, max_event_bytes=4096)
    admin = AdminClient(settings.confluent_config())
    entry = ConfigEntry("max.message.bytes", "3000000", incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", settings.input_topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    huge = orjson.dumps({"id": "huge", "text": "x" * 1_200_000})
    producer = make_producer(settings.confluent_config(), **{"message.max.bytes": 3_000_000})
    producer.produce(settings.input_topic, key=b"big", value=huge)
    assert producer.flush(30) == 0
    produce_payloads(settings, text_events(20, prefix="after"))
    predictions = LiveCollector(settings, settings.output_topic, unique=unique)
    dead = LiveCollector(settings, settings.dead_letter_topic, unique=unique)
    worker = WorkerProcess(settings, name="huge", log_dir=tmp_path)
    try:
        assert predictions.wait_for_ids({f"after-{i}" for i in range(20)}, 90), worker.log_tail()
        assert dead.wait_for(lambda c: c.count() >= 1, 30), worker.log_tail()
    finally:
        worker.stop()
        predictions.stop()
        dead.stop()
    record = dead.records[0]
    assert record.headers["streamproc-reason"] == b"oversized"
    assert record.headers["streamproc-truncated-from"] == str(len(huge)).encode()
    assert record.value == huge[:4096]


def _a_healthy_worker_predicts_all(
    settings: Settings, collector: LiveCollector, tmp_path: Path, *, count: int
) -> None:
    """After a failure: a fresh worker resumes from the last commit and every id e-0…e-(count−1)
    is predicted (then the worker and the collector stop)."""
    again = WorkerProcess(settings, name="healthy", log_dir=tmp_path)
    try:
        assert collector.wait_for_ids({f"e-{i}" for i in range(count)}, 120), again.log_tail()
    finally:
        again.stop()
        collector.stop()
