"""``python -m streamproc.tools.probe [PATH]``: exit 0 when the local worker's PATH answers 200.

The container image's HEALTHCHECK: the slim image has no curl, and the port comes from the same
settings the worker reads (``STREAMPROC_WEB_PORT``), so the probe and the worker never disagree.
It always asks 127.0.0.1 — the worker listens there whether it binds loopback or 0.0.0.0.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from streamproc.errors import StreamprocError
from streamproc.settings import load_settings

__all__ = ["probe"]


def probe(path: str = "/livez", *, port: int | None = None, timeout_s: float = 3.0) -> str | None:
    """None when ``http://127.0.0.1:<port><path>`` answers 200, else why not (one line)."""
    port = load_settings().web_port if port is None else port
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return None if response.status == 200 else f"{url}: HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}"
    except (OSError, urllib.error.URLError) as exc:
        return f"{url}: {exc}"


def main(argv: list[str]) -> int:
    try:
        problem = probe(argv[0] if argv else "/livez")
    except StreamprocError as exc:  # e.g. an invalid STREAMPROC_WEB_PORT
        problem = str(exc)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
