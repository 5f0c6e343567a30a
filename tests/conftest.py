"""Shared fixtures: one real Kafka broker per session, unique names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamproc.broker import kafka_for_tests

# Fixture factories and test doubles shared across tiers, registered here once.
pytest_plugins = ["tests.fixtures.pipeline"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-matrix",
        action="store_true",
        help="run every cell of tests/reliability/test_fault_matrix.py and write its report",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--fault-matrix"):
        return
    skip = pytest.mark.skip(reason="a fault-matrix cell outside the CI subset: make test-faults")
    for item in items:
        if "fault_matrix" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real broker: KAFKA_BOOTSTRAP_SERVERS → Docker (testcontainers) → Maven jar broker.

    Never skipped: without a broker the tests that need one fail with the reason.
    """
    with kafka_for_tests() as bootstrap:
        yield bootstrap


@pytest.fixture
def kafka_conf(kafka_bootstrap: str) -> dict[str, str]:
    return {"bootstrap.servers": kafka_bootstrap}


@pytest.fixture
def unique() -> str:
    """A short unique suffix for this test's topics and consumer groups."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests build settings explicitly; a developer's STREAMPROC_* must not leak into them.
    for name in list(os.environ):
        if name.startswith("STREAMPROC_") and name not in (
            "STREAMPROC_CACHE_DIR",
            "STREAMPROC_KAFKA_VERSION",
        ):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def model_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two small *real* artifacts (same code path as the offline job), built once per session."""
    from streamproc.testing import build_test_artifact

    root = tmp_path_factory.mktemp("artifacts")
    return {
        version: build_test_artifact(root / version, version, seed=seed)
        for seed, version in enumerate(("sentiment-v1", "sentiment-v2"))
    }
