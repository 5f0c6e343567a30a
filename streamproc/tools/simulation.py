"""A deterministic discrete-event simulation of the worker's batching loop, on a fake clock.

Why: the batching controller's promise — low latency at low load, high throughput under backlog —
is a claim about queues, and queues are best tested by simulation: thousands of events in
milliseconds, no sleeping, the same numbers on every run.

The model is the worker's loop exactly (see :mod:`streamproc.stream.batching`): events arrive in
Kafka at the given times; the consumer moves them into an in-memory buffer of ``buffer_limit``
events, while batches run too (instantly, or at poll ticks every ``fetch_interval_s``); one
inference server runs one batch at a time. When the server is free and the buffer non-empty, the
policy decides ``(size, wait_s)``; the server waits until the buffer holds ``size`` events or
``wait_s`` has passed, takes ``min(size, buffered)`` events (FIFO), and runs them for
``cost(size)`` seconds. An event's latency is its batch's completion time minus its arrival time
in Kafka (its producer timestamp), so time spent as lag counts.

Noise uses common random numbers: the multiplicative noise of a batch is drawn once per *event*
(seeded) and a batch uses the draw of its first event, so two policies that form the same batch
get the same duration, and differences between them come from the policies, not from the dice.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamproc.stream.batching import BatchPolicy

__all__ = [
    "BatchRecord",
    "DecisionSample",
    "SimulationResult",
    "burst_arrivals",
    "compare_policies",
    "format_table",
    "linear_cost",
    "merge_arrivals",
    "percentile",
    "poisson_arrivals",
    "simulate",
]

BatchCost = Callable[[int], float]
"""Seconds a batch of ``size`` events takes on the inference server."""


# --- Arrival schedules ---------------------------------------------------------------------------
def poisson_arrivals(
    rate_per_s: float, duration_s: float, seed: int = 0, *, start_s: float = 0.0
) -> list[float]:
    """Arrival times of a Poisson process (exponential gaps) in ``[start_s, start_s + duration_s)``.

    Seeded, so every policy in a comparison sees exactly the same arrivals.
    """
    if not (rate_per_s > 0.0 and math.isfinite(rate_per_s)):
        raise ValueError(f"rate_per_s must be finite and > 0, got {rate_per_s}")
    if not (duration_s >= 0.0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s}")
    rng = random.Random(seed)
    times: list[float] = []
    t = start_s + rng.expovariate(rate_per_s)
    while t < start_s + duration_s:
        times.append(t)
        t += rng.expovariate(rate_per_s)
    return times


def burst_arrivals(backlog: int, at_s: float) -> list[float]:
    """``backlog`` events all arriving at ``at_s``: a producer catching up, or a worker restart."""
    if backlog < 0:
        raise ValueError(f"backlog must be >= 0, got {backlog}")
    if not (at_s >= 0.0 and math.isfinite(at_s)):
        raise ValueError(f"at_s must be finite and >= 0, got {at_s}")
    return [float(at_s)] * backlog


def merge_arrivals(*schedules: Iterable[float]) -> list[float]:
    """One sorted schedule from several, e.g. steady Poisson load plus a burst."""
    return sorted(t for schedule in schedules for t in schedule)


def linear_cost(a_s: float, b_s: float) -> BatchCost:
    """``size -> a_s + b_s·size``: a fixed per-call cost plus a per-event cost (Beam's model)."""
    if not (a_s >= 0.0 and b_s >= 0.0 and math.isfinite(a_s) and math.isfinite(b_s)):
        raise ValueError(f"a_s and b_s must be finite and >= 0, got {a_s}, {b_s}")

    def cost(size: int) -> float:
        return a_s + b_s * size

    return cost


# --- Results -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BatchRecord:
    """One batch: when it started, how many events it ran and for how long."""

    start_s: float
    size: int
    duration_s: float
    waited_s: float  # time between the decision and the start


@dataclass(frozen=True, slots=True)
class DecisionSample:
    """The queue as the policy saw it at one decision, and what it decided."""

    time_s: float
    buffered: int
    lag: int
    oldest_age_s: float
    decided_size: int
    decided_wait_s: float


@dataclass
class SimulationResult:
    """Per-event latencies plus the batch and queue history of one simulated run."""

    arrivals_s: list[float]
    completions_s: list[float]
    batches: list[BatchRecord]
    decisions: list[DecisionSample]
    latencies_s: list[float] = field(init=False, repr=False)
    _sorted_latencies: list[float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.latencies_s = [c - a for a, c in zip(self.arrivals_s, self.completions_s, strict=True)]
        self._sorted_latencies = sorted(self.latencies_s)

    def latency_percentile(self, q: float) -> float:
        """Latency percentile in seconds, ``q`` in [0, 100] (linear interpolation)."""
        return percentile(self._sorted_latencies, q, presorted=True)

    @property
    def p50_s(self) -> float:
        return self.latency_percentile(50)

    @property
    def p95_s(self) -> float:
        return self.latency_percentile(95)

    @property
    def p99_s(self) -> float:
        return self.latency_percentile(99)

    @property
    def max_s(self) -> float:
        return self._sorted_latencies[-1] if self._sorted_latencies else 0.0

    @property
    def throughput_per_s(self) -> float:
        """Events completed per second, from the first arrival to the last completion."""
        if not self.arrivals_s:
            return 0.0
        span = self.completions_s[-1] - self.arrivals_s[0]
        return len(self.arrivals_s) / span if span > 0 else math.inf

    @property
    def mean_batch_size(self) -> float:
        return len(self.arrivals_s) / len(self.batches) if self.batches else 0.0

    def drain_time_s(self, after_s: float) -> float:
        """Time from ``after_s`` until every event that arrived by then has completed.

        With a burst at ``after_s`` this is the time to drain the burst (and what came before it).
        """
        arrived = bisect.bisect_right(self.arrivals_s, after_s)
        if arrived == 0:
            return 0.0
        return max(0.0, max(self.completions_s[:arrived]) - after_s)

    def lag_over_time(self) -> list[tuple[float, int]]:
        """``(time, events still in Kafka)`` at each decision."""
        return [(d.time_s, d.lag) for d in self.decisions]

    def batch_sizes_over_time(self) -> list[tuple[float, int]]:
        """``(start time, size)`` of each batch."""
        return [(b.start_s, b.size) for b in self.batches]

    def summary(self) -> dict[str, float]:
        """The headline numbers, in seconds and events/s."""
        return {
            "events": float(len(self.arrivals_s)),
            "batches": float(len(self.batches)),
            "mean_batch_size": self.mean_batch_size,
            "max_batch_size": float(max((b.size for b in self.batches), default=0)),
            "p50_s": self.p50_s,
            "p95_s": self.p95_s,
            "p99_s": self.p99_s,
            "max_s": self.max_s,
            "throughput_per_s": self.throughput_per_s,
            "max_lag": float(max((d.lag for d in self.decisions), default=0)),
        }


def percentile(values: Sequence[float], q: float, *, presorted: bool = False) -> float:
    """The ``q``-th percentile (0–100), numpy's linear interpolation; 0.0 for no values.

    ``presorted`` is accepted for callers that sort once for several percentiles (numpy
    partitions anyway).
    """
    del presorted
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    return float(np.percentile(values, q)) if len(values) else 0.0


# --- The simulator -------------------------------------------------------------------------------
def simulate(
    arrivals_s: Iterable[float],
    policy: BatchPolicy,
    cost: BatchCost,
    *,
    buffer_limit: int = 4096,
    fetch_interval_s: float = 0.0,
    cost_noise: float = 0.0,
    seed: int = 0,
) -> SimulationResult:
    """Run ``policy`` over ``arrivals_s`` until every event has completed.

    ``buffer_limit``: the consumer's in-memory bound (``max_buffered_events``); the rest is lag.
    ``fetch_interval_s``: 0 fetches as soon as there is room; > 0 only at poll ticks.
    ``cost_noise``: sigma of a mean-one log-normal factor on each batch's duration (seeded).
    """
    arrivals = sorted(float(t) for t in arrivals_s)
    if arrivals and not (arrivals[0] >= 0.0 and math.isfinite(arrivals[-1])):
        raise ValueError("arrival times must be finite and >= 0")
    if buffer_limit < 1:
        raise ValueError(f"buffer_limit must be >= 1, got {buffer_limit}")
    if not (fetch_interval_s >= 0.0 and math.isfinite(fetch_interval_s)):
        raise ValueError(f"fetch_interval_s must be finite and >= 0, got {fetch_interval_s}")
    if not (cost_noise >= 0.0 and math.isfinite(cost_noise)):
        raise ValueError(f"cost_noise must be finite and >= 0, got {cost_noise}")
    return _Simulation(
        arrivals, policy, cost, buffer_limit, fetch_interval_s, cost_noise, seed
    ).run()


class _Simulation:
    """State of one run. Events are FIFO end to end, so three counters describe the queue.

    ``arrived(t)`` (from the schedule) >= ``fetched`` >= ``taken``: lag = arrived - fetched,
    buffered = fetched - taken.
    """

    def __init__(
        self,
        arrivals: list[float],
        policy: BatchPolicy,
        cost: BatchCost,
        buffer_limit: int,
        fetch_interval_s: float,
        cost_noise: float,
        seed: int,
    ) -> None:
        self.arrivals = arrivals
        self.policy = policy
        self.cost = cost
        self.buffer_limit = buffer_limit
        self.fetch_interval_s = fetch_interval_s
        self.fetched = 0
        self.taken = 0
        self.room_since = 0.0  # when the buffer last gained room (the last take)
        self.last_tick = -1  # index of the last poll tick processed (fetch_interval_s > 0)
        self.completions = [math.nan] * len(arrivals)
        self.batches: list[BatchRecord] = []
        self.decisions: list[DecisionSample] = []
        rng = random.Random(seed)
        self.noise = (
            [math.exp(cost_noise * rng.gauss(0.0, 1.0) - cost_noise**2 / 2) for _ in arrivals]
            if cost_noise > 0.0
            else None
        )

    def run(self) -> SimulationResult:
        total = len(self.arrivals)
        now = self.arrivals[0] if total else 0.0
        while self.taken < total:
            self._admit_until(now)
            if self.fetched == self.taken:  # idle: jump to the next event entering the buffer
                now = self._admit_next_group()
                continue
            buffered = self.fetched - self.taken
            lag = bisect.bisect_right(self.arrivals, now) - self.fetched
            oldest_age_s = now - self.arrivals[self.taken]
            decision = self.policy.decide(
                now=now, buffered=buffered, lag=lag, oldest_age_s=oldest_age_s
            )
            self.decisions.append(
                DecisionSample(now, buffered, lag, oldest_age_s, decision.size, decision.wait_s)
            )
            start = now
            if buffered < decision.size and decision.wait_s > 0.0:
                deadline = now + decision.wait_s
                while (
                    self.fetched - self.taken < decision.size
                    and self._next_entry_time() <= deadline
                ):
                    start = self._admit_next_group()
                if self.fetched - self.taken < decision.size:
                    start = deadline  # the window expired first
            now = self._run_batch(min(decision.size, self.fetched - self.taken), start, now)
        return SimulationResult(self.arrivals, self.completions, self.batches, self.decisions)

    def _run_batch(self, size: int, start: float, decided_at: float) -> float:
        first = self.taken
        self.taken += size
        self.room_since = start
        duration = self.cost(size) * (self.noise[first] if self.noise else 1.0)
        if not (duration >= 0.0 and math.isfinite(duration)):
            raise ValueError(f"cost({size}) returned {duration}; must be finite and >= 0")
        end = start + duration
        for i in range(first, self.taken):
            self.completions[i] = end
        self.batches.append(BatchRecord(start, size, duration, start - decided_at))
        self._admit_until(end)  # the consumer keeps fetching while the batch runs
        self.policy.record_batch(size=size, duration_s=duration, now=end)
        return end

    def _next_entry_time(self) -> float:
        """When the next event enters the buffer, given no batch starts before then."""
        if self.fetched >= len(self.arrivals) or self.fetched - self.taken >= self.buffer_limit:
            return math.inf
        earliest = max(self.arrivals[self.fetched], self.room_since)
        if self.fetch_interval_s <= 0.0:
            return earliest
        tick = max(self.last_tick + 1, math.ceil(earliest / self.fetch_interval_s - 1e-9))
        return tick * self.fetch_interval_s

    def _admit_next_group(self) -> float:
        """Move every event that enters at the next entry time into the buffer; return that time."""
        at = self._next_entry_time()
        if self.fetch_interval_s > 0.0:
            self.last_tick = round(at / self.fetch_interval_s)
        arrived = bisect.bisect_right(self.arrivals, at)
        new_fetched = min(arrived, self.taken + self.buffer_limit)
        count = new_fetched - self.fetched
        self.fetched = new_fetched
        self.policy.record_arrivals(count=count, now=at)
        return at

    def _admit_until(self, t: float) -> None:
        while self._next_entry_time() <= t:
            self._admit_next_group()


# --- Comparing policies --------------------------------------------------------------------------
def compare_policies(
    arrivals_s: Sequence[float],
    policies: Mapping[str, Callable[[], BatchPolicy]],
    cost: BatchCost,
    **simulate_kwargs: Any,
) -> dict[str, SimulationResult]:
    """Simulate each policy on the same arrivals; factories, because policies keep state."""
    return {
        name: simulate(arrivals_s, make(), cost, **simulate_kwargs)
        for name, make in policies.items()
    }


def format_table(rows: Mapping[str, SimulationResult]) -> str:
    """A plain-text table of the headline numbers, latencies in milliseconds."""
    header = f"{'policy':<24} {'p50 ms':>8} {'p99 ms':>9} {'max ms':>9} {'ev/s':>8} {'mean n':>7}"
    lines = [header]
    for name, result in rows.items():
        lines.append(
            f"{name:<24} {result.p50_s * 1e3:>8.2f} {result.p99_s * 1e3:>9.2f} "
            f"{result.max_s * 1e3:>9.1f} {result.throughput_per_s:>8.0f} "
            f"{result.mean_batch_size:>7.1f}"
        )
    return "\n".join(lines)
