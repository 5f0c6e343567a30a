"""Bring your own model: ``STREAMPROC_MODEL`` specs, factories, plugins, and the contract check.

Factories live in modules and a plugin distribution these tests write to ``tmp_path``; every
model they return goes through the same checks as the shipped one, and the versioned layout
(``<model_dir>/CURRENT``) hot-reloads through the factory.
"""

from __future__ import annotations

import math
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from streamproc.errors import ArtifactError, ConfigError
from streamproc.model.base import PROBE_TEXTS, Prediction, check_classifier
from streamproc.model.loading import ModelContext, load_model, parse_model_spec
from streamproc.settings import load_settings
from streamproc.stream.hot_reload import open_model
from streamproc.testing import FakeClassifier

FACTORIES = """
from streamproc.testing import FakeClassifier

calls = []

def create(context):
    calls.append(context)
    return FakeClassifier(version=context.version or "keywords-1", labels=("question", "other"))

def no_arguments():
    return FakeClassifier(version="plain-1")

class Models:
    @staticmethod
    def nested(context):
        return FakeClassifier(version="nested-1")

def returns_none(context):
    return None

def raises(context):
    raise RuntimeError("weights not found")

not_callable = 42
"""


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of factories, importable from the current directory (as a user's own file)."""
    name = f"byo_factories_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(FACTORIES)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader appends the cwd
    monkeypatch.chdir(tmp_path)
    return name


def _load(spec: str, **settings: object) -> object:
    parsed = parse_model_spec(spec)
    context = ModelContext(parsed.path, version=None, threads=1, settings=load_settings(**settings))
    return load_model(parsed, context)


def test_a_factory_from_a_module_in_the_current_directory_serves(factories: str) -> None:
    model = _load(f"{factories}:create")
    assert isinstance(model, FakeClassifier)
    assert model.version == "keywords-1" and list(model.labels) == ["question", "other"]
    module = sys.modules[factories]
    (context,) = module.calls
    assert context.path is None and context.threads == 1


def test_a_factory_without_arguments_and_a_dotted_attribute(factories: str) -> None:
    assert _load(f"{factories}:no_arguments").version == "plain-1"  # type: ignore[attr-defined]
    assert _load(f"{factories}:Models.nested").version == "nested-1"  # type: ignore[attr-defined]


def test_a_factory_given_a_directory_receives_it(factories: str, tmp_path: Path) -> None:
    spec = parse_model_spec(f"{factories}:create:{tmp_path}/weights")
    assert spec.path == tmp_path / "weights"
    assert spec.loader == f"{factories}:create"


@pytest.mark.parametrize(
    ("suffix", "error", "match"),
    [
        (":returns_none", ArtifactError, r"got NoneType, not a TextClassifier \(missing version"),
        (":raises", ArtifactError, "the factory raised RuntimeError: weights not found"),
        (":not_callable", ConfigError, "int is not callable"),
        (":missing", ConfigError, "has no attribute 'missing'"),
    ],
)
def test_factory_mistakes_are_one_line_errors(
    factories: str, suffix: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as caught:
        _load(factories + suffix)
    assert "\n" not in str(caught.value)
    assert f"STREAMPROC_MODEL={factories}{suffix}" in str(caught.value)


def test_spec_mistakes_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken_models.py").write_text("raise ImportError('needs libfoo')\n")
    with pytest.raises(ConfigError, match=r"no model loader 'nosuchplugin' \(built in: artifact"):
        parse_model_spec("nosuchplugin")
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        parse_model_spec("no_such_module:create")
    with pytest.raises(ConfigError, match=r"importing .broken_models. failed .ImportError: needs"):
        parse_model_spec("broken_models:create")


def test_an_installed_plugin_is_found_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry point in ``streamproc.models``, as ``pip install my-plugin`` would register."""
    site = tmp_path / "site"
    (site / "byo_plugin_dist-1.0.dist-info").mkdir(parents=True)
    (site / "byo_plugin_dist-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: byo-plugin-dist\nVersion: 1.0\n"
    )
    (site / "byo_plugin_dist-1.0.dist-info" / "entry_points.txt").write_text(
        "[streamproc.models]\nkeyword-plugin = byo_plugin_module:create\n"
    )
    (site / "byo_plugin_module.py").write_text(
        textwrap.dedent(
            """
            from streamproc.testing import FakeClassifier

            def create(context):
                name = context.path.name if context.path else "plugin-1"
                return FakeClassifier(version=name)
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    assert _load("keyword-plugin").version == "plugin-1"  # type: ignore[attr-defined]
    spec = parse_model_spec(f"keyword-plugin:{tmp_path}/v7")
    assert spec.loader == "keyword-plugin" and spec.path == tmp_path / "v7"
    with pytest.raises(
        ConfigError, match=r"plugins installed in streamproc.models: .*keyword-plugin"
    ):
        parse_model_spec("keyword-plugn")


def test_a_factory_hot_reloads_from_the_model_dir(factories: str, tmp_path: Path) -> None:
    """With CURRENT in the model dir, the factory loads each published version's directory."""
    model_dir = tmp_path / "models"
    (model_dir / "kw-1").mkdir(parents=True)
    (model_dir / "kw-2").mkdir()
    (model_dir / "CURRENT").write_text("kw-1\n")
    # In this process, so the factory's recorded calls can be read here.
    settings = load_settings(
        model=f"{factories}:create", model_dir=model_dir, model_isolation="thread"
    )
    served = open_model(settings)
    assert served.model.version == "kw-1"
    assert served.watcher is not None
    assert served.describe() == {"spec": f"{factories}:create", "hot_reload": str(model_dir)}
    assert served.watcher.poll("kw-1") is None
    (model_dir / "CURRENT").write_text("kw-2\n")
    reloaded = served.watcher.poll("kw-1")
    assert reloaded is not None and reloaded.version == "kw-2"
    context = sys.modules[factories].calls[-1]
    assert (context.path, context.version) == (model_dir / "kw-2", "kw-2")


def test_without_current_a_factory_loads_once_and_says_reload_is_off(
    factories: str, tmp_path: Path
) -> None:
    served = open_model(load_settings(model=f"{factories}:create", model_dir=tmp_path / "none"))
    assert served.watcher is None
    assert served.describe()["hot_reload"] is None
    with pytest.raises(ArtifactError, match="CURRENT"):  # the built-in loaders need a version
        open_model(load_settings(model="hf", model_dir=tmp_path / "none"))


def test_a_reloaded_model_must_declare_the_version_current_names(
    factories: str, tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    (model_dir / "kw-1").mkdir(parents=True)
    (model_dir / "CURRENT").write_text("kw-1\n")
    settings = load_settings(model=f"{factories}:no_arguments", model_dir=model_dir)
    with pytest.raises(
        ArtifactError, match=r"CURRENT names .kw-1. but the model loaded from .* declares .plain-1."
    ):
        open_model(settings)


# --- the contract every model is held to -----------------------------------------------------


class _Scripted(FakeClassifier):
    """A classifier whose predictions a test rewrites, to break one promise at a time."""

    def __init__(self, rewrite: object, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._rewrite = rewrite

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        return self._rewrite(super().predict_batch(texts))  # type: ignore[operator, no-any-return]


def _nan(ps: list[Prediction]) -> list[Prediction]:
    return [Prediction(ps[0].label, math.nan, ps[0].probabilities), *ps[1:]]


def _unnormalised(ps: list[Prediction]) -> list[Prediction]:
    return [Prediction(p.label, 0.9, dict.fromkeys(p.probabilities, 0.9)) for p in ps]


def _missing_label(ps: list[Prediction]) -> list[Prediction]:
    return [Prediction(p.label, p.score, {p.label: p.score}) for p in ps]


@pytest.mark.parametrize(
    ("rewrite", "match"),
    [
        (
            lambda ps: ps[:-1],
            f"expected {len(PROBE_TEXTS)} predictions, got {len(PROBE_TEXTS) - 1}",
        ),
        (_nan, "not finite in"),
        (_unnormalised, "sum to 1.8"),
        (_missing_label, "do not name exactly the labels"),
        (lambda ps: [p.label for p in ps], "is a str, not a Prediction"),
    ],
)
def test_a_model_whose_trial_prediction_misbehaves_is_refused(rewrite: object, match: str) -> None:
    with pytest.raises(ArtifactError, match=match):
        check_classifier(_Scripted(rewrite), source="mine")


def test_member_types_are_checked() -> None:
    with pytest.raises(ArtifactError, match="labels must be a non-empty sequence"):
        check_classifier(FakeClassifier(labels=()), source="mine")
    with pytest.raises(ArtifactError, match="duplicate label names"):
        check_classifier(FakeClassifier(labels=("a", "a")), source="mine")
    with pytest.raises(ArtifactError, match="max_tokens must be a positive int"):
        check_classifier(FakeClassifier(max_tokens=0), source="mine")
    with pytest.raises(ArtifactError, match="version must be a non-empty string"):
        check_classifier(FakeClassifier(version=""), source="mine")


def test_multi_label_predictions_need_not_sum_to_one() -> None:
    def tagged(ps: list[Prediction]) -> list[Prediction]:
        return [Prediction("neg", 0.9, {"neg": 0.9, "pos": 0.7}, ("neg", "pos")) for _ in ps]

    check_classifier(_Scripted(tagged), source="mine")

    def unknown_tag(ps: list[Prediction]) -> list[Prediction]:
        return [Prediction("neg", 0.9, {"neg": 0.9, "pos": 0.7}, ("spam",)) for _ in ps]

    with pytest.raises(ArtifactError, match="are not all labels"):
        check_classifier(_Scripted(unknown_tag), source="mine")


def test_the_model_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().model == "artifact"
    monkeypatch.setenv("STREAMPROC_MODEL", "hf:/srv/models/bert")
    settings = load_settings()
    assert settings.model == "hf:/srv/models/bert"
    assert settings.to_env()["STREAMPROC_MODEL"] == "hf:/srv/models/bert"
    spec = parse_model_spec(settings.model)
    assert (spec.loader, spec.path) == ("hf", Path("/srv/models/bert"))
    assert parse_model_spec("artifact:builtin:trec").path.name == "trec"  # type: ignore[union-attr]
