"""The uplink against real brokers and the real hub receiver: drain order, aggregates deleted on
PUBACK, alerts only on the hub's receipt (sent again until it comes), TLS, a refused publish."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from cloud_bridge.broker import Credentials, parse_broker_url
from cloud_bridge.contract import (
    AlertState,
    AlertType,
    Severity,
    aggregate_topic,
    alert_topic,
    encode,
)
from cloud_bridge.hub import HubReceiver
from cloud_bridge.hub_store import SqliteHubStore
from cloud_bridge.uplink import RESEND_MAX_S, Uplink, resend_delay
from edge.events import Alert
from edge.storage.outbox import Outbox
from tests.support import Collector, Mosquitto, TlsHub, make_hub_pki, tls_client

pytestmark = pytest.mark.broker


def alert(home: str, i: int) -> Alert:
    return Alert(
        id=f"0190a0a0-0000-7000-8000-{i:012d}",
        home_id=home,
        type=AlertType.SOS,
        severity=Severity.CRITICAL,
        state=AlertState.RAISED,
        at=1_700_000_000.0 + i,
        raised_at=1_700_000_000.0 + i,
    )


def hourly(home: str, i: int) -> tuple[str, bytes]:
    body = {
        "schema": "veille.aggregate.hourly/1",
        "home_id": home,
        "period_start": f"2024-01-01T{i:02d}:00:00.000Z",
        "period_end": f"2024-01-01T{i:02d}:59:59.000Z",
        "rooms": {},
        "totals": {"activity": i, "door_openings": 0, "entrance_openings": 0},
        "sensor_health": {"devices": 1, "offline": 0, "low_battery": 0, "unknown_devices": 0},
    }
    return aggregate_topic(home, "hourly"), encode(body)


async def drain(uplink: Uplink, outbox: Outbox, timeout_s: float = 20.0) -> None:
    task = asyncio.create_task(uplink.run())
    deadline = time.monotonic() + timeout_s
    while sum(outbox.counts()[k] for k in ("alerts", "aggregates")) and (
        time.monotonic() < deadline
    ):
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def receiver(broker: Mosquitto, path: Path, client_id: str = "hub-test") -> HubReceiver:
    hub = HubReceiver(parse_broker_url(broker.url), SqliteHubStore(path), client_id=client_id)
    hub.start()
    assert hub.wait_connected()
    return hub


def test_backlog_drains_alerts_first_and_alert_rows_go_only_on_receipt(
    tmp_path: Path, hub_broker: Mosquitto
) -> None:
    home = "h-up-1"
    outbox = Outbox(tmp_path / "outbox.db")
    # aggregates queued first, alerts after: the alerts must still arrive first
    outbox.put(aggregates=[hourly(home, i) for i in range(20)])
    outbox.put(alerts=[(alert(home, i), alert_topic(home)) for i in range(30)])
    hub = Collector(hub_broker.port, "veille/#")
    store = receiver(hub_broker, tmp_path / "hub.db")
    uplink = Uplink(parse_broker_url(hub_broker.url), home, outbox, now=time.time, window=8)
    asyncio.run(drain(uplink, outbox))
    store.stop()
    got = [(t, json.loads(p)) for t, p, _r in hub.drain(1.0)]
    hub.close()
    leaves = [t.rsplit("/", 1)[-1] for t, _p in got if t.endswith(("/alert", "/hourly"))]
    assert leaves == ["alert"] * 30 + ["hourly"] * 20
    receipts = [p for t, p in got if t.endswith("/receipt")]
    assert sorted(i for r in receipts for i in r["ids"]) == sorted(
        a.id for a in map(lambda i: alert(home, i), range(30))
    )
    assert len(store.store.alerts()) == 30
    assert outbox.counts()["alerts"] == 0
    assert outbox.counts()["aggregates"] == 0
    assert uplink.delivered == 50
    log = list(outbox.alarm_log())
    assert len(log) == 30
    assert all(entry["delivered_at"] is not None for entry in log)
    statuses = [p for t, p in got if t.endswith("/status")]
    assert statuses[0]["online"] is True
    assert statuses[-1]["online"] is False  # the clean stop said so


def test_a_publish_the_hub_refuses_stays_in_the_outbox(tmp_path: Path) -> None:
    """Home h-aaa's certificate used for home h-bbb: the ACL refuses, nothing is lost."""
    tls = make_hub_pki(tmp_path / "tls", homes=("h-aaa",))
    hub = TlsHub(tmp_path / "hub", tls_dir=tls).start()
    try:
        watcher = tls_client(tls, "hub-receiver-1")
        seen: list[str] = []
        watcher.on_message = lambda _c, _u, m: seen.append(m.topic)
        watcher.connect("127.0.0.1", hub.port)
        watcher.subscribe("veille/v1/+/alert", 1)
        watcher.loop_start()
        outbox = Outbox(tmp_path / "outbox.db")
        outbox.put(alerts=[(alert("h-bbb", i), alert_topic("h-bbb")) for i in range(3)])
        creds = Credentials(
            ca_file=tls / "ca.pem", cert_file=tls / "h-aaa.pem", key_file=tls / "h-aaa.key"
        )
        uplink = Uplink(
            parse_broker_url(hub.url), "h-bbb", outbox, now=time.time, credentials=creds
        )

        async def run() -> None:
            task = asyncio.create_task(uplink.run())
            deadline = time.monotonic() + 15
            while len(uplink.refused) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        asyncio.run(run())
        watcher.loop_stop()
        watcher.disconnect()
    finally:
        hub.stop()
    assert len(uplink.refused) == 3
    assert outbox.counts()["alerts"] == 3  # kept, not deleted as if delivered
    assert seen == []
    assert all(entry["delivered_at"] is None for entry in outbox.alarm_log())


def test_resend_delay_doubles_from_seconds_to_the_60_s_cap() -> None:
    """The pure resend policy: equal jitter, ceiling 5, 10, 20, 40, then 60 s for ever."""
    lows = [resend_delay(n, rand=lambda: 0.0) for n in range(1, 8)]
    highs = [resend_delay(n, rand=lambda: 1.0) for n in range(1, 8)]
    assert lows == [2.5, 5.0, 10.0, 20.0, 30.0, 30.0, 30.0]
    assert highs == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0]
    assert max(resend_delay(10_000) for _ in range(200)) <= RESEND_MAX_S


def test_puback_without_subscriber_is_not_delivery_and_the_alert_is_sent_again(
    tmp_path: Path, hub_broker: Mosquitto
) -> None:
    """No receiver on the hub broker (PUBACK 0x10, no matching subscribers): the alert is
    not delivered, stays queued and is sent again; a receiver that comes later (a new
    session: the broker kept nothing for it) still gets it, and only then is it delivered."""
    home = "h-up-3"
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put(alerts=[(alert(home, i), alert_topic(home)) for i in range(3)])
    uplink = Uplink(parse_broker_url(hub_broker.url), home, outbox, now=time.time)
    hub: HubReceiver | None = None

    async def run() -> tuple[int, list[str | None]]:
        nonlocal hub
        task = asyncio.create_task(uplink.run())
        while uplink.waiting_receipts() < 3:
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        before = [e["delivered_at"] for e in outbox.alarm_log()]
        hub = await asyncio.to_thread(receiver, hub_broker, tmp_path / "hub.db", "hub-late")
        deadline = time.monotonic() + 30
        while outbox.counts()["alerts"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return uplink.resent, before

    resent, before = asyncio.run(run())
    assert hub is not None
    hub.stop()
    assert before == [None, None, None], "a PUBACK is not a delivery"
    assert resent >= 3
    assert outbox.counts()["alerts"] == 0
    assert {a["id"] for a in hub.store.alerts()} == {alert(home, i).id for i in range(3)}
    assert all(e["delivered_at"] is not None for e in outbox.alarm_log())
