"""Unit tests of the batching policies: pure logic, fake time passed in, no Kafka, no torch."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest

from streamproc.settings import load_settings
from streamproc.stream.batch_cost import BatchCostModel
from streamproc.stream.batching import (
    AdaptiveBatchController,
    BatchDecision,
    BatchPolicy,
    FixedBatchPolicy,
)

LIGHT_A_S, LIGHT_B_S = 0.004, 0.00015  # ~ the compressed MiniLM on CPU: 4 ms + 0.15 ms/event
HEAVY_A_S, HEAVY_B_S = 0.010, 0.001


def warmed_controller(
    *,
    a_s: float = LIGHT_A_S,
    b_s: float = LIGHT_B_S,
    rate_per_s: float = 200.0,
    seconds: float = 2.0,
    **kwargs: Any,
) -> tuple[AdaptiveBatchController, float]:
    """A controller that has seen batches of every size and steady arrivals; returns it and now."""
    kwargs.setdefault("latency_target_s", 0.1)
    controller = AdaptiveBatchController(**kwargs)
    now = 0.0
    for size in (1, 2, 4, 8, 16, 32, 64, 128, 256) * 3:
        if size > controller.max_size:
            continue
        now += a_s + b_s * size
        controller.record_batch(size=size, duration_s=a_s + b_s * size, now=now)
    start = now
    while now < start + seconds:
        now += 1.0 / rate_per_s
        controller.record_arrivals(count=1, now=now)
    return controller, now


def littles_law_size(rate_per_s: float, a_s: float, b_s: float) -> float:
    """Smallest batch n with n >= rate·(a + b·n), written out again independently of the code."""
    return math.inf if rate_per_s * b_s >= 1 else rate_per_s * a_s / (1 - rate_per_s * b_s)


# --- Decisions at zero lag -----------------------------------------------------------------------
@pytest.mark.parametrize("buffered", [1, 3, 16])
def test_fresh_controller_runs_what_is_there_at_once(buffered: int) -> None:
    controller = AdaptiveBatchController(latency_target_s=0.1)
    decision = controller.decide(now=0.0, buffered=buffered, lag=0, oldest_age_s=0.0)
    assert decision.wait_s == 0.0
    assert decision.size == buffered


@pytest.mark.parametrize("buffered", [1, 7, 50, 4000])
def test_zero_lag_never_waits_even_under_load(buffered: int) -> None:
    controller, now = warmed_controller(rate_per_s=3000.0, min_size=8)
    decision = controller.decide(now=now, buffered=buffered, lag=0, oldest_age_s=0.0)
    assert decision.wait_s == 0.0
    assert min(decision.size, buffered) == min(buffered, controller.max_size)


def test_a_lone_event_is_not_delayed_even_with_a_large_min_size() -> None:
    controller, now = warmed_controller(min_size=32)
    decision = controller.decide(now=now, buffered=1, lag=0, oldest_age_s=0.0)
    assert decision.wait_s == 0.0  # the worker takes min(size, buffered) = 1 now
    assert decision.size >= 1


# --- Growing with lag ----------------------------------------------------------------------------
def test_size_grows_with_lag_toward_littles_law_and_never_above_max() -> None:
    controller, now = warmed_controller(rate_per_s=500.0, max_wait_fraction=0.0)
    a_s, b_s = controller.cost_model
    rate = controller.stats()["arrival_rate_per_s"]
    targets = []
    for lag in (0, 10, 100, 1_000, 10_000, 1_000_000):
        decision = controller.decide(now=now, buffered=8, lag=lag, oldest_age_s=0.0)
        target = controller.stats()["target_size"]
        backlog_rate = rate + (8 + lag) / controller.latency_target_s
        needed = littles_law_size(backlog_rate, a_s, b_s)
        assert target >= min(needed, controller.max_size)
        assert decision.size <= controller.max_size
        targets.append(target)
    assert targets == sorted(targets), targets
    assert targets[0] < targets[-1] == controller.max_size


def test_target_without_backlog_is_what_keeps_up_with_arrivals() -> None:
    controller, now = warmed_controller(rate_per_s=1000.0)
    controller.decide(now=now, buffered=1, lag=0, oldest_age_s=0.0)
    a_s, b_s = controller.cost_model
    rate = controller.stats()["arrival_rate_per_s"]
    needed = littles_law_size(rate + 1 / controller.latency_target_s, a_s, b_s)
    target = controller.stats()["target_size"]
    assert needed <= target <= math.ceil(controller.headroom * needed) + 1
    assert target < rate * controller.latency_target_s  # well below λ·d: no backlog to drain


def test_growth_is_at_most_twice_the_largest_batch_seen() -> None:
    controller = AdaptiveBatchController(latency_target_s=0.1, start_size=4)
    sizes = []
    now = 0.0
    for _ in range(8):
        decision = controller.decide(now=now, buffered=4096, lag=100_000, oldest_age_s=1.0)
        sizes.append(decision.size)
        duration = LIGHT_A_S + LIGHT_B_S * decision.size
        now += duration
        controller.record_batch(size=decision.size, duration_s=duration, now=now)
    assert sizes[0] == 4
    for previous, current in itertools.pairwise(sizes):
        assert current <= 2 * previous
    assert sizes[-1] == controller.max_size


def test_shrinks_back_when_the_backlog_is_gone() -> None:
    controller, now = warmed_controller(rate_per_s=200.0)
    during = controller.decide(now=now, buffered=4096, lag=50_000, oldest_age_s=2.0)
    target_during = controller.stats()["target_size"]
    after = controller.decide(now=now + 0.01, buffered=2, lag=0, oldest_age_s=0.001)
    target_after = controller.stats()["target_size"]
    assert during.size == controller.max_size
    assert after.size == 2 and after.wait_s == 0.0
    assert target_after < target_during / 10


# --- Waiting -------------------------------------------------------------------------------------
def test_waits_for_events_already_in_kafka_when_they_arrive_fast_enough() -> None:
    # 1000/s, a = 4 ms: keeping up needs batches of 5; the 2 missing ones arrive in ~2 ms < a.
    controller, now = warmed_controller(rate_per_s=1000.0, max_wait_fraction=0.5)
    decision = controller.decide(now=now, buffered=3, lag=2, oldest_age_s=0.0)
    a_s, b_s = controller.cost_model
    rate = controller.stats()["arrival_rate_per_s"]
    assert decision.size == math.ceil(littles_law_size(rate + 5 / 0.1, a_s, b_s)) == 5
    assert decision.wait_s == pytest.approx(a_s)  # never more than the fixed cost it can save


@pytest.mark.parametrize("oldest_age_s", [0.0, 0.03, 0.06, 0.09, 0.0999, 0.5])
def test_a_wait_never_pushes_the_oldest_event_past_the_target(oldest_age_s: float) -> None:
    controller, now = warmed_controller(
        a_s=HEAVY_A_S, b_s=HEAVY_B_S, rate_per_s=20_000.0, max_wait_fraction=0.9
    )
    decision = controller.decide(now=now, buffered=1, lag=5_000, oldest_age_s=oldest_age_s)
    a_s, b_s = controller.cost_model
    if decision.wait_s > 0.0:
        finish = oldest_age_s + decision.wait_s + a_s + b_s * decision.size
        assert finish <= controller.latency_target_s + 1e-9
    if oldest_age_s >= controller.latency_target_s:
        assert decision.wait_s == 0.0


def test_decisions_keep_their_invariants_on_random_inputs() -> None:
    rng = random.Random(11)
    controller = AdaptiveBatchController(latency_target_s=0.1, min_size=2, max_size=200)
    now = 0.0
    for _ in range(3000):
        now += rng.expovariate(100.0)
        controller.record_arrivals(count=rng.randint(0, 50), now=now)
        buffered, lag = rng.randint(0, 5000), rng.choice([0, rng.randint(0, 10**6)])
        age = rng.uniform(0.0, 0.2)
        decision = controller.decide(now=now, buffered=buffered, lag=lag, oldest_age_s=age)
        assert 1 <= decision.size <= 200
        if decision.wait_s > 0.0:
            a_s, b_s = controller.cost_model
            assert lag > 0 and buffered < decision.size
            assert age + decision.wait_s + a_s + b_s * decision.size <= 0.1 + 1e-9
        else:
            assert decision.size == min(max(buffered, 1), controller.stats()["size_limit"])
        size = min(decision.size, max(buffered, 1))
        duration = (0.004 + 0.0003 * size) * rng.uniform(0.8, 1.5)
        now += duration
        controller.record_batch(size=size, duration_s=duration, now=now)


def test_no_wait_when_arrivals_are_too_slow_to_fill_the_batch() -> None:
    controller, now = warmed_controller(rate_per_s=20.0, max_wait_fraction=0.5)
    decision = controller.decide(now=now, buffered=1, lag=3_000, oldest_age_s=0.0)
    assert decision.wait_s == 0.0


def test_producer_clock_ahead_is_treated_as_a_fresh_event() -> None:
    controller, now = warmed_controller()
    skewed = controller.decide(now=now, buffered=3, lag=0, oldest_age_s=-0.5)
    assert skewed == BatchDecision(size=3, wait_s=0.0)


# --- AIMD guard ----------------------------------------------------------------------------------
def test_aimd_cuts_multiplicatively_when_a_batch_exceeds_its_share() -> None:
    controller, now = warmed_controller(aimd_cut=0.25)
    assert controller.stats()["aimd_ceiling"] == controller.max_size
    before = controller.decide(now=now, buffered=256, lag=0, oldest_age_s=0.0)
    controller.record_batch(size=200, duration_s=controller.share_s * 1.6, now=now + 0.08)
    stats = controller.stats()
    assert stats["aimd_cuts"] == 1
    assert stats["aimd_ceiling"] == pytest.approx(200 * 0.75)
    after = controller.decide(now=now + 0.08, buffered=256, lag=0, oldest_age_s=0.0)
    assert after.size < before.size
    assert stats["latency_limit"] <= 150


def test_aimd_grows_additively_while_batches_at_the_ceiling_fit_the_share() -> None:
    controller, now = warmed_controller(aimd_step=4)
    controller.record_batch(size=100, duration_s=1.0, now=now)  # far over the share: cut to 75
    ceilings = [controller.stats()["aimd_ceiling"]]
    for _ in range(5):
        size = int(ceilings[-1])
        now += 0.01
        controller.record_batch(size=size, duration_s=LIGHT_A_S + LIGHT_B_S * size, now=now)
        ceilings.append(controller.stats()["aimd_ceiling"])
    assert ceilings[0] == pytest.approx(75)
    assert [b - a for a, b in itertools.pairwise(ceilings)] == [4, 4, 4, 4, 4]


def test_deliberate_drain_batches_do_not_trigger_the_aimd_cut() -> None:
    # Heavy model: 40 events fit the 50 ms share; a 256-batch (266 ms) is a drain batch.
    controller, now = warmed_controller(a_s=HEAVY_A_S, b_s=HEAVY_B_S)
    assert controller.stats()["latency_limit"] == pytest.approx(40, abs=1)
    controller.record_batch(size=256, duration_s=HEAVY_A_S + HEAVY_B_S * 256, now=now)
    assert controller.stats()["aimd_cuts"] == 0


# --- Cost model ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("a_s", "b_s"), [(LIGHT_A_S, LIGHT_B_S), (HEAVY_A_S, HEAVY_B_S)])
def test_cost_fit_recovers_a_and_b_despite_noise_and_outliers(a_s: float, b_s: float) -> None:
    rng = random.Random(7)
    controller = AdaptiveBatchController(latency_target_s=0.1)
    now = 0.0
    for _ in range(400):
        size = rng.randint(1, 256)
        duration = (a_s + b_s * size) * math.exp(rng.gauss(0.0, 0.05))
        if rng.random() < 0.05:
            duration *= 5  # GC pause / noisy neighbour
        now += duration
        controller.record_batch(size=size, duration_s=duration, now=now)
    fitted_a, fitted_b = controller.cost_model
    assert fitted_a == pytest.approx(a_s, rel=0.15)
    assert fitted_b == pytest.approx(b_s, rel=0.05)


def test_cost_model_starts_from_a_prior_and_remembers_big_batches() -> None:
    model = BatchCostModel(prior_a_s=0.005, prior_b_s=0.00005)
    assert model.coefficients == (0.005, 0.00005)
    assert model.largest_recent_size == 0
    for size in (64, 128, 256, 96, 192) * 4:
        model.observe(size, HEAVY_A_S + HEAVY_B_S * size)
    for _ in range(500):  # a quiet period of single events must not erase the slope
        model.observe(1, HEAVY_A_S + HEAVY_B_S)
    a_s, b_s = model.coefficients
    assert b_s == pytest.approx(HEAVY_B_S, rel=0.05)
    assert a_s == pytest.approx(HEAVY_A_S, rel=0.1)
    assert model.largest_recent_size == 256
    assert model.predict(100) == pytest.approx(a_s + 100 * b_s)


def test_default_prior_scales_with_the_target() -> None:
    a_s, b_s = AdaptiveBatchController(latency_target_s=0.2).cost_model
    assert a_s > 0 and b_s > 0
    assert a_s + 64 * b_s < 0.2 * 0.5  # a 64-batch is believed to fit the share before data


# --- Arrival rate --------------------------------------------------------------------------------
def test_arrival_rate_tracks_steady_arrivals_and_decays_after_silence() -> None:
    controller = AdaptiveBatchController(latency_target_s=0.1, rate_time_constant_s=1.0)
    now = 0.0
    for _ in range(1000):  # 200/s for 5 s, in fetches of 10
        now += 0.05
        controller.record_arrivals(count=10, now=now)
    assert controller.stats()["arrival_rate_per_s"] == pytest.approx(200, rel=0.1)
    controller.decide(now=now + 3.0, buffered=1, lag=0, oldest_age_s=0.0)  # 3 s of silence
    assert controller.stats()["arrival_rate_per_s"] < 200 * math.exp(-2.5)


# --- Construction, settings and validation -------------------------------------------------------
def test_from_settings_uses_target_and_bounds() -> None:
    settings = load_settings(latency_target_ms=250, min_batch_size=2, max_batch_size=128)
    controller = AdaptiveBatchController.from_settings(settings)
    assert controller.latency_target_s == pytest.approx(0.25)
    assert (controller.min_size, controller.max_size) == (2, 128)
    decision = controller.decide(now=0.0, buffered=10_000, lag=10**6, oldest_age_s=0.0)
    assert decision.size <= 128


def test_both_policies_implement_the_protocol() -> None:
    assert isinstance(AdaptiveBatchController(latency_target_s=0.1), BatchPolicy)
    assert isinstance(FixedBatchPolicy(size=64, window_s=0.05), BatchPolicy)


def test_fixed_policy_is_take_size_within() -> None:
    policy = FixedBatchPolicy(size=64, window_s=0.05)
    assert policy.decide(now=1.0, buffered=3, lag=0, oldest_age_s=0.0) == BatchDecision(64, 0.05)
    policy.record_batch(size=3, duration_s=0.01, now=1.06)
    policy.record_arrivals(count=5, now=1.07)
    assert policy.decide(now=2.0, buffered=100, lag=9, oldest_age_s=1.0) == BatchDecision(64, 0.05)


def test_stats_are_floats_for_the_metrics_page() -> None:
    controller, now = warmed_controller()
    controller.decide(now=now, buffered=5, lag=0, oldest_age_s=0.0)
    stats = controller.stats()
    expected = {"target_size", "size_limit", "arrival_rate_per_s", "cost_a_s", "cost_b_s"}
    assert expected <= stats.keys()
    assert all(isinstance(value, float) and math.isfinite(value) for value in stats.values())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"latency_target_s": 0.0},
        {"latency_target_s": -1.0},
        {"latency_target_s": math.nan},
        {"latency_target_s": math.inf},
        {"latency_target_s": 0.1, "min_size": 0},
        {"latency_target_s": 0.1, "min_size": 10, "max_size": 5},
        {"latency_target_s": 0.1, "batch_share": 0.0},
        {"latency_target_s": 0.1, "batch_share": 1.5},
        {"latency_target_s": 0.1, "headroom": 0.5},
        {"latency_target_s": 0.1, "max_wait_fraction": 1.0},
        {"latency_target_s": 0.1, "aimd_cut": 0.0},
        {"latency_target_s": 0.1, "aimd_cut": 1.0},
        {"latency_target_s": 0.1, "aimd_step": 0},
        {"latency_target_s": 0.1, "start_size": 0},
        {"latency_target_s": 0.1, "fit_window": 1},
        {"latency_target_s": 0.1, "rate_time_constant_s": 0.0},
        {"latency_target_s": 0.1, "prior_a_s": -0.001},
        {"latency_target_s": 0.1, "prior_b_s": 0.0},
    ],
)
def test_invalid_controller_arguments_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AdaptiveBatchController(**kwargs)


@pytest.mark.parametrize(
    "policy", [AdaptiveBatchController(latency_target_s=0.1), FixedBatchPolicy(size=4, window_s=0)]
)
def test_invalid_observations_raise(policy: BatchPolicy) -> None:
    with pytest.raises(ValueError):
        policy.decide(now=0.0, buffered=-1, lag=0, oldest_age_s=0.0)
    with pytest.raises(ValueError):
        policy.decide(now=0.0, buffered=1, lag=-1, oldest_age_s=0.0)
    with pytest.raises(ValueError):
        policy.decide(now=0.0, buffered=1, lag=0, oldest_age_s=math.nan)
    with pytest.raises(ValueError):
        policy.record_batch(size=0, duration_s=0.01, now=0.0)
    with pytest.raises(ValueError):
        policy.record_batch(size=1, duration_s=-0.01, now=0.0)
    with pytest.raises(ValueError):
        policy.record_batch(size=1, duration_s=math.inf, now=0.0)
    with pytest.raises(ValueError):
        policy.record_arrivals(count=-1, now=0.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 0, "window_s": 0.0},
        {"size": 1, "window_s": -0.1},
        {"size": 1, "window_s": math.inf},
    ],
)
def test_invalid_fixed_policy_arguments_raise(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FixedBatchPolicy(**kwargs)


@pytest.mark.parametrize(("size", "wait_s"), [(0, 0.0), (1, -0.001), (1, math.nan), (1, math.inf)])
def test_invalid_decisions_raise(size: int, wait_s: float) -> None:
    with pytest.raises(ValueError):
        BatchDecision(size=size, wait_s=wait_s)
