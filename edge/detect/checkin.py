"""Check-ins: ask the resident before alarming anyone. Pure.

A care worker's trip costs far more than a button press, so every inactivity-type staff alert
(`inactivity`, `no_morning_activity`, `bathroom_long`) first goes through `CheckInGate`:

* the routine detector asks *early* (`CheckIn` `ask`) when a silence passes the tighter
  learned check-in limit (`edge.detect.routine.Limits.checkin_s`), where the
  `CheckInPolicy` lets it: not while out, not in a night's sleep (a rest silence that began
  at night; the getting-up deadline covers it), not in quiet hours, at most
  `checkin_max_per_day` a day (a silence off furniture, where a fall looks like this, is
  never held back by the daily maximum);
* a staff finding raised without an answered check-in is *held*, and a check-in asked;
* the resident answers with a `checkin_button` press or any sign of life (a long bathroom
  stay is moving by nature: only the button answers it); an answered check-in drops what it
  held, and nothing goes upstream;
* no answer within `checkin_answer_min` (`unanswered`): the held findings go out with
  `check_in: "unanswered"` in their evidence, or, for an early check-in, the detector raises
  its inactivity alert at once. The rest of that silence is not asked about again.

Check-ins never go to the hub; the day's count goes into the daily aggregate (`check_ins`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from cloud_bridge.contract import AlertType
from edge.const import HOUR_S, MINUTE_S
from edge.detect.routine import OFF_FURNITURE, OUT, REST_CONTEXTS
from edge.detect.summary import local_hhmm
from edge.events import CheckIn, Emission, Finding
from edge.home import Thresholds

__all__ = ["OFF_FURNITURE", "CheckInGate", "CheckInPolicy"]

GATED_TYPES = frozenset(
    {AlertType.INACTIVITY, AlertType.NO_MORNING_ACTIVITY, AlertType.BATHROOM_LONG}
)
# what a sign of life answers; a bathroom stay goes on with signs, only the button answers it
ANSWERED_BY_SIGN = frozenset({AlertType.INACTIVITY, AlertType.NO_MORNING_ACTIVITY})


@dataclass(frozen=True, slots=True)
class CheckInPolicy:
    """When the resident may be asked, from the home's thresholds."""

    answer_s: float = 10 * MINUTE_S
    max_per_day: int = 2
    quiet_from_s: float = 0.0
    quiet_to_s: float = 0.0
    in_bed_at_night: bool = False

    @classmethod
    def from_thresholds(cls, th: Thresholds) -> CheckInPolicy:
        return cls(
            answer_s=max(MINUTE_S, th.checkin_answer_min * MINUTE_S),
            max_per_day=int(th.checkin_max_per_day),
            quiet_from_s=th.checkin_quiet_from_h * HOUR_S,
            quiet_to_s=th.checkin_quiet_to_h * HOUR_S,
            in_bed_at_night=th.checkin_in_bed_at_night >= 1.0,
        )

    def quiet(self, tod_s: float) -> bool:
        """Whether `tod_s` (seconds after local midnight) lies in the quiet hours."""
        lo, hi = self.quiet_from_s, self.quiet_to_s
        if lo == hi:
            return False
        if lo < hi:
            return lo <= tod_s < hi
        return tod_s >= lo or tod_s < hi

    def early_allowed(
        self, ctx: str, started_at_night: bool, tod_s: float, asked_today: int
    ) -> bool:
        """Whether a silence in `ctx` may get an early check-in now."""
        if ctx == OUT or self.quiet(tod_s):
            return False
        if ctx in REST_CONTEXTS and started_at_night and not self.in_bed_at_night:
            return False
        return ctx in OFF_FURNITURE or asked_today < self.max_per_day


@dataclass
class _Pending:
    key: str
    asked_at: float
    early: bool
    by_sign: bool
    reason: str = ""
    held: dict[str, Finding] = field(default_factory=dict)


class CheckInGate:
    """One check-in at a time; holds the staff findings it stands in front of."""

    def __init__(self, policy: CheckInPolicy, tz: dt.tzinfo) -> None:
        self.policy = policy
        self._tz = tz
        self.pending: _Pending | None = None
        self.unanswered = False  # the current silence went unanswered: no more asking
        self.counts: dict[str, int] = {}  # local date -> check-ins asked
        self._dropped: set[str] = set()  # finding keys an answer withdrew

    def shift(self, step: float) -> None:
        if self.pending is not None:
            self.pending.asked_at += step

    def asked(self, date: str) -> int:
        return self.counts.get(date, 0)

    def ask(
        self,
        at: float,
        date: str,
        room: str | None,
        evidence: dict[str, object],
        *,
        early: bool,
        by_sign: bool = True,
    ) -> CheckIn:
        key = f"check_in:{int(at)}"
        self.pending = _Pending(key, at, early, by_sign, str(evidence.get("reason", "")))
        self.counts[date] = self.counts.get(date, 0) + 1
        return CheckIn(key, at, "ask", room, evidence)

    def new_silence(self) -> None:
        """A sign of life: the next silence may be asked about again."""
        self.unanswered = False

    def answer(self, at: float, *, by_button: bool) -> list[Emission]:
        """A sign of life (or the button) at `at`: an open check-in is answered."""
        p = self.pending
        if p is None or not (by_button or p.by_sign):
            return []
        self.pending = None
        self._dropped.update(p.held)
        return [CheckIn(p.key, at, "answered", evidence={"after_s": round(at - p.asked_at)})]

    def expire(self, now: float) -> tuple[list[Emission], str | None]:
        """The answer window ran out: the check-in and what it held, and for an early one
        the reason it was asked (the detector raises its own alert for it)."""
        p = self.pending
        if p is None or now - p.asked_at < self.policy.answer_s:
            return [], None
        self.pending = None
        self.unanswered = True
        out: list[Emission] = [CheckIn(p.key, now, "unanswered")]
        out.extend(self._released(p.held.values(), p.asked_at, now))
        return out, p.reason if p.early and not p.held else None

    def _released(self, findings: Iterable[Finding], asked_at: float, now: float) -> list[Emission]:
        stamp = local_hhmm(asked_at, self._tz)
        return [
            dataclasses.replace(
                f,
                at=now,
                evidence={**f.evidence, "check_in": "unanswered", "check_in_at": stamp},
            )
            for f in findings
        ]

    def filter(self, emissions: Iterable[Emission], now: float, date: str) -> list[Emission]:
        """Hold gated raises behind a check-in; drop what an answer withdrew."""
        out: list[Emission] = []
        for e in emissions:
            if not isinstance(e, Finding) or e.type not in GATED_TYPES:
                out.append(e)
                continue
            if e.action != "raise":
                out.extend(self._settle(e))
                continue
            if e.key in self._dropped:
                continue  # an escalation of what an answer withdrew
            if self.unanswered and self.pending is None:
                out.append(self._mark(e))
                continue
            if self.pending is None:
                by_sign = e.type in ANSWERED_BY_SIGN
                evidence: dict[str, object] = {"reason": str(e.type)}
                for k in ("inactive_min", "stay_min", "context"):
                    if k in e.evidence:
                        evidence[k] = e.evidence[k]
                out.append(self.ask(now, date, e.room, evidence, early=False, by_sign=by_sign))
            assert self.pending is not None
            self.pending.held[e.key] = e
        return out

    def _mark(self, e: Finding) -> Finding:
        if "check_in" in e.evidence:
            return e
        return dataclasses.replace(e, evidence={**e.evidence, "check_in": "unanswered"})

    def _settle(self, e: Finding) -> list[Emission]:
        """A resolve or cancel of a gated finding."""
        if e.key in self._dropped:
            self._dropped.discard(e.key)
            return []
        p = self.pending
        if p is not None and e.key in p.held:
            del p.held[e.key]  # over before anyone was told
            if not p.held and not p.early:
                self.pending = None
                return [CheckIn(p.key, e.at, "answered", evidence={"ended": str(e.type)})]
            return []
        return [e]
