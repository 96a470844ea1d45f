"""The only place that reads clocks.

Production detectors run on `GatewayClock`: wall time anchored once at start and advanced by
the monotonic clock, so an NTP step (a Pi has no RTC) never makes a detector see hours pass
in a second. `FakeClock` drives replays and tests.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from typing import Protocol

_LOGGER = logging.getLogger(__name__)

# adjtimex(2): STA_UNSYNC is set while the kernel clock is not synchronised (no NTP yet).
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch on the pipeline's time basis."""
        ...


class GatewayClock:
    """Wall time at start + monotonic elapsed: steady, immune to clock jumps while running."""

    def __init__(self) -> None:
        self._wall0 = time.time()
        self._mono0 = time.monotonic()

    def now(self) -> float:
        return self._wall0 + (time.monotonic() - self._mono0)

    def wall_skew(self) -> float:
        """How far the system wall clock has moved from ours since start (seconds)."""
        return time.time() - self.now()


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


def monotonic() -> float:
    """For measuring durations (timeouts, backoff, latency), never for event time."""
    return time.monotonic()


def wall() -> float:
    """The system's wall clock, for stamping things a person reads (log lines, reports)."""
    return time.time()


def time_synced() -> bool:
    """Whether the kernel says the clock is NTP-synchronised (adjtimex); False when unknown."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return False

    class _Timex(ctypes.Structure):
        _fields_ = [("modes", ctypes.c_uint), ("_pad", ctypes.c_long * 40)]

    buf = _Timex()
    state = libc.adjtimex(ctypes.byref(buf))
    if state < 0:
        _LOGGER.debug("adjtimex failed, errno %s", ctypes.get_errno())
        return False
    return state != _TIME_ERROR
