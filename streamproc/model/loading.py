"""Which model a worker serves: ``STREAMPROC_MODEL`` (or ``streamproc worker --model``).

::

    artifact             default: the versioned artifact <model_dir>/CURRENT names (hot reload)
    artifact:DIR         one artifact directory (``artifact:builtin:trec``: the shipped one)
    hf                   a Hugging Face text-classification directory CURRENT names (hot reload)
    hf:DIR               that directory
    NAME[:DIR]           a plugin: the factory installed as NAME in the entry-point group
                         ``streamproc.models``
    MODULE:ATTR[:DIR]    a factory importable as ``MODULE.ATTR`` (the current directory is
                         importable, as for uvicorn's ``module:app``)

A factory is called with a :class:`ModelContext` (or with nothing, if it takes no argument) and
returns a :class:`~streamproc.model.base.TextClassifier`, which must pass
:func:`~streamproc.model.base.check_classifier` before it serves.

**Hot reload**: a spec without ``:DIR`` loads ``context.path = <model_dir>/<version>`` for the
version ``<model_dir>/CURRENT`` names, and loads again, through the same factory, whenever
CURRENT names another version (see :mod:`streamproc.stream.hot_reload`); the model's ``version``
must then equal that directory's name, so every output names what produced it. With ``:DIR``,
or for a plugin or factory when the model directory has no CURRENT (``context.path`` is None),
the model is loaded once and a new version means a restart (``/readyz`` shows
``hot_reload: null``).

Spec mistakes (no such plugin, a module that does not import, a missing attribute) raise
:class:`ConfigError`; a factory that raises or returns something that is not a working
classifier raises :class:`ArtifactError`. Both are one line naming ``STREAMPROC_MODEL``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamproc.errors import ArtifactError, ConfigError
from streamproc.model.base import TextClassifier, check_classifier

if TYPE_CHECKING:
    from streamproc.settings import Settings

__all__ = [
    "BUILTIN_LOADERS",
    "ENTRY_POINT_GROUP",
    "ModelContext",
    "ModelFactory",
    "ModelSpec",
    "load_model",
    "parse_model_spec",
]

#: Plugins register ``name = "package.module:factory"`` here (pyproject ``[project.entry-points]``).
ENTRY_POINT_GROUP = "streamproc.models"

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True)
class ModelContext:
    """What a model factory is given."""

    path: Path | None  # the directory to load: the spec's DIR, else the version CURRENT names
    version: str | None  # that version's name when CURRENT chose it (the model must declare it)
    threads: int | None  # STREAMPROC_MODEL_THREADS; None: the runtime's default
    settings: Settings  # the worker's settings, for anything else a factory needs


#: ``factory(context) -> TextClassifier`` (or ``factory()``).
ModelFactory = Callable[..., Any]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed ``STREAMPROC_MODEL``."""

    text: str  # as given
    loader: str  # "artifact", "hf", a plugin name or "module:attribute"
    path: Path | None  # the spec's DIR; None: the version <model_dir>/CURRENT names
    factory: ModelFactory

    @property
    def builtin(self) -> bool:
        return self.loader in BUILTIN_LOADERS


def _load_artifact(context: ModelContext) -> TextClassifier:
    from streamproc.model.runtime import load_classifier
    from streamproc.model.versions import resolve_current

    path = context.path or resolve_current(context.settings.model_dir)  # (its clear error)
    return load_classifier(
        path, num_threads=context.threads, runtime=context.settings.model_runtime
    )


def _load_huggingface(context: ModelContext) -> TextClassifier:
    from streamproc.model.huggingface import HuggingFaceClassifier

    if context.path is None:
        raise ArtifactError(
            "STREAMPROC_MODEL=hf needs a directory: hf:DIR, or publish versions under "
            "STREAMPROC_MODEL_DIR and name one in its CURRENT file"
        )
    return HuggingFaceClassifier.from_dir(
        context.path, version=context.version, threads=context.threads
    )


#: Loaders built into streamproc (they win over a plugin or module of the same name).
BUILTIN_LOADERS: dict[str, ModelFactory] = {"artifact": _load_artifact, "hf": _load_huggingface}


def parse_model_spec(text: str) -> ModelSpec:
    """Resolve ``STREAMPROC_MODEL`` to its factory (imports it); :class:`ConfigError` if not."""
    text = text.strip()
    head, sep, rest = text.partition(":")
    if head in BUILTIN_LOADERS:
        return ModelSpec(text, head, _dir(rest, head), BUILTIN_LOADERS[head])
    plugin = _entry_point(head) if head else None
    if plugin is not None:
        try:
            factory = plugin.load()
        except Exception as exc:
            raise ConfigError(
                f"STREAMPROC_MODEL={text}: the plugin {head!r} ({plugin.value}) does not load "
                f"({type(exc).__name__}: {exc})"
            ) from None
        return ModelSpec(text, head, _dir(rest, head), _callable(factory, text))
    attribute, _, directory = rest.partition(":")
    if sep and _DOTTED.match(head) and _DOTTED.match(attribute):
        factory = _import_attribute(head, attribute, text)
        return ModelSpec(text, f"{head}:{attribute}", _dir(directory, head), factory)
    raise ConfigError(
        f"STREAMPROC_MODEL={text}: no model loader {head!r} (built in: "
        f"{', '.join(BUILTIN_LOADERS)}; plugins installed in {ENTRY_POINT_GROUP}: "
        f"{', '.join(sorted(_plugin_names())) or 'none'}; or a factory as module:attribute)"
    )


def load_model(spec: ModelSpec, context: ModelContext) -> TextClassifier:
    """Call the spec's factory and check what it returns (:class:`ArtifactError` if unusable)."""
    where = f"STREAMPROC_MODEL={spec.text}" + (f" ({context.path})" if context.path else "")
    try:
        model = spec.factory(context) if _takes_an_argument(spec.factory) else spec.factory()
    except ArtifactError:
        raise  # already one line, naming what failed
    except Exception as exc:  # the user's code: anything, StreamprocErrors included
        raise ArtifactError(f"{where}: the factory raised {type(exc).__name__}: {exc}") from None
    try:
        return check_classifier(model, source=where)
    except ArtifactError:
        raise
    except Exception as exc:  # e.g. a property of the user's model that raises
        raise ArtifactError(f"{where}: {type(exc).__name__} checking the model: {exc}") from None


def _dir(text: str, loader: str) -> Path | None:
    if not text:
        return None
    if loader == "artifact" and text.startswith("builtin:"):
        from streamproc.model.artifact import resolve_artifact_argument

        return resolve_artifact_argument(text)
    return Path(text).expanduser()


def _entry_point(name: str) -> Any:
    from importlib.metadata import entry_points

    matches = list(entry_points(group=ENTRY_POINT_GROUP, name=name))
    return matches[0] if matches else None


def _plugin_names() -> set[str]:
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import_attribute(module_name: str, attribute: str, text: str) -> ModelFactory:
    cwd = os.getcwd()
    if cwd not in sys.path:  # `streamproc worker` (a console script) does not put it there
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"STREAMPROC_MODEL={text}: cannot import {module_name!r} ({exc})"
        ) from None
    except Exception as exc:
        raise ConfigError(
            f"STREAMPROC_MODEL={text}: importing {module_name!r} failed "
            f"({type(exc).__name__}: {exc})"
        ) from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"STREAMPROC_MODEL={text}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return _callable(target, text)


def _callable(factory: Any, text: str) -> ModelFactory:
    if not callable(factory):
        raise ConfigError(
            f"STREAMPROC_MODEL={text}: {type(factory).__name__} is not callable "
            "(give a factory: a function or class returning a TextClassifier)"
        )
    return factory


def _takes_an_argument(factory: ModelFactory) -> bool:
    """True unless ``factory`` can only be called with no arguments."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        return True
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )
