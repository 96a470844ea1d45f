"""sd_notify against real AF_UNIX datagram sockets, and the systemd units' directives."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.runtime import systemd

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "firmware_configs" / "systemd"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


class NotifySocket:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(2.0)

    def recv(self) -> str:
        return self.sock.recv(4096).decode()

    def pending(self) -> list[str]:
        self.sock.settimeout(0.0)
        got = []
        try:
            while True:
                got.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return got
        finally:
            self.sock.settimeout(2.0)


@pytest.fixture(params=["path", "abstract"])
def notify_socket(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NotifySocket]:
    """systemd's socket, as a file path or in the abstract namespace ('@name')."""
    monkeypatch.delenv(systemd.WATCHDOG_USEC_ENV, raising=False)
    monkeypatch.delenv(systemd.WATCHDOG_PID_ENV, raising=False)
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        listener = NotifySocket(path)
        monkeypatch.setenv(systemd.NOTIFY_SOCKET_ENV, path)
    else:
        name = f"veille-test-{uuid.uuid4().hex}"
        listener = NotifySocket("\0" + name)
        monkeypatch.setenv(systemd.NOTIFY_SOCKET_ENV, "@" + name)
    try:
        yield listener
    finally:
        listener.sock.close()


def test_notifications_reach_the_socket(notify_socket: NotifySocket) -> None:
    assert systemd.ready()
    assert notify_socket.recv() == "READY=1"
    assert systemd.ready("subscribed to the local broker\nmodels loaded")
    assert notify_socket.recv() == "READY=1\nSTATUS=subscribed to the local broker models loaded"
    assert systemd.watchdog_ping()
    assert notify_socket.recv() == "WATCHDOG=1"
    assert systemd.status("outbox: 3 alerts waiting")
    assert notify_socket.recv() == "STATUS=outbox: 3 alerts waiting"
    assert systemd.stopping()
    assert notify_socket.recv() == "STOPPING=1"
    assert notify_socket.pending() == []


def test_a_child_process_notifies_like_under_systemd(notify_socket: NotifySocket) -> None:
    code = "from edge.runtime import systemd; raise SystemExit(0 if systemd.ready() else 1)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False, timeout=30)
    assert done.returncode == 0
    assert notify_socket.recv() == "READY=1"


def test_a_stalled_receiver_never_blocks_the_sender(
    notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody reads the socket: once its queue is full, pings fail at once (logged)."""
    caplog.clear()
    sent = [systemd.watchdog_ping() for _ in range(200)]
    assert sent[0] is True
    assert sent[-1] is False
    assert sum(sent) == len(notify_socket.pending())
    assert any("cannot notify systemd" in r.getMessage() for r in caplog.records)


def test_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(systemd.NOTIFY_SOCKET_ENV, raising=False)
    monkeypatch.delenv(systemd.WATCHDOG_USEC_ENV, raising=False)
    assert systemd.ready() is False
    assert systemd.watchdog_ping() is False
    assert systemd.stopping() is False
    assert systemd.watchdog_interval_s() is None


@pytest.mark.parametrize("value", ["/nonexistent/veille/notify.sock", "vsock:2:1234"])
def test_unusable_socket_is_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    monkeypatch.setenv(systemd.NOTIFY_SOCKET_ENV, value)
    caplog.clear()
    assert systemd.ready() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert value in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("30000000", "other", None),
        ("1000", None, 0.0005),
        ("0", None, None),
        ("thirty", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval_is_half_the_deadline(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for name, value in ((systemd.WATCHDOG_USEC_ENV, usec), (systemd.WATCHDOG_PID_ENV, pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            own = str(os.getpid())
            monkeypatch.setenv(name, {"self": own, "other": own + "0"}.get(value, value))
    assert systemd.watchdog_interval_s() == expected


def run_watchdog_loop(healthy: bool, seconds: float) -> None:
    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(systemd.watchdog_loop(lambda: healthy), seconds)

    asyncio.run(main())


def test_watchdog_loop_pings_while_healthy(
    notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(systemd.WATCHDOG_USEC_ENV, "100000")  # 100 ms deadline: ping every 50
    run_watchdog_loop(healthy=True, seconds=0.3)
    pings = notify_socket.pending()
    assert set(pings) == {"WATCHDOG=1"}
    assert 3 <= len(pings) <= 7

    run_watchdog_loop(healthy=False, seconds=0.1)
    assert notify_socket.pending() == []


def test_watchdog_loop_returns_without_a_watchdog(notify_socket: NotifySocket) -> None:
    asyncio.run(asyncio.wait_for(systemd.watchdog_loop(), 1.0))
    assert notify_socket.pending() == []


def unit_directives(path: Path) -> dict[str, dict[str, list[str]]]:
    """`[Section] Key=Value` lines (continuations joined), each key's values in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    logical = path.read_text().replace("\\\n", " ")
    for raw in logical.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(" ".join(value.split()))
    return sections


def test_gateway_unit_has_the_required_directives() -> None:
    service = unit_directives(UNITS / "veille.service")["Service"]
    expected = {
        "Type": ["notify"],
        "ExecStart": ["/opt/veille/.venv/bin/veille run --config /etc/veille/gateway.toml"],
        "WatchdogSec": ["30"],
        "Restart": ["on-failure"],
        "User": ["veille"],
        "StateDirectory": ["veille"],
        "StateDirectoryMode": ["0700"],
        "UMask": ["0077"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["true"],
        "NoNewPrivileges": ["true"],
        "PrivateTmp": ["true"],
        "PrivateDevices": ["true"],
        "RestrictAddressFamilies": ["AF_UNIX AF_INET AF_INET6 AF_BLUETOOTH AF_NETLINK"],
        "CapabilityBoundingSet": [""],
        "LockPersonality": ["true"],
        "MemoryDenyWriteExecute": ["true"],
        "ProtectKernelTunables": ["true"],
        "ProtectKernelModules": ["true"],
        "ProtectKernelLogs": ["true"],
        "ProtectControlGroups": ["true"],
        "RestrictRealtime": ["true"],
        "RestrictNamespaces": ["true"],
    }
    assert {key: service.get(key) for key in expected} == expected
    assert service["SystemCallFilter"][0] == "@system-service"
    assert float(service["RestartSec"][0]) > 0


def test_hub_unit_is_sandboxed_too() -> None:
    service = unit_directives(UNITS / "veille-hub.service")["Service"]
    assert service["ExecStart"][0].startswith("/opt/veille/.venv/bin/veille hub --broker mqtts://")
    assert service["User"] == ["veille-hub"]
    assert service["Restart"] == ["on-failure"]
    for key in ("ProtectSystem", "NoNewPrivileges", "PrivateDevices", "MemoryDenyWriteExecute"):
        assert service[key] in (["strict"], ["true"]), key
    assert "AF_BLUETOOTH" not in service["RestrictAddressFamilies"][0]


@pytest.mark.parametrize("unit", ["veille.service", "veille-hub.service"])
def test_systemd_analyze_verify_accepts_the_unit(unit: str, tmp_path: Path) -> None:
    """systemd's own checker; the program path is pointed at /usr/bin/true, since
    /opt/veille is not installed here, and nothing else changes."""
    assert SYSTEMD_ANALYZE, "systemd-analyze (Debian package systemd) is needed for this test"
    text = (UNITS / unit).read_text()
    assert "/opt/veille/.venv/bin/veille" in text
    (tmp_path / unit).write_text(text.replace("/opt/veille/.venv/bin/veille", "/usr/bin/true"))
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
