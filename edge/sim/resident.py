"""The simulated resident: one local day's routine as segments (where, how active) and chores.

A day runs from local midnight to the next local midnight (wall-clock arithmetic, so a
daylight-saving day has 23 or 25 hours). The resident sleeps, wakes around 07:00, washes,
makes breakfast (kettle, fridge), spends mornings in the living room, goes out some days,
lunches, naps some days, has tea, dinner and evening TV, and goes to bed around 22:30,
sometimes getting up once in the night for the bathroom. Scripted incidents bend the day:
a night exit, an SOS press, a fall or an inactivity spell (still: no motion anywhere).

Pure: the day is a function of the date, the zone, a seeded `random.Random` and the script.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from enum import StrEnum

from edge.const import HOUR_S
from edge.events import RoomKind

MIN_S = 60.0

WAKE_H = 7.0
BED_H = 22.5
TIME_SPREAD_H = 0.5  # wake-up and bed time stay within +- this
NIGHT_VISIT_P = 0.35
OUTING_P = 0.5
NAP_P = 0.4
TEA_P = 0.6
MAIL_P = 0.7  # a look in the letterbox by the front door
KETTLE_ON_S = 180.0

NIGHT_EXIT_OUT_S = 80 * MIN_S  # the night exit: not back for more than an hour
FALL_STILL_S = 90 * MIN_S  # lying still after the fall until a helper comes in
INACTIVITY_STILL_S = 6 * HOUR_S  # sitting, not moving at all


class Level(StrEnum):
    """How much the resident moves in a segment (what the motion sensors can see)."""

    ACTIVE = "active"  # walking about, doing things
    CALM = "calm"  # sitting (TV, reading): an occasional movement
    BED = "bed"  # lying in bed: the bed sensor is pressed, no motion
    STILL = "still"  # not moving at all (after a fall, or unwell)
    OUT = "out"  # not at home


@dataclass(frozen=True, slots=True)
class Segment:
    """The resident in `room` (None when out) at `level` during [start, end)."""

    start: float
    end: float
    room: RoomKind | None
    level: Level


@dataclass(frozen=True, slots=True)
class Chore:
    """Something that works a device: `door_entrance`, `door_fridge`, `kettle` or `sos`."""

    at: float
    kind: str
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class DayScript:
    """Scripted incidents falling on this day (epoch seconds), None when not scripted."""

    night_exit: float | None = None
    sos: float | None = None
    fall: float | None = None
    inactivity: float | None = None


@dataclass(slots=True)
class DayPlan:
    """One local day of the resident's life."""

    start: float
    end: float
    segments: list[Segment] = field(default_factory=list)
    chores: list[Chore] = field(default_factory=list)
    wake_at: float = 0.0
    bed_at: float = 0.0
    shower_at: float | None = None


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The aware datetime of `day`'s local midnight."""
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def at_local(day: date, hours: float, tz: tzinfo) -> float:
    """Epoch seconds of wall-clock `hours` after `day`'s local midnight."""
    return (local_midnight(day, tz) + timedelta(hours=hours)).timestamp()


class _Builder:
    """Appends segments one after the other from a cursor."""

    def __init__(self, day: date, tz: tzinfo, rng: random.Random) -> None:
        self.day, self.tz, self.rng = day, tz, rng
        start = at_local(day, 0.0, tz)
        end = (local_midnight(day, tz) + timedelta(days=1)).timestamp()
        self.plan = DayPlan(start=start, end=end)
        self.cursor = start

    def at(self, hours: float) -> float:
        return at_local(self.day, hours, self.tz)

    def stay(self, room: RoomKind | None, level: Level, until: float) -> None:
        until = min(until, self.plan.end)
        if until > self.cursor:
            self.plan.segments.append(Segment(self.cursor, until, room, level))
            self.cursor = until

    def stay_for(self, room: RoomKind | None, level: Level, seconds: float) -> None:
        self.stay(room, level, self.cursor + seconds)

    def chore(self, kind: str, offset_s: float = 0.0, duration_s: float = 0.0) -> None:
        at = self.cursor + offset_s
        if at < self.plan.end:
            self.plan.chores.append(Chore(at, kind, duration_s))

    def minutes(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high) * MIN_S

    def spread_h(self, sigma_h: float, limit_h: float) -> float:
        return max(-limit_h, min(limit_h, self.rng.gauss(0.0, sigma_h)))

    # ---- routine pieces ------------------------------------------------------------------
    def bathroom_visit(self, low_min: float = 3, high_min: float = 8) -> None:
        self.stay_for(RoomKind.BATHROOM, Level.ACTIVE, self.minutes(low_min, high_min))

    def go_out(self, seconds: float) -> None:
        """Leave by the entrance door, stay out, come back and put things away."""
        self.stay_for(RoomKind.ENTRANCE, Level.ACTIVE, self.minutes(1.5, 3))
        self.chore("door_entrance", 0.0, self.rng.uniform(8, 20))
        self.cursor += 30.0  # the door closes behind
        self.stay_for(None, Level.OUT, seconds)
        self.chore("door_entrance", 0.0, self.rng.uniform(8, 25))
        self.stay_for(RoomKind.ENTRANCE, Level.ACTIVE, self.minutes(1.5, 3))
        self.chore("door_fridge", self.minutes(1, 4), self.rng.uniform(20, 60))
        self.stay_for(RoomKind.KITCHEN, Level.ACTIVE, self.minutes(6, 12))

    def kitchen(self, low_min: float, high_min: float, kettle: bool, fridge_opens: int) -> None:
        length = self.minutes(low_min, high_min)
        if kettle:
            self.chore("kettle", self.minutes(1, 4), KETTLE_ON_S + self.rng.uniform(-20, 20))
        for _ in range(fridge_opens):
            self.chore("door_fridge", self.rng.uniform(30, length - 60), self.rng.uniform(8, 40))
        self.stay_for(RoomKind.KITCHEN, Level.ACTIVE, length)


def plan_day(day: date, tz: tzinfo, rng: random.Random, script: DayScript) -> DayPlan:
    """The resident's `day`: routine, bent by the scripted incidents of that day."""
    b = _Builder(day, tz, rng)
    plan = b.plan
    wake = b.at(WAKE_H + b.spread_h(0.25, TIME_SPREAD_H))
    bed = b.at(BED_H + b.spread_h(0.25, TIME_SPREAD_H))
    night_visit = rng.random() < NIGHT_VISIT_P
    night_visit_at = b.at(rng.uniform(1.5, 5.0))
    outing = rng.random()
    outing_s = b.minutes(60, 100)
    nap = rng.random() < NAP_P
    tea = rng.random() < TEA_P
    mail = rng.random() < MAIL_P

    # Incidents block what would hide them: no outing near an SOS or during an afternoon
    # incident, no nap before a fall or an inactivity spell.
    afternoon_busy = script.fall is not None or script.inactivity is not None
    morning_out = outing < OUTING_P / 2 and script.sos is None
    afternoon_out = OUTING_P / 2 <= outing < OUTING_P and not afternoon_busy
    if outing < OUTING_P / 2 and script.sos is not None and not afternoon_busy:
        afternoon_out = True
    nap = nap and not afternoon_busy

    # ---- the night and the morning ----
    if script.night_exit is not None:
        ne = script.night_exit
        b.stay(RoomKind.BEDROOM, Level.BED, ne - 4 * MIN_S)
        b.stay_for(RoomKind.BEDROOM, Level.ACTIVE, 2 * MIN_S)
        b.stay(RoomKind.ENTRANCE, Level.ACTIVE, ne)
        b.chore("door_entrance", 0.0, 15.0)
        b.cursor += 30.0
        b.stay_for(None, Level.OUT, NIGHT_EXIT_OUT_S)
        b.chore("door_entrance", 0.0, 15.0)
        b.stay_for(RoomKind.ENTRANCE, Level.ACTIVE, 2 * MIN_S)
        b.stay_for(RoomKind.BEDROOM, Level.ACTIVE, 3 * MIN_S)
    elif night_visit:
        b.stay(RoomKind.BEDROOM, Level.BED, night_visit_at)
        b.stay_for(RoomKind.BEDROOM, Level.ACTIVE, MIN_S)
        b.bathroom_visit(4, 8)
        b.stay_for(RoomKind.BEDROOM, Level.ACTIVE, MIN_S)
    b.stay(RoomKind.BEDROOM, Level.BED, wake)
    plan.wake_at = b.cursor
    b.stay_for(RoomKind.BEDROOM, Level.ACTIVE, b.minutes(5, 10))
    plan.shower_at = b.cursor
    b.bathroom_visit(15, 25)
    b.kitchen(20, 30, kettle=True, fridge_opens=2)
    if mail:
        b.stay(RoomKind.LIVING, Level.CALM, b.at(rng.uniform(8.75, 9.25)))
        b.stay_for(RoomKind.ENTRANCE, Level.ACTIVE, b.minutes(0.5, 1))
        b.chore("door_entrance", 0.0, rng.uniform(10, 30))
        b.stay_for(RoomKind.ENTRANCE, Level.ACTIVE, b.minutes(1, 2))

    # ---- late morning ----
    if script.sos is not None:
        b.stay(RoomKind.LIVING, Level.CALM, script.sos - 2 * MIN_S)
        b.stay(RoomKind.ENTRANCE, Level.ACTIVE, script.sos)
        b.chore("sos")
        b.stay_for(RoomKind.ENTRANCE, Level.ACTIVE, 2 * MIN_S)
    b.stay(RoomKind.LIVING, Level.CALM, b.at(rng.uniform(9.5, 10.0)))
    b.bathroom_visit()
    if morning_out:
        b.stay(RoomKind.LIVING, Level.CALM, b.at(rng.uniform(10.0, 10.5)))
        b.go_out(outing_s)
    b.stay(RoomKind.LIVING, Level.CALM, b.at(12.0 + b.spread_h(0.2, 0.25)))

    # ---- lunch and afternoon ----
    b.kitchen(35, 50, kettle=False, fridge_opens=2)
    b.stay(RoomKind.LIVING, Level.CALM, b.at(rng.uniform(13.25, 13.75)))
    if nap:
        b.stay_for(RoomKind.BEDROOM, Level.ACTIVE, MIN_S)
        b.stay_for(RoomKind.BEDROOM, Level.BED, b.minutes(40, 70))
        b.stay_for(RoomKind.BEDROOM, Level.ACTIVE, 2 * MIN_S)
    b.stay(RoomKind.LIVING, Level.CALM, b.at(rng.uniform(14.5, 15.0)))
    b.bathroom_visit()
    if afternoon_out:
        b.stay(RoomKind.LIVING, Level.CALM, b.at(rng.uniform(15.0, 15.5)))
        b.go_out(outing_s)
    else:
        b.stay(RoomKind.LIVING, Level.CALM, b.at(16.0 + b.spread_h(0.2, 0.3)))
        b.kitchen(8, 14, kettle=tea, fridge_opens=1)

    # ---- evening ----
    b.stay(RoomKind.LIVING, Level.CALM, b.at(18.5 + b.spread_h(0.1, 0.2)))
    b.bathroom_visit()
    b.stay(RoomKind.LIVING, Level.CALM, b.at(19.0 + b.spread_h(0.2, 0.3)))
    b.kitchen(30, 40, kettle=rng.random() < 0.3, fridge_opens=2)
    b.stay(RoomKind.LIVING, Level.CALM, bed - 15 * MIN_S)
    b.bathroom_visit(8, 12)
    b.stay(RoomKind.BEDROOM, Level.ACTIVE, bed)
    plan.bed_at = b.cursor
    b.stay(RoomKind.BEDROOM, Level.BED, plan.end)
    plan.chores.sort(key=lambda c: c.at)

    if script.fall is not None:
        _fall(b, script.fall)
    if script.inactivity is not None:
        _override(
            plan,
            script.inactivity,
            script.inactivity + INACTIVITY_STILL_S,
            [
                Segment(
                    script.inactivity,
                    script.inactivity + INACTIVITY_STILL_S,
                    RoomKind.LIVING,
                    Level.STILL,
                )
            ],
            [],
        )
    return plan


def _fall(b: _Builder, at: float) -> None:
    """A fall in the living room, lying still until a helper comes in by the front door."""
    still_end = at + FALL_STILL_S
    back = still_end + 2 * MIN_S
    segments = [
        Segment(at - 15 * MIN_S, at, RoomKind.LIVING, Level.ACTIVE),
        Segment(at, still_end, RoomKind.LIVING, Level.STILL),
        Segment(still_end, back, RoomKind.ENTRANCE, Level.ACTIVE),
        Segment(back, back + 10 * MIN_S, RoomKind.LIVING, Level.ACTIVE),
    ]
    _override(
        b.plan,
        at - 15 * MIN_S,
        back + 10 * MIN_S,
        segments,
        [Chore(still_end, "door_entrance", 15.0)],
    )


def _override(
    plan: DayPlan, start: float, end: float, segments: list[Segment], chores: list[Chore]
) -> None:
    """Replace what the plan says for [start, end) with `segments` and `chores`."""
    kept: list[Segment] = []
    for seg in plan.segments:
        if seg.end <= start or seg.start >= end:
            kept.append(seg)
            continue
        if seg.start < start:
            kept.append(Segment(seg.start, start, seg.room, seg.level))
        if seg.end > end:
            kept.append(Segment(end, seg.end, seg.room, seg.level))
    inside = [s for s in segments if s.start < plan.end]
    plan.segments = sorted(kept + inside, key=lambda s: s.start)
    plan.chores = sorted(
        [c for c in plan.chores if not start <= c.at < end] + chores, key=lambda c: c.at
    )


def room_at(plan: DayPlan, t: float) -> Segment | None:
    """The segment of the plan holding time `t`."""
    for seg in plan.segments:
        if seg.start <= t < seg.end:
            return seg
    return None
