"""Where the resident is taken to be: out, in bed or seated, or with a visitor. Pure.

`Whereabouts` reads the signs of life the routine detector passes on and answers one
question for it: in what *context* does the silence that starts now begin?

* `out` when the entrance door opened and only the entrance spoke after (within
  `DOOR_OUT_WINDOW_S`); once out, further entrance-only signs (a passer-by on the landing,
  the entry PIR seeing through the door) keep the resident out: only the door followed by a
  sign inside, or a sign in an inner room, brings them back;
* `bed` / `chair` when a bed or seat pressure sensor is occupied (the latest one rules,
  since someone returning to a seat makes no other sign);
* else the kind of the room the sign came from.

It also marks visits: two rooms that are normally never active within `VISIT_PAIR_S` of
each other being so twice within `VISIT_WINDOW_S`. While a visit is on, the entrance door is
not taken as the resident leaving, so the visitor's departure cannot silence a later alert.
"""

from __future__ import annotations

import logging
from collections import deque

from edge.const import MINUTE_S
from edge.detect.routine import BED, CHAIR, OUT, DayRecord, Limits
from edge.events import Event, Role, RoomKind

__all__ = ["Whereabouts"]

_LOGGER = logging.getLogger(__name__)

DOOR_OUT_WINDOW_S = 10 * MINUTE_S  # entrance-only signs this soon after the door: leaving
OUT_CONFIRM_S = 2 * MINUTE_S  # an `out` silence this long before a door event: a return
DOOR_PAIR_S = 2 * MINUTE_S  # door movements of one passage
VISIT_PAIR_S = 2.0
VISIT_WINDOW_S = 10 * MINUTE_S
VISIT_HOLD_S = 30 * MINUTE_S


class Whereabouts:
    """Doors, pressure mats and visits: the context a silence starts in (pure)."""

    def __init__(self) -> None:
        self.leaving_at: float | None = None
        self.last_door_at: float | None = None
        self.return_at: float | None = None
        self.visit_until = float("-inf")
        self.visit_departure_at: float | None = None
        self.bed_on: dict[str, tuple[str, float]] = {}  # device id -> (room, since)
        self.chair_on: dict[str, tuple[str, float]] = {}
        self.bed_rooms: set[str] = set()
        self._coincidences: deque[float] = deque()
        self._last_on: dict[str, float] = {}

    def shift(self, step: float) -> None:
        """A clock stepped by `step` seconds: move every anchor with it."""

        def mv(t: float | None) -> float | None:
            return None if t is None else t + step

        self.leaving_at = mv(self.leaving_at)
        self.last_door_at = mv(self.last_door_at)
        self.return_at = mv(self.return_at)
        self.visit_departure_at = mv(self.visit_departure_at)
        self.visit_until += step
        self.bed_on = {k: (r, t + step) for k, (r, t) in self.bed_on.items()}
        self.chair_on = {k: (r, t + step) for k, (r, t) in self.chair_on.items()}
        self._last_on = {k: t + step for k, t in self._last_on.items()}
        self._coincidences = deque(t + step for t in self._coincidences)

    def door(self, at: float, silence_s: float, ctx: str) -> None:
        """The entrance door moved at `at`, `silence_s` after the last sign (in `ctx`)."""
        if ctx == OUT and silence_s >= OUT_CONFIRM_S:
            self.return_at = at  # coming home
            self.leaving_at = None
        elif self.return_at is not None and at - self.return_at <= DOOR_PAIR_S:
            pass  # the same passage: the door closing behind the resident
        elif at < self.visit_until:
            self.leaving_at = None  # a visitor may be the one leaving: stay watchful
            self.visit_departure_at = at
        elif self.leaving_at is None:
            self.leaving_at = at
        self.last_door_at = at

    def inside(self) -> None:
        """A sign from an inner room: nobody is leaving."""
        self.leaving_at = None
        self.visit_departure_at = None

    def occupancy(self, event: Event, room: str, at: float) -> tuple[float, float, str] | None:
        """A bed or seat mat changed; returns a finished bed stay (start, end, room) if any."""
        table = self.bed_on if event.role is Role.BED else self.chair_on
        if event.role is Role.BED:
            self.bed_rooms.add(room)
        if event.value:
            table.setdefault(event.device_id, (room, at))
        elif event.device_id in table:
            r, since = table.pop(event.device_id)
            if event.role is Role.BED:
                return (since, at, r)
        return None

    def visit(
        self, room: str, kind: RoomKind, at: float, limits: Limits, record: DayRecord
    ) -> None:
        """Count rooms firing together; two distant rooms at once, twice: a visit."""
        if kind in (RoomKind.ENTRANCE, RoomKind.OTHER):
            return
        for other, t in self._last_on.items():
            if other == room or at - t > VISIT_PAIR_S:
                continue
            pair = "|".join(sorted((room, other)))
            record.pairs[pair] = record.pairs.get(pair, 0) + 1
            if limits.distant_pairs_known and pair not in limits.near_pairs:
                self._coincidences.append(at)
        self._last_on[room] = at
        while self._coincidences and at - self._coincidences[0] > VISIT_WINDOW_S:
            self._coincidences.popleft()
        if len(self._coincidences) >= 2:
            if at >= self.visit_until:
                _LOGGER.info("visit: two distant rooms active at once")
            self.visit_until = at + VISIT_HOLD_S
            self.leaving_at = None

    def context(self, kind: RoomKind, role: Role | None, at: float, ctx: str) -> str:
        """The context of a silence starting now, after a sign from `kind` (was `ctx`)."""
        if self.leaving_at is not None and kind is RoomKind.ENTRANCE:
            if ctx == OUT and role is not Role.DOOR_ENTRANCE:
                return OUT  # still out: only the door brings the resident back in
            if self.last_door_at is not None and at - self.last_door_at <= DOOR_OUT_WINDOW_S:
                return OUT
        # someone on a bed or seat sensor returns to it without a sign: the latest one rules
        latest_bed = max((t for _, t in self.bed_on.values()), default=None)
        latest_chair = max((t for _, t in self.chair_on.values()), default=None)
        if latest_bed is not None and (latest_chair is None or latest_bed >= latest_chair):
            return BED
        if latest_chair is not None:
            return CHAIR
        return kind.value
