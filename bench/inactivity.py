"""Inactivity detection on the shared real homes: false alerts and detection delay.

`python -m bench.inactivity [--json]` runs the production `RoutineDetector` on each home's
events, split by time:

* **report part**: the last `REPORT_SHARE` of each home's calendar days; never used to
  choose anything. The detector learns on every earlier day (as `veille eval-inactivity`
  does with a history file), then monitors the report days, adapting as it goes.
* **validation (rolling origin)** on the earlier days only: for each k from
  `FOLD_FIRST_DAY`, learn on days 1..k and monitor day k+1. Each candidate limit rule
  (`CANDIDATES`, `edge.detect.inactivity.LimitParams`) is scored on these folds; the rule
  kept is the one with no false alert on the folds and the shortest median delays. The
  production default (`DEFAULT_PARAMS`) must be that rule: the bench says so if it is not.

Figures, for the monitored days:

* false alerts: inactivity-type alerts (`inactivity`, `no_morning_activity`,
  `bathroom_long`) raised on the real days, per 30 days (night exits apart);
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
import dataclasses
import datetime as dt
import itertools
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.detect.inactivity import DEFAULT_PARAMS, MINUTE_S, LimitParams, RoutineModel
from edge.detect.routine import RoutineDetector
from edge.eval_inactivity import replay
from edge.events import AlertType, Event, Finding
from edge.home import Thresholds
from edge.replay import load_events, rooms_of

AMBIENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ambient"
HOMES = {
    "casas": "casas_al_smarthome_dev.csv.gz",
    "ordonezA": "ordonezA_dev_events.csv.gz",
    "ordonezB": "ordonezB_dev_events.csv.gz",
}
DAY_S = 86400.0
REPORT_SHARE = 0.3  # the last 30 % of each home's days: reported, never used for choices
FOLD_FIRST_DAY = 5  # validation folds learn on at least this many days
EPISODE_EVERY_S = 37 * 60.0  # not a divisor of a day: the moments sweep all times of day
HORIZON_S = 24 * 3600.0
MISS_S = 12 * 3600.0
BASELINE_S = 12 * 3600.0
DAY_FROM_H, DAY_TO_H = 7.0, 22.0
INACTIVITY_TYPES = frozenset(
    {AlertType.INACTIVITY, AlertType.NO_MORNING_ACTIVITY, AlertType.BATHROOM_LONG}
)
GOALS = {"fa_per_30d": 1.0, "median_day_min": 60.0, "median_night_min": 120.0, "misses": 0}
FIRST_PASS = LimitParams(
    window_bins=6,
    margin_min_s=30 * MINUTE_S,
    margin_fraction=0.35,
    pool_weight=0.5,
    get_up_margin_s=45 * MINUTE_S,
    get_up_spread_factor=0.5,
)
CANDIDATES: tuple[LimitParams, ...] = tuple(
    LimitParams(
        window_bins=w,
        margin_min_s=m * MINUTE_S,
        margin_fraction=f,
        pool_weight=0.5,
        get_up_margin_s=g * MINUTE_S,
        get_up_spread_factor=gs,
    )
    for w, (m, f), (g, gs) in itertools.product(
        (4, 6), ((30, 0.35), (45, 0.2), (60, 0.1)), ((45, 0.5), (60, 1.0))
    )
)


def _is_day(t: float) -> bool:
    h = (t % DAY_S) / 3600.0
    return DAY_FROM_H <= h < DAY_TO_H


def _first_alert(det: RoutineDetector, start: float) -> float | None:
    t = start
    while t < start + HORIZON_S:
        t += 60.0
        for e in det.advance(t):
            if isinstance(e, Finding) and e.action == "raise" and e.type in INACTIVITY_TYPES:
                return t
    return None


def _stats(delays_min: Sequence[float | None]) -> dict[str, Any]:
    hits = sorted(d for d in delays_min if d is not None and d <= MISS_S / 60)
    misses = len(delays_min) - len(hits)
    ranked = hits + [math.inf] * misses  # a miss counts as later than any hit
    if not ranked:
        return {"n": 0, "median_min": None, "p90_min": None, "misses": 0}
    med = statistics.median(ranked)
    p90 = ranked[min(len(ranked) - 1, int(0.9 * len(ranked)))]
    return {
        "n": len(ranked),
        "median_min": None if math.isinf(med) else round(med, 1),
        "p90_min": None if math.isinf(p90) else round(p90, 1),
        "misses": misses,
    }


def _days(events: Sequence[Event]) -> tuple[float, int]:
    """First local midnight and the number of calendar days the events cover."""
    day0 = events[0].at // DAY_S * DAY_S
    return day0, math.ceil((events[-1].at - day0) / DAY_S)


def run_period(
    events: Sequence[Event], split: float, end: float, params: LimitParams, learning_days: int
) -> dict[str, Any]:
    """Learn on events before `split`, monitor [split, end): false alerts and episodes."""
    th = dataclasses.replace(Thresholds(), learning_days=learning_days)
    model = RoutineModel(thresholds=th, params=params)
    det = RoutineDetector(rooms_of(events), dt.UTC, th, model)
    history = [e for e in events if e.at < split]
    monitor = [e for e in events if split <= e.at < end]
    replay(det, history, split)
    learned = det.model.learned
    moments = []
    t = split + EPISODE_EVERY_S / 2
    while t < end - 3600.0:
        moments.append(t)
        t += EPISODE_EVERY_S
    signs = [e.at for e in events]
    episodes: list[dict[str, Any]] = []

    def at_moment(m: float) -> None:
        if det.away or det.last_sign is None:
            return  # out of home: not an incapacity at home
        alert = _first_alert(copy.deepcopy(det), m)
        nxt = next((s for s in signs if s > m), None)
        episodes.append(
            {
                "at": m,
                "day": _is_day(m),
                "delay_min": None if alert is None else (alert - m) / 60.0,
                "late_min": None if alert is None or nxt is None else max(0.0, alert - nxt) / 60,
                "baseline_min": max(0.0, det.last_sign + BASELINE_S - m) / 60.0,
            }
        )

    emissions = replay(det, monitor, end, start=split, checkpoints=moments, on_checkpoint=at_moment)
    first_raise: dict[str, Finding] = {}
    for f in emissions:
        if isinstance(f, Finding) and f.action == "raise":
            first_raise.setdefault(f.key, f)
    mon_signs = [s for s in signs if split <= s < end]
    return {
        "learned": learned,
        "days": (end - split) / DAY_S,
        "false_alerts": [
            {"type": str(f.type), "at": _stamp(f.at), "evidence": dict(f.evidence)}
            for f in first_raise.values()
            if f.type in INACTIVITY_TYPES
        ],
        "night_exits": [
            _stamp(f.at) for f in first_raise.values() if f.type is AlertType.NIGHT_EXIT
        ],
        "baseline_false_alerts": sum(
            1 for a, b in itertools.pairwise(mon_signs) if b - a > BASELINE_S
        ),
        "episodes": episodes,
    }


def _stamp(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _figures(name: str, parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    days = sum(p["days"] for p in parts)
    fa = [f for p in parts for f in p["false_alerts"]]
    base_fa = sum(p["baseline_false_alerts"] for p in parts)
    eps = [e for p in parts for e in p["episodes"]]
    out: dict[str, Any] = {
        "home": name,
        "monitored_days": round(days, 2),
        "false_alerts": fa,
        "fa_per_30d": round(len(fa) * 30 / days, 2) if days else None,
        "night_exits": [x for p in parts for x in p["night_exits"]],
        "baseline_false_alerts": base_fa,
        "baseline_fa_per_30d": round(base_fa * 30 / days, 2) if days else None,
    }
    for label, pick in (("day", True), ("night", False)):
        part = [e for e in eps if e["day"] == pick]
        out[label] = {
            "routine": _stats([e["delay_min"] for e in part]),
            "late_vs_next_sign": _stats([e["late_min"] for e in part]),
            "baseline_12h": _stats([e["baseline_min"] for e in part]),
        }
    return out


def _load() -> dict[str, list[Event]]:
    return {name: load_events(AMBIENT / f) for name, f in HOMES.items()}


def validate(homes: dict[str, list[Event]], params: LimitParams) -> dict[str, Any]:
    """Rolling origin on the earlier days: learn on days 1..k, monitor day k+1."""
    parts = []
    for events in homes.values():
        day0, n = _days(events)
        dev_days = n - round(REPORT_SHARE * n)
        for k in range(FOLD_FIRST_DAY, dev_days):
            split = day0 + k * DAY_S
            parts.append(run_period(events, split, split + DAY_S, params, min(7, k - 1)))
    return _figures("folds", parts)


def report(homes: dict[str, list[Event]], params: LimitParams) -> dict[str, Any]:
    """Learn on the earlier days, monitor the report part; per home and pooled."""
    per: list[dict[str, Any]] = []
    parts = []
    for name, events in homes.items():
        day0, n = _days(events)
        split = day0 + (n - round(REPORT_SHARE * n)) * DAY_S
        part = run_period(events, split, events[-1].at, params, int(Thresholds().learning_days))
        parts.append(part)
        per.append(_figures(name, [part]))
    return {"homes": per, "total": _figures("ALL", parts)}


def _score(fig: dict[str, Any]) -> tuple[float, ...]:
    """Fewest false alerts and misses first, then the shortest median delays."""
    med = [fig[p]["routine"]["median_min"] for p in ("day", "night")]
    misses = fig["day"]["routine"]["misses"] + fig["night"]["routine"]["misses"]
    return (
        len(fig["false_alerts"]),
        misses,
        sum(math.inf if m is None else m for m in med),
    )


def run(candidates: Sequence[LimitParams] = CANDIDATES) -> dict[str, Any]:
    """Validation of every candidate, the choice, and the report-part figures."""
    t0 = time.monotonic()
    homes = _load()
    scored = [(p, validate(homes, p)) for p in candidates]
    chosen, chosen_fig = min(scored, key=lambda pf: _score(pf[1]))
    return {
        "validation": [{"params": p.to_dict(), **_brief(f)} for p, f in scored],
        "chosen": chosen.to_dict(),
        "chosen_validation": _brief(chosen_fig),
        "default_is_chosen": chosen == DEFAULT_PARAMS,
        "report": report(homes, DEFAULT_PARAMS),
        "report_first_pass": report(homes, FIRST_PASS),
        "goals": GOALS,
        "seconds": round(time.monotonic() - t0, 1),
    }


def _brief(fig: dict[str, Any]) -> dict[str, Any]:
    return {
        "days": fig["monitored_days"],
        "false_alerts": len(fig["false_alerts"]),
        "day": fig["day"]["routine"],
        "night": fig["night"]["routine"],
    }


def _fmt(s: dict[str, Any]) -> str:
    med = "-" if s["median_min"] is None else f"{s['median_min']:.0f}"
    p90 = "-" if s["p90_min"] is None else f"{s['p90_min']:.0f}"
    return f"{med:>6} {p90:>6} {s['misses']:>3}/{s['n']:<4}"


def _rule(p: dict[str, Any]) -> str:
    return (
        f"+/-{p['window_min']:.0f} min, +{p['margin_min']:.0f} min +{p['margin_fraction']:.0%},"
        f" up +{p['get_up_margin_min']:.0f}+{p['get_up_spread_factor']:.1f}sd"
    )


def print_table(result: dict[str, Any]) -> None:
    print("VALIDATION (rolling origin on the earlier 70 % of days; learn 1..k, monitor k+1)")
    print(f"{'rule':<44}{'days':>6} {'FA':>3}  {'day med p90 miss/n':>26}  {'night':>20}")
    for v in result["validation"]:
        print(
            f"{_rule(v['params']):<44}{v['days']:>6.1f} {v['false_alerts']:>3}  "
            f"{_fmt(v['day']):>26}  {_fmt(v['night']):>20}"
        )
    print(
        f"chosen: {_rule(result['chosen'])}; production default is the chosen rule: "
        f"{result['default_is_chosen']}"
    )
    for title, key in (
        ("REPORT (last 30 % of days, learned on the earlier days): production rule", "report"),
        ("REPORT, same days: the first pass's rule, for comparison", "report_first_pass"),
    ):
        print()
        print(title)
        _print_report(result[key])
    print(f"goals: {result['goals']}  ({result['seconds']:.0f} s)")


def _print_report(rep: dict[str, Any]) -> None:
    head = f"{'':<10}{'days':>6} {'FA':>3} {'FA/30d':>7}  {'part':<6}"
    head += f"{'routine: med  p90 miss/n':>26}  {'late: med p90':>18}"
    head += f"  {'12h rule: med p90 miss':>26}"
    print(head)
    for h in [*rep["homes"], rep["total"]]:
        days = h["monitored_days"]
        fa = len(h["false_alerts"])
        for label in ("day", "night"):
            part = h[label]
            lead = " " * 29
            if label == "day":
                lead = f"{h['home']:<10}{days:>6.1f} {fa:>3} {fa * 30 / days:>7.2f}  "
            print(
                f"{lead}{label:<6}{_fmt(part['routine']):>26}  "
                f"{_fmt(part['late_vs_next_sign']):>18}  {_fmt(part['baseline_12h']):>26}"
            )
    tot = rep["total"]
    print(
        f"12-hour rule false alerts: {tot['baseline_false_alerts']} "
        f"({tot['baseline_fa_per_30d']} per 30 days); night exits raised: {len(tot['night_exits'])}"
    )
    for f in tot["false_alerts"]:
        print(f"  false alert: {f['type']} at {f['at']} {f['evidence']}")


if __name__ == "__main__":
    res = run()
    print_table(res)
    if "--json" in sys.argv:
        print(json.dumps(res, indent=1, default=str))
