"""Inactivity detection on the shared real homes: check-ins, staff alerts, detection delay.

`python -m bench.inactivity [--json]` runs the production `RoutineDetector` on each home's
events, split by time, with a simulated resident who answers every check-in half a minute
after it is asked (`edge.commands.eval_inactivity.answer_until`):

* **report part**: the last `REPORT_SHARE` of each home's calendar days; never used to
  choose anything. The detector learns on every earlier day (as `veille eval-inactivity`
  does with a history file), then monitors the report days, adapting as it goes.
* **validation (rolling origin)** on the earlier days only: for each k from
  `FOLD_FIRST_DAY`, learn on days 1..k and monitor day k+1. Each candidate rule
  (`CANDIDATES`: the early check-ins' daily budget and the morning check-in's margin) is
  scored on these folds; the rule kept is the one with no staff alert on the folds, at most
  `CHECKIN_HEADROOM` x `GOALS["checkins_per_day"]` check-ins a day, no miss, then the
  shortest median delays (day, night beyond the floor, off furniture). The production default
  (`DEFAULT_PARAMS`) must be that rule: the bench says so if it is not. The folds' points
  are the trade-off plot (check-ins a day against median delay), `reports/inactivity.svg`.

Figures, for the monitored days:

* staff alerts: inactivity-type alerts (`inactivity`, `no_morning_activity`,
  `bathroom_long`) raised on the real days, per 30 days (night exits apart), all false;
  check-ins asked per day (all answered, so none becomes a staff alert);
* detection delay: at many moments of day and night (every `EPISODE_EVERY_S`, at home),
  every event after the moment is cut, as if the resident had become unable to move and to
  answer, and time runs on: delay from the moment to the first inactivity-type staff alert,
  median, 90th percentile, worst and misses (nothing within 12 h), split day (07:00-22:00)
  / night, and off furniture (the last sign in the kitchen, bathroom or hall, no mat
  pressed) / anywhere; "beyond the floor" counts the delay from the resident's next real
  sign of life instead (the floor: no detector without a false alert can beat it);
* the fixed-rule baseline (no sign of life for 12 h) on the same moments and days.
"""

from __future__ import annotations

import bisect
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

from cloud_bridge.contract import AlertType
from edge.commands.eval_inactivity import answer_until, replay
from edge.commands.replay import load_events, rooms_of
from edge.const import DAY_S, MINUTE_S
from edge.detect.inactivity import RoutineDetector
from edge.detect.routine import (
    DEFAULT_PARAMS,
    OFF_FURNITURE,
    LimitParams,
    RoutineModel,
)
from edge.events import CheckIn, Event, Finding
from edge.home import Thresholds

AMBIENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ambient"
HOMES = {
    "casas": "casas_al_smarthome_dev.csv.gz",
    "ordonezA": "ordonezA_dev_events.csv.gz",
    "ordonezB": "ordonezB_dev_events.csv.gz",
}
REPORT_SHARE = 0.3  # the last 30 % of each home's days: reported, never used for choices
FOLD_FIRST_DAY = 5  # validation folds learn on at least this many days
EPISODE_EVERY_S = 37 * 60.0  # not a divisor of a day: the moments sweep all times of day
HORIZON_S = 12 * 3600.0 + 60.0  # later than this is a miss: no need to look further
MISS_S = 12 * 3600.0
BASELINE_S = 12 * 3600.0
DAY_FROM_H, DAY_TO_H = 7.0, 22.0
INACTIVITY_TYPES = frozenset(
    {AlertType.INACTIVITY, AlertType.NO_MORNING_ACTIVITY, AlertType.BATHROOM_LONG}
)
GOALS = {
    "fa_per_30d": 1.0,
    "checkins_per_day": 1.5,
    "median_off_furniture_min": 45.0,
    "max_off_furniture_min": 120.0,
    "median_day_min": 90.0,
    "median_night_beyond_floor_min": 150.0,
    "misses": 0,
}
# The previous rule (no check-ins: every early check-in limit at the staff limit), for
# comparison on the same days.
NO_CHECKINS = dataclasses.replace(
    DEFAULT_PARAMS, checkin_budget_per_day=-1.0, morning_checkin_margin_s=-1.0
)
CANDIDATES: tuple[LimitParams, ...] = tuple(
    dataclasses.replace(
        DEFAULT_PARAMS, checkin_budget_per_day=b, morning_checkin_margin_s=m * MINUTE_S
    )
    for b, m in itertools.product((0.5, 0.8, 1.2), (-1, 0, 30, 60))
)


def _is_day(t: float) -> bool:
    h = (t % DAY_S) / 3600.0
    return DAY_FROM_H <= h < DAY_TO_H


def _first_alert(det: RoutineDetector, start: float) -> float | None:
    """When the first staff alert comes if nothing happens from `start` on (nobody answers)."""
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
        return {"n": 0, "median_min": None, "p90_min": None, "max_min": None, "misses": 0}
    med = statistics.median(ranked)
    p90 = ranked[min(len(ranked) - 1, int(0.9 * len(ranked)))]
    return {
        "n": len(ranked),
        "median_min": None if math.isinf(med) else round(med, 1),
        "p90_min": None if math.isinf(p90) else round(p90, 1),
        "max_min": None if misses else round(ranked[-1], 1),
        "misses": misses,
    }


def _days(events: Sequence[Event]) -> tuple[float, int]:
    """First local midnight and the number of calendar days the events cover."""
    day0 = events[0].at // DAY_S * DAY_S
    return day0, math.ceil((events[-1].at - day0) / DAY_S)


def run_period(
    events: Sequence[Event], split: float, end: float, params: LimitParams, learning_days: int
) -> dict[str, Any]:
    """Learn on events before `split`, monitor [split, end): alerts, check-ins, episodes."""
    th = dataclasses.replace(Thresholds(), learning_days=learning_days)
    model = RoutineModel(thresholds=th, params=params)
    det = RoutineDetector(rooms_of(events), dt.UTC, th, model)
    history = [e for e in events if e.at < split]
    monitor = [e for e in events if split <= e.at < end]
    answer = answer_until()
    replay(det, history, split, answer=answer)
    learned = det.model.learned
    moments = []
    t = split + EPISODE_EVERY_S / 2
    while t < end - 3600.0:
        moments.append(t)
        t += EPISODE_EVERY_S
    signs = sorted(e.at for e in events)
    episodes: list[dict[str, Any]] = []

    def at_moment(m: float) -> None:
        if det.away or det.last_sign is None:
            return  # out of home: not an incapacity at home
        alert = _first_alert(copy.deepcopy(det), m)
        k = bisect.bisect_right(signs, m)
        nxt = signs[k] if k < len(signs) else None
        prev = signs[k - 1] if k > 0 else m
        episodes.append(
            {
                "at": m,
                "day": _is_day(m),
                "context": det.context,
                "off_furniture": det.context in OFF_FURNITURE,
                "delay_min": None if alert is None else (alert - m) / 60.0,
                "late_min": None if alert is None or nxt is None else max(0.0, alert - nxt) / 60,
                "floor_min": None if nxt is None else (nxt - m) / 60.0,
                "baseline_min": max(0.0, prev + BASELINE_S - m) / 60.0,
            }
        )

    emissions = replay(
        det,
        monitor,
        end,
        start=split,
        checkpoints=moments,
        on_checkpoint=at_moment,
        answer=answer,
    )
    first_raise: dict[str, Finding] = {}
    asked: list[CheckIn] = []
    for f in emissions:
        if isinstance(f, Finding) and f.action == "raise":
            first_raise.setdefault(f.key, f)
        elif isinstance(f, CheckIn) and f.action == "ask":
            asked.append(f)
    mon_signs = [s for s in signs if split <= s < end]
    return {
        "learned": learned,
        "days": (end - split) / DAY_S,
        "false_alerts": [
            {"type": str(f.type), "at": _stamp(f.at), "evidence": dict(f.evidence)}
            for f in first_raise.values()
            if f.type in INACTIVITY_TYPES
        ],
        "check_ins": [{"at": _stamp(c.at), "evidence": dict(c.evidence)} for c in asked],
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
    checkins = [c for p in parts for c in p["check_ins"]]
    base_fa = sum(p["baseline_false_alerts"] for p in parts)
    eps = [e for p in parts for e in p["episodes"]]
    out: dict[str, Any] = {
        "home": name,
        "monitored_days": round(days, 2),
        "false_alerts": fa,
        "fa_per_30d": round(len(fa) * 30 / days, 2) if days else None,
        "check_ins": len(checkins),
        "checkins_per_day": round(len(checkins) / days, 2) if days else None,
        "night_exits": [x for p in parts for x in p["night_exits"]],
        "baseline_false_alerts": base_fa,
        "baseline_fa_per_30d": round(base_fa * 30 / days, 2) if days else None,
    }
    for label, pick in (
        ("day", lambda e: e["day"]),
        ("night", lambda e: not e["day"]),
        ("off_furniture", lambda e: e["off_furniture"]),
        ("anywhere", lambda e: True),
    ):
        part = [e for e in eps if pick(e)]
        out[label] = {
            "routine": _stats([e["delay_min"] for e in part]),
            "late_vs_next_sign": _stats([e["late_min"] for e in part]),
            "floor": _stats([e["floor_min"] for e in part]),
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


# Unseen days bring a little more than the folds show: a rule must keep this much below the
# check-in goal on the folds.
CHECKIN_HEADROOM = 0.9


def _score(fig: dict[str, Any]) -> tuple[float, ...]:
    """Fewest staff alerts, check-ins within the goal (with headroom), no misses, then the
    shortest delays."""
    room = CHECKIN_HEADROOM * GOALS["checkins_per_day"]
    over = max(0.0, (fig["checkins_per_day"] or 0.0) - room)
    misses = fig["anywhere"]["routine"]["misses"]
    meds = (
        fig["day"]["routine"]["median_min"],
        fig["night"]["late_vs_next_sign"]["median_min"],
        fig["off_furniture"]["routine"]["median_min"],
    )
    return (len(fig["false_alerts"]), over, misses, sum(math.inf if m is None else m for m in meds))


def run(candidates: Sequence[LimitParams] = CANDIDATES) -> dict[str, Any]:
    """Validation of every candidate, the choice, and the report-part figures."""
    t0 = time.monotonic()
    homes = _load()
    scored = [(p, validate(homes, p)) for p in candidates]
    chosen, chosen_fig = min(scored, key=lambda pf: _score(pf[1]))
    result = {
        "validation": [{"params": p.to_dict(), **_brief(f)} for p, f in scored],
        "chosen": chosen.to_dict(),
        "chosen_validation": _brief(chosen_fig),
        "default_is_chosen": chosen == DEFAULT_PARAMS,
        "report": report(homes, DEFAULT_PARAMS),
        "report_no_checkins": report(homes, NO_CHECKINS),
        "goals": GOALS,
        "seconds": round(time.monotonic() - t0, 1),
    }
    result["verdict"] = verdict(result["report"]["total"])
    return result


def verdict(tot: dict[str, Any]) -> dict[str, bool]:
    """Each goal of the issue on the report part: met or not."""
    off = tot["off_furniture"]["routine"]
    return {
        "fa_per_30d": tot["fa_per_30d"] <= GOALS["fa_per_30d"],
        "checkins_per_day": tot["checkins_per_day"] <= GOALS["checkins_per_day"],
        "median_off_furniture_min": _le(off["median_min"], GOALS["median_off_furniture_min"]),
        "max_off_furniture_min": _le(off["max_min"], GOALS["max_off_furniture_min"]),
        "median_day_min": _le(tot["day"]["routine"]["median_min"], GOALS["median_day_min"]),
        "median_night_beyond_floor_min": _le(
            tot["night"]["late_vs_next_sign"]["median_min"],
            GOALS["median_night_beyond_floor_min"],
        ),
        "misses": tot["anywhere"]["routine"]["misses"] <= GOALS["misses"],
    }


def _le(value: float | None, goal: float) -> bool:
    return value is not None and value <= goal


def _brief(fig: dict[str, Any]) -> dict[str, Any]:
    return {
        "days": fig["monitored_days"],
        "false_alerts": len(fig["false_alerts"]),
        "checkins_per_day": fig["checkins_per_day"],
        "day": fig["day"]["routine"],
        "night": fig["night"]["routine"],
        "night_beyond_floor": fig["night"]["late_vs_next_sign"],
        "off_furniture": fig["off_furniture"]["routine"],
        "anywhere": fig["anywhere"]["routine"],
    }


def _fmt(s: dict[str, Any]) -> str:
    med = "-" if s["median_min"] is None else f"{s['median_min']:.0f}"
    p90 = "-" if s["p90_min"] is None else f"{s['p90_min']:.0f}"
    return f"{med:>5} {p90:>5} {s['misses']:>2}/{s['n']:<4}"


def _rule(p: dict[str, Any]) -> str:
    morning = p["morning_checkin_margin_min"]
    asked = "no morning ask" if morning < 0 else f"morning ask +{morning:.0f} min"
    return f"check-ins {p['checkin_budget_per_day']:.1f}/day in sample, {asked}"


def print_table(result: dict[str, Any]) -> None:
    print("VALIDATION (rolling origin on the earlier 70 % of days; learn 1..k, monitor k+1)")
    print(
        f"{'rule':<38}{'days':>6} {'FA':>3} {'ci/d':>5}  {'day med p90 miss/n':>20}"
        f"  {'night>floor':>18}  {'off furniture':>18}"
    )
    for v in result["validation"]:
        print(
            f"{_rule(v['params']):<38}{v['days']:>6.1f} {v['false_alerts']:>3} "
            f"{v['checkins_per_day']:>5.2f}  {_fmt(v['day']):>20}  "
            f"{_fmt(v['night_beyond_floor']):>18}  {_fmt(v['off_furniture']):>18}"
        )
    print(
        f"chosen: {_rule(result['chosen'])}; production default is the chosen rule: "
        f"{result['default_is_chosen']}"
    )
    for title, key in (
        ("REPORT (last 30 % of days, learned on the earlier days): production rule", "report"),
        (
            "REPORT, same days: no early check-ins (the previous detector's limits)",
            "report_no_checkins",
        ),
    ):
        print()
        print(title)
        _print_report(result[key])
    print(f"goals: {result['goals']}")
    print(f"met: {result['verdict']}  ({result['seconds']:.0f} s)")


def _print_report(rep: dict[str, Any]) -> None:
    head = f"{'':<10}{'days':>6} {'FA':>3} {'ci/d':>5}  {'part':<14}"
    head += f"{'delay: med p90 miss/n':>21} {'max':>5}  {'beyond floor':>18}  {'12h rule':>18}"
    print(head)
    for h in [*rep["homes"], rep["total"]]:
        days = h["monitored_days"]
        fa = len(h["false_alerts"])
        for label in ("day", "night", "off_furniture", "anywhere"):
            part = h[label]
            lead = " " * 27
            if label == "day":
                lead = f"{h['home']:<10}{days:>6.1f} {fa:>3} {h['checkins_per_day']:>5.2f}  "
            mx = part["routine"]["max_min"]
            worst = "-" if mx is None else str(round(mx))
            print(
                f"{lead}{label:<14}{_fmt(part['routine']):>21} {worst:>5}"
                f"  {_fmt(part['late_vs_next_sign']):>18}  {_fmt(part['baseline_12h']):>18}"
            )
    tot = rep["total"]
    print(
        f"12-hour rule false alerts: {tot['baseline_false_alerts']} "
        f"({tot['baseline_fa_per_30d']} per 30 days); night exits raised: {len(tot['night_exits'])}"
    )
    for f in tot["false_alerts"]:
        print(f"  staff alert on a normal day: {f['type']} at {f['at']} {f['evidence']}")


def plot_svg(result: dict[str, Any]) -> str:
    """The trade-off: check-ins a day (x) against median delay (y), one point per rule."""
    w, h, pad = 640, 400, 56
    pts: list[tuple[str, float, float, float, float]] = []
    for v in result["validation"]:
        pts.append(
            (
                _rule(v["params"]),
                v["checkins_per_day"] or 0.0,
                v["day"]["median_min"] or 0.0,
                v["night_beyond_floor"]["median_min"] or 0.0,
                v["off_furniture"]["median_min"] or 0.0,
            )
        )
    rep = result["report"]["total"]
    pts.append(
        (
            "report part (production rule)",
            rep["checkins_per_day"] or 0.0,
            rep["day"]["routine"]["median_min"] or 0.0,
            rep["night"]["late_vs_next_sign"]["median_min"] or 0.0,
            rep["off_furniture"]["routine"]["median_min"] or 0.0,
        )
    )
    xmax = max(2.0, *(p[1] for p in pts)) * 1.1
    ymax = max(200.0, *(max(p[2:]) for p in pts)) * 1.1

    def xy(x: float, y: float) -> tuple[float, float]:
        return pad + x / xmax * (w - 2 * pad), h - pad - y / ymax * (h - 2 * pad)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" font-size="12">',
        "<title>Check-ins per day against median detection delay</title>",
        f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>',
        f'<text x="{w / 2}" y="{h - 16}" text-anchor="middle">check-ins per day</text>',
        f'<text x="14" y="{h / 2}" transform="rotate(-90 14 {h / 2})" text-anchor="middle">'
        "median delay (min)</text>",
    ]
    for k in range(5):
        x, _ = xy(xmax * k / 4, 0)
        out.append(
            f'<text x="{x:.0f}" y="{h - pad + 16}" text-anchor="middle">{xmax * k / 4:.1f}</text>'
        )
        _, y = xy(0, ymax * k / 4)
        out.append(f'<text x="{pad - 6}" y="{y:.0f}" text-anchor="end">{ymax * k / 4:.0f}</text>')
    for goal, colour in ((90.0, "#1f77b4"), (150.0, "#d62728"), (45.0, "#2ca02c")):
        _, y = xy(0, goal)
        out.append(
            f'<line x1="{pad}" y1="{y:.0f}" x2="{w - pad}" y2="{y:.0f}" stroke="{colour}" '
            'stroke-dasharray="4 4"/>'
        )
    gx, _ = xy(GOALS["checkins_per_day"], 0)
    out.append(
        f'<line x1="{gx:.0f}" y1="{pad}" x2="{gx:.0f}" y2="{h - pad}" stroke="grey" '
        'stroke-dasharray="4 4"/>'
    )
    for name, x, day, night, off in pts:
        for y, colour, shape in (
            (day, "#1f77b4", "day"),
            (night, "#d62728", "night beyond floor"),
            (off, "#2ca02c", "off furniture"),
        ):
            px, py = xy(x, y)
            r = 6 if name.startswith("report") else 4
            out.append(
                f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{r}" fill="{colour}">'
                f"<title>{name}: {shape} {y:.0f} min, {x:.2f} check-ins/day</title></circle>"
            )
    legend = (
        ("day, any moment", "#1f77b4"),
        ("night, beyond the floor", "#d62728"),
        ("off furniture", "#2ca02c"),
    )
    for i, (label, colour) in enumerate(legend):
        out.append(f'<circle cx="{w - 200}" cy="{pad + 14 * i}" r="4" fill="{colour}"/>')
        out.append(f'<text x="{w - 190}" y="{pad + 4 + 14 * i}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out)


if __name__ == "__main__":
    res = run()
    print_table(res)
    svg = Path(__file__).resolve().parent / "reports" / "inactivity.svg"
    svg.parent.mkdir(exist_ok=True)
    svg.write_text(plot_svg(res), encoding="utf-8")
    print(f"plot: {svg}")
    if "--json" in sys.argv:
        print(json.dumps(res, indent=1, default=str))
