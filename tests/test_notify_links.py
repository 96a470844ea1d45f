"""One-click acknowledgement links (DESIGN.md section 8): signed, expiring, single use.

The token's rules on their own (tampered, expired, another key); the used-token record on
SQLite and a real PostgreSQL (shared key, atomic single use); then the product's own path:
the real `veille hub --notify` mails through a real SMTP server (aiosmtpd), the test reads
the link in the mail and follows it against the real hub: a GET never acknowledges, the
button's POST does (the chain stops, `veille.ack/1` goes down to the home, the monitoring
centre, a real pysiaalarm receiver, never hears of it), and a second use, an expired token
signed with the hub's own key and a tampered one are refused. An alert nobody takes
reaches the centre after its step's delay."""

from __future__ import annotations

import json
import re
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from pysiaalarm import SIAAccount, SIAClient

from cloud_bridge.ack_links import LinkRefused, LinkSigner, open_link_store
from cloud_bridge.contract import ack_topic, alert_topic, encode, iso_utc
from cloud_bridge.notify.config import NotifyConfigError, parse_notify_config
from cloud_bridge.stores import open_store
from tests.gateway_proc import HubProc
from tests.support import Collector, Mosquitto, free_port, publish
from tests.test_notify_hub import CENTRE_DELAY_S, KEY, alert, wait, write_notify
from tests.test_notify_mail import Inbox

T0 = 1_780_000_000.0
LINK_RE = re.compile(r"(http://127\.0\.0\.1:\d+/lien/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+)")


# --- the token ------------------------------------------------------------------------------
def test_a_token_says_its_alert_and_recipient_until_it_expires() -> None:
    signer = LinkSigner(b"k" * 32, "https://hub.example.org/", ttl_s=3600)
    url = signer.url("a-1", "astreinte", T0)
    assert url.startswith("https://hub.example.org/lien/")
    claim = signer.check(url.rsplit("/", 1)[1], T0 + 3599)
    assert (claim.alert_id, claim.recipient, claim.expires) == ("a-1", "astreinte", T0 + 3600)
    with pytest.raises(LinkRefused, match="expiré"):
        signer.check(url.rsplit("/", 1)[1], T0 + 3600)


@pytest.mark.parametrize(
    "change",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # the signature
        lambda t: t[:3] + ("x" if t[3] != "x" else "y") + t[4:],  # the claim
        lambda t: t.replace(".", ""),
        lambda t: t + ".x",
        lambda t: "%%%." + t.split(".")[1],
        lambda t: "x" * 700,
        lambda t: "",
    ],
)
def test_a_changed_token_is_refused(change: Any) -> None:
    signer = LinkSigner(b"k" * 32)
    token = signer.token("a-1", "astreinte", T0)
    with pytest.raises(LinkRefused, match="pas valide"):
        signer.check(change(token), T0)


def test_a_token_from_another_key_or_another_alert_is_refused() -> None:
    mine, other = LinkSigner(b"k" * 32), LinkSigner(b"j" * 32)
    with pytest.raises(LinkRefused):
        mine.check(other.token("a-1", "astreinte", T0), T0)
    # a claim for another alert with this alert's signature
    token = mine.token("a-1", "astreinte", T0)
    forged = mine.token("a-2", "astreinte", T0).split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(LinkRefused):
        mine.check(forged, T0)


def test_notify_toml_hub_section() -> None:
    base = '[[channel]]\nname="m"\nkind="email"\nsmtp="smtp://h"\nfrom="a@b.fr"\nto="c@d.fr"\n'
    base += "[[escalation]]\nafter_s=0\nchannels=['m']\n"
    config = parse_notify_config(tomllib.loads(base + '[hub]\npublic_url="https://h.fr/veille/"\n'))
    assert (config.public_url, config.link_ttl_s) == ("https://h.fr/veille", 86400.0)
    for bad, reason in [
        ('[hub]\npublic_url="ftp://h"\n', "public_url"),
        ('[hub]\npublic_url="https://h/?a=1"\n', "query"),
        ("[hub]\nlink_ttl_s=5\n", "link_ttl_s"),
        ("[hub]\nsecret=1\n", "unknown key 'secret'"),
    ]:
        text = base + bad
        with pytest.raises(NotifyConfigError, match=reason):
            parse_notify_config(tomllib.loads(text), text)


# --- the store ------------------------------------------------------------------------------


def test_the_key_is_shared_and_a_token_is_used_once_across_processes(spec: str) -> None:
    one, two = open_link_store(spec), open_link_store(spec)
    try:
        assert one.key() == two.key()
        assert len(one.key()) == 32
        signer = LinkSigner(one.key())
        claim = signer.check(signer.token("a-1", "astreinte", T0), T0)
        assert not two.used(claim)
        assert one.use(claim, T0) is True
        assert two.used(claim)
        assert two.use(claim, T0 + 1) is False
        other = signer.check(signer.token("a-1", "famille", T0), T0)
        assert two.use(other, T0 + 1) is True  # another recipient's link is its own
    finally:
        one.close()
        two.close()
    again = open_link_store(spec)  # a restart keeps the key: links already sent still work
    try:
        assert LinkSigner(again.key()).check(signer.token("a-3", "x", T0), T0).alert_id == "a-3"
    finally:
        again.close()


# --- the real veille hub ------------------------------------------------------------------------
@dataclass
class LinkRig:
    inbox: Inbox
    events: list[tuple[float, Any]]
    hub: HubProc
    broker: Mosquitto
    store: str


@pytest.fixture
def rig(tmp_path: Path, hub_broker: Mosquitto) -> Iterator[LinkRig]:
    inbox, events = Inbox(), []
    smtp_port, centre_port, http_port = free_port(), free_port(), free_port()
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
    with notify.open("a") as out:
        out.write(f'\n[hub]\npublic_url = "http://127.0.0.1:{http_port}"\n')
    hub = HubProc(
        tmp_path / "hub",
        hub_broker.url,
        store,
        http_port=http_port,
        extra_args=("--notify", str(notify)),
    )
    try:
        hub.start()
        yield LinkRig(inbox, events, hub, hub_broker, store)
    finally:
        hub.stop()
        centre.stop()
        smtp.stop()


def the_link(mail: Any) -> str:
    body = mail.get_body(("plain",)).get_content()
    match = LINK_RE.search(body)
    assert match is not None, body
    html = mail.get_body(("html",)).get_content()
    assert match[1] in html  # the HTML part carries the same link
    return match[1]


def handled_by(rig: LinkRig, alert_id: str) -> str:
    store = open_store(rig.store)
    try:
        row = store.alert(alert_id)
        assert row is not None
        return str(row.get("handled_by") or "")
    finally:
        store.close()


def test_the_mails_link_acknowledges_once_by_its_button_and_the_centre_never_hears(
    rig: LinkRig,
) -> None:
    home = Collector(rig.broker.port, ack_topic("h-0042"))
    try:
        taken, left = alert(11), alert(12, alert_type="sos")
        t0 = time.time()
        publish(rig.broker.port, alert_topic("h-0042"), encode(taken))
        wait(lambda: len(rig.inbox.mails) == 1, 5)
        publish(rig.broker.port, alert_topic("h-0042"), encode(left))
        wait(lambda: len(rig.inbox.mails) == 2, 5)
        assert time.time() - t0 < 5.0
        by_id = {m["Subject"]: m for m in rig.inbox.mails}
        link = the_link(by_id["Chute détectée : logement h-0042"])
        assert taken["id"] not in link  # the alert is inside the signed claim, not guessable
        with httpx.Client(trust_env=False) as phone:
            # a mail scanner, a preview, the person opening it: nothing happens
            for _ in range(2):
                page = phone.get(link)
                assert page.status_code == 200
                assert 'id="ack-button"' in page.text
                assert page.text.count("<button") == 1
                assert "Chute détectée" in page.text
                assert page.headers["referrer-policy"] == "no-referrer"
            assert 'id="ack-card"' not in page.text  # access notes only after the button
            time.sleep(0.5)
            assert handled_by(rig, taken["id"]) == ""
            assert home.drain(0.3) == []
            # the button
            done = phone.post(link)
            assert done.status_code == 200, done.text[:400]
            assert 'id="ack-done"' in done.text
            assert 'id="ack-evidence"' in done.text
            assert handled_by(rig, taken["id"]) == "astreinte (lien)"
            topic, raw, _ = home.get(5)
            ack = json.loads(raw)
            assert (topic, ack["alert_id"], ack["action"], ack["by"]) == (
                ack_topic("h-0042"),
                taken["id"],
                "acknowledged",
                "astreinte (lien)",
            )
            # once only: the same link again, by POST or GET
            assert phone.post(link).status_code == 410
            again = phone.get(link)
            assert again.status_code == 410
            assert "déjà servi" in again.text
            assert 'id="ack-button"' not in again.text
            # tampered
            tampered = link[:-2] + ("AA" if not link.endswith("AA") else "BB")
            refused = phone.post(tampered)
            assert refused.status_code == 403
            assert "pas valide" in refused.text
            # expired, though signed with the hub's own key
            links = open_link_store(rig.store)
            try:
                old = LinkSigner(links.key(), rig.hub.url, ttl_s=60).url(
                    left["id"], "astreinte", time.time() - 61
                )
            finally:
                links.close()
            expired = phone.post(old)
            assert expired.status_code == 403
            assert "expiré" in expired.text
        # the untaken SOS reaches the centre after the step's delay; the taken fall never
        wait(lambda: rig.events, CENTRE_DELAY_S + 10)
        time.sleep(1.5)
        [(at, event)] = rig.events
        assert (event.account, event.event_type, event.encrypted) == ("A1B2C3", "101", True)
        assert at - t0 >= CENTRE_DELAY_S
        assert handled_by(rig, left["id"]) == ""
        # the gateway closes the SOS (the person answered): its link no longer offers to act
        sos_link = the_link(by_id["Appel d'urgence (bouton SOS) : logement h-0042"])
        publish(
            rig.broker.port,
            alert_topic("h-0042"),
            encode({**left, "state": "cancelled", "at": iso_utc(time.time())}),
        )
        with httpx.Client(trust_env=False) as phone:
            wait(lambda: 'id="ack-closed"' in phone.get(sos_link).text, 5)
            assert 'id="ack-button"' not in phone.get(sos_link).text
            assert 'id="ack-closed"' in phone.post(sos_link).text
        assert handled_by(rig, left["id"]) == ""
    finally:
        home.close()
