"""How many buffered events to run next, and how long at most to wait for more.

Pure logic: no Kafka, no torch, no asyncio, no clock. The worker passes ``now`` in, so the same
code runs under the real event loop and under the fake clock of
:mod:`streamproc.tools.simulation`.

The worker's loop (one inference server, one batch at a time)::

    d = policy.decide(now=..., buffered=..., lag=..., oldest_age_s=...)
    if buffered < d.size and d.wait_s > 0:
        wait until the buffer holds d.size events or d.wait_s has passed
    run min(d.size, buffered) events; policy.record_batch(size=..., duration_s=..., now=...)

and ``policy.record_arrivals(count=..., now=...)`` whenever events enter the in-memory buffer.

:class:`AdaptiveBatchController` combines four ideas:

* **Triton's default**: with nothing left in Kafka it never waits; it runs what is buffered, so a
  lone event at low load costs one model call and nothing more. With lag it waits only when the
  events it needs should arrive within the fixed cost ``a`` that a separate batch would cost, and
  never so long that the oldest buffered event would finish past the target.
* **Little's law**: to keep up with arrivals at rate λ *and* finish a backlog ``L`` within the
  latency target ``d``, the server must process ``r = λ + L/d`` events/s. A batch of ``n`` takes
  ``a + b·n`` seconds, so ``n ≥ r·(a + b·n)``, i.e. ``n ≥ r·a / (1 − r·b)``. That ``n`` (times a
  headroom factor) is the *target size*; it grows with lag and shrinks when the backlog is gone.
* **Beam BatchElements**: ``a`` and ``b`` are fitted by (Huber-robust) least squares over the
  recent batches of each power-of-two size class, and the size never grows past twice the largest
  batch observed — the fit is not trusted far beyond the sizes it has seen.
* **Clipper AIMD**: a batch may take ``share · d`` of the target (default half: an event typically
  waits for the batch in progress, then runs in the next). If a batch the controller believed would
  fit its share took longer, the latency ceiling is cut multiplicatively; batches that ran at the
  ceiling within their share raise it additively.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from streamproc.stream.batch_cost import BatchCostModel

if TYPE_CHECKING:
    from streamproc.settings import Settings

__all__ = [
    "AdaptiveBatchController",
    "BatchDecision",
    "BatchPolicy",
    "FixedBatchPolicy",
]


@dataclass(frozen=True, slots=True)
class BatchDecision:
    """What to run next.

    ``size``: run up to this many buffered events (>= 1).
    ``wait_s``: wait at most this long for the buffer to reach ``size``; 0.0 = run what is there.
    """

    size: int
    wait_s: float

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"BatchDecision.size must be >= 1, got {self.size}")
        if not (self.wait_s >= 0.0 and math.isfinite(self.wait_s)):
            raise ValueError(f"BatchDecision.wait_s must be finite and >= 0, got {self.wait_s}")


@runtime_checkable
class BatchPolicy(Protocol):
    """What the worker (and the simulator) needs from a batching policy."""

    def decide(self, *, now: float, buffered: int, lag: int, oldest_age_s: float) -> BatchDecision:
        """Choose the next batch. ``lag``: events still in Kafka, not yet fetched."""
        ...

    def record_batch(self, *, size: int, duration_s: float, now: float) -> None:
        """A batch of ``size`` events took ``duration_s``; ``now`` is when it finished."""
        ...

    def record_arrivals(self, *, count: int, now: float) -> None:
        """``count`` events entered the in-memory buffer at ``now``."""
        ...


class FixedBatchPolicy:
    """Fixed size plus a maximum wait, like faust's ``stream.take(size, within)``.

    The baseline the adaptive controller is measured against: ``size=1`` is per-message processing,
    ``size=64, window_s=0.05`` a typical hand-tuned take(). The window starts at the decision, i.e.
    when the worker is free and the buffer is non-empty, as faust's take() timer does.
    """

    def __init__(self, *, size: int, window_s: float) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        if not (window_s >= 0.0 and math.isfinite(window_s)):
            raise ValueError(f"window_s must be finite and >= 0, got {window_s}")
        self.size = size
        self.window_s = window_s

    def decide(self, *, now: float, buffered: int, lag: int, oldest_age_s: float) -> BatchDecision:
        _check_decide_arguments(buffered=buffered, lag=lag, oldest_age_s=oldest_age_s)
        return BatchDecision(size=self.size, wait_s=self.window_s)

    def record_batch(self, *, size: int, duration_s: float, now: float) -> None:
        _check_batch_arguments(size=size, duration_s=duration_s)

    def record_arrivals(self, *, count: int, now: float) -> None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")

    def __repr__(self) -> str:
        return f"FixedBatchPolicy(size={self.size}, window_s={self.window_s})"


class _ArrivalRate:
    """Events/s entering the buffer: an exponentially decayed count with a start-up correction.

    A plain exponential average would read near zero for the first ``time_constant_s`` after start;
    dividing by the decayed length of the observed span instead of ``time_constant_s`` removes that
    bias, and a floor on the span keeps the first event from reading as an infinite rate.
    """

    def __init__(self, time_constant_s: float) -> None:
        self._tau = time_constant_s
        self._decayed_count = 0.0
        self._first: float | None = None
        self._last = 0.0

    def add(self, count: int, now: float) -> None:
        if self._first is None:
            self._first = self._last = now
        elapsed = max(0.0, now - self._last)
        self._decayed_count = self._decayed_count * math.exp(-elapsed / self._tau) + count
        self._last = max(self._last, now)

    def rate(self, now: float) -> float:
        if self._first is None:
            return 0.0
        since_last = max(0.0, now - self._last)
        span = max(now - self._first, 0.1 * self._tau)
        decayed_span = self._tau * (1.0 - math.exp(-span / self._tau))
        return self._decayed_count * math.exp(-since_last / self._tau) / decayed_span


class AdaptiveBatchController:
    """Lag-adaptive batch sizing; implements :class:`BatchPolicy`. See the module docstring.

    Per decision (``a, b`` from the cost fit, ``λ`` the arrival rate, ``d`` the latency target)::

        backlog       L      = buffered + lag
        drain rate    r      = λ + L / d
        sustain size  n_s    = r·a / (1 − r·b)            (inf if r·b >= 1: nothing keeps up)
        target size   n*     = ceil(headroom · n_s)
        latency cap   n_lat  = min(floor((share·d − a) / b), AIMD ceiling)
        size limit    n_max  = min(max(n*, n_lat), max(start_size, 2 · largest recent batch))

    all clamped to ``[min_size, max_size]``. The limit lets a batch grow past its latency share only
    when the backlog needs the throughput (the biggest batch is the most efficient one).

    * No lag, or nothing worth waiting for: ``(min(n_max, buffered), 0.0)`` — run what is there.
    * Lag and fewer than ``ceil(n_s)`` buffered: events are already in Kafka, so wait for
      ``ceil(n_s)`` — but only if, at rate λ, they should arrive within ``a`` (the cost a separate
      small batch would add), for at most ``min(a, max_wait_fraction · d)``, and never beyond
      ``d − oldest_age − (a + b·ceil(n_s))``, so the oldest buffered event still finishes in time.
    """

    def __init__(
        self,
        *,
        latency_target_s: float,
        min_size: int = 1,
        max_size: int = 256,
        batch_share: float = 0.5,
        headroom: float = 1.5,
        max_wait_fraction: float = 0.02,
        aimd_cut: float = 0.25,
        aimd_step: int = 4,
        start_size: int = 16,
        fit_window: int = 16,
        rate_time_constant_s: float = 1.0,
        prior_a_s: float | None = None,
        prior_b_s: float | None = None,
    ) -> None:
        if not (latency_target_s > 0.0 and math.isfinite(latency_target_s)):
            raise ValueError(f"latency_target_s must be finite and > 0, got {latency_target_s}")
        if min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {min_size}")
        if max_size < min_size:
            raise ValueError(f"max_size ({max_size}) must be >= min_size ({min_size})")
        if not 0.0 < batch_share <= 1.0:
            raise ValueError(f"batch_share must be in (0, 1], got {batch_share}")
        if headroom < 1.0:
            raise ValueError(f"headroom must be >= 1, got {headroom}")
        if not 0.0 <= max_wait_fraction < 1.0:
            raise ValueError(f"max_wait_fraction must be in [0, 1), got {max_wait_fraction}")
        if not 0.0 < aimd_cut < 1.0:
            raise ValueError(f"aimd_cut must be in (0, 1), got {aimd_cut}")
        if aimd_step < 1:
            raise ValueError(f"aimd_step must be >= 1, got {aimd_step}")
        if start_size < 1:
            raise ValueError(f"start_size must be >= 1, got {start_size}")
        if rate_time_constant_s <= 0.0:
            raise ValueError(f"rate_time_constant_s must be > 0, got {rate_time_constant_s}")
        self.latency_target_s = latency_target_s
        self.min_size = min_size
        self.max_size = max_size
        self.batch_share = batch_share
        self.headroom = headroom
        self.max_wait_s = max_wait_fraction * latency_target_s
        self.aimd_cut = aimd_cut
        self.aimd_step = aimd_step
        self.start_size = start_size
        # Before any batch is seen, guess a model that fits ~5% of the target per call and ~0.05%
        # per event (a 64-batch at a 100 ms target: ~8 ms); real batches replace it within a few.
        self._cost = BatchCostModel(
            prior_a_s=latency_target_s / 20 if prior_a_s is None else prior_a_s,
            prior_b_s=latency_target_s / 2000 if prior_b_s is None else prior_b_s,
            window=fit_window,
        )
        self._rate = _ArrivalRate(rate_time_constant_s)
        self._ceiling = float(max_size)  # AIMD latency ceiling on the batch size
        self._target_size = min_size
        self._size_limit = min_size
        self._last_wait_s = 0.0
        self._batches = 0
        self._aimd_cuts = 0
        self._now = 0.0  # latest time seen, so stats() can report the rate without a clock

    @classmethod
    def from_settings(cls, settings: Settings) -> AdaptiveBatchController:
        """Build from the latency target and the min/max batch sizes of ``settings``."""
        return cls(
            latency_target_s=settings.latency_target_ms / 1000.0,
            min_size=settings.min_batch_size,
            max_size=settings.max_batch_size,
        )

    @property
    def cost_model(self) -> tuple[float, float]:
        """Fitted ``(a seconds, b seconds/event)`` of ``duration ≈ a + b·size``."""
        return self._cost.coefficients

    @property
    def share_s(self) -> float:
        """The part of the latency target one batch may take."""
        return self.batch_share * self.latency_target_s

    def stats(self) -> dict[str, float]:
        """Current state, for metrics and the live page."""
        a, b = self._cost.coefficients
        return {
            "latency_target_s": self.latency_target_s,
            "batch_share_s": self.share_s,
            "target_size": float(self._target_size),
            "size_limit": float(self._size_limit),
            "latency_limit": float(self._latency_limit(a, b)),
            "aimd_ceiling": self._ceiling,
            "aimd_cuts": float(self._aimd_cuts),
            "arrival_rate_per_s": self._rate.rate(self._now),
            "cost_a_s": a,
            "cost_b_s": b,
            "last_wait_s": self._last_wait_s,
            "batches_observed": float(self._batches),
        }

    def decide(self, *, now: float, buffered: int, lag: int, oldest_age_s: float) -> BatchDecision:
        _check_decide_arguments(buffered=buffered, lag=lag, oldest_age_s=oldest_age_s)
        oldest_age_s = max(0.0, oldest_age_s)  # producer clocks run ahead sometimes: treat as fresh
        self._now = max(self._now, now)
        a, b = self._cost.coefficients
        drain_rate = self._rate.rate(now) + (buffered + lag) / self.latency_target_s
        sustain_size = _size_to_sustain(drain_rate, a, b)
        target = self._clamp(self.headroom * sustain_size)
        # Beam: never trust the fit more than 2x beyond the largest batch it has seen.
        trusted = max(self.start_size, 2 * self._cost.largest_recent_size)
        limit = max(self.min_size, min(max(target, self._latency_limit(a, b)), trusted))
        target = min(target, limit)
        self._target_size, self._size_limit = target, limit

        # More events already sit in Kafka and fewer than needed to keep up are buffered: a short
        # wait may buy a batch that keeps up. Worth it only if the buffer is expected to fill
        # within the fixed cost ``a`` that a separate, smaller batch would add; so wait at most
        # ``a`` (and max_wait_s), and never so long that the oldest event finishes past the target.
        wait_for = min(self._clamp(sustain_size), limit)
        wait_s = 0.0
        if lag > 0 and buffered < wait_for:
            rate = self._rate.rate(now)
            fill_s = (wait_for - buffered) / rate if rate > 0.0 else math.inf
            slack_s = self.latency_target_s - oldest_age_s - self._cost.predict(wait_for)
            if fill_s <= a:
                wait_s = max(0.0, min(a, self.max_wait_s, slack_s))
        self._last_wait_s = wait_s
        if wait_s > 0.0:
            return BatchDecision(size=wait_for, wait_s=wait_s)
        return BatchDecision(size=min(limit, max(1, buffered)), wait_s=0.0)  # what runs now

    def record_batch(self, *, size: int, duration_s: float, now: float) -> None:
        _check_batch_arguments(size=size, duration_s=duration_s)
        self._now = max(self._now, now)
        a, b = self._cost.coefficients
        believed_to_fit = size <= self._latency_limit(a, b)
        self._cost.observe(size, duration_s)
        self._batches += 1
        if not believed_to_fit:
            return  # a deliberate drain batch, larger than the share allows: no AIMD signal
        if duration_s > self.share_s:
            cut_to = min(self._ceiling, size) * (1.0 - self.aimd_cut)
            self._ceiling = max(float(self.min_size), cut_to)
            self._aimd_cuts += 1
        elif size >= self._ceiling - self.aimd_step:
            self._ceiling = min(float(self.max_size), self._ceiling + self.aimd_step)

    def record_arrivals(self, *, count: int, now: float) -> None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        self._now = max(self._now, now)
        if count:
            self._rate.add(count, now)

    def _latency_limit(self, a: float, b: float) -> int:
        """The largest batch that the cost model and the AIMD ceiling say fits the share."""
        fits_share = (self.share_s - a) / b if self.share_s > a else 0.0
        return self._clamp(min(math.floor(fits_share), math.floor(self._ceiling)))

    def _clamp(self, size: float) -> int:
        if not math.isfinite(size):
            return self.max_size
        return max(self.min_size, min(self.max_size, math.ceil(size)))

    def __repr__(self) -> str:
        return (
            f"AdaptiveBatchController(latency_target_s={self.latency_target_s}, "
            f"min_size={self.min_size}, max_size={self.max_size})"
        )


def _size_to_sustain(rate_per_s: float, a: float, b: float) -> float:
    """Smallest batch ``n`` with ``n >= rate·(a + b·n)`` (Little's law); inf if none exists."""
    if rate_per_s <= 0.0:
        return 0.0
    if rate_per_s * b >= 1.0:
        return math.inf
    return rate_per_s * a / (1.0 - rate_per_s * b)


def _check_decide_arguments(*, buffered: int, lag: int, oldest_age_s: float) -> None:
    if buffered < 0:
        raise ValueError(f"buffered must be >= 0, got {buffered}")
    if lag < 0:
        raise ValueError(f"lag must be >= 0, got {lag}")
    if math.isnan(oldest_age_s):
        raise ValueError("oldest_age_s must be a number, got nan")


def _check_batch_arguments(*, size: int, duration_s: float) -> None:
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if not (duration_s >= 0.0 and math.isfinite(duration_s)):
        raise ValueError(f"duration_s must be finite and >= 0, got {duration_s}")
