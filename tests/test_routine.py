"""Routine detector: replay fixtures with known answers, clock jumps, restart, daily summary."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterable, Iterator

import pytest

from cloud_bridge.contract import AlertType, Severity, validate_daily
from edge.commands.eval_inactivity import answer_until, raised, replay
from edge.commands.replay import load_events, rooms_of
from edge.const import MINUTE_S
from edge.detect.inactivity import RoutineDetector
from edge.detect.routine import RoutineModel, time_bin
from edge.events import Aggregate, CheckIn, Emission, Event, EventKind, Finding, Role, RoomKind
from edge.home import Thresholds
from tests.conftest import AMBIENT

H = 3600.0
DAY = 86400.0
T0 = 1_700_006_400.0  # a Wednesday 00:00 UTC
ROOMS = {
    "bedroom": RoomKind.BEDROOM,
    "bathroom": RoomKind.BATHROOM,
    "kitchen": RoomKind.KITCHEN,
    "living": RoomKind.LIVING,
    "hall": RoomKind.ENTRANCE,
}
LEARN_DAYS = 8
INACTIVITY_TYPES = {AlertType.INACTIVITY, AlertType.NO_MORNING_ACTIVITY, AlertType.BATHROOM_LONG}


def motion(room: str, t: float) -> Event:
    return Event(f"pir-{room}", EventKind.MOTION, True, t, "sim", room, ROOMS[room], Role.MOTION)


def door(t: float, opened: bool = True) -> Event:
    return Event(
        "door-hall", EventKind.OPEN, opened, t, "sim", "hall", RoomKind.ENTRANCE, Role.DOOR_ENTRANCE
    )


def _stretch(
    room: str, start: float, end: float, rng: random.Random, *, gap_min: tuple[float, float]
) -> Iterator[Event]:
    lo, hi = gap_min
    t = start
    while t < end:
        yield motion(room, t)
        t += rng.uniform(lo, hi) * MINUTE_S


def day_events(
    day: int, rng: random.Random, out: tuple[float, float] | None = (14.0, 16.0)
) -> list[Event]:
    """One ordinary day of a resident: sleep, bathroom, meals, sitting room, an outing."""
    d0 = T0 + day * DAY
    ev: list[Event] = []
    ev += _stretch("bedroom", d0, d0 + 7 * H, rng, gap_min=(25, 50))  # restless sleep
    ev += _stretch("bathroom", d0 + 7 * H, d0 + 7.3 * H, rng, gap_min=(0.5, 2))
    ev += _stretch("kitchen", d0 + 7.3 * H, d0 + 8 * H, rng, gap_min=(1, 4))
    ev += _stretch("living", d0 + 8 * H, d0 + 12 * H, rng, gap_min=(3, 15))
    ev += _stretch("kitchen", d0 + 12 * H, d0 + 12.7 * H, rng, gap_min=(1, 4))
    leave = back = d0 + 14 * H
    if out is not None:
        leave, back = d0 + out[0] * H, d0 + out[1] * H
    ev += _stretch("living", d0 + 12.7 * H, leave - 120, rng, gap_min=(3, 15))
    if out is not None:
        ev += [motion("hall", leave - 30), door(leave), door(leave + 10, False)]
        ev += [motion("hall", leave + 15)]
        ev += [door(back), door(back + 8, False), motion("hall", back + 20)]
    ev += _stretch("living", back + 60, d0 + 19 * H, rng, gap_min=(3, 15))
    ev += _stretch("kitchen", max(back + 60, d0 + 19 * H), d0 + 19.6 * H, rng, gap_min=(1, 4))
    ev += _stretch("living", max(back + 60, d0 + 19.6 * H), d0 + 22.7 * H, rng, gap_min=(3, 15))
    ev += _stretch("bathroom", d0 + 22.7 * H, d0 + 23 * H, rng, gap_min=(0.5, 2))
    ev += _stretch("bedroom", d0 + 23 * H, d0 + DAY, rng, gap_min=(25, 50))
    return sorted(ev, key=lambda e: e.at)


def history(days: int = LEARN_DAYS, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    return [e for d in range(days) for e in day_events(d, rng)]


def learned_detector(days: int = LEARN_DAYS) -> RoutineDetector:
    det = RoutineDetector(ROOMS, dt.UTC, Thresholds())
    events = history(days)
    replay(det, events, T0 + days * DAY)
    return det


def findings(emissions: Iterable[Emission]) -> list[Finding]:
    return [e for e in emissions if isinstance(e, Finding)]


def first_raise(emissions: Iterable[Emission], types: set[AlertType]) -> Finding | None:
    return next((f for f in raised(emissions) if f.type in types), None)


@pytest.fixture(scope="module")
def learned_model() -> dict:
    return learned_detector().model.to_dict()


def restore(model_doc: dict) -> RoutineDetector:
    return RoutineDetector(ROOMS, dt.UTC, Thresholds(), RoutineModel.from_dict(model_doc))


def test_learning_takes_a_week_with_fixed_limits_meanwhile() -> None:
    det = learned_detector(days=5)
    assert det.learning
    assert det.model.limits.silence_s["kitchen"][time_bin(10 * H)] == 6 * H  # fixed, by day
    det = learned_detector()
    assert not det.learning
    limit = det.model.limits.silence_s["kitchen"][time_bin(10 * H)]
    assert 45 * MINUTE_S <= limit <= 2 * H  # learned: far tighter than the fixed 6 h


def test_an_ordinary_day_after_learning_raises_nothing(learned_model: dict) -> None:
    det = restore(learned_model)
    rng = random.Random(99)
    day = day_events(LEARN_DAYS, rng) + day_events(LEARN_DAYS + 1, rng)
    out = replay(det, day, T0 + (LEARN_DAYS + 2) * DAY, start=T0 + LEARN_DAYS * DAY)
    assert findings(out) == []


def test_injected_silence_asks_first_then_raises_when_nobody_answers(
    learned_model: dict,
) -> None:
    det = restore(learned_model)
    day = day_events(LEARN_DAYS, random.Random(3))
    cut = T0 + LEARN_DAYS * DAY + 10 * H  # mid-morning in the sitting room, then nothing
    kept = [e for e in day if e.at <= cut]
    last = kept[-1]
    assert last.room == "living"
    out = replay(det, kept, cut + 12 * H, start=T0 + LEARN_DAYS * DAY)
    asks = [e for e in out if isinstance(e, CheckIn) and e.action == "ask"]
    alert = first_raise(out, INACTIVITY_TYPES)
    assert asks
    assert alert is not None
    bin_ = time_bin(last.at - T0 - 8 * DAY)
    limits = det.model.limits
    checkin = limits.checkin_s["living"][bin_]
    assert checkin < limits.silence_s["living"][bin_]  # asked well before the staff limit
    assert last.at + checkin <= asks[0].at <= last.at + checkin + 60
    assert alert.type is AlertType.INACTIVITY
    answer_s = Thresholds().checkin_answer_min * MINUTE_S
    assert asks[0].at + answer_s <= alert.at <= asks[0].at + answer_s + 60
    assert alert.evidence["check_in"] == "unanswered"
    assert alert.severity is Severity.HIGH


def test_an_answered_check_in_raises_nothing(learned_model: dict) -> None:
    det = restore(learned_model)
    day = day_events(LEARN_DAYS, random.Random(3))
    cut = T0 + LEARN_DAYS * DAY + 10 * H
    kept = [e for e in day if e.at <= cut]
    # the resident answers each check-in half a minute on, and makes no other sign for 3 h
    out = replay(det, kept, cut + 3 * H, start=T0 + LEARN_DAYS * DAY, answer=answer_until())
    asks = [e for e in out if isinstance(e, CheckIn) and e.action == "ask"]
    answers = [e for e in out if isinstance(e, CheckIn) and e.action == "answered"]
    assert asks
    assert len(answers) == len(asks)
    assert findings(out) == []
    early = [a for a in asks if a.evidence["reason"] == "silence"]
    assert len(early) == Thresholds().checkin_max_per_day  # then only before a staff alert
    assert all(a.evidence["reason"] == "inactivity" for a in asks[len(early) :])


def test_activity_resolves_the_inactivity_alert(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    kept = [e for e in day_events(LEARN_DAYS, random.Random(3)) if e.at <= start + 10 * H]
    out = replay(det, kept, start + 13 * H, start=start)
    alert = first_raise(out, {AlertType.INACTIVITY})
    assert alert is not None
    done = det.feed(motion("kitchen", start + 13 * H + 5))
    assert [(f.key, f.action) for f in findings(done)] == [(alert.key, "resolve")]


def test_an_afternoon_out_of_home_raises_nothing(learned_model: dict) -> None:
    det = restore(learned_model)
    day = day_events(LEARN_DAYS, random.Random(5), out=(13.0, 19.5))  # 6.5 h out, usual is 2 h
    out = replay(det, day, T0 + (LEARN_DAYS + 1) * DAY, start=T0 + LEARN_DAYS * DAY)
    assert findings(out) == []


def test_a_visit_does_not_mask_a_later_silence(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    day = [e for e in day_events(LEARN_DAYS, random.Random(11), out=None) if e.at < start + 15 * H]
    visit = start + 15 * H
    # the visitor arrives and they are in two far-apart rooms at once, twice
    extra = [door(visit - 600), door(visit - 590, False), motion("hall", visit - 580)]
    extra += [motion("kitchen", visit), motion("bedroom", visit + 1)]
    extra += [motion("living", visit + 300), motion("bedroom", visit + 301)]
    extra += [motion("living", visit + 1200)]
    # the visitor leaves by the entrance door; the resident makes no further sign
    leave = visit + 1800
    extra += [motion("hall", leave - 20), door(leave), door(leave + 10, False)]
    extra += [motion("hall", leave + 15)]
    events = sorted(day + extra, key=lambda e: e.at)
    out = replay(det, events, leave + 12 * H, start=start)
    alert = first_raise(out, {AlertType.INACTIVITY})
    assert alert is not None, "the visitor's departure was taken for the resident's"
    assert alert.at - leave <= 3 * H + 120


def test_the_resident_leaving_alone_is_out_not_silent(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    day = [e for e in day_events(LEARN_DAYS, random.Random(11), out=None) if e.at < start + 15 * H]
    leave = start + 15.5 * H
    extra = [motion("hall", leave - 20), door(leave), door(leave + 10, False)]
    out = replay(det, sorted(day + extra, key=lambda e: e.at), leave + 8 * H, start=start)
    assert det.away
    assert first_raise(out, INACTIVITY_TYPES) is None


def test_a_night_far_longer_than_usual_alarms(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    night = [e for e in day_events(LEARN_DAYS, random.Random(13)) if e.at <= start + 2 * H]
    out = replay(det, night, start + 20 * H, start=start)
    morning = first_raise(out, {AlertType.NO_MORNING_ACTIVITY})
    assert morning is not None
    deadline_s = det.model.limits.get_up_deadline_s
    assert 7 * H <= deadline_s <= 10 * H  # usual getting up is 07:00
    assert start + deadline_s <= morning.at <= start + deadline_s + 60
    silence = first_raise(out, {AlertType.INACTIVITY})
    assert silence is not None
    assert silence.evidence["context"] == "bedroom"
    assert silence.at - night[-1].at < 12 * H
    # the same night with the resident up at 07:00 as usual raises neither
    det = restore(learned_model)
    usual = day_events(LEARN_DAYS, random.Random(13))
    out = replay(det, usual, start + 20 * H, start=start)
    assert first_raise(out, INACTIVITY_TYPES) is None


def test_bathroom_stay_far_longer_than_usual(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    day = [e for e in day_events(LEARN_DAYS, random.Random(17)) if e.at < start + 9 * H]
    stuck = [motion("bathroom", start + 9 * H + i * 300) for i in range(40)]  # 3h20 moving
    out = replay(det, day + stuck, start + 13 * H, start=start)
    alert = first_raise(out, {AlertType.BATHROOM_LONG})
    assert alert is not None
    limit = det.model.limits.bathroom_s
    answer_s = Thresholds().checkin_answer_min * MINUTE_S  # moving: only the button answers
    assert start + 9 * H + limit + answer_s <= alert.at <= start + 9 * H + limit + answer_s + 60
    assert alert.evidence["check_in"] == "unanswered"
    assert limit <= 90 * MINUTE_S
    assert first_raise(out, {AlertType.INACTIVITY}) is None  # the resident is moving


def test_night_exit_without_return(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    night = [e for e in day_events(LEARN_DAYS, random.Random(19)) if e.at <= start + 3 * H]
    leave = start + 3 * H + 60
    events = [*night, motion("hall", leave - 20), door(leave), door(leave + 10, False)]
    out = replay(det, events, start + 6 * H, start=start)
    alert = first_raise(out, {AlertType.NIGHT_EXIT})
    assert alert is not None
    allowance = det.model.limits.night_exit_s
    assert leave + allowance <= alert.at <= leave + allowance + 61
    back = det.feed(door(start + 6 * H + 60))
    assert back == []  # the door alone is not the resident inside yet
    inside = det.feed(motion("kitchen", start + 6 * H + 120))
    assert (alert.key, "resolve") in [(f.key, f.action) for f in findings(inside)]


def test_clock_stepped_back_by_hours_raises_nothing_and_keeps_watch(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    kept = [e for e in day_events(LEARN_DAYS, random.Random(3)) if e.at <= start + 10 * H]
    out = replay(det, kept, start + 10 * H + 600, start=start)
    assert findings(out) == []
    # NTP steps the clock back 5 hours: nothing raised, the silence keeps its true length
    jumped = start + 5 * H + 600
    out = det.advance(jumped)
    out += replay(det, [], jumped + 6 * H, start=jumped)
    alert = first_raise(out, {AlertType.INACTIVITY})
    assert alert is not None
    # asked at the check-in limit, then the answer window: both kept their true length
    limit = det.model.limits.checkin_s["living"][time_bin(kept[-1].at - start)]
    limit += Thresholds().checkin_answer_min * MINUTE_S
    silence_at_alert = (alert.at - jumped) + (10 * H + 600 - (kept[-1].at - start))
    assert limit - 1 <= silence_at_alert <= limit + 121


def test_clock_jumps_during_an_ordinary_day_raise_nothing(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    day = day_events(LEARN_DAYS, random.Random(23))
    step = -3 * H
    out: list[Emission] = []
    shifted = False
    for ev in day:
        if not shifted and ev.at > start + 11 * H:
            out += det.advance(ev.at + step)  # the gateway's clock now reads 3 h behind
            shifted = True
        e = ev if not shifted else Event(**{**_fields(ev), "at": ev.at + step})
        out += det.advance(e.at)
        out += det.feed(e)
    assert findings(out) == []


def _fields(ev: Event) -> dict:
    return {k: getattr(ev, k) for k in Event.__slots__}


def test_learned_state_survives_a_restart(learned_model: dict) -> None:
    doc = json.loads(json.dumps(learned_model))  # through JSON, as stored
    det = restore(doc)
    assert det.model.to_dict() == learned_model
    assert doc["learned"] is True
    assert doc["limits_min"]["get_up_deadline"] <= "10:00"
    # the restored detector answers exactly as the one that learned
    start = T0 + LEARN_DAYS * DAY
    kept = [e for e in day_events(LEARN_DAYS, random.Random(3)) if e.at <= start + 10 * H]
    a = first_raise(replay(det, kept, start + 20 * H, start=start), INACTIVITY_TYPES)
    fresh = learned_detector()
    b = first_raise(replay(fresh, kept, start + 20 * H, start=start), INACTIVITY_TYPES)
    assert a is not None
    assert b is not None
    assert (a.type, a.at, a.evidence) == (b.type, b.at, b.evidence)


def test_model_keeps_adapting_and_forgets_old_days(learned_model: dict) -> None:
    det = restore(learned_model)
    before = det.model.days_learned
    rng = random.Random(31)
    events = [e for d in range(LEARN_DAYS, LEARN_DAYS + 3) for e in day_events(d, rng)]
    replay(det, events, T0 + (LEARN_DAYS + 3) * DAY, start=T0 + LEARN_DAYS * DAY)
    assert det.model.days_learned == before + 3
    assert len(det.model.days) <= 28


def test_daily_summary_validates_and_compares_with_usual(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    events = day_events(LEARN_DAYS, random.Random(37)) + day_events(
        LEARN_DAYS + 1, random.Random(38)
    )
    out = replay(det, events, start + 2 * DAY, start=start)
    daily = [a for a in out if isinstance(a, Aggregate)]
    assert len(daily) == 2
    agg = daily[1]
    assert agg.period == "daily"
    assert agg.period_end - agg.period_start == DAY
    body = agg.body
    assert "sensor_health" not in body
    assert "home_id" not in body
    wire = agg.to_wire("h-0001")
    wire["sensor_health"] = {"devices": 6, "offline": 0, "low_battery": 0, "unknown_devices": 0}
    validate_daily(wire)
    assert body["date"] == "2023-11-24"
    assert "06:" <= body["get_up"] <= "07:30"
    assert "22:30" <= body["bed_time"] <= "23:30"
    assert 7 * 60 <= body["time_in_bed_min"] <= 9 * 60
    assert 100 <= body["time_out_min"] <= 130  # the 14:00-16:00 outing
    assert body["rooms"]["kitchen"]["activity"] > 10
    assert body["rooms"]["hall"]["door_openings"] == 2
    for metric in ("get_up_min", "time_out_min", "activity_total", "activity_kitchen"):
        cmp = body["compare"][metric]
        assert cmp["usual"] is not None
        assert abs(cmp["z"]) < 3


def test_summary_of_a_real_home_with_a_bed_sensor() -> None:
    events = load_events(AMBIENT / "ordonezB_dev_events.csv.gz")
    det = RoutineDetector(rooms_of(events), dt.UTC, Thresholds())
    out = replay(det, events, events[-1].at)
    daily = [a for a in out if isinstance(a, Aggregate)]
    assert len(daily) == 14
    for agg in daily:
        wire = agg.to_wire("ordonez-b")
        wire["sensor_health"] = {
            "devices": 12,
            "offline": 0,
            "low_battery": 0,
            "unknown_devices": 0,
        }
        validate_daily(wire)
    last = daily[-1].body
    assert last["rooms"]["Bedroom"]["bed_min"] > 300
    assert last["get_up"] is not None
    assert last["compare"]["time_in_bed_min"]["z"] is not None
    assert not det.learning


def test_entrance_only_signs_while_out_keep_the_resident_out(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    day = [e for e in day_events(LEARN_DAYS, random.Random(41), out=None) if e.at < start + 13 * H]
    leave = start + 13 * H + 60
    extra = [motion("hall", leave - 20), door(leave), door(leave + 10, False)]
    extra += [motion("hall", leave + 50 * MINUTE_S)]  # a neighbour on the landing, no door
    events = sorted(day + extra, key=lambda e: e.at)
    out = replay(det, events, leave + 8 * H, start=start)
    assert det.away
    assert first_raise(out, INACTIVITY_TYPES) is None
    # the door then a sign inside is the resident back, and watched again
    back = leave + 8 * H + 60
    det.feed(door(back))
    det.feed(motion("living", back + 30))
    assert not det.away


def test_a_morning_rest_silence_is_asked_about_then_raises_no_morning_activity(
    learned_model: dict,
) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    night = [e for e in day_events(LEARN_DAYS, random.Random(43)) if e.at <= start + 5 * H]
    out = replay(det, night, start + 20 * H, start=start)
    limits = det.model.limits
    assert limits.morning_checkin_s is not None
    assert limits.usual_get_up_s is not None
    asked_at = start + limits.morning_checkin_s  # well after the usual getting up
    assert limits.morning_checkin_s == limits.usual_get_up_s + 30 * MINUTE_S
    assert limits.morning_checkin_s < limits.get_up_deadline_s
    early = [f for f in raised(out) if f.at < asked_at]
    assert early == [], "a bedroom silence before the usual getting up is still the night"
    asks = [e for e in out if isinstance(e, CheckIn) and e.action == "ask"]
    assert [a for a in asks if a.at < asked_at] == [], "no check-in in bed at night"
    assert asks
    assert asked_at <= asks[0].at <= asked_at + 60
    assert asks[0].evidence["reason"] == "morning"
    morning = first_raise(out, {AlertType.NO_MORNING_ACTIVITY})
    assert morning is not None
    answer_s = Thresholds().checkin_answer_min * MINUTE_S
    assert asks[0].at + answer_s <= morning.at <= asks[0].at + answer_s + 60
    assert morning.evidence["check_in"] == "unanswered"
    assert len([f for f in raised(out) if f.type is AlertType.NO_MORNING_ACTIVITY]) == 1


def test_a_morning_check_in_answered_is_the_morning_s_answer(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    night = [e for e in day_events(LEARN_DAYS, random.Random(43)) if e.at <= start + 5 * H]
    out = replay(det, night, start + 12 * H, start=start, answer=answer_until())
    asks = [e for e in out if isinstance(e, CheckIn) and e.action == "ask"]
    assert asks
    assert asks[0].evidence["reason"] == "morning"
    assert first_raise(out, {AlertType.NO_MORNING_ACTIVITY}) is None  # not at the deadline
    morning_asks = [a for a in asks if a.evidence["reason"] in ("morning", "no_morning_activity")]
    assert len(morning_asks) == 1


def test_learned_limits_stay_under_the_cap_and_the_rule_is_inspectable(
    learned_model: dict,
) -> None:
    assert learned_model["rule"]["window_min"] == 180
    for row in learned_model["limits_min"]["silence_by_half_hour"].values():
        assert max(row) <= 11.5 * 60
        assert min(row) >= 45


# ---- check-ins ---------------------------------------------------------------------------
def mat(t: float, on: bool) -> Event:
    return Event("bed-mat", EventKind.PRESENCE, on, t, "sim", "bedroom", RoomKind.BEDROOM, Role.BED)


def mat_day(day: int, rng: random.Random, get_up_h: float = 7.0) -> list[Event]:
    """An ordinary day in a home with a bed mat: the night is one long silence in bed."""
    d0 = T0 + day * DAY
    ev = [e for e in day_events(day, rng) if e.room != "bedroom"]
    ev = [e for e in ev if not (d0 <= e.at < d0 + get_up_h * H)]
    ev += [mat(d0 + get_up_h * H - 60, False), motion("bedroom", d0 + get_up_h * H - 30)]
    ev += [motion("bedroom", d0 + 23 * H - 120), mat(d0 + 23 * H, True)]
    ev += [motion("bathroom", d0 + get_up_h * H + 60)]
    return sorted(ev, key=lambda e: e.at)


def asks_of(emissions: Iterable[Emission]) -> list[CheckIn]:
    return [e for e in emissions if isinstance(e, CheckIn) and e.action == "ask"]


@pytest.fixture(scope="module")
def mat_model() -> dict:
    det = RoutineDetector(ROOMS, dt.UTC, Thresholds())
    rng = random.Random(5)
    events = [e for d in range(LEARN_DAYS) for e in mat_day(d, rng)]
    replay(det, events, T0 + LEARN_DAYS * DAY, answer=answer_until())
    return det.model.to_dict()


def test_no_check_in_in_bed_at_night(mat_model: dict) -> None:
    det = restore(mat_model)
    assert det.model.learned
    start = T0 + LEARN_DAYS * DAY
    rng = random.Random(11)
    # a night in bed from 23:00 to 07:24 (later than ever seen, before the morning check-in)
    morning = det.model.limits.morning_checkin_s
    assert morning is not None
    assert morning > 7.4 * H
    days = mat_day(LEARN_DAYS, rng) + mat_day(LEARN_DAYS + 1, rng, get_up_h=7.4)
    out = replay(det, days, start + DAY + 9 * H, start=start, answer=answer_until())
    assert [a for a in asks_of(out) if start + 23 * H <= a.at < start + DAY + 9 * H] == []
    assert findings(out) == []
    # the same bed silence by day (a nap from 14:00): an early check-in is allowed
    nap = [e for e in mat_day(LEARN_DAYS + 2, rng) if e.at < start + 2 * DAY + 14 * H]
    nap.append(mat(start + 2 * DAY + 14 * H, True))
    out = replay(det, nap, start + 2 * DAY + 20 * H, start=start + DAY + 9 * H)
    assert asks_of(out), "a nap that lasts is asked about"


def test_quiet_hours_and_the_daily_maximum_hold_early_check_ins_back(
    learned_model: dict,
) -> None:
    th = Thresholds(checkin_quiet_from_h=9.0, checkin_quiet_to_h=16.0)
    det = RoutineDetector(ROOMS, dt.UTC, th, RoutineModel.from_dict(learned_model, th))
    start = T0 + LEARN_DAYS * DAY
    kept = [e for e in day_events(LEARN_DAYS, random.Random(3)) if e.at <= start + 10 * H]
    out = replay(det, kept, start + 13 * H, start=start)
    asks = asks_of(out)
    assert asks
    assert all(a.evidence["reason"] == "inactivity" for a in asks)  # only before an alert
    limit = det.model.limits.silence_s["living"][time_bin(kept[-1].at - start)]
    assert asks[0].at >= kept[-1].at + limit


def test_the_check_in_limits_survive_a_restart(learned_model: dict) -> None:
    doc = json.loads(json.dumps(learned_model))
    a, b = restore(doc), learned_detector()
    assert a.model.limits.checkin_s == b.model.limits.checkin_s
    assert a.model.limits.checkin_scale == b.model.limits.checkin_scale is not None
    assert doc["limits_min"]["check_in_by_half_hour"]["living"][20] < (
        doc["limits_min"]["silence_by_half_hour"]["living"][20]
    )
    start = T0 + LEARN_DAYS * DAY
    kept = [e for e in day_events(LEARN_DAYS, random.Random(3)) if e.at <= start + 10 * H]
    asked = [asks_of(replay(d, kept, start + 13 * H, start=start)) for d in (a, b)]
    assert asked[0]
    assert [(x.at, x.evidence) for x in asked[0]] == [(x.at, x.evidence) for x in asked[1]]


def test_the_day_s_check_ins_go_into_the_daily_summary(learned_model: dict) -> None:
    det = restore(learned_model)
    start = T0 + LEARN_DAYS * DAY
    kept = [e for e in day_events(LEARN_DAYS, random.Random(3)) if e.at <= start + 10 * H]
    later = [e for e in day_events(LEARN_DAYS + 1, random.Random(4))]
    out = replay(det, kept + later, start + DAY + H, start=start, answer=answer_until())
    asked = len(asks_of([e for e in out if getattr(e, "at", 0) < start + DAY]))
    daily = [e for e in out if isinstance(e, Aggregate) and e.period == "daily"]
    assert asked >= 1
    assert daily[0].body["check_ins"] == asked
    validate_daily(daily[0].to_wire("h-0001") | {"sensor_health": _HEALTH})


_HEALTH = {"devices": 1, "offline": 0, "low_battery": 0, "unknown_devices": 0}
