"""`veille hub --notify notify.toml` end to end, the product's own path: alerts published on
the real hub broker reach a real SMTP server (aiosmtpd) at once and, unless the alert went
away, a real SIA DC-09 receiver (pysiaalarm, AES line) after the step's delay; a restarted
hub sends nothing twice; a bad notify.toml is refused in one line."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from pysiaalarm import SIAAccount, SIAClient

from cloud_bridge.contract import alert_topic, encode, iso_utc
from cloud_bridge.stores import open_store
from tests.gateway_proc import STAFF_PASSWORD, VEILLE, HubProc
from tests.support import Mosquitto, free_port, publish
from tests.test_notify_mail import Inbox

CENTRE_DELAY_S = 3.0
KEY = "0123456789ABCDEF0123456789ABCDEF"


def alert(n: int, state: str = "raised", alert_type: str = "fall") -> dict[str, Any]:
    now = time.time()
    return {
        "schema": "veille.alert/1",
        "id": f"0190a000-0000-7000-8000-{n:012d}",
        "home_id": "h-0042",
        "type": alert_type,
        "severity": "critical",
        "state": state,
        "at": iso_utc(now),
        "raised_at": iso_utc(now),
        "room": "salon",
        "device_id": None,
        "evidence": {},
    }


def write_notify(path: Path, smtp_port: int, centre_port: int) -> Path:
    path.write_text(f"""\
[[channel]]
name = "astreinte"
kind = "email"
smtp = "smtp://127.0.0.1:{smtp_port}"
from = "veille@hub.example.org"
to = ["astreinte@ssiad.example.org"]

[[channel]]
name = "centre"
kind = "sia-dc09"
host = "127.0.0.1"
port = {centre_port}
account = "A1B2C3"
key = "{KEY}"
supervision_s = 0

[[escalation]]
after_s = 0
channels = ["astreinte"]
severities = ["critical", "high"]

[[escalation]]
after_s = {CENTRE_DELAY_S}
channels = ["centre"]
severities = ["critical"]
""")
    return path


@dataclass
class Rig:
    """A real SMTP server, a real DC-09 receiver and `veille hub --notify` on the broker."""

    inbox: Inbox
    events: list[tuple[float, Any]]
    hub: HubProc
    broker_port: int
    store: str

    def publish(self, payload: dict[str, Any]) -> None:
        publish(self.broker_port, alert_topic("h-0042"), encode(payload))


@pytest.fixture
def rig(tmp_path: Path, hub_broker: Mosquitto) -> Iterator[Rig]:
    inbox, events = Inbox(), []
    smtp_port, centre_port = free_port(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    centre = SIAClient(
        "127.0.0.1",
        centre_port,
        [SIAAccount("A1B2C3", KEY)],
        function=lambda e: events.append((time.time(), e)),
    )
    centre.start()
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    notify = write_notify(tmp_path / "notify.toml", smtp_port, centre_port)
    hub = HubProc(tmp_path / "hub", hub_broker.url, store, extra_args=("--notify", str(notify)))
    try:
        hub.start()
        yield Rig(inbox, events, hub, hub_broker.port, store)
    finally:
        hub.stop()
        centre.stop()
        smtp.stop()


def wait(check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_veille_hub_mails_at_once_then_tells_the_centre_unless_the_alert_went_away(
    rig: Rig,
) -> None:
    t0 = time.time()
    rig.publish(alert(1))
    rig.publish(alert(2, alert_type="sos"))
    wait(lambda: len(rig.inbox.mails) == 2, 5)
    mailed_s = time.time() - t0
    # the gateway cancels the SOS (the person pressed again: all is well)
    rig.publish(alert(2, "cancelled", "sos"))
    wait(lambda: rig.events, CENTRE_DELAY_S + 10)
    time.sleep(1.5)  # would the cancelled one come too?
    [(at, event)] = rig.events
    assert (event.account, event.event_qualifier, event.event_type, event.encrypted) == (
        "A1B2C3",
        "1",
        "100",
        True,
    )
    assert mailed_s < 5.0
    assert 0 <= at - t0 - CENTRE_DELAY_S < 1.5, at - t0  # publish and poll latency
    assert sorted(m["Subject"] for m in rig.inbox.mails) == [
        "Appel d'urgence (bouton SOS) : logement h-0042",
        "Chute détectée : logement h-0042",
    ]
    # a restart: the chains are in the store; the gateway's resend changes nothing
    assert rig.hub.stop() == 0
    rig.hub.start()
    rig.publish(alert(1))
    time.sleep(CENTRE_DELAY_S)
    assert len(rig.inbox.mails) == 2
    assert len(rig.events) == 1
    check = open_store(rig.store)
    try:
        assert [(e["channel"], e["ok"]) for e in check.notifications()] == [
            ("astreinte", True),
            ("astreinte", True),
            ("centre", True),
        ]
    finally:
        check.close()


def test_a_hub_killed_in_the_middle_of_a_chain_resumes_it_and_sends_nothing_twice(
    rig: Rig,
) -> None:
    t0 = time.time()
    rig.publish(alert(3))
    wait(lambda: rig.inbox.mails, 5)
    rig.hub.kill()  # SIGKILL between the mail and the centre's step
    assert not rig.events
    rig.hub.start()
    rig.publish(alert(3))  # the gateway resends
    wait(lambda: rig.events, CENTRE_DELAY_S + 20)
    time.sleep(1.0)
    assert len(rig.inbox.mails) == 1
    [(at, event)] = rig.events
    assert event.event_type == "100"
    assert at >= t0 + CENTRE_DELAY_S


def test_an_alert_acknowledged_in_the_console_never_reaches_the_centre(rig: Rig) -> None:
    rig.publish(alert(4))
    wait(lambda: rig.inbox.mails, 5)
    with httpx.Client(base_url=rig.hub.url, trust_env=False) as staff:
        staff.post("/login", data={"name": "alice", "password": STAFF_PASSWORD})
        page = staff.get("/").text
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match is not None, page[:500]
        done = staff.post(
            f"/alerts/{alert(4)['id']}/ack", data={"csrf": match[1]}, follow_redirects=False
        )
        assert done.status_code == 303
    time.sleep(CENTRE_DELAY_S + 1.5)
    assert rig.events == []
    assert len(rig.inbox.mails) == 1


def test_a_bad_notify_toml_is_refused_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notify.toml"
    bad.write_text('[[channel]]\nname = "x"\nkind = "pigeon"\n')
    out = subprocess.run(
        [
            VEILLE,
            "hub",
            "--broker",
            "mqtt://127.0.0.1:1",
            "--store",
            f"sqlite:///{tmp_path / 'hub.db'}",
            "--notify",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"veille hub: {bad}:3: channel kind 'pigeon' must be one of "
        "['email', 'sia-dc09', 'webpush']"
    ]
