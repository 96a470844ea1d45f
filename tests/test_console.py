"""The care console against a real hub receiver on a real Mosquitto, with a real SQLite store."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud_bridge.broker import parse_broker_url
from cloud_bridge.console import create_console_app, inbox_order
from cloud_bridge.contract import encode, iso_utc, validate_ack
from cloud_bridge.errors import VeilleError
from cloud_bridge.hub import HubReceiver
from cloud_bridge.hub_store import SqliteHubStore
from tests.support import Collector, Mosquitto, publish
from tests.test_status_auth import all_routes, concrete

STAFF = "alice"
PASSWORD = "soins-2024-nuit"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/health")}
# the installable web app's files (console_pwa): fetched by browsers without cookies, no data
APP_FILES = {
    ("GET", p)
    for p in ("/manifest.webmanifest", "/sw.js", "/pwa.js", "/icons/{name}", "/hors-ligne")
}


def alert(home: str, n: int, type_: str, severity: str, **evidence: Any) -> dict[str, Any]:
    at = time.time() - 600 + n
    return {
        "schema": "veille.alert/1",
        "id": f"0190a000-0000-7000-8000-{n:012d}",
        "home_id": home,
        "type": type_,
        "severity": severity,
        "state": "raised",
        "at": iso_utc(at),
        "raised_at": iso_utc(at),
        "room": "bedroom",
        "device_id": None,
        "evidence": evidence,
    }


def daily(home: str, day: int) -> dict[str, Any]:
    start = 1_717_200_000 + day * 86400
    return {
        "schema": "veille.aggregate.daily/1",
        "home_id": home,
        "period_start": iso_utc(start),
        "period_end": iso_utc(start + 86400),
        "date": time.strftime("%Y-%m-%d", time.gmtime(start)),
        "rooms": {"kitchen": {"activity": 40 + day, "door_openings": 3}},
        "sensor_health": {"devices": 3, "offline": 0, "low_battery": 0, "unknown_devices": 0},
        "get_up": "07:30",
        "bed_time": "22:10",
        "time_in_bed_min": 540,
        "time_out_min": 30,
        "night_bathroom_visits": 1,
        "compare": {},
    }


@dataclass
class Hub:
    receiver: HubReceiver
    store: SqliteHubStore
    client: TestClient
    app: Any
    port: int


def wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met")


@pytest.fixture
def hub(hub_broker: Mosquitto, tmp_path: Path) -> Iterator[Hub]:
    store = SqliteHubStore(tmp_path / "hub.db")
    receiver = HubReceiver(parse_broker_url(hub_broker.url), store, escalate_after_s=60)
    receiver.start()
    assert receiver.wait_connected(10)
    pw = tmp_path / "staff.txt"
    pw.write_text(f"# staff\n{STAFF}:{PASSWORD}\nbob:autre-mot-de-passe\n")
    app = create_console_app(receiver, staff_password_file=pw)
    with TestClient(app, base_url="http://testserver") as client:
        yield Hub(receiver, store, client, app, hub_broker.port)
    receiver.stop()
    store.close()


def sign_in(client: TestClient, name: str = STAFF, password: str = PASSWORD) -> int:
    resp = client.post("/login", data={"name": name, "password": password}, follow_redirects=False)
    return resp.status_code


def send(hub: Hub, topic_leaf: str, payload: dict[str, Any]) -> None:
    publish(hub.port, f"veille/v1/{payload['home_id']}/{topic_leaf}", encode(payload))


def test_console_refuses_to_start_without_staff_credentials(tmp_path: Path) -> None:
    with pytest.raises(VeilleError, match="staff"):
        create_console_app(object(), staff_password_file=None)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nobody yet\n")
    with pytest.raises(VeilleError, match="staff"):
        create_console_app(object(), staff_password_file=empty)


def test_every_console_route_needs_a_staff_session(hub: Hub) -> None:
    routes = all_routes(hub.app)
    assert len(routes) >= 10
    anonymous = TestClient(hub.app, base_url="http://testserver")
    for method, path in routes:
        if (method, path) in PUBLIC | APP_FILES:
            continue
        resp = anonymous.request(method, concrete(path), follow_redirects=False)
        expected = 401 if path.startswith("/api/") else 303
        assert resp.status_code == expected, (method, path, resp.status_code)
    assert anonymous.get("/health").status_code == 200
    assert anonymous.get("/login").status_code == 200
    assert anonymous.get("/icons/icon-192.png").status_code == 200
    assert anonymous.get("/icons/other.png").status_code == 404
    offline = anonymous.get("/hors-ligne")
    assert "Console injoignable" in offline.text
    assert "<form" not in offline.text  # nothing of a session in the page the worker keeps


def test_wrong_staff_password_is_refused(hub: Hub) -> None:
    assert sign_in(hub.client, STAFF, "nope") == 401
    assert sign_in(hub.client, "bob", PASSWORD) == 401  # alice's password is not bob's
    assert hub.client.get("/", follow_redirects=False).status_code == 303
    assert sign_in(hub.client) == 303
    assert hub.client.get("/").status_code == 200


def test_inbox_most_severe_first_with_plain_words_and_context(hub: Hub) -> None:
    send(hub, "alert", alert("h-0001", 1, "low_battery", "warning", battery=9))
    send(
        hub,
        "alert",
        alert("h-0002", 2, "fall", "critical", peak_g=3.4, posture="lying", movement_resumed=False),
    )
    send(hub, "alert", alert("h-0001", 3, "inactivity", "high", inactive_min=212, usual_max_min=95))
    for day in range(3):
        send(hub, "aggregate/daily", daily("h-0002", day))
    wait_for(lambda: len(hub.store.alerts(open_only=True)) == 3)
    wait_for(lambda: len(hub.store.aggregates("h-0002", "veille.aggregate.daily/1")) == 3)
    assert sign_in(hub.client) == 303
    page = html.unescape(hub.client.get("/").text)
    order = [page.index(word) for word in ("Chute détectée", "Inactivité", "Pile faible")]
    assert order == sorted(order)
    words = page.replace("\u00a0", " ")
    assert "choc de 3,4 g, personne allongée, aucun mouvement ensuite" in words
    assert "aucun mouvement depuis 212 min" in words
    assert "42 signes d'activité, premier lever à 07:30" in page  # the home's last daily summary
    data = hub.client.get("/api/alerts").json()
    assert [a["type"] for a in data["alerts"]] == ["fall", "inactivity", "low_battery"]


def test_acknowledge_and_resolve_publish_acks_to_the_home(hub: Hub) -> None:
    payload = alert("h-0003", 7, "sos", "critical", button="single")
    acks = Collector(hub.port, "veille/v1/+/ack")
    try:
        send(hub, "alert", payload)
        wait_for(lambda: hub.store.alert(payload["id"]) is not None)
        assert sign_in(hub.client) == 303
        token = CSRF_RE.search(hub.client.get("/").text).group(1)  # type: ignore[union-attr]
        url = f"/alerts/{payload['id']}/ack"
        assert hub.client.post(url, data={"csrf": "bad"}, follow_redirects=False).status_code == 403
        assert acks.drain(0.3) == []
        resp = hub.client.post(url, data={"csrf": token}, follow_redirects=False)
        assert resp.status_code == 303
        topic, raw, _ = acks.get(5)
        ack = json.loads(raw)
        validate_ack(ack)
        assert topic == "veille/v1/h-0003/ack"
        assert (ack["alert_id"], ack["action"], ack["by"]) == (payload["id"], "acknowledged", STAFF)
        assert hub.store.alert(payload["id"])["handled_by"] == STAFF  # type: ignore[index]
        # the home answers with the acknowledged state; the inbox shows it
        send(hub, "alert", {**payload, "state": "acknowledged", "at": iso_utc(time.time())})
        wait_for(lambda: hub.store.alert(payload["id"])["state"] == "acknowledged")  # type: ignore[index]
        assert "pris en charge" in hub.client.get("/").text
        resp = hub.client.post(
            f"/alerts/{payload['id']}/resolve",
            data={"csrf": token, "note": "Voisine passée, tout va bien"},
            follow_redirects=False,
        )
        assert resp.status_code == 303
        _topic, raw, _ = acks.get(5)
        ack = json.loads(raw)
        assert (ack["action"], ack["note"]) == ("resolved", "Voisine passée, tout va bien")
    finally:
        acks.close()
    unknown = hub.client.post("/alerts/nope/ack", data={"csrf": token}, follow_redirects=False)
    assert unknown.status_code == 404


def test_escalated_alerts_are_marked_and_offline_gateways_listed(hub: Hub) -> None:
    payload = alert("h-0004", 9, "inactivity", "high", inactive_min=180)
    send(hub, "alert", payload)
    send(hub, "status", {"schema": "veille.status/1", "home_id": "h-0005", "online": False})
    wait_for(lambda: hub.store.alert(payload["id"]) is not None)
    wait_for(lambda: any(s["home_id"] == "h-0005" for s in hub.store.statuses()))
    escalated = hub.receiver.escalate_due(time.time())  # raised 10 min ago, delay 60 s
    assert [a["id"] for a in escalated] == [payload["id"]]
    assert sign_in(hub.client) == 303
    page = hub.client.get("/").text
    assert "Relancée" in page
    assert 'id="offline"' in page
    assert "h-0005" in page.split('id="offline"')[1]


def test_home_page_plots_the_weeks(hub: Hub) -> None:
    for day in range(20):
        send(hub, "aggregate/daily", daily("h-0006", day))
    wait_for(lambda: len(hub.store.aggregates("h-0006", "veille.aggregate.daily/1")) == 20)
    assert sign_in(hub.client) == 303
    page = hub.client.get("/homes/h-0006").text
    assert page.count('class="bar"') == 20
    assert "<svg" in page


@pytest.mark.parametrize(
    ("alerts", "expected"),
    [
        (
            [
                {"id": "a", "severity": "warning", "raised_at": "2024-01-01T00:00:00Z"},
                {"id": "b", "severity": "critical", "raised_at": "2024-01-02T00:00:00Z"},
                {"id": "c", "severity": "critical", "raised_at": "2024-01-01T00:00:00Z"},
            ],
            ["c", "b", "a"],
        ),
        (
            [
                {"id": "a", "severity": "high", "raised_at": "2024-01-01T00:00:00Z"},
                {
                    "id": "b",
                    "severity": "high",
                    "raised_at": "2024-01-02T00:00:00Z",
                    "escalated": True,
                },
            ],
            ["b", "a"],
        ),
    ],
)
def test_inbox_order_table(alerts: list[dict[str, Any]], expected: list[str]) -> None:
    assert [a["id"] for a in sorted(alerts, key=inbox_order)] == expected
