"""Backlog drain (issue 7): `python -m bench.drain` prints one JSON object.

A real outbox file holding `BACKLOG` messages (one alert in 50, the rest hourly aggregates of
a few hundred bytes) is drained by the real `Uplink` into a real hub Mosquitto on a loopback
port: time from the uplink's start (connect included) until the outbox is empty, i.e. every
aggregate PUBACKed by the hub broker and every alert receipted by the real hub receiver
(`HubReceiver`, SQLite store, its per-home budget lifted: the bench measures the uplink).
Baseline in the same run: a bare paho client publishing the same payloads at QoS 1
in rounds of the same in-flight window (100), no outbox (what the broker and loopback allow).
Target: <= 60 s for 100,000 messages.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench._common import broker
from cloud_bridge.broker import parse_broker_url
from cloud_bridge.contract import AlertState, AlertType, Severity, aggregate_topic, alert_topic
from cloud_bridge.hub import HomeBudget, HubReceiver
from cloud_bridge.hub_store import SqliteHubStore
from cloud_bridge.uplink import INFLIGHT_WINDOW, Uplink
from edge.events import Alert, new_alert_id
from edge.storage.outbox import Outbox

HOME = "bench-drain"
BACKLOG = 100_000
ALERT_EVERY = 50
FILL_BATCH = 1000
TIMEOUT_S = 600.0
TARGET_S = 60.0
PAD = "x" * 300


def _alert(i: int) -> Alert:
    t = 1.7e9 + i
    evidence = {"inactive_min": 212, "usual_max_min": 95}
    return Alert(
        new_alert_id(t), HOME, AlertType.INACTIVITY, Severity.HIGH, AlertState.RAISED,
        t, t, "living", None, evidence,
    )  # fmt: skip


def _aggregate(i: int) -> bytes:
    body = {"schema": "veille.aggregate.hourly/1", "home_id": HOME, "n": i, "pad": PAD}
    return json.dumps(body, separators=(",", ":")).encode()


def fill(box: Outbox, count: int) -> float:
    """Put `count` messages in batches; returns seconds."""
    t0 = time.perf_counter()
    for base in range(0, count, FILL_BATCH):
        n = min(FILL_BATCH, count - base)
        alerts = [(_alert(base + k), alert_topic(HOME)) for k in range(0, n, ALERT_EVERY)]
        aggs = [(aggregate_topic(HOME, "hourly"), _aggregate(base + k)) for k in range(n)]
        box.put(alerts=alerts, aggregates=aggs[: n - len(alerts)])
    return time.perf_counter() - t0


async def _drain(box: Outbox, url: str) -> float:
    uplink = Uplink(parse_broker_url(url), HOME, box, now=time.time, client_id="bench-drain")
    t0 = time.monotonic()
    task = asyncio.create_task(uplink.run())
    try:
        while True:
            c = box.counts()
            if c["alerts"] + c["aggregates"] == 0:
                return time.monotonic() - t0
            if time.monotonic() - t0 > TIMEOUT_S:
                raise TimeoutError(f"outbox not drained in {TIMEOUT_S} s: {c}")
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _bare(port: int, count: int) -> float:
    """Bare paho, same payloads, QoS 1, INFLIGHT_WINDOW at a time; seconds to all PUBACKs."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(INFLIGHT_WINDOW)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        topic = aggregate_topic(HOME, "hourly")
        t0 = time.monotonic()
        for base in range(0, count, INFLIGHT_WINDOW):
            infos = [
                client.publish(topic, _aggregate(i), qos=1)
                for i in range(base, min(count, base + INFLIGHT_WINDOW))
            ]
            for info in infos:
                info.wait_for_publish(TIMEOUT_S)
        return time.monotonic() - t0
    finally:
        client.disconnect()
        client.loop_stop()


def run(backlog: int = BACKLOG) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as tmp:
        work = Path(tmp)
        box = Outbox(work / "outbox.db", max_bytes=1 << 40)
        fill_s = fill(box, backlog)
        counts = box.counts()
        with broker(work / "hub") as hub:
            unlimited = HomeBudget(burst=1e12, burst_bytes=1e15)
            store = SqliteHubStore(work / "hub.db")
            receiver = HubReceiver(
                parse_broker_url(hub.url), store, client_id="bench-hub", budget=unlimited
            )
            receiver.start()
            receiver.wait_connected()
            try:
                drain_s = asyncio.run(_drain(box, hub.url))
            finally:
                receiver.stop()
                store.close()
            bare_s = _bare(hub.port, backlog)
        box.close()
    return {
        "backlog": counts["alerts"] + counts["aggregates"],
        "alerts": counts["alerts"],
        "fill_s": round(fill_s, 2),
        "drain_s": round(drain_s, 2),
        "drain_per_s": round(backlog / drain_s, 1),
        "baseline_bare_paho_s": round(bare_s, 2),
        "baseline_bare_paho_per_s": round(backlog / bare_s, 1),
        "inflight_window": INFLIGHT_WINDOW,
        "target_s": TARGET_S,
        "pass": drain_s <= TARGET_S,
    }


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=2)
    sys.stdout.write("\n")
