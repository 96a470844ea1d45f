"""Hourly aggregates per room: activity counts, door openings and time in bed.

Pure: events and the current time in, one `Aggregate(period="hourly")` per elapsed local
clock hour out (body fields in `cloud_bridge.contract`; the pipeline adds `sensor_health`).
Hours are those of the home's time zone; in zones whose offsets are whole hours they are also
whole UTC hours. No aggregate is made for an hour before the first event or `advance`. After a
long gap (gateway off, a replay letting time run on) one call emits at most
`MAX_CATCHUP_HOURS` aggregates: the hour that was open, then the last hours before `now`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from edge.const import HOUR_S
from edge.events import Aggregate, Event, EventKind, Role, is_activity
from edge.home import HomeProfile

_LOGGER = logging.getLogger(__name__)

MAX_CATCHUP_HOURS = 24
DOOR_ROLES = frozenset({Role.DOOR_ENTRANCE, Role.DOOR_FRIDGE, Role.DOOR})


@dataclass(slots=True)
class _RoomCounts:
    activity: int = 0
    door_openings: int = 0
    bed_s: float = 0.0


@dataclass(slots=True)
class _Bed:
    """Bed sensors of one room: the room counts as 'in bed' while any of them shows presence."""

    occupied: set[str] = field(default_factory=set)
    since: float | None = None  # start of the in-bed stretch not yet counted


class HourlyAggregator:
    """Rolls events up into local clock hours."""

    def __init__(self, profile: HomeProfile, tz: tzinfo) -> None:
        self._tz = tz
        self._devices = {d.id: d for d in profile.devices}
        self._room_names = [r.name for r in profile.rooms]
        self._start: float | None = None  # the open hour
        self._rooms: dict[str, _RoomCounts] = {}
        self._totals = {"activity": 0, "door_openings": 0, "entrance_openings": 0}
        self._beds: dict[str, _Bed] = {}
        self._reset()

    def hour_start(self, t: float) -> float:
        """The start of the local clock hour holding `t`."""
        local = datetime.fromtimestamp(t, self._tz)
        return local.replace(minute=0, second=0, microsecond=0).timestamp()

    def feed(self, event: Event) -> list[Aggregate]:
        """Count one event; returns the hours that closed before it."""
        out = self.advance(event.at)
        assert self._start is not None  # set by advance
        dev = self._devices.get(event.device_id)
        room = dev.room if dev is not None and dev.room else event.room
        role = dev.role if dev else event.role
        if room is not None and room not in self._rooms:
            self._rooms[room] = _RoomCounts()
        counts = self._rooms.get(room) if room is not None else None
        if is_activity(event):
            self._totals["activity"] += 1
            if counts is not None:
                counts.activity += 1
        if event.kind is EventKind.OPEN and event.value is True and role in DOOR_ROLES:
            self._totals["door_openings"] += 1
            if role is Role.DOOR_ENTRANCE:
                self._totals["entrance_openings"] += 1
            if counts is not None:
                counts.door_openings += 1
        if event.kind is EventKind.PRESENCE and role is Role.BED:
            if room is None or not isinstance(event.value, bool):
                _LOGGER.warning("hourly: bad bed event from %s: %r", event.device_id, event.value)
            else:
                self._bed(room, event.device_id, event.value, max(event.at, self._start))
        return out

    def advance(self, now: float) -> list[Aggregate]:
        """Close every local hour that ended by `now` (at most `MAX_CATCHUP_HOURS` per call)."""
        if self._start is None:
            self._start = self.hour_start(now)
            return []
        elapsed = int((now - self._start) // HOUR_S)
        if elapsed <= 0:
            return []
        out = [self._close()]
        skip = elapsed - MAX_CATCHUP_HOURS
        if skip > 0:
            _LOGGER.warning(
                "hourly: %d hours passed since the open hour began; skipping %d empty hours",
                elapsed,
                skip,
            )
            self._start += skip * HOUR_S
            for bed in self._beds.values():
                if bed.since is not None:
                    bed.since = self._start
        while now >= self._start + HOUR_S:
            out.append(self._close())
        return out

    def _bed(self, room: str, device_id: str, in_bed: bool, at: float) -> None:
        bed = self._beds.setdefault(room, _Bed())
        was = bool(bed.occupied)
        if in_bed:
            bed.occupied.add(device_id)
        else:
            bed.occupied.discard(device_id)
        if not was and bed.occupied:
            bed.since = at
        elif was and not bed.occupied and bed.since is not None:
            self._rooms[room].bed_s += max(0.0, at - bed.since)
            bed.since = None

    def _close(self) -> Aggregate:
        """Emit the open hour and open the next one (bed stretches carry over)."""
        assert self._start is not None
        start, end = self._start, self._start + HOUR_S
        for room, bed in self._beds.items():
            if bed.since is not None:
                self._rooms.setdefault(room, _RoomCounts()).bed_s += max(0.0, end - bed.since)
                bed.since = end
        body: dict[str, Any] = {
            "rooms": {
                name: {
                    "activity": c.activity,
                    "door_openings": c.door_openings,
                    "bed_min": round(c.bed_s / 60, 1),
                }
                for name, c in self._rooms.items()
            },
            "totals": dict(self._totals),
        }
        self._start = end
        self._reset()
        return Aggregate(period="hourly", period_start=start, period_end=end, body=body)

    def _reset(self) -> None:
        self._rooms = {name: _RoomCounts() for name in self._room_names}
        self._totals = dict.fromkeys(self._totals, 0)
