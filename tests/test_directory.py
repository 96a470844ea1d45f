"""The home directory at the hub: `directory.toml`, the store (SQLite and a real
PostgreSQL), the console (staff read, coordinators edit), and the real `veille hub`:
mails name the resident and the address, the monitoring centre (pysiaalarm) hears on the
home's own account, the link page shows the card after the button, and nothing of the
directory is ever published towards a gateway."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from pysiaalarm import SIAAccount, SIAClient

from cloud_bridge.contract import alert_topic, encode
from cloud_bridge.directory import Contact, HomeCard, load_directory, open_directory
from cloud_bridge.errors import VeilleError
from tests.gateway_proc import STAFF_PASSWORD, HubProc
from tests.support import Collector, Mosquitto, free_port, publish
from tests.test_notify_hub import KEY, alert, wait, write_notify
from tests.test_notify_links import LINK_RE
from tests.test_notify_mail import Inbox

DIRECTORY = """\
[[home]]
home_id = "h-0042"
resident = "Mme Jeanne Martin"
address = "12 rue des Lilas, 69003 Lyon"
phone = "04 78 00 00 00"
access = "Boîte à clés à gauche de la porte, code 1234"
centre_account = "b0042"

[[home.contact]]
name = "Paul Martin"
relation = "family"
phone = "06 12 34 56 78"
email = "paul.martin@example.org"

[[home.contact]]
name = "Mme Roux"
relation = "neighbour"
phone = "06 98 76 54 32"

[[home]]
home_id = "h-0043"
resident = "M. Louis Petit"
"""


def write_directory(path: Path, text: str = DIRECTORY) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_directory_toml_loads_in_order(tmp_path: Path) -> None:
    one, two = load_directory(write_directory(tmp_path / "d.toml"))
    assert one.resident == "Mme Jeanne Martin"
    assert one.centre_account == "B0042"
    assert [c.name for c in one.contacts] == ["Paul Martin", "Mme Roux"]
    assert [c.name for c in one.contacts_of(["family"])] == ["Paul Martin"]
    assert two == HomeCard("h-0043", resident="M. Louis Petit")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[[home]]\nhome_id = "H 42"\n', "not a home id"),
        ('[[home]]\nhome_id = "h-0042"\nname = "x"\n', "unknown key 'name'"),
        ('[[home]]\nhome_id = "h-0042"\ncentre_account = "XYZ"\n', "hex"),
        (
            '[[home]]\nhome_id = "h-0042"\n[[home.contact]]\nname = "P"\nrelation = "cousin"\n',
            "relation",
        ),
        (
            '[[home]]\nhome_id = "h-0042"\n[[home.contact]]\nname = "P"\nemail = "p@"\n',
            "not an address",
        ),
        ('[[home]]\nhome_id = "h-0042"\n[[home.contact]]\nphone = "06"\n', "name is required"),
        ('[[home]]\nhome_id = "h-0042"\n[[home]]\nhome_id = "h-0042"\n', "twice"),
        ("homes = 1\n", "unknown section"),
        ("[[home]\n", "cannot read"),
    ],
)
def test_a_bad_directory_is_refused_with_its_reason(tmp_path: Path, text: str, reason: str) -> None:
    path = write_directory(tmp_path / "d.toml", text)
    with pytest.raises(VeilleError, match=reason) as info:
        load_directory(path)
    assert str(path) in str(info.value)


def test_the_store_keeps_and_replaces_cards(spec: str) -> None:
    one = open_directory(spec)
    try:
        card = HomeCard("h-0042", resident="Mme Jeanne Martin", contacts=(Contact("Paul"),))
        one.put(card, "alice", 1.0)
        assert one.get("h-0042") == card
        assert one.get("h-0099") is None
        assert one.notice("h-0099") == {}
        one.put(HomeCard("h-0042", resident="Mme J. Martin"), "bob", 2.0)
    finally:
        one.close()
    two = open_directory(spec)  # another process on the same store
    try:
        assert [c.resident for c in two.all()] == ["Mme J. Martin"]
        assert two.notice("h-0042")["resident"] == "Mme J. Martin"
    finally:
        two.close()


# --- the real veille hub --------------------------------------------------------------------
@pytest.fixture
def hub(tmp_path: Path, hub_broker: Mosquitto) -> Iterator[tuple[HubProc, Inbox, list[Any]]]:
    inbox, events = Inbox(), []
    smtp_port, centre_port, http_port = free_port(), free_port(), free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    centre = SIAClient(
        "127.0.0.1",
        centre_port,
        [SIAAccount("A1B2C3", KEY), SIAAccount("B0042", KEY)],
        function=events.append,
    )
    centre.start()
    notify = write_notify(tmp_path / "notify.toml", smtp_port, centre_port)
    with notify.open("a") as out:
        out.write(f'\n[hub]\npublic_url = "http://127.0.0.1:{http_port}"\n')
    staff = tmp_path / "staff.txt"
    staff.write_text(f"alice:{STAFF_PASSWORD}\nbob:{STAFF_PASSWORD}\n")
    proc = HubProc(
        tmp_path / "hub",
        hub_broker.url,
        f"sqlite:///{tmp_path / 'hub.db'}",
        http_port=http_port,
        extra_args=(
            "--notify",
            str(notify),
            "--directory",
            str(write_directory(tmp_path / "directory.toml")),
            "--coordinator",
            "alice",
            "--staff-password-file",
            str(staff),
        ),
    )
    try:
        proc.start()
        yield proc, inbox, events
    finally:
        proc.stop()
        centre.stop()
        smtp.stop()


def signed_in(url: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=url, trust_env=False)
    done = client.post("/login", data={"name": name, "password": STAFF_PASSWORD})
    assert done.status_code in (200, 303), done.text[:300]
    client.close()  # opened again by `with`; the cookies stay
    return httpx.Client(base_url=url, trust_env=False, cookies=client.cookies)


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None, page[:500]
    return match[1]


def test_notifications_name_the_resident_and_the_centre_hears_on_the_homes_account(
    hub: tuple[HubProc, Inbox, list[Any]], hub_broker: Mosquitto
) -> None:
    _proc, inbox, events = hub
    towards_homes = Collector(hub_broker.port, "veille/#")
    try:
        publish(hub_broker.port, alert_topic("h-0042"), encode(alert(21)))
        wait(lambda: inbox.mails, 5)
        [mail] = inbox.mails
        assert mail["Subject"] == "Chute détectée : Mme Jeanne Martin"
        body = mail.get_body(("plain",)).get_content()
        assert "12 rue des Lilas, 69003 Lyon" in body
        assert "Boîte à clés" in body
        wait(lambda: events, 15)
        assert [(e.account, e.event_type) for e in events] == [("B0042", "100")]
        # the link page shows the card after the button
        match = LINK_RE.search(body)
        assert match is not None
        with httpx.Client(trust_env=False) as phone:
            before = phone.get(match[1]).text
            assert "Mme Jeanne Martin" in before
            assert "Boîte à clés" not in before
            after = phone.post(match[1]).text
        assert 'id="ack-card"' in after
        assert "12 rue des Lilas" in after
        assert "Boîte à clés" in after
        assert "Paul Martin" in after
        time.sleep(0.5)
        # what went towards the gateways (receipt, ack) carries nothing of the directory
        out = [raw for topic, raw, _ in towards_homes.drain(0.5) if not topic.endswith("/alert")]
        assert out, "the receipt and the ack went to the home"
        for raw in out:
            text = raw.decode()
            for secret in ("Jeanne", "Lilas", "1234", "Paul", "04 78"):
                assert secret not in text, text
    finally:
        towards_homes.close()


def test_staff_read_the_directory_and_only_a_coordinator_edits_it(
    hub: tuple[HubProc, Inbox, list[Any]],
) -> None:
    proc, _, _ = hub
    bob, alice = signed_in(proc.url, "bob"), signed_in(proc.url, "alice")
    with bob, alice:
        listing = bob.get("/annuaire")
        assert listing.status_code == 200
        assert "Mme Jeanne Martin" in listing.text
        assert "M. Louis Petit" in listing.text
        card = bob.get("/homes/h-0042/annuaire")
        assert "Boîte à clés" in card.text
        assert 'id="directory-form"' not in card.text
        refused = bob.post(
            "/homes/h-0042/annuaire", data={"csrf": csrf_of(card.text), "resident": "X"}
        )
        assert refused.status_code == 403
        form = alice.get("/homes/h-0042/annuaire").text
        assert 'id="directory-form"' in form
        edit = {
            "csrf": csrf_of(form),
            "resident": "Mme Jeanne Martin-Roux",
            "address": "3 place Bellecour, 69002 Lyon",
            "phone": "04 78 11 11 11",
            "access": "Gardienne au rez-de-chaussée",
            "centre_account": "B0042",
            "contact_name": ["Mme Roux", "Paul Martin", ""],
            "contact_relation": ["neighbour", "family", "other"],
            "contact_phone": ["06 98 76 54 32", "06 12 34 56 78", ""],
            "contact_email": ["", "paul.martin@example.org", ""],
        }
        saved = alice.post("/homes/h-0042/annuaire", data=edit, follow_redirects=False)
        assert saved.status_code == 303
        shown = bob.get("/homes/h-0042/annuaire").text
        assert "Mme Jeanne Martin-Roux" in shown
        assert shown.index("Mme Roux") < shown.index("Paul Martin")  # the new order
        bad = alice.post(
            "/homes/h-0042/annuaire",
            data={**edit, "csrf": csrf_of(form), "contact_email": ["nope", "", ""]},
        )
        assert bad.status_code == 422
        assert "not an address" in bad.text
        assert "Mme Jeanne Martin-Roux" in bad.text  # what was typed is kept
        no_csrf = alice.post("/homes/h-0042/annuaire", data={**edit, "csrf": "x"})
        assert no_csrf.status_code in (400, 403)
    store = open_directory(proc.store)
    try:
        card_now = store.get("h-0042")
        assert card_now is not None
        assert [c.relation for c in card_now.contacts] == ["neighbour", "family"]
    finally:
        store.close()
    json.dumps(card_now.to_dict())  # storable as is
