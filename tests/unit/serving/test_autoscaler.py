"""The autoscaler as a state machine: samples in, replica counts out, time passed in."""

from __future__ import annotations

from typing import Any

import pytest

from modelbay.serving.autoscaler import Autoscaler, LoadSample, ScalingPolicy


def policy(**overrides: Any) -> ScalingPolicy:
    settings: dict[str, Any] = {
        "min_replicas": 1,
        "max_replicas": 8,
        "target_inflight_per_replica": 2.0,
        "scale_up_delay_s": 5.0,
        "scale_down_delay_s": 30.0,
        "idle_to_zero_s": 300.0,
    }
    return ScalingPolicy(**(settings | overrides))


def feed(scaler: Autoscaler, load: list[int], start: float = 0.0, step: float = 1.0) -> list[int]:
    """Decisions for one sample per `step` seconds; replicas follow the decisions."""
    decisions = []
    replicas = scaler.desired if scaler.desired is not None else 1
    for i, inflight in enumerate(load):
        now = start + i * step
        replicas = scaler.observe(LoadSample(now, inflight, replicas, now if inflight else None))
        decisions.append(replicas)
    return decisions


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"min_replicas": -1}, "min_replicas must be >= 0"),
        ({"min_replicas": 0, "max_replicas": 0}, "max_replicas must be >= 1"),
        ({"min_replicas": 3, "max_replicas": 2}, r"min_replicas \(3\) must be <= max_replicas"),
        ({"target_inflight_per_replica": 0.0}, "target_inflight_per_replica must be > 0"),
        ({"scale_up_delay_s": -1.0}, "scale_up_delay_s must be >= 0"),
        ({"scale_down_delay_s": float("nan")}, "scale_down_delay_s must be >= 0"),
        ({"idle_to_zero_s": -5.0}, "idle_to_zero_s must be >= 0"),
    ],
)
def test_policy_rejects_invalid_settings(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        policy(**overrides)


def test_load_sample_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        LoadSample(0.0, -1, 1)


def test_steady_load_keeps_the_replica_count() -> None:
    scaler = Autoscaler(policy())
    assert scaler.observe(LoadSample(0.0, 4, 2)) == 2
    assert feed(scaler, [4] * 100, start=1.0) == [2] * 100


def test_scale_up_waits_for_the_delay() -> None:
    scaler = Autoscaler(policy(scale_up_delay_s=5.0))
    # 10 in flight at 2 per replica needs 5 replicas, once the need has lasted 5 s.
    assert feed(scaler, [10] * 7) == [1, 1, 1, 1, 1, 5, 5]


def test_scale_up_without_delay_is_immediate() -> None:
    scaler = Autoscaler(policy(scale_up_delay_s=0.0))
    assert feed(scaler, [0, 7]) == [1, 4]


def test_scale_up_is_clamped_to_max_replicas() -> None:
    scaler = Autoscaler(policy(scale_up_delay_s=0.0, max_replicas=3))
    assert feed(scaler, [100]) == [3]


def test_scale_up_adds_only_what_the_load_needed_for_the_whole_delay() -> None:
    scaler = Autoscaler(policy(scale_up_delay_s=2.0))
    # A spike to 40 in the middle of a need for 3 replicas does not buy 20.
    assert feed(scaler, [6, 40, 6]) == [1, 1, 3]


def test_scale_down_waits_for_the_delay_and_goes_one_replica_at_a_time() -> None:
    scaler = Autoscaler(policy(scale_down_delay_s=30.0))
    scaler.observe(LoadSample(0.0, 8, 4))
    decisions = feed(scaler, [0] * 100, start=1.0)
    # Low from t=1: one replica fewer at t=31, t=61 and t=91, never below min_replicas.
    assert decisions[29] == 4
    assert decisions[30] == 3
    assert decisions[59:61] == [3, 2]
    assert decisions[89:91] == [2, 1]
    assert decisions[-1] == 1


def test_no_flapping_under_oscillating_load() -> None:
    scaler = Autoscaler(policy(scale_up_delay_s=5.0, scale_down_delay_s=30.0))
    scaler.observe(LoadSample(0.0, 4, 2))
    # Load swings between needing 4 replicas and needing 1 faster than either delay.
    load = ([8] * 3 + [0] * 3) * 50
    assert set(feed(scaler, load, start=1.0)) == {2}


def test_load_back_to_normal_cancels_a_pending_scale_down() -> None:
    scaler = Autoscaler(policy(scale_down_delay_s=10.0))
    scaler.observe(LoadSample(0.0, 4, 2))
    decisions = feed(scaler, [0] * 9 + [4] + [0] * 9, start=1.0)
    assert set(decisions) == {2}


def test_cold_start_from_zero_is_immediate() -> None:
    scaler = Autoscaler(policy(min_replicas=0, scale_up_delay_s=60.0))
    assert scaler.observe(LoadSample(0.0, 0, 0)) == 0
    assert scaler.observe(LoadSample(1.0, 1, 0, last_request_at=1.0)) == 1


def test_scale_to_zero_after_idle_and_back_on_request() -> None:
    scaler = Autoscaler(policy(min_replicas=0, idle_to_zero_s=60.0, scale_down_delay_s=10.0))
    assert scaler.observe(LoadSample(0.0, 3, 1, last_request_at=0.0)) == 1
    assert scaler.observe(LoadSample(59.0, 0, 1, last_request_at=0.0)) == 1
    assert scaler.observe(LoadSample(60.0, 0, 1, last_request_at=0.0)) == 0
    assert scaler.observe(LoadSample(61.0, 0, 0, last_request_at=0.0)) == 0
    assert scaler.observe(LoadSample(500.0, 1, 0, last_request_at=500.0)) == 1


def test_idle_deployment_keeps_one_replica_while_requests_keep_arriving() -> None:
    scaler = Autoscaler(policy(min_replicas=0, idle_to_zero_s=60.0, scale_down_delay_s=0.0))
    scaler.observe(LoadSample(0.0, 0, 2, last_request_at=0.0))
    for t in range(1, 300):
        assert scaler.observe(LoadSample(float(t), 0, 1, last_request_at=t - 30.0)) == 1


def test_requests_in_flight_prevent_scale_to_zero() -> None:
    scaler = Autoscaler(policy(min_replicas=0, idle_to_zero_s=10.0))
    scaler.observe(LoadSample(0.0, 1, 1, last_request_at=0.0))
    assert scaler.observe(LoadSample(100.0, 1, 1, last_request_at=0.0)) == 1


def test_idle_without_any_request_counts_from_the_first_sample() -> None:
    scaler = Autoscaler(policy(min_replicas=0, idle_to_zero_s=60.0))
    assert scaler.observe(LoadSample(1000.0, 0, 1)) == 1
    assert scaler.observe(LoadSample(1059.0, 0, 1)) == 1
    assert scaler.observe(LoadSample(1060.0, 0, 1)) == 0


def test_never_scales_to_zero_when_min_replicas_is_positive() -> None:
    scaler = Autoscaler(policy(min_replicas=2, idle_to_zero_s=0.0, scale_down_delay_s=0.0))
    assert feed(scaler, [0] * 10) == [2] * 10


def test_count_outside_the_policy_bounds_is_corrected_at_once() -> None:
    assert Autoscaler(policy(min_replicas=2)).observe(LoadSample(0.0, 0, 0)) == 2
    assert Autoscaler(policy(max_replicas=3)).observe(LoadSample(0.0, 0, 9)) == 3


def test_replica_being_replaced_is_no_reason_to_shrink() -> None:
    scaler = Autoscaler(policy(scale_down_delay_s=0.0))
    assert scaler.observe(LoadSample(0.0, 6, 3)) == 3
    # One replica crashed and is not counted for a moment; the decision stands.
    assert scaler.observe(LoadSample(1.0, 6, 2)) == 3


def test_same_samples_give_the_same_decisions() -> None:
    load = [0, 3, 9, 9, 9, 9, 9, 9, 1, 0, 0, 0, 0] * 20
    runs = [feed(Autoscaler(policy(scale_down_delay_s=5.0)), load) for _ in range(2)]
    assert runs[0] == runs[1]
    assert len(set(runs[0])) > 1
