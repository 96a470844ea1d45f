"""The escalation chain: a pure policy fed by alert events and time (table tests)."""

from __future__ import annotations

import json

import pytest

from cloud_bridge.notify.chain import RETRY_DELAYS_S, ChainState, Escalation, Send
from cloud_bridge.notify.config import Step

T0 = 1_800_000_000.0
ON_CALL = Step(
    index=0, after_s=0, channels=("astreinte",), severities=frozenset({"critical", "high"})
)
CENTRE = Step(index=1, after_s=600, channels=("centre",), severities=frozenset({"critical"}))
REMIND = Step(index=2, after_s=60, channels=("phones",), repeat_s=300)
FAMILY = Step(index=3, after_s=1200, channels=("famille",), types=frozenset({"fall", "sos"}))
DESIGN = (ON_CALL, CENTRE)


def run(
    steps: tuple[Step, ...], script: list[tuple[float, str, str]], polls: list[float]
) -> list[tuple[float, int, int]]:
    """Feed events at their times, poll at `polls`: (t, step, attempt) sent."""
    chain = Escalation(steps)
    sent: list[tuple[float, int, int]] = []
    events = sorted(script)
    for t in polls:
        while events and events[0][0] <= t:
            at, what, arg = events.pop(0)
            if what == "raise":
                alert_type, severity = arg.split("/")
                chain.raised("a-0001", alert_type, severity, T0 + at)
            else:
                chain.stopped("a-0001", what, T0 + at)
        sent += [(t, s.step, s.attempt) for s in chain.due(T0 + t)]
    return sent


EVERY_S = [float(t) for t in range(2001)]


@pytest.mark.parametrize(
    ("steps", "script", "polls", "expected"),
    [
        # the DESIGN.md example: on-call at once, the centre after 10 min for a critical alert
        (DESIGN, [(0, "raise", "fall/critical")], EVERY_S, [(0, 0, 0), (600, 1, 0)]),
        # acknowledged at 5 min: the centre is never reached
        (DESIGN, [(0, "raise", "fall/critical"), (300, "acknowledged", "")], EVERY_S, [(0, 0, 0)]),
        # acknowledged at the very second the step is due: the ack wins (events come first)
        (DESIGN, [(0, "raise", "fall/critical"), (600, "acknowledged", "")], EVERY_S, [(0, 0, 0)]),
        # a high alert goes to the on-call staff only
        (DESIGN, [(0, "raise", "inactivity/high")], EVERY_S, [(0, 0, 0)]),
        # a warning reaches nobody
        (DESIGN, [(0, "raise", "low_battery/warning")], EVERY_S, []),
        # raised high, then critical at 700 s: the centre's delay (from the start) has passed
        (
            DESIGN,
            [(0, "raise", "inactivity/high"), (700, "raise", "inactivity/critical")],
            EVERY_S,
            [(0, 0, 0), (700, 1, 0)],
        ),
        # raised again at the same severity: nothing sent twice
        (
            DESIGN,
            [(0, "raise", "fall/critical"), (10, "raise", "fall/critical")],
            EVERY_S,
            [(0, 0, 0), (600, 1, 0)],
        ),
        # the gateway cancelled it (the person got up) before the centre
        (DESIGN, [(0, "raise", "fall/critical"), (30, "cancelled", "")], EVERY_S, [(0, 0, 0)]),
        # a reminder every 5 min from the first minute, until acknowledged at 1000 s
        (
            (REMIND,),
            [(0, "raise", "sos/critical"), (1000, "acknowledged", "")],
            EVERY_S,
            [(60, 2, 0), (360, 2, 1), (660, 2, 2), (960, 2, 3)],
        ),
        # a step for some types only
        ((FAMILY,), [(0, "raise", "inactivity/critical")], EVERY_S, []),
        ((FAMILY,), [(0, "raise", "sos/critical")], EVERY_S, [(1200, 3, 0)]),
        # steps fire in order even when polled late (the hub was busy for 15 min)
        (DESIGN, [(0, "raise", "fall/critical")], [900.0], [(900, 0, 0), (900, 1, 0)]),
        # a late poll over several reminders sends one, not a burst
        ((REMIND,), [(0, "raise", "sos/critical")], [0.0, 960.0, 1000.0], [(960, 2, 3)]),
    ],
)
def test_steps_fire_in_order_after_their_delay_unless_acknowledged(
    steps: tuple[Step, ...],
    script: list[tuple[float, str, str]],
    polls: list[float],
    expected: list[tuple[float, int, int]],
) -> None:
    assert run(steps, script, polls) == expected


def test_each_step_fires_within_a_second_of_its_delay_with_a_fast_clock() -> None:
    """Polled every 0.25 s on a fake clock: every send lands within 1 s of its due time."""
    steps = (ON_CALL, REMIND, CENTRE, FAMILY)
    chain = Escalation(steps)
    chain.raised("a-0002", "fall", "critical", T0)
    seen: list[tuple[float, Send]] = []
    now = T0
    while now < T0 + 1300:
        seen += [(now, s) for s in chain.due(now)]
        now += 0.25
    for at, send in seen:
        step = steps[[s.index for s in steps].index(send.step)]
        due = T0 + step.after_s + send.attempt * step.repeat_s
        assert 0 <= at - due < 1.0, (send, at - due)
    assert [(s.step, s.attempt) for _, s in seen] == [
        (0, 0),
        (2, 0),
        (2, 1),
        (1, 0),
        (2, 2),
        (2, 3),
        (3, 0),
        (2, 4),
    ]


def test_the_state_is_data_a_restarted_hub_resumes_without_sending_twice() -> None:
    chain = Escalation(DESIGN)
    chain.raised("a-0003", "fall", "critical", T0)
    assert [s.step for s in chain.due(T0 + 1)] == [0]
    stored = json.dumps([s.to_dict() for s in chain.states()])  # what a store keeps
    # the hub restarts at +5 min
    restarted = Escalation(DESIGN, [ChainState.from_dict(d) for d in json.loads(stored)])
    assert restarted.due(T0 + 300) == []
    assert restarted.next_due() == T0 + 600
    assert [(s.step, s.attempt) for s in restarted.due(T0 + 600)] == [(1, 0)]
    # and a restart after the centre was reached sends nothing again
    again = Escalation(DESIGN, [ChainState.from_dict(s.to_dict()) for s in restarted.states()])
    assert again.due(T0 + 5000) == []
    assert again.next_due() is None


def test_a_failed_send_is_offered_again_with_backoff_then_given_up() -> None:
    chain = Escalation(DESIGN)
    chain.raised("a-0004", "sos", "critical", T0)
    [send] = chain.due(T0)
    now, retries = T0, []
    for delay in RETRY_DELAYS_S:
        at = chain.failed(send, now)
        assert at == now + delay
        assert chain.due(at - 0.5) == []
        [send] = chain.due(at)
        assert (send.step, send.attempt) == (0, 0)
        retries.append(send.retry)
        now = at
    assert retries == [1, 2, 3, 4, 5]
    assert chain.failed(send, now) is None  # given up on this attempt...
    assert [s.step for s in chain.due(T0 + 600)] == [1]  # ...the next step still comes


def test_a_retry_survives_a_restart_and_an_ack_cancels_it() -> None:
    chain = Escalation(DESIGN)
    chain.raised("a-0005", "fall", "critical", T0)
    [send] = chain.due(T0)
    chain.failed(send, T0 + 1)  # mail server down
    restored = Escalation(DESIGN, [ChainState.from_dict(s.to_dict()) for s in chain.states()])
    assert restored.next_due() == T0 + 1 + RETRY_DELAYS_S[0]
    assert [s.retry for s in restored.due(T0 + 20)] == [1]
    restored.failed(Send("a-0005", 0, 0, ("astreinte",), retry=1), T0 + 20)
    restored.stopped("a-0005", "acknowledged", T0 + 30)
    assert restored.due(T0 + 5000) == []
    assert restored.failed(send, T0 + 5000) is None
    state = restored.state("a-0005")
    assert state is not None
    assert (state.stopped, state.stopped_at) == ("acknowledged", T0 + 30)


def test_an_acknowledged_alert_raised_again_stays_stopped_and_bad_reasons_are_refused() -> None:
    chain = Escalation(DESIGN)
    chain.raised("a-0006", "fall", "high", T0)
    chain.due(T0)
    chain.stopped("a-0006", "acknowledged", T0 + 10)
    chain.raised("a-0006", "fall", "critical", T0 + 20)
    assert chain.due(T0 + 700) == []
    assert chain.stopped("unknown", "resolved", T0) is None
    with pytest.raises(ValueError, match="stop reason"):
        chain.stopped("a-0006", "forgotten", T0)
    chain.forget("a-0006")
    assert chain.states() == []


def test_a_retry_goes_only_to_the_channels_that_failed() -> None:
    both = Step(index=0, after_s=0, channels=("astreinte", "phones"))
    chain = Escalation((both,), retry_delays_s=(1.0,))
    chain.raised("a-0007", "fall", "critical", T0)
    [send] = chain.due(T0)
    assert send.channels == ("astreinte", "phones")
    assert chain.failed(send, T0, channels=("astreinte",)) == T0 + 1
    restored = Escalation(
        (both,), [ChainState.from_dict(s.to_dict()) for s in chain.states()], retry_delays_s=(1.0,)
    )
    [again] = restored.due(T0 + 1)
    assert (again.channels, again.retry) == (("astreinte",), 1)
    assert restored.failed(again, T0 + 1) is None  # one retry configured: given up
