"""The worker's read-only web pages: Prometheus metrics, the live dashboard, a health check.

:func:`register_web` adds them to a Faust app's own web server (``faust.web``, aiohttp), on the
worker's web port:

============================  ======================================================================
``GET /metrics``              the :class:`StreamMetrics` registry, Prometheus text format 0.0.4
``GET /dashboard/``           the live page (``streamproc/resources/dashboard.html``, no CDN)
``GET /dashboard``            redirects to ``/dashboard/``
``GET /dashboard/data.json``  :meth:`StreamMetrics.snapshot`, polled by the page once a second
``GET /healthz``              ``{"status": "ok", …}`` once the web server is up
============================  ======================================================================

Only GET (and HEAD) are routed; anything else gets 405. We do not use Faust's
``setup_prometheus_sensors``: it serves the *global* default registry on ``/metrics``. Instead,
with ``faust_sensors=True`` (the default), Faust's own sensor metrics (``faust_*``: messages
received, send latency, rebalances, commit latency, …) are registered into our registry through
``FaustMetrics.create`` + ``PrometheusMonitor``, so one scrape gets both.
"""

from __future__ import annotations

import time
from functools import cache
from importlib import resources
from typing import Any

import faust
from faust import web
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor

from streamproc.stream.metrics import CONTENT_TYPE, StreamMetrics

__all__ = ["DASHBOARD_PATH", "DATA_PATH", "HEALTH_PATH", "METRICS_PATH", "register_web"]

METRICS_PATH = "/metrics"
DASHBOARD_PATH = "/dashboard/"
DATA_PATH = "/dashboard/data.json"
HEALTH_PATH = "/healthz"

_NO_STORE = {"Cache-Control": "no-store"}


@cache
def dashboard_html() -> str:
    """The live page, read once from the package's resources."""
    return (resources.files("streamproc") / "resources" / "dashboard.html").read_text("utf-8")


def register_web(app: faust.App, metrics: StreamMetrics, *, faust_sensors: bool = True) -> None:
    """Add ``/metrics``, ``/dashboard/``, ``/dashboard/data.json`` and ``/healthz`` to ``app``.

    Call before the app starts. With ``faust_sensors``, also replace ``app.monitor`` by a
    :class:`PrometheusMonitor` writing Faust's sensor metrics (prefix ``faust_``) into
    ``metrics.registry``; an app whose monitor already is one is left as it is.
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
        """Liveness/readiness: the event loop answers HTTP."""

        async def get(self, request: web.Request) -> web.Response:
            body: dict[str, Any] = {
                "status": "ok",
                "app": app.conf.id,
                "uptime_s": round(time.monotonic() - started, 3),
            }
            return self.json(body, headers=dict(_NO_STORE))

    for path, view, name in (
        (METRICS_PATH, Metrics, "streamproc_metrics"),
        (DASHBOARD_PATH, Dashboard, "streamproc_dashboard"),
        (DASHBOARD_PATH.rstrip("/"), DashboardRedirect, "streamproc_dashboard_redirect"),
        (DATA_PATH, DashboardData, "streamproc_dashboard_data"),
        (HEALTH_PATH, Health, "streamproc_healthz"),
    ):
        app.page(path, name=name)(view)
