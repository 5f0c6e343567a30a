"""The inference thread: model calls run here, never on the event loop.

One dedicated thread (the model runtime's intra-op pool inside it does the parallel work), so
batches run one after another while the event loop keeps consuming and producing. ONNX Runtime
gets its thread count when the session is built; torch's is set once, in that thread, from
``STREAMPROC_MODEL_THREADS`` — and only if torch is already loaded (an ONNX-served worker never
imports it).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["InferenceThread"]

T = TypeVar("T")


def _configure_torch(num_threads: int) -> None:
    torch = sys.modules.get("torch")
    if num_threads > 0 and torch is not None:
        torch.set_num_threads(num_threads)


class InferenceThread:
    """A single worker thread for model calls, awaited from the event loop."""

    def __init__(self, num_threads: int = 0) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="streamproc-inference",
            initializer=_configure_torch,
            initargs=(num_threads,),
        )

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
