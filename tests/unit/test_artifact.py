"""Artifacts: exact round trip (fp32 and int8), refusal of tampered / missing / unknown files,
publishing with an atomic CURRENT, and the `streamproc model` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from streamproc.cli import main
from streamproc.errors import ArtifactError
from streamproc.model.artifact import (
    builtin_artifact,
    load_artifact,
    read_manifest,
    verify_artifact,
)
from streamproc.model.base import TextClassifier
from streamproc.model.network import StudentConfig, StudentNetwork
from streamproc.model.quantize import quantize_int8
from streamproc.model.runtime import load_classifier
from streamproc.model.saving import save_artifact
from streamproc.model.tokenizer import StudentTokenizer, train_wordpiece
from streamproc.model.versions import publish_artifact, resolve_current

TEXTS = [
    f"how many {w} are there in the box number {i}"
    for i, w in enumerate(["cats", "dogs", "cars"] * 10)
]


def _parts() -> tuple[StudentNetwork, StudentTokenizer]:
    tok = StudentTokenizer(train_wordpiece(TEXTS, 80), 16)
    torch.manual_seed(0)
    cfg = StudentConfig(
        vocab_size=tok.vocab_size,
        num_labels=3,
        max_tokens=16,
        dim=32,
        head_dim=8,
        layer_heads=(2, 3),
        layer_ffn=(40, 24),
    )
    return StudentNetwork(cfg).eval(), tok


def _save(
    tmp_path: Path, *, quantized: bool = True, version: str = "v1", name: str = "art"
) -> Path:
    net, tok = _parts()
    model = quantize_int8(net) if quantized else net
    return save_artifact(
        tmp_path / name,
        model=model,
        config=net.config,
        tokenizer=tok,
        labels=("a", "b", "c"),
        version=version,
        metadata={"dataset": {"name": "unit"}},
    )


@pytest.mark.parametrize("quantized", [True, False])
def test_round_trip_is_exact(tmp_path: Path, quantized: bool) -> None:
    net, tok = _parts()
    model = quantize_int8(net) if quantized else net
    path = save_artifact(
        tmp_path / "a",
        model=model,
        config=net.config,
        tokenizer=tok,
        labels=("a", "b", "c"),
        version="v1",
    )
    loaded = load_artifact(path)
    assert loaded.manifest["quantization"] == ("int8-dynamic" if quantized else "none")
    ids, mask = tok.encode_batch(TEXTS)
    with torch.inference_mode():
        assert torch.equal(loaded.model(ids, mask), model(ids, mask))
    assert loaded.config == net.config and loaded.labels == ("a", "b", "c")


def test_classifier_predictions(tmp_path: Path) -> None:
    clf = load_classifier(_save(tmp_path), num_threads=1)
    assert isinstance(clf, TextClassifier)
    assert clf.version == "v1" and list(clf.labels) == ["a", "b", "c"] and clf.max_tokens == 16
    assert clf.predict_batch([]) == []
    preds = clf.predict_batch([*TEXTS[:5], "", "word " * 100])
    assert len(preds) == 7
    for p in preds:
        assert p.label in clf.labels
        assert abs(sum(p.probabilities.values()) - 1) < 1e-4
        assert p.score == max(p.probabilities.values())


def test_fp32_batch_of_one_matches_inside_a_batch(tmp_path: Path) -> None:
    clf = load_classifier(_save(tmp_path, quantized=False))
    batch = clf.logits(TEXTS[:8])
    for i in range(8):
        torch.testing.assert_close(clf.logits([TEXTS[i]])[0], batch[i], atol=1e-5, rtol=1e-4)


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    path = _save(tmp_path)
    weights = path / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupted or was tampered with"):
        load_classifier(path)


def test_tampered_tokenizer_missing_file_and_unknown_format(tmp_path: Path) -> None:
    path = _save(tmp_path)
    (path / "tokenizer.json").write_text(
        (path / "tokenizer.json").read_text().replace("[UNK]", "[UNK2]", 1)
    )
    with pytest.raises(ArtifactError, match=r"tokenizer\.json is corrupted"):
        verify_artifact(path)
    other = _save(tmp_path, name="b")
    (other / "weights.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"missing file weights\.safetensors"):
        load_artifact(other)
    third = _save(tmp_path, name="c")
    manifest = json.loads((third / "manifest.json").read_text())
    manifest["format_version"] = 99
    (third / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="unknown artifact format version 99"):
        load_artifact(third)
    with pytest.raises(ArtifactError, match="no such artifact"):
        load_artifact(tmp_path / "nothing")


def test_save_refuses_bad_version_and_non_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="invalid artifact version"):
        _save(tmp_path, version="../escape")
    _save(tmp_path)
    with pytest.raises(ArtifactError, match="not empty"):
        _save(tmp_path)


def test_publish_and_resolve_current(tmp_path: Path) -> None:
    models = tmp_path / "models"
    with pytest.raises(ArtifactError, match="CURRENT: missing"):
        resolve_current(models)
    v1 = _save(tmp_path, version="v1", name="a1")
    v2 = _save(tmp_path, version="v2", name="a2")
    assert publish_artifact(v1, models) == "v1"
    assert resolve_current(models) == models / "v1"
    assert publish_artifact(v2, models) == "v2"
    assert (models / "CURRENT").read_text().strip() == "v2"
    assert load_classifier(resolve_current(models)).version == "v2"
    assert publish_artifact(v1, models) == "v1"  # roll back: same files, only CURRENT moves
    assert not [p for p in models.iterdir() if p.name.startswith(".")], "no temp files left behind"
    (models / "CURRENT").write_text("v9\n")
    with pytest.raises(ArtifactError, match="holds no artifact"):
        resolve_current(models)
    clash = _save(tmp_path, version="v1", name="a3", quantized=False)
    with pytest.raises(ArtifactError, match="different artifact"):
        publish_artifact(clash, models)


def test_model_cli_info_verify_publish(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _save(tmp_path)
    main(["model", "info", str(path)])
    out = capsys.readouterr().out
    assert "version:      v1" in out and "int8-dynamic" in out
    main(["model", "verify", str(path)])
    assert "ok:" in capsys.readouterr().out
    main(["model", "publish", str(path), "--model-dir", str(tmp_path / "m")])
    assert (tmp_path / "m" / "CURRENT").read_text().strip() == "v1"
    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    (bad / "weights.safetensors").write_bytes(b"junk")
    with pytest.raises(SystemExit) as exc:
        main(["model", "verify", str(bad)])
    assert exc.value.code == 5  # model (errors.EXIT_CODES)
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "tampered" in err and "\n" not in err


def test_publishing_where_nothing_can_be_written_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model dir that cannot be made (here: under a file; for a user, a directory Docker
    created as root) ends in one line naming it and the model exit status."""
    path = _save(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exc:
        main(["model", "publish", str(path), "--model-dir", str(blocker / "models")])
    assert exc.value.code == 5
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot publish into") and "not-a-dir" in err and "\n" not in err


def test_publish_if_missing_seeds_once_and_never_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """docker-compose's model-init runs on every start: the first seeds an empty model dir, the
    next ones must leave a model published since then in place."""
    models = tmp_path / "models"
    v1, v2 = _save(tmp_path, version="v1", name="a1"), _save(tmp_path, version="v2", name="a2")
    main(["model", "publish", str(v1), "--model-dir", str(models), "--if-missing"])
    assert (models / "CURRENT").read_text().strip() == "v1"
    main(["model", "publish", str(v2), "--model-dir", str(models)])  # the operator's publish
    capsys.readouterr()
    main(["model", "publish", str(v1), "--model-dir", str(models), "--if-missing"])  # restart
    assert (models / "CURRENT").read_text().strip() == "v2"
    assert "left as it is" in capsys.readouterr().out


def test_model_cli_export_onnx_then_evaluate_and_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A weights-only artifact becomes an ONNX one that serves the same answers; `evaluate`
    scores the built-in TREC model on the test split and records it in the manifest."""
    source = _save(tmp_path)
    out = tmp_path / "onnx"
    main(["model", "export-onnx", str(source), str(out), "--version", "v1-onnx"])
    assert "onnxruntime int8-dynamic" in capsys.readouterr().out
    main(["model", "info", str(out)])
    assert "runtime:      onnxruntime (int8-dynamic, opset 17)" in capsys.readouterr().out
    texts = ["a fine film", "the worst service ever", "what a day", ""]
    onnx, eager = load_classifier(out), load_classifier(source)
    assert onnx.runtime == "onnxruntime" and eager.runtime == "torch"
    assert abs(onnx.logits(texts) - eager.logits(texts)).max() < 0.25

    trec = tmp_path / "trec"
    shutil.copytree(builtin_artifact("trec"), trec)
    main(["model", "evaluate", str(trec), "--record"])
    line = capsys.readouterr().out.splitlines()[0]
    version = read_manifest(trec)["version"]
    assert line.startswith(f"{version} (onnxruntime): accuracy 9")
    recorded = read_manifest(trec)["metadata"]["evaluation"]
    assert recorded["runtime"] == "onnxruntime" and recorded["rows"] == 500
    assert (
        recorded["accuracy"]
        == read_manifest(builtin_artifact())["metadata"]["evaluation"]["accuracy"]
    )
