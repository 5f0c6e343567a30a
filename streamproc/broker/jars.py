"""The Apache Kafka broker's jars, resolved from Maven Central with Maven once into the cache.

The broker's POM leaves a logging backend out on purpose (3.x fails without one), so we add the
one each major version logs through.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from streamproc.errors import BrokerError
from streamproc.settings import default_cache_dir

__all__ = ["DEFAULT_KAFKA_VERSION", "MAVEN_DEPENDENCY_PLUGIN", "ensure_kafka_jars", "major_version"]

DEFAULT_KAFKA_VERSION = "3.9.2"
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"


def major_version(version: str) -> int:
    try:
        return int(version.split(".", 1)[0])
    except ValueError:
        raise BrokerError(f"not a Kafka version: {version!r}") from None


def _pom(version: str) -> str:
    # The broker's POM deliberately leaves out a logging backend: without one it prints nothing
    # and 3.x fails on missing log4j classes. 3.x logs through reload4j, 4.x through log4j2.
    if major_version(version) >= 4:
        logging_deps = [
            ("org.apache.logging.log4j", "log4j-api", "2.24.3"),
            ("org.apache.logging.log4j", "log4j-core", "2.24.3"),
            ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3"),
        ]
    else:
        logging_deps = [("org.slf4j", "slf4j-reload4j", "1.7.36")]
    deps = [("org.apache.kafka", "kafka_2.13", version), *logging_deps]
    dep_xml = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in deps
    )
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamproc.local</groupId>
  <artifactId>kafka-broker-{version}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{dep_xml}
  </dependencies>
</project>
"""


def ensure_kafka_jars(version: str = DEFAULT_KAFKA_VERSION, cache_dir: Path | None = None) -> Path:
    """Resolve the broker jars with Maven into ``<cache>/kafka/<version>/libs`` once; return it."""
    root = (cache_dir or default_cache_dir()) / "kafka" / version
    libs = root / "libs"
    done_marker = root / ".complete"
    if done_marker.exists() and any(libs.glob(f"kafka_2.13-{version}.jar")):
        return libs
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is not on PATH: it is needed to fetch the Kafka broker jars")
    root.mkdir(parents=True, exist_ok=True)
    (root / "pom.xml").write_text(_pom(version))
    staging = root / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(root / "pom.xml"),
        f"{MAVEN_DEPENDENCY_PLUGIN}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        raise BrokerError(f"Maven could not fetch Kafka {version}: " + " | ".join(tail))
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    done_marker.write_text(version)
    return libs
