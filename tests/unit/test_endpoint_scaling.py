"""Target tracking of an Endpoint's variant over time: a fake clock, plain numbers."""

from __future__ import annotations

from kubemaker.api.endpoint import AutoScaling
from kubemaker.planners.endpoint_scaling import (
    Decision,
    ScalingPolicy,
    ScalingState,
    decide,
    next_check_seconds,
)

POLICY = ScalingPolicy(
    min_capacity=1, max_capacity=10, target=50, scale_in_cooldown=300, scale_out_cooldown=60
)
ZERO_POLICY = ScalingPolicy(
    min_capacity=0, max_capacity=10, target=50, scale_in_cooldown=300, scale_out_cooldown=60
)


class Timeline:
    """Calls decide() as the controller does, keeping the state it returns."""

    def __init__(self, policy: ScalingPolicy, state: ScalingState) -> None:
        self.policy = policy
        self.state = state

    def at(self, now: float, ipm: float | None, held: int = 0) -> Decision:
        decision = decide(
            self.policy, self.state, invocations_per_minute=ipm, held_requests=held, now=now
        )
        self.state = decision.state
        return decision


def test_load_step_scales_out_further_during_its_cooldown_and_in_after_cooldown() -> None:
    line = Timeline(POLICY, ScalingState(desired=2, last_traffic_at=0))

    steady = line.at(0, 100.0)
    assert (steady.desired, steady.direction) == (2, "none")
    assert (
        steady.reason == "100.0 invocations/min over 2 instances, target 50/instance -> 2 instances"
    )

    step = line.at(30, 120.0)
    assert (step.desired, step.direction) == (3, "out")
    assert (
        step.reason == "120.0 invocations/min over 2 instances, target 50/instance -> 3 instances"
    )
    assert step.state == ScalingState(desired=3, last_scale_out_at=30, last_traffic_at=30)

    # The first interval saw the load step only in part: a larger scale-out goes ahead
    # during the cooldown, as Application Auto Scaling lets it.
    larger = line.at(60, 400.0)
    assert (larger.desired, larger.direction) == (8, "out")
    assert larger.reason == (
        "400.0 invocations/min over 3 instances, target 50/instance -> 8 instances"
    )
    assert larger.state.last_scale_out_at == 60
    assert line.at(90, 400.0).direction == "none"

    # Load drops: no scale-in during the scale-out's cooldown (max of both cooldowns).
    early = line.at(100, 60.0)
    assert (early.desired, early.direction) == (8, "none")
    assert early.reason == (
        "60.0 invocations/min over 8 instances, target 50/instance -> 2 instances; "
        "scale-in cooldown ends in 260 s, staying at 8"
    )
    assert line.at(359, 60.0).desired == 8

    scale_in = line.at(360, 60.0)
    assert (scale_in.desired, scale_in.direction) == (2, "in")  # straight to the value
    assert scale_in.state == ScalingState(
        desired=2, last_scale_out_at=60, last_scale_in_at=360, last_traffic_at=360
    )

    again = line.at(370, 10.0)
    assert (again.desired, again.direction) == (2, "none")
    assert again.reason.endswith("-> 1 instance; scale-in cooldown ends in 290 s, staying at 2")

    # A scale-out is not held back by the scale-in cooldown.
    burst = line.at(380, 450.0)
    assert (burst.desired, burst.direction) == (9, "out")


def test_disable_scale_in_keeps_the_capacity() -> None:
    policy = ScalingPolicy(
        min_capacity=1,
        max_capacity=10,
        target=50,
        scale_in_cooldown=0,
        scale_out_cooldown=0,
        disable_scale_in=True,
    )
    line = Timeline(policy, ScalingState(desired=4, last_traffic_at=0))
    decision = line.at(1000, 10.0)
    assert (decision.desired, decision.direction) == (4, "none")
    assert decision.reason == (
        "10.0 invocations/min over 4 instances, target 50/instance -> 1 instance; "
        "scale-in is disabled, staying at 4"
    )
    assert line.at(1001, 260.0).desired == 6  # out still works


def test_bounds_min_and_max() -> None:
    line = Timeline(POLICY, ScalingState(desired=2, last_traffic_at=0))
    top = line.at(0, 5000.0)
    assert (top.desired, top.direction) == (10, "out")
    assert top.reason == (
        "5000.0 invocations/min over 2 instances, target 50/instance -> 10 instances"
    )
    bottom = line.at(10_000, 0.0)
    assert (bottom.desired, bottom.direction) == (1, "in")  # min 1, not 0
    assert (
        bottom.reason == "0.0 invocations/min over 10 instances, target 50/instance -> 1 instance"
    )


def test_changed_bounds_apply_at_once_despite_cooldowns() -> None:
    state = ScalingState(desired=1, last_scale_out_at=99, last_scale_in_at=99, last_traffic_at=99)
    raised = ScalingPolicy(min_capacity=3, max_capacity=10, target=50)
    decision = decide(raised, state, invocations_per_minute=10.0, held_requests=0, now=100)
    assert (decision.desired, decision.direction) == (3, "out")
    assert decision.reason == "minCapacity is 3 -> 3 instances"
    assert decision.state.last_scale_out_at == 100

    lowered = ScalingPolicy(min_capacity=1, max_capacity=2, target=50, disable_scale_in=True)
    state = ScalingState(desired=5, last_scale_in_at=99, last_traffic_at=99)
    decision = decide(lowered, state, invocations_per_minute=900.0, held_requests=0, now=100)
    assert (decision.desired, decision.direction) == (2, "in")
    assert decision.reason == "maxCapacity is 2 -> 2 instances"


def test_zero_only_after_the_scale_in_cooldown_without_traffic() -> None:
    line = Timeline(ZERO_POLICY, ScalingState(desired=1, last_traffic_at=0))
    quiet = line.at(100, 0.0)
    assert (quiet.desired, quiet.direction) == (1, "none")
    assert quiet.reason == (
        "0.0 invocations/min over 1 instance, target 50/instance -> 1 instance "
        "(0 after 200 s more without traffic)"
    )
    assert quiet.state.last_traffic_at == 0
    assert next_check_seconds(ZERO_POLICY, quiet.state, 100) == 200

    # A trickle of traffic restarts the quiet time.
    assert line.at(200, 0.5).desired == 1
    assert line.state.last_traffic_at == 200
    assert line.at(499, 0.0).desired == 1

    zero = line.at(500, 0.0)
    assert (zero.desired, zero.direction) == (0, "in")
    assert zero.reason == "no invocations for 300 s -> 0 instances"
    assert zero.state == ScalingState(desired=0, last_scale_in_at=500, last_traffic_at=200)

    stays = line.at(600, 0.0)
    assert (stays.desired, stays.direction) == (0, "none")
    assert next_check_seconds(ZERO_POLICY, stays.state, 600) == 200  # scale-in cooldown


def test_zero_is_never_reached_with_scale_in_disabled() -> None:
    policy = ScalingPolicy(min_capacity=0, max_capacity=3, target=50, disable_scale_in=True)
    state = ScalingState(desired=1, last_traffic_at=0)
    decision = decide(policy, state, invocations_per_minute=0.0, held_requests=0, now=10_000)
    assert (decision.desired, decision.direction) == (1, "none")
    assert (
        decision.reason
        == "no invocations for 10000 s -> 0 instances; scale-in is disabled, staying at 1"
    )


def test_scale_from_zero_on_held_requests_ignores_cooldowns() -> None:
    # Just scaled out and in: both cooldowns run, yet a held request gets an instance now.
    state = ScalingState(desired=0, last_scale_out_at=995, last_scale_in_at=999, last_traffic_at=0)
    decision = decide(ZERO_POLICY, state, invocations_per_minute=None, held_requests=2, now=1000)
    assert (decision.desired, decision.direction) == (1, "out")
    assert decision.reason == "2 requests held for a variant at 0 instances -> 1 instance"
    assert decision.state == ScalingState(
        desired=1, last_scale_out_at=1000, last_scale_in_at=999, last_traffic_at=1000
    )


def test_scale_from_zero_on_invocations_goes_to_the_computed_count() -> None:
    state = ScalingState(desired=0, last_scale_in_at=999, last_traffic_at=0)
    decision = decide(ZERO_POLICY, state, invocations_per_minute=180.0, held_requests=0, now=1000)
    assert (decision.desired, decision.direction) == (4, "out")
    assert decision.reason == "180.0 invocations/min for a variant at 0 instances -> 4 instances"
    one = decide(ZERO_POLICY, state, invocations_per_minute=None, held_requests=1, now=1000)
    assert one.reason == "1 request held for a variant at 0 instances -> 1 instance"


def test_missing_metrics_change_nothing() -> None:
    state = ScalingState(desired=3, last_scale_out_at=10, last_traffic_at=10)
    decision = decide(POLICY, state, invocations_per_minute=None, held_requests=0, now=5000)
    assert decision == Decision(
        desired=3,
        direction="none",
        reason="invocation metrics are missing; staying at 3 instances",
        state=state,
    )


def test_quiet_time_starts_when_the_scaler_first_looks() -> None:
    state = ScalingState(desired=1)  # a new variant: no traffic seen yet
    decision = decide(ZERO_POLICY, state, invocations_per_minute=0.0, held_requests=0, now=50)
    assert decision.desired == 1
    assert decision.state.last_traffic_at == 50


def test_exact_multiples_do_not_round_up() -> None:
    line = Timeline(POLICY, ScalingState(desired=1, last_traffic_at=0))
    assert line.at(0, 150.0).desired == 3
    # 0.1 + 0.2 style noise: 3 * 50.000000000001 is still 3 instances.
    assert line.at(1000, 150.00000000001).desired == 3


def test_next_check_is_the_end_of_the_running_cooldown() -> None:
    state = ScalingState(desired=3, last_scale_out_at=100, last_traffic_at=100)
    assert next_check_seconds(POLICY, state, 130) == 270  # scale-in after a scale-out
    assert next_check_seconds(POLICY, state, 200) == 200
    assert next_check_seconds(POLICY, state, 400) is None


def test_state_round_trips_through_the_status() -> None:
    state = ScalingState(
        desired=2, last_scale_out_at=1_700_000_000, last_scale_in_at=None, last_traffic_at=1.5
    )
    stored = state.to_status()
    assert stored == {
        "desiredInstanceCount": 2,
        "lastScaleOutTime": "2023-11-14T22:13:20Z",
        "lastTrafficTime": "1970-01-01T00:00:01.500000Z",
    }
    assert ScalingState.from_status(stored, desired=7) == state
    assert ScalingState.from_status(None, desired=7) == ScalingState(desired=7)
    assert ScalingState.from_status({"lastScaleInTime": "garbage"}, desired=1) == ScalingState(1)


def test_policy_from_the_api() -> None:
    scaling = AutoScaling.model_validate(
        {
            "minCapacity": 0,
            "maxCapacity": 5,
            "targetInvocationsPerInstance": 120.5,
            "scaleInCooldown": 600,
            "disableScaleIn": True,
        }
    )
    assert ScalingPolicy.from_api(scaling) == ScalingPolicy(
        min_capacity=0,
        max_capacity=5,
        target=120.5,
        scale_in_cooldown=600,
        scale_out_cooldown=60,
        disable_scale_in=True,
    )
    cpu = AutoScaling.model_validate({"maxCapacity": 5, "targetCpuUtilization": 70})
    assert ScalingPolicy.from_api(cpu) is None
