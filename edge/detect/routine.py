"""The resident's learned routine: small explicit tables, JSON on disk, readable by an installer.

What is learned, per local day, and kept for the last `MODEL_DAYS` days (so the model keeps
adapting slowly, a day at a time, and forgets what the resident no longer does):

* `silence`: for each *context* a silence starts in (where the last sign of life came from:
  `bed`, `chair`, `bedroom`, `bathroom`, `kitchen`, `living`, `entrance`, `other`, or `out`
  when the resident left by the entrance door) and each half-hour of the day it starts in,
  the longest silence seen (seconds).
* the day's summary metrics (getting up, going to bed, time in bed, night bathroom visits,
  time out, activity per room kind), the longest bathroom stay, outings at night, and how
  often each pair of rooms fires within a second or two of each other (rooms that do so
  every day are neighbours; two rooms that normally never do, doing so, is a visit).

From the days kept, `refresh` derives the limits the detector uses (`limits`, minutes per
context and half-hour, also in `to_dict()` for the installer). A learned silence limit is the
longest usual silence for that context starting within +/- 3 h of that time of day (at least
half of what any context at home shows then), plus 45 min and 20 %, capped at 11.5 h
(`LimitParams`, chosen by rolling-origin validation in `bench.inactivity`). Until
`learning_days` days have been seen, conservative fixed limits apply
(`default_silence_limit_s`), and no early check-in is asked.

Silences off furniture (`OFF_FURNITURE`: the kitchen, bathroom and hall, no mat pressed) are
what a long lie looks like: they learn from their own silences (and each other's), never
pulled up by the chair's and the bed's, and their staff limit is capped at 110 min. The early
check-in limits (`checkin_s`) are tighter: off furniture 1.5 x usual + 10 min (20 to 60 min);
elsewhere scale x usual + 15 min, the scale learned per home so that the kept days would have
seen about `checkin_budget_per_day` early check-ins; and a morning check-in comes
`morning_checkin_margin_s` after the usual getting up (`morning_checkin_s`).

Measured alternatives that did not do better on the validation folds (same false-alarm
budget): narrower windows (+/- 1-2 h), smaller margins, a Gaussian limit on the daily maxima
(mean + z sd, shrunk), an exponential tail fitted above a high quantile (peaks over
threshold: far too many false alarms, the homes' long silences are rare and irregular), and
limits on the usual *end* time of a silence rather than its length.

Why a table and not a scikit-learn model: a week or two of one person's life gives a few
hundred silences, and the question asked of them is the tail ("how long can a silence that
starts here, now, be for this person?"). The running maximum per context and time of day
answers it directly, updates in place every night without retraining, costs microseconds,
and an installer or a nurse can read it and see why an alert fired ("usual longest 95 min,
now 212"). A fitted quantile model would need more data than a first week holds, could not
be updated on the gateway, and would hide the reason.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.const import DAY_S, HOUR_S, MINUTE_S
from edge.home import Thresholds

MODEL_VERSION = 1
BIN_S = 1800.0  # half-hour bins of the time of day
N_BINS = int(DAY_S // BIN_S)
MODEL_DAYS = 28  # days kept: older days fall out, so the model adapts over weeks
MIN_SAMPLE_DAYS = 3  # days with a sample near that time before a context's own figure is used
LIMIT_FLOOR_S = 45 * MINUTE_S
# No learned silence at home may run past this: the longest nights in the shared homes are
# 10.2 h (bed to getting up); 11.5 h keeps an hour's room and still beats the 12-hour rule.
LIMIT_CAP_S = 11.5 * HOUR_S

# Conservative fixed limits while learning (and where nothing was ever seen).
DEFAULT_DAY_LIMIT_S = 6 * HOUR_S
DEFAULT_NIGHT_LIMIT_S = 12 * HOUR_S
DEFAULT_OUT_LIMIT_S = 24 * HOUR_S
OUT_LIMIT_FLOOR_S = 12 * HOUR_S  # away from home longer than this and than usual: a warning
OUT_LIMIT_FACTOR = 2.0
DEFAULT_BATHROOM_LIMIT_S = 2 * HOUR_S
BATHROOM_MARGIN_S = 20 * MINUTE_S
BATHROOM_FACTOR = 1.25
BATHROOM_FLOOR_S = 45 * MINUTE_S
DEFAULT_GET_UP_DEADLINE_S = 12.5 * HOUR_S  # 12:30 local while learning
NIGHT_EXIT_MARGIN_S = 15 * MINUTE_S

# A pair of rooms that fires together less often than this is "distant".
VISIT_PAIR_RARE_PER_DAY = 0.3

OUT = "out"
BED = "bed"
CHAIR = "chair"
CONTEXTS = (BED, CHAIR, "bedroom", "bathroom", "kitchen", "living", "entrance", "other", OUT)
INSIDE = tuple(c for c in CONTEXTS if c != OUT)
REST_CONTEXTS = frozenset({BED, "bedroom"})
# The last sign came from here and no mat is pressed: what a fall looks like. These learn
# from their own silences (and each other's), never pulled up by the chair's and the bed's.
OFF_FURNITURE = frozenset({"bathroom", "kitchen", "entrance"})
OFF_FURNITURE_STAFF_CAP_S = 110 * MINUTE_S  # a long lie off furniture: staff within 2 h
OFF_FURNITURE_CHECKIN_FLOOR_S = 20 * MINUTE_S
OFF_FURNITURE_CHECKIN_CAP_S = 60 * MINUTE_S
OFF_FURNITURE_CHECKIN_FACTOR = 1.5
OFF_FURNITURE_CHECKIN_MARGIN_S = 10 * MINUTE_S
# Early check-ins elsewhere: scale * usual longest + margin, at least the floor, at most the
# staff limit; the scale is learned per home so that the kept days would have seen about
# `checkin_budget_per_day` early check-ins a day (in sample, so a little fewer than unseen
# days will bring).
CHECKIN_FLOOR_S = 30 * MINUTE_S
CHECKIN_MARGIN_S = 15 * MINUTE_S
CHECKIN_SCALES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

METRICS = (
    "get_up_min",
    "bed_time_min",
    "time_in_bed_min",
    "night_bathroom_visits",
    "time_out_min",
    "activity_total",
)
# Smallest spread used for a z-score, per metric unit (minutes or counts).
Z_FLOOR = {
    "get_up_min": 20.0,
    "bed_time_min": 20.0,
    "time_in_bed_min": 30.0,
    "night_bathroom_visits": 1.0,
    "time_out_min": 30.0,
}
MIN_COMPARE_DAYS = 3


def time_bin(tod_s: float) -> int:
    """Seconds since local midnight -> half-hour bin 0..47."""
    return min(N_BINS - 1, max(0, int(tod_s // BIN_S)))


def is_night(tod_s: float, start_h: float, end_h: float) -> bool:
    """Whether a time of day lies in the night window [start_h, end_h) (which may wrap)."""
    h = tod_s / HOUR_S
    if start_h <= end_h:
        return start_h <= h < end_h
    return h >= start_h or h < end_h


def default_silence_limit_s(ctx: str, tod_s: float, th: Thresholds) -> float:
    """The fixed limit used while learning: hours, the way a careful installer would set it."""
    if ctx == OUT:
        return DEFAULT_OUT_LIMIT_S
    if ctx in REST_CONTEXTS or is_night(tod_s, th.night_start_h, th.night_end_h):
        return DEFAULT_NIGHT_LIMIT_S
    return DEFAULT_DAY_LIMIT_S


@dataclass(frozen=True, slots=True)
class LimitParams:
    """How limits are derived from the kept days.

    The defaults are the rule `python -m bench.inactivity` chose by rolling-origin validation
    on the earlier days of the shared homes (no false alert on the folds, then the shortest
    median delays); the bench checks that they still are.
    """

    # a silence is compared with those starting within +/- this many half-hours
    window_bins: int = 6
    # learned silence limit = usual longest + margin_min_s + margin_fraction * usual longest
    margin_min_s: float = 45 * MINUTE_S
    margin_fraction: float = 0.2
    # A context's usual longest is at least this share of the longest silence of any context
    # at home near that time: a week shows few of a rare context's silences, so its own tail
    # is short (a resident going from the bathroom to bed unseen by the bedroom sensor).
    pool_weight: float = 0.5
    # getting-up deadline = latest usual getting up + margin + factor * standard deviation
    get_up_margin_s: float = 45 * MINUTE_S
    get_up_spread_factor: float = 1.0
    # early check-ins a day the learned check-in limits aim at on the kept days
    checkin_budget_per_day: float = 0.5
    # still in bed this long after the usual (median) getting up: asked, before the deadline;
    # negative: no morning check-in
    morning_checkin_margin_s: float = 30 * MINUTE_S

    def margin_s(self, usual_s: float) -> float:
        return self.margin_min_s + self.margin_fraction * usual_s

    def to_dict(self) -> dict[str, float]:
        return {
            "window_min": self.window_bins * BIN_S / MINUTE_S,
            "margin_min": self.margin_min_s / MINUTE_S,
            "margin_fraction": self.margin_fraction,
            "pool_weight": self.pool_weight,
            "get_up_margin_min": self.get_up_margin_s / MINUTE_S,
            "get_up_spread_factor": self.get_up_spread_factor,
            "checkin_budget_per_day": self.checkin_budget_per_day,
            "morning_checkin_margin_min": self.morning_checkin_margin_s / MINUTE_S,
        }


DEFAULT_PARAMS = LimitParams()


@dataclass
class DayRecord:
    """What one local day taught: longest silences per context and bin, and the day's figures."""

    date: str
    silence: dict[str, dict[int, float]] = field(default_factory=dict)
    bath_stay_max_s: float = 0.0
    night_out_max_s: float = 0.0
    metrics: dict[str, float | None] = field(default_factory=dict)
    activity_by_kind: dict[str, int] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)

    def note_silence(self, ctx: str, bin_: int, seconds: float) -> None:
        cells = self.silence.setdefault(ctx, {})
        if seconds > cells.get(bin_, -1.0):
            cells[bin_] = seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "silence_max_s": {
                ctx: {str(b): round(v, 1) for b, v in sorted(cells.items())}
                for ctx, cells in sorted(self.silence.items())
            },
            "bath_stay_max_s": round(self.bath_stay_max_s, 1),
            "night_out_max_s": round(self.night_out_max_s, 1),
            "metrics": dict(self.metrics),
            "activity_by_kind": dict(self.activity_by_kind),
            "pairs": dict(self.pairs),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DayRecord:
        return cls(
            date=str(d["date"]),
            silence={
                str(ctx): {int(b): float(v) for b, v in cells.items()}
                for ctx, cells in d.get("silence_max_s", {}).items()
            },
            bath_stay_max_s=float(d.get("bath_stay_max_s", 0.0)),
            night_out_max_s=float(d.get("night_out_max_s", 0.0)),
            metrics={
                str(k): (None if v is None else float(v)) for k, v in d.get("metrics", {}).items()
            },
            activity_by_kind={str(k): int(v) for k, v in d.get("activity_by_kind", {}).items()},
            pairs={str(k): int(v) for k, v in d.get("pairs", {}).items()},
        )


@dataclass
class Limits:
    """What the detector checks against, derived from the kept days by `RoutineModel.refresh`."""

    learned: bool
    silence_s: dict[str, list[float]]  # ctx -> per bin
    checkin_s: dict[str, list[float]]  # ctx -> per bin: the early check-in limit
    checkin_scale: float | None  # learned; None while learning (no early check-ins)
    usual_s: dict[str, list[float | None]]  # ctx -> per bin, None where defaulted
    out_s: float
    bathroom_s: float
    bath_usual_s: float | None
    get_up_deadline_s: float  # seconds after local midnight
    morning_checkin_s: float | None  # still resting then: asked (None: no morning check-in)
    usual_get_up_s: float | None
    night_start_s: float
    night_end_s: float
    night_exit_s: float
    distant_pairs_known: bool
    near_pairs: frozenset[str]


class RoutineModel:
    """The learned routine of one resident (see the module docstring)."""

    def __init__(
        self,
        days: Iterable[DayRecord] = (),
        days_learned: int = 0,
        thresholds: Thresholds | None = None,
        params: LimitParams = DEFAULT_PARAMS,
    ) -> None:
        self.days: list[DayRecord] = list(days)[-MODEL_DAYS:]
        self.days_learned = days_learned
        self.params = params
        self.limits = self.refresh(thresholds or Thresholds())

    @property
    def learned(self) -> bool:
        return self.limits.learned

    def add_day(self, record: DayRecord, counted: bool, th: Thresholds) -> None:
        """Keep a closed day (dropping the oldest beyond `MODEL_DAYS`) and re-derive limits."""
        self.days.append(record)
        del self.days[:-MODEL_DAYS]
        if counted:
            self.days_learned += 1
        self.limits = self.refresh(th)

    def refresh(self, th: Thresholds) -> Limits:
        learned = self.days_learned >= th.learning_days and bool(self.days)
        p = self.params
        silence: dict[str, list[float]] = {}
        usual: dict[str, list[float | None]] = {}
        own: dict[str, list[float | None]] = {}  # each context's own, unpooled
        pooled = [self._usual(INSIDE, b) for b in range(N_BINS)]
        pooled_off = [self._usual(tuple(OFF_FURNITURE), b) for b in range(N_BINS)]
        for ctx in CONTEXTS:
            row: list[float] = []
            urow: list[float | None] = []
            off = ctx in OFF_FURNITURE
            orow: list[float | None] = []
            for b in range(N_BINS):
                tod = (b + 0.5) * BIN_S
                value = None
                if ctx != OUT:
                    value = self._usual((ctx,), b)
                orow.append(value)
                if ctx != OUT:
                    pool = pooled_off[b] if off else pooled[b]
                    if value is None:
                        value = pool
                    elif pool is not None and not off:
                        value = max(value, p.pool_weight * pool)
                if not learned or value is None:
                    limit = default_silence_limit_s(ctx, tod, th)
                    row.append(min(limit, OFF_FURNITURE_STAFF_CAP_S) if off and learned else limit)
                    urow.append(None)
                else:
                    limit = min(LIMIT_CAP_S, max(LIMIT_FLOOR_S, value + p.margin_s(value)))
                    row.append(min(limit, OFF_FURNITURE_STAFF_CAP_S) if off else limit)
                    urow.append(value)
            silence[ctx] = row
            usual[ctx] = urow
            own[ctx] = [o if o is not None else u for o, u in zip(orow, urow, strict=True)]
        out_all = [v for d in self.days for v in d.silence.get(OUT, {}).values()]
        out_s = DEFAULT_OUT_LIMIT_S
        if learned and out_all:
            out_s = max(OUT_LIMIT_FLOOR_S, OUT_LIMIT_FACTOR * max(out_all))
        baths = [d.bath_stay_max_s for d in self.days if d.bath_stay_max_s > 0]
        bath_usual = max(baths) if baths else None
        bathroom_s = DEFAULT_BATHROOM_LIMIT_S
        if learned and bath_usual is not None:
            bathroom_s = max(BATHROOM_FLOOR_S, BATHROOM_FACTOR * bath_usual + BATHROOM_MARGIN_S)
        get_ups = self.values("get_up_min")
        usual_get_up = None
        deadline = DEFAULT_GET_UP_DEADLINE_S
        if get_ups:
            usual_get_up = statistics.median(get_ups) * MINUTE_S
        if learned and len(get_ups) >= MIN_COMPARE_DAYS:
            spread = statistics.pstdev(get_ups) * MINUTE_S
            deadline = max(get_ups) * MINUTE_S + p.get_up_margin_s + p.get_up_spread_factor * spread
            deadline = min(deadline, DAY_S - MINUTE_S)
        morning_checkin = None
        if (
            learned
            and usual_get_up is not None
            and len(get_ups) >= MIN_COMPARE_DAYS
            and p.morning_checkin_margin_s >= 0
        ):
            morning_checkin = min(deadline, usual_get_up + p.morning_checkin_margin_s)
        night_start = th.night_start_h * HOUR_S
        night_end = th.night_end_h * HOUR_S
        night_exit = th.night_exit_return_min * MINUTE_S
        bed_times = self.values("bed_time_min")  # minutes after noon
        if learned and len(get_ups) >= MIN_COMPARE_DAYS and len(bed_times) >= MIN_COMPARE_DAYS:
            night_start = (statistics.median(bed_times) * MINUTE_S + DAY_S / 2) % DAY_S
            night_end = statistics.median(get_ups) * MINUTE_S
            outs = [d.night_out_max_s for d in self.days if d.night_out_max_s > 0]
            if outs:
                night_exit = max(night_exit, max(outs) + NIGHT_EXIT_MARGIN_S)
        scale, checkin = self._checkin_limits(
            learned,
            silence=silence,
            usual=own,
            th=th,
            night_start_s=night_start,
            night_end_s=night_end,
        )
        n_days = max(1, len(self.days))
        pair_totals: dict[str, int] = {}
        for d in self.days:
            for k, v in d.pairs.items():
                pair_totals[k] = pair_totals.get(k, 0) + v
        near = frozenset(k for k, v in pair_totals.items() if v / n_days >= VISIT_PAIR_RARE_PER_DAY)
        return Limits(
            learned=learned,
            silence_s=silence,
            checkin_s=checkin,
            checkin_scale=scale,
            usual_s=usual,
            out_s=out_s,
            bathroom_s=bathroom_s,
            bath_usual_s=bath_usual,
            get_up_deadline_s=deadline,
            morning_checkin_s=morning_checkin,
            usual_get_up_s=usual_get_up,
            night_start_s=night_start,
            night_end_s=night_end,
            night_exit_s=night_exit,
            distant_pairs_known=learned,
            near_pairs=near,
        )

    def _checkin_limits(
        self,
        learned: bool,
        *,
        silence: dict[str, list[float]],
        usual: dict[str, list[float | None]],
        th: Thresholds,
        night_start_s: float,
        night_end_s: float,
    ) -> tuple[float | None, dict[str, list[float]]]:
        """The early check-in limits, and the scale learned for them (see the constants)."""
        if not learned:
            return None, {ctx: list(row) for ctx, row in silence.items()}
        night = [
            is_night((b + 0.5) * BIN_S, night_start_s / HOUR_S, night_end_s / HOUR_S)
            for b in range(N_BINS)
        ]

        def table(scale: float | None) -> dict[str, list[float]]:
            out: dict[str, list[float]] = {}
            for ctx, row in silence.items():
                urow = usual[ctx]
                cells = []
                for b, staff in enumerate(row):
                    u = urow[b]
                    if ctx == OUT or u is None or (scale is None and ctx not in OFF_FURNITURE):
                        cells.append(staff)
                    elif ctx in OFF_FURNITURE:
                        lim = OFF_FURNITURE_CHECKIN_FACTOR * u + OFF_FURNITURE_CHECKIN_MARGIN_S
                        lim = min(OFF_FURNITURE_CHECKIN_CAP_S, lim)
                        cells.append(min(staff, max(OFF_FURNITURE_CHECKIN_FLOOR_S, lim)))
                    else:
                        assert scale is not None
                        cells.append(min(staff, max(CHECKIN_FLOOR_S, scale * u + CHECKIN_MARGIN_S)))
                out[ctx] = cells
            return out

        max_day = int(th.checkin_max_per_day)
        n_days = max(1, len(self.days))
        chosen: float | None = None  # none fits the budget: early check-ins off furniture only
        for scale in CHECKIN_SCALES:
            lim = table(scale)
            total = 0
            for day in self.days:
                capped = off = 0
                for ctx, cells in day.silence.items():
                    if ctx == OUT:
                        continue
                    for b, v in cells.items():
                        if ctx in REST_CONTEXTS and night[b]:
                            continue  # a night's sleep is never asked about early
                        if v > lim[ctx][b]:
                            if ctx in OFF_FURNITURE:
                                off += 1
                            else:
                                capped += 1
                total += off + min(capped, max_day)
            if total / n_days <= self.params.checkin_budget_per_day:
                chosen = scale
                break
        return chosen, table(chosen)

    def _usual(self, ctxs: tuple[str, ...], bin_: int) -> float | None:
        """Longest silence in these contexts starting within the window around `bin_`."""
        best = -1.0
        days_seen = 0
        for day in self.days:
            seen = False
            for ctx in ctxs:
                cells = day.silence.get(ctx)
                if not cells:
                    continue
                for off in range(-self.params.window_bins, self.params.window_bins + 1):
                    v = cells.get((bin_ + off) % N_BINS)
                    if v is not None:
                        seen = True
                        best = max(best, v)
            days_seen += seen
        return best if days_seen >= MIN_SAMPLE_DAYS else None

    def values(self, metric: str) -> list[float]:
        out: list[float] = []
        for d in self.days:
            v = d.metrics.get(metric)
            if v is not None:
                out.append(v)
        return out

    def activity_values(self, kind: str) -> list[float]:
        return [float(d.activity_by_kind.get(kind, 0)) for d in self.days if d.activity_by_kind]

    def compare(self, metric: str, value: float | None, usual: list[float]) -> dict[str, Any]:
        """{"usual": mean, "z": z-score} of a day's figure; nulls while learning."""
        if not self.learned or len(usual) < MIN_COMPARE_DAYS:
            return {"usual": None, "z": None}
        mean = statistics.fmean(usual)
        floor = Z_FLOOR.get(metric, max(1.0, 0.1 * abs(mean)))
        spread = max(statistics.pstdev(usual), floor)
        z = None if value is None else round((value - mean) / spread, 2)
        return {"usual": round(mean, 1), "z": z}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the kept days, and the limits they give (minutes) for the installer."""
        lim = self.limits
        return {
            "version": MODEL_VERSION,
            "days_learned": self.days_learned,
            "learned": lim.learned,
            "rule": self.params.to_dict(),
            "limits_min": {
                "silence_by_half_hour": {
                    ctx: [round(v / MINUTE_S) for v in row]
                    for ctx, row in lim.silence_s.items()
                    if ctx != OUT  # out of home has one limit of its own, below
                },
                "check_in_by_half_hour": {
                    ctx: [round(v / MINUTE_S) for v in row]
                    for ctx, row in lim.checkin_s.items()
                    if ctx != OUT
                },
                "check_in_scale": lim.checkin_scale,
                "out_of_home": round(lim.out_s / MINUTE_S),
                "bathroom_stay": round(lim.bathroom_s / MINUTE_S),
                "get_up_deadline": _hhmm(lim.get_up_deadline_s),
                "morning_check_in": hhmm(lim.morning_checkin_s),
                "night": [_hhmm(lim.night_start_s), _hhmm(lim.night_end_s)],
                "night_exit_return": round(lim.night_exit_s / MINUTE_S),
                "neighbour_rooms": sorted(lim.near_pairs),
            },
            "days": [d.to_dict() for d in self.days],
        }

    @classmethod
    def from_dict(
        cls,
        d: Mapping[str, Any],
        thresholds: Thresholds | None = None,
        params: LimitParams = DEFAULT_PARAMS,
    ) -> RoutineModel:
        """Rebuild from `to_dict` output; limits (and the rule) are re-derived, not trusted."""
        if int(d.get("version", 0)) != MODEL_VERSION:
            raise ValueError(f"routine model version {d.get('version')!r} is not {MODEL_VERSION}")
        return cls(
            days=(DayRecord.from_dict(x) for x in d.get("days", ())),
            days_learned=int(d.get("days_learned", 0)),
            thresholds=thresholds,
            params=params,
        )


def _hhmm(tod_s: float) -> str:
    tod = int(tod_s) % int(DAY_S)
    return f"{tod // 3600:02d}:{tod % 3600 // 60:02d}"


def hhmm(tod_s: float | None) -> str | None:
    """Seconds after local midnight -> "HH:MM" (None stays None)."""
    if tod_s is None or math.isnan(tod_s):
        return None
    return _hhmm(tod_s)
