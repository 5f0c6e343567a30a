"""deploy/: Kubernetes manifests, KEDA ScaledObject, Grafana dashboard, Prometheus config. Offline.

* Deployment, Service, ConfigMap: the Kubernetes JSON schemas bundled in ``kubernetes-validate``
  (strict: unknown fields are errors).
* ScaledObject, TriggerAuthentication: ``tests/schemas/keda-*.json`` (KEDA v2.16's CRD).
* Semantics the schemas cannot see: the KEDA lag trigger watches the ConfigMap's topic and group,
  replicas are capped at the partition count, probes and ports match the worker's web settings.
* Grafana: every query only uses metric names :class:`StreamMetrics` defines.
* With ``promtool`` on PATH (Debian package ``prometheus``), also ``promtool check config`` and a
  PromQL syntax check of every dashboard query; skipped without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from streamproc.settings import ENV_PREFIX, Settings, load_settings
from streamproc.stream.dashboard import HEALTH_PATH, LIVE_PATH, METRICS_PATH, READY_PATH
from streamproc.stream.metrics import StreamMetrics
from streamproc.tools.bench.results import BenchResults

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
GRAFANA = ROOT / "deploy" / "grafana"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SCHEMAS = ROOT / "tests" / "schemas"
KUBERNETES_VERSION = "1.31"  # what KEDA v2.16 supports (1.29 – 1.31)
DEFAULT_WEB_PORT = Settings.model_fields["web_port"].default


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _kubernetes_validate() -> ModuleType:
    try:
        import kubernetes_validate
    except ImportError:
        message = "kubernetes-validate is not installed (pip install 'kubernetes-validate>=1.31')"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return kubernetes_validate


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """Every resource under deploy/k8s (kustomization aside), by kind."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in _docs(path):
            assert doc["kind"] not in out, f"two {doc['kind']}s: the checks below assume one"
            out[doc["kind"]] = doc
    return out


@pytest.fixture(scope="module")
def config(manifests: dict[str, dict[str, Any]]) -> dict[str, str]:
    return dict(manifests["ConfigMap"]["data"])


def _container(manifests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    containers = manifests["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


# --------------------------------------------------------------------------- Kubernetes schemas
def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize(
    "kind",
    [
        "Deployment",
        "Service",
        "ConfigMap",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ],
)
def test_core_resources_match_the_kubernetes_schema(
    manifests: dict[str, dict[str, Any]], kind: str
) -> None:
    kubernetes_validate = _kubernetes_validate()
    try:
        kubernetes_validate.validate(manifests[kind], KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = "/".join(str(p) for p in exc.path)
        pytest.fail(
            f"{kind} is invalid for Kubernetes {KUBERNETES_VERSION} at {path}: {exc.message}"
        )


def test_the_kubernetes_schema_check_is_not_vacuous(manifests: dict[str, dict[str, Any]]) -> None:
    kubernetes_validate = _kubernetes_validate()
    broken = json.loads(json.dumps(manifests["Deployment"]))
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    ("kind", "schema"),
    [
        ("ScaledObject", "keda-scaledobject.json"),
        ("TriggerAuthentication", "keda-triggerauthentication.json"),
    ],
)
def test_keda_resources_match_the_crd_schema(
    manifests: dict[str, dict[str, Any]], kind: str, schema: str
) -> None:
    spec = json.loads((SCHEMAS / schema).read_text())
    jsonschema.Draft202012Validator.check_schema(spec)
    validator = jsonschema.Draft202012Validator(spec)
    errors = [
        f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(manifests[kind])
    ]
    assert not errors, errors
    # and the schema does reject what KEDA's CRD rejects
    broken = json.loads(json.dumps(manifests[kind]))
    broken["spec"]["unknownField"] = True
    assert not validator.is_valid(broken)


def test_keda_trigger_metadata_values_must_be_strings(manifests: dict[str, dict[str, Any]]) -> None:
    spec = json.loads((SCHEMAS / "keda-scaledobject.json").read_text())
    broken = json.loads(json.dumps(manifests["ScaledObject"]))
    broken["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 2000  # unquoted: the CRD says no
    assert not jsonschema.Draft202012Validator(spec).is_valid(broken)


# --------------------------------------------------------------------------- semantics
def test_configmap_holds_valid_streamproc_settings(config: dict[str, str]) -> None:
    fields = set(Settings.model_fields)
    for key, value in config.items():
        assert key.startswith(ENV_PREFIX), key
        assert key.removeprefix(ENV_PREFIX).lower() in fields, f"{key}: no such setting"
        assert isinstance(value, str), f"{key}: ConfigMap values must be strings"
        assert "PASSWORD" not in key, f"{key}: secrets belong in a Secret"
    overrides = {k.removeprefix(ENV_PREFIX).lower(): v for k, v in config.items()}
    if str(overrides.get("security_protocol", "")).startswith("SASL"):
        # the Deployment takes these from the Secret; stand-ins so the settings validate
        overrides |= {"sasl_username": "user", "sasl_password": "secret"}
    settings = load_settings(**overrides)
    # probes and Prometheus come from outside the pod: loopback would make them all fail
    assert settings.web_host not in {"127.0.0.1", "localhost", "::1"}


def test_deployment_wiring(manifests: dict[str, dict[str, Any]], config: dict[str, str]) -> None:
    deployment = manifests["Deployment"]
    pod = deployment["spec"]["template"]
    container = _container(manifests)
    web_port = int(config["STREAMPROC_WEB_PORT"])

    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    assert (
        deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": web_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        expected = {"startupProbe": HEALTH_PATH, "readinessProbe": READY_PATH}
        assert get["path"] == expected.get(probe, LIVE_PATH), probe
        assert ports.get(get["port"], get["port"]) == web_port, probe

    assert {"configMapRef": {"name": manifests["ConfigMap"]["metadata"]["name"]}} in container[
        "envFrom"
    ]
    env = {e["name"]: e for e in container.get("env", [])}
    secret_ref = env["STREAMPROC_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert secret_ref["name"] and secret_ref["key"]
    assert "STREAMPROC_SASL_PASSWORD" not in config

    # the model directory is the shared, read-only artifacts volume
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    models = mounts[config["STREAMPROC_MODEL_DIR"]]
    assert models.get("readOnly") is True
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claim = volumes[models["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim == manifests["PersistentVolumeClaim"]["metadata"]["name"]

    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]

    annotations = pod["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    assert annotations.get("prometheus.io/port") == str(web_port)
    assert annotations.get("prometheus.io/path") == METRICS_PATH


def test_service_exposes_the_web_port(
    manifests: dict[str, dict[str, Any]], config: dict[str, str]
) -> None:
    service = manifests["Service"]
    pod_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    web_port = int(config["STREAMPROC_WEB_PORT"])
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    container_ports = {p["name"]: p["containerPort"] for p in _container(manifests)["ports"]}
    target = port["targetPort"]
    assert container_ports.get(target, target) == web_port
    assert port["port"] == web_port
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(web_port)
    assert annotations["prometheus.io/path"] == METRICS_PATH


def test_keda_scales_on_the_workers_own_lag(
    manifests: dict[str, dict[str, Any]], config: dict[str, str]
) -> None:
    scaled = manifests["ScaledObject"]["spec"]
    deployment = manifests["Deployment"]
    auth = manifests["TriggerAuthentication"]

    assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert scaled["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    # a replica beyond the partition count owns no partition
    assert scaled["maxReplicaCount"] == int(config["STREAMPROC_INPUT_PARTITIONS"])
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"]
    if "fallback" in scaled:
        assert scaled["fallback"]["replicas"] <= scaled["maxReplicaCount"]

    (trigger,) = [t for t in scaled["triggers"] if t["type"] == "kafka"]
    meta = trigger["metadata"]
    assert meta["topic"] == config["STREAMPROC_INPUT_TOPIC"]
    assert meta["consumerGroup"] == config["STREAMPROC_APP_ID"]  # Faust's group is the app id
    assert meta["bootstrapServers"] == config["STREAMPROC_BOOTSTRAP_SERVERS"]
    # One worker's measured rate at its latency target x that target (docs/results/bench-sched)
    bench = BenchResults.from_json(
        json.loads((ROOT / "docs" / "results" / "bench-sched" / "bench.json").read_text())
    )
    (held,) = [t.held_eps for t in bench.targets if t.held_eps is not None]
    target_s = float(config["STREAMPROC_LATENCY_TARGET_MS"]) / 1000
    assert int(meta["lagThreshold"]) == round(held * target_s), (held, target_s)
    assert meta.get("allowIdleConsumers", "false") == "false"

    protocol = config.get("STREAMPROC_SECURITY_PROTOCOL", "PLAINTEXT")
    if protocol.startswith("SASL"):
        mechanism = config["STREAMPROC_SASL_MECHANISM"]
        assert meta["sasl"] == mechanism.lower().replace("scram-sha-", "scram_sha")
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
        env = {e["name"]: e for e in _container(manifests)["env"]}
        for parameter, variable in (("username", "SASL_USERNAME"), ("password", "SASL_PASSWORD")):
            secret = env[ENV_PREFIX + variable]["valueFrom"]["secretKeyRef"]
            assert (refs[parameter]["name"], refs[parameter]["key"]) == (
                secret["name"],
                secret["key"],
            ), f"KEDA and the worker must read the same {parameter}"
    assert meta.get("tls", "disable") == ("enable" if protocol.endswith("SSL") else "disable")


def test_keda_and_the_worker_trust_the_same_ca(
    manifests: dict[str, dict[str, Any]], config: dict[str, str]
) -> None:
    (trigger,) = manifests["ScaledObject"]["spec"]["triggers"]
    refs = {
        r["parameter"]: r for r in manifests["TriggerAuthentication"]["spec"]["secretTargetRef"]
    }
    if trigger["metadata"].get("tls") != "enable":
        assert "ca" not in refs
        return
    ca = refs["ca"]
    # the worker's STREAMPROC_SSL_CAFILE is that Secret key, mounted
    container = _container(manifests)
    volumes = {v["name"]: v for v in manifests["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    cafile = config["STREAMPROC_SSL_CAFILE"]
    mounted = [
        (m, volumes[m["name"]]["secret"])
        for m in container["volumeMounts"]
        if "secret" in volumes[m["name"]] and cafile.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert len(mounted) == 1, "STREAMPROC_SSL_CAFILE must lie in one mounted Secret"
    mount, secret = mounted[0]
    assert secret["secretName"] == ca["name"]
    items = {item["path"]: item["key"] for item in secret["items"]}
    assert items[cafile.removeprefix(mount["mountPath"].rstrip("/") + "/")] == ca["key"]


def test_disruption_budget_covers_the_workers_one_at_a_time(
    manifests: dict[str, dict[str, Any]],
) -> None:
    budget = manifests["PodDisruptionBudget"]["spec"]
    pod_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    # minAvailable would block draining the node of the single replica KEDA may leave
    assert budget == {"maxUnavailable": 1, "selector": budget["selector"]}


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (its `kustomize` builds the kustomizations offline)")
    return kubectl


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    built = subprocess.run(
        [_kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def test_kustomizations_build(manifests: dict[str, dict[str, Any]]) -> None:
    kinds = sorted(doc["kind"] for doc in _kustomize(K8S))
    assert kinds == sorted(manifests)


def test_monitoring_scrapes_the_workers_and_ships_the_dashboard_to_grafanas_sidecar(
    manifests: dict[str, dict[str, Any]], dashboard: dict[str, Any]
) -> None:
    built = {doc["kind"]: doc for doc in _kustomize(K8S / "monitoring")}
    assert set(built) == {"PodMonitor", "ConfigMap"}
    monitor = built["PodMonitor"]["spec"]
    pod_labels = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert monitor["selector"]["matchLabels"].items() <= pod_labels.items()
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in _container(manifests)["ports"]}
    assert endpoint.get("path", "/metrics") == METRICS_PATH

    configmap = built["ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (content,) = configmap["data"].values()
    assert json.loads(content) == dashboard  # generated from the file compose mounts
    kubernetes_validate = _kubernetes_validate()
    kubernetes_validate.validate(configmap, KUBERNETES_VERSION, strict=True)


# --------------------------------------------------------------------------- Grafana
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (label matchers, ranges, groupings, calls removed)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = _GROUPING.sub(" ", e)
    names = set()
    for match in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?", e):
        ident, call = match.group(1), match.group(2)
        if call or ident.lower() in _KEYWORDS:
            continue
        names.add(ident)
    return names


def test_promql_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, job) (rate(a_bucket{job=~"$job", x="y{z}"}'
        "[$__rate_interval]))) / ignoring(x) b_total or vector(0) + on(instance) c"
    )
    assert promql_metric_names(expr) == {"a_bucket", "b_total", "c"}


def _exposed_names() -> set[str]:
    """Every sample name a StreamMetrics registry can expose."""
    names = set()
    for family in StreamMetrics().registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads((GRAFANA / "dashboards" / "streamproc.json").read_text()))


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows nest theirs


def test_dashboard_is_well_formed(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and len(dashboard["uid"]) <= 40
    assert 36 <= dashboard["schemaVersion"] <= 41
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    # panels do not overlap on the 24-column grid
    cells: dict[tuple[int, int], str] = {}
    for panel in _panels(dashboard):
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_panel_queries_streamproc_metrics_only(dashboard: dict[str, Any]) -> None:
    known = _exposed_names()
    for panel in _panels(dashboard):
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert panel.get("datasource", {}).get("type") == "prometheus", title
        assert panel.get("targets"), f"{title}: no queries"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), title
        for t in panel["targets"]:
            assert t.get("datasource", panel["datasource"])["type"] == "prometheus", title
            names = promql_metric_names(t["expr"])
            assert names, f"{title}: {t['expr']!r} selects no metric"
            unknown = names - known
            assert not unknown, f"{title}: {sorted(unknown)} are not StreamMetrics metrics"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = (
                variable["query"]["query"]
                if isinstance(variable["query"], dict)
                else variable["query"]
            )
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            assert inner, query
            assert promql_metric_names(inner.group(1)) <= known, query


def test_dashboard_shows_what_operations_asked_for(dashboard: dict[str, Any]) -> None:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    joined = "\n".join(exprs)
    assert "streamproc_consumer_lag" in joined  # lag
    assert re.search(
        r"by \(topic, partition\) \(streamproc_consumer_lag", joined
    )  # … per partition
    assert re.search(r"rate\(streamproc_events_consumed_total", joined)  # throughput in
    assert re.search(r"rate\(streamproc_predictions_produced_total", joined)  # throughput out
    assert "streamproc_batch_size_bucket" in joined and "streamproc_batch_target_size" in joined
    for q in ("0.5", "0.95", "0.99"):  # latency percentiles from the histogram
        assert (
            f"histogram_quantile({q}, sum by (le) (rate(streamproc_event_latency_seconds_bucket"
            in joined
        )
    assert re.search(r"sum by \(reason\) \(rate\(streamproc_dead_letters_total", joined)
    assert "streamproc_inference_seconds_bucket" in joined
    assert "streamproc_model_info" in joined
    assert "process_resident_memory_bytes" in joined  # memory per worker
    assert "time() - max by (instance) (streamproc_last_batch_timestamp_seconds" in joined


def test_grafana_provisioning_points_at_the_dashboard(dashboard: dict[str, Any]) -> None:
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == source["uid"]
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "streamproc.yml").read_text()
    )
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


# --------------------------------------------------------------------------- Prometheus
def _scrape_ports(job: dict[str, Any]) -> list[int]:
    ports = [int(sd["port"]) for sd in job.get("dns_sd_configs", [])]
    for static in job.get("static_configs", []):
        ports += [int(target.rsplit(":", 1)[1]) for target in static["targets"]]
    return ports


def test_prometheus_scrapes_the_workers_web_port() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    worker = jobs["streamproc"]
    assert worker.get("metrics_path", "/metrics") == METRICS_PATH
    ports = _scrape_ports(worker)
    assert ports and all(port == DEFAULT_WEB_PORT for port in ports), ports
    # host.docker.internal: always down on Linux (a hand-run worker listens on loopback), and on
    # Docker Desktop the compose worker's published port again (every series twice)
    assert "host.docker.internal" not in yaml.safe_dump(config)
    assert re.fullmatch(r"\d+[smh]", config["global"]["scrape_interval"])


def test_prometheus_config_and_dashboard_queries_pass_promtool(
    dashboard: dict[str, Any], tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool is not installed: `make install-tools` (Debian: apt-get install prometheus)"
        )
    check = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # every dashboard query, with Grafana's variables filled in, as recording rules: promtool
    # parses each expression
    rules = []
    for i, panel in enumerate(_panels(dashboard)):
        for j, t in enumerate(panel.get("targets", [])):
            expr = t["expr"].replace("$__rate_interval", "1m").replace("$job", ".*")
            rules.append(
                {"record": f"dashboard:panel{i}:query{j}", "expr": expr.replace("$instance", ".*")}
            )
    rule_file = tmp_path / "dashboard-rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = subprocess.run(
        [promtool, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_network_policy_admits_only_the_web_port_and_leaves_kafka_open(
    manifests: dict[str, dict[str, Any]],
) -> None:
    policy = manifests["NetworkPolicy"]["spec"]
    pod = manifests["Deployment"]["spec"]["template"]["metadata"]["labels"]
    selector = policy["podSelector"]["matchLabels"]
    assert selector and all(pod.get(k) == v for k, v in selector.items()), "selects the workers"
    assert policy["policyTypes"] == ["Ingress"], "egress (to Kafka) must stay open"
    (rule,) = policy["ingress"]
    assert rule["from"], "an empty 'from' would admit everyone"
    ports = {p["name"]: p["containerPort"] for p in _container(manifests)["ports"]}
    assert [p["port"] for p in rule["ports"]] == ["http"] and ports["http"] == Settings().web_port


def test_docker_compose_validates_the_compose_file() -> None:
    """``docker-compose config`` (Debian's docker-compose, no Docker engine needed) parses and
    validates docker-compose.yml against the Compose schema, interpolation included."""
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail(
            "docker-compose is not installed: `make install-tools` "
            "(Debian: apt-get install docker-compose)"
        )
    check = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    services = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "--services"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert {"kafka", "worker"} <= set(services), services
