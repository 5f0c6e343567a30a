"""The contenders ``streamproc bench`` compares, and the sweeps it runs them through."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONTENDERS",
    "EXPLODED_P99_MS",
    "FIXED_POLICIES",
    "FULL_RATES",
    "QUICK_CONTENDERS",
    "QUICK_RATES",
    "Contender",
]

#: A p99 above this means the contender has stopped keeping up (10x the default 100 ms target).
EXPLODED_P99_MS = 1000.0


@dataclass(frozen=True)
class Contender:
    name: str
    model: str  # student | teacher | passthrough
    policy: str  # adaptive | fixed:SIZE:WINDOW_S
    description: str
    ingress: str = "batched"  # batched | stream (Faust's per-event stream: the old path)
    model_threads: int | None = None  # None: the run's --model-threads
    runtime: str = "auto"  # auto (what the artifact names) | onnxruntime | torch
    event_loop: str = "asyncio"  # asyncio | uvloop
    switch_interval_s: float | None = None  # None: the run's --switch-interval
    egress: str = "librdkafka"  # librdkafka | faust (STREAMPROC_EGRESS: the producer of outputs)
    isolation: str = "process"  # process | thread (STREAMPROC_MODEL_ISOLATION)


CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        Contender("passthrough", "passthrough", "adaptive", "floor: worker with no model"),
        Contender(
            "passthrough-stream",
            "passthrough",
            "adaptive",
            "no model, Faust's per-event stream ingress (before batched ingress)",
            ingress="stream",
        ),
        Contender(
            "passthrough-faust-egress",
            "passthrough",
            "adaptive",
            "no model, outputs through Faust's aiokafka producer (before librdkafka egress)",
            egress="faust",
        ),
        Contender("adaptive", "student", "adaptive", "adaptive batching, student"),
        Contender(
            "adaptive-thread",
            "student",
            "adaptive",
            "adaptive batching, student in the worker's inference thread (the old way)",
            isolation="thread",
        ),
        Contender(
            "adaptive-faust-egress",
            "student",
            "adaptive",
            "adaptive batching, student, outputs through Faust's aiokafka producer",
            egress="faust",
        ),
        Contender(
            "adaptive-stream",
            "student",
            "adaptive",
            "adaptive batching, student, Faust's per-event stream ingress",
            ingress="stream",
        ),
        Contender(
            "adaptive-t2",
            "student",
            "adaptive",
            "adaptive batching, student, 2 model threads",
            model_threads=2,
        ),
        Contender(
            "adaptive-torch",
            "student",
            "adaptive",
            "adaptive batching, student in eager PyTorch (the runtime before ONNX Runtime)",
            runtime="torch",
        ),
        Contender(
            "adaptive-uvloop",
            "student",
            "adaptive",
            "adaptive batching, student, uvloop event loop",
            event_loop="uvloop",
        ),
        Contender(
            "adaptive-si1ms",
            "student",
            "adaptive",
            "adaptive batching, student, GIL switch interval 1 ms (Python's default: 5 ms)",
            switch_interval_s=0.001,
        ),
        Contender("take64", "student", "fixed:64:0.05", "take(64, within=50 ms), student"),
        Contender("take256", "student", "fixed:256:0.2", "take(256, within=200 ms), student"),
        Contender("per-event", "student", "fixed:1:0", "per-event, student"),
        Contender("teacher-per-event", "teacher", "fixed:1:0", "per-event, fp32 teacher"),
    )
}
FIXED_POLICIES = ("per-event", "take64", "take256")  # what "the best fixed policy" ranges over

FULL_RATES = (25, 50, 100, 250, 500, 1000, 1500, 2000, 3000, 4500, 6000, 8000)
QUICK_RATES = (50, 250)
QUICK_CONTENDERS = ("passthrough", "adaptive", "take64", "per-event")
