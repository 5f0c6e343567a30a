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
    assert f"127.0.0.1:{settings.web_port}:{settings.web_port}" in services["worker"]["ports"]
    defaults = Settings()
    assert settings.input_topic == defaults.input_topic
    assert settings.output_topic == defaults.output_topic


def test_kafka_host_port_matches_the_default_bootstrap() -> None:
    kafka = _compose()["services"]["kafka"]
    port = Settings().bootstrap_servers.rsplit(":", 1)[1]
    assert f"{port}:9092" in kafka["ports"]
    assert "EXTERNAL://localhost:9092" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
