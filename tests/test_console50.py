"""The console for many homes, app-level: the real console app on a real hub receiver, a real
Mosquitto and one SQLite store holding the console's sessions and actions, the directory,
the links and the outcomes (one of each for the module; each test has its own homes).

Names from the directory (the home id when a home has none), ages in words, filters kept
across the refresh and the action's return, the staff's action shown at once (before the
home confirms it), the typed note kept through a new sign-in, the alert page, and the
acknowledgement link's page in English.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud_bridge.ack_links import LinkSigner, LinkStore, open_link_store
from cloud_bridge.broker import parse_broker_url
from cloud_bridge.console import create_console_app
from cloud_bridge.console_sessions import ConsoleState, open_console_state
from cloud_bridge.console_staff import DRAFT_COOKIE
from cloud_bridge.contract import iso_utc
from cloud_bridge.directory import Contact, DirectoryStore, HomeCard, open_directory
from cloud_bridge.hub import HubReceiver
from cloud_bridge.hub_store import SqliteHubStore
from cloud_bridge.outcomes import OutcomeStore, open_outcomes
from cloud_bridge.pages.auth import SESSION_COOKIE
from tests.support import Mosquitto, publish, running_mosquitto
from tests.test_console import CSRF_RE, PASSWORD, STAFF, sign_in, wait_for

CARD = HomeCard(
    "h-5001",
    resident="Mme Jeanne Martin",
    address="12 rue des Lilas, 69003 Lyon",
    phone="04 78 00 00 00",
    access="Boîte à clés à gauche de la porte",
    contacts=(Contact("Paul Martin", "family", "06 12 34 56 78"),),
)


@dataclass
class Console:
    broker: Mosquitto
    store: SqliteHubStore
    receiver: HubReceiver
    state: ConsoleState
    links: LinkStore
    app: Any
    spec: str

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://testserver")


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    tmp = tmp_path_factory.mktemp("console50")
    spec = f"sqlite:///{tmp / 'hub.db'}"
    stores: list[Any] = []
    with running_mosquitto(tmp / "broker") as broker:
        store = SqliteHubStore(tmp / "hub.db")
        receiver = HubReceiver(parse_broker_url(broker.url), store, escalate_after_s=3600)
        receiver.start()
        assert receiver.wait_connected(10)
        state = open_console_state(spec)
        links = open_link_store(spec)
        directory: DirectoryStore = open_directory(spec)
        outcomes: OutcomeStore = open_outcomes(spec)
        stores += [state, links, directory, outcomes]
        for card in (CARD, HomeCard("h-5002", resident="M. Louis Petit")):
            directory.put(card, "test", time.time())
        pw = tmp / "staff.txt"
        pw.write_text(f"{STAFF}:{PASSWORD}\n")
        app = create_console_app(
            receiver,
            staff_password_file=pw,
            state=state,
            links=links,
            directory=directory,
            outcomes=outcomes,
        )
        try:
            yield Console(broker, store, receiver, state, links, app, spec)
        finally:
            receiver.stop()
            for opened in stores:
                opened.close()
            store.close()


def raised(
    home: str, n: int, kind: str, severity: str, ago_s: float, **evidence: Any
) -> dict[str, Any]:
    at = time.time() - ago_s
    return {
        "schema": "veille.alert/1",
        "id": f"0190b000-0000-7000-8000-{n:012d}",
        "home_id": home,
        "type": kind,
        "severity": severity,
        "state": "raised",
        "at": iso_utc(at),
        "raised_at": iso_utc(at),
        "room": "bathroom",
        "device_id": None,
        "evidence": evidence,
    }


def send(console: Console, *alerts: dict[str, Any]) -> None:
    for payload in alerts:
        publish(console.broker.port, f"veille/v1/{payload['home_id']}/alert", _encode(payload))
    ids = [a["id"] for a in alerts]
    wait_for(lambda: all(console.store.alert(i) is not None for i in ids))


def _encode(payload: dict[str, Any]) -> bytes:
    from cloud_bridge.contract import encode

    return encode(payload)


def card_of(page: str, alert_id: str) -> str:
    """One alert's card in a page's HTML."""
    start = page.index(f'id="alert-{alert_id}"')
    return page[start : page.index("</article>", start)]


def words(page: str) -> str:
    return html.unescape(page).replace("\u00a0", " ")


def test_inbox_names_residents_says_ages_and_keeps_its_filters(console: Console) -> None:
    old = raised("h-5001", 1, "low_battery", "warning", 26 * 3600 + 60, battery=9)
    fall = raised("h-5001", 2, "fall", "critical", 12 * 60 + 5, peak_g=3.4, posture="lying")
    slow = raised("h-5002", 3, "inactivity", "high", 2 * 3600 + 5 * 60 + 5, inactive_min=125)
    nobody = raised("h-5003", 4, "fall", "critical", 3 * 60)  # no card in the directory
    send(console, old, fall, slow, nobody)
    client = console.client()
    assert sign_in(client) == 303
    page = words(client.get("/?home=h-5001").text)
    assert "Mme Jeanne Martin" in card_of(page, fall["id"])
    assert "il y a 12 min (" in card_of(page, fall["id"])
    assert re.search(r"il y a 26 h 01 · (hier|\d\d/\d\d) \d\d:\d\d", card_of(page, old["id"]))
    assert slow["id"] not in page  # another home, filtered out
    assert 'href="/annuaire"' in page
    assert 'href="/statistiques"' in page
    every = words(client.get("/").text)
    assert "logement h-5003" in card_of(every, nobody["id"])  # no card: the home's id
    assert "il y a 2 h 05" in card_of(every, slow["id"])
    # nobody has taken them: most severe first, then the oldest
    order = [every.index(f'id="alert-{a["id"]}"') for a in (fall, nobody, slow, old)]
    assert order == sorted(order)
    english = words(client.get("/?home=h-5001&lang=en").text)
    assert "12 min ago (" in card_of(english, fall["id"])
    # the partial refresh keeps the filters; a value nobody knows is dropped
    partial = client.get("/inbox/partial?home=h-5002&type=inactivity").text
    assert slow["id"] in partial
    assert fall["id"] not in partial
    assert fall["id"] in client.get("/inbox/partial?type=bogus&home=h-5001").text
    none = words(client.get("/?home=h-5002&type=fall&lang=fr").text)
    assert "Aucune alerte ne correspond à ces filtres (M. Louis Petit, Chute détectée)." in none
    assert "No alert matches these filters" in client.get("/?home=h-5002&type=fall&lang=en").text


def test_an_action_shows_at_once_and_returns_to_the_filtered_inbox(console: Console) -> None:
    sos = raised("h-5011", 11, "sos", "critical", 60, button="single")
    leak = raised("h-5011", 12, "water_leak", "warning", 90, wet=True)
    send(console, sos, leak)
    client = console.client()
    assert sign_in(client) == 303
    token = CSRF_RE.search(client.get("/").text).group(1)  # type: ignore[union-attr]
    back = "/?home=h-5011"
    resp = client.post(
        f"/alerts/{sos['id']}/ack", data={"csrf": token, "back": back}, follow_redirects=False
    )
    assert (resp.status_code, resp.headers["location"]) == (303, back)
    card = card_of(client.get(back).text, sos["id"])  # the home has not answered yet
    assert 'data-state="acknowledged"' in card
    assert 'data-pending="yes"' in card
    assert 'class="ack"' not in card
    assert "(alice)" in card
    # another console process on the same store shows it too
    other = TestClient(
        create_console_app(console.receiver, staff_password=PASSWORD, state=console.state),
        base_url="http://testserver",
    )
    assert sign_in(other) == 303
    assert 'class="ack"' not in card_of(other.get("/").text, sos["id"])
    # taken cards go below the ones nobody has taken
    page = client.get(back).text
    assert page.index(f'id="alert-{leak["id"]}"') < page.index(f'id="alert-{sos["id"]}"')
    client.post(f"/alerts/{leak['id']}/resolve", data={"csrf": token, "note": "Sèche"})
    card = card_of(client.get("/").text, leak["id"])
    assert 'data-state="resolved"' in card
    assert "<form" not in card
    # the home confirms: its own state, the console forgets its action
    publish(
        console.broker.port, "veille/v1/h-5011/alert", _encode({**sos, "state": "acknowledged"})
    )
    wait_for(lambda: console.store.alert(sos["id"])["state"] == "acknowledged")  # type: ignore[index]
    card = card_of(client.get(back).text, sos["id"])
    assert 'data-state="acknowledged"' in card
    assert "data-pending" not in card
    assert sos["id"] not in console.state.actions(0)
    closed = client.get("/?state=closed&home=h-5011").text
    assert leak["id"] in closed
    assert sos["id"] not in closed


def test_an_expired_session_keeps_the_typed_note_through_sign_in(console: Console) -> None:
    warn = raised("h-5021", 21, "low_battery", "warning", 120, battery=7)
    fall = raised("h-5021", 22, "fall", "critical", 100, peak_g=2.9)
    send(console, warn, fall)
    client = console.client()
    assert sign_in(client) == 303
    token = CSRF_RE.search(client.get("/").text).group(1)  # type: ignore[union-attr]
    cookie = client.cookies[SESSION_COOKIE]
    client.post("/logout", data={"csrf": token})
    client.cookies.set(
        SESSION_COOKIE, cookie, domain="testserver.local", path="/"
    )  # the old cookie: it opens nothing any more
    note = "Pile changée par la voisine, « ça va » répondu"
    resp = client.post(
        f"/alerts/{warn['id']}/resolve", data={"csrf": token, "note": note}, follow_redirects=False
    )
    assert resp.status_code == 303
    assert resp.headers["location"] == f"/login?next=/alerts/{warn['id']}&why=expired"
    assert DRAFT_COOKIE in resp.cookies
    login = words(client.get(resp.headers["location"]).text)
    assert "Votre session a expiré" in login
    assert "Votre note est gardée" in login
    resp = client.post(
        "/login",
        data={"name": STAFF, "password": PASSWORD, "next": f"/alerts/{warn['id']}"},
        follow_redirects=False,
    )
    assert resp.headers["location"] == f"/alerts/{warn['id']}"
    page = client.get(resp.headers["location"]).text
    assert f">{html.escape(note)}</textarea>" in page
    assert 'id="draft-kept"' in page
    assert 'id="draft-kept"' not in client.get(f"/alerts/{warn['id']}").text  # shown once
    # the closing form of a critical alert: note and outcome kept, back to that form
    token = CSRF_RE.search(page).group(1)  # type: ignore[union-attr]
    client.cookies.set(SESSION_COOKIE, cookie, domain="testserver.local", path="/")
    resp = client.post(
        f"/alerts/{fall['id']}/close",
        data={"csrf": token, "outcome": "false_alarm", "note": "Tombée du lit, sans mal"},
        follow_redirects=False,
    )
    assert resp.headers["location"].startswith(f"/login?next=/alerts/{fall['id']}/close")
    assert sign_in(client) == 303
    form = client.get(f"/alerts/{fall['id']}/close").text
    assert 'value="false_alarm" required checked' in form
    assert "Tombée du lit, sans mal" in form
    # a form from elsewhere (no CSRF token) keeps nothing; an action's address is a page
    client.cookies.clear()
    resp = client.post(f"/alerts/{warn['id']}/resolve", data={"note": "x"}, follow_redirects=False)
    assert resp.status_code == 303
    assert DRAFT_COOKIE not in resp.cookies
    assert sign_in(client) == 303
    resp = client.get(f"/alerts/{warn['id']}/resolve", follow_redirects=False)
    assert (resp.status_code, resp.headers["location"]) == (303, f"/alerts/{warn['id']}")


def test_the_alert_page_gives_evidence_card_and_context(console: Console) -> None:
    earlier = raised("h-5001", 31, "night_exit", "high", 3 * 86400, out_min=45)
    fall = raised(
        "h-5001", 32, "fall", "critical", 300, peak_g=3.4, posture="lying", movement_resumed=False
    )
    send(console, earlier, fall)
    client = console.client()
    assert sign_in(client) == 303
    page = words(client.get(f"/alerts/{fall['id']}").text)
    evidence = page[page.index('id="evidence"') :]
    for fact in ("choc de 3,4 g", "personne allongée", "aucun mouvement ensuite"):
        assert f"<li>{fact}</li>" in evidence
    card = page[page.index('id="directory-card"') :]
    assert "12 rue des Lilas" in card
    assert "Boîte à clés" in card
    assert "Famille" in card
    assert 'href="tel:06 12 34 56 78"' in card
    recent = page[page.index('id="recent"') :]
    assert "Sortie nocturne sans retour" in recent
    english = words(client.get(f"/alerts/{fall['id']}?lang=en").text)
    assert "impact of 3.4 g" in english
    assert "Family" in english
    assert client.get("/alerts/0190b000-0000-7000-8000-999999999999").status_code == 404


def test_the_link_page_speaks_english_to_an_english_phone(console: Console) -> None:
    fall = raised("h-5001", 41, "fall", "critical", 30, peak_g=3.1)
    send(console, fall)
    signer = LinkSigner(console.links.key())
    link = f"/lien/{signer.token(fall['id'], 'astreinte', time.time())}"
    phone = TestClient(console.app, base_url="http://testserver")
    english = {"accept-language": "en-GB,en;q=0.8"}
    page = words(phone.get(link, headers=english).text)
    assert "Fall detected at Mme Jeanne Martin's home" in page
    assert "I take this alert in charge" in page
    assert "Severity: critical" in page
    french = words(phone.get(link).text)
    assert "Je prends en charge cette alerte" in french
    assert "Gravité : critique" in french
    done = words(phone.post(link, headers=english).text)
    assert "Done: you have taken the alert in charge" in done
    assert "Family" in done
    assert "This link has already been used." in phone.get(link, headers=english).text
    stale = signer.token(fall["id"], "astreinte", time.time() - 2 * signer.ttl_s)
    assert "This link has expired." in phone.get(f"/lien/{stale}?lang=en").text
