"""Hub capacity, measured: `python -m bench.hub_ramp [--homes N] [--quick]` prints JSON.

The real parts of `bench.hub_load` (the committed `hub.conf` + `hub.acl` on Mosquitto, TLS
with a client certificate per home, the real `Outbox` and `Uplink` of every simulated home
in a few gateway processes, 3 `veille hub` receivers on the shared subscription, one durable
PostgreSQL), set up once; then the offered load is stepped up. In each step the homes put
`rate` messages per second for `step_s` seconds into their outboxes (round-robin over the
homes, 3 alerts for 10 hourly aggregates, each alert stamped with the moment it was put),
the outboxes drain, and the store is read back:

- stored messages per second (the step's messages / first put -> last commit),
- alert latency put -> committed in PostgreSQL (commit timestamps) p50 / p99 / max, split
  into put -> a receiver's `on_message` and that -> commit,
- lost (put, not in the store once the store stops growing) and late puts (the gateway
  processes could not offer the rate: then the offered figure is what they managed),
- CPU of each part (broker, receivers, PostgreSQL, gateway processes) in cores and in ms
  per stored message (the gateways' figure without the bench's own reading of their alarm
  logs), and the load average (the machine may be shared: say what else ran),
- where the time goes: py-spy samples every receiver and one gateway process through the
  step (active samples, by function, self and inclusive).

`where_it_stands` says where the hub is: the last good step (no loss, alert p99 within
`P99_LIMIT_S`), the CPU per message of each part there, and the capacity that implies on
this machine's cores for the hub alone (broker + receivers + PostgreSQL) and with the
simulated homes on the same cores; beside it, the cost per message fitted over the steps
with each part's idle CPU apart (`marginal_cpu`). `--start` / `--max` run a part of the ramp.

The ramp starts at `START_PER_S` and doubles until the first loss, or the alert p99 passes
`P99_LIMIT_S` (in two steps in a row: one step over it at a low rate can be a single stall
of this shared machine; the first such step is reported), or `MAX_PER_S`. The hub code is
measured as it is, never changed here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.hub_load import (
    PROBE_HOME,
    READY_TIMEOUT_S,
    RECEIVERS,
    _cpu_s,
    _expect_line,
    _kill_all,
    _ms_stats,
    _pg_cpu_s,
    _pg_cpu_since,
    running_hub,
)

REPO = Path(__file__).resolve().parents[1]
HOMES = 1000
WORKERS = 4
START_PER_S = 50.0
MAX_PER_S = 6400.0
STEP_S = 20.0
STEP_QUICK_S = 8.0
P99_LIMIT_S = 1.0
ALERT_EVERY = (3, 13)  # 3 alerts in every 13 messages, as 3 alerts for 10 aggregates
DRAIN_TIMEOUT_S = 90.0
SETTLE_QUIET_S = 10.0  # the store has not grown for this long: what is missing is lost
PROFILE_RATE_HZ = 97
QUIET_S = 2.0
SLOWEST = 8  # alerts listed with their timings, per step
TARGETS = {"stored_per_s": 2000.0, "alert_p99_ms_steady": 200.0}
HUB_PARTS = ("broker", "receivers", "postgres")  # the hub; "gateways" are the simulated homes


# --- the gateway side: many homes per process ------------------------------------------------
async def _worker(cfg: dict[str, Any]) -> None:
    """Homes of one process; steps on `go T0 RATE SECONDS` lines, `quit` ends."""
    from bench.hub_gateways import CONNECT_TIMEOUT_S, Home, _stop, _wait
    from bench.mqtt_loop import SharedNetworkLoop

    net = SharedNetworkLoop(f"ramp{cfg['seed']}")
    net.start()
    homes = [Home(h, cfg, net) for h in cfg["homes"]]
    tasks = [asyncio.create_task(h.uplink.run(), name=h.home) for h in homes]
    hours = [0] * len(homes)  # each home's next aggregate hour: unique across steps
    serial = 0
    try:
        connect_s = await _wait(
            lambda: all(h.uplink.connected for h in homes), CONNECT_TIMEOUT_S, "connect"
        )
        print(f"ready {connect_s:.3f}", flush=True)
        while True:
            line = (await asyncio.to_thread(sys.stdin.readline)).split()
            if not line or line[0] != "go":
                break
            t0, rate, seconds = (float(x) for x in line[1:4])
            n = round(rate * seconds)
            alerts: list[list[str]] = []
            aggregates: list[list[Any]] = []
            late = 0.0
            for i in range(n):
                delay = t0 + i / rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    late = max(late, -delay)
                put_mixed(homes, hours, serial, alerts, aggregates)
                serial += 1
            put_end = time.time()
            try:
                await _wait(_drained(homes), DRAIN_TIMEOUT_S, "")
                drained = True
            except TimeoutError:
                drained = False
            # the bench's own reading (not a gateway's work): its CPU is reported apart
            cpu_read = time.process_time()
            step_ids = {aid for _h, aid in alerts}
            delivered = {
                e["id"]: _epoch(e["delivered_at"])
                for h in homes
                for e in h.outbox.alarm_log()
                if e["id"] in step_ids and e["delivered_at"]
            }
            result = {
                "alerts": alerts,
                "puback_at": delivered,
                "aggregates": aggregates,
                "put_end": put_end,
                "late_s": round(late, 3),
                "drained": drained,
                "pending": sum(h.pending() for h in homes),
                "bench_read_cpu_s": time.process_time() - cpu_read,
            }
            _write(Path(cfg["result"]), result)
            print("done", flush=True)
    finally:
        await _stop([t for t in tasks if not t.done()])
        for h in homes:
            h.outbox.close()
        net.stop()


def put_mixed(
    homes: list[Any],
    hours: list[int],
    serial: int,
    alerts: list[list[str]],
    aggregates: list[list[Any]],
) -> None:
    """Put message number `serial` of the mix (round-robin over the homes, 3 alerts in every
    13 messages) and note it in `alerts` ([home, id]) or `aggregates` ([home, hour])."""
    idx = serial % len(homes)
    home = homes[idx]
    if serial % ALERT_EVERY[1] < ALERT_EVERY[0]:
        home.put("alert", serial)
        alerts.append([home.home, home.alert_ids[-1]])
    else:
        home.put("aggregate", hours[idx])
        aggregates.append([home.home, hours[idx]])
        hours[idx] += 1


def _drained(homes: list[Any]) -> Any:
    """A check that every home's outbox is empty, which asks only the homes not yet seen
    empty (no puts come during the drain, and an emptied outbox stays empty)."""
    left = list(homes)

    def check() -> bool:
        left[:] = [h for h in left if h.pending()]
        return not left

    return check


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _write(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result))


def _start_workers(
    hub: Any, folder: Path, homes: list[str], workers: int, module: str = "bench.hub_ramp"
) -> list[tuple[subprocess.Popen[str], Path, Path]]:
    """`python -m MODULE --worker CFG` per gateway process, each with its share of homes."""
    started = []
    for w in range(workers):
        cfg = {
            "homes": homes[w::workers],
            "port": hub.port,
            "tls_dir": str(hub.tls_dir),
            "outbox_dir": str(folder / "outboxes"),
            "seed": 2000 + w,
            "result": str(folder / f"ramp-{w}.json"),
        }
        cfg_path = folder / f"ramp-{w}.cfg.json"
        cfg_path.write_text(json.dumps(cfg))
        err_path = folder / f"ramp-{w}.err"
        err = open(err_path, "wb")  # noqa: SIM115 (the child owns it)
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "--worker", str(cfg_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=REPO,
            text=True,
        )
        err.close()
        started.append((proc, Path(cfg["result"]), err_path))
    return started


# --- profiling ------------------------------------------------------------------------------
def _py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def _profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = _py_spy()
    if spy is None:
        return None
    return subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
         "--rate", str(PROFILE_RATE_HZ), "--format", "raw", "--nonblocking",
         "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _frame(frame: str) -> str:
    """`func (path/to/module.py:123)` -> `func (module.py)`."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})"


def profile_summary(raw: str, top: int = 12) -> dict[str, Any]:
    """Active samples by function (self: the leaf; inclusive: anywhere in the stack)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0].split(" ")[0] if frames else "?"] += n
        names = [_frame(f) for f in frames[1:]]
        if names:
            own[names[-1]] += n
        for name in set(names):
            incl[name] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / total, 1)) for k, v in c.most_common(top)] if total else []

    return {"samples": total, "self_pct": pct(own), "inclusive_pct": pct(incl)}


# --- one step -----------------------------------------------------------------------------------
def _store_rows(dsn: str, t0: float) -> tuple[list[Any], list[Any]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        alerts = conn.execute(
            "SELECT a.home_id, s.id, s.received_at, (a.evidence->>'bench_sent_at')::float8,"
            " extract(epoch FROM pg_xact_commit_timestamp(s.xmin))::float8"
            " FROM alert_states s JOIN alerts a USING (id)"
            " WHERE a.home_id <> %s AND (a.evidence->>'bench_sent_at')::float8 >= %s",
            (PROBE_HOME, t0 - 1.0),
        ).fetchall()
        aggregates = conn.execute(
            "SELECT home_id, period_start,"
            " extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 FROM aggregates"
        ).fetchall()
    return alerts, aggregates


def _wait_statuses(dsn: str, homes: int, timeout_s: float = 300.0) -> float | None:
    """Seconds until every receiver has stored every home's status (each receiver gets them
    all): a status for every home, and no status written for `QUIET_S`."""
    import psycopg

    t0 = time.monotonic()
    last: Any = None
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() - t0 < timeout_s:
            row = conn.execute(
                "SELECT count(*), max(received_at) FROM statuses WHERE home_id <> %s",
                (PROBE_HOME,),
            ).fetchone()
            if row and int(row[0]) >= homes and row[1] == last:
                return round(time.monotonic() - t0 - QUIET_S, 2)
            last = row[1] if row else None
            time.sleep(QUIET_S)
    return None


def _stored_rows(dsn: str) -> int:
    """Alert states + aggregates in the store: counted by PostgreSQL, so that waiting for a
    step's messages costs the store little (the step's exact figures are read once after)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM alert_states) + (SELECT count(*) FROM aggregates)"
        ).fetchone()
    return int(row[0]) if row else 0


def wait_stored(dsn: str, rows: int, poll_s: float = 0.5) -> None:
    """Until the store holds `rows` alert states + aggregates, or has not grown for
    `SETTLE_QUIET_S` (what is missing then is lost)."""
    last, changed = -1, time.monotonic()
    while True:
        n = _stored_rows(dsn)
        if n >= rows:
            return
        if n != last:
            last, changed = n, time.monotonic()
        elif time.monotonic() - changed > SETTLE_QUIET_S:
            return
        time.sleep(poll_s)


def _step(ctx: dict[str, Any], rate: float, seconds: float, index: int) -> dict[str, Any]:
    from bench.hub_gateways import AGGREGATE_BASE_S
    from cloud_bridge.contract import iso_utc

    started, dsn, folder = ctx["workers"], ctx["dsn"], ctx["folder"]
    watched: dict[str, list[int]] = ctx["watched"]
    cpu0 = {k: sum(_cpu_s(p) for p in pids) for k, pids in watched.items()}
    pg_cpu0 = _pg_cpu_s(ctx["pg"])
    before = _stored_rows(dsn)  # every alert id and aggregate hour of a step is new
    spies = {
        name: (_profile(pid, seconds + 2.0, folder / f"spy-{index}-{name}.txt"), name)
        for name, pid in ctx["profiled_pids"].items()
    }
    t0 = time.time() + 0.5
    per_worker = rate / len(started)
    for proc, _res, _err in started:
        assert proc.stdin is not None
        proc.stdin.write(f"go {t0} {per_worker} {seconds}\n")
        proc.stdin.flush()
    for proc, _res, err in started:
        _expect_line(proc, "done", err, seconds + DRAIN_TIMEOUT_S + 60.0)
    results = [json.loads(res.read_text()) for _p, res, _e in started]
    sent_alerts = {aid for r in results for _h, aid in r["alerts"]}
    sent_aggs = {
        (h, iso_utc(AGGREGATE_BASE_S + hour * 3600)) for r in results for h, hour in r["aggregates"]
    }
    expected = len(sent_alerts) + len(sent_aggs)
    wait_stored(dsn, before + expected)
    end = time.time()
    cpu = {k: sum(_cpu_s(p) for p in pids) - cpu0[k] for k, pids in watched.items()}
    cpu["postgres"] = _pg_cpu_since(ctx["pg"], pg_cpu0)
    bench_read = sum(r.get("bench_read_cpu_s", 0.0) for r in results)
    cpu["gateways"] = max(0.0, cpu["gateways"] - bench_read)
    alerts, aggregates = _store_rows(dsn, t0)
    alerts = [a for a in alerts if a[1] in sent_alerts]
    aggregates = [a for a in aggregates if (a[0], a[1]) in sent_aggs]
    commits = [a[4] for a in alerts] + [a[2] for a in aggregates]
    got = len({a[1] for a in alerts}) + len({(a[0], a[1]) for a in aggregates})
    span = max(commits) - t0 if commits else float("nan")
    put_span = max(r["put_end"] for r in results) - t0
    profiles = {}
    for name, (spy, _n) in spies.items():
        if spy is not None:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.send_signal(signal.SIGINT)
                spy.wait(10)
            path = folder / f"spy-{index}-{name}.txt"
            if path.exists():
                profiles[name] = profile_summary(path.read_text(errors="replace"))
    puback = {aid: t for r in results for aid, t in r["puback_at"].items()}
    slowest = sorted(alerts, key=lambda a: a[4] - a[3], reverse=True)[:SLOWEST]
    return {
        "offered_per_s": rate,
        "seconds": seconds,
        "messages": expected,
        "put_per_s": round(expected / put_span, 1) if put_span > 0 else None,
        "puts_late_s": max(r["late_s"] for r in results),
        "stored_per_s": round(got / span, 1) if commits else 0.0,
        "lost": expected - got,
        "drained": all(r["drained"] for r in results),
        "alert_latency_ms": _ms_stats([a[4] - a[3] for a in alerts]),
        # put -> the broker's PUBACK at the gateway (the uplink, the broker taking it in)
        "put_to_puback_ms": _ms_stats([puback[a[1]] - a[3] for a in alerts if a[1] in puback]),
        "put_to_receiver_ms": _ms_stats([a[2] - a[3] for a in alerts]),
        "receiver_to_commit_ms": _ms_stats([a[4] - a[2] for a in alerts]),
        "cpu_cores_busy": {k: round(v / (end - t0), 2) for k, v in cpu.items()},
        # CPU of each part for the step (puts, drain, settle) over the messages stored; the
        # hub's own parts (broker, receivers, PostgreSQL) apart from the simulated homes
        "cpu_ms_per_message": {
            **{k: round(1000 * v / got, 3) if got else None for k, v in cpu.items()},
            "hub": round(1000 * sum(cpu[k] for k in HUB_PARTS) / got, 3) if got else None,
            "total": round(1000 * sum(cpu.values()) / got, 3) if got else None,
        },
        "gateways_bench_read_cpu_s": round(bench_read, 2),
        "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "window_s": round(end - t0, 3),
        "stored": got,
        "load_average": _loadavg(),
        "profiles": profiles,
        # (put, s after the step's start; put -> PUBACK; put -> receiver; put -> commit), ms
        "slowest_alerts": [
            [
                round(a[3] - t0, 3),
                round(1000 * (puback[a[1]] - a[3]), 1) if a[1] in puback else None,
                round(1000 * (a[2] - a[3]), 1),
                round(1000 * (a[4] - a[3]), 1),
            ]
            for a in slowest
        ],
    }


def marginal_cpu(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Per part, CPU = idle cores x window + cost x messages, fitted over the steps (least
    squares): the cost of one more message apart from what each part spends idle (keepalives,
    polls: the per-step figure divides that by the messages too)."""
    rows = [(s["window_s"], s["stored"], s["cpu_s"]) for s in steps if s.get("stored")]
    if len(rows) < 2:
        return {}
    sdd = sum(d * d for d, _n, _c in rows)
    snn = sum(n * n for _d, n, _c in rows)
    sdn = sum(d * n for d, n, _c in rows)
    det = sdd * snn - sdn * sdn
    if det <= 0:
        return {}
    out: dict[str, Any] = {}
    for part in rows[0][2]:
        sdc = sum(d * c[part] for d, _n, c in rows)
        snc = sum(n * c[part] for _d, n, c in rows)
        idle = (snn * sdc - sdn * snc) / det
        cost = (sdd * snc - sdn * sdc) / det
        out[part] = {"ms_per_message": round(1000 * cost, 3), "idle_cores": round(idle, 3)}
    hub = sum(out[k]["ms_per_message"] for k in HUB_PARTS if k in out)
    out["hub"] = {"ms_per_message": round(hub, 3)}
    out["total"] = {"ms_per_message": round(sum(v["ms_per_message"] for k, v in out.items()
                                                if k not in ("hub",)), 3)}  # fmt: skip
    return out


def where_it_stands(steps: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    """The last good step (no loss, alert p99 within `P99_LIMIT_S`), the CPU each message
    cost there, and what that implies on `cores`: the hub's own parts (broker, receivers,
    PostgreSQL) with the machine to themselves, and everything with the simulated homes on
    the same cores as here (both upper bounds: CPU only, no waiting)."""
    good = [
        s
        for s in steps
        if s["lost"] == 0
        and s["alert_latency_ms"]["p99"] is not None
        and s["alert_latency_ms"]["p99"] <= 1000 * P99_LIMIT_S
    ]
    if not good:
        return {"last_good_offered_per_s": None}
    last = max(good, key=lambda s: s["offered_per_s"])
    ms = last["cpu_ms_per_message"]

    def cap(per_msg: float | None) -> float | None:
        return round(1000 * cores / per_msg) if per_msg else None

    return {
        "last_good_offered_per_s": last["offered_per_s"],
        "last_good_stored_per_s": last["stored_per_s"],
        "last_good_alert_p99_ms": last["alert_latency_ms"]["p99"],
        "load_average": last.get("load_average"),
        "cpu_ms_per_message": ms,
        "marginal_cpu": marginal_cpu([s for s in steps if s["lost"] == 0]),
        "cores": cores,
        "hub_alone_capacity_per_s": cap(ms.get("hub")),
        "with_the_homes_capacity_per_s": cap(ms.get("total")),
    }


def _loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (the machine is shared: say what else ran)."""
    return [round(x, 2) for x in os.getloadavg()]


def fsync_per_s() -> float | None:
    """The disk's one-8kB-write fdatasync rate (PostgreSQL's pg_test_fsync), on the file
    system of PostgreSQL's data folder: the ceiling of one durable commit at a time."""
    from tests.pg import pg_bindir

    with tempfile.TemporaryDirectory(prefix="veille-fsync-") as tmp:
        try:
            out = subprocess.run(
                [str(pg_bindir() / "pg_test_fsync"), "-s", "2", "-f", str(Path(tmp) / "f")],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
    for line in out.splitlines():  # the first section: one 8kB write
        parts = line.split()
        if parts[:1] == ["fdatasync"] and "ops/sec" in parts:
            return float(parts[1])
    return None


@contextmanager
def hub_with_homes(
    homes: int, workers: int, durable: bool, module: str = "bench.hub_ramp"
) -> Iterator[dict[str, Any]]:
    """The hub (committed hub.conf + hub.acl on Mosquitto with TLS, `RECEIVERS` `veille hub`
    receivers, one PostgreSQL with commit timestamps) and `homes` simulated homes in
    `workers` gateway processes (`python -m MODULE --worker`), all connected and every
    home's status stored; stopped at the end. Yields what a measurement needs."""
    home_ids = [f"home-{i:04d}" for i in range(homes)]
    with ExitStack() as stack:
        parts = running_hub(stack, home_ids, RECEIVERS, durable)
        folder, pg, dsn, hub, names, procs = (
            parts.folder, parts.pg, parts.dsn, parts.hub, parts.names, parts.procs
        )  # fmt: skip
        assert hub.proc is not None
        started = _start_workers(hub, folder, home_ids, workers, module)
        stack.callback(_kill_all, [p for p, _r, _e in started])
        connect_s = max(
            float(_expect_line(p, "ready", e, READY_TIMEOUT_S).split()[1]) for p, _r, e in started
        )
        statuses_s = _wait_statuses(dsn, homes)
        watched = {"broker": [hub.proc.pid], "gateways": [p.pid for p, _r, _e in started]}
        watched["receivers"] = [p.pid for p in procs]
        yield {
            "workers": started,
            "dsn": dsn,
            "folder": folder,
            "pg": pg,
            "hub": hub,
            "receiver_procs": procs,
            "receiver_names": names,
            "watched": watched,
            "connect_s": connect_s,
            "statuses_s": statuses_s,
            # every receiver, and one gateway process (a quarter of the homes)
            "profiled_pids": {
                **{n: p.pid for n, p in zip(names, procs, strict=True)},
                "gateways-0": started[0][0].pid,
            },
        }


def serve_worker(
    worker: Callable[[dict[str, Any]], Coroutine[Any, Any, None]], cfg_path: Path
) -> int:
    """A gateway process's `--worker CFG` entry: warnings only on stderr, then `worker`."""
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(worker(json.loads(cfg_path.read_text())))
    return 0


def quit_workers(started: list[tuple[subprocess.Popen[str], Path, Path]]) -> None:
    """Ask every gateway process to stop (`quit`), and kill what has not after 30 s."""
    for proc, _r, _e in started:
        assert proc.stdin is not None
        proc.stdin.write("quit\n")
        proc.stdin.flush()
    for proc, _r, _e in started:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(
    homes: int = HOMES,
    quick: bool = False,
    workers: int = WORKERS,
    durable: bool = True,
    *,
    start_per_s: float = START_PER_S,
    max_per_s: float = MAX_PER_S,
) -> dict[str, Any]:
    seconds = STEP_QUICK_S if quick else STEP_S
    steps: list[dict[str, Any]] = []
    stop_reason = f"reached {max_per_s:.0f} msg/s offered"
    with hub_with_homes(homes, workers, durable) as ctx:
        started = ctx["workers"]
        connect_s, statuses_s = ctx["connect_s"], ctx["statuses_s"]
        rate = start_per_s
        over: list[float] = []  # offered rates whose step had an alert p99 over the limit
        while rate <= max_per_s:
            print(f"bench.hub_ramp: {rate:.0f} msg/s offered ...", file=sys.stderr, flush=True)
            step = _step(ctx, rate, seconds, len(steps))
            steps.append(step)
            p99 = step["alert_latency_ms"]["p99"]
            if step["lost"]:
                stop_reason = f"first loss at {rate:.0f} msg/s offered"
                break
            if p99 is not None and p99 > 1000 * P99_LIMIT_S:
                over.append(rate)
                # one step over the limit at a low rate can be one stall of a shared machine:
                # the ramp stops at the second step in a row
                if len(over) >= 2 and over[-2] == rate / 2:
                    stop_reason = (
                        f"alert p99 over {P99_LIMIT_S:g} s at {over[-2]:.0f} and {rate:.0f} "
                        "msg/s offered"
                    )
                    break
            rate *= 2
        quit_workers(started)
    fsync = fsync_per_s()
    ok = [s for s in steps if s["lost"] == 0]
    best = max(ok, key=lambda s: s["stored_per_s"]) if ok else None
    steady = steps[0] if steps else None
    return {
        "where_it_stands": where_it_stands(steps, os.cpu_count() or 1),
        "homes": homes,
        "receivers": RECEIVERS,
        "gateway_processes": workers,
        "step_s": seconds,
        "gateways_connect_s": round(connect_s, 2),
        # every receiver stores every home's retained status when the homes connect: the
        # ramp starts once they are all stored, this long after the homes were connected
        "statuses_stored_after_s": statuses_s,
        "stop_reason": stop_reason,
        "first_p99_over_limit_at_offered_per_s": over[0] if over else None,
        "max_stored_per_s_without_loss": best["stored_per_s"] if best else 0.0,
        "at_offered_per_s": best["offered_per_s"] if best else None,
        "steady_alert_p99_ms": steady["alert_latency_ms"]["p99"] if steady else None,
        "steady_offered_per_s": steady["offered_per_s"] if steady else None,
        "steps": steps,
        "targets": TARGETS,
        "pass": {
            "stored_per_s": bool(best) and best["stored_per_s"] >= TARGETS["stored_per_s"],
            "alert_p99_ms_steady": bool(steady)
            and steady["alert_latency_ms"]["p99"] is not None
            and steady["alert_latency_ms"]["p99"] <= TARGETS["alert_p99_ms_steady"],
        },
        "store": "postgresql "
        + ("durable (fsync, synchronous_commit on)" if durable else "fsync off"),
        # baseline, same run: one durable commit at a time cannot go faster than this
        "disk_fdatasync_per_s": fsync,
        "tls": "TLS 1.2+, EC P-256 client certificate per home, committed hub.conf + hub.acl",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hub_ramp", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--homes", type=int, default=HOMES)
    parser.add_argument("--workers", type=int, default=WORKERS, help="gateway processes")
    parser.add_argument("--quick", action="store_true", help=f"{STEP_QUICK_S:g} s steps")
    parser.add_argument("--fast-store", action="store_true", help="PostgreSQL with fsync off")
    parser.add_argument("--start", type=float, default=START_PER_S, help="first rate, msg/s")
    parser.add_argument("--max", type=float, default=MAX_PER_S, help="last rate, msg/s")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return serve_worker(_worker, args.worker)
    result = run(
        args.homes,
        args.quick,
        args.workers,
        not args.fast_store,
        start_per_s=args.start,
        max_per_s=args.max,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
