"""sd_notify without dependencies: readiness, watchdog pings and stop notices for systemd.

systemd passes the socket in `$NOTIFY_SOCKET` (a path, or `@name` for the abstract
namespace) and, with `WatchdogSec=`, the deadline in `$WATCHDOG_USEC` (for `$WATCHDOG_PID`
only). Outside systemd every call is a no-op that returns False, so the gateway runs the same
way in a terminal, in tests and under `Type=notify`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
US_PER_S = 1_000_000
MAX_STATUS_CHARS = 200


def _address(value: str) -> str | None:
    """The AF_UNIX address for a `$NOTIFY_SOCKET` value; None if it is not one we can use."""
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace: a leading NUL byte, no file
    if value.startswith("/"):
        return value
    return None


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1", newline-separated assignments) to systemd.

    Returns True when the datagram was sent, False outside systemd or on failure (logged).
    Never blocks: the socket is non-blocking, so a stalled receiver cannot stall the caller.
    """
    target = os.environ.get(NOTIFY_SOCKET_ENV)
    if not target:
        return False
    address = _address(target)
    if address is None:
        _LOGGER.warning(
            "%s=%r is not a unix socket address; not notifying", NOTIFY_SOCKET_ENV, target
        )
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # never block the event loop: if systemd's queue is full, this ping is lost
            sock.setblocking(False)
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        _LOGGER.warning("cannot notify systemd through %s: %s", target, exc)
        return False
    return True


def ready(status: str | None = None) -> bool:
    """Tell systemd the service is up (Type=notify): start-up is done."""
    return notify("READY=1" if status is None else f"READY=1\nSTATUS={_one_line(status)}")


def watchdog_ping() -> bool:
    """Tell systemd the service is alive; without it for WatchdogSec, systemd restarts it."""
    return notify("WATCHDOG=1")


def stopping() -> bool:
    """Tell systemd a clean stop has begun."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """A one-line status shown by `systemctl status`."""
    return notify(f"STATUS={_one_line(text)}")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_STATUS_CHARS]


def watchdog_interval_s() -> float | None:
    """How often to ping: half of systemd's watchdog deadline, or None without a watchdog."""
    raw = os.environ.get(WATCHDOG_USEC_ENV)
    if not raw:
        return None
    pid = os.environ.get(WATCHDOG_PID_ENV)
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process (e.g. our parent)
    try:
        usec = int(raw)
    except ValueError:
        _LOGGER.warning("%s=%r is not a number of microseconds", WATCHDOG_USEC_ENV, raw)
        return None
    if usec <= 0:
        return None
    return usec / US_PER_S / 2


async def watchdog_loop(healthy: Callable[[], bool] = lambda: True) -> None:
    """Ping the watchdog every half deadline while `healthy()` is true; return at once
    without a watchdog. Run it as a task next to the pipeline: a stuck event loop stops the
    pings, and systemd restarts the service."""
    interval_s = watchdog_interval_s()
    if interval_s is None:
        return
    _LOGGER.info("systemd watchdog: pinging every %.3f s", interval_s)
    while True:
        if healthy():
            watchdog_ping()
        else:
            _LOGGER.warning("not healthy: skipping the systemd watchdog ping")
        await asyncio.sleep(interval_s)
