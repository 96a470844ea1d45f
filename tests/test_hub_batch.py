"""The receiver's group commit, on both stores, through a real Mosquitto.

The store is the real one behind a gate (`GatedStore`): the test holds the worker inside a
commit so that the next messages pile up and go in one batch, or makes the commit fail, to
see what the homes get back (receipts) and what the broker keeps (PUBACKs after commit).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

import cloud_bridge.hub
from cloud_bridge.broker import parse_broker_url
from cloud_bridge.console import create_console_app
from cloud_bridge.contract import validate_receipt
from cloud_bridge.hub import HubReceiver, Inbound, make_batch, receipts_for
from cloud_bridge.hub_store import Batch, HubStore
from cloud_bridge.stores import open_store
from tests.pg import pause_postgres, resume_postgres, running_postgres
from tests.support import Collector, Mosquitto, publish
from tests.test_hub_poison import alert, raw, wait_for
from tests.test_hub_store import hourly, status

H1, H2 = "h-0001", "h-0002"
HOURLY = "veille.aggregate.hourly/1"


class GatedStore:
    """A real store whose `record_batch` waits while the gate is closed and raises while
    `fail` is set (a commit the database refused); it records each batch's size."""

    def __init__(self, inner: HubStore) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail = False
        self.die = False  # raise what no `except Exception` catches: the worker thread ends
        self.sizes: list[int] = []

    def record_batch(self, batch: Batch) -> list[bool]:
        self.entered.set()
        self.gate.wait(30)
        if self.die:
            raise SystemExit("store worker killed")
        if self.fail:
            raise RuntimeError("commit refused")
        new = self.inner.record_batch(batch)
        self.sizes.append(batch.size)
        return new

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def receipts(got: list[tuple[str, bytes, bool]]) -> list[dict[str, Any]]:
    out = [json.loads(p) for _t, p, _r in got]
    for r in out:
        validate_receipt(r)
    return out


def entries(receipt: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(a["id"], a["state"], a["severity"]) for a in receipt["alerts"]]


# --- the pure parts ---------------------------------------------------------------------------


def test_make_batch_keeps_alert_order_and_only_each_homes_last_status() -> None:
    a1, a2 = alert(H1, 1), alert(H2, 2)
    items = [
        Inbound("status", status(H1, False, 1.0)),
        Inbound("alert", a1),
        Inbound("status", status(H2, True, 1.0)),
        Inbound("aggregate/hourly", hourly(H1, 1)),
        Inbound("status", status(H1, True, 2.0)),
        Inbound("alert", a2),
    ]
    batch = make_batch(items, 5.0)
    assert batch.alerts == [a1, a2]
    assert batch.aggregates == [hourly(H1, 1)]
    assert [(s["home_id"], s["online"]) for s in batch.statuses] == [(H1, True), (H2, True)]
    assert (batch.size, batch.received_at) == (6, 5.0)


def test_receipts_for_one_commit_one_per_home_with_every_state() -> None:
    high = alert(H1, 1, severity="high")
    critical = alert(H1, 1)
    other = alert(H2, 2)
    out = receipts_for([high, high, critical, other], "2026-12-01T00:00:00Z")
    assert [r["home_id"] for r in out] == [H1, H2]
    for r in out:
        validate_receipt(r)
    assert out[0]["ids"] == [high["id"]]
    assert entries(out[0]) == [
        (high["id"], "raised", "high"),
        (high["id"], "raised", "critical"),
    ]
    assert out[1]["ids"] == [other["id"]]


# --- through the broker -----------------------------------------------------------------------


def test_messages_queued_during_a_commit_share_the_next_one(
    hub_broker: Mosquitto, spec: str
) -> None:
    """While the worker is inside a commit, a redelivery, an escalation, another home's
    alert, two statuses and an aggregate queue up; they go in ONE next transaction, deduped
    as if apart, and each home gets a receipt for what that commit stored."""
    gated = GatedStore(open_store(spec))
    announced: list[tuple[str, str, bool]] = []
    hub = HubReceiver(
        parse_broker_url(hub_broker.url),
        cast(HubStore, gated),
        client_id="hub-batch",
        on_alert=lambda p, new: announced.append((p["id"], p["severity"], new)),
    )
    hub.start()
    assert hub.wait_connected()
    got = Collector(hub_broker.port, f"veille/v1/{H1}/receipt", f"veille/v1/{H2}/receipt")
    high, critical, other = alert(H1, 1, severity="high"), alert(H1, 1), alert(H2, 2)
    try:
        gated.gate.clear()
        publish(hub_broker.port, f"veille/v1/{H1}/alert", raw(high))
        assert gated.entered.wait(10)
        later = [
            ("alert", high),
            ("alert", critical),
            ("alert", other),
            ("status", status(H1, False, time.time() - 2)),
            ("status", status(H1, True, time.time() - 1)),
            ("aggregate/hourly", hourly(H1, 1)),
        ]
        for leaf, payload in later:
            publish(hub_broker.port, f"veille/v1/{payload['home_id']}/{leaf}", raw(payload))
        assert wait_for(lambda: hub.health()["queued"] == len(later))
        gated.gate.set()
        assert wait_for(lambda: len(gated.sizes) == 2)
        sent = receipts(got.drain(1.0))
        health = hub.health()
    finally:
        got.close()
        hub.stop()
    assert gated.sizes == [1, len(later)]
    assert hub.rejected == 0
    assert announced == [
        (high["id"], "high", True),
        (high["id"], "high", False),
        (high["id"], "critical", True),
        (other["id"], "critical", True),
    ]
    by_home = {(r["home_id"], tuple(entries(r))) for r in sent}
    assert by_home == {
        (H1, ((high["id"], "raised", "high"),)),
        (H1, ((high["id"], "raised", "high"), (high["id"], "raised", "critical"))),
        (H2, ((other["id"], "raised", "critical"),)),
    }
    stored = gated.inner.alert(high["id"])
    assert stored is not None
    assert stored["severity"] == "critical"
    assert gated.inner.state_count() == 3
    assert [(s["home_id"], s["online"]) for s in gated.inner.statuses()] == [(H1, True)]
    assert len(gated.inner.aggregates(H1, "veille.aggregate.hourly/1")) == 1
    assert health["ok"]
    assert health["worker"]
    assert health["batches"] == 2
    gated.inner.close()


def test_a_failed_commit_sends_no_receipt_and_the_next_batch_recovers(
    hub_broker: Mosquitto, spec: str
) -> None:
    gated = GatedStore(open_store(spec))
    hub = HubReceiver(parse_broker_url(hub_broker.url), cast(HubStore, gated), client_id="hub-f")
    hub.start()
    assert hub.wait_connected()
    got = Collector(hub_broker.port, f"veille/v1/{H1}/receipt")
    sos = alert(H1, 1)
    try:
        gated.fail = True
        publish(hub_broker.port, f"veille/v1/{H1}/alert", raw(sos))
        assert wait_for(lambda: hub.failed == 1)
        assert got.drain(1.0) == []
        assert gated.inner.alerts() == []
        gated.fail = False
        publish(hub_broker.port, f"veille/v1/{H1}/alert", raw(sos))  # the gateway's resend
        sent = receipts([got.get(10)])
        health = hub.health()
    finally:
        got.close()
        hub.stop()
    assert sent[0]["ids"] == [sos["id"]]
    assert [a["id"] for a in gated.inner.alerts()] == [sos["id"]]
    assert hub.failed == 1
    assert health["ok"]
    gated.inner.close()


def test_a_receiver_killed_before_its_commit_loses_nothing(
    hub_broker: Mosquitto, tmp_path: Path
) -> None:
    """The receiver dies (its socket cut, no DISCONNECT) while its batch is not committed:
    nothing was acknowledged, so the broker gives the aggregate and the alert again to the
    same session when a receiver comes back, and they are stored."""
    spec = f"sqlite:///{tmp_path / 'hub.db'}"
    gated = GatedStore(open_store(spec))
    first = HubReceiver(parse_broker_url(hub_broker.url), cast(HubStore, gated), client_id="hk")
    first.start()
    assert first.wait_connected()
    gated.gate.clear()
    agg, sos = hourly(H1, 3), alert(H1, 4)
    publish(hub_broker.port, f"veille/v1/{H1}/aggregate/hourly", raw(agg))
    publish(hub_broker.port, f"veille/v1/{H1}/alert", raw(sos))
    assert gated.entered.wait(10)
    first.link._stop.set()  # as a SIGKILL: the link ends without a DISCONNECT
    first.link.client.socket().shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
    assert first.link.thread is not None
    first.link.thread.join(10)
    assert not first.health()["ok"]
    gated.fail = True
    gated.gate.set()  # the dead receiver's commit never happens

    store = open_store(spec)
    second = HubReceiver(parse_broker_url(hub_broker.url), store, client_id="hk")
    got = Collector(hub_broker.port, f"veille/v1/{H1}/receipt")
    second.start()
    try:
        assert second.wait_connected()
        assert wait_for(lambda: store.alert(sos["id"]) is not None)
        assert wait_for(lambda: len(store.aggregates(H1, agg["schema"])) == 1)
        assert receipts([got.get(10)])[0]["ids"] == [sos["id"]]
    finally:
        got.close()
        second.stop()
        first.stop()
    store.close()
    gated.inner.close()


def test_a_full_queue_holds_the_network_thread_and_loses_nothing(
    hub_broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room for 2 in the queue and the worker held in a commit, the network thread
    waits on the 4th message (the PUBACKs wait with it); once the commit ends all 6 are
    stored, and the queue never held more than 2."""
    monkeypatch.setattr(cloud_bridge.hub, "QUEUE_MAX", 2)
    gated = GatedStore(open_store(f"sqlite:///{tmp_path / 'hub.db'}"))
    hub = HubReceiver(parse_broker_url(hub_broker.url), cast(HubStore, gated), client_id="hq")
    hub.start()
    assert hub.wait_connected()
    gated.gate.clear()
    sos = [alert(H1, n) for n in range(6)]
    try:
        publish(hub_broker.port, f"veille/v1/{H1}/alert", raw(sos[0]))
        assert gated.entered.wait(10)
        for payload in sos[1:]:
            publish(hub_broker.port, f"veille/v1/{H1}/alert", raw(payload))
        assert wait_for(lambda: hub.health()["queued"] == 2)
        time.sleep(0.5)
        assert hub.health()["queued"] == 2
        gated.gate.set()
        assert wait_for(lambda: len(gated.inner.alerts()) == 6)
    finally:
        hub.stop()
    assert sorted(a["id"] for a in gated.inner.alerts()) == sorted(a["id"] for a in sos)
    gated.inner.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # on purpose
def test_health_is_503_once_the_store_worker_is_gone_and_its_batch_comes_again(
    hub_broker: Mosquitto, tmp_path: Path
) -> None:
    from tests.test_console import PASSWORD, STAFF

    spec = f"sqlite:///{tmp_path / 'hub.db'}"
    gated = GatedStore(open_store(spec))
    gated.die = True
    hub = HubReceiver(parse_broker_url(hub_broker.url), cast(HubStore, gated), client_id="hw")
    pw = tmp_path / "staff.txt"
    pw.write_text(f"{STAFF}:{PASSWORD}\n")
    sos = alert(H1, 9)
    hub.start()
    try:
        assert hub.wait_connected()
        with TestClient(create_console_app(hub, staff_password_file=pw)) as client:
            assert client.get("/health").status_code == 200
            publish(hub_broker.port, f"veille/v1/{H1}/alert", raw(sos))
            assert wait_for(lambda: client.get("/health").status_code == 503)
            body = client.get("/health").json()
            assert body["worker"] is False
            assert body["thread"] is True
    finally:
        hub.stop()
    store = open_store(spec)
    again = HubReceiver(parse_broker_url(hub_broker.url), store, client_id="hw")
    again.start()
    try:
        assert wait_for(lambda: store.alert(sos["id"]) is not None)
    finally:
        again.stop()
        store.close()
        gated.inner.close()


def test_a_new_receiver_is_ready_only_once_subscribed(
    hub_broker: Mosquitto, tmp_path: Path
) -> None:
    """A first session has no subscription until the SUBACK: an aggregate published as soon
    as the receiver says it is ready must be stored, not dropped for want of a subscriber
    (it has no receipt, so nobody would send it again). Twenty new receivers in a row."""
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        for n in range(20):
            url = parse_broker_url(hub_broker.url)  # sessions end with them: none left over
            hub = HubReceiver(url, store, client_id=f"first-{n}", session_expiry_s=0)
            hub.start()
            try:
                assert hub.wait_connected()
                assert hub.health()["ok"]
                publish(hub_broker.port, f"veille/v1/{H1}/aggregate/hourly", raw(hourly(H1, n)))
                assert wait_for(lambda n=n: len(store.aggregates(H1, HOURLY)) == n + 1)
            finally:
                hub.stop()
    finally:
        store.close()


def test_a_store_that_does_not_answer_holds_the_messages_until_it_does(
    hub_broker: Mosquitto, tmp_path: Path
) -> None:
    """PostgreSQL down for a while: the receiver acknowledges nothing, says so on /health,
    and stores the aggregate and the alert once the database is back (before this, the
    aggregate was acknowledged as refused and lost)."""
    with running_postgres() as pg:
        store = open_store(pg.new_database("hold"))
        hub = HubReceiver(parse_broker_url(hub_broker.url), store, client_id="hold")
        got = Collector(hub_broker.port, f"veille/v1/{H1}/receipt")
        hub.start()
        try:
            assert hub.wait_connected()
            pause_postgres(pg)
            agg, sos = hourly(H1, 7), alert(H1, 8)
            publish(hub_broker.port, f"veille/v1/{H1}/aggregate/hourly", raw(agg))
            publish(hub_broker.port, f"veille/v1/{H1}/alert", raw(sos))
            assert wait_for(lambda: not hub.health()["store"])
            assert not hub.health()["ok"]
            time.sleep(3.0)  # several retries while it is down
            assert got.messages.empty()  # no receipt for what is not stored
            resume_postgres(pg)
            assert wait_for(lambda: store.alert(sos["id"]) is not None, timeout=20)
            assert wait_for(lambda: len(store.aggregates(H1, HOURLY)) == 1)
            assert receipts([got.get(10)])[0]["ids"] == [sos["id"]]
            assert hub.health()["ok"]
            print(f"held through the outage: failed={hub.failed} received={hub.received}")
            assert hub.failed == 0
        finally:
            got.close()
            hub.stop()
            store.close()
