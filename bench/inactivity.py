"""Inactivity detection on the shared real homes: false alerts and detection delay.

`python -m bench.inactivity` learns each home's routine on its first `LEARN_DAYS` days,
then monitors the rest through the production `RoutineDetector`:

* false alerts: inactivity-type alerts (`inactivity`, `no_morning_activity`,
  `bathroom_long`) raised on the real monitored days, per 30 days (night exits apart);
* detection delay: at many moments of day and night (every `EPISODE_EVERY_S`, at home),
  every event after the moment is cut, as if the resident had become unable to move, and
  time runs on for 24 h: delay from the moment to the first inactivity-type alert, median,
  90th percentile and misses (nothing within 12 h), split day (07:00-22:00) / night;
  "late" is the delay counted from the resident's next real sign of life instead (how much
  later than the data itself could show anything was wrong);
* the fixed-rule baseline (no sign of life for 12 h) on the same moments and days.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from edge.detect.routine import RoutineDetector
from edge.eval_inactivity import replay
from edge.events import AlertType, Finding
from edge.home import Thresholds
from edge.replay import load_events, rooms_of

AMBIENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ambient"
HOMES = {
    "casas": "casas_al_smarthome_dev.csv.gz",
    "ordonezA": "ordonezA_dev_events.csv.gz",
    "ordonezB": "ordonezB_dev_events.csv.gz",
}
DAY_S = 86400.0
LEARN_DAYS = 7
EPISODE_EVERY_S = 37 * 60.0  # not a divisor of a day: the moments sweep all times of day
HORIZON_S = 24 * 3600.0
MISS_S = 12 * 3600.0
BASELINE_S = 12 * 3600.0
DAY_FROM_H, DAY_TO_H = 7.0, 22.0
INACTIVITY_TYPES = frozenset(
    {AlertType.INACTIVITY, AlertType.NO_MORNING_ACTIVITY, AlertType.BATHROOM_LONG}
)
_LOGGER_MISS: list[tuple[str, str, float | None]] = []
GOALS = {"fa_per_30d": 1.0, "median_day_min": 60.0, "median_night_min": 120.0, "misses": 0}


def _is_day(t: float) -> bool:
    h = (t % DAY_S) / 3600.0
    return DAY_FROM_H <= h < DAY_TO_H


def _split(first: float) -> float:
    """Midnight after LEARN_DAYS observed days (a first day seen < 12 h does not count)."""
    day0 = first // DAY_S * DAY_S
    return day0 + (LEARN_DAYS if first - day0 < DAY_S / 2 else LEARN_DAYS + 1) * DAY_S


def _first_alert(det: RoutineDetector, start: float) -> float | None:
    t = start
    while t < start + HORIZON_S:
        t += 60.0
        for e in det.advance(t):
            if isinstance(e, Finding) and e.action == "raise" and e.type in INACTIVITY_TYPES:
                return t
    return None


def _stats(delays_min: list[float | None]) -> dict[str, Any]:
    hits = sorted(d for d in delays_min if d is not None and d <= MISS_S / 60)
    misses = len(delays_min) - len(hits)
    if not hits:
        return {"n": len(delays_min), "median_min": None, "p90_min": None, "misses": misses}
    p90 = hits[min(len(hits) - 1, int(0.9 * len(hits)))] if misses == 0 else None
    if misses:  # a miss counts as later than any hit
        ranked = hits + [float("inf")] * misses
        p90 = ranked[min(len(ranked) - 1, int(0.9 * len(ranked)))]
        med = statistics.median(ranked)
    else:
        med = statistics.median(hits)
    return {
        "n": len(delays_min),
        "median_min": None if med == float("inf") else round(med, 1),
        "p90_min": None if p90 == float("inf") else round(p90, 1),
        "misses": misses,
    }


def run_home(name: str, path: Path) -> dict[str, Any]:
    events = load_events(path)
    th = Thresholds()
    det = RoutineDetector(rooms_of(events), dt.UTC, th)
    split = _split(events[0].at)
    history = [e for e in events if e.at < split]
    monitor = [e for e in events if e.at >= split]
    replay(det, history, split)
    learned = det.model.learned
    end = monitor[-1].at
    moments = []
    t = split + EPISODE_EVERY_S / 2
    while t < end - 3600.0:
        moments.append(t)
        t += EPISODE_EVERY_S
    signs = [e.at for e in events]
    episodes: list[dict[str, Any]] = []

    def at_moment(m: float) -> None:
        if det.away or det.last_sign is None:
            episodes.append({"at": m, "away": True})
            return
        cut = copy.deepcopy(det)
        alert = _first_alert(cut, m)
        nxt = next((s for s in signs if s > m), None)
        last = det.last_sign
        episodes.append(
            {
                "at": m,
                "away": False,
                "delay_min": None if alert is None else (alert - m) / 60.0,
                "late_min": None
                if alert is None or nxt is None
                else max(0.0, alert - nxt) / 60.0,
                "baseline_min": max(0.0, last + BASELINE_S - m) / 60.0,
            }
        )

    emissions = replay(det, monitor, end, start=split, checkpoints=moments, on_checkpoint=at_moment)
    raised = [
        e for e in emissions if isinstance(e, Finding) and e.action == "raise"
    ]
    first_raise: dict[str, Finding] = {}
    for f in raised:
        first_raise.setdefault(f.key, f)
    false_alerts = [f for f in first_raise.values() if f.type in INACTIVITY_TYPES]
    night_exits = [f for f in first_raise.values() if f.type is AlertType.NIGHT_EXIT]
    monitored_days = (end - split) / DAY_S
    mon_signs = [s for s in signs if s >= split]
    base_fa = sum(1 for a, b in itertools.pairwise(mon_signs) if b - a > BASELINE_S)
    home = [e for e in episodes if not e["away"]]
    out: dict[str, Any] = {
        "home": name,
        "learned_days": LEARN_DAYS,
        "learned": learned,
        "monitored_days": round(monitored_days, 2),
        "false_alerts": [
            {"type": str(f.type), "at": _stamp(f.at), "evidence": dict(f.evidence)}
            for f in false_alerts
        ],
        "night_exits": [_stamp(f.at) for f in night_exits],
        "baseline_false_alerts": base_fa,
        "episodes_at_home": len(home),
        "episodes_away_skipped": len(episodes) - len(home),
    }
    for label, pick in (("day", True), ("night", False)):
        part = [e for e in home if _is_day(e["at"]) == pick]
        out[label] = {
            "routine": _stats([e["delay_min"] for e in part]),
            "late_vs_next_sign": _stats([e["late_min"] for e in part]),
            "baseline_12h": _stats([e["baseline_min"] for e in part]),
        }
    out["_episodes"] = home
    for e in home:
        if e["delay_min"] is None or e["delay_min"] > MISS_S / 60:
            _LOGGER_MISS.append((name, _stamp(e["at"]), e["delay_min"]))
    return out


def _stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


def run() -> dict[str, Any]:
    """Run every shared home; returns per-home figures and the pooled totals."""
    t0 = time.monotonic()
    homes = [run_home(name, AMBIENT / f) for name, f in HOMES.items()]
    days = sum(h["monitored_days"] for h in homes)
    fa = sum(len(h["false_alerts"]) for h in homes)
    base_fa = sum(h["baseline_false_alerts"] for h in homes)
    pooled: dict[str, Any] = {}
    for label, pick in (("day", True), ("night", False)):
        eps = [e for h in homes for e in h["_episodes"] if _is_day(e["at"]) == pick]
        pooled[label] = {
            "routine": _stats([e["delay_min"] for e in eps]),
            "late_vs_next_sign": _stats([e["late_min"] for e in eps]),
            "baseline_12h": _stats([e["baseline_min"] for e in eps]),
        }
    for h in homes:
        del h["_episodes"]
    total = {
        "monitored_days": round(days, 2),
        "false_alerts": fa,
        "fa_per_30d": round(fa * 30 / days, 2) if days else None,
        "night_exits": sum(len(h["night_exits"]) for h in homes),
        "baseline_false_alerts": base_fa,
        "baseline_fa_per_30d": round(base_fa * 30 / days, 2) if days else None,
        **pooled,
    }
    return {"homes": homes, "total": total, "goals": GOALS, "seconds": time.monotonic() - t0}


def _fmt(s: dict[str, Any]) -> str:
    med = "-" if s["median_min"] is None else f"{s['median_min']:.0f}"
    p90 = "-" if s["p90_min"] is None else f"{s['p90_min']:.0f}"
    return f"{med:>6} {p90:>6} {s['misses']:>3}/{s['n']:<4}"


def print_table(result: dict[str, Any]) -> None:
    head = f"{'':<10}{'days':>6} {'FA':>3} {'FA/30d':>7}  {'part':<6}"
    head += f"{'routine: med  p90 miss/n':>26}  {'late: med p90':>18}"
    head += f"  {'12h rule: med p90 miss':>26}"
    print(head)
    rows = [(h["home"], h, len(h["false_alerts"])) for h in result["homes"]]
    tot = result["total"]
    rows.append(("ALL", tot, tot["false_alerts"]))
    for name, h, fa in rows:
        days = h["monitored_days"]
        for label in ("day", "night"):
            part = h[label]
            lead = " " * 29
            if label == "day":
                lead = f"{name:<10}{days:>6.1f} {fa:>3} {fa * 30 / days:>7.2f}  "
            print(
                f"{lead}{label:<6}{_fmt(part['routine']):>26}  "
                f"{_fmt(part['late_vs_next_sign']):>18}  {_fmt(part['baseline_12h']):>26}"
            )
    print(
        f"12-hour rule false alerts: {tot['baseline_false_alerts']} "
        f"({tot['baseline_fa_per_30d']} per 30 days); night exits raised: {tot['night_exits']}"
    )
    for h in result["homes"]:
        for f in h["false_alerts"]:
            print(f"  false alert {h['home']}: {f['type']} at {f['at']} {f['evidence']}")
    print(f"goals: {result['goals']}  ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    res = run()
    print_table(res)
    if "--json" in sys.argv:
        print(json.dumps(res, indent=1, default=str))
