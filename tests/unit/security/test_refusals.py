"""Refusals are audited one by one up to a cap per client and window; the rest summed up."""

from __future__ import annotations

from modelbay.security.refusals import RefusalThrottle


def test_each_client_gets_its_share_then_is_held_back_until_the_window_ends() -> None:
    throttle = RefusalThrottle(window_s=60, per_client=2, total=100)
    decisions = [throttle.admit("10.0.0.1", "auth.denied", 0.0) for _ in range(5)]
    assert decisions == [True, True, False, False, False]
    assert throttle.admit("10.0.0.2", "authz.denied", 1.0)
    assert throttle.summary(59.0) is None  # the window is not over
    summary = throttle.summary(60.0)
    assert summary is not None
    assert summary["held_back"] == 3
    assert summary["top_clients"] == {"10.0.0.1": 3}
    assert summary["actions"] == {"auth.denied": 3}
    assert throttle.admit("10.0.0.1", "auth.denied", 61.0)  # a new window


def test_all_clients_together_are_capped_too() -> None:
    throttle = RefusalThrottle(window_s=60, per_client=5, total=3)
    audited = [throttle.admit(f"10.0.0.{i}", "auth.denied", 0.0) for i in range(10)]
    assert audited.count(True) == 3
    summary = throttle.summary(0.0, final=True)
    assert summary is not None
    assert summary["held_back"] == 7
    assert summary["clients"] == 7


def test_a_window_that_held_nothing_back_has_no_summary() -> None:
    throttle = RefusalThrottle(window_s=1, per_client=5, total=100)
    throttle.admit(None, "auth.denied", 0.0)
    assert throttle.summary(5.0) is None
    assert throttle.summary(5.0, final=True) is None
