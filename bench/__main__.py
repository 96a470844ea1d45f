"""`python -m bench [--quick] [--out DIR] [--only NAME ...]`: every benchmark, one report.

Runs, one after the other (one core each at most): the pipeline (issue 2), the fall detector,
the inactivity replay, the outbox, the backlog drain, the hub under load and the gateway's
footprint (issue 7); writes `report.md` and `report.json` in `bench/reports/` (or `--out`):
each figure beside its baseline measured in the same run and its target, pass or fail, the
machine and the date. A benchmark that fails is reported as such; the others still run.
`--quick`: 2 minutes of steady state instead of 10 for the footprint, fewer pipeline
messages, 100 homes for the hub; the report says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import machine

REPORTS = Path(__file__).resolve().parent / "reports"
ORDER = (
    "pipeline",
    "fall",
    "inactivity",
    "outbox",
    "drain",
    "hub_load",
    "hub_ramp",
    "hub_drain",
    "footprint",
)
Row = tuple[str, str, str, str, str]  # figure, value, baseline, target, pass


def _call(name: str, quick: bool) -> dict[str, Any]:
    module = importlib.import_module(f"bench.{name}")
    run: Callable[..., dict[str, Any]] = module.run
    if name == "pipeline":
        return run(messages=5_000 if quick else 20_000)
    if name == "footprint":
        return run(quick=quick)
    if name == "hub_load":
        return run(homes=100 if quick else 1000)
    if name == "hub_ramp":
        return run(homes=1000, quick=quick)
    return run()


def _ok(flag: bool | None) -> str:
    return "—" if flag is None else ("pass" if flag else "**FAIL**")


def _g(d: dict[str, Any], *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def rows_pipeline(r: dict[str, Any]) -> list[Row]:
    gw, base = r["gateway"], r["baseline_bare_subscriber"]
    return [
        (
            "events/s end to end (local broker -> hub)",
            f"{gw['events_per_s']:,.0f}",
            f"bare paho subscriber {base['events_per_s']:,.0f}/s "
            f"(ratio {r['rate_ratio']:.2f}; publisher {gw['publisher_per_s']:,.0f}/s)",
            ">= 0.5 x bare",
            _ok(r["pass"]["rate_ratio"]),
        ),
        (
            f"SOS publish -> alert at hub, p50 / p99 ({gw['latency']['n']} buttons)",
            f"{gw['latency']['p50_ms']} / {gw['latency']['p99_ms']} ms",
            f"bare subscriber {base['latency']['p50_ms']} / {base['latency']['p99_ms']} ms",
            "p99 < 50 ms",
            _ok(r["pass"]["p99_ms"]),
        ),
    ]


def rows_fall(r: dict[str, Any]) -> list[Row]:
    t = r["targets"]
    return [
        (
            f"fall detector streaming ({r['signal_hours']} h SisFall, one core)",
            f"{r['realtime_x_onnx']:,}x real time",
            f"sklearn in the detector {r['realtime_x_sklearn']:,}x",
            f">= {t['realtime_x']:,}x",
            _ok(r["realtime_x_onnx"] >= t["realtime_x"]),
        ),
        (
            "fall model, one window (median / p99)",
            f"{r['window_ms_onnx_median']} / {r['window_ms_onnx_p99']} ms",
            f"sklearn {r['window_ms_sklearn_median']} / {r['window_ms_sklearn_p99']} ms",
            f"< {t['window_ms']} ms",
            _ok(r["window_ms_onnx_median"] < t["window_ms"]),
        ),
        (
            "fall model file",
            f"{r['onnx_bytes'] / 1000:,.0f} kB",
            "—",
            f"< {t['onnx_bytes'] / 1e6:g} MB",
            _ok(r["onnx_bytes"] < t["onnx_bytes"]),
        ),
    ]


def _delay(s: dict[str, Any] | None) -> str:
    if not s:
        return "—"
    return f"median {s['median_min']} min, p90 {s['p90_min']}, misses {s['misses']}/{s['n']}"


def rows_inactivity(r: dict[str, Any]) -> list[Row]:
    tot = r.get("report", r)["total"]  # with a validation step: the held-out report
    goals = r.get("goals", {})
    met = r.get("verdict", {})
    out: list[Row] = [
        (
            f"inactivity staff alerts per 30 days ({tot['monitored_days']} real days)",
            f"{tot['fa_per_30d']}",
            f"fixed 12 h rule {tot['baseline_fa_per_30d']}",
            f"<= {goals.get('fa_per_30d', '—')}",
            _ok(met.get("fa_per_30d")),
        ),
        (
            "check-ins per day (all answered on real days)",
            f"{tot.get('checkins_per_day')}",
            "—",
            f"<= {goals.get('checkins_per_day', '—')}",
            _ok(met.get("checkins_per_day")),
        ),
    ]
    for part, key, goal in (
        ("day", "routine", "median_day_min"),
        ("night", "late_vs_next_sign", "median_night_beyond_floor_min"),
        ("off_furniture", "routine", "median_off_furniture_min"),
    ):
        p = tot.get(part, {})
        label = "beyond the floor" if key == "late_vs_next_sign" else "delay"
        out.append(
            (
                f"inactivity {label}, {part.replace('_', ' ')}",
                _delay(p.get(key)),
                f"fixed 12 h rule: {_delay(p.get('baseline_12h'))}",
                f"median <= {goals.get(goal, '—')} min",
                _ok(met.get(goal)),
            )
        )
    return out


def rows_outbox(r: dict[str, Any]) -> list[Row]:
    b, e = r["append_backlog_100k"], r["append_empty"]
    base = r["baseline_plain_file_fsync_per_s"]
    return [
        (
            "outbox durable append, 100k backlog, one message per transaction",
            f"{b['single_per_s']:,.0f}/s",
            f"empty outbox {e['single_per_s']:,.0f}/s; plain file + fsync {base:,.0f}/s",
            ">= 2,000/s",
            _ok(b["single_per_s"] >= 2000),
        ),
        (
            f"outbox durable append, 100k backlog, {r['batch']} per transaction",
            f"{b['batched_messages_per_s']:,.0f}/s",
            f"empty outbox {e['batched_messages_per_s']:,.0f}/s; "
            f"SQLite sync=OFF {r['baseline_sqlite_sync_off_per_s']:,.0f}/s (one per txn)",
            ">= 2,000/s",
            _ok(b["batched_messages_per_s"] >= 2000),
        ),
        (
            "outbox size of a 100k-message backlog",
            f"{r['backlog']['disk_bytes'] / 1e6:.1f} MB",
            f"{r['backlog']['bytes_per_message']} B/message",
            "—",
            "—",
        ),
    ]


def rows_drain(r: dict[str, Any]) -> list[Row]:
    return [
        (
            f"{r['backlog']:,}-message outbox drained by the uplink to a hub Mosquitto",
            f"{r['drain_s']} s ({r['drain_per_s']:,.0f}/s)",
            f"bare paho QoS 1, rounds of 100: {r['baseline_bare_paho_s']} s",
            f"<= {r['target_s']:.0f} s",
            _ok(r["pass"]),
        )
    ]


def rows_hub_load(r: dict[str, Any]) -> list[Row]:
    lat = r["alert_latency_ms"]
    return [
        (
            f"hub: {r['homes']} homes, {r['receivers']} receivers, PostgreSQL",
            f"{r['messages_per_s']:,.0f} msg/s stored; alert p50/p99 {lat['p50']}/{lat['p99']} ms",
            f"offered {r['offered_per_s']}/s",
            "no loss, no duplicate",
            _ok(r["lost_total"] == 0 and r["duplicated_total"] == 0),
        )
    ]


def rows_hub_ramp(r: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for s in r["steps"]:
        lat, cpu = s["alert_latency_ms"], s["cpu_cores_busy"]
        busy = ", ".join(f"{k} {v}" for k, v in cpu.items())
        per_msg = ", ".join(f"{k} {v}" for k, v in (s.get("cpu_ms_per_message") or {}).items())
        load = s.get("load_average")
        rows.append(
            (
                f"hub ramp, {r['homes']} homes, {s['offered_per_s']:,.0f} msg/s offered "
                f"({s['seconds']:g} s)",
                f"{s['stored_per_s']:,.0f} msg/s stored; alert p50/p99 "
                f"{lat['p50']}/{lat['p99']} ms; lost {s['lost']}",
                f"put by the gateways {s['put_per_s']:,.0f}/s; cores busy: {busy}; "
                f"CPU ms per message: {per_msg}; load average {load}",
                "—",
                "—",
            )
        )
    t = r["targets"]
    w = r.get("where_it_stands") or {}
    if w.get("last_good_offered_per_s") is not None:
        ms = w["cpu_ms_per_message"]
        fit = {k: v["ms_per_message"] for k, v in (w.get("marginal_cpu") or {}).items()}
        rows.append(
            (
                f"hub capacity implied by its CPU per message (hub alone, {w['cores']} cores)",
                f"{w['hub_alone_capacity_per_s']:,} msg/s: {ms['hub']} ms per message (broker "
                f"{ms['broker']}, receivers {ms['receivers']}, PostgreSQL {ms['postgres']}) at "
                f"the last good step, {w['last_good_offered_per_s']:,.0f} msg/s offered, "
                f"{w['last_good_stored_per_s']:,.0f} stored, p99 {w['last_good_alert_p99_ms']} ms",
                f"with the simulated homes on the same cores {w['with_the_homes_capacity_per_s']:,}"
                f" msg/s (homes {ms['gateways']} ms per message); fitted over the steps, idle "
                f"apart: hub {fit.get('hub')}, homes {fit.get('gateways')} ms per message; load "
                f"average {w['load_average']}",
                f">= {t['stored_per_s']:,.0f} msg/s",
                _ok((w["hub_alone_capacity_per_s"] or 0) >= t["stored_per_s"]),
            )
        )
    rows += [
        (
            f"hub capacity (ramp stopped: {r['stop_reason']})",
            f"{r['max_stored_per_s_without_loss']:,.0f} msg/s stored without loss",
            f"at {r['at_offered_per_s']} msg/s offered; the disk's fdatasync rate "
            f"{r.get('disk_fdatasync_per_s')}/s",
            f">= {t['stored_per_s']:,.0f} msg/s",
            _ok(r["pass"]["stored_per_s"]),
        ),
        (
            f"hub alert p99 put -> stored, {r['homes']} homes, steady "
            f"({r['steady_offered_per_s']} msg/s)",
            f"{r['steady_alert_p99_ms']} ms",
            "—",
            f"<= {t['alert_p99_ms_steady']:.0f} ms",
            _ok(r["pass"]["alert_p99_ms_steady"]),
        ),
    ]
    return rows


def rows_hub_drain(r: dict[str, Any]) -> list[Row]:
    busy = ", ".join(f"{k} {v}" for k, v in r["cpu_cores_busy"].items())
    per_msg = ", ".join(f"{k} {v}" for k, v in r["cpu_ms_per_message"].items())
    load = r["load_average"]
    return [
        (
            f"hub backlog drain, {r['homes']} homes ({r['messages']:,} messages queued in the "
            "broker while the receivers were paused, then resumed)",
            f"{r['stored_per_s']:,.0f} msg/s stored (distinct), resume -> last commit "
            f"{r['resume_to_last_commit_s']} s; lost {r['lost']}; duplicates sent by the "
            f"homes {r['duplicates_sent']:,} (deduped)",
            f"the ramp's figure (homes competing for the cores) beside it; cores busy: {busy}; "
            f"CPU ms per message: {per_msg}; load average before {load['before']}, after "
            f"{load['after']}",
            ">= 2,000 msg/s",
            _ok(r["lost"] == 0 and r["stored_per_s"] >= 2000),
        )
    ]


def _parts(parts: dict[str, float] | None) -> str:
    """ "(anon A + file F)" for a footprint figure that has its parts."""
    return f" (anon {parts['anon_mb']} + file {parts['file_mb']})" if parts else ""


def _as_found(startup: dict[str, Any]) -> str:
    """The idle figure with the page cache as found (the method before issue 16) beside."""
    found, idle = startup.get("veille_run_idle_rss_as_found_mb"), startup["veille_run_idle_rss_mb"]
    if not found:
        return ""
    return (
        f"; idle `veille run` {idle} MB after a boot, {found['rss_mb']} MB with the page "
        f"cache as found{_parts(found)}"
    )


def _footprint_home(label: str, h: dict[str, Any], base_mb: float, target: float) -> list[Row]:
    st, wk, af = h["steady"], h["week"], h["after_week"]
    steady = f"{st['seconds'] / 60:.0f} min"
    if h["home"]["wearables_streaming_hz"] and not h.get("fall_model_loaded", True):
        steady += ", FALL MODEL NOT LOADED"
    return [
        (
            f"RSS of the gateway, {label}, after {steady} at real time",
            f"{st['rss_mb']} MB" + _parts(st.get("rss_parts_mb")),
            f"python importing the same libraries {base_mb} MB; "
            f"idle paho subscriber {h['baseline']['idle_paho_subscriber_rss_mb']} MB"
            + _as_found(h["startup"]),
            f"<= {target:.0f} MB",
            _ok(st["rss_mb"] <= target),
        ),
        (
            f"RSS, {label}, after a simulated week (hub down) / after the drain",
            f"{wk['rss_mb']} / {af['rss_mb']} MB (growth {wk['rss_growth_mb']:+} MB)",
            f"after {steady}: {st['rss_mb']} MB",
            f"<= {target:.0f} MB, no growth",
            _ok(max(wk["rss_mb"], af["rss_mb"]) <= target),
        ),
    ]


def rows_footprint(r: dict[str, Any]) -> list[Row]:
    z, f, imp, t = r["zigbee_only"], r["full"], r["imports"], r["targets"]
    each = ", ".join(f"{m.split('.')[0]} {mb}" for m, mb in imp["each_mb"].items())
    st, wk = f["steady"], f["week"]
    return [
        *_footprint_home("Zigbee-only home", z, imp["zigbee_set_mb"], t["rss_zigbee_mb"]),
        *_footprint_home(
            "full home (wearable at 50 Hz, 2 BTHome, pages)",
            f,
            imp["full_set_mb"],
            t["rss_full_mb"],
        ),
        (
            "RSS of a bare python importing one library (locked production set: "
            + ", ".join(f"{k} {v}" for k, v in imp.get("versions", {}).items())
            + ")",
            f"python alone {imp['python_mb']} MB",
            each + " MB",
            "—",
            "—",
        ),
        (
            "CPU, share of one core at steady state (full home)",
            f"{st['cpu_pct_one_core']} % (after the week: {f['after_week']['cpu_pct_one_core']} %)",
            f"idle paho subscriber {f['baseline']['idle_paho_subscriber_cpu_pct']} %",
            f"<= {t['cpu_pct']:g} %",
            _ok(st["cpu_pct_one_core"] <= t["cpu_pct"]),
        ),
        (
            "start-up of `veille run`, process start -> /health 200 (median of 5): "
            "Zigbee-only / full",
            f"{z['startup']['median_s']} / {f['startup']['median_s']} s",
            f"python importing the full home's libraries {imp['full_set_import_s_median']} s",
            f"<= {t['startup_s']:g} s",
            _ok(max(z["startup"]["median_s"], f["startup"]["median_s"]) <= t["startup_s"]),
        ),
        (
            "outbox on disk after a simulated week with the hub down (full home)",
            f"{wk['backlog_disk_bytes'] / 1e3:,.0f} kB "
            f"({wk['hub_down_backlog'].get('alerts', 0)} alerts, "
            f"{wk['hub_down_backlog'].get('aggregates', 0)} aggregates)",
            f"drained in {wk['drain_s']} s once the hub was back (incl. reconnect backoff)",
            "—",
            "—",
        ),
    ]


ROWS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "pipeline": rows_pipeline,
    "fall": rows_fall,
    "inactivity": rows_inactivity,
    "outbox": rows_outbox,
    "drain": rows_drain,
    "hub_load": rows_hub_load,
    "hub_ramp": rows_hub_ramp,
    "hub_drain": rows_hub_drain,
    "footprint": rows_footprint,
}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Veille benchmark report",
        "",
        f"Date: {report['date']} · command: `{report['command']}`"
        + (
            " · **quick run** (shorter steady state, fewer messages and homes)"
            if report["quick"]
            else ""
        ),
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_mb']} MB, {m['distro']} "
        f"({m['os']}), Python {m['python']}; numpy {m['numpy']}, onnxruntime "
        f"{m['onnxruntime']}, paho-mqtt {m['paho_mqtt']}, SQLite {m['sqlite']}, Mosquitto "
        f"{m['mosquitto']}; load average at start {m['loadavg_at_start']}.",
        "",
        "| benchmark | figure | value | baseline (same run) | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for name in report["order"]:
        res = report["results"].get(name)
        if res is None:
            continue
        if "error" in res:
            lines.append(f"| {name} | not available | {res['error']} | — | — | **FAIL** |")
            continue
        try:
            rows = ROWS[name](res)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            rows = [("figures unreadable", repr(exc), "—", "—", "**FAIL**")]
        for fig, value, base, target, ok in rows:
            lines.append(f"| {name} | {fig} | {value} | {base} | {target} | {ok} |")
    lines += ["", f"Seconds per benchmark: {report['seconds']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter run (see above)")
    parser.add_argument("--out", type=Path, default=REPORTS, help="report folder")
    parser.add_argument("--only", nargs="+", choices=ORDER, help="run only these")
    args = parser.parse_args(argv)
    names = tuple(n for n in ORDER if not args.only or n in args.only)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench" + (" --quick" if args.quick else ""),
        "quick": args.quick,
        "machine": machine(),
        "order": list(names),
        "results": {},
        "seconds": {},
    }
    md = ""
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            report["results"][name] = _call(name, args.quick)
        except ModuleNotFoundError as exc:
            report["results"][name] = {"error": f"benchmark not available ({exc})"}
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            report["results"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        report["seconds"][name] = round(time.monotonic() - t0, 1)
        md = _write(report, args.out)  # after each one: an interrupted run keeps its figures
    print(md)
    return 0


def _write(report: dict[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = markdown(report)
    (out / "report.md").write_text(md)
    return md


if __name__ == "__main__":
    sys.exit(main())
