"""The built-in adapter for a user's own Hugging Face classifier (``STREAMPROC_MODEL=hf:DIR``).

The models are tiny BERTs the tests train and ``save_pretrained`` themselves (tests/tiny_hf.py):
nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from streamproc.errors import ArtifactError
from streamproc.events import decode_event, encode_prediction
from streamproc.model.base import PROBE_TEXTS, check_classifier
from streamproc.model.huggingface import FORWARD_CHUNK, HuggingFaceClassifier
from streamproc.model.loading import ModelContext, load_model, parse_model_spec
from streamproc.settings import load_settings
from streamproc.stream.hot_reload import open_model
from tests.tiny_hf import build_tiny_hf_classifier, corpus, tagged_corpus


@pytest.fixture(scope="module")
def sentiment_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_hf_classifier(tmp_path_factory.mktemp("hf") / "tiny-sentiment-1")


@pytest.fixture(scope="module")
def tagger_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_hf_classifier(tmp_path_factory.mktemp("hf") / "tiny-tags-1", multi_label=True)


def test_labels_window_and_version_come_from_the_directory(sentiment_dir: Path) -> None:
    model = HuggingFaceClassifier.from_dir(sentiment_dir, threads=1)
    assert list(model.labels) == ["pos", "neg", "neu"]  # config.id2label, in id order
    assert model.version == "tiny-sentiment-1"
    assert model.max_tokens == 24  # the tokenizer's model_max_length
    assert model.runtime == "transformers" and not model.multi_label
    check_classifier(model, source="hf")  # incl. a ~1,100-token probe text: truncated, not failed
    texts, labels = corpus()
    predictions = model.predict_batch(texts)
    accuracy = np.mean([p.label == label for p, label in zip(predictions, labels, strict=True)])
    assert accuracy >= 0.95, "the adapter reads the logits in the model's label order"
    for p in predictions:
        assert p.labels is None
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
        assert p.score == p.probabilities[p.label] == max(p.probabilities.values())


def test_big_batches_run_in_chunks_with_the_same_answers(sentiment_dir: Path) -> None:
    model = HuggingFaceClassifier.from_dir(sentiment_dir, threads=1)
    texts = [t + " " + "the film " * (i % 9) for i, t in enumerate(corpus()[0] * 2)]
    assert len(texts) > 2 * FORWARD_CHUNK
    together = model.probabilities(texts)  # (B, L)
    alone = np.concatenate([model.probabilities([t]) for t in texts[:40]])  # (40, L)
    np.testing.assert_allclose(together[:40], alone, atol=1e-5)  # padding is masked out
    # Past the 24-token window a text keeps its head: 22 tokens between [CLS] and [SEP].
    huge, head = model.probabilities(["the film is great " * 2000, "the film is great " * 6])
    np.testing.assert_allclose(huge, head, atol=1e-6)


def test_a_multi_label_model_lists_every_label_over_the_threshold(tagger_dir: Path) -> None:
    model = HuggingFaceClassifier.from_dir(tagger_dir, threads=1)
    assert model.multi_label and list(model.labels) == ["question", "urgent"]
    check_classifier(model, source="hf")  # probabilities need not sum to 1
    texts, tags = tagged_corpus()
    predictions = model.predict_batch(texts)
    exact = np.mean([list(p.labels or ()) == t for p, t in zip(predictions, tags, strict=True)])
    assert exact >= 0.95
    both = model.predict_batch(["why the film is great now"])[0]
    assert both.labels == ("question", "urgent")
    assert sum(both.probabilities.values()) > 1.5  # independent sigmoids
    none = model.predict_batch(["the film is great"])[0]
    assert none.labels == ()
    event = decode_event(b'{"id": "a", "text": "why the film is great now"}', max_bytes=1000)
    value = orjson.loads(encode_prediction(event, both, model_version="v", batch_size=1))
    assert value["labels"] == ["question", "urgent"]


def test_hf_spec_serves_a_fixed_directory_without_reload(sentiment_dir: Path) -> None:
    served = open_model(load_settings(model=f"hf:{sentiment_dir}", model_threads=1))
    assert served.model.version == "tiny-sentiment-1"
    assert served.watcher is None and served.describe()["hot_reload"] is None


def test_hf_versions_under_the_model_dir_hot_reload(sentiment_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    shutil.copytree(sentiment_dir, model_dir / "bert-1")
    (model_dir / "CURRENT").write_text("bert-1\n")
    served = open_model(load_settings(model="hf", model_dir=model_dir, model_threads=1))
    assert served.model.version == "bert-1" and served.watcher is not None
    shutil.copytree(sentiment_dir, model_dir / "bert-2")
    broken = model_dir / "bert-2" / "config.json"
    config = json.loads(broken.read_text())
    broken.write_text(json.dumps({**config, "id2label": {"0": "pos"}}))  # 1 name, 3 outputs
    (model_dir / "CURRENT").write_text("bert-2\n")
    with pytest.raises(ArtifactError, match="bert-2"):
        served.watcher.poll("bert-1")
    broken.write_text(json.dumps(config))  # fixed in place
    reloaded = served.watcher.poll("bert-1")
    assert reloaded is not None and reloaded.version == "bert-2"


def test_what_is_not_a_local_classifier_is_refused_in_one_line(
    sentiment_dir: Path, tmp_path: Path
) -> None:
    def load(spec: str) -> object:
        parsed = parse_model_spec(spec)
        context = ModelContext(parsed.path, version=None, threads=1, settings=load_settings())
        return load_model(parsed, context)

    # A hub id is not fetched: only a local directory with config.json is loaded.
    with pytest.raises(ArtifactError, match="not a Hugging Face model directory"):
        load("hf:bert-base-uncased")
    garbled = tmp_path / "garbled"
    shutil.copytree(sentiment_dir, garbled)
    (garbled / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ArtifactError, match="transformers cannot load a text classifier") as err:
        load(f"hf:{garbled}")
    assert "\n" not in str(err.value)


def test_a_missing_transformers_names_the_extra(
    sentiment_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "transformers" else real(name, *args),
    )
    with pytest.raises(ArtifactError, match=r"needs transformers.*streamproc\[compress\]"):
        HuggingFaceClassifier.from_dir(sentiment_dir)


def test_probe_texts_reach_past_any_window() -> None:
    assert max(len(t.split()) for t in PROBE_TEXTS) > 1000
