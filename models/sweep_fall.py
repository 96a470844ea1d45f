"""The card's second-pass table: nested subject-wise CV, per trial, for a number of turned
copies and every threshold rule of `RULES`; the shipped configuration reproduces the card.

    python -m models.sweep_fall --data ../shared/data/falls/sisfall_dev_50hz.npz --copies 1

The same code as `models.train_fall` (candidates through the production `FallDetector`, the
two-round labels, `fit_with_threshold`). A held-out trial is detected at threshold t exactly
when one of its scored candidate windows reaches t, so each trial's highest score (the fold's
scikit-learn model on its candidate rows, as recorded and turned with `EVAL_SEED`) gives its
decision under every rule at once. `--streams` also streams the held-out daily-activity
trials back to back (`DAY_STREAMS`) with the fold's model exported to ONNX. One core.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=tf.AUG_COPIES)
    parser.add_argument("--streams", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        sweep(tf.load(args.data), args.copies, args.streams)
    return 0


if __name__ == "__main__":
    sys.exit(main())
