"""docker-compose.yml parses and agrees with the settings (ports, topics, services)."""

from __future__ import annotations

from pathlib import Path

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
