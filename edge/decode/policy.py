"""Decoder policies: which readings become events, and how often bad input is logged.

Zigbee2MQTT republishes a device's whole cached state with every message (a door sensor's
battery report repeats `"contact": false`), and BLE sensors repeat their state in every
advertisement. A repeated door state is not a new opening, so state kinds are passed on only
when they change; pulse kinds (a PIR firing again) pass whenever they are true; readings and
button actions always pass.

A device that keeps sending bad frames must not flood the log: `WarnLimiter` lets one WARNING
per device and reason through per interval of event time, and the rest go to DEBUG.
Pure: no I/O, no clock (time is the caller's `at`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import Enum
from typing import Any

from edge.events import EventKind, Value


class Emit(Enum):
    """When a decoded reading of a kind is passed on as an event."""

    ALWAYS = "always"  # readings and actions: every report counts
    CHANGE = "change"  # states: only a new value is news
    PULSE = "pulse"  # True every time (a new detection), False only when it changes


EMIT_POLICY: Mapping[EventKind, Emit] = {
    EventKind.MOTION: Emit.PULSE,
    EventKind.VIBRATION: Emit.PULSE,
    EventKind.FLUSH: Emit.PULSE,
    EventKind.PRESENCE: Emit.CHANGE,
    EventKind.OPEN: Emit.CHANGE,
    EventKind.WATER_LEAK: Emit.CHANGE,
    EventKind.SWITCH: Emit.CHANGE,
}


class ChangeFilter:
    """Remembers the last value of each (device, kind) and says whether a new one is news."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, EventKind], Value] = {}

    def passes(self, device_id: str, kind: EventKind, value: Value) -> bool:
        """Record `value` and return whether it should be emitted as an event."""
        policy = EMIT_POLICY.get(kind, Emit.ALWAYS)
        key = (device_id, kind)
        previous = self._last.get(key, _UNSEEN)
        self._last[key] = value
        if policy is Emit.ALWAYS:
            return True
        if policy is Emit.PULSE and value is True:
            return True
        return previous != value

    def remember(self, device_id: str, kind: EventKind, value: Value) -> None:
        """Record a value without emitting it (a retained message read at start-up)."""
        self._last[(device_id, kind)] = value


_UNSEEN = object()


WARN_INTERVAL_S = 600.0  # one WARNING per device and reason per 10 minutes of event time


class WarnLimiter:
    """Logs the first bad input of a (device, reason) at WARNING, repeats within the interval
    at DEBUG, so that every bad input still gives exactly one log line."""

    def __init__(self, logger: logging.Logger, interval_s: float = WARN_INTERVAL_S) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[tuple[str, str], float] = {}

    def warn(self, key: str, reason: str, at: float, msg: str, *args: Any) -> None:
        """Log one line about `key` (a device): WARNING unless `reason` was warned lately."""
        slot = (key, reason)
        last = self._last.get(slot)
        if last is not None and 0.0 <= at - last < self._interval_s:
            self._logger.debug(msg, *args)
            return
        if len(self._last) >= _MAX_WARN_SLOTS:
            self._last.clear()
        self._last[slot] = at
        self._logger.warning(msg, *args)


_MAX_WARN_SLOTS = 4096  # bounded memory when random BLE addresses come and go
