"""Contacts from the home directory as an escalation step ("family after 20 min"): the
notifier mails the home's contacts of the step's relations through a real SMTP server
(aiosmtpd), with a link of their own; an acknowledged alert never reaches them; a home
without such a contact is logged once, never retried; the real `veille hub --directory`
does the same on the real broker, and the family's link acknowledges as the family."""

from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from cloud_bridge.contract import alert_topic, encode
from cloud_bridge.directory import parse_card
from cloud_bridge.notify.config import CONTACTS, NotifyConfigError, parse_notify_config
from cloud_bridge.notify.notifier import FileChainStore, Notifier
from cloud_bridge.stores import open_store
from tests.gateway_proc import HubProc
from tests.support import Mosquitto, free_port, publish
from tests.test_notify_e2e import alert, until
from tests.test_notify_hub import alert as wire_alert
from tests.test_notify_hub import wait
from tests.test_notify_links import LINK_RE
from tests.test_notify_mail import Inbox

FAMILY_DELAY_S = 1.5
CARD = {
    "home_id": "h-0042",
    "resident": "Mme Jeanne Martin",
    "address": "12 rue des Lilas, 69003 Lyon",
    "contact": [
        {"name": "Paul Martin", "relation": "family", "email": "paul@example.org"},
        {"name": "Mme Roux", "relation": "neighbour", "email": "roux@example.org"},
        {"name": "Léa Martin", "relation": "family", "email": "lea@example.org"},
        {"name": "Dr Morel", "relation": "gp", "phone": "04 78 22 22 22"},
    ],
}


def notify_toml(smtp_port: int, extra: str = "") -> str:
    return f"""\
[[channel]]
name = "astreinte"
kind = "email"
smtp = "smtp://127.0.0.1:{smtp_port}"
from = "veille@hub.example.org"
to = ["astreinte@ssiad.example.org"]
timeout_s = 2

[[escalation]]
after_s = 0
channels = ["astreinte"]

[[escalation]]
after_s = {FAMILY_DELAY_S}
contacts = ["family"]
severities = ["critical"]
{extra}"""


def test_a_contacts_step_in_notify_toml() -> None:
    config = parse_notify_config(tomllib.loads(notify_toml(25)))
    step = config.steps[1]
    assert step.channels == (CONTACTS,)
    assert (step.contacts, step.contacts_via) == (frozenset({"family"}), "astreinte")
    base = notify_toml(25).split("[[escalation]]")[0]
    for bad, reason in [
        ("after_s = 1\ncontacts = ['cousins']\n", "'cousins' in contacts"),
        ("after_s = 1\ncontacts = ['family']\ncontacts_via = 'nope'\n", "email channel"),
        ("after_s = 1\nchannels = ['astreinte']\ncontacts_via = 'astreinte'\n", "needs contacts"),
        ("after_s = 1\ncontacts = []\n", "non-empty"),
    ]:
        text = base + "[[escalation]]\n" + bad
        with pytest.raises(NotifyConfigError, match=reason):
            parse_notify_config(tomllib.loads(text), text)
    two = base.replace(
        "[[channel]]",
        '[[channel]]\nname = "b"\nkind = "email"\nsmtp = "smtp://h"\n'
        'from = "a@b.fr"\nto = "c@d.fr"\n\n[[channel]]',
        1,
    )
    text = two + "[[escalation]]\nafter_s = 1\ncontacts = ['family']\n"
    with pytest.raises(NotifyConfigError, match="contacts_via is required"):
        parse_notify_config(tomllib.loads(text), text)


def run_notifier(tmp_path: Path, cards: dict[str, Any], scenario: Any) -> Inbox:
    async def main() -> Inbox:
        inbox = Inbox()
        port = free_port()
        smtp = Controller(inbox, hostname="127.0.0.1", port=port)
        smtp.start()
        try:
            text = notify_toml(port)
            config = parse_notify_config(tomllib.loads(text), text)
            store = FileChainStore(tmp_path / "chains.json")
            directory = {k: parse_card(v).as_notice() for k, v in cards.items()}
            notifier = Notifier(
                config,
                store,
                directory=lambda home: directory.get(home, {}),
                ack_link=lambda a, r: f"https://hub.example.org/lien/{a['id']}/{r}",
                retry_delays_s=(0.3,),
            )
            runner = asyncio.create_task(notifier.run())
            try:
                await scenario(notifier, inbox, store)
            finally:
                runner.cancel()
            return inbox
        finally:
            smtp.stop()

    return asyncio.run(main())


def test_the_family_is_mailed_after_its_delay_and_only_the_family(tmp_path: Path) -> None:
    async def scenario(notifier: Notifier, inbox: Inbox, store: FileChainStore) -> None:
        t0 = time.time()
        notifier.alert(alert("a-1"), t0)
        await until(lambda: len(inbox.mails) == 2, FAMILY_DELAY_S + 5)
        at = time.time() - t0
        assert FAMILY_DELAY_S <= at < FAMILY_DELAY_S + 1.0, at
        await asyncio.sleep(0.5)
        assert len(inbox.mails) == 2
        family = inbox.envelopes[1]
        assert sorted(family.rcpt_tos) == ["lea@example.org", "paul@example.org"]
        assert inbox.mails[1]["Subject"] == "Chute détectée : Mme Jeanne Martin"
        body = inbox.mails[1].get_body(("plain",)).get_content()
        assert "https://hub.example.org/lien/a-1/Famille" in body
        assert [(e["channel"], e["ok"]) for e in store.log()] == [
            ("astreinte", True),
            (CONTACTS, True),
        ]

    run_notifier(tmp_path, {"h-0042": CARD}, scenario)


def test_an_acknowledged_alert_never_reaches_the_family(tmp_path: Path) -> None:
    async def scenario(notifier: Notifier, inbox: Inbox, store: FileChainStore) -> None:
        notifier.alert(alert("a-2"), time.time())
        await until(lambda: inbox.mails, 5)
        notifier.acknowledged("a-2", time.time())
        await asyncio.sleep(FAMILY_DELAY_S + 1.0)
        assert [e.rcpt_tos for e in inbox.envelopes] == [["astreinte@ssiad.example.org"]]

    run_notifier(tmp_path, {"h-0042": CARD}, scenario)


def test_a_home_without_a_family_email_is_logged_once_and_never_retried(tmp_path: Path) -> None:
    no_email = {**CARD, "contact": [{"name": "Paul", "relation": "family", "phone": "06"}]}

    async def scenario(notifier: Notifier, inbox: Inbox, store: FileChainStore) -> None:
        notifier.alert(alert("a-3"), time.time())
        await until(lambda: len(store.log()) == 2, FAMILY_DELAY_S + 5)
        await asyncio.sleep(1.5)  # the retry delay is 0.3 s here
        assert len(inbox.mails) == 1
        [(channel, ok, error)] = [
            (e["channel"], e["ok"], e["error"]) for e in store.log() if e["channel"] == CONTACTS
        ]
        assert (channel, ok, error) == (CONTACTS, False, "no family contact with an email")
        assert "final" not in store.log()[1]

    run_notifier(tmp_path, {"h-0042": no_email}, scenario)


def test_a_failed_family_mail_is_retried(tmp_path: Path) -> None:
    async def scenario(notifier: Notifier, inbox: Inbox, store: FileChainStore) -> None:
        refused: list[int] = []

        async def refuse_once(server: Any, session: Any, envelope: Any) -> str:
            if not refused and "paul@example.org" in envelope.rcpt_tos:
                refused.append(1)
                return "451 try again later"
            return await Inbox.handle_DATA(inbox, server, session, envelope)

        inbox.handle_DATA = refuse_once  # type: ignore[method-assign]
        notifier.alert(alert("a-4"), time.time())
        await until(lambda: len(store.log()) == 3, FAMILY_DELAY_S + 5)
        assert len(inbox.mails) == 2
        assert refused == [1]
        assert [(e["channel"], e["ok"]) for e in store.log()] == [
            ("astreinte", True),
            (CONTACTS, False),
            (CONTACTS, True),
        ]

    run_notifier(tmp_path, {"h-0042": CARD}, scenario)


def test_veille_hub_mails_the_family_whose_link_acknowledges_as_the_family(
    tmp_path: Path, hub_broker: Mosquitto
) -> None:
    inbox = Inbox()
    smtp_port, http_port = free_port(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    notify = tmp_path / "notify.toml"
    notify.write_text(
        notify_toml(smtp_port, f'\n[hub]\npublic_url = "http://127.0.0.1:{http_port}"\n')
    )
    directory = tmp_path / "directory.toml"
    directory.write_text(
        '[[home]]\nhome_id = "h-0042"\nresident = "Mme Jeanne Martin"\n'
        '[[home.contact]]\nname = "Paul Martin"\nrelation = "family"\nemail = "paul@example.org"\n'
    )
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = HubProc(
        tmp_path / "hub",
        hub_broker.url,
        store,
        http_port=http_port,
        extra_args=("--notify", str(notify), "--directory", str(directory)),
    )
    try:
        hub.start()
        sent = wire_alert(31)
        publish(hub_broker.port, alert_topic("h-0042"), encode(sent))
        wait(lambda: len(inbox.mails) == 2, FAMILY_DELAY_S + 10)
        assert inbox.envelopes[1].rcpt_tos == ["paul@example.org"]
        body = inbox.mails[1].get_body(("plain",)).get_content()
        match = LINK_RE.search(body)
        assert match is not None, body
        with httpx.Client(trust_env=False) as phone:
            assert phone.post(match[1]).status_code == 200
        check = open_store(store)
        try:
            row = check.alert(sent["id"])
            assert row is not None
            assert row["handled_by"] == "Famille (lien)"
        finally:
            check.close()
    finally:
        hub.stop()
        smtp.stop()
