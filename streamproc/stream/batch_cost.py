"""What a batch of ``n`` events costs the model: ``a + b·n`` seconds, fitted robustly over recent
batches (:class:`BatchCostModel`). Pure logic, like the controller in
:mod:`streamproc.stream.batching` that sizes batches by it.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["BatchCostModel"]


class BatchCostModel:
    """Batch duration ≈ ``a + b·size``, fitted over recent batches of every size class.

    Why per size class: the slope ``b`` is only identifiable from batches of different sizes, and a
    quiet hour of single events must not erase what the last burst taught about big batches. So the
    last ``window`` batches are kept per power-of-two size class (1, 2–3, 4–7, …), which also keeps
    the fit balanced across sizes instead of dominated by whichever size ran most.

    Why robust least squares: one GC pause or a noisy neighbour must not double the predicted cost
    of every later batch, so residuals beyond ``huber_k`` robust standard deviations (relative to
    the prediction, as the noise of model calls is roughly multiplicative) are down-weighted
    (Huber IRLS). Why a prior: before any batch both coefficients are unknown, and while every
    batch seen has (about) one size the slope is; the prior fills in exactly what the data cannot
    identify — both coefficients before data, the slope until sizes at least 2x apart are seen.
    """

    _MIN_SLOPE_S = 1e-9  # a batch must cost *something* per event, or sizes grow without bound
    _MIN_RELATIVE_NOISE = 0.02  # floor of the robust scale of relative residuals

    def __init__(
        self,
        *,
        prior_a_s: float,
        prior_b_s: float,
        window: int = 16,
        huber_k: float = 1.345,
        irls_iterations: int = 1,
    ) -> None:
        if not (prior_a_s >= 0.0 and math.isfinite(prior_a_s)):
            raise ValueError(f"prior_a_s must be finite and >= 0, got {prior_a_s}")
        if not (prior_b_s > 0.0 and math.isfinite(prior_b_s)):
            raise ValueError(f"prior_b_s must be finite and > 0, got {prior_b_s}")
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if huber_k <= 0.0:
            raise ValueError(f"huber_k must be > 0, got {huber_k}")
        if irls_iterations < 1:
            raise ValueError(f"irls_iterations must be >= 1, got {irls_iterations}")
        self._prior = (prior_a_s, prior_b_s)
        self._huber_k = huber_k
        self._irls_iterations = irls_iterations
        self._window = window
        self._by_size_class: dict[int, deque[tuple[int, float]]] = {}
        self._a, self._b = prior_a_s, prior_b_s
        self._largest_recent = 0

    @property
    def coefficients(self) -> tuple[float, float]:
        """``(a seconds, b seconds/event)``: the prior until batches are observed."""
        return self._a, self._b

    @property
    def largest_recent_size(self) -> int:
        """The largest batch the fit uses (0 before any): how far the fit has been tested."""
        return self._largest_recent

    def predict(self, size: int) -> float:
        """Predicted duration of a batch of ``size`` events, in seconds."""
        return self._a + self._b * size

    def observe(self, size: int, duration_s: float) -> None:
        """Add one batch to its size class's window and refit."""
        size_class = size.bit_length() - 1
        batches = self._by_size_class.get(size_class)
        if batches is None:
            batches = self._by_size_class[size_class] = deque(maxlen=self._window)
        batches.append((size, duration_s))
        top_class = self._by_size_class[max(self._by_size_class)]
        self._largest_recent = max(size for size, _ in top_class)
        self._a, self._b = self._fit()

    def _fit(self) -> tuple[float, float]:
        """Huber IRLS, warm-started from the previous fit.

        Refitting after every batch spreads the reweighting iterations over successive batches, so
        one or two per batch converge like a full IRLS while keeping the worker's hot path cheap.
        """
        prior_a, prior_b = self._prior
        batches = [batch for group in self._by_size_class.values() for batch in group]
        if not batches:
            return prior_a, prior_b
        sizes = [float(size) for size, _ in batches]
        durations = [duration for _, duration in batches]
        slope_known = max(sizes) >= 2.0 * min(sizes)
        a, b = self._a, self._b
        for _ in range(self._irls_iterations):
            weights = self._huber_weights(sizes, durations, a, b)
            a, b = _weighted_line_fit(
                sizes, durations, weights, fixed_slope=None if slope_known else prior_b
            )
            b = max(b, self._MIN_SLOPE_S)
        return a, b

    def _huber_weights(
        self, sizes: list[float], durations: list[float], a: float, b: float
    ) -> list[float]:
        # a >= 0, b > 0 and x >= 1, so the prediction a + b·x is positive
        relative = [y / (a + b * x) - 1.0 for x, y in zip(sizes, durations, strict=True)]
        # MAD → standard deviation, floored: timings are never exact to better than a few percent,
        # and a zero scale (a perfect fit so far) would let the next outlier through at full weight
        scale = max(1.4826 * _median([abs(r) for r in relative]), self._MIN_RELATIVE_NOISE)
        limit = self._huber_k * scale
        return [1.0 if -limit <= r <= limit else limit / abs(r) for r in relative]


def _weighted_line_fit(
    xs: list[float], ys: list[float], weights: list[float], *, fixed_slope: float | None
) -> tuple[float, float]:
    """Weighted least squares ``y ≈ a + b·x`` with ``a >= 0`` (``b = fixed_slope`` if given)."""
    s0 = s1 = s2 = t0 = t1 = 0.0
    for x, y, w in zip(xs, ys, weights, strict=True):
        wx = w * x
        s0 += w
        s1 += wx
        s2 += wx * x
        t0 += w * y
        t1 += wx * y
    det = s0 * s2 - s1 * s1
    if fixed_slope is not None or det <= 1e-12 * s0 * s2:
        b = fixed_slope if fixed_slope is not None else t1 / s2
    else:
        b = (s0 * t1 - s1 * t0) / det
    a = (t0 - b * s1) / s0
    if a < 0.0:  # a negative fixed cost is noise: refit through the origin
        a = 0.0
        if fixed_slope is None:
            b = t1 / s2
    return a, b


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if not ordered:
        return 0.0
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
