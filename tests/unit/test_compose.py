"""docker-compose.yml parses and agrees with the settings (ports, topics, services)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamproc.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_exist_and_use_the_official_kafka_image() -> None:
    services = _compose()["services"]
    assert {"kafka", "worker"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert (ROOT / "Dockerfile").exists() and services["worker"]["build"] == "."


def test_worker_settings_are_valid_and_consistent_with_kafka() -> None:
    services = _compose()["services"]
    env = {
        k.removeprefix("STREAMPROC_").lower(): str(v)
        for k, v in services["worker"]["environment"].items()
    }
    settings = Settings(**env)  # every STREAMPROC_* value in the file is a valid setting
    internal = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"INTERNAL://{settings.bootstrap_servers}" in internal
    host_ports, _, container_port = services["worker"]["ports"][0].rpartition(":")
    assert container_port == str(settings.web_port)
    assert host_ports.startswith(f"127.0.0.1:{settings.web_port}")
    defaults = Settings()
    assert settings.input_topic == defaults.input_topic
    assert settings.output_topic == defaults.output_topic


def test_kafka_host_port_matches_the_default_bootstrap() -> None:
    kafka = _compose()["services"]["kafka"]
    port = Settings().bootstrap_servers.rsplit(":", 1)[1]
    assert f"{port}:9092" in kafka["ports"]
    assert "EXTERNAL://localhost:9092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]


def test_observability_services_mount_the_deploy_files() -> None:
    services = _compose()["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    for volume in prometheus["volumes"][:1] + grafana["volumes"]:
        source = volume.split(":", 1)[0]
        assert (ROOT / source).exists(), f"{source} is mounted but missing"
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    text = str(scrape)
    assert "worker" in text and str(Settings().web_port) in text
    datasource = (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    assert "http://prometheus:9090" in datasource
    assert "127.0.0.1:9090:9090" in prometheus["ports"]


def test_a_fresh_clone_gets_a_serving_worker_without_a_host_models_dir() -> None:
    """`docker compose up --build` on a fresh clone: no ./models on the host is needed (Docker
    would create it root-owned and empty, and the worker would have nothing to serve)."""
    compose = _compose()
    services = compose["services"]
    init, worker = services["model-init"], services["worker"]
    assert init["command"][:3] == ["model", "publish", "builtin:trec"]
    assert "--if-missing" in init["command"]  # a later publish survives a restart
    assert worker["depends_on"]["model-init"]["condition"] == "service_completed_successfully"
    assert init["image"] == worker["image"]  # one build serves both
    model_dir = Settings(model_dir=worker["environment"]["STREAMPROC_MODEL_DIR"]).model_dir
    assert f"models:{model_dir}" in init["volumes"]
    assert f"models:{model_dir}:ro" in worker["volumes"]
    assert "models" in compose["volumes"]
    assert not any(v.startswith("./models") for v in worker["volumes"])
    assert worker["restart"] == "unless-stopped"  # a worker that exits non-zero comes back


def test_the_image_checks_liveness_and_owns_its_model_dir() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "streamproc.tools.probe" in dockerfile
    assert "/livez" in dockerfile
    assert "chown streamproc /models" in dockerfile
    assert "torch" not in dockerfile.split("RUN pip install", 1)[1].split("\n", 1)[0]


def test_the_worker_install_carries_neither_torch_nor_matplotlib() -> None:
    """The image runs `pip install .`: the package's own dependencies are what a worker gets."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[\[<>=!~ ;]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]
    }
    assert not names & {"torch", "matplotlib", "transformers"}, names
    assert "matplotlib" in " ".join(project["optional-dependencies"]["plots"])


def test_a_report_without_matplotlib_skips_its_figure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import importlib.util

    from streamproc import plotting

    real = importlib.util.find_spec
    monkeypatch.setattr(
        plotting.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    assert plotting.pyplot("the soak plot") is None
    assert "pip install 'streamproc[plots]'" in caplog.text
