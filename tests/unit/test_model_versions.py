"""``streamproc model list`` / ``rollback``: the versions in a model directory, CURRENT moved back
atomically, --model-dir defaulting to STREAMPROC_MODEL_DIR; and report directories outside docs/."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from streamproc.cli import main
from streamproc.errors import ArtifactError
from streamproc.model.artifact import builtin_artifact
from streamproc.model.versions import (
    append_history,
    list_versions,
    previous_version,
    publish_artifact,
    read_history,
    resolve_current,
    rollback,
)


def _artifact(root: Path, version: str, created: str, accuracy: float | None = None) -> Path:
    """A real artifact: the shipped one under another version (the manifest is not digested)."""
    path = root / "src" / version
    shutil.copytree(builtin_artifact(), path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(version=version, created=created)
    if accuracy is None:
        manifest["metadata"].pop("evaluation", None)
    else:
        manifest["metadata"]["evaluation"]["accuracy"] = accuracy
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def _entries(*moves: tuple[str, str]) -> list[dict[str, str]]:
    return [{"action": action, "version": version} for action, version in moves]


AVAILABLE = {"v1": "2026-01", "v2": "2026-02", "v3": "2026-03", "v4": "2026-04"}


def test_rollback_undoes_changes_of_current_one_at_a_time() -> None:
    published = _entries(("publish", "v1"), ("publish", "v2"), ("publish", "v3"))
    assert previous_version(published, "v3", AVAILABLE) == "v2"
    once = [*published, *_entries(("rollback", "v2"))]
    assert previous_version(once, "v2", AVAILABLE) == "v1"
    # publish v4 after rolling back from v3: undoing v4 returns to v2, not to the bad v3
    assert previous_version([*once, *_entries(("publish", "v4"))], "v4", AVAILABLE) == "v2"
    # a version deleted from the directory is skipped
    assert previous_version(published, "v3", {"v1": "2026-01", "v3": "2026-03"}) == "v1"
    # nothing older anywhere
    assert previous_version(_entries(("publish", "v1")), "v1", AVAILABLE) is None


def test_past_the_history_rollback_goes_by_creation_time() -> None:
    assert previous_version([], "v3", AVAILABLE) == "v2"  # a directory from before the history
    assert previous_version(_entries(("publish", "v4")), "v4", AVAILABLE) == "v3"
    # rolled back to v3 from outside the history: the next rollback goes further back, not to v4
    moved = _entries(("publish", "v4"), ("rollback", "v3"))
    assert previous_version(moved, "v3", AVAILABLE) == "v2"
    assert previous_version([], None, AVAILABLE) is None


def test_publish_list_and_rollback_through_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "served"
    monkeypatch.setenv("STREAMPROC_MODEL_DIR", str(models))  # --model-dir defaults to it
    for i, version in enumerate(("a1", "a2", "a3")):
        main(
            ["model", "publish", str(_artifact(tmp_path, version, f"2026-0{i + 1}", 0.9 + i / 100))]
        )
    capsys.readouterr()
    main(["model", "list"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["VERSION", "PUBLISHED", "CREATED", "RUNTIME", "ACCURACY"]
    assert [line.split()[0] for line in lines[1:]] == ["a1", "a2", "*"]
    assert lines[3].split()[1] == "a3" and lines[3].split()[-1] == "92.00%"
    assert "onnxruntime int8-dynamic" in lines[1] and "2026-01" in lines[1]

    main(["model", "rollback"])
    assert capsys.readouterr().out.startswith("rolled back a3 -> a2")
    assert resolve_current(models) == models / "a2"
    main(["model", "rollback", "--model-dir", str(models)])
    assert resolve_current(models) == models / "a1"
    with pytest.raises(SystemExit) as exc:
        main(["model", "rollback"])
    assert exc.value.code == 5  # model: nothing older than a1
    assert "no earlier version" in capsys.readouterr().err
    main(["model", "rollback", "a3"])  # a named version
    assert resolve_current(models) == models / "a3"
    assert [e["action"] for e in read_history(models)] == ["publish"] * 3 + ["rollback"] * 3
    assert not [p for p in models.iterdir() if p.name.startswith(".")], "no temp files left"
    # CURRENT is readable by a worker running as another user
    assert (models / "CURRENT").stat().st_mode & stat.S_IROTH


def test_rollback_refuses_a_broken_or_unknown_version_and_keeps_current(tmp_path: Path) -> None:
    models = tmp_path / "models"
    publish_artifact(_artifact(tmp_path, "good", "2026-01"), models)
    publish_artifact(_artifact(tmp_path, "newer", "2026-02"), models)
    (models / "good" / "tokenizer.json").write_text("{}")  # tampered
    with pytest.raises(ArtifactError, match="tampered"):
        rollback(models)
    with pytest.raises(ArtifactError, match="no such artifact"):
        rollback(models, "missing")
    with pytest.raises(ArtifactError, match="invalid artifact version"):
        rollback(models, "../escape")
    assert resolve_current(models) == models / "newer"


def test_list_shows_unreadable_versions_and_ignores_publishes_under_way(tmp_path: Path) -> None:
    models = tmp_path / "models"
    publish_artifact(_artifact(tmp_path, "unscored", "2025-12"), models)
    publish_artifact(_artifact(tmp_path, "ok", "2026-01", accuracy=0.92), models)
    (models / "junk").mkdir()
    (models / ".ok.tmp123").mkdir()
    append_history(models, "publish", "ok")
    (models / "history.jsonl").open("a").write('{"torn line')  # a crash mid-write
    versions = {v.version: v for v in list_versions(models)}
    assert set(versions) == {"ok", "unscored", "junk"}
    assert versions["ok"].current and versions["ok"].accuracy == pytest.approx(0.92)
    assert versions["unscored"].accuracy is None and not versions["unscored"].current
    assert versions["junk"].problem is not None and "manifest.json" in versions["junk"].problem
    assert len(read_history(models)) == 3


def test_bench_and_soak_write_outside_docs_unless_asked() -> None:
    from streamproc.tools.bench.command import bench
    from streamproc.tools.soak import soak

    for command in (bench, soak):
        out = next(p for p in command.params if p.name == "out")
        assert not str(out.default).startswith("docs"), command.name
