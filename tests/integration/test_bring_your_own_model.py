"""``streamproc worker`` serving a user's own model against a real broker.

1. ``STREAMPROC_MODEL=hf:DIR``: a tiny BERT the test trains and ``save_pretrained``s; the
   worker's predictions equal the adapter's offline ones, and ``/readyz`` says what serves and
   that hot reload is off for a fixed directory.
2. ``streamproc worker --model keyword_model:create`` run from ``docs/examples`` (the README's
   example, verbatim): a factory module in the current directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamproc.broker import free_port
from tests.helpers import WorkerProcess, collect_ids, make_settings, produce_payloads, text_events
from tests.tiny_hf import build_tiny_hf_classifier, corpus

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def _readyz(port: int, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except urllib.error.HTTPError as exc:  # 503 before the partitions are assigned
            body = json.loads(exc.read())
        except OSError:
            body = {}
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz never answered 200 (last {body})")
        time.sleep(0.3)


def test_a_hugging_face_directory_serves_the_same_predictions_as_offline(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    from streamproc.model.huggingface import HuggingFaceClassifier

    model_dir = build_tiny_hf_classifier(tmp_path / "tiny-sentiment-1")
    port = free_port()
    settings = make_settings(
        kafka_bootstrap, unique, model=f"hf:{model_dir}", model_threads=1, web_port=port
    )
    texts = corpus()[0]
    events = text_events(len(texts), texts=texts)
    worker = WorkerProcess(settings, name="hf", log_dir=tmp_path, real_model=True)
    try:
        ready = _readyz(port, timeout_s=90)
        produce_payloads(settings, events)
        expected = {f"e-{i}" for i in range(len(texts))}
        records = collect_ids(settings, expected, unique=unique, timeout_s=90, settle_s=1.0)
    finally:
        worker.stop()
    assert ready["model"] == {
        "version": "tiny-sentiment-1",
        "spec": f"hf:{model_dir}",
        "hot_reload": None,
    }, worker.log_tail()
    outputs = {o["id"]: o for o in (orjson.loads(r.value or b"") for r in records)}
    assert set(outputs) == {f"e-{i}" for i in range(len(texts))}, worker.log_tail()
    offline = HuggingFaceClassifier.from_dir(model_dir, threads=1).predict_batch(texts)
    for i, expected in enumerate(offline):
        out = outputs[f"e-{i}"]
        assert out["label"] == expected.label
        assert out["score"] == pytest.approx(expected.score, abs=1e-4)
        assert out["model_version"] == "tiny-sentiment-1"
        assert "labels" not in out  # a single-label model's output keeps its old shape


def test_the_readme_factory_example_serves_from_its_directory(
    kafka_bootstrap: str, unique: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_bootstrap, unique, web_port=free_port())
    env = {**os.environ, **settings.to_env()}
    env["PYTHONPATH"] = os.pathsep.join(  # streamproc itself; NOT the example's directory
        p for p in [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")] if p
    )
    log = (tmp_path / "worker.log").open("wb")
    # The console script, as a user runs it: its own directory is on sys.path, the cwd is not.
    # The script of *this* interpreter's environment (make's .venv is not on PATH; a `which`
    # could find another environment's, or a pyenv shell shim).
    script = str(Path(sys.executable).parent / "streamproc")
    assert Path(script).is_file(), script
    worker = subprocess.Popen(
        [sys.executable, script, "worker", "--model", "keyword_model:create"],
        cwd=EXAMPLES,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    texts = ["Where is the station?", "The train is late.", "Why?"]
    try:
        produce_payloads(settings, text_events(len(texts), texts=texts))
        records = collect_ids(settings, {"e-0", "e-1", "e-2"}, unique=unique, settle_s=1.0)
    finally:
        worker.terminate()
        worker.wait(60)
        log.close()
    outputs = {o["id"]: o for o in (orjson.loads(r.value or b"") for r in records)}
    assert [outputs[f"e-{i}"]["label"] for i in range(3)] == ["question", "statement", "question"]
    assert {o["model_version"] for o in outputs.values()} == {"keywords-1"}
    assert "STREAMPROC_MODEL=keyword_model:create" in (tmp_path / "worker.log").read_text()
