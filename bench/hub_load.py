"""A thousand homes: `python -m bench.hub_load [--homes N]` prints one JSON object.

Everything is real and on this machine:

- the hub broker is Mosquitto running the committed `firmware_configs/mosquitto/hub.conf`
  and `hub.acl` (TLS only, a client certificate per home, per-home ACL), rendered for a free
  loopback port and a test CA made for the run (EC P-256, one certificate per home);
- N simulated gateways (`bench.hub_gateways`: the real `Outbox` and `Uplink`, a few worker
  processes with one network thread each) put `alerts` alerts and `aggregates` hourly
  aggregates per home at random moments within `spread_s` seconds, and drain them;
- R `veille hub` receivers (the real command, separate processes) share the traffic
  through the shared subscription `$share/hub/...` and write to ONE PostgreSQL store
  (Debian's server, started here on loopback; durable by default: fsync and
  synchronous_commit on, as a production hub would run it).

Reported: messages per second (stored, from the first put to the last commit), alert
delivery latency (put in the gateway's outbox -> committed in the hub's store, from
PostgreSQL's commit timestamps) p50/p99/max, lost and duplicated counts, and the CPU time
of the broker, the receivers, PostgreSQL and the gateways. Lost = put in an outbox but not
in the store; duplicated = an alert state that a receiver announced as new more than once
(what care staff would see twice), or anything in the store that no gateway sent.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cloud_bridge.contract import alert_topic, encode, iso_utc
from cloud_bridge.hub_store_pg import PostgresHubStore
from edge.events import new_alert_id
from tests.pg import Postgres, running_postgres
from tests.support import TlsHub, make_hub_pki, tls_client

REPO = Path(__file__).resolve().parents[1]
HOMES = 1000
RECEIVERS = 3
WORKERS = 4
ALERTS_PER_HOME = 3
AGGREGATES_PER_HOME = 10
# The homes' messages are put at random moments within SPREAD_S: 1000 homes * 13 messages
# over 60 s offer ~217 messages/s, about half of what one durable PostgreSQL commits per
# second on a disk with ~420 fsyncs/s (the limit: one commit per message). `--spread 0`
# puts everything at once (every home back after an outage): that measures capacity.
SPREAD_S = 60.0
PROBE_HOME = "bench-probe"
START_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 180.0
SETTLE_TIMEOUT_S = 120.0
POLL_S = 0.2
TMP_PARENT = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # certs, outboxes
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                kids.append(int(entry.name))
    return kids


def _pg_cpu_s(pg: Postgres) -> dict[int, float]:
    """CPU per process of the PostgreSQL cluster (postmaster, backends, writers)."""
    return {p: _cpu_s(p) for p in (pg.pid, *_children(pg.pid))}


def _pg_cpu_since(pg: Postgres, before: dict[int, float]) -> float:
    """CPU seconds the cluster used since `before` (a `_pg_cpu_s` reading; new backends
    count from zero)."""
    return sum(s - before.get(p, 0.0) for p, s in _pg_cpu_s(pg).items())


def receiver_names(n: int) -> list[str]:
    """The `veille hub` receivers' client names (and certificate files)."""
    return [f"hub-receiver-{k + 1}" for k in range(n)]


@dataclass(slots=True)
class HubParts:
    """A running hub: its broker, PostgreSQL store and receivers (see `running_hub`)."""

    folder: Path
    pg: Postgres
    dsn: str
    hub: TlsHub
    names: list[str]
    procs: list[subprocess.Popen[bytes]]


def running_hub(
    stack: ExitStack,
    home_ids: list[str],
    receivers: int,
    durable: bool,
    setup: dict[str, float] | None = None,
) -> HubParts:
    """A temporary folder, the test CA with a certificate per home, receiver and probe,
    PostgreSQL with commit timestamps (schema made), Mosquitto on the committed hub.conf +
    hub.acl with TLS, and `receivers` `veille hub` processes subscribed; all stopped when
    `stack` closes. `setup`, when given, gets the seconds each part took."""
    timings = {} if setup is None else setup
    names = receiver_names(receivers)
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=TMP_PARENT)))
    t = time.perf_counter()
    tls_dir = make_hub_pki(folder / "tls", homes=(*home_ids, PROBE_HOME), receivers=tuple(names))
    timings["pki_s"] = time.perf_counter() - t
    t = time.perf_counter()
    pg = stack.enter_context(
        running_postgres(durable=durable, settings={"track_commit_timestamp": "on"})
    )
    dsn = pg.new_database("hub")
    PostgresHubStore(dsn).close()  # the schema, before the receivers race for it
    timings["postgres_s"] = time.perf_counter() - t
    hub = TlsHub(folder / "broker", tls_dir=tls_dir, receivers=tuple(names))
    hub.start()
    stack.callback(hub.stop)
    t = time.perf_counter()
    procs = stack.enter_context(_receivers(hub, dsn, names, folder))
    _wait_receivers(hub, [folder / f"{name}.out" for name in names], procs)
    timings["receivers_s"] = time.perf_counter() - t
    return HubParts(folder, pg, dsn, hub, names, procs)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _ms_stats(seconds: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of durations given in seconds, in milliseconds."""
    if not seconds:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(1000 * _percentile(seconds, 0.50), 1),
        "p99": round(1000 * _percentile(seconds, 0.99), 1),
        "max": round(1000 * max(seconds), 1),
    }


@contextmanager
def _receivers(hub: TlsHub, dsn: str, names: list[str], folder: Path) -> Iterator[list[Any]]:
    """Start `veille hub` once per name; stop them with SIGTERM (a clean stop) at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    files: list[IO[bytes]] = []
    tls = hub.tls_dir
    try:
        for name in names:
            out = open(folder / f"{name}.out", "wb")  # noqa: SIM115 (closed below)
            files.append(out)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "edge.commands.cli",
                        "hub",
                        "--broker",
                        hub.url,
                        "--store",
                        dsn,
                        "--ca-file",
                        str(tls / "ca.pem"),
                        "--cert-file",
                        str(tls / f"{name}.pem"),
                        "--key-file",
                        str(tls / f"{name}.key"),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=REPO,
                )
            )
            time.sleep(0.01)  # over TLS the broker names each receiver by its certificate
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for file in files:
            file.close()


def _wait_receivers(hub: TlsHub, outs: list[Path], procs: list[Any]) -> None:
    """Publish probe alerts until every receiver has stored one: all are subscribed.

    A shared subscription with no member drops what is published, so the homes may start
    only once every receiver is in the group; the broker hands the probes round-robin.
    """
    client = tls_client(hub.tls_dir, PROBE_HOME, client_id=PROBE_HOME)
    client.connect("127.0.0.1", hub.port)
    client.loop_start()
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not all(PROBE_HOME in p.read_text(errors="replace") for p in outs):
            for proc, out in zip(procs, outs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"a receiver exited:\n{out.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise TimeoutError("the receivers did not all subscribe")
            now = time.time()
            probe: dict[str, Any] = {
                "schema": "veille.alert/1", "id": new_alert_id(now), "home_id": PROBE_HOME,
                "type": "sos", "severity": "info", "state": "raised", "at": iso_utc(now),
                "raised_at": iso_utc(now), "room": None, "device_id": None, "evidence": {},
            }  # fmt: skip
            client.publish(alert_topic(PROBE_HOME), encode(probe), qos=1).wait_for_publish(5)
            time.sleep(0.1)
    finally:
        client.disconnect()
        client.loop_stop()


def _start_workers(
    hub: TlsHub, folder: Path, homes: list[str], workers: int, plan: dict[str, Any]
) -> list[tuple[subprocess.Popen[str], Path]]:
    started = []
    for w in range(workers):
        cfg = {
            **plan,
            "homes": homes[w::workers],
            "port": hub.port,
            "tls_dir": str(hub.tls_dir),
            "outbox_dir": str(folder / "outboxes"),
            "seed": 1000 + w,
            "result": str(folder / f"worker-{w}.json"),
        }
        cfg_path = folder / f"worker-{w}.cfg.json"
        cfg_path.write_text(json.dumps(cfg))
        err = open(folder / f"worker-{w}.err", "wb")  # noqa: SIM115 (the child owns it)
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.hub_gateways", str(cfg_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=REPO,
            text=True,
        )
        err.close()
        started.append((proc, Path(cfg["result"])))
    return started


def _kill_all(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _expect_line(proc: subprocess.Popen[str], word: str, err: Path, timeout_s: float) -> str:
    """The worker's next line, which must start with `word` and come within `timeout_s`."""
    assert proc.stdout is not None
    readable, _w, _x = select.select([proc.stdout], [], [], timeout_s)
    line = proc.stdout.readline() if readable else f"nothing in {timeout_s:.0f} s"
    if not line.startswith(word):
        raise RuntimeError(f"gateway worker said {line!r}:\n{err.read_text(errors='replace')}")
    return line


def _settle(dsn: str, expected: int) -> None:
    """Wait until the store holds every message, or nothing has arrived for a while."""
    import psycopg

    last, last_change = -1, time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM alert_states s JOIN alerts a USING (id)"
                " WHERE a.home_id <> %s) + (SELECT count(*) FROM aggregates)",
                (PROBE_HOME,),
            ).fetchone()
            n = int(row[0]) if row else 0
            if n >= expected:
                return
            if n != last:
                last, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > SETTLE_TIMEOUT_S / 4:
                return
            time.sleep(POLL_S)


def _store_figures(dsn: str) -> dict[str, Any]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        alerts = conn.execute(
            "SELECT a.home_id, s.id, s.received_at, (a.evidence->>'bench_sent_at')::float8,"
            " extract(epoch FROM pg_xact_commit_timestamp(s.xmin))::float8"
            " FROM alert_states s JOIN alerts a USING (id) WHERE a.home_id <> %s",
            (PROBE_HOME,),
        ).fetchall()
        aggregates = conn.execute(
            "SELECT home_id, period_start,"
            " extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM aggregates"
        ).fetchall()
        statuses = conn.execute("SELECT count(*) FROM statuses").fetchone()
    return {"alerts": alerts, "aggregates": aggregates, "statuses": statuses[0] if statuses else 0}


def _announced(outs: list[Path]) -> list[Counter[tuple[str, str]]]:
    """Per receiver: (id, state) of each alert it printed as new (`[hub] ... id=...`)."""
    counts = []
    for out in outs:
        seen: Counter[tuple[str, str]] = Counter()
        for line in out.read_text(errors="replace").splitlines():
            parts = line.split()
            if line.startswith("[hub] ") and len(parts) >= 7 and parts[2] != PROBE_HOME:
                seen[(parts[-1].removeprefix("id="), parts[5])] += 1
        counts.append(seen)
    return counts


def run(
    homes: int = HOMES,
    *,
    receivers: int = RECEIVERS,
    workers: int = WORKERS,
    alerts: int = ALERTS_PER_HOME,
    aggregates: int = AGGREGATES_PER_HOME,
    spread_s: float = SPREAD_S,
    durable: bool = True,
) -> dict[str, Any]:
    """Run the whole bench once and return its figures (see the module docstring)."""
    workers = max(1, min(workers, homes))
    home_ids = [f"home-{i:04d}" for i in range(homes)]
    setup: dict[str, float] = {}
    with ExitStack() as stack:
        parts = running_hub(stack, home_ids, receivers, durable, setup)
        folder, pg, dsn, hub, names, procs = (
            parts.folder, parts.pg, parts.dsn, parts.hub, parts.names, parts.procs
        )  # fmt: skip
        assert hub.proc is not None
        outs = [folder / f"{name}.out" for name in names]
        plan = {"alerts": alerts, "aggregates": aggregates, "spread_s": spread_s}
        started = _start_workers(hub, folder, home_ids, workers, plan)
        stack.callback(_kill_all, [p for p, _ in started])
        errs = [folder / f"worker-{w}.err" for w in range(workers)]
        ready = [
            float(_expect_line(proc, "ready", err, READY_TIMEOUT_S).split()[1])
            for (proc, _), err in zip(started, errs, strict=True)
        ]
        t0 = time.time() + 0.5
        watched = {"broker": [hub.proc.pid], "workers": [p.pid for p, _ in started]}
        watched |= {name: [proc.pid] for name, proc in zip(names, procs, strict=True)}
        cpu0 = {k: sum(_cpu_s(p) for p in pids) for k, pids in watched.items()}
        pg_cpu0 = _pg_cpu_s(pg)
        for proc, _ in started:
            assert proc.stdin is not None
            proc.stdin.write(f"go {t0}\n")
            proc.stdin.flush()
        for (proc, _), err in zip(started, errs, strict=True):
            _expect_line(proc, "done", err, READY_TIMEOUT_S + spread_s)
        total = homes * (alerts + aggregates)
        _settle(dsn, total)
        end = time.time()
        cpu = {k: sum(_cpu_s(p) for p in pids) - cpu0[k] for k, pids in watched.items()}
        cpu["postgres"] = _pg_cpu_since(pg, pg_cpu0)
        results = []
        for proc, path in started:
            proc.wait(30)
            results.append(json.loads(path.read_text()))
        stored = _store_figures(dsn)
        announced = _announced(outs)
    return _report(
        homes=homes, names=names, workers=workers, plan=plan, setup=setup, ready=ready,
        results=results, stored=stored, announced=announced, t0=t0, end=end, cpu=cpu,
        durable=durable,
    )  # fmt: skip


def _report(
    *,
    homes: int,
    names: list[str],
    workers: int,
    plan: dict[str, Any],
    setup: dict[str, float],
    ready: list[float],
    results: list[dict[str, Any]],
    stored: dict[str, Any],
    announced: list[Counter[tuple[str, str]]],
    t0: float,
    end: float,
    cpu: dict[str, float],
    durable: bool,
) -> dict[str, Any]:
    sent_alerts = {(home, aid) for r in results for home, aid in r["alerts"]}
    sent_aggs = {
        (f"home-{i:04d}", iso_utc(1_717_200_000 + h * 3600))
        for i in range(homes)
        for h in range(plan["aggregates"])
    }
    got_alerts = {(home, aid) for home, aid, _received, _sent, _commit in stored["alerts"]}
    got_aggs = {(home, start) for home, start, _commit in stored["aggregates"]}
    latencies = [commit - sent for _h, _i, _r, sent, commit in stored["alerts"]]
    # split: put -> a receiver's on_message (uplink, broker, receiver queue), then the write
    to_receiver = [received - sent for _h, _i, received, sent, _c in stored["alerts"]]
    store_write = [commit - received for _h, _i, received, _s, commit in stored["alerts"]]
    commits = [c for *_x, c in stored["alerts"]] + [c for *_x, c in stored["aggregates"]]
    total = sum(announced, Counter())
    dup_announced = sum(n - 1 for n in total.values() if n > 1)
    messages = len(sent_alerts) + len(sent_aggs)
    span = (max(commits) - t0) if commits else float("nan")
    return {
        "homes": homes,
        "receivers": len(names),
        "gateway_processes": workers,
        "messages": {"alerts": len(sent_alerts), "aggregates": len(sent_aggs), "total": messages},
        "spread_s": plan["spread_s"],
        "offered_per_s": round(messages / plan["spread_s"], 1) if plan["spread_s"] else None,
        "messages_per_s": round(messages / span, 1) if commits else 0.0,
        "first_put_to_last_commit_s": round(span, 3),
        "alert_latency_ms": _ms_stats(latencies),
        "put_to_receiver_ms": _ms_stats(to_receiver),
        "receiver_to_commit_ms": _ms_stats(store_write),
        "lost": {
            "alerts": len(sent_alerts - got_alerts),
            "aggregates": len(sent_aggs - got_aggs),
        },
        "duplicated": {
            "announced_twice": dup_announced,
            "unexpected_in_store": len(got_alerts - sent_alerts) + len(got_aggs - sent_aggs),
        },
        "lost_total": len(sent_alerts - got_alerts) + len(sent_aggs - got_aggs),
        "duplicated_total": dup_announced
        + len(got_alerts - sent_alerts)
        + len(got_aggs - sent_aggs),
        "alerts_per_receiver": [sum(c.values()) for c in announced],
        "alarm_log": {
            "alerts": sum(r["alarm_log_alerts"] for r in results),
            "undelivered": sum(r["alarm_log_undelivered"] for r in results),
        },
        "uplink_delivered": sum(r["delivered"] for r in results),
        # the uplink may send a row again between its PUBACK and its deletion: the broker
        # takes both, the store keeps one (these are the duplicates dedupe removed)
        "sent_twice_deduped": sum(r["delivered"] for r in results) - messages,
        "refused_by_broker": sum(r["refused"] for r in results),
        # Uplink.run waits with asyncio.wait_for, which on 3.11 can swallow a cancel()
        "uplinks_that_ignored_cancel": sum(r["uplinks_that_ignored_cancel"] for r in results),
        "statuses_stored": stored["statuses"],
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_cores_busy": {k: round(v / (end - t0), 2) for k, v in cpu.items()},
        "setup_s": {
            **{k: round(v, 2) for k, v in setup.items()},
            "gateways_connect_s": round(max(ready), 2),
        },
        "store": "postgresql "
        + ("durable (fsync, synchronous_commit on)" if durable else "fsync off"),
        "tls": "TLS 1.2+, EC P-256 client certificate per home, committed hub.conf + hub.acl",
        "cores": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hub_load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--homes", type=int, default=HOMES)
    parser.add_argument("--receivers", type=int, default=RECEIVERS)
    parser.add_argument("--workers", type=int, default=WORKERS, help="gateway processes")
    parser.add_argument("--alerts", type=int, default=ALERTS_PER_HOME, help="per home")
    parser.add_argument("--aggregates", type=int, default=AGGREGATES_PER_HOME, help="per home")
    parser.add_argument("--spread", type=float, default=SPREAD_S, help="seconds (0: one burst)")
    parser.add_argument("--fast-store", action="store_true", help="PostgreSQL with fsync off")
    args = parser.parse_args(argv)
    result = run(
        args.homes,
        receivers=args.receivers,
        workers=args.workers,
        alerts=args.alerts,
        aggregates=args.aggregates,
        spread_s=args.spread,
        durable=not args.fast_store,
    )
    print(json.dumps(result, indent=2))
    return 0 if result["lost_total"] == 0 and result["duplicated_total"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
