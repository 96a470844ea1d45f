"""The escalation chain as a pure, time-driven policy.

`Escalation` is fed with what happens to alerts (raised, raised again at a higher severity,
acknowledged or closed) and with the time, and answers which sends are due. Steps fire in
order, each `after_s` after the alert was first seen, unless the alert was acknowledged or
closed before; a step with `repeat_s` fires again every `repeat_s` until then; a step fires
only for the severities and types it lists (a severity raised later makes a step due at once
if its delay has passed).

Sends are *claimed* when `due()` returns them: the chain's state for that alert changes at
that moment, and it is plain data (`ChainState.to_dict()`), so the caller persists it before
it sends. A restarted hub restores the states and resumes where it was; an attempt is never
returned twice (at most once per attempt: a send cut by a crash is not repeated, the next
step is the safety net). A channel that fails is reported with `failed()`, and the same
attempt is offered again after a back-off, a bounded number of times.

No clock is read here: every method takes `now` (seconds since the epoch).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cloud_bridge.notify.config import Step

RETRY_DELAYS_S = (15.0, 30.0, 60.0, 120.0, 300.0)  # after the 1st, 2nd... failure of a send
STOP_REASONS = frozenset({"acknowledged", "resolved", "cancelled"})


@dataclass(frozen=True, slots=True)
class Send:
    """One notification to send now: `step`'s channels, for the `attempt`-th time."""

    alert_id: str
    step: int
    attempt: int  # 0 the first time, 1... for the step's reminders
    channels: tuple[str, ...]
    retry: int = 0  # 0 first try of this attempt, 1... after failures


@dataclass(frozen=True, slots=True)
class _Retry:
    attempt: int
    at: float
    failures: int
    channels: tuple[str, ...] = ()  # the step's channels that failed; () = all of them


@dataclass(slots=True)
class ChainState:
    """Where one alert's chain is; plain data, so a store can keep it."""

    alert_id: str
    alert_type: str
    severity: str
    started_at: float  # when the hub first saw the alert: step delays count from here
    stopped: str | None = None  # acknowledged / resolved / cancelled
    stopped_at: float | None = None
    next_attempt: dict[int, int] = field(default_factory=dict)  # step -> attempts claimed
    retries: dict[int, _Retry] = field(default_factory=dict)  # step -> attempt to send again

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (keys are strings)."""
        return {
            "alert_id": self.alert_id,
            "alert_type": self.alert_type,
            "severity": self.severity,
            "started_at": self.started_at,
            "stopped": self.stopped,
            "stopped_at": self.stopped_at,
            "next_attempt": {str(k): v for k, v in self.next_attempt.items()},
            "retries": {
                str(k): [r.attempt, r.at, r.failures, list(r.channels)]
                for k, r in self.retries.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChainState:
        return cls(
            alert_id=str(data["alert_id"]),
            alert_type=str(data["alert_type"]),
            severity=str(data["severity"]),
            started_at=float(data["started_at"]),
            stopped=data.get("stopped"),
            stopped_at=data.get("stopped_at"),
            next_attempt={int(k): int(v) for k, v in data.get("next_attempt", {}).items()},
            retries={
                int(k): _Retry(int(r[0]), float(r[1]), int(r[2]), tuple(r[3:4] and r[3]))
                for k, r in data.get("retries", {}).items()
            },
        )


class Escalation:
    """The chain for every open alert: events and time in, due sends out."""

    def __init__(
        self,
        steps: Sequence[Step],
        states: Iterable[ChainState] = (),
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    ) -> None:
        self.steps = tuple(steps)
        self.retry_delays_s = tuple(retry_delays_s)
        self._states: dict[str, ChainState] = {s.alert_id: s for s in states}

    def state(self, alert_id: str) -> ChainState | None:
        return self._states.get(alert_id)

    def states(self) -> list[ChainState]:
        return list(self._states.values())

    def raised(self, alert_id: str, alert_type: str, severity: str, now: float) -> ChainState:
        """An alert was raised, or raised again (a higher severity): start or update it."""
        state = self._states.get(alert_id)
        if state is None:
            state = ChainState(alert_id, alert_type, severity, started_at=now)
            self._states[alert_id] = state
        elif state.stopped is None:
            state.severity = severity
        return state

    def stopped(self, alert_id: str, reason: str, now: float) -> ChainState | None:
        """Acknowledged or closed: no further send for this alert. None if unknown."""
        if reason not in STOP_REASONS:
            raise ValueError(f"stop reason {reason!r} not in {sorted(STOP_REASONS)}")
        state = self._states.get(alert_id)
        if state is not None and state.stopped is None:
            state.stopped, state.stopped_at = reason, now
            state.retries.clear()
        return state

    def forget(self, alert_id: str) -> None:
        """Drop a stopped alert from memory (its stored state stays the record)."""
        self._states.pop(alert_id, None)

    def due(self, now: float) -> list[Send]:
        """Claim and return the sends due at `now`, in order of due time then step."""
        due: list[tuple[float, int, Send]] = []
        for state in self._states.values():
            if state.stopped is not None:
                continue
            for step in self.steps:
                if not step.applies(state.alert_type, state.severity):
                    continue
                claimed = self._claim(state, step, now)
                if claimed is not None:
                    due.append(claimed)
                retry = state.retries.get(step.index)
                if retry is not None and retry.at <= now:
                    del state.retries[step.index]
                    send = Send(
                        state.alert_id,
                        step.index,
                        retry.attempt,
                        retry.channels or step.channels,
                        retry=retry.failures,
                    )
                    due.append((retry.at, step.index, send))
        due.sort(key=lambda item: (item[0], item[1]))
        return [send for _, _, send in due]

    def _claim(self, state: ChainState, step: Step, now: float) -> tuple[float, int, Send] | None:
        start = state.started_at + step.after_s
        claimed = state.next_attempt.get(step.index, 0)
        if now < start or (step.repeat_s <= 0 and claimed > 0):
            return None
        if step.repeat_s > 0:
            attempt = math.floor((now - start) / step.repeat_s)  # reminders missed: one send
            if attempt < claimed:
                return None
        else:
            attempt = 0
        state.next_attempt[step.index] = attempt + 1
        at = start + attempt * step.repeat_s
        return at, step.index, Send(state.alert_id, step.index, attempt, step.channels)

    def failed(self, send: Send, now: float, channels: Sequence[str] | None = None) -> float | None:
        """`send` (or only its `channels`) could not be delivered: when it will be offered
        again, to those channels only (None: given up)."""
        state = self._states.get(send.alert_id)
        if state is None or state.stopped is not None or send.retry >= len(self.retry_delays_s):
            return None
        current = state.retries.get(send.step)
        if current is not None and current.attempt > send.attempt:
            return None  # a newer reminder of the step is already waiting
        at = now + self.retry_delays_s[send.retry]
        failed = tuple(channels) if channels is not None else send.channels
        state.retries[send.step] = _Retry(send.attempt, at, send.retry + 1, failed)
        return at

    def next_due(self) -> float | None:
        """The earliest time a send can be due (None: nothing pending)."""
        times: list[float] = []
        for state in self._states.values():
            if state.stopped is not None:
                continue
            times.extend(r.at for r in state.retries.values())
            for step in self.steps:
                if not step.applies(state.alert_type, state.severity):
                    continue
                claimed = state.next_attempt.get(step.index, 0)
                if step.repeat_s <= 0 and claimed > 0:
                    continue
                times.append(state.started_at + step.after_s + claimed * step.repeat_s)
        return min(times, default=None)
