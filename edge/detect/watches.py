"""The routine alerts besides plain inactivity: long bathroom stays, night exits, no getting up.

Pure pieces the routine detector drives with the signs of life it reads and the limits its
learned model gives (`edge.detect.routine.Limits`):

* `BathroomWatch` (`bathroom_long`): a stay in the bathroom, from the first sign there to the
  last (a bathroom silent for `BATH_SILENT_EXIT_S` is left to the inactivity watch), longer
  than the resident's usual longest stay plus a margin;
* `NightExitWatch` (`night_exit`): the resident left by the entrance door during the learned
  night and is not back within the learned allowance;
* `MorningWatch` (`no_morning_activity`): no sign of being up (`UP_MIN_SIGNS` signs outside
  the bedroom and off the bed) by the learned getting-up deadline.
"""

from __future__ import annotations

import datetime as dt

from cloud_bridge.contract import SEVERITY_RANK, AlertType, Severity
from edge.const import DAY_S, HOUR_S, MINUTE_S
from edge.detect.routine import DayRecord, Limits, hhmm, is_night
from edge.detect.summary import local_hhmm
from edge.events import Emission, Finding, RoomKind

__all__ = ["BathroomWatch", "MorningWatch", "NightExitWatch"]

BATH_SILENT_EXIT_S = 30 * MINUTE_S  # a bathroom silent this long: the stay is over
MORNING_FROM_S = 4 * HOUR_S
UP_MIN_SIGNS = 3


class BathroomWatch:
    """One bathroom stay at a time; `bathroom_long` when it outlasts the learned limit."""

    def __init__(self) -> None:
        self.enter: float | None = None
        self.last: float | None = None
        self._key: str | None = None
        self._sev: Severity | None = None

    def shift(self, step: float) -> None:
        self.enter = None if self.enter is None else self.enter + step
        self.last = None if self.last is None else self.last + step

    def sign(
        self, kind: RoomKind, at: float, limits: Limits, record: DayRecord
    ) -> tuple[list[Emission], float | None]:
        """A sign of life; returns findings and the start of a new stay (or None)."""
        out: list[Emission] = []
        entered = None
        if kind is RoomKind.BATHROOM:
            if self.enter is None or (
                self.last is not None and at - self.last > BATH_SILENT_EXIT_S
            ):
                out.extend(self.end(at, limits, record))
                self.enter = entered = at
            self.last = at
        elif self.enter is not None:
            out.extend(self.end(at, limits, record))
        return out, entered

    def end(self, at: float, limits: Limits, record: DayRecord) -> list[Emission]:
        """Close the stay (the day's record learns its length); returns findings."""
        if self.enter is None or self.last is None:
            return []
        stay = self.last - self.enter
        learn = stay if self._key is None else min(stay, limits.bathroom_s)
        record.bath_stay_max_s = max(record.bath_stay_max_s, learn)
        out: list[Emission] = []
        if self._key is not None and self._sev is not None:
            out.append(
                Finding(
                    key=self._key,
                    type=AlertType.BATHROOM_LONG,
                    severity=self._sev,
                    at=at,
                    action="resolve",
                    evidence={"stay_min": round((at - self.enter) / MINUTE_S)},
                )
            )
        self.enter = self.last = None
        self._key = self._sev = None
        return out

    def check(self, now: float, limits: Limits, room: str | None) -> list[Emission]:
        if self.enter is None or self.last is None:
            return []
        if now - self.last > BATH_SILENT_EXIT_S and self._key is None:
            return []  # gone quiet: the stay is over or it is a silence (the inactivity watch)
        limit = limits.bathroom_s
        stay = now - self.enter
        if stay <= limit:
            return []
        sev = Severity.HIGH if stay >= 2 * limit else Severity.WARNING
        if self._sev is not None and SEVERITY_RANK[sev] >= SEVERITY_RANK[self._sev]:
            return []
        self._key = self._key or f"bathroom_long:{int(self.enter)}"
        self._sev = sev
        evidence: dict[str, object] = {
            "stay_min": round(stay / MINUTE_S),
            "limit_min": round(limit / MINUTE_S),
        }
        if limits.bath_usual_s is not None:
            evidence["usual_max_min"] = round(limits.bath_usual_s / MINUTE_S)
        return [Finding(self._key, AlertType.BATHROOM_LONG, sev, now, room=room, evidence=evidence)]


class NightExitWatch:
    """A departure by the entrance door at night that does not come back in time."""

    def __init__(self, tz: dt.tzinfo) -> None:
        self._tz = tz
        self.key: str | None = None

    def check(
        self, now: float, left: float | None, day_start: float, limits: Limits, room: str | None
    ) -> list[Emission]:
        """`left`: when the resident left (None when not out)."""
        if left is None or self.key is not None:
            return []
        tod = left - day_start if left >= day_start else left - day_start + DAY_S
        if not is_night(tod, limits.night_start_s / HOUR_S, limits.night_end_s / HOUR_S):
            return []
        if now - left <= limits.night_exit_s:
            return []
        self.key = f"night_exit:{int(left)}"
        return [
            Finding(
                key=self.key,
                type=AlertType.NIGHT_EXIT,
                severity=Severity.HIGH,
                at=now,
                room=room,
                evidence={
                    "door_at": local_hhmm(left, self._tz),
                    "out_min": round((now - left) / MINUTE_S),
                    "limit_min": round(limits.night_exit_s / MINUTE_S),
                },
            )
        ]

    def back(self, at: float) -> list[Emission]:
        """A sign inside: an open night exit is resolved."""
        if self.key is None:
            return []
        key, self.key = self.key, None
        return [Finding(key, AlertType.NIGHT_EXIT, Severity.HIGH, at, action="resolve")]


class MorningWatch:
    """Whether the resident got up today, and `no_morning_activity` when not by the deadline."""

    def __init__(self) -> None:
        self.signs = 0
        self.checked: set[str] = set()
        self._key: str | None = None

    def new_day(self) -> None:
        self.signs = 0

    def is_up(self, in_bed: bool) -> bool:
        return not in_bed and self.signs >= UP_MIN_SIGNS

    def sign(
        self, kind: RoomKind, tod_s: float, in_bed: bool, out_entrance: bool, at: float
    ) -> list[Emission]:
        """A sign of life at `tod_s` into the day; resolves the alert once the resident is up."""
        if tod_s < MORNING_FROM_S or kind is RoomKind.BEDROOM or in_bed or out_entrance:
            return []
        self.signs += 1
        if self._key is None or not self.is_up(in_bed):
            return []
        key, self._key = self._key, None
        return [Finding(key, AlertType.NO_MORNING_ACTIVITY, Severity.HIGH, at, action="resolve")]

    def check(
        self,
        now: float,
        date: str,
        tod_s: float,
        *,
        in_bed: bool,
        away: bool,
        watched_since_morning: bool,
        limits: Limits,
        last_sign: float | None,
        room: str | None,
    ) -> list[Emission]:
        if date in self.checked or tod_s < limits.get_up_deadline_s:
            return []
        self.checked.add(date)
        if self.is_up(in_bed) or away or not watched_since_morning:
            return []  # up, out, or not watching since early morning: no judgement
        return [self.raise_now(now, date, limits, last_sign=last_sign, room=room)]

    def raise_now(
        self,
        now: float,
        date: str,
        limits: Limits,
        *,
        last_sign: float | None,
        room: str | None,
        extra: dict[str, object] | None = None,
    ) -> Finding:
        """`no_morning_activity` now (at the deadline, or an unanswered morning check-in)."""
        self.checked.add(date)
        self._key = f"no_morning_activity:{date}"
        evidence: dict[str, object] = {
            "deadline": hhmm(limits.get_up_deadline_s),
            "usual_get_up": hhmm(limits.usual_get_up_s),
            "learning": not limits.learned,
        }
        if last_sign is not None:
            evidence["inactive_min"] = round((now - last_sign) / MINUTE_S)
        evidence.update(extra or {})
        return Finding(
            self._key,
            AlertType.NO_MORNING_ACTIVITY,
            Severity.HIGH,
            now,
            room=room,
            evidence=evidence,
        )
