"""The daily summary (`veille.aggregate.daily/1` body) from one day's signs of life. Pure.

A day's summary describes the night that ended that morning (bed time, getting up, time in
bed, night bathroom visits) and the day itself (activity and door openings per room, time out
of home). The night is found as the longest run of rest (silences that start in bed or in the
bedroom, and bed-sensor occupancy, each at least `REST_MIN_S`, joined across short breaks such
as a bathroom visit) that ends between 03:00 and 15:00 of that day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.const import DAY_S, HOUR_S, MINUTE_S
from edge.detect.routine import (
    OUT,
    REST_CONTEXTS,
    DayRecord,
    RoutineModel,
)

REST_MIN_S = 20 * MINUTE_S
REST_JOIN_S = 90 * MINUTE_S
NIGHT_SEARCH_FROM_S = -8 * HOUR_S  # 16:00 the day before
NIGHT_END_FROM_S = 3 * HOUR_S
NIGHT_END_TO_S = 15 * HOUR_S
OUT_MIN_S = 2 * MINUTE_S


@dataclass(frozen=True, slots=True)
class Night:
    start: float
    end: float
    in_bed_s: float
    bathroom_visits: int


@dataclass
class RoomDay:
    activity: int = 0
    door_openings: int = 0
    bed_s: float = 0.0


@dataclass
class DayLog:
    """What the detector keeps of recent hours to summarise a day (pruned as it goes)."""

    silences: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, ctx
    bed: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, room
    bath_entries: list[float] = field(default_factory=list)
    rooms: dict[str, RoomDay] = field(default_factory=dict)

    def shift(self, step: float) -> None:
        """A clock stepped by `step` seconds: move every kept time with it."""
        self.silences = [(s + step, e + step, c) for s, e, c in self.silences]
        self.bed = [(s + step, e + step, r) for s, e, r in self.bed]
        self.bath_entries = [t + step for t in self.bath_entries]

    def prune(self, before: float) -> None:
        self.silences = [s for s in self.silences if s[1] >= before]
        self.bed = [b for b in self.bed if b[1] >= before]
        self.bath_entries = [t for t in self.bath_entries if t >= before]


def find_night(
    day_start: float,
    silences: Iterable[tuple[float, float, str]],
    bed: Iterable[tuple[float, float, str]],
    bath_entries: Iterable[float],
    has_bed_sensor: bool,
) -> Night | None:
    """The night that ended on the morning of the day starting at `day_start`, if any."""
    lo = day_start + NIGHT_SEARCH_FROM_S
    rest = [
        (s, e) for s, e, ctx in silences if ctx in REST_CONTEXTS and e - s >= REST_MIN_S and e > lo
    ]
    rest += [(s, e) for s, e, _ in bed if e - s >= REST_MIN_S and e > lo]
    if not rest:
        return None
    rest.sort()
    blocks: list[list[float]] = []
    for s, e in rest:
        if blocks and s - blocks[-1][1] <= REST_JOIN_S:
            blocks[-1][1] = max(blocks[-1][1], e)
        else:
            blocks.append([s, e])
    candidates = [
        b
        for b in blocks
        if day_start + NIGHT_END_FROM_S <= b[1] <= day_start + NIGHT_END_TO_S and b[0] >= lo
    ]
    if not candidates:
        return None
    start, end = max(candidates, key=lambda b: b[1] - b[0])
    if has_bed_sensor:
        in_bed = sum(max(0.0, min(e, end) - max(s, start)) for s, e, _ in bed)
    else:
        in_bed = end - start
    visits = sum(1 for t in bath_entries if start <= t <= end)
    return Night(start, end, in_bed, visits)


def time_out_s(silences: Iterable[tuple[float, float, str]], start: float, end: float) -> float:
    """Seconds out of home within [start, end): silences that began with a departure."""
    total = 0.0
    for s, e, ctx in silences:
        if ctx == OUT and e - s >= OUT_MIN_S:
            total += max(0.0, min(e, end) - max(s, start))
    return total


def local_hhmm(t: float | None, tz: dt.tzinfo) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, tz).strftime("%H:%M")


def minutes_after(t: float, origin: float) -> float:
    return round((t - origin) / MINUTE_S, 1)


def rooms_body(rooms: Mapping[str, RoomDay], bed_rooms: Iterable[str]) -> dict[str, Any]:
    bed_set = set(bed_rooms)
    body: dict[str, Any] = {}
    for name, r in sorted(rooms.items()):
        entry: dict[str, Any] = {"activity": r.activity, "door_openings": r.door_openings}
        if name in bed_set:
            entry["bed_min"] = round(r.bed_s / MINUTE_S, 1)
        body[name] = entry
    return body


def summarise_day(
    log: DayLog,
    *,
    start: float,
    end: float,
    date: str,
    ongoing: tuple[float, float, str] | None,
    bed_open: Iterable[tuple[str, float]],
    bed_rooms: Iterable[str],
    record: DayRecord,
    model: RoutineModel,
    tz: dt.tzinfo,
) -> tuple[dict[str, Any], dict[str, float | None], int]:
    """The daily body, the day's metrics (for learning) and its total activity count.

    `ongoing` is the silence still running at midnight and `bed_open` the (room, since) of
    beds still occupied: both count up to `end`.
    """
    bed_room_set = set(bed_rooms)
    silences = list(log.silences) + ([ongoing] if ongoing else [])
    bed = list(log.bed) + [(s, end, r) for r, s in bed_open]
    for r_name in bed_room_set:
        log.rooms.setdefault(r_name, RoomDay()).bed_s = sum(
            max(0.0, min(e, end) - max(s, start)) for s, e, rr in bed if rr == r_name
        )
    night = find_night(start, silences, bed, log.bath_entries, bool(bed_room_set))
    out_s = time_out_s(silences, start, end)
    total_activity = sum(r.activity for r in log.rooms.values())
    metrics: dict[str, float | None] = {
        "get_up_min": minutes_after(night.end, start) if night else None,
        "bed_time_min": minutes_after(night.start, start - DAY_S / 2) if night else None,
        "time_in_bed_min": round(night.in_bed_s / MINUTE_S, 1) if night else None,
        "night_bathroom_visits": float(night.bathroom_visits) if night else None,
        "time_out_min": round(out_s / MINUTE_S, 1),
        "activity_total": float(total_activity),
    }
    compare = {m: model.compare(m, metrics[m], model.values(m)) for m in metrics}
    for kind, count in sorted(record.activity_by_kind.items()):
        compare[f"activity_{kind}"] = model.compare(
            f"activity_{kind}", float(count), model.activity_values(kind)
        )
    body = {
        "date": date,
        "rooms": rooms_body(log.rooms, bed_room_set),
        "get_up": local_hhmm(night.end, tz) if night else None,
        "bed_time": local_hhmm(night.start, tz) if night else None,
        "time_in_bed_min": metrics["time_in_bed_min"],
        "night_bathroom_visits": night.bathroom_visits if night else 0,
        "time_out_min": metrics["time_out_min"],
        "compare": compare,
    }
    return body, metrics, total_activity
