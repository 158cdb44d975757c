"""Replica count from load: a pure state machine fed samples, time passed in."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ScalingPolicy:
    """Bounds and pace of scaling for one deployment.

    ``target_inflight_per_replica`` is in the unit of ``LoadSample.inflight`` (requests
    queued plus running); ``idle_to_zero_s`` applies only when ``min_replicas`` is 0.
    """

    min_replicas: int = 1
    max_replicas: int = 1
    target_inflight_per_replica: float = 2.0
    scale_up_delay_s: float = 0.0
    scale_down_delay_s: float = 30.0
    idle_to_zero_s: float = 300.0

    def __post_init__(self) -> None:
        if self.min_replicas < 0:
            raise ValueError(f"min_replicas must be >= 0, got {self.min_replicas}")
        if self.max_replicas < 1:
            raise ValueError(f"max_replicas must be >= 1, got {self.max_replicas}")
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})"
            )
        if not self.target_inflight_per_replica > 0:
            raise ValueError(
                f"target_inflight_per_replica must be > 0, got {self.target_inflight_per_replica}"
            )
        for name in ("scale_up_delay_s", "scale_down_delay_s", "idle_to_zero_s"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class LoadSample:
    """What the loop saw at ``now``: requests queued plus running, replicas (starting ones
    included) and when the last request arrived (None if none ever did)."""

    now: float
    inflight: int
    replicas: int
    last_request_at: float | None = None

    def __post_init__(self) -> None:
        if self.inflight < 0 or self.replicas < 0:
            raise ValueError(
                f"inflight and replicas must be >= 0, got {self.inflight} and {self.replicas}"
            )


class Autoscaler:
    """Turns a sequence of ``LoadSample`` into the desired replica count, deterministically.

    The load needs ``ceil(inflight / target_inflight_per_replica)`` replicas, clamped to
    ``[max(1, min_replicas), max_replicas]``. Scaling up happens once that need has stayed
    above the current count for ``scale_up_delay_s`` and jumps to the smallest need seen
    meanwhile; scaling down happens once it has stayed below for ``scale_down_delay_s`` and
    removes one replica, each further step waiting a full delay again. A count outside the
    policy's bounds is corrected at once, as is 0 replicas with requests in flight (cold
    start: 1). With ``min_replicas`` 0, no request in flight or arriving for
    ``idle_to_zero_s`` scales to 0. The first sample's ``replicas`` seeds the count; later
    decisions build on the previous one, so a replica being replaced is no reason to shrink.
    """

    def __init__(self, policy: ScalingPolicy):
        self.policy = policy
        self._desired: int | None = None
        self._first_seen = 0.0
        self._up_since: float | None = None
        self._up_need = 0
        self._down_since: float | None = None

    @property
    def desired(self) -> int | None:
        """The last decision (None before the first sample)."""
        return self._desired

    def observe(self, sample: LoadSample) -> int:
        """The desired replica count after ``sample``."""
        if self._desired is None:
            self._desired = sample.replicas
            self._first_seen = sample.now
        self._desired = self._decide(sample, self._desired)
        return self._desired

    def _decide(self, sample: LoadSample, current: int) -> int:
        policy = self.policy
        bounded = min(max(current, policy.min_replicas), policy.max_replicas)
        if bounded != current:
            return self._settle(bounded)
        if current == 0:
            return self._settle(1 if sample.inflight > 0 else 0)
        if policy.min_replicas == 0 and self._idle_for(sample) >= policy.idle_to_zero_s:
            return self._settle(0)
        need = math.ceil(sample.inflight / policy.target_inflight_per_replica)
        need = min(max(need, 1, policy.min_replicas), policy.max_replicas)
        if need > current:
            return self._up(sample.now, need, current)
        if need < current:
            return self._down(sample.now, current)
        return self._settle(current)

    def _settle(self, replicas: int) -> int:
        self._up_since = self._down_since = None
        return replicas

    def _up(self, now: float, need: int, current: int) -> int:
        self._down_since = None
        if self._up_since is None:
            self._up_since, self._up_need = now, need
        # Add only what the load has needed for the whole delay, not a momentary peak.
        self._up_need = min(self._up_need, need)
        if now - self._up_since >= self.policy.scale_up_delay_s:
            return self._settle(self._up_need)
        return current

    def _down(self, now: float, current: int) -> int:
        self._up_since = None
        if self._down_since is None:
            self._down_since = now
        if now - self._down_since >= self.policy.scale_down_delay_s:
            self._down_since = now  # the next step needs the low load to last a delay again
            return current - 1
        return current

    def _idle_for(self, sample: LoadSample) -> float:
        if sample.inflight > 0:
            return -math.inf
        since = sample.last_request_at if sample.last_request_at is not None else self._first_seen
        return sample.now - since
