"""matplotlib, when installed (the ``plots`` extra): reports draw their figures with it.

Serving never needs it, so it is not a dependency of the package itself (the worker image leaves
it out). A report written without it says so once and keeps its tables.
"""

from __future__ import annotations

import importlib.util
import logging
from types import ModuleType

__all__ = ["pyplot"]

log = logging.getLogger(__name__)


def pyplot(what: str) -> ModuleType | None:
    """``matplotlib.pyplot`` on the file-only Agg backend, or None (logged) if matplotlib is
    missing; ``what`` names the figure that is then skipped."""
    if importlib.util.find_spec("matplotlib") is None:
        log.warning(
            "%s skipped: matplotlib is not installed (pip install 'streamproc[plots]')", what
        )
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
