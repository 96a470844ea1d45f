"""No input stops the hub: total validation, a receiver that outlives any message, stored
rows that can never stop the hub starting or a console page answering.

The poison corpus below holds every payload of issue 10 and more; each one is refused by
`validate_message` with a ContractError (never another exception), and the real receiver on
a real Mosquitto, fed the whole corpus by one home, keeps storing and receipting another
home's SOS, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_bridge.broker import parse_broker_url
from cloud_bridge.console import create_console_app
from cloud_bridge.contract import ContractError, HomeId, encode, iso_utc, validate_message
from cloud_bridge.hub import HomeBudget, HubReceiver
from cloud_bridge.hub_store import HubStore, SqliteHubStore
from cloud_bridge.stores import open_store
from tests.support import Collector, Mosquitto, publish
from tests.test_console import PASSWORD, STAFF, sign_in

GOOD_HOME, BAD_HOME = "h-good", "h-poison"


def alert(home: str, n: int, **changes: Any) -> dict[str, Any]:
    at = time.time() - 60 + n
    payload: dict[str, Any] = {
        "schema": "veille.alert/1",
        "id": f"0190a000-0000-7000-8000-{n:012d}",
        "home_id": home,
        "type": "sos",
        "severity": "critical",
        "state": "raised",
        "at": iso_utc(at),
        "raised_at": iso_utc(at),
        "room": "entrance",
        "device_id": "sos-1",
        "evidence": {"button": "single"},
    }
    payload.update(changes)
    return payload


def raw(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def with_text(payload: dict[str, Any], old: str, new: str) -> bytes:
    """The payload's JSON text with `old` replaced by `new` (for what json.dumps cannot write)."""
    text = raw(payload).decode()
    assert old in text
    return text.replace(old, new, 1).encode("utf-8", "surrogatepass")


def hourly(home: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema": "veille.aggregate.hourly/1",
        "home_id": home,
        "period_start": "2026-03-01T10:00:00.000Z",
        "period_end": "2026-03-01T11:00:00.000Z",
        "rooms": {"kitchen": {"activity": 3, "door_openings": 0, "bed_min": 0}},
        "totals": {"activity": 3, "door_openings": 0, "entrance_openings": 0},
        "sensor_health": {"devices": 3, "offline": 0, "low_battery": 0, "unknown_devices": 0},
    }
    body.update(changes)
    return body


def status(home: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schema": "veille.status/1",
        "home_id": home,
        "online": True,
        "at": "2026-03-01T10:00:00.000Z",
        "version": "0.1.0",
        "health": "ok",
        "time_synced": True,
        "outbox": {"alerts": 0, "aggregates": 2, "bytes": 900, "dropped_aggregates": 0},
    }
    body.update(changes)
    return body


def poison(home: str) -> list[tuple[str, str, bytes]]:
    """(name, topic leaf, payload) of every message the hub must refuse."""
    a = alert(home, 900)
    deep = "[" * 30_000 + "]" * 30_000
    return [
        ("deep array 30,000", "alert", deep.encode()),
        ("deep array in evidence", "alert", with_text(a, '{"button":"single"}', deep[:9000])),
        ("deep object", "alert", ('{"a":' * 5000 + "1" + "}" * 5000).encode()),
        ("lone surrogate in room", "alert", with_text(a, '"entrance"', '"\\udc80"')),
        ("raw surrogate bytes", "alert", with_text(a, '"entrance"', '"\udc80"')),
        ("NUL in room", "alert", with_text(a, '"entrance"', '"a\\u0000b"')),
        ("NUL in an evidence key", "alert", with_text(a, '"button"', '"b\\u0000"')),
        ("NaN score", "alert", with_text(a, '"single"', "NaN")),
        ("Infinity", "alert", with_text(a, '"single"', "Infinity")),
        ("-Infinity", "alert", with_text(a, '"single"', "-Infinity")),
        ("1e999", "alert", with_text(a, '"single"', "1e999")),
        ("400-digit int in evidence", "alert", with_text(a, '"single"', "9" * 400)),
        ("5000-digit int", "alert", with_text(a, '"single"', "9" * 5000)),
        ("impossible date", "alert", raw(alert(home, 901, raised_at="2026-99-99T99:99:99Z"))),
        ("30 February", "alert", raw(alert(home, 902, at="2026-02-30T10:00:00Z"))),
        ("date with a newline", "alert", raw(alert(home, 903, at="2026-02-03T10:00:00Z\n"))),
        ("date in Arabic digits", "alert", raw(alert(home, 904, at="٢٠٢٦-02-03T10:00:00Z"))),
        ("unknown field", "alert", raw(alert(home, 905, extra=1))),
        ("bad UTF-8", "alert", with_text(a, '"entrance"', '"\xff"').replace(b"\xc3\xbf", b"\xff")),
        ("not JSON", "alert", b"{not json"),
        ("empty", "alert", b""),
        ("a JSON array", "alert", b"[1,2,3]"),
        ("too large", "alert", raw(alert(home, 906, evidence={"x": "a" * 20_000}))),
        ("evidence too large", "alert", raw(alert(home, 907, evidence={"x": "a" * 3000}))),
        ("sample stream", "alert", raw(alert(home, 908, evidence={"acc": list(range(100))}))),
        ("bool as a count", "aggregate/hourly", raw(hourly(home, totals={"activity": True}))),
        (
            "400-digit aggregate",
            "aggregate/hourly",
            with_text(hourly(home), '"activity":3,"door', '"activity":' + "9" * 400 + ',"door'),
        ),
        (
            "NaN in aggregate",
            "aggregate/hourly",
            with_text(hourly(home), '"bed_min":0', '"bed_min":NaN'),
        ),
        ("unknown aggregate field", "aggregate/hourly", raw(hourly(home, raw_samples=[1]))),
        ("home id of another home", "alert", raw(alert(GOOD_HOME, 909))),
        ("bad schema", "alert", raw(alert(home, 910, schema="veille.alert/2"))),
        ("alert on the status topic", "status", raw(alert(home, 911))),
        ("receipt from a home", "receipt", b'{"schema":"veille.receipt/1"}'),
        ("status outbox not counts", "status", raw(status(home, outbox={"a": [[[1]]]}))),
        ("status version too long", "status", raw(status(home, version="v" * 500))),
        ("status at 25:00", "status", raw(status(home, at="2026-03-01T25:00:00Z"))),
    ]


CORPUS = poison(BAD_HOME)
UPSTREAM = [c for c in CORPUS if c[1] != "receipt"]  # what a receiver subscribes to


@pytest.mark.parametrize(("name", "leaf", "payload"), CORPUS, ids=[c[0] for c in CORPUS])
def test_the_contract_refuses_every_poison_payload(name: str, leaf: str, payload: bytes) -> None:
    with pytest.raises(ContractError):
        validate_message(f"veille/v1/{BAD_HOME}/{leaf}", payload)


def test_the_contract_still_takes_good_messages() -> None:
    leaf, payload = validate_message(f"veille/v1/{GOOD_HOME}/alert", raw(alert(GOOD_HOME, 1)))
    assert leaf == "alert"
    assert payload["evidence"] == {"button": "single"}
    exact = alert(GOOD_HOME, 2, at="2026-02-28T23:59:59.999999Z", evidence={"score": 0.97})
    assert validate_message(f"veille/v1/{GOOD_HOME}/alert", raw(exact))[1]["evidence"]["score"]
    assert validate_message(f"veille/v1/{GOOD_HOME}/aggregate/hourly", raw(hourly(GOOD_HOME)))
    assert validate_message(f"veille/v1/{GOOD_HOME}/status", raw(status(GOOD_HOME)))
    HomeId(GOOD_HOME)


def test_home_budget_spends_and_refills() -> None:
    """The pure per-home budget: a burst, then the rate; homes do not share it."""
    budget = HomeBudget(burst=3, rate_per_s=1.0, burst_bytes=1000, bytes_per_s=100)
    assert [budget.take("a", 10, 0.0) for _ in range(4)] == [True, True, True, False]
    assert budget.take("b", 10, 0.0), "another home has its own budget"
    assert budget.take("a", 10, 1.0), "one message a second comes back"
    assert not budget.take("a", 10, 1.0)
    assert not budget.take("c", 2000, 0.0), "bigger than the byte budget"


# --- the real receiver --------------------------------------------------------------------


def wait_for(cond: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_poison_from_one_home_never_stops_the_receiver(
    hub_broker: Mosquitto, spec: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Home h-poison sends the whole corpus, home h-good's SOS goes through before, between
    and after: every SOS is stored and receipted, nothing of the poison is stored, each bad
    message is counted once, and the receiver's thread and health stay up."""
    store = open_store(spec)
    hub = HubReceiver(parse_broker_url(hub_broker.url), store, client_id="hub-poison")
    hub.start()
    assert hub.wait_connected()
    receipts = Collector(hub_broker.port, f"veille/v1/{GOOD_HOME}/receipt")
    try:
        publish(hub_broker.port, f"veille/v1/{GOOD_HOME}/alert", raw(alert(GOOD_HOME, 1)))
        for i, (_name, leaf, payload) in enumerate(UPSTREAM):
            publish(hub_broker.port, f"veille/v1/{BAD_HOME}/{leaf}", payload)
            if i == len(UPSTREAM) // 2:
                publish(hub_broker.port, f"veille/v1/{GOOD_HOME}/alert", raw(alert(GOOD_HOME, 2)))
        publish(hub_broker.port, f"veille/v1/{GOOD_HOME}/alert", raw(alert(GOOD_HOME, 3)))
        assert wait_for(lambda: len(store.alerts()) >= 3 and hub.rejected >= len(UPSTREAM))
        got = receipts.drain(1.0)
        health = hub.health()
    finally:
        receipts.close()
        hub.stop()
    ids = sorted(a["id"] for a in store.alerts())
    store.close()
    print(
        f"\npoison: {len(UPSTREAM)} bad messages, rejected {hub.rejected}, failed {hub.failed}, "
        f"good SOS stored {len(ids)} of 3, receipts {len(got)}"
    )
    assert ids == [alert(GOOD_HOME, n)["id"] for n in (1, 2, 3)]
    assert hub.rejected == len(UPSTREAM)
    assert hub.failed == 0
    assert sorted(i for _t, p, _r in got for i in json.loads(p)["ids"]) == ids
    assert health["ok"]
    assert health["thread"]
    assert not any("Traceback" in r.getMessage() for r in caplog.records)


def test_over_budget_a_home_is_dropped_and_others_pass(
    hub_broker: Mosquitto, tmp_path: Path
) -> None:
    """A flood from one home past its budget is dropped before it is parsed; another home's
    alert still goes through (and the flooding home's alerts are resent by its uplink)."""
    store = SqliteHubStore(tmp_path / "hub.db")
    budget = HomeBudget(burst=5, rate_per_s=0.01)
    hub = HubReceiver(parse_broker_url(hub_broker.url), store, client_id="hub-b", budget=budget)
    hub.start()
    assert hub.wait_connected()
    try:
        for n in range(20):
            publish(hub_broker.port, f"veille/v1/{BAD_HOME}/alert", raw(alert(BAD_HOME, 100 + n)))
        publish(hub_broker.port, f"veille/v1/{GOOD_HOME}/alert", raw(alert(GOOD_HOME, 1)))
        assert wait_for(lambda: store.alert(alert(GOOD_HOME, 1)["id"]) is not None)
        assert wait_for(lambda: hub.limited == 15)
    finally:
        hub.stop()
    assert len(store.alerts(home_id=BAD_HOME)) == 5
    store.close()


# --- rows already stored --------------------------------------------------------------------


BAD_ROWS = [
    ("2026-99-99T99:99:99Z", '{"score": NaN}'),
    ("not a date", '{"inactive_min": ' + "9" * 400 + "}"),
    ("2026-02-30T00:00:00Z", '{"score": Infinity, "peak_g": -Infinity}'),
    ("2026-03-01T00:00:00Z", '{"room": "a\\u0000\\udc80"}'),
    ("2026-03-01T00:00:00Z", '{"deep": ' + "[" * 30_000 + "]" * 30_000 + "}"),
    ("2026-03-01T00:00:00Z", "not json at all"),
]


def plant_bad_rows(path: Path) -> None:
    """Rows as an older hub (without total validation) could have stored them."""
    store = SqliteHubStore(path)
    store.close()
    import sqlite3

    db = sqlite3.connect(path)
    for n, (raised, evidence) in enumerate(BAD_ROWS):
        db.execute(
            "INSERT INTO alerts(id, home_id, type, severity, state, raised_at, at, room,"
            " device_id, evidence) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                f"0190bad0-0000-7000-8000-{n:012d}",
                BAD_HOME,
                "fall",
                "critical",
                "raised",
                raised,
                raised,
                "chambre",
                None,
                evidence,
            ),
        )
    db.execute(
        "INSERT INTO aggregates(home_id, schema, period_start, body) VALUES (?,?,?,?)",
        (
            BAD_HOME,
            "veille.aggregate.daily/1",
            "2026-03-01T00:00:00Z",
            '{"date": "2026-03-01", "rooms": {"k": {"activity": NaN}}, "time_in_bed_min": '
            + "9" * 400
            + ', "get_up": "07:00"}',
        ),
    )
    db.execute(
        "INSERT INTO statuses(home_id, online, body, received_at) VALUES (?,?,?,?)",
        (BAD_HOME, 0, '{"home_id": "h-poison", "online": false, "outbox": NaN}', time.time()),
    )
    db.commit()
    db.close()


def test_bad_stored_rows_never_stop_the_hub_nor_a_console_page(
    hub_broker: Mosquitto, tmp_path: Path
) -> None:
    plant_bad_rows(tmp_path / "hub.db")
    store: HubStore = SqliteHubStore(tmp_path / "hub.db")
    hub = HubReceiver(
        parse_broker_url(hub_broker.url), store, client_id="hub-rows", escalate_after_s=1
    )
    assert len(hub.escalate_due(time.time())) >= 3  # the readable dates escalate, no raise
    hub.start()
    assert hub.wait_connected()
    pw = tmp_path / "staff.txt"
    pw.write_text(f"{STAFF}:{PASSWORD}\n")
    try:
        with TestClient(create_console_app(hub, staff_password_file=pw)) as client:
            assert sign_in(client) in (302, 303)
            for path in ("/", "/inbox/partial", "/api/alerts", f"/homes/{BAD_HOME}"):
                resp = client.get(path)
                assert resp.status_code == 200, (path, resp.text[-500:])
            assert client.get("/health").status_code == 200
    finally:
        hub.stop()
        store.close()


def test_hub_health_is_503_once_the_receiver_link_is_gone(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "hub").start()
    store = SqliteHubStore(tmp_path / "hub.db")
    hub = HubReceiver(parse_broker_url(broker.url), store, client_id="hub-health")
    hub.start()
    assert hub.wait_connected()
    pw = tmp_path / "staff.txt"
    pw.write_text(f"{STAFF}:{PASSWORD}\n")
    try:
        with TestClient(create_console_app(hub, staff_password_file=pw)) as client:
            assert client.get("/health").status_code == 200
            broker.stop()
            assert wait_for(lambda: client.get("/health").status_code == 503, 10)
            broker.start()
            assert wait_for(lambda: client.get("/health").status_code == 200, 30)
            hub.stop()  # the network thread ends
            assert client.get("/health").status_code == 503
            assert client.get("/health").json()["thread"] is False
    finally:
        hub.stop()
        broker.stop()
        store.close()


def test_alert_payload_is_compact_json() -> None:
    assert b" " not in encode(alert(GOOD_HOME, 1))


def test_a_retained_alert_is_not_stored_but_a_retained_status_is(
    hub_broker: Mosquitto, tmp_path: Path
) -> None:
    """Only `status` is retained by the contract: a retained alert (that a broker replays to
    every new plain subscriber, an MQTT 3.1.1 receiver's) is dropped and counted; a retained
    status is kept."""
    status = {
        "schema": "veille.status/1",
        "home_id": GOOD_HOME,
        "online": True,
        "at": iso_utc(time.time()),
    }
    publish(hub_broker.port, f"veille/v1/{GOOD_HOME}/status", raw(status), retain=True)
    store = SqliteHubStore(tmp_path / "hub.db")
    hub = HubReceiver(parse_broker_url(hub_broker.url), store, client_id="hub-retain")
    hub.start()
    try:
        assert hub.wait_connected()
        assert wait_for(lambda: len(store.statuses()) == 1)
        hub._handle(f"veille/v1/{BAD_HOME}/alert", raw(alert(BAD_HOME, 7)), True)
        assert hub.rejected == 1
        hub._handle(f"veille/v1/{BAD_HOME}/alert", raw(alert(BAD_HOME, 7)), False)
    finally:
        hub.stop()
    assert [a["id"] for a in store.alerts()] == [alert(BAD_HOME, 7)["id"]]
    store.close()


def test_veille_hub_starts_and_serves_over_bad_stored_rows(
    hub_broker: Mosquitto, tmp_path: Path
) -> None:
    """The real `veille hub` process on a store holding the rows above: it starts, runs its
    escalation round, stays up, and every console page answers (it used to exit, and
    crash-loop on restart because the row was loaded again)."""
    import httpx

    from tests.gateway_proc import STAFF_PASSWORD, HubProc

    plant_bad_rows(tmp_path / "hub.db")
    hub = HubProc(tmp_path / "proc", hub_broker.url, f"sqlite:///{tmp_path / 'hub.db'}")
    for _restart in range(2):
        hub.start()
        try:
            time.sleep(1.0)  # the first escalation round runs at start
            with httpx.Client(base_url=hub.url, timeout=10) as client:
                login = client.post("/login", data={"name": "alice", "password": STAFF_PASSWORD})
                assert login.status_code in (302, 303), login.text[-300:]
                for path in ("/", "/inbox/partial", "/api/alerts", f"/homes/{BAD_HOME}"):
                    assert client.get(path).status_code == 200, path
            assert hub.proc is not None
            assert hub.proc.poll() is None, hub.log()
        finally:
            assert hub.stop() == 0, hub.log()
    assert "Traceback" not in hub.log()


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evidence=st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=6))
def test_no_evidence_value_breaks_a_console_row(evidence: dict[str, Any]) -> None:
    """Whatever evidence the contract lets through, or a store hands back (sanitized), the
    console's row for it renders and its JSON can be written."""
    import datetime as dt

    from cloud_bridge.console import alert_row
    from cloud_bridge.contract import sanitized

    shown = [sanitized(evidence)]
    try:
        _leaf, accepted = validate_message(
            f"veille/v1/{GOOD_HOME}/alert", json.dumps(alert(GOOD_HOME, 1, evidence=evidence))
        )
        shown.append(accepted["evidence"])  # what the contract lets in, as it is
    except ContractError:
        pass
    for value in shown:
        for lang in ("fr", "en"):
            row = alert_row(alert(GOOD_HOME, 1, evidence=value), dt.UTC, lang, time.time())
            json.dumps(row, allow_nan=False)
