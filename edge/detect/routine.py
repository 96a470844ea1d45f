"""Unusual inactivity and routine alerts, learned from the home's own ambient sensors. Pure.

`RoutineDetector.feed(event)` and `advance(now)` return `Finding`s (`inactivity`,
`no_morning_activity`, `bathroom_long`, `night_exit`; each resolved when the resident shows
life again) and, at each local midnight, the daily summary `Aggregate`.

How it reads the home:
* every state change of a motion, presence, door, flush, switch or appliance sensor is a
  *sign of life*; a *silence* is the time since the last one, and the *context* it began in
  is where that sign came from (`bed` when a bed sensor is occupied, `chair` likewise, else
  the room kind), or `out` when the entrance door opened and only the entrance spoke after;
* an inactivity alert is raised when the silence exceeds the learned limit for its context
  and the time of day it began (`edge.detect.inactivity`), with a severity rising with the
  excess; `out` has a long limit of its own, so a resident away is not alarmed on but a
  departure that never ends is;
* two rooms that are normally never active within `VISIT_PAIR_S` of each other being so
  twice within `VISIT_WINDOW_S` marks a visit; while a visit is on, the entrance door is not
  taken as the resident leaving, so the visitor's departure cannot silence a later alert;
* time going backwards (a wall clock stepped by NTP reaching the detector) shifts every
  anchor by the step, so no silence is lengthened or shortened by it; time going forwards is
  real elapsed time (the production clock is monotonic-anchored, see `edge.clock`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import deque
from collections.abc import Mapping

from edge.detect.inactivity import (
    BED,
    CHAIR,
    DAY_S,
    HOUR_S,
    MINUTE_S,
    OUT,
    DayRecord,
    RoutineModel,
    hhmm,
    is_night,
    time_bin,
)
from edge.detect.summary import (
    DayLog,
    RoomDay,
    find_night,
    local_hhmm,
    minutes_after,
    rooms_body,
    time_out_s,
)
from edge.events import (
    SEVERITY_RANK,
    Aggregate,
    AlertType,
    Emission,
    Event,
    EventKind,
    Finding,
    Role,
    RoomKind,
    Severity,
    is_activity,
)
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
BACKWARD_TOLERANCE_S = 120.0  # a step back larger than this is a clock jump
DOOR_OUT_WINDOW_S = 10 * MINUTE_S  # entrance-only signs this soon after the door: leaving
OUT_CONFIRM_S = 2 * MINUTE_S  # an `out` silence this long before a door event: a return
DOOR_PAIR_S = 2 * MINUTE_S  # door movements of one passage
VISIT_PAIR_S = 2.0
VISIT_WINDOW_S = 10 * MINUTE_S
VISIT_HOLD_S = 30 * MINUTE_S
# The door closing during a visit: the resident may have left with the visitor, or stayed
# behind alone; the silence that follows gets at least this long before an alert.
VISIT_DEPARTURE_LIMIT_S = 3 * HOUR_S
BATH_SILENT_EXIT_S = 30 * MINUTE_S  # a bathroom silent this long: the stay is over
MORNING_FROM_S = 4 * HOUR_S
UP_MIN_SIGNS = 3
LOG_KEEP_S = 48 * HOUR_S
COVERAGE_MIN_S = 12 * HOUR_S  # a day counts towards learning when observed this long
ALARMED_LEARN_FACTOR = 1.25  # an alarmed silence teaches at most this times its limit
HIGH_AFTER_S = 60 * MINUTE_S
CRITICAL_AFTER_S = 180 * MINUTE_S


def _severity(excess_s: float, limit_s: float) -> Severity:
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
        self._bed_rooms: set[str] = set()
        # the current silence
        self._last: float | None = None
        self._last_room: str | None = None
        self._ctx = "other"
        self._sil_date = ""
        self._sil_bin = 0
        self._sil_limit = 0.0
        self._sil_usual: float | None = None
        self._sil_key: str | None = None
        self._sil_sev: Severity | None = None
        # occupancy: device id -> (room, since)
        self._bed_on: dict[str, tuple[str, float]] = {}
        self._chair_on: dict[str, tuple[str, float]] = {}
        # doors and visits
        self._leaving_at: float | None = None
        self._last_door_at: float | None = None
        self._return_at: float | None = None
        self._night_exit_key: str | None = None
        self._visit_until = float("-inf")
        self._visit_departure_at: float | None = None
        self._coincidences: deque[float] = deque()
        self._last_on: dict[str, float] = {}
        # bathroom stay
        self._bath_enter: float | None = None
        self._bath_last: float | None = None
        self._bath_key: str | None = None
        self._bath_sev: Severity | None = None
        # morning
        self._up_signs = 0
        self._up_rooms: set[str] = set()
        self._morning_checked: set[str] = set()
        self._morning_key: str | None = None

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
        self._up_signs = 0
        self._up_rooms = set()

    def _tod(self, t: float) -> float:
        return min(DAY_S - 1.0, max(0.0, t - self._day_start))

    def advance(self, now: float) -> list[Emission]:
        """Let time run to `now` (event time in replays): timers, day closes, findings."""
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
        out.extend(self._check_silence(now))
        out.extend(self._check_bathroom(now))
        out.extend(self._check_night_exit(now))
        out.extend(self._check_morning(now))
        return out

    def _shift(self, step: float) -> None:
        """A clock stepped by `step` seconds: move every anchor with it."""
        _LOGGER.warning("clock stepped by %.0f s; routine timers moved with it", step)
        assert self._now is not None
        self._now += step

        def mv(t: float | None) -> float | None:
            return None if t is None else t + step

        self._last = mv(self._last)
        self._leaving_at = mv(self._leaving_at)
        self._last_door_at = mv(self._last_door_at)
        self._return_at = mv(self._return_at)
        self._visit_departure_at = mv(self._visit_departure_at)
        self._bath_enter = mv(self._bath_enter)
        self._bath_last = mv(self._bath_last)
        self._visit_until += step
        self._bed_on = {k: (r, t + step) for k, (r, t) in self._bed_on.items()}
        self._chair_on = {k: (r, t + step) for k, (r, t) in self._chair_on.items()}
        self._last_on = {k: t + step for k, t in self._last_on.items()}
        self._coincidences = deque(t + step for t in self._coincidences)
        self._log.silences = [(s + step, e + step, c) for s, e, c in self._log.silences]
        self._log.bed = [(s + step, e + step, r) for s, e, r in self._log.bed]
        self._log.bath_entries = [t + step for t in self._log.bath_entries]
        date = self._date
        self._set_day(self._now)
        if self._date != date:
            self._morning_checked.add(self._date)  # the morning of a day seen twice: once

    # ---------------------------------------------------------------- events

    def feed(self, event: Event) -> list[Emission]:
        """Take one event; returns findings it raises or resolves (and any day closed first)."""
        if event.kind not in SIGN_KINDS and not (
            event.kind is EventKind.POWER and is_activity(event)
        ):
            return self.advance(event.at) if self._now is None or event.at > self._now else []
        out = self.advance(event.at)
        assert self._now is not None
        at = max(event.at, self._now) if self._now - event.at <= BACKWARD_TOLERANCE_S else self._now
        room = event.room or "?"
        kind = event.room_kind or self._rooms.get(room, RoomKind.OTHER)
        role = event.role
        out.extend(self._end_silence(at))
        self._count(event, room, kind)
        if role is Role.DOOR_ENTRANCE:
            self._door(at)
        elif kind is not RoomKind.ENTRANCE:
            self._leaving_at = None
            self._visit_departure_at = None
            if self._night_exit_key is not None:
                out.append(self._resolve_night_exit(at))
        if event.kind is EventKind.PRESENCE and role in (Role.BED, Role.CHAIR):
            self._occupancy(event, room, at)
        if event.value is True or event.kind is EventKind.OPEN:
            self._visit(room, kind, at)
        out.extend(self._bathroom(kind, at))
        out.extend(self._morning_sign(room, kind, at))
        self._start_silence(at, room, kind)
        return out

    def _count(self, event: Event, room: str, kind: RoomKind) -> None:
        rd = self._log.rooms.setdefault(room, RoomDay())
        if is_activity(event):
            rd.activity += 1
            by_kind = self._record.activity_by_kind
            by_kind[kind.value] = by_kind.get(kind.value, 0) + 1
        if event.kind is EventKind.OPEN and event.value is True:
            rd.door_openings += 1

    def _door(self, at: float) -> None:
        gap = at - self._last if self._last is not None else 0.0
        if self._ctx == OUT and gap >= OUT_CONFIRM_S:
            self._return_at = at  # coming home
            self._leaving_at = None
        elif self._return_at is not None and at - self._return_at <= DOOR_PAIR_S:
            pass  # the same passage: the door closing behind the resident
        elif at < self._visit_until:
            self._leaving_at = None  # a visitor may be the one leaving: stay watchful
            self._visit_departure_at = at
        elif self._leaving_at is None:
            self._leaving_at = at
        self._last_door_at = at

    def _occupancy(self, event: Event, room: str, at: float) -> None:
        table = self._bed_on if event.role is Role.BED else self._chair_on
        if event.role is Role.BED:
            self._bed_rooms.add(room)
        if event.value:
            table.setdefault(event.device_id, (room, at))
        elif event.device_id in table:
            r, since = table.pop(event.device_id)
            if event.role is Role.BED:
                self._log.bed.append((since, at, r))

    def _visit(self, room: str, kind: RoomKind, at: float) -> None:
        if kind in (RoomKind.ENTRANCE, RoomKind.OTHER):
            return
        limits = self._model.limits
        for other, t in self._last_on.items():
            if other == room or at - t > VISIT_PAIR_S:
                continue
            pair = "|".join(sorted((room, other)))
            self._record.pairs[pair] = self._record.pairs.get(pair, 0) + 1
            if limits.distant_pairs_known and pair not in limits.near_pairs:
                self._coincidences.append(at)
        self._last_on[room] = at
        while self._coincidences and at - self._coincidences[0] > VISIT_WINDOW_S:
            self._coincidences.popleft()
        if len(self._coincidences) >= 2:
            if at >= self._visit_until:
                _LOGGER.info("visit: two distant rooms active at once")
            self._visit_until = at + VISIT_HOLD_S
            self._leaving_at = None

    def _context(self, room: str, kind: RoomKind, at: float) -> str:
        if (
            self._leaving_at is not None
            and kind is RoomKind.ENTRANCE
            and self._last_door_at is not None
            and at - self._last_door_at <= DOOR_OUT_WINDOW_S
        ):
            return OUT
        # someone on a bed or seat sensor returns to it without a sign: the latest one rules
        latest_bed = max((t for _, t in self._bed_on.values()), default=None)
        latest_chair = max((t for _, t in self._chair_on.values()), default=None)
        if latest_bed is not None and (latest_chair is None or latest_bed >= latest_chair):
            return BED
        if latest_chair is not None:
            return CHAIR
        return kind.value

    # ---------------------------------------------------------------- silence

    def _start_silence(self, at: float, room: str, kind: RoomKind) -> None:
        self._last = at
        self._last_room = room
        self._ctx = self._context(room, kind, at)
        self._sil_date = self._date
        self._sil_bin = time_bin(self._tod(at))
        limits = self._model.limits
        if self._ctx == OUT:
            self._sil_limit, self._sil_usual = limits.out_s, None
        else:
            self._sil_limit = limits.silence_s[self._ctx][self._sil_bin]
            self._sil_usual = limits.usual_s[self._ctx][self._sil_bin]
            if self._visit_departure_at is not None and self._ctx == RoomKind.ENTRANCE.value:
                self._sil_limit = max(self._sil_limit, VISIT_DEPARTURE_LIMIT_S)
        self._sil_key = None
        self._sil_sev = None

    def _end_silence(self, at: float) -> list[Emission]:
        if self._last is None:
            return []
        gap = at - self._last
        learn = gap
        if self._sil_sev is not None:
            learn = min(gap, ALARMED_LEARN_FACTOR * self._sil_limit)
        record = self._records.get(self._sil_date)
        if record is not None:
            record.note_silence(self._ctx, self._sil_bin, learn)
            if (
                self._ctx == OUT
                and self._sil_date
                and is_night(
                    self._sil_bin * 1800.0,
                    self._model.limits.night_start_s / HOUR_S,
                    self._model.limits.night_end_s / HOUR_S,
                )
            ):
                record.night_out_max_s = max(record.night_out_max_s, learn)
        if gap >= 60.0 or self._ctx == OUT:
            self._log.silences.append((self._last, at, self._ctx))
        if self._sil_key is None or self._sil_sev is None:
            return []
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
        excess = silence - self._sil_limit
        if excess <= 0:
            return []
        sev = _severity(excess, self._sil_limit)
        if self._sil_sev is not None and SEVERITY_RANK[sev] >= SEVERITY_RANK[self._sil_sev]:
            return []
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

    # ---------------------------------------------------------------- bathroom

    def _bathroom(self, kind: RoomKind, at: float) -> list[Emission]:
        out: list[Emission] = []
        if kind is RoomKind.BATHROOM:
            if self._bath_enter is None or (
                self._bath_last is not None and at - self._bath_last > BATH_SILENT_EXIT_S
            ):
                out.extend(self._end_bath(at))
                self._bath_enter = at
                self._log.bath_entries.append(at)
            self._bath_last = at
        elif self._bath_enter is not None:
            out.extend(self._end_bath(at))
        return out

    def _end_bath(self, at: float) -> list[Emission]:
        if self._bath_enter is None or self._bath_last is None:
            return []
        stay = self._bath_last - self._bath_enter
        learn = stay if self._bath_key is None else min(stay, self._model.limits.bathroom_s)
        self._record.bath_stay_max_s = max(self._record.bath_stay_max_s, learn)
        out: list[Emission] = []
        if self._bath_key is not None and self._bath_sev is not None:
            out.append(
                Finding(
                    key=self._bath_key,
                    type=AlertType.BATHROOM_LONG,
                    severity=self._bath_sev,
                    at=at,
                    action="resolve",
                    evidence={"stay_min": round((at - self._bath_enter) / MINUTE_S)},
                )
            )
        self._bath_enter = self._bath_last = None
        self._bath_key = self._bath_sev = None
        return out

    def _check_bathroom(self, now: float) -> list[Emission]:
        if self._bath_enter is None or self._bath_last is None:
            return []
        if now - self._bath_last > BATH_SILENT_EXIT_S and self._bath_key is None:
            return []  # gone quiet: the stay is over or it is a silence (the inactivity watch)
        limit = self._model.limits.bathroom_s
        stay = now - self._bath_enter
        if stay <= limit:
            return []
        sev = Severity.HIGH if stay >= 2 * limit else Severity.WARNING
        if self._bath_sev is not None and SEVERITY_RANK[sev] >= SEVERITY_RANK[self._bath_sev]:
            return []
        self._bath_key = self._bath_key or f"bathroom_long:{int(self._bath_enter)}"
        self._bath_sev = sev
        evidence: dict[str, object] = {
            "stay_min": round(stay / MINUTE_S),
            "limit_min": round(limit / MINUTE_S),
        }
        if self._model.limits.bath_usual_s is not None:
            evidence["usual_max_min"] = round(self._model.limits.bath_usual_s / MINUTE_S)
        room = self._last_room if self._bath_last == self._last else None
        return [
            Finding(self._bath_key, AlertType.BATHROOM_LONG, sev, now, room=room, evidence=evidence)
        ]

    # ---------------------------------------------------------------- night exit

    def _check_night_exit(self, now: float) -> list[Emission]:
        if self._leaving_at is None or self._night_exit_key is not None or self._ctx != OUT:
            return []
        lim = self._model.limits
        left = self._leaving_at
        tod = left - self._day_start if left >= self._day_start else left - self._day_start + DAY_S
        if not is_night(tod, lim.night_start_s / HOUR_S, lim.night_end_s / HOUR_S):
            return []
        if now - left <= lim.night_exit_s:
            return []
        self._night_exit_key = f"night_exit:{int(left)}"
        return [
            Finding(
                key=self._night_exit_key,
                type=AlertType.NIGHT_EXIT,
                severity=Severity.HIGH,
                at=now,
                room=self._last_room,
                evidence={
                    "door_at": local_hhmm(left, self._tz),
                    "out_min": round((now - left) / MINUTE_S),
                    "limit_min": round(lim.night_exit_s / MINUTE_S),
                },
            )
        ]

    def _resolve_night_exit(self, at: float) -> Finding:
        key, self._night_exit_key = self._night_exit_key or "", None
        return Finding(key, AlertType.NIGHT_EXIT, Severity.HIGH, at, action="resolve")

    # ---------------------------------------------------------------- morning

    def _morning_sign(self, room: str, kind: RoomKind, at: float) -> list[Emission]:
        if self._tod(at) < MORNING_FROM_S or kind is RoomKind.BEDROOM or self._bed_on:
            return []
        if self._ctx == OUT and kind is RoomKind.ENTRANCE:
            return []
        self._up_signs += 1
        self._up_rooms.add(room)
        if self._morning_key is None or not self._is_up():
            return []
        key, self._morning_key = self._morning_key, None
        return [Finding(key, AlertType.NO_MORNING_ACTIVITY, Severity.HIGH, at, action="resolve")]

    def _is_up(self) -> bool:
        if self._bed_on:
            return False
        return self._up_signs >= UP_MIN_SIGNS

    def _check_morning(self, now: float) -> list[Emission]:
        lim = self._model.limits
        if self._date in self._morning_checked or self._tod(now) < lim.get_up_deadline_s:
            return []
        self._morning_checked.add(self._date)
        if self._is_up() or (self._ctx == OUT and self._last is not None):
            return []
        if self._first_seen > self._day_start + MORNING_FROM_S:
            return []  # not watching since early morning: no judgement on this one
        self._morning_key = f"no_morning_activity:{self._date}"
        evidence: dict[str, object] = {
            "deadline": hhmm(lim.get_up_deadline_s),
            "usual_get_up": hhmm(lim.usual_get_up_s),
            "learning": not lim.learned,
        }
        if self._last is not None:
            evidence["inactive_min"] = round((now - self._last) / MINUTE_S)
        return [
            Finding(
                self._morning_key,
                AlertType.NO_MORNING_ACTIVITY,
                Severity.HIGH,
                now,
                room=self._last_room,
                evidence=evidence,
            )
        ]

    # ---------------------------------------------------------------- day close

    def _close_day(self) -> list[Emission]:
        start, end, date = self._day_start, self._day_end, self._date
        log = self._log
        # ongoing states count up to midnight
        silences = list(log.silences)
        if self._last is not None and self._last < end:
            silences.append((self._last, end, self._ctx))
        bed = list(log.bed) + [(s, end, r) for r, s in self._bed_on.values()]
        for r_name in self._bed_rooms:
            log.rooms.setdefault(r_name, RoomDay()).bed_s = sum(
                max(0.0, min(e, end) - max(s, start)) for s, e, rr in bed if rr == r_name
            )
        night = find_night(start, silences, bed, log.bath_entries, bool(self._bed_rooms))
        out_s = time_out_s(silences, start, end)
        record = self._record
        total_activity = sum(r.activity for r in log.rooms.values())
        metrics: dict[str, float | None] = {
            "get_up_min": minutes_after(night.end, start) if night else None,
            "bed_time_min": minutes_after(night.start, start - DAY_S / 2) if night else None,
            "time_in_bed_min": round(night.in_bed_s / MINUTE_S, 1) if night else None,
            "night_bathroom_visits": float(night.bathroom_visits) if night else None,
            "time_out_min": round(out_s / MINUTE_S, 1),
            "activity_total": float(total_activity),
        }
        model = self._model
        compare = {m: model.compare(m, metrics[m], model.values(m)) for m in metrics}
        for kind, count in sorted(record.activity_by_kind.items()):
            compare[f"activity_{kind}"] = model.compare(
                f"activity_{kind}", float(count), model.activity_values(kind)
            )
        body = {
            "date": date,
            "rooms": rooms_body(log.rooms, self._bed_rooms),
            "get_up": local_hhmm(night.end, self._tz) if night else None,
            "bed_time": local_hhmm(night.start, self._tz) if night else None,
            "time_in_bed_min": metrics["time_in_bed_min"],
            "night_bathroom_visits": night.bathroom_visits if night else 0,
            "time_out_min": metrics["time_out_min"],
            "compare": compare,
        }
        observed = end - max(start, self._first_seen)
        counted = observed >= COVERAGE_MIN_S and total_activity > 0
        record.metrics = metrics
        model.add_day(record, counted, self._th)
        # next day
        log.rooms = {}
        log.prune(end - LOG_KEEP_S)
        for key in [k for k in self._records if k not in (self._sil_date, date)]:
            del self._records[key]
        self._set_day(end)
        if self._last is not None and self._sil_key is None and self._ctx != OUT:
            # the current silence is now judged against the refreshed limits
            self._sil_limit = model.limits.silence_s[self._ctx][self._sil_bin]
            self._sil_usual = model.limits.usual_s[self._ctx][self._sil_bin]
        return [Aggregate("daily", start, end, body)]
