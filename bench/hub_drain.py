"""The hub's own capacity, a backlog drain: `python -m bench.hub_drain [--messages N]` prints JSON.

The ramp (`bench.hub_ramp`) runs 1,000 simulated homes on the same 2 cores as the hub, so its
figure is bound by the machine shared with the homes. Here the same real parts, set up by
`bench.hub_ramp.hub_with_homes` (the committed hub.conf + hub.acl on Mosquitto with TLS, a
client certificate per home, 3 `veille hub` receivers on the shared subscription, one durable
PostgreSQL), measure the hub with the homes out of its way:

1. the receivers are paused (SIGSTOP: they stay connected, and Mosquitto queues their share
   of the shared subscription for them) while the homes put N messages of the ramp's mix
   (3 alerts for 10 aggregates, round-robin over the homes) as fast as they can, until the
   broker has PUBACKed every one;
2. the receivers are resumed (SIGCONT) and the drain is timed from the resume to the last
   commit in PostgreSQL (commit timestamps): stored messages per second, counted as
   distinct messages (alert ids, aggregate hours), lost (put, not in the store), and the CPU
   of each part during the drain. The homes still take the receipts then (and send again the
   alerts whose receipt is late): their CPU is reported too, apart from the hub's.

Sizing: hub.conf keeps `max_queued_messages 100000` per client (beyond it Mosquitto 2.0 drops
QoS 1 messages for that client, the publisher still gets its PUBACK) and
`max_inflight_messages 100`; the broker hands each receiver a third of the messages, so a
backlog of N plus the homes' repeats stays far below 3 x 100,000 (the production value is
used unchanged). The receivers' keepalive is 30 s: paused 45 s, the broker would drop them
(`keepalive_exceeded` says whether the log shows it), so N is what the homes put well within.

Alerts wait for their receipt (DESIGN.md section 3): paused, the hub sends none, so the homes
send each alert again after 2.5-5 s, 5-10 s, ... (`resent`). Those repeats reach the
receivers too (the store dedupes them): `duplicates` counts them apart, the figure counts
distinct stored messages only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.hub_load import _announced, _cpu_s, _expect_line, _pg_cpu_s, _pg_cpu_since
from bench.hub_ramp import (
    HUB_PARTS,
    WORKERS,
    _drained,
    _loadavg,
    _store_rows,
    _stored_rows,
    _write,
    hub_with_homes,
    put_mixed,
    quit_workers,
    serve_worker,
    wait_stored,
)

HOMES = 1000
MESSAGES = 30_000
QUEUE_LIMIT = 100_000  # hub.conf max_queued_messages, per receiver
KEEPALIVE_LIMIT_S = 45.0  # 1.5 x the receivers' 30 s keepalive
QUEUED_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 180.0
YIELD_EVERY = 20  # puts between two turns of the event loop (the uplinks publish then)


# --- the gateway side ----------------------------------------------------------------------
async def _worker(cfg: dict[str, Any]) -> None:
    """Homes of one process: `put N` puts N messages and answers `queued PUT_S` once the
    broker has PUBACKed them all; `drain` answers `done` once every receipt is in."""
    from bench.hub_gateways import CONNECT_TIMEOUT_S, Home, _stop, _wait
    from bench.mqtt_loop import SharedNetworkLoop

    net = SharedNetworkLoop(f"drain{cfg['seed']}")
    net.start()
    homes = [Home(h, cfg, net) for h in cfg["homes"]]
    tasks = [asyncio.create_task(h.uplink.run(), name=h.home) for h in homes]
    alerts: list[list[str]] = []
    aggregates: list[list[Any]] = []
    hours = [0] * len(homes)
    try:
        connect_s = await _wait(
            lambda: all(h.uplink.connected for h in homes), CONNECT_TIMEOUT_S, "connect"
        )
        print(f"ready {connect_s:.3f}", flush=True)
        result: dict[str, Any] = {}
        while True:
            line = (await asyncio.to_thread(sys.stdin.readline)).split()
            if not line or line[0] not in ("put", "drain"):
                break
            if line[0] == "put":
                t0 = time.time()
                for serial in range(int(line[1])):
                    put_mixed(homes, hours, serial, alerts, aggregates)
                    if serial % YIELD_EVERY == 0:
                        await asyncio.sleep(0)
                put_s = time.time() - t0
                await _wait(lambda: all(_all_pubacked(h) for h in homes), QUEUED_TIMEOUT_S, "")
                result["put_s"] = put_s
                result["resent_while_paused"] = sum(h.uplink.resent for h in homes)
                print(f"queued {put_s:.3f} {time.time() - t0:.3f}", flush=True)
            else:
                try:
                    await _wait(_drained(homes), DRAIN_TIMEOUT_S, "")
                    result["drained"] = True
                except TimeoutError:
                    result["drained"] = False
                result |= {
                    "alerts": alerts,
                    "aggregates": aggregates,
                    "resent": sum(h.uplink.resent for h in homes),
                    "receipts": sum(h.uplink.receipts for h in homes),
                    "pending": sum(h.pending() for h in homes),
                }
                _write(Path(cfg["result"]), result)
                print("done", flush=True)
    finally:
        await _stop([t for t in tasks if not t.done()])
        for h in homes:
            h.outbox.close()
        net.stop()


def _all_pubacked(home: Any) -> bool:
    """Every aggregate PUBACKed (and deleted), every alert PUBACKed at least once (it waits
    for its receipt now)."""
    counts = home.outbox.counts()
    return counts["aggregates"] == 0 and home.uplink.waiting_receipts() >= counts["alerts"]


# --- the figures (pure) --------------------------------------------------------------------
def drain_figures(
    *,
    sent: set[Any],
    stored: list[tuple[Any, float]],
    resume: float,
    cpu_s: dict[str, float],
    window_s: float,
    resent: int,
) -> dict[str, Any]:
    """The drain's figures from what the homes put (`sent`: alert ids and (home, hour)
    keys), what the store holds ((key, commit epoch) rows, repeats included: a key counts
    once, at its first commit), the resume time and each part's CPU over `window_s`.

    Stored per second = distinct messages put and stored / (resume -> last first-commit);
    `resent` alert messages the homes sent again are duplicates, counted apart."""
    first: dict[Any, float] = {}
    for key, commit in stored:
        if key in sent and (key not in first or commit < first[key]):
            first[key] = commit
    got = len(first)
    span = max(first.values()) - resume if first else float("nan")
    hub = sum(cpu_s.get(k, 0.0) for k in HUB_PARTS)
    return {
        "messages": len(sent),
        "stored": got,
        "lost": len(sent) - got,
        "unexpected_in_store": len({k for k, _c in stored if k not in sent}),
        "duplicates_sent": resent,
        "resume_to_last_commit_s": round(span, 3),
        "stored_per_s": round(got / span, 1) if got and span > 0 else 0.0,
        "cpu_cores_busy": {k: round(v / window_s, 2) for k, v in cpu_s.items()}
        if window_s > 0
        else {},
        "cpu_ms_per_message": {
            **{k: round(1000 * v / got, 3) if got else None for k, v in cpu_s.items()},
            "hub": round(1000 * hub / got, 3) if got else None,
        },
        "cpu_s": {k: round(v, 3) for k, v in cpu_s.items()},
    }


def _keepalive_exceeded(log: Path) -> int:
    """Lines of the broker's log saying a client was dropped for its keepalive."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    return sum("exceeded timeout" in line for line in text.splitlines())


def run(
    homes: int = HOMES,
    messages: int = MESSAGES,
    workers: int = WORKERS,
    durable: bool = True,
) -> dict[str, Any]:
    from bench.hub_gateways import AGGREGATE_BASE_S
    from cloud_bridge.contract import iso_utc

    with hub_with_homes(homes, workers, durable, module="bench.hub_drain") as ctx:
        started, dsn, folder = ctx["workers"], ctx["dsn"], ctx["folder"]
        receivers = ctx["receiver_procs"]
        watched: dict[str, list[int]] = ctx["watched"]
        before = _stored_rows(dsn)
        load_before = _loadavg()
        paused = time.time()
        for proc in receivers:
            proc.send_signal(signal.SIGSTOP)
        try:
            share = [messages // workers + (w < messages % workers) for w in range(workers)]
            for (proc, _r, _e), n in zip(started, share, strict=True):
                assert proc.stdin is not None
                proc.stdin.write(f"put {n}\n")
                proc.stdin.flush()
            queued = [
                _expect_line(p, "queued", e, QUEUED_TIMEOUT_S + 60.0).split()
                for p, _r, e in started
            ]
            cpu0 = {k: sum(_cpu_s(p) for p in pids) for k, pids in watched.items()}
            pg_cpu0 = _pg_cpu_s(ctx["pg"])
            resume = time.time()
        finally:
            for proc in receivers:
                proc.send_signal(signal.SIGCONT)
        for proc, _r, _e in started:
            assert proc.stdin is not None
            proc.stdin.write("drain\n")
            proc.stdin.flush()
        for proc, _r, err in started:
            _expect_line(proc, "done", err, DRAIN_TIMEOUT_S + 60.0)
        results = [json.loads(res.read_text()) for _p, res, _e in started]
        sent_alerts = {aid for r in results for _h, aid in r["alerts"]}
        sent_aggs = {
            (h, iso_utc(AGGREGATE_BASE_S + hour * 3600))
            for r in results
            for h, hour in r["aggregates"]
        }
        wait_stored(dsn, before + len(sent_alerts) + len(sent_aggs), poll_s=0.2)
        end = time.time()
        cpu = {k: sum(_cpu_s(p) for p in pids) - cpu0[k] for k, pids in watched.items()}
        cpu["postgres"] = _pg_cpu_since(ctx["pg"], pg_cpu0)
        load_after = _loadavg()
        alert_rows, agg_rows = _store_rows(dsn, paused - 3600.0)
        announced = _announced([folder / f"{n}.out" for n in ctx["receiver_names"]])
        keepalive = _keepalive_exceeded(ctx["hub"].workdir / "mosquitto.log")
        quit_workers(started)
    stored = [(a[1], a[4]) for a in alert_rows] + [((a[0], a[1]), a[2]) for a in agg_rows]
    figures = drain_figures(
        sent=sent_alerts | sent_aggs,
        stored=stored,
        resume=resume,
        cpu_s=cpu,
        window_s=end - resume,
        resent=sum(r["resent"] for r in results),
    )
    per_receiver_queue = max(messages + figures["duplicates_sent"], 1) / len(receivers)
    announced_twice = sum(n - 1 for c in announced for n in c.values() if n > 1)
    return {
        **figures,
        "homes": homes,
        "receivers": len(receivers),
        "gateway_processes": workers,
        "alerts": len(sent_alerts),
        "aggregates": len(sent_aggs),
        "paused_s": round(resume - paused, 2),
        "put_s": round(max(float(q[1]) for q in queued), 2),
        "put_per_s_paused": round(messages / max(float(q[1]) for q in queued), 1),
        "resent_while_paused": sum(r["resent_while_paused"] for r in results),
        "receipts": sum(r["receipts"] for r in results),
        "drained": all(r["drained"] for r in results),
        "alerts_announced_twice": announced_twice,
        "keepalive_exceeded": keepalive,
        "queue_per_receiver_approx": round(per_receiver_queue),
        "queue_limit_per_receiver": QUEUE_LIMIT,
        "window_s": round(end - resume, 3),
        "load_average": {"before": load_before, "after": load_after},
        "store": "postgresql "
        + ("durable (fsync, synchronous_commit on)" if durable else "fsync off"),
        "tls": "TLS 1.2+, EC P-256 client certificate per home, committed hub.conf + hub.acl",
        "cores": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hub_drain", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--homes", type=int, default=HOMES)
    parser.add_argument("--messages", type=int, default=MESSAGES)
    parser.add_argument("--workers", type=int, default=WORKERS, help="gateway processes")
    parser.add_argument("--fast-store", action="store_true", help="PostgreSQL with fsync off")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return serve_worker(_worker, args.worker)
    result = run(args.homes, args.messages, args.workers, not args.fast_store)
    print(json.dumps(result, indent=2))
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
