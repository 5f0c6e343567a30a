"""``streamproc worker`` as a process, serving real compressed artifacts from a model directory."""

from __future__ import annotations

import collections
import re
import shutil
import threading
import time
from pathlib import Path

import orjson
import pytest

from streamproc.model.runtime import load_classifier
from streamproc.model.versions import publish_artifact
from tests.helpers import (
    WorkerProcess,
    collect,
    collect_ids,
    make_settings,
    produce_payloads,
    text_events,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SUBJECTS = ["the film", "this phone", "our hotel", "the service", "that book", "the update"]
VERDICTS = [
    "is wonderful",
    "was a waste of money",
    "made my day",
    "is broken again",
    "exceeded every expectation",
    "left me disappointed",
    "works fine",
]


def corpus(n: int) -> list[str]:
    return [f"{SUBJECTS[i % 6]} {VERDICTS[(i // 6) % 7]} #{i % 13}" for i in range(n)]


def test_5000_events_with_the_real_model_match_offline_predictions(
    kafka_bootstrap: str, unique: str, tmp_path: Path, model_artifacts: dict[str, Path]
) -> None:
    model_dir = tmp_path / "models"
    publish_artifact(model_artifacts["sentiment-v1"], model_dir)
    settings = make_settings(kafka_bootstrap, unique, model_dir=model_dir, model_threads=1)
    texts = corpus(5000)
    events = text_events(5000, texts=texts)
    worker = WorkerProcess(settings, name="real", log_dir=tmp_path, real_model=True)
    try:
        produce_payloads(settings, events)
        records = collect_ids(settings, {f"e-{i}" for i in range(5000)}, unique=unique)
    finally:
        worker.stop()
    outputs = [orjson.loads(r.value) for r in records]
    ids = collections.Counter(o["id"] for o in outputs)
    assert set(ids) == {f"e-{i}" for i in range(5000)}, worker.log_tail()
    assert set(ids.values()) == {1}, "no duplicates without faults"

    offline = load_classifier(model_artifacts["sentiment-v1"]).predict_batch(texts)
    by_id = {o["id"]: o for o in outputs}
    disagree = sum(by_id[f"e-{i}"]["label"] != offline[i].label for i in range(5000))
    batch_sizes = collections.Counter(o["batch_size"] for o in outputs)
    print(
        f"\nreal model: {disagree}/5000 labels differ from one offline predict_batch "
        f"(batch sizes seen: {dict(sorted(batch_sizes.items())[:12])} …)"
    )
    assert disagree / 5000 < 0.005
    assert all(o["model_version"] == "sentiment-v1" for o in outputs)


def test_hot_reload_mid_stream_switches_versions_without_losing_events(
    kafka_bootstrap: str, unique: str, tmp_path: Path, model_artifacts: dict[str, Path]
) -> None:
    model_dir = tmp_path / "models"
    publish_artifact(model_artifacts["sentiment-v1"], model_dir)
    settings = make_settings(
        kafka_bootstrap, unique, model_dir=model_dir, model_poll_interval_s=0.5, model_threads=1
    )
    events = text_events(3000, texts=corpus(3000))
    worker = WorkerProcess(settings, name="reload", log_dir=tmp_path, real_model=True)
    try:

        def feed() -> None:
            for start in range(0, 3000, 100):
                produce_payloads(settings, events[start : start + 100])
                time.sleep(0.25)

        feeder = threading.Thread(target=feed)
        feeder.start()
        assert (
            len(collect(settings, settings.output_topic, 200, unique=unique, timeout_s=120)) >= 200
        )
        # A tampered artifact (weights changed after the digest was taken) is refused, and the
        # old model keeps serving.
        broken = model_dir / "sentiment-v3"
        shutil.copytree(model_artifacts["sentiment-v2"], broken)
        manifest = broken / "manifest.json"
        manifest.write_text(manifest.read_text().replace("sentiment-v2", "sentiment-v3"))
        weights = broken / "weights.safetensors"
        data = bytearray(weights.read_bytes())
        data[-16:] = bytes(16)
        weights.write_bytes(bytes(data))
        (model_dir / "CURRENT").write_text("sentiment-v3\n")
        time.sleep(1.5)
        publish_artifact(model_artifacts["sentiment-v2"], model_dir)  # a good new version
        feeder.join()
        records = collect_ids(settings, {f"e-{i}" for i in range(3000)}, unique=unique)
    finally:
        worker.stop()
    outputs = [orjson.loads(r.value) for r in records]
    assert {o["id"] for o in outputs} == {f"e-{i}" for i in range(3000)}, worker.log_tail()
    versions = collections.Counter(o["model_version"] for o in outputs)
    assert set(versions) == {"sentiment-v1", "sentiment-v2"}, versions
    log = worker.log_path.read_text()
    assert "refused new model artifact" in log
    # By default each version runs in its own model process; the one swapped out was stopped.
    children = dict(re.findall(r"model (\S+) serves from child process (\d+)", log))
    assert set(children) == {"sentiment-v1", "sentiment-v2"}, log[-3000:]
    for pid in children.values():
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(int(pid)), f"{pid} still runs"
    # Per partition, once v2 appears v1 never comes back (the switch happens between batches).
    by_partition: dict[int, list[str]] = collections.defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        by_partition[record.partition].append(orjson.loads(record.value)["model_version"])
    for seq in by_partition.values():
        if "sentiment-v2" in seq:
            first_v2 = seq.index("sentiment-v2")
            assert "sentiment-v1" not in seq[first_v2:]


def _state(pid: int) -> str:
    """A process's state letter from /proc (``Z``: exited, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
