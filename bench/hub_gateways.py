"""Simulated gateways for the hub load bench: many homes in one process, the real uplink code.

`python -m bench.hub_gateways CONFIG.json` is started by `bench.hub_load`, several times.
Each home has the real `Outbox` (SQLite, on the bench's temporary folder) and the real
`Uplink` with its own TLS client certificate; only the network threads are pooled
(`bench.mqtt_loop.SharedNetworkLoop`). The conversation with the parent is three lines:

    worker -> parent   `ready <seconds to connect every home>`
    parent -> worker   `go <epoch seconds>`: the common start time of the messages
    worker -> parent   `done`, once every outbox is empty; the figures are in the result file

From the start time, every home puts its alerts and hourly aggregates into its outbox at
random moments within `spread_s` (seeded), then wakes its uplink. Each alert carries the
moment it was put in its evidence (`bench_sent_at`), so the hub side can measure delivery.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import sys
import time
from pathlib import Path
from typing import Any

from bench.mqtt_loop import SharedNetworkLoop
from cloud_bridge.broker import BrokerUrl, Credentials
from cloud_bridge.contract import (
    AlertState,
    AlertType,
    Severity,
    aggregate_topic,
    alert_topic,
    encode,
    iso_utc,
)
from cloud_bridge.uplink import Uplink
from edge.events import Alert, new_alert_id
from edge.storage.outbox import Outbox

_LOGGER = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 300.0
POLL_S = 0.05
CANCEL_WAIT_S = 5.0
AGGREGATE_BASE_S = 1_717_200_000  # the first hour of the simulated aggregates
ALERT_KINDS = (
    (AlertType.FALL, Severity.CRITICAL, "bathroom"),
    (AlertType.INACTIVITY, Severity.HIGH, "living"),
    (AlertType.SOS, Severity.CRITICAL, "entrance"),
    (AlertType.NIGHT_EXIT, Severity.WARNING, "entrance"),
)


def hourly(home: str, hour: int) -> bytes:
    """A valid `veille.aggregate.hourly/1` for the home's `hour`-th simulated hour.

    The simulated homes' stand-in for the gateway's hourly aggregation (which a real home
    does once an hour): made once per hour for every home, only the home id put in, so the
    bench's own payload making does not count as the homes' per-message cost."""
    head, tail = _hourly_parts(hour)
    return head + home.encode() + tail


@functools.lru_cache(maxsize=4096)
def _hourly_parts(hour: int) -> tuple[bytes, bytes]:
    head, mark, tail = _hourly(_MARK, hour).partition(f'"{_MARK}"'.encode())
    assert mark, "the home id is in the payload"
    return head + b'"', b'"' + tail


_MARK = "home-id-placeholder"


def _hourly(home: str, hour: int) -> bytes:
    start = AGGREGATE_BASE_S + hour * 3600
    return encode(
        {
            "schema": "veille.aggregate.hourly/1",
            "home_id": home,
            "period_start": iso_utc(start),
            "period_end": iso_utc(start + 3600),
            "rooms": {
                "kitchen": {"activity": 5 + hour % 7, "door_openings": 2, "bed_min": 0},
                "bedroom": {"activity": 1, "door_openings": 0, "bed_min": 12.5},
            },
            "totals": {"activity": 6 + hour % 7, "door_openings": 2, "entrance_openings": 0},
            "sensor_health": {"devices": 6, "offline": 0, "low_battery": 0, "unknown_devices": 0},
        }
    )


def alert(home: str, k: int, now: float) -> Alert:
    kind, severity, room = ALERT_KINDS[k % len(ALERT_KINDS)]
    return Alert(
        new_alert_id(now),
        home,
        kind,
        severity,
        AlertState.RAISED,
        now,
        now,
        room,
        None,
        {"bench_sent_at": round(now, 6)},
    )


class Home:
    """One simulated gateway: its outbox and its uplink."""

    def __init__(self, home: str, cfg: dict[str, Any], net: SharedNetworkLoop) -> None:
        tls = Path(cfg["tls_dir"])
        self.home = home
        self.outbox = Outbox(Path(cfg["outbox_dir"]) / home / "outbox.db")
        self.uplink = Uplink(
            BrokerUrl("127.0.0.1", int(cfg["port"]), tls=True),
            home,
            self.outbox,
            now=time.time,
            credentials=Credentials(
                ca_file=tls / "ca.pem", cert_file=tls / f"{home}.pem", key_file=tls / f"{home}.key"
            ),
            client_id=home,
        )
        net.adopt(self.uplink.link)
        self.alert_ids: list[str] = []

    def put(self, kind: str, k: int) -> None:
        if kind == "alert":
            a = alert(self.home, k, time.time())
            self.outbox.put(alerts=[(a, alert_topic(self.home))])
            self.alert_ids.append(a.id)
        else:
            self.outbox.put(
                aggregates=[(aggregate_topic(self.home, "hourly"), hourly(self.home, k))]
            )
        self.uplink.wake()

    def pending(self) -> int:
        counts = self.outbox.counts()
        return counts["alerts"] + counts["aggregates"]


def _schedule(cfg: dict[str, Any], n_homes: int, t0: float) -> list[tuple[float, int, str, int]]:
    rng = random.Random(int(cfg["seed"]))
    spread = float(cfg["spread_s"])
    events = [
        (t0 + rng.uniform(0, spread), h, kind, k)
        for h in range(n_homes)
        for kind, count in (("alert", cfg["alerts"]), ("aggregate", cfg["aggregates"]))
        for k in range(int(count))
    ]
    events.sort()
    return events


async def _wait(cond: Any, timeout_s: float, what: str) -> float:
    t0 = time.perf_counter()
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(POLL_S)
    return time.perf_counter() - t0


async def _stop(tasks: list[asyncio.Task[None]]) -> int:
    """Cancel the uplinks' tasks until all have ended; returns how many ignored a cancel.

    On Python 3.11 `asyncio.wait_for` can swallow a cancellation that arrives just as the
    awaited event is set (fixed in 3.12); `Uplink.run` waits that way, so a task may live on
    after one `cancel()`. Cancelling again ends it.
    """
    ignored = 0
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _done, still = await asyncio.wait(pending, timeout=CANCEL_WAIT_S)
        ignored += len(still)
        if still:
            _LOGGER.warning("%d uplink task(s) ignored cancel(); cancelling again", len(still))
        pending = still
    return ignored


async def run_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    net = SharedNetworkLoop(f"gw{cfg['seed']}")
    net.start()
    homes = [Home(h, cfg, net) for h in cfg["homes"]]
    tasks = [asyncio.create_task(h.uplink.run(), name=h.home) for h in homes]
    try:
        connect_s = await _wait(
            lambda: all(h.uplink.connected for h in homes), CONNECT_TIMEOUT_S, "connect"
        )
        print(f"ready {connect_s:.3f}", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        t0 = float(line.split()[1])
        for at, idx, kind, k in _schedule(cfg, len(homes), t0):
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            homes[idx].put(kind, k)
        put_end = time.time()
        await _wait(lambda: all(h.pending() == 0 for h in homes), DRAIN_TIMEOUT_S, "drain")
        drained = time.time()
        log = [entry for h in homes for entry in h.outbox.alarm_log()]
        ignored_cancel = await _stop(tasks)
        return {
            "homes": len(homes),
            "connect_s": round(connect_s, 3),
            "alerts": [[h.home, aid] for h in homes for aid in h.alert_ids],
            "aggregates": len(homes) * int(cfg["aggregates"]),
            "puts_late_s": round(put_end - t0 - float(cfg["spread_s"]), 3),
            "drained_at": drained,
            "delivered": sum(h.uplink.delivered for h in homes),
            "refused": sum(len(h.uplink.refused) for h in homes),
            "alarm_log_alerts": len(log),
            "alarm_log_undelivered": sum(1 for e in log if e["delivered_at"] is None),
            "uplinks_that_ignored_cancel": ignored_cancel,
        }
    finally:
        await _stop([t for t in tasks if not t.done()])
        for h in homes:
            h.outbox.close()
        net.stop()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    cfg = json.loads(Path(argv[0]).read_text())
    result = asyncio.run(run_worker(cfg))
    Path(cfg["result"]).write_text(json.dumps(result))
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
