"""The hub store: the same tests on SQLite (single machine) and PostgreSQL (across machines).

Like tinydb's `params=['memory', 'json']`, every test runs on both stores: SQLite on a real
file, PostgreSQL on a throwaway Debian server started on loopback for this module. The
last tests share one store between two real `HubReceiver`s fed by a real Mosquitto through
the `$share/hub/` subscription.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from cloud_bridge.broker import parse_broker_url
from cloud_bridge.contract import aggregate_topic, alert_topic, encode, iso_utc
from cloud_bridge.hub import HubReceiver
from cloud_bridge.hub_store import Batch, HubStore, SqliteHubStore
from cloud_bridge.hub_store_pg import PostgresHubStore
from cloud_bridge.stores import open_store
from tests.pg import Postgres
from tests.support import Mosquitto

T0 = 1_717_200_000.0
HEALTH = {"devices": 3, "offline": 0, "low_battery": 0, "unknown_devices": 0}


@pytest.fixture
def store(spec: str) -> Iterator[HubStore]:
    opened = open_store(spec)
    try:
        yield opened
    finally:
        opened.close()


def alert(n: int, state: str = "raised", *, home: str = "h-0001", at_s: float = 0.0,
          **evidence: Any) -> dict[str, Any]:  # fmt: skip
    raised = T0 + n * 60
    return {
        "schema": "veille.alert/1",
        "id": f"0190a000-0000-7000-8000-{n:012d}",
        "home_id": home,
        "type": "inactivity",
        "severity": "high",
        "state": state,
        "at": iso_utc(raised + at_s),
        "raised_at": iso_utc(raised),
        "room": "living",
        "device_id": None,
        "evidence": evidence or {"inactive_min": 212, "usual_max_min": 95},
    }


def hourly(home: str, hour: int) -> dict[str, Any]:
    start = T0 + hour * 3600
    return {
        "schema": "veille.aggregate.hourly/1",
        "home_id": home,
        "period_start": iso_utc(start),
        "period_end": iso_utc(start + 3600),
        "rooms": {"kitchen": {"activity": hour, "door_openings": 1, "bed_min": 0.5}},
        "totals": {"activity": hour, "door_openings": 1, "entrance_openings": 0},
        "sensor_health": HEALTH,
    }


def status(home: str, online: bool, at: float) -> dict[str, Any]:
    return {
        "schema": "veille.status/1",
        "home_id": home,
        "online": online,
        "at": iso_utc(at),
        "health": "ok",
    }


def test_open_store_picks_the_backend(spec: str) -> None:
    opened = open_store(spec)
    try:
        wanted = SqliteHubStore if spec.startswith("sqlite") else PostgresHubStore
        assert type(opened) is wanted
    finally:
        opened.close()


def test_a_redelivered_state_is_recorded_once(store: HubStore) -> None:
    payload = alert(1)
    assert store.record_alert(payload, T0 + 1) is True
    assert store.record_alert(payload, T0 + 2) is False
    assert store.state_count() == 1
    assert store.alerts() == [
        {
            **{k: v for k, v in payload.items() if k != "schema"},
            "escalated": False,
            "note": "",
            "handled_by": "",
        }
    ]
    assert store.alert(payload["id"]) == store.alerts()[0]
    assert store.alert("0190a000-0000-7000-8000-999999999999") is None


def test_state_only_moves_forward(store: HubStore) -> None:
    aid = alert(2)["id"]
    assert store.record_alert(alert(2, "raised"), T0)
    assert store.record_alert(alert(2, "resolved", at_s=300, resolved_by="staff"), T0 + 300)
    # a late `acknowledged` (rank 1) after `resolved` (rank 2) is logged, not applied
    assert store.record_alert(alert(2, "acknowledged", at_s=120), T0 + 301)
    got = store.alert(aid)
    assert got is not None
    assert (got["state"], got["at"]) == ("resolved", iso_utc(T0 + 2 * 60 + 300))
    assert got["evidence"] == {"resolved_by": "staff"}
    assert got["raised_at"] == iso_utc(T0 + 2 * 60)
    assert store.state_count() == 3
    assert store.record_alert(alert(2, "raised"), T0 + 400) is False


def test_an_escalation_is_recorded_and_never_undone(store: HubStore) -> None:
    """The gateway raises a growing silence again, more severe, under the same id."""
    first = {**alert(7), "severity": "warning"}
    worse = {**alert(7, at_s=3600), "severity": "critical"}
    assert store.record_alert(first, T0) is True
    assert store.record_alert(worse, T0 + 3600) is True
    assert store.record_alert(worse, T0 + 3601) is False  # redelivered: once
    assert store.record_alert(first, T0 + 3602) is False  # a late copy: no downgrade
    got = store.alert(first["id"])
    assert got is not None
    assert (got["state"], got["severity"], got["at"]) == ("raised", "critical", worse["at"])
    assert store.state_count() == 2


def test_a_later_state_arriving_first_keeps_its_place(store: HubStore) -> None:
    """Two receivers may store a home's `resolved` before its `raised`."""
    assert store.record_alert(alert(3, "cancelled", at_s=30), T0)
    assert store.record_alert(alert(3, "raised"), T0 + 1)
    got = store.alert(alert(3)["id"])
    assert got is not None
    assert (got["state"], got["at"], got["raised_at"]) == (
        "cancelled",
        iso_utc(T0 + 3 * 60 + 30),
        iso_utc(T0 + 3 * 60),
    )


def test_open_alerts_and_home_filter_newest_first(store: HubStore) -> None:
    store.record_alert(alert(10, home="h-0001"), T0)
    store.record_alert(alert(11, home="h-0002"), T0)
    store.record_alert(alert(12, home="h-0001"), T0)
    store.record_alert(alert(12, "acknowledged", home="h-0001", at_s=5), T0)
    store.record_alert(alert(13, home="h-0002"), T0)
    store.record_alert(alert(13, "resolved", home="h-0002", at_s=9), T0)
    ids = lambda rows: [r["id"][-2:] for r in rows]  # noqa: E731
    assert ids(store.alerts()) == ["13", "12", "11", "10"]
    assert ids(store.alerts(open_only=True)) == ["12", "11", "10"]
    assert ids(store.alerts(home_id="h-0002")) == ["13", "11"]
    assert ids(store.alerts(open_only=True, home_id="h-0002")) == ["11"]


def test_aggregates_once_per_period_oldest_first(store: HubStore) -> None:
    for hour in (3, 1, 2, 0):
        assert store.record_aggregate(hourly("h-0001", hour)) is True
    assert store.record_aggregate(hourly("h-0001", 2)) is False
    assert store.record_aggregate(hourly("h-0002", 2)) is True
    got = store.aggregates("h-0001", "veille.aggregate.hourly/1")
    assert got == [hourly("h-0001", h) for h in range(4)]
    assert store.aggregates("h-0001", "veille.aggregate.hourly/1", limit=2) == [
        hourly("h-0001", 2),
        hourly("h-0001", 3),
    ]
    assert store.aggregates("h-0001", "veille.aggregate.daily/1") == []


def test_statuses_latest_wins_sorted_by_home(store: HubStore) -> None:
    store.record_status(status("h-b", True, T0), T0 + 1)
    store.record_status(status("h-a", True, T0), T0 + 2)
    store.record_status(status("h-b", False, T0 + 60), T0 + 61)
    store.record_status(status("h-0", True, T0), T0 + 3)
    assert store.statuses() == [
        {**status("h-0", True, T0), "received_at": T0 + 3},
        {**status("h-a", True, T0), "received_at": T0 + 2},
        {**status("h-b", False, T0 + 60), "received_at": T0 + 61},
    ]


def test_one_batch_dedupes_and_escalates_as_messages_apart_would(store: HubStore) -> None:
    """One transaction holding a redelivery, an escalation, a resolution and a late
    acknowledgement of one alert: each state logged once, the alert ends resolved at the
    higher severity, and the late state never moves it back."""
    raised = alert(1)
    critical = {**alert(1, at_s=60), "severity": "critical"}
    resolved = {**alert(1, "resolved", at_s=120), "severity": "critical"}
    late_ack = {**alert(1, "acknowledged", at_s=90), "severity": "critical"}
    other = alert(2)
    batch = Batch(alerts=[raised, raised, critical, resolved, late_ack, other, other],
                  received_at=T0 + 5)  # fmt: skip
    assert store.record_batch(batch) == [True, False, True, True, True, True, False]
    one = store.alert(raised["id"])
    assert one is not None
    assert (one["state"], one["severity"], one["at"]) == ("resolved", "critical", resolved["at"])
    assert store.state_count() == 5
    # the same batch again (the broker redelivers it after a crash): nothing new
    assert store.record_batch(batch) == [False] * 7
    assert store.state_count() == 5


def test_a_batch_of_distinct_alerts_against_stored_ones(store: HubStore) -> None:
    """A batch whose ids are all different (PostgreSQL writes it, with its aggregate and
    status, as one statement): each row dedupes against what is stored, moves its alert
    forward only, and the answers come in the batch's order, as row by row."""
    store.record_batch(Batch(alerts=[alert(1), alert(3), alert(4, "resolved")], received_at=T0))
    critical = {**alert(5), "severity": "critical"}
    store.record_batch(Batch(alerts=[critical], received_at=T0))
    batch = [alert(2), alert(1, "acknowledged", at_s=30), alert(3), alert(4, at_s=1),
             alert(5, at_s=2), {**alert(6, home="h-0002"), "room": None}]  # fmt: skip
    with_rest = Batch(alerts=batch, aggregates=[hourly("h-0001", 1)],
                      statuses=[status("h-0002", True, T0)], received_at=T0 + 5)  # fmt: skip
    assert store.record_batch(with_rest) == [True, True, False, True, True, True]
    assert store.aggregates("h-0001", "veille.aggregate.hourly/1") == [hourly("h-0001", 1)]
    assert store.statuses() == [{**status("h-0002", True, T0), "received_at": T0 + 5}]
    got = {a["id"][-1]: (a["state"], a["severity"], a["room"]) for a in store.alerts()}
    assert got == {
        "1": ("acknowledged", "high", "living"),
        "2": ("raised", "high", "living"),
        "3": ("raised", "high", "living"),
        "4": ("resolved", "high", "living"),  # a late `raised` never moves it back
        "5": ("raised", "critical", "living"),  # nor a lower severity of the same state
        "6": ("raised", "high", None),
    }
    assert store.state_count() == 9
    assert {(s["id"][-1], s["state"], s["received_at"]) for s in store.states()} >= {
        ("2", "raised", T0 + 5), ("1", "acknowledged", T0 + 5), ("3", "raised", T0),
    }  # fmt: skip


def test_one_batch_stores_aggregates_once_and_the_latest_status(store: HubStore) -> None:
    agg = hourly("h-0001", 1)
    batch = Batch(
        alerts=[],
        aggregates=[agg, agg, hourly("h-0001", 2)],
        statuses=[status("h-0001", False, T0), status("h-0002", True, T0)],
        received_at=T0 + 1,
    )
    assert store.record_batch(batch) == []
    assert [a["period_start"] for a in store.aggregates("h-0001", agg["schema"])] == [
        agg["period_start"],
        hourly("h-0001", 2)["period_start"],
    ]
    store.record_batch(Batch(statuses=[status("h-0001", True, T0 + 9)], received_at=T0 + 9))
    assert [(s["home_id"], s["online"]) for s in store.statuses()] == [
        ("h-0001", True),
        ("h-0002", True),
    ]


def test_a_failing_batch_stores_nothing_and_the_next_one_goes_in(store: HubStore) -> None:
    """A row the database refuses (NOT NULL) rolls the whole batch back, the good alert
    with it; the next batch stores it as new."""
    good, refused = alert(1), {**alert(2), "type": None}
    with pytest.raises(Exception):  # noqa: B017 (sqlite3 or psycopg IntegrityError)
        store.record_batch(
            Batch(alerts=[good, refused], aggregates=[hourly("h-0001", 1)], received_at=T0)
        )
    assert store.alerts() == []
    assert store.state_count() == 0
    assert store.aggregates("h-0001", "veille.aggregate.hourly/1") == []
    assert store.record_batch(Batch(alerts=[good], received_at=T0 + 1)) == [True]
    assert [a["id"] for a in store.alerts()] == [good["id"]]


def test_escalation_candidates_are_the_raised_alerts_old_enough(store: HubStore) -> None:
    for n in (1, 2, 3, 4):
        store.record_alert(alert(n), T0)  # raised at T0 + n minutes
    store.record_alert(alert(2, "acknowledged", at_s=5), T0)
    store.mark(alert(3)["id"], escalated=1)
    ids = lambda rows: [r["id"][-1] for r in rows]  # noqa: E731
    assert ids(store.escalation_candidates(iso_utc(T0 + 4 * 60 - 1))) == ["1"]
    assert ids(store.escalation_candidates(iso_utc(T0 + 4 * 60))) == ["4", "1"]
    whole_second = {**alert(5), "raised_at": iso_utc(T0 + 5 * 60)[:-5] + "Z"}  # no fraction
    store.record_alert(whole_second, T0)
    assert ids(store.escalation_candidates(iso_utc(T0 + 5 * 60 + 1)))[0] == "5"


def test_mark_sets_hub_side_fields_only(store: HubStore) -> None:
    payload = alert(20)
    store.record_alert(payload, T0)
    store.mark(payload["id"], escalated=1)
    store.mark(payload["id"], note="called the neighbour", handled_by="alice")
    store.mark(payload["id"], state="resolved", home_id="h-9999")  # not markable: ignored
    store.mark("0190a000-0000-7000-8000-999999999999", note="unknown id: no effect")
    got = store.alert(payload["id"])
    assert got is not None
    assert (got["escalated"], got["note"], got["handled_by"]) == (
        True,
        "called the neighbour",
        "alice",
    )
    assert (got["state"], got["home_id"]) == ("raised", "h-0001")
    store.mark(payload["id"], escalated=False)
    again = store.alert(payload["id"])
    assert again is not None
    assert again["escalated"] is False


def test_concurrent_writers_record_each_state_once(spec: str) -> None:
    """Four connections (as four receivers) write the same states in different orders."""
    states = [alert(n, s, at_s=i) for n in range(30) for i, s in enumerate(("raised", "resolved"))]
    stores = [open_store(spec) for _ in range(4)]
    new_counts = [0] * len(stores)
    start = threading.Barrier(len(stores))

    def write(k: int) -> None:
        start.wait()
        shift = 7 * k
        order = states[shift:] + states[:shift]
        for payload in reversed(order) if k % 2 else order:
            new_counts[k] += stores[k].record_alert(payload, time.time())

    threads = [threading.Thread(target=write, args=(k,)) for k in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert sum(new_counts) == len(states) == 60
        assert stores[0].state_count() == 60
        rows = stores[0].alerts()
        assert len(rows) == 30
        assert {r["state"] for r in rows} == {"resolved"}
    finally:
        for s in stores:
            s.close()


def test_postgres_store_reconnects_after_the_server_ends_its_session(
    postgres: Postgres, caplog: pytest.LogCaptureFixture
) -> None:
    """A failover or restart drops the connection: the next write reconnects and succeeds."""
    dsn = postgres.new_database()
    store = PostgresHubStore(dsn)
    try:
        assert store.record_alert(alert(40), T0)
        with psycopg.connect(dsn, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        assert ended == [(True,)]
        assert store.record_alert(alert(41), T0) is True
        assert store.record_alert(alert(40), T0) is False
        assert store.state_count() == 2
        assert any("retrying" in r.getMessage() for r in caplog.records)
    finally:
        store.close()


def test_two_receivers_share_the_load_and_store_every_id_once(
    spec: str, hub_broker: Mosquitto
) -> None:
    """Two `HubReceiver`s, each with its own connection to one store, behind `$share/hub/`."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    url = parse_broker_url(hub_broker.url)
    seen: list[list[str]] = [[], []]
    fresh: list[int] = [0, 0]

    def on_alert(k: int) -> Any:
        def record(payload: Any, new: bool) -> None:
            seen[k].append(payload["id"])
            fresh[k] += new

        return record

    receivers = [
        HubReceiver(url, open_store(spec), client_id=f"hub-test-{k}", on_alert=on_alert(k))
        for k in range(2)
    ]
    for r in receivers:
        r.start()
    try:
        assert all(r.wait_connected(10) for r in receivers)
        time.sleep(0.3)  # SUBACKs: a shared subscription drops what comes before
        homes = [f"h-{k:04d}" for k in range(4)]
        sent = [alert(n, home=homes[n % 4]) for n in range(200)]
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", hub_broker.port)
        client.loop_start()
        try:
            infos = [client.publish(alert_topic(p["home_id"]), encode(p), qos=1) for p in sent]
            infos += [
                client.publish(aggregate_topic(h, "hourly"), encode(hourly(h, i)), qos=1)
                for h in homes
                for i in range(10)
            ]
            for info in infos:
                info.wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()
        check = open_store(spec)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (
            sum(map(len, seen)) < len(sent)
            or sum(len(check.aggregates(h, "veille.aggregate.hourly/1")) for h in homes) < 40
        ):
            time.sleep(0.05)
    finally:
        for r in receivers:
            r.stop()
    try:
        assert all(seen), f"each receiver gets part of the load: {list(map(len, seen))}"
        assert sorted(seen[0] + seen[1]) == sorted(p["id"] for p in sent)
        assert sum(fresh) == len(sent)
        assert check.state_count() == len(sent)
        assert {r["id"] for r in check.alerts()} == {p["id"] for p in sent}
        for h in homes:
            got = check.aggregates(h, "veille.aggregate.hourly/1")
            assert [json.dumps(a, sort_keys=True) for a in got] == [
                json.dumps(hourly(h, i), sort_keys=True) for i in range(10)
            ]
        check.close()
    finally:
        for r in receivers:
            r.store.close()


def test_the_chain_state_and_notification_log_survive_a_restart(spec: str) -> None:
    """The notifier's records (cloud_bridge.notify) kept by the store: the latest state per
    alert, and the log in order; a store opened again resumes the chain, nothing twice."""
    from cloud_bridge.notify.chain import ChainState, Escalation
    from cloud_bridge.notify.config import Step

    steps = (Step(index=0, after_s=0, channels=("astreinte",)),
             Step(index=1, after_s=600, channels=("centre",)))
    first = open_store(spec)
    chain = Escalation(steps)
    chain.raised("a-00000001", "fall", "critical", T0)
    chain.raised("a-00000002", "sos", "critical", T0)
    assert [(s.alert_id, s.step) for s in chain.due(T0)] == [
        ("a-00000001", 0), ("a-00000002", 0)]
    chain.stopped("a-00000002", "acknowledged", T0 + 60)
    for state in chain.states():
        first.save_chain({"chain": state.to_dict(), "alert": {"id": state.alert_id,
                                                              "home_id": "h-0001"}})
    first.save_chain({"chain": chain.states()[0].to_dict(), "alert": {"id": "a-00000001"}})
    for n, ok in ((1, True), (2, False), (1, True)):
        first.log_notification({"alert_id": f"a-0000000{n}", "step": 0, "channel": "astreinte",
                                "kind": "email", "at": T0 + n, "ok": ok, "error": None})
    first.close()
    again = open_store(spec)
    try:
        records = sorted(again.load_chains(), key=lambda r: r["chain"]["alert_id"])
        assert [r["alert"] for r in records] == [{"id": "a-00000001"},
                                                 {"id": "a-00000002", "home_id": "h-0001"}]
        resumed = Escalation(steps, [ChainState.from_dict(r["chain"]) for r in records])
        assert resumed.due(T0 + 300) == []
        assert [(s.alert_id, s.step) for s in resumed.due(T0 + 600)] == [("a-00000001", 1)]
        assert [e["ok"] for e in again.notifications()] == [True, False, True]
        assert [e["at"] for e in again.notifications("a-00000001")] == [T0 + 1, T0 + 1]
    finally:
        again.close()
