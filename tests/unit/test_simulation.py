"""The simulator's mechanics, and the simulated proof that adaptive batching beats fixed policies.

The proof (issue 4, "Adaptive batching"): on steady Poisson arrivals from low load to beyond the
saturation of per-message processing, the adaptive controller's p99 latency is no worse than the
better of two fixed policies (size 1; size 64 with a 50 ms window) at every rate, and it drains a
10,000-event burst faster than size 1. Run with ``-s`` to see the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from streamproc.stream.batching import AdaptiveBatchController, BatchPolicy, FixedBatchPolicy
from streamproc.tools.simulation import (
    SimulationResult,
    burst_arrivals,
    compare_policies,
    format_table,
    linear_cost,
    merge_arrivals,
    percentile,
    poisson_arrivals,
    simulate,
)

LATENCY_TARGET_S = 0.1  # the default STREAMPROC_LATENCY_TARGET_MS
COST_NOISE = 0.2  # log-normal sigma on every batch's duration: real model calls jitter


@dataclass(frozen=True)
class CostModel:
    name: str
    a_s: float
    b_s: float

    @property
    def size1_saturation_per_s(self) -> float:
        return 1.0 / (self.a_s + self.b_s)


LIGHT = CostModel("light a=4ms b=0.15ms", 0.004, 0.00015)  # like the compressed MiniLM, measured
HEAVY = CostModel("heavy a=10ms b=1ms", 0.010, 0.001)

# From low load, through the size-1 saturation point (241/s light, 91/s heavy), to well beyond.
STEADY_CASES = [(LIGHT, rate) for rate in (20, 100, 200, 230, 300, 1000)] + [
    (HEAVY, rate) for rate in (20, 50, 80, 90, 150, 400)
]

POLICIES: dict[str, Callable[[], BatchPolicy]] = {
    "fixed size 1": lambda: FixedBatchPolicy(size=1, window_s=0.0),
    "fixed 64 / 50 ms": lambda: FixedBatchPolicy(size=64, window_s=0.05),
    "adaptive": lambda: AdaptiveBatchController(latency_target_s=LATENCY_TARGET_S),
}


def run_steady(model: CostModel, rate: float) -> dict[str, SimulationResult]:
    # ~1,500 events per run: enough for a p99 (the 15th worst), small enough to stay fast
    arrivals = poisson_arrivals(rate, duration_s=max(2.0, 1500 / rate), seed=int(rate))
    cost = linear_cost(model.a_s, model.b_s)
    return compare_policies(arrivals, POLICIES, cost, cost_noise=COST_NOISE, seed=1)


@pytest.fixture(scope="module")
def steady_results() -> dict[tuple[str, float], dict[str, SimulationResult]]:
    results = {(model.name, rate): run_steady(model, rate) for model, rate in STEADY_CASES}
    print("\n\np99 latency (ms) on steady Poisson arrivals, latency target 100 ms")
    print(f"{'cost model':<22} {'rate/s':>7} " + " ".join(f"{name:>17}" for name in POLICIES))
    for (model_name, rate), by_policy in results.items():
        cells = " ".join(f"{r.p99_s * 1e3:>17.1f}" for r in by_policy.values())
        print(f"{model_name:<22} {rate:>7.0f} {cells}")
    return results


@pytest.mark.parametrize(("model", "rate"), STEADY_CASES, ids=lambda v: getattr(v, "name", v))
def test_adaptive_p99_no_worse_than_the_better_fixed_policy(
    steady_results: dict[tuple[str, float], dict[str, SimulationResult]],
    model: CostModel,
    rate: float,
) -> None:
    results = steady_results[(model.name, rate)]
    adaptive = results["adaptive"].p99_s
    better_fixed = min(results["fixed size 1"].p99_s, results["fixed 64 / 50 ms"].p99_s)
    assert adaptive <= better_fixed, format_table(results)
    # and it keeps up: every event completes, throughput matches the offered load
    assert results["adaptive"].throughput_per_s == pytest.approx(rate, rel=0.15)


def test_at_low_load_a_lone_event_is_not_delayed(
    steady_results: dict[tuple[str, float], dict[str, SimulationResult]],
) -> None:
    results = steady_results[(LIGHT.name, 20)]
    adaptive, size1 = results["adaptive"], results["fixed size 1"]
    assert adaptive.mean_batch_size < 1.1
    assert adaptive.p50_s <= size1.p50_s
    assert all(batch.waited_s == 0.0 for batch in adaptive.batches)


def test_the_comparison_covers_both_sides_of_size1_saturation() -> None:
    for model in (LIGHT, HEAVY):
        rates = [rate for m, rate in STEADY_CASES if m is model]
        assert min(rates) < 0.25 * model.size1_saturation_per_s
        assert max(rates) > 1.5 * model.size1_saturation_per_s


@pytest.mark.parametrize(
    ("model", "steady_rate"), [(LIGHT, 100.0), (HEAVY, 40.0)], ids=["light", "heavy"]
)
def test_burst_drains_faster_than_size1_and_batches_shrink_afterwards(
    model: CostModel, steady_rate: float
) -> None:
    burst_at_s = 1.0
    arrivals = merge_arrivals(
        poisson_arrivals(steady_rate, duration_s=16.0, seed=5),  # outlasts the heavy drain
        burst_arrivals(10_000, at_s=burst_at_s),
    )
    cost = linear_cost(model.a_s, model.b_s)
    results = compare_policies(arrivals, POLICIES, cost, cost_noise=COST_NOISE, seed=2)
    drain = {name: result.drain_time_s(burst_at_s) for name, result in results.items()}
    print(f"\n\nburst of 10,000 at {steady_rate:.0f}/s steady, {model.name}: drain time (s)")
    print("  " + "  ".join(f"{name}: {seconds:.2f}" for name, seconds in drain.items()))

    assert drain["adaptive"] < drain["fixed size 1"]
    assert drain["adaptive"] <= drain["fixed 64 / 50 ms"]

    adaptive = results["adaptive"]
    assert max(adaptive.lag_over_time(), key=lambda sample: sample[1])[1] > 0  # the buffer filled
    during = [
        b.size for b in adaptive.batches if burst_at_s <= b.start_s < burst_at_s + drain["adaptive"]
    ]
    after = [b.size for b in adaptive.batches if b.start_s > burst_at_s + drain["adaptive"] + 0.5]
    assert max(during) == AdaptiveBatchController(latency_target_s=LATENCY_TARGET_S).max_size
    assert after and sum(after) / len(after) < 0.1 * max(during)


# --- Mechanics of the simulator -------------------------------------------------------------------
def test_a_lone_event_takes_one_model_call() -> None:
    result = simulate([0.5], FixedBatchPolicy(size=1, window_s=0.0), linear_cost(0.004, 0.001))
    assert result.latencies_s == [pytest.approx(0.005)]
    assert result.batch_sizes_over_time() == [(0.5, 1)]


def test_a_window_waits_for_the_batch_to_fill_or_the_window_to_close() -> None:
    policy = FixedBatchPolicy(size=3, window_s=0.05)
    cost = linear_cost(0.01, 0.0)
    filled = simulate([0.0, 0.01, 0.02, 1.0], policy, cost)
    assert filled.completions_s[:3] == [pytest.approx(0.03)] * 3  # filled at 0.02, ran 10 ms
    assert filled.completions_s[3] == pytest.approx(1.06)  # alone: window closed at 1.05
    assert [b.size for b in filled.batches] == [3, 1]
    assert filled.batches[1].waited_s == pytest.approx(0.05)


def test_buffer_bound_turns_the_rest_into_lag_and_order_is_fifo() -> None:
    arrivals = burst_arrivals(100, at_s=0.0)
    result = simulate(
        arrivals, FixedBatchPolicy(size=8, window_s=0.0), linear_cost(0.001, 0.0), buffer_limit=10
    )
    first = result.decisions[0]
    assert (first.buffered, first.lag) == (10, 90)
    assert result.completions_s == sorted(result.completions_s)
    assert sum(b.size for b in result.batches) == 100
    assert all(not math.isnan(c) for c in result.completions_s)


def test_poll_ticks_delay_entry_to_the_buffer() -> None:
    result = simulate(
        [0.001],
        FixedBatchPolicy(size=1, window_s=0.0),
        linear_cost(0.002, 0.0),
        fetch_interval_s=0.01,
    )
    assert result.batches[0].start_s == pytest.approx(0.01)
    assert result.latencies_s[0] == pytest.approx(0.011)


def test_simulation_is_deterministic_and_the_noise_is_seeded() -> None:
    arrivals = poisson_arrivals(500.0, duration_s=1.0, seed=3)
    cost = linear_cost(0.004, 0.00015)

    def run(seed: int) -> list[float]:
        policy = AdaptiveBatchController(latency_target_s=0.1)
        return simulate(arrivals, policy, cost, cost_noise=0.3, seed=seed).completions_s

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_the_simulation_feeds_the_policy_what_the_worker_would() -> None:
    class Recorder(FixedBatchPolicy):
        def __init__(self) -> None:
            super().__init__(size=2, window_s=0.0)
            self.arrived = 0
            self.ran = 0
            self.times: list[float] = []

        def record_arrivals(self, *, count: int, now: float) -> None:
            self.arrived += count
            self.times.append(now)

        def record_batch(self, *, size: int, duration_s: float, now: float) -> None:
            self.ran += size
            self.times.append(now)

    recorder = Recorder()
    arrivals = poisson_arrivals(300.0, duration_s=1.0, seed=4)
    simulate(arrivals, recorder, linear_cost(0.004, 0.001), buffer_limit=16)
    assert recorder.arrived == recorder.ran == len(arrivals)
    assert recorder.times == sorted(recorder.times)  # a fake clock that never runs backwards


def test_arrival_helpers() -> None:
    steady = poisson_arrivals(200.0, duration_s=10.0, seed=1)
    assert steady == sorted(steady) and all(0.0 <= t < 10.0 for t in steady)
    assert abs(len(steady) - 2000) < 4 * math.sqrt(2000)
    assert steady == poisson_arrivals(200.0, duration_s=10.0, seed=1)
    assert poisson_arrivals(5.0, duration_s=1.0, seed=1, start_s=3.0)[0] >= 3.0
    merged = merge_arrivals(steady, burst_arrivals(3, at_s=5.0))
    assert len(merged) == len(steady) + 3 and merged == sorted(merged)
    assert merged.count(5.0) >= 3


def test_percentiles_and_drain_time() -> None:
    assert percentile(list(range(1, 101)), 50) == pytest.approx(50.5)
    assert percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert percentile([], 99) == 0.0
    result = simulate(
        [0.0, 0.0, 2.0], FixedBatchPolicy(size=1, window_s=0.0), linear_cost(0.1, 0.0)
    )
    assert result.drain_time_s(0.0) == pytest.approx(0.2)
    assert result.max_s == pytest.approx(0.2)
    assert result.summary()["events"] == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda: poisson_arrivals(0.0, 1.0),
        lambda: poisson_arrivals(10.0, -1.0),
        lambda: burst_arrivals(-1, 0.0),
        lambda: burst_arrivals(5, -1.0),
        lambda: linear_cost(-0.001, 0.0),
        lambda: percentile([1.0], 101),
        lambda: simulate([-1.0], FixedBatchPolicy(size=1, window_s=0), linear_cost(0.001, 0)),
        lambda: simulate(
            [0.0], FixedBatchPolicy(size=1, window_s=0), linear_cost(0.001, 0), buffer_limit=0
        ),
        lambda: simulate(
            [0.0], FixedBatchPolicy(size=1, window_s=0), linear_cost(0.001, 0), cost_noise=-1
        ),
        lambda: simulate([0.0], FixedBatchPolicy(size=1, window_s=0), lambda n: -1.0),
    ],
)
def test_invalid_simulation_arguments_raise(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()
