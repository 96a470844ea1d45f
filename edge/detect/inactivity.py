"""Unusual inactivity and routine alerts, learned from the home's own ambient sensors. Pure.

`RoutineDetector.feed(event)` and `advance(now)` return `Finding`s (`inactivity`,
`no_morning_activity`, `bathroom_long`, `night_exit`; each resolved when the resident shows
life again), `CheckIn`s (the resident asked first, `edge.detect.checkin`: every
inactivity-type finding waits behind one) and, at each local midnight, the daily summary
`Aggregate` (with the day's `check_ins`).

How it reads the home:
* every state change of a motion, presence, door, flush, switch or appliance sensor is a
  *sign of life*; a *silence* is the time since the last one, and the *context* it began in
  (`edge.detect.whereabouts`) is where that sign came from (`bed` when a bed sensor is
  occupied, `chair` likewise, else the room kind), or `out` when the resident left by the
  entrance door;
* an inactivity alert is raised when the silence exceeds the learned limit for its context
  and the time of day it began (`edge.detect.routine`), with a severity rising with the
  excess; `out` has a long limit of its own, so a resident away is not alarmed on but a
  departure that never ends is; a rest (bed, bedroom) silence that starts in the morning
  before the usual getting-up deadline is the night going on: the morning watch judges it
  first (`edge.detect.watches`);
* an early check-in is asked when a silence passes the tighter learned check-in limit, and a
  morning one when the resident still rests well after the usual getting up; a press of the
  `checkin_button` answers and restarts the timer (the resident is where they were), any
  other sign ends the silence; a silence off furniture (last sign in the kitchen, bathroom or
  hall, no mat pressed) has limits of its own (`OFF_FURNITURE`);
* time going backwards (a wall clock stepped by NTP reaching the detector) shifts every
  anchor by the step, so no silence is lengthened or shortened by it; time going forwards is
  real elapsed time (the production clock is monotonic-anchored, see `edge.runtime.clock`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping

from cloud_bridge.contract import SEVERITY_RANK, AlertType, Severity
from edge.const import DAY_S, HOUR_S, MINUTE_S
from edge.detect.checkin import CheckInGate, CheckInPolicy
from edge.detect.routine import (
    OFF_FURNITURE,
    OUT,
    REST_CONTEXTS,
    DayRecord,
    RoutineModel,
    hhmm,
    is_night,
    time_bin,
)
from edge.detect.summary import DayLog, RoomDay, local_hhmm, summarise_day
from edge.detect.watches import MORNING_FROM_S, BathroomWatch, MorningWatch, NightExitWatch
from edge.detect.whereabouts import Whereabouts
from edge.events import Aggregate, Emission, Event, EventKind, Finding, Role, RoomKind, is_activity
from edge.home import Thresholds

__all__ = ["RoutineDetector", "RoutineModel"]

_LOGGER = logging.getLogger(__name__)

SIGN_KINDS = frozenset(
    {
        EventKind.MOTION,
        EventKind.PRESENCE,
        EventKind.OPEN,
        EventKind.FLUSH,
        EventKind.SWITCH,
        EventKind.ACTION,
        EventKind.VIBRATION,
    }
)
MORNING = "morning"  # the reason of a morning check-in
BACKWARD_TOLERANCE_S = 120.0  # a step back larger than this is a clock jump
# The door closing during a visit: the resident may have left with the visitor, or stayed
# behind alone; the silence that follows gets at least this long before an alert.
VISIT_DEPARTURE_LIMIT_S = 3 * HOUR_S
# A rest silence begun in the morning outlasts the getting-up deadline by this much before an
# inactivity alert joins the morning one.
REST_AFTER_DEADLINE_S = 60 * MINUTE_S
LOG_KEEP_S = 48 * HOUR_S
COVERAGE_MIN_S = 12 * HOUR_S  # a day counts towards learning when observed this long
ALARMED_LEARN_FACTOR = 1.25  # an alarmed silence teaches at most this times its limit
HIGH_AFTER_S = 60 * MINUTE_S
CRITICAL_AFTER_S = 180 * MINUTE_S


def severity(excess_s: float, limit_s: float) -> Severity:
    """Warning past the limit, high an hour on (or half the limit), critical three hours on."""
    if excess_s >= min(CRITICAL_AFTER_S, limit_s):
        return Severity.CRITICAL
    if excess_s >= min(HIGH_AFTER_S, 0.5 * limit_s):
        return Severity.HIGH
    return Severity.WARNING


class RoutineDetector:
    """Learns one resident's routine and raises inactivity and routine findings (pure)."""

    def __init__(
        self,
        rooms: Mapping[str, RoomKind],
        tz: dt.tzinfo,
        thresholds: Thresholds,
        model: RoutineModel | None = None,
    ) -> None:
        self._rooms = dict(rooms)
        self._tz = tz
        self._th = thresholds
        self._model = model if model is not None else RoutineModel(thresholds=thresholds)
        self._model.limits = self._model.refresh(thresholds)
        self._now: float | None = None
        self._day_start = 0.0
        self._day_end = 0.0
        self._date = ""
        self._first_seen = 0.0
        self._record = DayRecord("")
        self._records: dict[str, DayRecord] = {}
        self._log = DayLog()
        self._where = Whereabouts()
        self._bath = BathroomWatch()
        self._night_exit = NightExitWatch(tz)
        self._morning = MorningWatch()
        self._gate = CheckInGate(CheckInPolicy.from_thresholds(thresholds), tz)
        self._morning_asked: set[str] = set()  # local dates of a morning check-in
        # the current silence
        self._last: float | None = None
        self._last_room: str | None = None
        self._ctx = "other"
        self._sil_date = ""
        self._sil_bin = 0
        self._sil_tod = 0.0
        self._sil_limit = 0.0
        self._sil_usual: float | None = None
        self._sil_key: str | None = None
        self._sil_sev: Severity | None = None
        self._sil_checkin = 0.0  # the early check-in limit of the current silence
        # where the current silence began: a check-in button press restarts the timer above
        # but not the silence the routine learns (its length is the resident's, not ours)
        self._span_start: float | None = None
        self._span_date = ""
        self._span_bin = 0

    @property
    def model(self) -> RoutineModel:
        return self._model

    @property
    def learning(self) -> bool:
        return not self._model.learned

    @property
    def away(self) -> bool:
        """Whether the resident is taken to be out of home (left by the entrance door)."""
        return self._last is not None and self._ctx == OUT

    @property
    def context(self) -> str:
        """The context the current silence began in (`bed`, `kitchen`, `out`, ...)."""
        return self._ctx

    @property
    def last_sign(self) -> float | None:
        """When the last sign of life was seen (pipeline time), None before the first."""
        return self._last

    # ---------------------------------------------------------------- time

    def _set_day(self, t: float) -> None:
        local = dt.datetime.fromtimestamp(t, self._tz)
        midnight = dt.datetime(local.year, local.month, local.day, tzinfo=self._tz)
        self._day_start = midnight.timestamp()
        self._day_end = (midnight + dt.timedelta(days=1)).timestamp()
        self._date = midnight.date().isoformat()
        self._record = self._records.setdefault(self._date, DayRecord(self._date))
        self._morning.new_day()

    def _tod(self, t: float) -> float:
        return min(DAY_S - 1.0, max(0.0, t - self._day_start))

    def advance(self, now: float) -> list[Emission]:
        """Let time run to `now` (event time in replays): timers, day closes, findings."""
        return self._gate.filter(self._advance(now), now, self._date)

    def _advance(self, now: float) -> list[Emission]:
        if self._now is None:
            self._now = self._first_seen = now
            self._set_day(now)
            return []
        if now < self._now:
            if self._now - now > BACKWARD_TOLERANCE_S:
                self._shift(now - self._now)
            return []
        out: list[Emission] = []
        while now >= self._day_end:
            out.extend(self._close_day())
        self._now = now
        lim = self._model.limits
        expired, early = self._gate.expire(now)
        out.extend(expired)
        if early == MORNING:
            out.append(
                self._morning.raise_now(
                    now,
                    self._date,
                    lim,
                    last_sign=self._last,
                    room=self._last_room,
                    extra={"check_in": "unanswered"},
                )
            )
        elif early is not None:
            out.extend(self._raise_inactivity(now, Severity.HIGH, unanswered=True))
        out.extend(self._check_silence(now))
        out.extend(self._morning_check_in(now))
        room = self._last_room if self._bath.last == self._last else None
        out.extend(self._bath.check(now, lim, room))
        left = self._where.leaving_at if self._ctx == OUT else None
        out.extend(self._night_exit.check(now, left, self._day_start, lim, self._last_room))
        out.extend(
            self._morning.check(
                now,
                self._date,
                self._tod(now),
                in_bed=bool(self._where.bed_on),
                away=self.away,
                watched_since_morning=self._first_seen <= self._day_start + MORNING_FROM_S,
                limits=lim,
                last_sign=self._last,
                room=self._last_room,
            )
        )
        return out

    def _shift(self, step: float) -> None:
        """A clock stepped by `step` seconds: move every anchor with it."""
        _LOGGER.warning("clock stepped by %.0f s; routine timers moved with it", step)
        assert self._now is not None
        self._now += step
        self._last = None if self._last is None else self._last + step
        self._span_start = None if self._span_start is None else self._span_start + step
        self._gate.shift(step)
        self._where.shift(step)
        self._bath.shift(step)
        self._log.shift(step)
        date = self._date
        self._set_day(self._now)
        if self._date != date:
            self._morning.checked.add(self._date)  # the morning of a day seen twice: once

    # ---------------------------------------------------------------- events

    def feed(self, event: Event) -> list[Emission]:
        """Take one event; returns findings it raises or resolves (and any day closed first)."""
        at = event.at if self._now is None else max(event.at, self._now)
        if event.role is Role.CHECKIN_BUTTON and event.kind is EventKind.ACTION:
            return self._gate.filter(self._button(event), at, self._date)
        return self._gate.filter(self._feed(event), at, self._date)

    def _button(self, event: Event) -> list[Emission]:
        """The "ça va" button: the resident answers; where they were, they still are."""
        out = self._advance(event.at)
        assert self._now is not None
        at = self._now
        if self._gate.pending is not None and self._gate.pending.reason == MORNING:
            self._morning.checked.add(self._date)  # awake and well: the deadline is answered
        out.extend(self._gate.answer(at, by_button=True))
        self._gate.new_silence()
        if self._last is None:
            return out
        out.extend(self._resolve_silence(at))
        self._last = at
        self._sil_tod = self._tod(at)
        self._sil_bin = time_bin(self._sil_tod)
        self._sil_limit, self._sil_usual, self._sil_checkin = self._limit()
        return out

    def _feed(self, event: Event) -> list[Emission]:
        if event.role is Role.CHECKIN_BUTTON or (
            event.kind not in SIGN_KINDS
            and not (event.kind is EventKind.POWER and is_activity(event))
        ):  # not a sign of life (the check-in button's battery or heartbeat neither)
            return self._advance(event.at) if self._now is None or event.at > self._now else []
        out = self._advance(event.at)
        assert self._now is not None
        at = max(event.at, self._now) if self._now - event.at <= BACKWARD_TOLERANCE_S else self._now
        room = event.room or "?"
        kind = event.room_kind or self._rooms.get(room, RoomKind.OTHER)
        role = event.role
        where = self._where
        out.extend(self._gate.answer(at, by_button=False))
        self._gate.new_silence()
        out.extend(self._end_silence(at))
        self._count(event, room, kind)
        if role is Role.DOOR_ENTRANCE:
            gap = at - self._last if self._last is not None else 0.0
            where.door(at, gap, self._ctx)
        elif kind is not RoomKind.ENTRANCE:
            where.inside()
            out.extend(self._night_exit.back(at))
        if event.kind is EventKind.PRESENCE and role in (Role.BED, Role.CHAIR):
            stay = where.occupancy(event, room, at)
            if stay is not None:
                self._log.bed.append(stay)
        if event.value is True or event.kind is EventKind.OPEN:
            where.visit(room, kind, at, self._model.limits, self._record)
        found, entered = self._bath.sign(kind, at, self._model.limits, self._record)
        out.extend(found)
        if entered is not None:
            self._log.bath_entries.append(entered)
        out.extend(
            self._morning.sign(
                kind,
                self._tod(at),
                bool(where.bed_on),
                self._ctx == OUT and kind is RoomKind.ENTRANCE,
                at,
            )
        )
        self._start_silence(at, room, kind, role)
        return out

    def _count(self, event: Event, room: str, kind: RoomKind) -> None:
        rd = self._log.rooms.setdefault(room, RoomDay())
        if is_activity(event):
            rd.activity += 1
            by_kind = self._record.activity_by_kind
            by_kind[kind.value] = by_kind.get(kind.value, 0) + 1
        if event.kind is EventKind.OPEN and event.value is True:
            rd.door_openings += 1

    # ---------------------------------------------------------------- silence

    def _limit(self) -> tuple[float, float | None, float]:
        """The limit, usual longest and early check-in limit for the current silence."""
        tod_s = self._sil_tod
        limits = self._model.limits
        if self._ctx == OUT:
            return limits.out_s, None, limits.out_s
        limit = limits.silence_s[self._ctx][self._sil_bin]
        usual = limits.usual_s[self._ctx][self._sil_bin]
        checkin = limits.checkin_s[self._ctx][self._sil_bin]
        if self._where.visit_departure_at is not None and self._ctx == RoomKind.ENTRANCE.value:
            limit = max(limit, VISIT_DEPARTURE_LIMIT_S)
        if (
            self._ctx in REST_CONTEXTS
            and MORNING_FROM_S <= tod_s < limits.get_up_deadline_s
            and self._date not in self._morning.checked
        ):
            # the night going on: the getting-up deadline judges it first
            limit = max(limit, limits.get_up_deadline_s - tod_s + REST_AFTER_DEADLINE_S)
        return limit, usual, min(checkin, limit)

    def _start_silence(self, at: float, room: str, kind: RoomKind, role: Role | None) -> None:
        self._ctx = self._where.context(kind, role, at, self._ctx)
        self._last = at
        self._last_room = room
        self._sil_date = self._date
        self._sil_tod = self._tod(at)
        self._sil_bin = time_bin(self._sil_tod)
        self._sil_limit, self._sil_usual, self._sil_checkin = self._limit()
        self._sil_key = None
        self._sil_sev = None
        self._span_start = at
        self._span_date = self._date
        self._span_bin = self._sil_bin

    def _end_silence(self, at: float) -> list[Emission]:
        if self._last is None or self._span_start is None:
            return []
        gap = at - self._span_start
        learn = gap
        if self._sil_sev is not None:
            learn = min(gap, ALARMED_LEARN_FACTOR * self._sil_limit)
        record = self._records.get(self._span_date)
        if record is not None:
            record.note_silence(self._ctx, self._span_bin, learn)
            lim = self._model.limits
            if self._ctx == OUT and is_night(
                self._span_bin * 1800.0, lim.night_start_s / HOUR_S, lim.night_end_s / HOUR_S
            ):
                record.night_out_max_s = max(record.night_out_max_s, learn)
        if gap >= 60.0 or self._ctx == OUT:
            self._log.silences.append((self._span_start, at, self._ctx))
        return self._resolve_silence(at)

    def _resolve_silence(self, at: float) -> list[Emission]:
        """The open inactivity alert of the current silence, if any, is resolved."""
        if self._last is None or self._sil_key is None or self._sil_sev is None:
            return []
        gap = at - self._last
        finding = Finding(
            key=self._sil_key,
            type=AlertType.INACTIVITY,
            severity=self._sil_sev,
            at=at,
            action="resolve",
            room=self._last_room,
            evidence={"inactive_min": round(gap / MINUTE_S), "context": self._ctx},
        )
        self._sil_key = None
        self._sil_sev = None
        return [finding]

    def _check_silence(self, now: float) -> list[Emission]:
        if self._last is None:
            return []
        silence = now - self._last
        if self._early_check_in_due(now, silence):
            return [
                self._gate.ask(
                    now,
                    self._date,
                    self._last_room,
                    {
                        "reason": "silence",
                        "inactive_min": round(silence / MINUTE_S),
                        "limit_min": round(self._sil_checkin / MINUTE_S),
                        "context": self._ctx,
                        "off_furniture": self._ctx in OFF_FURNITURE,
                    },
                    early=True,
                )
            ]
        excess = silence - self._sil_limit
        if excess <= 0:
            return []
        return self._raise_inactivity(now, severity(excess, self._sil_limit))

    def _morning_check_in(self, now: float) -> list[Emission]:
        """Still resting well after the usual getting up: asked before the deadline comes."""
        lim = self._model.limits
        tod = self._tod(now)
        if (
            lim.morning_checkin_s is None
            or self._last is None
            or not lim.morning_checkin_s <= tod < lim.get_up_deadline_s
            or self._date in self._morning.checked
            or self._date in self._morning_asked
            or self._ctx not in REST_CONTEXTS
            or self._morning.is_up(bool(self._where.bed_on))
            or self._gate.pending is not None
            or self._gate.unanswered
            or self._sil_key is not None
            or self._first_seen > self._day_start + MORNING_FROM_S
        ):
            return []
        policy = self._gate.policy
        if policy.quiet(tod) or self._gate.asked(self._date) >= policy.max_per_day:
            return []
        self._morning_asked.add(self._date)
        evidence: dict[str, object] = {
            "reason": MORNING,
            "inactive_min": round((now - self._last) / MINUTE_S),
            "usual_get_up": hhmm(lim.usual_get_up_s),
            "context": self._ctx,
        }
        return [self._gate.ask(now, self._date, self._last_room, evidence, early=True)]

    def _early_check_in_due(self, now: float, silence: float) -> bool:
        if (
            self._sil_key is not None
            or self._gate.pending is not None
            or self._gate.unanswered
            or not self._model.learned
            or silence <= self._sil_checkin
            or silence >= self._sil_limit
        ):
            return False
        lim = self._model.limits
        started_at_night = is_night(
            self._span_bin * 1800.0, lim.night_start_s / HOUR_S, lim.night_end_s / HOUR_S
        )
        return self._gate.policy.early_allowed(
            self._ctx, started_at_night, self._tod(now), self._gate.asked(self._date)
        )

    def _raise_inactivity(
        self, now: float, sev: Severity, *, unanswered: bool = False
    ) -> list[Emission]:
        if self._last is None:
            return []
        if self._sil_sev is not None and SEVERITY_RANK[sev] >= SEVERITY_RANK[self._sil_sev]:
            return []
        silence = now - self._last
        if self._sil_key is None:
            self._sil_key = f"inactivity:{int(self._last)}"
        self._sil_sev = sev
        evidence: dict[str, object] = {
            "inactive_min": round(silence / MINUTE_S),
            "limit_min": round(self._sil_limit / MINUTE_S),
            "context": self._ctx,
            "since": local_hhmm(self._last, self._tz),
            "learning": not self._model.learned,
        }
        if unanswered:
            evidence["check_in"] = "unanswered"
            evidence["check_in_limit_min"] = round(self._sil_checkin / MINUTE_S)
        if self._ctx in OFF_FURNITURE:
            evidence["off_furniture"] = True
        if self._sil_usual is not None:
            evidence["usual_max_min"] = round(self._sil_usual / MINUTE_S)
        if self._ctx == OUT:
            evidence["out_min"] = evidence["inactive_min"]
        return [
            Finding(
                key=self._sil_key,
                type=AlertType.INACTIVITY,
                severity=sev,
                at=now,
                room=self._last_room,
                evidence=evidence,
            )
        ]

    # ---------------------------------------------------------------- day close

    def _close_day(self) -> list[Emission]:
        start, end, date = self._day_start, self._day_end, self._date
        log = self._log
        ongoing = None
        if self._last is not None and self._last < end:
            ongoing = (self._last, end, self._ctx)
        body, metrics, total_activity = summarise_day(
            log,
            start=start,
            end=end,
            date=date,
            ongoing=ongoing,
            bed_open=list(self._where.bed_on.values()),
            bed_rooms=self._where.bed_rooms,
            record=self._record,
            model=self._model,
            tz=self._tz,
        )
        record = self._record
        observed = end - max(start, self._first_seen)
        counted = observed >= COVERAGE_MIN_S and total_activity > 0
        record.metrics = metrics
        self._model.add_day(record, counted, self._th)
        # next day
        log.rooms = {}
        log.prune(end - LOG_KEEP_S)
        for key in [k for k in self._records if k not in (self._span_date, date)]:
            del self._records[key]
        for day in [d for d in self._gate.counts if d < date]:
            del self._gate.counts[day]
        self._morning_asked = {d for d in self._morning_asked if d >= date}
        self._set_day(end)
        if self._last is not None and self._sil_key is None and self._ctx != OUT:
            # the current silence is now judged against the refreshed limits
            self._sil_limit, self._sil_usual, self._sil_checkin = self._limit()
        body = {**body, "check_ins": self._gate.asked(date)}
        return [Aggregate("daily", start, end, body)]
