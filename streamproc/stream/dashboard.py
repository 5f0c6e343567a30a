"""The worker's read-only web pages: Prometheus metrics, the live dashboard, health checks.

:func:`register_web` adds them to a Faust app's own web server (``faust.web``, aiohttp), on the
worker's web port:

============================  ======================================================================
``GET /metrics``              the :class:`StreamMetrics` registry, Prometheus text format 0.0.4
``GET /dashboard/``           the live page (``streamproc/resources/dashboard.html``, no CDN)
``GET /dashboard``            redirects to ``/dashboard/``
``GET /dashboard/data.json``  :meth:`StreamMetrics.snapshot`, polled by the page once a second
``GET /healthz``              ``{"status": "ok", …}`` once the web server is up
``GET /livez``                ``{"status": "alive", …}``: the process and its event loop run (the
                              handler answering proves the loop turns)
``GET /readyz``               200 ``{"status": "ready", …}`` only when the pipeline is started and
                              not failed and work is not stuck (records outstanding with nothing
                              settled for ``STREAMPROC_READY_STALL_S``); ``reason`` ``ok``, or
                              ``standby`` with no partitions assigned; else 503 with ``reason``
                              (``failed``, ``not_started``, ``stalled``) and ``detail``
============================  ======================================================================

The readiness decision is :func:`assess_readiness`: pure, tested apart from the server.

Only GET (and HEAD) are routed; anything else gets 405. We do not use Faust's
``setup_prometheus_sensors``: it serves the *global* default registry on ``/metrics``. Instead,
with ``faust_sensors=True`` (the default), Faust's own sensor metrics (``faust_*``: messages
received, send latency, rebalances, commit latency, …) are registered into our registry through
``FaustMetrics.create`` + ``PrometheusMonitor``, so one scrape gets both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import faust
from faust import web
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

from streamproc.stream.metrics import CONTENT_TYPE, StreamMetrics

__all__ = [
    "DASHBOARD_PATH",
    "DATA_PATH",
    "HEALTH_PATH",
    "LIVE_PATH",
    "METRICS_PATH",
    "READY_PATH",
    "Readiness",
    "assess_readiness",
    "register_web",
]

METRICS_PATH = "/metrics"
DASHBOARD_PATH = "/dashboard/"
DATA_PATH = "/dashboard/data.json"
HEALTH_PATH = "/healthz"
LIVE_PATH = "/livez"
READY_PATH = "/readyz"

_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the worker should receive traffic (``/readyz``), and why."""

    ready: bool
    reason: str  # "ok" | "standby" | "failed" | "not_started" | "topic_missing" | "stalled"
    detail: str
    assigned_partitions: int
    outstanding: int
    buffered: int
    stalled_for_s: float
    stall_after_s: float

    def body(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not_ready",
            "reason": self.reason,
            "detail": self.detail,
            "assigned_partitions": self.assigned_partitions,
            "outstanding": self.outstanding,
            "buffered": self.buffered,
            "stalled_for_s": round(self.stalled_for_s, 3),
            "stall_after_s": self.stall_after_s,
        }


def assess_readiness(
    *,
    started: bool,
    failed: bool,
    assigned_partitions: int,
    outstanding: int,
    buffered: int,
    stalled_for_s: float,
    stall_after_s: float,
    missing_topics: Collection[str] = (),
) -> Readiness:
    """Ready only when the pipeline runs and is not stuck (a standby without partitions is ready).

    ``outstanding``: records taken from Kafka and not settled yet (buffered, in inference or
    awaiting the broker's acknowledgement); ``stalled_for_s``: how long they have been
    outstanding with nothing settling (0 when none are). A worker that has nothing to do is
    ready; one holding records that stopped moving for more than ``stall_after_s`` is not.
    ``missing_topics``: subscribed topics the consumer's metadata has no partition of; while
    there are any, the group cannot assign them, so no member is a standby that could take over.
    """

    def verdict(ready: bool, reason: str, detail: str) -> Readiness:
        return Readiness(
            ready,
            reason,
            detail,
            assigned_partitions,
            outstanding,
            buffered,
            stalled_for_s,
            stall_after_s,
        )

    if failed:
        return verdict(False, "failed", "the pipeline failed: the worker is stopping")
    if not started:
        return verdict(False, "not_started", "the pipeline has not started yet")
    if missing_topics:
        return verdict(
            False,
            "topic_missing",
            "subscribed topics missing from the broker's metadata: "
            + ", ".join(sorted(missing_topics)),
        )
    if assigned_partitions <= 0:
        # A group member without partitions is a healthy standby (more workers than partitions,
        # or a surge pod mid-rollout): not ready would stall rollouts at replicas = partitions.
        return verdict(True, "standby", "no input partitions assigned (a standby group member)")
    if outstanding > 0 and stalled_for_s > stall_after_s:
        return verdict(
            False,
            "stalled",
            f"{outstanding} records outstanding ({buffered} buffered), nothing settled for "
            f"{stalled_for_s:.1f}s (STREAMPROC_READY_STALL_S={stall_after_s:g})",
        )
    return verdict(
        True,
        "ok",
        f"{assigned_partitions} partitions assigned, {outstanding} records outstanding",
    )


@cache
def dashboard_html() -> str:
    """The live page, read once from the package's resources."""
    return (resources.files("streamproc") / "resources" / "dashboard.html").read_text("utf-8")


def register_web(
    app: faust.App,
    metrics: StreamMetrics,
    *,
    faust_sensors: bool = True,
    readiness: Callable[[], Readiness] | None = None,
    model_info: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Add ``/metrics``, ``/dashboard/``, ``/dashboard/data.json``, ``/healthz``, ``/livez`` and
    ``/readyz`` to ``app``.

    Call before the app starts. With ``faust_sensors``, also replace ``app.monitor`` by a
    :class:`PrometheusMonitor` writing Faust's sensor metrics (prefix ``faust_``) into
    ``metrics.registry``; an app whose monitor already is one is left as it is.
    ``readiness`` assesses the worker for ``/readyz``; without one (no pipeline in this process)
    ``/readyz`` answers 503 ``not_started``. ``model_info`` (the serving version, the
    ``STREAMPROC_MODEL`` spec, the directory hot reload watches or None) goes into ``/readyz`` as
    ``model``.
    """
    html = dashboard_html()
    started = time.monotonic()

    if faust_sensors and not isinstance(app.monitor, PrometheusMonitor):
        app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(metrics.registry, "faust"))

    class Metrics(web.View):
        """Prometheus exposition of the worker's registry."""

        async def get(self, request: web.Request) -> web.Response:
            headers = {"Content-Type": CONTENT_TYPE, **_NO_STORE}
            return self.bytes(metrics.exposition(), headers=headers)

    class Dashboard(web.View):
        """The live page (HTML, CSS and JS inline; it polls ``data.json``)."""

        async def get(self, request: web.Request) -> web.Response:
            return self.html(html, headers=dict(_NO_STORE))

    class DashboardRedirect(web.View):
        """``/dashboard`` → ``/dashboard/`` (the page fetches ``data.json`` relative to itself)."""

        async def get(self, request: web.Request) -> web.Response:
            return self.text("", status=308, headers={"Location": DASHBOARD_PATH})

    class DashboardData(web.View):
        """The snapshot the live page renders."""

        async def get(self, request: web.Request) -> web.Response:
            return self.json(metrics.snapshot(), headers=dict(_NO_STORE))

    class Health(web.View):
        """Startup: the web server is up (``/livez`` and ``/readyz`` say more)."""

        async def get(self, request: web.Request) -> web.Response:
            body: dict[str, Any] = {
                "status": "ok",
                "app": app.conf.id,
                "uptime_s": round(time.monotonic() - started, 3),
            }
            return self.json(body, headers=dict(_NO_STORE))

    class Live(web.View):
        """Liveness: this handler running proves the process and its event loop are alive."""

        async def get(self, request: web.Request) -> web.Response:
            body = {"status": "alive", "uptime_s": round(time.monotonic() - started, 3)}
            return self.json(body, headers=dict(_NO_STORE))

    class Ready(web.View):
        """Readiness: 200 or 503, with the reason (see :func:`assess_readiness`)."""

        async def get(self, request: web.Request) -> web.Response:
            if readiness is None:
                body: dict[str, Any] = {
                    "status": "not_ready",
                    "reason": "not_started",
                    "detail": "no pipeline in this process",
                }
                return self.json(body, status=503, headers=dict(_NO_STORE))
            verdict = readiness()
            status = 200 if verdict.ready else 503
            body = verdict.body()
            if model_info is not None:
                body["model"] = model_info()
            return self.json(body, status=status, headers=dict(_NO_STORE))

    for path, view, name in (
        (METRICS_PATH, Metrics, "streamproc_metrics"),
        (DASHBOARD_PATH, Dashboard, "streamproc_dashboard"),
        (DASHBOARD_PATH.rstrip("/"), DashboardRedirect, "streamproc_dashboard_redirect"),
        (DATA_PATH, DashboardData, "streamproc_dashboard_data"),
        (HEALTH_PATH, Health, "streamproc_healthz"),
        (LIVE_PATH, Live, "streamproc_livez"),
        (READY_PATH, Ready, "streamproc_readyz"),
    ):
        app.page(path, name=name)(view)
