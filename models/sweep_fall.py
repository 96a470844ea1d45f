"""The card's second-pass table: nested subject-wise CV, per trial, for a number of turned
copies and every threshold rule of `RULES`; the shipped configuration reproduces the card.

    python -m models.sweep_fall --data ../shared/data/falls/sisfall_dev_50hz.npz --copies 1

The same code as `models.train_fall` (candidates through the production `FallDetector`, the
two-round labels, `fit_with_threshold`). A held-out trial is detected at threshold t exactly
when one of its scored candidate windows reaches t, so each trial's highest score (the fold's
scikit-learn model on its candidate rows, as recorded and turned with `EVAL_SEED`) gives its
decision under every rule at once. `--streams` also streams the held-out daily-activity
trials back to back (`DAY_STREAMS`) with the fold's model exported to ONNX. One core.

`--second-look S` measures, the same way, a lower threshold whose candidates alarm only when
the wearer is still down S s after the peak (the card's third pass); `--facts` prints what
the recordings hold after the impact.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge.commands.eval_fall import stream_trial
from edge.detect.fall import FallDetector
from models import train_fall as tf

Rule = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], float]


def _threshold(adl_scores: np.ndarray, hours: float, cap: float, share: float | None) -> float:
    adl = np.sort(adl_scores)[::-1]
    if share is None:
        allowed = int(np.floor(tf.MAX_FA_PER_24H * hours / 24.0))
    else:
        allowed = int(np.floor(share * adl.size))
    ceiling = adl[allowed] if allowed < adl.size else 0.0
    return float(min(cap, max(0.05, np.nextafter(ceiling, 1.0))))


def _rule(cap: float = 0.99, share: float | None = None, copies_hours: bool = True,
          per_recording: bool = False) -> Rule:
    """A threshold rule on the inner out-of-fold trial scores `sc` of `trials` (indices into
    the augmented data; trial i and i + k*n are copies of one recording)."""
    def rule(sc: np.ndarray, trials: np.ndarray, is_fall: np.ndarray, lengths: np.ndarray,
             n: int) -> float:
        if per_recording:
            per = np.zeros(n)
            np.maximum.at(per, trials % n, sc)
            rec = np.unique(trials % n)
            adl = rec[~is_fall[rec]]
            return _threshold(per[adl], lengths[adl].sum() / tf.ft.FS_HZ / 3600.0, cap, share)
        counted = trials if copies_hours else trials[trials < n]
        hours = lengths[counted][~is_fall[counted]].sum() / tf.ft.FS_HZ / 3600.0
        return _threshold(sc[~is_fall[trials]], hours, cap, share)

    return rule


RULES: dict[str, Rule] = {
    "shipped: <= 1 per 24 h (each recording's hours once), cap 0.99": _rule(copies_hours=False),
    "no cap": _rule(cap=1.0, copies_hours=False),
    "cap 0.999": _rule(cap=0.999, copies_hours=False),
    "the copies' hours counted too (the previous rule)": _rule(),
    "a recording alarmed when any copy is": _rule(per_recording=True),
    "<= 0.1 % of inner ADL trials": _rule(share=0.001),
}


def _figures(detected: np.ndarray, data: tf.Data) -> str:
    g = tf.group_metrics(detected, data)
    return (f"{tf._pct(g['all']['sensitivity'])} / {tf._pct(g['young']['sensitivity'])} / "
            f"{tf._pct(g['elderly']['sensitivity'])}, specificity "
            f"{tf._pct(g['all']['specificity'])} ({g['all']['false_alarm_trials']} trials)")


def sweep(data: tf.Data, copies: int, streams: bool) -> None:
    from sklearn.model_selection import GroupKFold

    train_data = data
    for copy in range(copies):
        train_data = tf.concat(train_data, tf.turned(data, tf.AUG_SEED + 100 * copy))
    x, trial, _ = tf.candidates(train_data)
    rotated = tf.turned(data, tf.EVAL_SEED)
    x_rot, t_rot, _ = tf.candidates(rotated)
    rec = trial < data.n_trials  # the recorded trials' own rows come first
    x_rec, t_rec = x[rec], trial[rec]
    day_rotated = tf.turned(data, tf.DAY_SEED, per_subject=True)
    n = data.n_trials
    lengths = np.diff(train_data.offsets)
    best_rec, best_rot = np.zeros(n), np.zeros(n)
    thresholds: dict[str, np.ndarray] = {name: np.zeros(n) for name in RULES}
    per_fold: dict[str, list[float]] = {name: [] for name in RULES}
    stream_totals = {name: [0, 0] for name in tf.DAY_STREAMS}
    splitter = GroupKFold(n_splits=tf.OUTER_FOLDS)
    for k, (trn, val) in enumerate(splitter.split(np.arange(n), groups=data.subject)):
        subjects = np.unique(data.subject[trn])
        fitted = tf.fit_with_threshold(
            x, trial, train_data, np.flatnonzero(np.isin(train_data.subject, subjects)))
        for xx, tt, best in ((x_rec, t_rec, best_rec), (x_rot, t_rot, best_rot)):
            sel = np.isin(tt, val)
            np.maximum.at(best, tt[sel], fitted.model.predict_proba(xx[sel])[:, 1])
        for name, rule in RULES.items():
            th = rule(fitted.inner_scores, fitted.trials, train_data.is_fall, lengths, n)
            thresholds[name][val] = th
            per_fold[name].append(round(th, 4))
        if streams:
            with tempfile.TemporaryDirectory() as workdir:
                scorer = tf.onnx_scorer(fitted.model, fitted.threshold, Path(workdir))
                adl = [int(i) for i in val if not data.is_fall[i]]
                for name, (blend_s, gap_s, is_turned) in tf.DAY_STREAMS.items():
                    src = day_rotated if is_turned else data
                    days = ([[i for i in adl if data.subject[i] == s]
                             for s in np.unique(data.subject[adl])] if is_turned else [adl])
                    for day in days:
                        det = tf.detector(scorer, src, day[0], fitted.threshold)
                        alarms, joins = tf.stream_day(det, [src.trial(i) for i in day],
                                                      blend_s, gap_s)
                        stream_totals[name][0] += alarms
                        stream_totals[name][1] += joins
        print(f"fold {k}: threshold {fitted.threshold:.4f}", flush=True)
    print(f"{copies} turned cop{'y' if copies == 1 else 'ies'} per trial")
    for name in RULES:
        t = thresholds[name]
        print(f"- {name}: as recorded {_figures(best_rec >= t, data)}; turned "
              f"{_figures(best_rot >= t, data)}; fold thresholds {per_fold[name]}")
    if streams:
        print(f"day streams (false alarms, near a join): {stream_totals}")


class _PeakRecorder(FallDetector):
    """The production detector, noting the peak index of the window it is about to score."""

    last_peak = -1

    def _window(self, peak: int) -> np.ndarray:
        self.last_peak = peak
        return super()._window(peak)


def candidate_peaks(data: tf.Data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`tf.candidates` rows (same detector, same order), their trial and peak sample index."""
    rows: list[np.ndarray] = []
    trials: list[int] = []
    peaks: list[int] = []
    current: list[_PeakRecorder] = []  # the trial's detector

    def recorder(x: np.ndarray) -> np.ndarray:
        rows.append(np.asarray(x[0], dtype=np.float32).copy())
        trials.append(i)
        peaks.append(current[0].last_peak)
        return np.zeros(1)

    for i in range(data.n_trials):
        current[:] = [_PeakRecorder(recorder, confirm_s=0.0, threshold=2.0, upright=data.up0[i])]
        stream_trial(current[0], data.trial(i))
    return np.stack(rows), np.asarray(trials, dtype=np.int64), np.asarray(peaks, dtype=np.int64)


def down_after(data: tf.Data, trial: np.ndarray, peak: np.ndarray, look_s: float,
               min_tilt_deg: float, *, hold_end: bool = False) -> np.ndarray:
    """Per candidate: 1 when the mean direction of the second before `look_s` after its peak
    is at least `min_tilt_deg` from the wearer's upright (still down), 0 when it is not (up
    again), -1 when the recording ends before (unknown); with `hold_end`, the recording's
    last second stands in for a look after its end (an assumption: the wearer stays so)."""
    out = np.zeros(trial.size, dtype=np.int8)
    for r in range(trial.size):
        t = data.trial(int(trial[r]))
        end = int(peak[r]) + int(look_s * tf.ft.FS_HZ)
        if end > t.shape[0] and hold_end:
            end = t.shape[0]
        elif end > t.shape[0]:
            out[r] = -1
            continue
        tilt = tf.ft.angle_deg(t[end - tf.ft.FS_HZ : end].astype(np.float64).mean(axis=0),
                               data.up0[int(trial[r])])
        out[r] = 1 if tilt >= min_tilt_deg else 0
    return out


def second_look(data: tf.Data, copies: int, look_s: float, min_tilt_deg: float,
                then_s: float | None = None) -> None:
    """Per trial, nested: a candidate alarms when it scores >= its fold's threshold (as
    shipped), or >= a lower threshold and the wearer is still down `look_s` after the peak.
    The lower threshold: the shipped rule on the inner out-of-fold ADL candidates that pass
    that look (a recording ending before it counted as passing: the gateway's stream goes
    on). A held-out candidate whose recording ends before the look is not alarmed by it.
    `then_s`: a further look, also needed, for which a recording ended before it is read
    from its last second (an assumption about the wearer after the recording: a bound)."""
    from sklearn.model_selection import GroupKFold

    train_data = data
    for copy in range(copies):
        train_data = tf.concat(train_data, tf.turned(data, tf.AUG_SEED + 100 * copy))
    x, trial, peak = candidate_peaks(train_data)
    rotated = tf.turned(data, tf.EVAL_SEED)
    x_rot, t_rot, p_rot = candidate_peaks(rotated)
    down = down_after(train_data, trial, peak, look_s, min_tilt_deg)
    down_rot = down_after(rotated, t_rot, p_rot, look_s, min_tilt_deg)
    if then_s is not None:
        later = down_after(train_data, trial, peak, then_s, min_tilt_deg, hold_end=True)
        later_rot = down_after(rotated, t_rot, p_rot, then_s, min_tilt_deg, hold_end=True)
        down = np.where(later == 1, down, 0).astype(np.int8)
        down_rot = np.where(later_rot == 1, down_rot, 0).astype(np.int8)
    n = data.n_trials
    rec = trial < n
    held = ((x[rec], trial[rec], down[rec]), (x_rot, t_rot, down_rot))
    found = [np.zeros(n, dtype=bool) for _ in range(4)]  # shipped, look: recorded, turned
    unknown_adl = [np.zeros(n, dtype=bool) for _ in range(2)]
    lows: list[float] = []
    splitter = GroupKFold(n_splits=tf.OUTER_FOLDS)
    for k, (trn, val) in enumerate(splitter.split(np.arange(n), groups=data.subject)):
        subjects = np.unique(data.subject[trn])
        trials = np.flatnonzero(np.isin(train_data.subject, subjects))
        fitted = tf.fit_with_threshold(x, trial, train_data, trials)
        t_hi = fitted.threshold
        rows, sc = fitted.inner_rows, fitted.inner_row_scores
        adl = ~train_data.is_fall[trial[rows]] & (down[rows] != 0) & (sc < t_hi)
        n_recorded = train_data.n_trials // (copies + 1)
        hours = tf.adl_hours(train_data, trials[trials < n_recorded])
        per_trial = tf.trial_max(np.where(adl, sc, 0.0), trial[rows], train_data.n_trials)
        adl_scores = np.sort(per_trial[trials[~train_data.is_fall[trials]]])[::-1]
        allowed = tf.allowed_alarms(tf.SHIPPED_RULE, adl_scores.size, hours)
        ceiling = adl_scores[allowed] if allowed < adl_scores.size else 0.0
        t_lo = float(min(t_hi, max(0.05, np.nextafter(ceiling, 1.0))))
        lows.append(round(t_lo, 4))
        inner_fall = train_data.is_fall[trial[rows]]
        hit = (sc >= t_hi) | ((sc >= t_lo) & (down[rows] == 1))
        inner = tf.trial_max(hit.astype(float), trial[rows], train_data.n_trials)
        falls = trials[train_data.is_fall[trials]]
        print(f"fold {k}: threshold {t_hi:.4f}, lower {t_lo:.4f}; inner out-of-fold "
              f"sensitivity {np.mean(fitted.inner_scores[train_data.is_fall[trials]] >= t_hi):.4f}"
              f" -> {np.mean(inner[falls] > 0):.4f} ({int(inner_fall.sum())} fall rows)",
              flush=True)
        for j, (xx, tt, dd) in enumerate(held):
            sel = np.isin(tt, val)
            s = fitted.model.predict_proba(xx[sel])[:, 1]
            np.logical_or.at(found[j], tt[sel], s >= t_hi)
            np.logical_or.at(found[2 + j], tt[sel], (s >= t_hi) | ((s >= t_lo) & (dd[sel] == 1)))
            np.logical_or.at(unknown_adl[j], tt[sel], (s >= t_lo) & (s < t_hi) & (dd[sel] == -1))
    for j, name in enumerate(("as recorded", "turned")):
        print(f"- {name}: shipped {_figures(found[j], data)}; with the look "
              f"{_figures(found[2 + j], data)}; ADL trials whose band candidate's look falls "
              f"after the recording: {int(np.sum(unknown_adl[j] & ~data.is_fall))}")
        print(f"  found only with the look: {_count_by(found[2 + j] & ~found[j], data)}")
    print(f"lower thresholds {lows}")


def after_impact_facts(data: tf.Data) -> None:
    """What the recordings hold after the impact: per fall trial, the seconds recorded after
    its largest peak and its posture in the last second; per candidate of SE07's car trials
    (D17), how long after the peak the wearer reads upright again."""
    after = []
    lying_end = []
    n_up = 0  # fall trials reading upright (< 35 deg) in some second from +1 s on
    for i in np.flatnonzero(data.is_fall):
        t = data.trial(int(i)).astype(np.float64)
        p = int(tf.ft.magnitude_g(t).argmax())
        after.append((t.shape[0] - 1 - p) / tf.ft.FS_HZ)
        lying_end.append(tf.ft.angle_deg(t[-tf.ft.FS_HZ:].mean(axis=0), data.up0[i]) >= 60.0)
        n_up += any(tf.ft.angle_deg(t[e - tf.ft.FS_HZ : e].mean(axis=0), data.up0[i]) < 35.0
                        for e in range(p + 2 * tf.ft.FS_HZ, t.shape[0] + 1, tf.ft.FS_HZ // 2))
    a = np.asarray(after)
    print(f"fall trials: {a.size}; seconds recorded after the largest peak: min {a.min():.1f}, "
          f"10th percentile {np.percentile(a, 10):.1f}, median {np.median(a):.1f}, "
          f"max {a.max():.1f}; at least 6 / 8 / 10 / 12 / 13 s: "
          f"{[int(np.sum(a >= s)) for s in (6, 8, 10, 12, 13)]}; lying (>= 60 deg) in the last "
          f"second: {int(np.sum(lying_end))}; upright (< 35 deg) again in some second from +1 s "
          f"after it: {n_up}")
    car = np.flatnonzero((data.subject == "SE07") & (data.activity == "D17"))
    sub = tf._replace(data, offsets=np.concatenate(([0], np.cumsum(np.diff(data.offsets)[car]))),
                      acc=np.concatenate([data.trial(int(i)) for i in car]), up0=data.up0[car],
                      subject=data.subject[car], activity=data.activity[car],
                      age_group=data.age_group[car], is_fall=data.is_fall[car])
    _, trial, peak = candidate_peaks(sub)
    for r in range(trial.size):
        t = sub.trial(int(trial[r])).astype(np.float64)
        tilts = [tf.ft.angle_deg(t[e - tf.ft.FS_HZ : e].mean(axis=0), sub.up0[trial[r]])
                 for e in range(int(peak[r]) + tf.ft.FS_HZ, t.shape[0] + 1, tf.ft.FS_HZ // 2)]
        down = [j for j, v in enumerate(tilts) if v >= 60.0]
        up_again = next((j for j in range(down[0], len(tilts)) if tilts[j] < 60.0), None) \
            if down else None
        print(f"SE07 D17 trial {trial[r]}, candidate at {peak[r] / tf.ft.FS_HZ:.1f} s: "
              + ("never down" if up_again is None and not down else
                 f"down from +{1 + down[0] / 2:.1f} s, upright again at "
                 + ("the end" if up_again is None else f"+{1 + up_again / 2:.1f} s")))


def _count_by(mask: np.ndarray, data: tf.Data) -> list[str]:
    return [f"{data.subject[i]} {data.activity[i]}" for i in np.flatnonzero(mask)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=tf.AUG_COPIES)
    parser.add_argument("--streams", action="store_true")
    parser.add_argument("--second-look", type=float, metavar="S",
                        help="instead: a second look S seconds after the peak (still down?)")
    parser.add_argument("--then", type=float, metavar="S2",
                        help="with --second-look: a further look, a recording's end held")
    parser.add_argument("--down-deg", type=float, default=60.0)
    parser.add_argument("--facts", action="store_true",
                        help="instead: what the recordings hold after the impact")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        if args.facts:
            after_impact_facts(tf.load(args.data))
        elif args.second_look is not None:
            second_look(tf.load(args.data), args.copies, args.second_look, args.down_deg,
                        args.then)
        else:
            sweep(tf.load(args.data), args.copies, args.streams)
    return 0


if __name__ == "__main__":
    sys.exit(main())
