"""The notifier end to end on loopback with the real parts: an alert -> a mail (aiosmtpd)
at once -> nobody acknowledges -> the monitoring centre (pysiaalarm) gets the Contact ID
event after the step's delay; an acknowledged alert never reaches the centre; the mail
server down does not stop the chain; a restart mid-chain sends nothing twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from pysiaalarm import SIAAccount
from pysiaalarm.aio import SIAClient

from cloud_bridge.notify.config import load_notify_config
from cloud_bridge.notify.notifier import FileChainStore, Notifier
from tests.support import free_port
from tests.test_notify_mail import Inbox

CENTRE_DELAY_S = 2.0
DIRECTORY = {
    "h-0042": {
        "resident": "Mme Jeanne Martin",
        "address": "12 rue des Lilas, Lyon",
        "phone": "04 78 00 00 00",
        "centre_account": "C0FFEE",
    }
}


def alert(alert_id: str, state: str = "raised", alert_type: str = "fall") -> dict[str, Any]:
    return {
        "schema": "veille.alert/1",
        "id": alert_id,
        "home_id": "h-0042",
        "type": alert_type,
        "severity": "critical",
        "state": state,
        "at": "2026-12-01T21:10:05Z",
        "raised_at": "2026-12-01T21:10:05Z",
        "room": "salon",
        "device_id": None,
        "evidence": {},
    }


def write_config(tmp_path: Path, smtp_port: int, centre_port: int) -> Path:
    path = tmp_path / "notify.toml"
    path.write_text(f"""\
[[channel]]
name = "astreinte"
kind = "email"
smtp = "smtp://127.0.0.1:{smtp_port}"
from = "veille@hub.example.org"
to = ["astreinte@ssiad.example.org"]
timeout_s = 2

[[channel]]
name = "centre"
kind = "sia-dc09"
host = "127.0.0.1"
port = {centre_port}
account = "A1B2C3"
key = "0123456789ABCDEF"
supervision_s = 0
timeout_s = 2
retries = 1

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


@asynccontextmanager
async def parts(smtp_up: bool = True) -> AsyncIterator[tuple[Inbox, list[Any], int, int]]:
    inbox, received = Inbox(), []

    async def on_event(event: Any) -> None:
        received.append((time.time(), event))

    smtp_port, centre_port = free_port(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    if smtp_up:
        controller.start()
    centre = SIAClient(
        "127.0.0.1", centre_port, [SIAAccount("C0FFEE", "0123456789ABCDEF")], function=on_event
    )
    await centre.async_start()
    try:
        yield inbox, received, smtp_port, centre_port
    finally:
        await centre.async_stop()
        if smtp_up:
            controller.stop()


async def until(check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_mail_at_once_then_the_centre_after_the_delay_unless_acknowledged(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with parts() as (inbox, received, smtp_port, centre_port):
            config = load_notify_config(write_config(tmp_path, smtp_port, centre_port))
            store = FileChainStore(tmp_path / "chains.json")
            notifier = Notifier(
                config,
                store,
                directory=DIRECTORY.__getitem__,
                ack_link=lambda a, _r: f"https://hub.example.org/ack/{a['id']}",
            )
            runner = asyncio.create_task(notifier.run())
            t0 = time.time()
            notifier.alert(alert("a-00000001"), t0)
            notifier.alert(alert("a-00000002", alert_type="sos"), t0)
            await until(lambda: len(inbox.mails) == 2, 5)
            mailed = time.time() - t0
            notifier.acknowledged("a-00000002", time.time())  # someone took the SOS
            await until(lambda: received, CENTRE_DELAY_S + 5)
            await asyncio.sleep(1.0)  # would the acknowledged one come too?
            runner.cancel()
            assert mailed < 5.0
            subjects = sorted(m["Subject"] for m in inbox.mails)
            assert subjects == [
                "Appel d'urgence (bouton SOS) : Mme Jeanne Martin",
                "Chute détectée : Mme Jeanne Martin",
            ]
            body = inbox.mails[0].get_body(("plain",))
            assert body is not None
            assert "https://hub.example.org/ack/a-0000000" in body.get_content()
            [(at, event)] = received
            assert (event.account, event.event_qualifier, event.event_type) == (
                "C0FFEE",
                "1",
                "100",
            )  # the home's own account at the centre; fall: medical
            assert 0 <= at - t0 - CENTRE_DELAY_S < 1.0, at - t0
            log = store.log()
            assert [(e["alert_id"], e["channel"], e["ok"]) for e in log] == [
                ("a-00000001", "astreinte", True),
                ("a-00000002", "astreinte", True),
                ("a-00000001", "centre", True),
            ]

    asyncio.run(scenario())


def test_mail_server_down_the_chain_goes_on_and_retries(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with parts(smtp_up=False) as (_, received, smtp_port, centre_port):
            config = load_notify_config(write_config(tmp_path, smtp_port, centre_port))
            store = FileChainStore(tmp_path / "chains.json")
            notifier = Notifier(
                config, store, directory=DIRECTORY.__getitem__, retry_delays_s=(0.5, 0.5)
            )
            runner = asyncio.create_task(notifier.run())
            t0 = time.time()
            notifier.alert(alert("a-00000003"), t0)
            await until(lambda: received, CENTRE_DELAY_S + 5)
            # the centre has it: wait for the notifier to log its ACK too
            await until(lambda: any(e["channel"] == "centre" for e in store.log()), 5)
            runner.cancel()
            log = [(e["channel"], e["retry"], e["ok"]) for e in store.log()]
            assert log == [
                ("astreinte", 0, False),
                ("astreinte", 1, False),
                ("astreinte", 2, False),
                ("centre", 0, True),
            ]
            assert "ConnectionRefusedError" in store.log()[0]["error"]
            assert store.log()[2]["retry_at"] is None  # given up after the configured retries

    asyncio.run(scenario())


def test_a_restarted_hub_resumes_the_chain_and_sends_nothing_twice(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with parts() as (inbox, received, smtp_port, centre_port):
            config = load_notify_config(write_config(tmp_path, smtp_port, centre_port))
            first = Notifier(
                config, FileChainStore(tmp_path / "chains.json"), directory=DIRECTORY.get
            )
            t0 = time.time()
            first.alert(alert("a-00000004"), t0)
            await first.tick(t0)
            assert len(inbox.mails) == 1
            # the hub process dies; a new one starts from the same store
            second = Notifier(
                config, FileChainStore(tmp_path / "chains.json"), directory=DIRECTORY.get
            )
            assert await second.tick(t0 + 1) == []
            second.alert(alert("a-00000004"), t0 + 1.5)  # the broker redelivers the alert
            assert await second.tick(t0 + 1.5) == []
            entries = await second.tick(t0 + CENTRE_DELAY_S)
            assert [(e["channel"], e["ok"]) for e in entries] == [("centre", True)]
            third = Notifier(
                config, FileChainStore(tmp_path / "chains.json"), directory=DIRECTORY.get
            )
            assert await third.tick(t0 + 3600) == []
            await asyncio.sleep(0.1)
            assert len(inbox.mails) == 1
            assert len(received) == 1

    asyncio.run(scenario())


def test_an_unexpected_error_in_a_channel_is_logged_and_the_chain_goes_on(
    tmp_path: Path,
) -> None:
    from tests.test_notify_webpush import write_vapid_key

    write_vapid_key(tmp_path / "vapid.pem")
    (tmp_path / "subs.json").write_text("{ not json")  # a broken subscriptions file

    async def scenario() -> None:
        async with parts() as (_, received, smtp_port, centre_port):
            path = write_config(tmp_path, smtp_port, centre_port)
            text = path.read_text().replace('channels = ["astreinte"]', 'channels = ["phones"]')
            path.write_text(
                text
                + """
[[channel]]
name = "phones"
kind = "webpush"
vapid_private_key_file = "vapid.pem"
subject = "mailto:admin@hub.example.org"
subscriptions_file = "subs.json"
"""
            )
            store = FileChainStore(tmp_path / "chains.json")
            notifier = Notifier(
                load_notify_config(path), store, directory=DIRECTORY.__getitem__, retry_delays_s=()
            )
            runner = asyncio.create_task(notifier.run())
            notifier.alert(alert("a-00000005"), time.time())
            await until(lambda: received, CENTRE_DELAY_S + 5)
            # the centre has it: wait for the notifier to log its ACK too
            await until(lambda: any(e["channel"] == "centre" for e in store.log()), 5)
            runner.cancel()
            log = store.log()
            assert [(e["channel"], e["ok"]) for e in log] == [("phones", False), ("centre", True)]
            assert "JSONDecodeError" in log[0]["error"]

    asyncio.run(scenario())
