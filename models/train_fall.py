"""Train the fall classifier on SisFall and ship it as ONNX with its model card.

    python -m models.train_fall --data ../shared/data/falls/sisfall_dev_50hz.npz

0. Orientation (issue 14): every trial's detector knows its wearer's upright direction, learned
   by `models.features.UprightTracker` from the subject's own walk (`PRIME_ACTIVITY`, first
   `PRIME_S` s) as the gateway learns it from the wearer's walking. Training uses every trial
   as recorded plus `AUG_COPIES` turned copies (`turned`: a random rotation, a bias of up to
   +-`BIAS_MG` per axis, `NOISE_MG` of noise, the priming walk turned alike; seeded).
1. Candidates: every trial is streamed through the production `FallDetector` (same trigger,
   same ring buffer, same `models.features`) with a recording scorer, giving one feature row
   per impact-peak candidate.
2. Labels (multiple-instance): a fall trial holds one fall and some ordinary movement, so only
   one candidate per fall trial is positive. Round 1 takes the highest peak; round 2 takes the
   candidate that round 1 scored highest out of fold (by subject). The other candidates of a
   fall trial are left out; every candidate of a daily-activity trial is negative.
3. Threshold: the lowest score at which the out-of-fold daily-activity trials alarmed are at
   most the issue's goal, `MAX_FA_PER_24H` per 24 h of those trials' recordings (inner
   cross-validation by subject; about 9 h of them, so none may be alarmed). The card also
   reports the nested figures of the other rules in `RULES_COMPARED`.
4. Reported figures: nested, subject-wise. For each outer fold (GroupKFold by subject), steps
   2-3 run on its training subjects only; its held-out subjects' trials are then streamed
   through `FallDetector` with that fold's model (exported to ONNX) and threshold: as
   recorded, turned (seed `EVAL_SEED`, never a training one), and turned over each lossy BLE
   link of `edge.commands.eval_fall.LINKS` through the real stream decoder. Nothing is tuned
   on them.
   Their daily-activity trials are also streamed back to back (`stream_day`, `DAY_STREAMS`:
   paused between recordings through the real stream decoder, the faithful one; blended by a
   1 s transition; butted), as recorded and turned one way per subject, for false alarms per
   24 h.
5. Shipped model: steps 2-3 on all subjects, exported with skl2onnx, checked with onnxruntime.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.commands.eval_fall import Link, first_fall_s, link_notifications, stream_trial
from edge.decode.wearable import WearableStream
from edge.detect import fall as fall_detect
from edge.detect.fall import FallDetector
from edge.events import AccelFrame, Finding
from models import features as ft

_LOGGER = logging.getLogger(__name__)

OUT_DIR = Path(__file__).resolve().parent
MODEL_NAME = "fall_detector"
INPUT_NAME = "features"
VECTORS = OUT_DIR.parent / "tests" / "vectors" / "fall_windows.npz"
VECTOR_ROWS = 512
OUTER_FOLDS = 7  # 28 subjects -> 4 held out per fold
INNER_FOLDS = 6
MAX_FA_PER_24H = 1.0  # the goal, also the threshold rule (see choose_threshold)
SHIPPED_RULE = "per_24h"
# threshold rules reported side by side in the card: "per_24h" (the goal) or a share of the
# daily-activity trials allowed above the threshold
RULES_COMPARED: tuple[str, ...] = ("per_24h", "0.1%", "0.25%")
BLEND_S = 1.0  # the blended back-to-back stream: a 1 s straight transition between recordings
GAP_S = 60.0  # the paused back-to-back stream: a minute without frames between recordings
PERFECT_LINK = Link("every frame, in order")
# the back-to-back streams of the held-out daily-activity trials: (blend_s, gap_s, turned);
# "paused" is the faithful one (see `stream_day`), the others are kept for the record
DAY_STREAMS: dict[str, tuple[float, float, bool]] = {
    "paused": (0.0, GAP_S, False),
    "turned": (0.0, GAP_S, True),
    "blended": (BLEND_S, 0.0, False),
    "turned_blended": (BLEND_S, 0.0, True),
    "raw": (0.0, 0.0, False),
}
SEED = 0
# orientation: augmentation of the training trials and the turned evaluation (issue 14)
BIAS_MG = 40.0  # per-axis offset drawn uniformly in +-this
NOISE_MG = 15.0  # white noise per axis (standard deviation)
AUG_COPIES = 2  # turned copies of every training trial, beside the trial as recorded
AUG_SEED = 1  # training augmentation (per fold and shipped alike)
EVAL_SEED = 2  # the held-out trials' turns: never the training ones
DAY_SEED = 3  # the turned back-to-back stream: one turn per held-out subject
LINK_SEED = 4  # BLE link losses
PRIME_ACTIVITY = "D01"  # each trial's detector knows its wearer from this earlier walk
PRIME_S = 30.0
HGB_PARAMS: dict[str, Any] = {
    "max_iter": 300,
    "learning_rate": 0.05,
    "max_leaf_nodes": 15,
    "l2_regularization": 1.0,
    "early_stopping": False,  # fixed rounds: its 10 % split would be by row, not by subject
    "random_state": SEED,
}
CITATION = (
    "A. Sucerquia, J. D. López, J. F. Vargas-Bonilla, \"SisFall: A Fall and Movement "
    "Dataset\", Sensors 2017, 17(1):198, doi:10.3390/s17010198"
)


@dataclass(frozen=True)
class Data:
    acc: np.ndarray
    offsets: np.ndarray
    subject: np.ndarray
    age_group: np.ndarray
    activity: np.ndarray
    is_fall: np.ndarray
    up0: np.ndarray  # (T, 3) the wearer's upright direction learned from their earlier walk

    def trial(self, i: int) -> np.ndarray:
        return self.acc[self.offsets[i] : self.offsets[i + 1]]

    @property
    def n_trials(self) -> int:
        return int(self.offsets.size - 1)


def load(path: Path) -> Data:
    """The fall-data file as recorded (no rotation); each trial primed with its subject's walk."""
    with np.load(path, allow_pickle=False) as z:
        raw = Data(
            acc=np.asarray(z["acc_mg"]),
            offsets=np.asarray(z["offsets"]).astype(np.int64),
            subject=np.asarray(z["subject"]).astype(str),
            age_group=np.asarray(z["age_group"]).astype(str),
            activity=np.asarray(z["activity"]).astype(str),
            is_fall=np.asarray(z["is_fall"]).astype(bool),
            up0=np.zeros((0, 3)),
        )
    walks = _walks(raw)
    up0 = np.stack([_learned_up(walks[str(s)]) for s in raw.subject])
    return _replace(raw, up0=up0)


def _replace(data: Data, **changes: Any) -> Data:
    from dataclasses import replace

    return replace(data, **changes)


def _walks(data: Data) -> dict[str, np.ndarray]:
    """Per subject, the first `PRIME_S` seconds of their `PRIME_ACTIVITY` trial."""
    out: dict[str, np.ndarray] = {}
    for i in range(data.n_trials):
        s = str(data.subject[i])
        if data.activity[i] == PRIME_ACTIVITY and s not in out:
            out[s] = data.trial(i)[: int(PRIME_S * ft.FS_HZ)]
    missing = sorted(set(data.subject.tolist()) - set(out))
    if missing:
        raise ValueError(f"no {PRIME_ACTIVITY} walk for subject(s) {missing}")
    return out


def _learned_up(walk_mg: np.ndarray) -> np.ndarray:
    """What the detector's upright tracker learns from a walk (the nominal axis if nothing)."""
    tracker = ft.UprightTracker()
    tracker.observe(walk_mg)
    if not tracker.found:
        _LOGGER.warning("a priming walk gave no upright direction: nominal axis kept")
    return tracker.up.copy()


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix drawn uniformly over all rotations (a random unit quaternion)."""
    w, x, y, z = rng.normal(size=4)
    n = np.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def turn(samples_mg: np.ndarray, rotation: np.ndarray, bias_mg: np.ndarray,
         noise_mg: float, rng: np.random.Generator) -> np.ndarray:
    """A recording as a device turned by `rotation` with an offset and white noise reads it."""
    out = np.asarray(samples_mg, dtype=np.float64) @ rotation.T + bias_mg
    if noise_mg > 0.0:
        out += rng.normal(0.0, noise_mg, out.shape)
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def turned(data: Data, seed: int, per_subject: bool = False) -> Data:
    """Every trial turned by a random rotation, a bias of up to +-`BIAS_MG` per axis and
    `NOISE_MG` of noise (one draw per trial, or per subject: one device clipped on for the day);
    its priming walk turned the same way (same rotation and bias, its own noise)."""
    rng = np.random.default_rng(seed)
    walks = _walks(data)
    subjects = sorted(set(data.subject.tolist()))
    per_subj = {s: (random_rotation(rng), rng.uniform(-BIAS_MG, BIAS_MG, 3)) for s in subjects}
    parts: list[np.ndarray] = []
    up0 = np.zeros((data.n_trials, 3))
    for i in range(data.n_trials):
        if per_subject:
            rot, bias = per_subj[str(data.subject[i])]
        else:
            rot, bias = random_rotation(rng), rng.uniform(-BIAS_MG, BIAS_MG, 3)
        parts.append(turn(data.trial(i), rot, bias, NOISE_MG, rng))
        up0[i] = _learned_up(turn(walks[str(data.subject[i])], rot, bias, NOISE_MG, rng))
    return _replace(data, acc=np.concatenate(parts), up0=up0)


def concat(a: Data, b: Data) -> Data:
    """Trials of `a` then trials of `b` (same subjects' ids: the copies group together)."""
    return Data(
        acc=np.concatenate([a.acc, b.acc]),
        offsets=np.concatenate([a.offsets, b.offsets[1:] + a.offsets[-1]]),
        subject=np.concatenate([a.subject, b.subject]),
        age_group=np.concatenate([a.age_group, b.age_group]),
        activity=np.concatenate([a.activity, b.activity]),
        is_fall=np.concatenate([a.is_fall, b.is_fall]),
        up0=np.concatenate([a.up0, b.up0]),
    )


def detector(scorer: Callable[[np.ndarray], np.ndarray], data: Data, i: int,
             threshold: float) -> FallDetector:
    """A fresh production detector for trial `i`, knowing its wearer's upright direction."""
    return FallDetector(scorer, confirm_s=0.0, threshold=threshold, upright=data.up0[i])


def candidates(data: Data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature rows of every candidate the production detector scores, their trial, and per
    trial how many candidates the lying-before gate dropped."""
    rows: list[np.ndarray] = []
    trials: list[int] = []
    current = [0]

    def recorder(x: np.ndarray) -> np.ndarray:
        rows.append(np.asarray(x[0], dtype=np.float32).copy())
        trials.append(current[0])
        return np.zeros(1)

    gated = np.zeros(data.n_trials, dtype=np.int64)
    for i in range(data.n_trials):
        current[0] = i
        det = detector(recorder, data, i, threshold=2.0)  # never fires
        stream_trial(det, data.trial(i))
        gated[i] = det.gated_windows
    return np.stack(rows), np.asarray(trials, dtype=np.int64), gated


def _new_model() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**HGB_PARAMS)


def _labels(x: np.ndarray, trial: np.ndarray, is_fall: np.ndarray,
            pick: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y, used): per fall trial the candidate with the largest `pick` is the positive."""
    y = np.zeros(x.shape[0], dtype=np.int64)
    used = ~is_fall[trial]
    order = np.lexsort((pick, trial))  # by trial, then pick ascending
    last_of_trial = np.r_[trial[order][1:] != trial[order][:-1], True]
    best = order[last_of_trial]
    best = best[is_fall[trial[best]]]
    y[best] = 1
    used[best] = True
    return y, used


def _oof(x: np.ndarray, y: np.ndarray, used: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Out-of-fold probabilities for every row (subject-wise inner folds)."""
    from sklearn.model_selection import GroupKFold

    out = np.zeros(x.shape[0])
    for trn, val in GroupKFold(n_splits=INNER_FOLDS).split(x, y, groups):
        k = trn[used[trn]]
        out[val] = _new_model().fit(x[k], y[k]).predict_proba(x[val])[:, 1]
    return out


def trial_max(scores: np.ndarray, trial: np.ndarray, n_trials: int) -> np.ndarray:
    out = np.zeros(n_trials)
    np.maximum.at(out, trial, scores)
    return out


def allowed_alarms(rule: str, n_adl: int, adl_hours: float) -> int:
    """How many of `n_adl` daily-activity trials (`adl_hours` of recordings) a rule lets
    score above the threshold."""
    if rule == "per_24h":
        return int(np.floor(MAX_FA_PER_24H * adl_hours / 24.0))
    return int(np.floor(float(rule.rstrip("%")) / 100.0 * n_adl))


def choose_threshold(trial_scores: np.ndarray, is_fall: np.ndarray, adl_hours: float,
                     rule: str = SHIPPED_RULE) -> float:
    """Lowest threshold that lets at most `allowed_alarms(rule, ...)` ADL trials above it."""
    adl = np.sort(trial_scores[~is_fall])[::-1]
    allowed = allowed_alarms(rule, adl.size, adl_hours)
    # the (allowed+1)-th highest ADL score must stay below the threshold
    ceiling = adl[allowed] if allowed < adl.size else 0.0
    return float(min(0.99, max(0.05, np.nextafter(ceiling, 1.0))))


@dataclass
class Fitted:
    model: Any
    threshold: float
    n_rows: int
    n_pos: int
    inner_scores: np.ndarray  # out-of-fold max score per trial of `trials` (inner CV)
    trials: np.ndarray
    inner_rows: np.ndarray  # the candidate rows of `trials` (indices into `x`) ...
    inner_row_scores: np.ndarray  # ... and their out-of-fold scores


def fit_with_threshold(x: np.ndarray, trial: np.ndarray, data: Data,
                       trials: np.ndarray) -> Fitted:
    """Steps 2-3 of the module docstring on the given trials only."""
    mask = np.isin(trial, trials)
    xs, ts = x[mask], trial[mask]
    groups = data.subject[ts]
    y1, used1 = _labels(xs, ts, data.is_fall, xs[:, 0])
    oof1 = _oof(xs, y1, used1, groups)
    y2, used2 = _labels(xs, ts, data.is_fall, oof1)
    oof2 = _oof(xs, y2, used2, groups)
    scores = trial_max(oof2, ts, data.n_trials)[trials]
    threshold = choose_threshold(scores, data.is_fall[trials], recorded_adl_hours(data, trials))
    model = _new_model().fit(xs[used2], y2[used2])
    return Fitted(model, threshold, int(used2.sum()), int(y2.sum()), scores, trials,
                  np.flatnonzero(mask), oof2)


def sklearn_scorer(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    def score(rows: np.ndarray) -> np.ndarray:
        return np.asarray(model.predict_proba(rows)[:, 1])

    return score


def onnx_scorer(model: Any, threshold: float, workdir: Path) -> Any:
    """A fold's model as the gateway runs it: exported to ONNX and run with onnxruntime."""
    from models.runtime import OnnxModel

    path = workdir / f"fold-{id(model)}.onnx"
    export_onnx(model, path)
    return OnnxModel(path, card={"features": list(ft.FEATURE_NAMES), "input_name": INPUT_NAME,
                                 "threshold": threshold})


def cross_validate(x: np.ndarray, trial: np.ndarray, data: Data, train_data: Data,
                   workdir: Path) -> dict[str, Any]:
    """Nested subject-wise CV; held-out trials streamed through the production detector, as
    recorded, turned, and over lossy BLE links through the real stream decoder."""
    from sklearn.model_selection import GroupKFold

    from edge.commands.eval_fall import LINKS, stream_over_link

    all_trials = np.arange(data.n_trials)
    rotated = turned(data, EVAL_SEED)
    day_rotated = turned(data, DAY_SEED, per_subject=True)
    detected = np.zeros(data.n_trials, dtype=bool)
    detected_rot = np.zeros(data.n_trials, dtype=bool)
    detected_link = {link.name: np.zeros(data.n_trials, dtype=bool) for link in LINKS}
    by_rule = {rule: np.zeros(data.n_trials, dtype=bool) for rule in RULES_COMPARED}
    rule_thresholds: dict[str, list[float]] = {rule: [] for rule in RULES_COMPARED}
    stream = {name: [0, 0] for name in DAY_STREAMS}
    folds: list[dict[str, Any]] = []
    link_rng = np.random.default_rng(LINK_SEED)
    splitter = GroupKFold(n_splits=OUTER_FOLDS)
    for k, (trn, val) in enumerate(splitter.split(all_trials, groups=data.subject)):
        train_subjects = np.unique(data.subject[trn])
        trn_aug = np.flatnonzero(np.isin(train_data.subject, train_subjects))
        fitted = fit_with_threshold(x, trial, train_data, trn_aug)
        scorer = onnx_scorer(fitted.model, fitted.threshold, workdir)
        th = fitted.threshold
        for i in val:
            det = detector(scorer, data, i, th)
            detected[i] = first_fall_s(stream_trial(det, data.trial(i))) is not None
            det = detector(scorer, rotated, i, th)
            detected_rot[i] = first_fall_s(stream_trial(det, rotated.trial(i))) is not None
            for link in LINKS:
                det = detector(scorer, rotated, i, th)
                found = stream_over_link(det, rotated.trial(i), link, link_rng)
                detected_link[link.name][i] = first_fall_s(found) is not None
        # other threshold rules, for the card: the highest score of each held-out trial (a
        # never-firing detector scores every candidate; a trial is detected at threshold t
        # exactly when one of its candidates scores >= t)
        best = held_out_max_scores(scorer, data, val)
        for rule in RULES_COMPARED:
            th_rule = choose_threshold(fitted.inner_scores, train_data.is_fall[fitted.trials],
                                       recorded_adl_hours(train_data, fitted.trials), rule)
            rule_thresholds[rule].append(round(th_rule, 4))
            by_rule[rule][val] = best[val] >= th_rule
        # all held-out daily-activity trials back to back on one clock (`DAY_STREAMS`): one
        # detector per fold, or turned: per held-out subject one device turn for the day, one
        # detector each
        adl = [int(i) for i in val if not data.is_fall[i]]
        for name, (blend_s, gap_s, is_turned) in DAY_STREAMS.items():
            if not is_turned:
                det = detector(scorer, data, adl[0], th)
                alarms, joins = stream_day(det, [data.trial(i) for i in adl], blend_s, gap_s)
                stream[name][0] += alarms
                stream[name][1] += joins
                continue
            for subject in np.unique(data.subject[adl]):
                mine = [i for i in adl if data.subject[i] == subject]
                det = detector(scorer, day_rotated, mine[0], th)
                alarms, joins = stream_day(det, [day_rotated.trial(i) for i in mine], blend_s,
                                           gap_s)
                stream[name][0] += alarms
                stream[name][1] += joins
        held = sorted({str(s) for s in data.subject[val]})
        folds.append({"fold": k, "held_out": held, "threshold": round(th, 4)})
        _LOGGER.info("fold %d: held out %s, threshold %.4f, sensitivity %.4f / turned %.4f",
                     k, held, th, detected[val][data.is_fall[val]].mean(),
                     detected_rot[val][data.is_fall[val]].mean())
    hours = adl_hours(data)
    return {
        "folds": folds,
        "groups": group_metrics(detected, data),
        "groups_turned": group_metrics(detected_rot, data),
        "turn": {"rotation": "uniform over all rotations, one per trial",
                 "bias_mg": BIAS_MG, "noise_mg": NOISE_MG, "seed": EVAL_SEED},
        "links": [
            {"link": link.name, "frame_samples": 8, "seed": LINK_SEED, "turned": True,
             "groups": group_metrics(detected_link[link.name], data)}
            for link in LINKS
        ],
        "adl_stream": {
            name: {
                "hours": round(hours, 2),
                "blend_s": DAY_STREAMS[name][0],
                "gap_s": DAY_STREAMS[name][1],
                "turned": DAY_STREAMS[name][2],
                "false_alarms": alarms,
                "false_alarms_per_24h": round(alarms / hours * 24.0, 2),
                "false_alarms_with_window_across_a_trial_join": joins,
            }
            for name, (alarms, joins) in stream.items()
        },
        "threshold_rules": [
            {
                "rule": rule,
                "shipped_rule": rule == SHIPPED_RULE,
                "fold_thresholds": rule_thresholds[rule],
                "groups": group_metrics(by_rule[rule], data),
            }
            for rule in RULES_COMPARED
        ],
        "missed_falls": _count(data.activity[data.is_fall & ~detected]),
        "missed_falls_turned": _count(data.activity[data.is_fall & ~detected_rot]),
        "false_alarm_trials": _count(data.activity[~data.is_fall & detected]),
        "false_alarm_trials_turned": _count(data.activity[~data.is_fall & detected_rot]),
    }


def held_out_max_scores(scorer: Callable[[np.ndarray], np.ndarray], data: Data,
                        trials: np.ndarray) -> np.ndarray:
    """Highest classifier score of each given trial through a never-firing detector."""
    best = np.zeros(data.n_trials)
    current = [0]

    def recording(rows: np.ndarray) -> np.ndarray:
        out = scorer(rows)
        best[current[0]] = max(best[current[0]], float(np.max(out)))
        return out

    for i in trials:
        current[0] = int(i)
        stream_trial(detector(recording, data, int(i), threshold=2.0), data.trial(i))
    return best


def stream_day(detector: FallDetector, trials: list[np.ndarray],
               blend_s: float = 0.0, gap_s: float = 0.0) -> tuple[int, int]:
    """Stream recordings back to back on one clock; (fall alarms, alarms whose window holds a
    join: the end of one recording, or for a paused stream the start of the next).

    - `gap_s` > 0: the recordings as a day with pauses the data do not cover. Each recording
      goes as the firmware's frames through one real stream decoder (`WearableStream`); between
      two recordings `gap_s` seconds pass with no frame while the wearable's sample counter runs
      on, so the decoder reports the lost samples and the detector starts its signal again
      (keeping the wearer's upright direction), as it does after any outage.
    - else `blend_s` > 0: each join is a straight-line transition of that long from the last
      sample of one recording to the first of the next.
    - else the recordings are butted together (the sensor teleports at each join)."""
    found: list[Finding] = []
    joins: list[float] = []  # event time where one recording ends and the next part starts
    t0 = 0.0
    blend_n = round(blend_s * ft.FS_HZ)
    decoder = WearableStream(detector.device_id) if gap_s > 0.0 else None
    seq = 0  # the wearable's sample counter
    rng = np.random.default_rng(0)  # a perfect link: its draws decide nothing
    for k, samples in enumerate(trials):
        if k > 0:
            if decoder is not None:
                t0 += gap_s
                seq += round(gap_s * ft.FS_HZ)
            joins.append(t0)  # paused: where the next recording starts
            if decoder is None and blend_n > 0:
                w = (np.arange(1, blend_n + 1) / (blend_n + 1))[:, None]
                bridge = np.rint((1.0 - w) * trials[k - 1][-1] + w * samples[0])
                found += stream_trial(detector, bridge.astype(samples.dtype), t0=t0)
                t0 += blend_n / ft.FS_HZ
        if decoder is not None:
            for data, at in link_notifications(samples, PERFECT_LINK, rng, t0, seq0=seq):
                frame = decoder.feed(data, at)
                if isinstance(frame, AccelFrame):
                    found += detector.feed_frame(frame)
            seq += samples.shape[0]
        else:
            found += stream_trial(detector, samples, t0=t0)
        t0 += samples.shape[0] / ft.FS_HZ
    alarms = [f for f in found if f.action == "raise" and f.type == "fall"]
    span = ft.PRE_S + ft.POST_S + fall_detect.CLUSTER_S  # detection time minus window start
    across = sum(any(f.at - span < j <= f.at for j in joins) for f in alarms)
    return len(alarms), across


def _count(values: np.ndarray) -> dict[str, int]:
    keys, counts = np.unique(values, return_counts=True)
    return {str(a): int(b) for a, b in zip(keys, counts, strict=True)}


def group_metrics(detected: np.ndarray, data: Data) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, mask in (
        ("young", data.age_group == "young"),
        ("elderly", data.age_group == "elderly"),
        ("all", np.ones(data.n_trials, dtype=bool)),
    ):
        falls = mask & data.is_fall
        adl = mask & ~data.is_fall
        out[name] = {
            "fall_trials": int(falls.sum()),
            "detected_falls": int((detected & falls).sum()),
            "sensitivity": _ratio((detected & falls).sum(), falls.sum()),
            "adl_trials": int(adl.sum()),
            "false_alarm_trials": int((detected & adl).sum()),
            "specificity": _ratio((~detected & adl).sum(), adl.sum()),
        }
    return out


def _ratio(a: int, b: int) -> float | None:
    return None if b == 0 else round(float(a) / float(b), 4)


def write_vectors(shipped: Fitted, x: np.ndarray, path: Path) -> None:
    """Recorded candidate windows and the scikit-learn model's scores, for the ONNX test."""
    rows = x[np.linspace(0, x.shape[0] - 1, VECTOR_ROWS).astype(int)]
    probs = shipped.model.predict_proba(rows)[:, 1]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, rows=rows.astype(np.float32), sklearn_prob=probs,
                        threshold=np.float64(shipped.threshold))


def export_onnx(model: Any, path: Path) -> None:
    from unittest import mock

    from skl2onnx import convert_sklearn
    from skl2onnx.common import tree_ensemble
    from skl2onnx.common.data_types import FloatTensorType

    # skl2onnx 1.20 passes a Python bool for the leaves' `nodes_missing_value_tracks_true`,
    # which current protobuf refuses in an ints attribute; hand it an int instead. Our
    # features are never NaN, so the flag has no effect on scores.
    original = tree_ensemble.add_node

    def add_node(*args: Any, **kwargs: Any) -> Any:
        flag = kwargs.get("nodes_missing_value_tracks_true", 0)
        kwargs["nodes_missing_value_tracks_true"] = int(flag)
        return original(*args, **kwargs)

    with mock.patch.object(tree_ensemble, "add_node", add_node):
        onx = convert_sklearn(
            model,
            initial_types=[(INPUT_NAME, FloatTensorType([None, ft.N_FEATURES]))],
            options={id(model): {"zipmap": False}},
            target_opset={"": 17, "ai.onnx.ml": 3},
        )
    onx.producer_name = "veille.models.train_fall"
    onx.graph.name = MODEL_NAME  # skl2onnx picks a random one: fixed, the file is reproducible
    path.write_bytes(onx.SerializeToString())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--skip-cv", action="store_true", help="ship without the nested CV")
    parser.add_argument("--card-only", action="store_true",
                        help="rewrite the card.md from its .json (words changed, no training)")
    parser.add_argument("--vectors", type=Path, default=VECTORS,
                        help="where to record windows + scikit-learn scores for the tests")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.card_only:
        card = json.loads((args.out / f"{MODEL_NAME}.card.json").read_text(encoding="utf-8"))
        (args.out / f"{MODEL_NAME}.card.md").write_text(card_markdown(card), encoding="utf-8")
        return 0
    logging.getLogger("edge").setLevel(logging.WARNING)  # one line per detection is too many
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # one core: the gateway's neighbours need the other
        return _train(args)


def _train(args: argparse.Namespace) -> int:
    import tempfile

    started = time.monotonic()
    data = load(args.data)
    train_data = data
    for copy in range(AUG_COPIES):
        train_data = concat(train_data, turned(data, AUG_SEED + 100 * copy))
    x, trial, gated = candidates(train_data)
    _LOGGER.info("%d candidate windows from %d trials (%d as recorded + %d turned; %d gated: "
                 "lying before) in %.0f s", x.shape[0], train_data.n_trials, data.n_trials,
                 train_data.n_trials - data.n_trials, int(gated.sum()),
                 time.monotonic() - started)
    with tempfile.TemporaryDirectory() as workdir:
        cv = None if args.skip_cv else cross_validate(x, trial, data, train_data, Path(workdir))
    shipped = fit_with_threshold(x, trial, train_data, np.arange(train_data.n_trials))
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / f"{MODEL_NAME}.onnx"
    export_onnx(shipped.model, onnx_path)
    write_vectors(shipped, x, args.vectors)
    card = make_card(args, data, x, trial, shipped=shipped, cv=cv, onnx_path=onnx_path,
                     seconds=time.monotonic() - started, gated=gated, train_data=train_data)
    (args.out / f"{MODEL_NAME}.card.json").write_text(
        json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (args.out / f"{MODEL_NAME}.card.md").write_text(card_markdown(card), encoding="utf-8")
    _LOGGER.info("wrote %s (%d bytes), threshold %.4f", onnx_path, onnx_path.stat().st_size,
                 shipped.threshold)
    return 0


def recorded_adl_hours(train_data: Data, trials: np.ndarray) -> float:
    """Hours of daily-activity recordings among `trials` of the training data, each recording
    counted once: its turned copies (the trials after the first `1 / (AUG_COPIES + 1)`) are
    the same hours of life worn differently, not more of them."""
    n_recorded = train_data.n_trials // (AUG_COPIES + 1)
    return adl_hours(train_data, trials[trials < n_recorded])


def adl_hours(data: Data, trials: np.ndarray | None = None) -> float:
    """Hours of daily-activity recordings (of the given trials, default all)."""
    n = np.diff(data.offsets)
    adl = ~data.is_fall
    if trials is not None:
        keep = np.zeros(data.n_trials, dtype=bool)
        keep[trials] = True
        adl &= keep
    return float(n[adl].sum()) / ft.FS_HZ / 3600.0


STREAM_WORDS = {
    "paused": f"paused: {GAP_S:g} s without frames between recordings, real stream decoder",
    "turned": "turned: paused, each subject's device turned one random way for the day",
    "blended": f"blended: a {BLEND_S:g} s straight transition between recordings",
    "turned_blended": "turned and blended",
    "raw": "raw: recordings butted together",
}
HEADLINE_STREAMS = ("paused", "turned")

# `python -m bench.fall` on this model (the detector's code, not the training, sets it)
BENCH_LINES: list[str] = [
    "- 2026-12-02, issue 14's second pass, the machine shared with other engineers' jobs:",
    "  this model 3,074x real time streaming 2.95 h of SisFall (3,273x turned) against 718x",
    "  for the same detector scoring with scikit-learn in the same run (a second run:",
    "  3,014x, 3,692x turned, 600x baseline); 0.033 ms per window (median, 0.082 ms p99);",
    "  318 kB. The previous model, same detector code, in a run at",
    "  a load of 6-7 on the 2 cores: 2,330x (537x baseline); on a quieter machine before:",
    "  6,180x. Target >= 5,000x: not shown in these runs, which the load dominates (the",
    "  baseline fell with it); the model's trees are the same size (300 rounds, 15 leaves).",
]
# the second pass's augmentation run (filled from its measurement; see second_pass_lines)
SECOND_PASS_AUGMENTATION: list[str] = [
    "| 2 turned copies, the shipped rule (the copies' hours make ~28 h of inner ADL"
    " recordings: 1 inner trial allowed above the threshold) | 97.89 / 98.52 / 86.67 % |"
    " 97.96 / 98.44 / 89.33 % | 100.00 / 100.00 % | 0.9606, 0.99 (x5), 0.9575 |",
    "| **shipped**: 2 turned copies, hours once per recording (0 allowed, as with 1 copy) |"
    " 97.82 / 98.52"
    " / 85.33 % | 97.89 / 98.44 / 88.00 % | 100.00 / 100.00 % | 0.9675, 0.99 (x5), 0.9607 |",
    "| 2 turned copies, no cap | 97.33 / 98.00 / 85.33 % | 97.33 / 97.85 / 88.00 % | 100.00 /"
    " 100.00 % | 0.9675, 0.9985, 0.9972, 0.9979, 0.9952, 0.9975, 0.9607 |",
    "| 2 turned copies, <= 0.1 % of inner ADL trials | 98.46 / 98.81 / 92.00 % | 98.39 /"
    " 98.67 / 93.33 % | 99.85 / 99.90 % (3 / 2 trials) | 0.7846, 0.99, 0.9802, 0.9737,"
    " 0.9899, 0.8127, 0.9048 |",
]

RULE_WORDS = {
    "per_24h": f"<= {MAX_FA_PER_24H:g} per 24 h of their recordings (the goal; 0 of ~9 h)",
    "0.1%": "<= 0.1 % of them",
    "0.25%": "<= 0.25 % of them (first pass)",
}


def make_card(args: argparse.Namespace, data: Data, x: np.ndarray, trial: np.ndarray, *,
              shipped: Fitted, cv: dict[str, Any] | None, onnx_path: Path,
              seconds: float, gated: np.ndarray, train_data: Data) -> dict[str, Any]:
    import skl2onnx
    import sklearn

    blob = onnx_path.read_bytes()
    return {
        "name": MODEL_NAME,
        "file": onnx_path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size_bytes": len(blob),
        "input_name": INPUT_NAME,
        "features": list(ft.FEATURE_NAMES),
        "threshold": round(shipped.threshold, 6),
        "window": {"fs_hz": ft.FS_HZ, "pre_s": ft.PRE_S, "post_s": ft.POST_S},
        "trigger": {"magnitude_g": fall_detect.TRIGGER_G, "cluster_s": fall_detect.CLUSTER_S},
        "gate": {"lying_before_deg": ft.LYING_BEFORE_DEG,
                 "rule": "min tilt of half-second mean gravity over -4 s .. -1 s"},
        "classifier": {"type": "HistGradientBoostingClassifier", "params": HGB_PARAMS},
        "data": {
            "file": Path(args.data).name,
            "citation": CITATION,
            "subjects": int(np.unique(data.subject).size),
            "trials": data.n_trials,
            "fall_trials": int(data.is_fall.sum()),
            "adl_trials": int((~data.is_fall).sum()),
            "candidate_windows": int(x.shape[0]),
            "training_trials": train_data.n_trials,
            "augmentation": {"turned_copies": AUG_COPIES, "bias_mg": BIAS_MG,
                             "noise_mg": NOISE_MG, "seed": AUG_SEED},
            "priming_walk": {"activity": PRIME_ACTIVITY, "seconds": PRIME_S},
            "gated_windows": int(gated.sum()),
            "gated_windows_in_fall_trials": int(gated[train_data.is_fall].sum()),
            "adl_windows_per_hour": round(
                float(np.sum(~train_data.is_fall[trial])) / adl_hours(train_data), 1),
            "training_rows": shipped.n_rows,
            "positive_rows": shipped.n_pos,
        },
        "split": {
            "outer": f"GroupKFold({OUTER_FOLDS}) by subject",
            "inner": f"GroupKFold({INNER_FOLDS}) by subject, inside each outer training part",
            "threshold_rule": f"lowest score with at most {MAX_FA_PER_24H:g} inner out-of-fold "
                              "ADL trial alarmed per 24 h of their recordings, each counted "
                              "once (the goal)",
        },
        "cross_validation": cv,
        "command": "python -m models.train_fall --data ../shared/data/falls/sisfall_dev_50hz.npz",
        "train_seconds": round(seconds, 1),
        "versions": {"python": platform.python_version(), "numpy": np.__version__,
                     "scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__},
    }


def card_markdown(card: dict[str, Any]) -> str:
    cv = card["cross_validation"]
    lines = [
        "# Model card: fall_detector.onnx",
        "",
        "Fall classifier for a waist-worn 3-axis accelerometer (milli-g, 50 Hz), run by the",
        "gateway's streaming `FallDetector` (`edge/detect/fall.py`) with onnxruntime.",
        "",
        "## Data",
        "",
        f"- SisFall developer split (`{card['data']['file']}`): {card['data']['subjects']} "
        f"subjects, {card['data']['fall_trials']} fall and {card['data']['adl_trials']} "
        "daily-activity trials, ADXL345 at the waist, resampled to 50 Hz.",
        f"- Citation: {card['data']['citation']}. The dataset states no licence; cite the paper.",
        "",
        "## Design: trigger, then classifier",
        "",
        f"- Trigger: acceleration magnitude above {card['trigger']['magnitude_g']} g; crossings "
        f"within {card['trigger']['cluster_s']} s form one candidate at its highest sample.",
        "  A candidate whose wearer was lying all through -4 s .. -1 s (every half-second",
        f"  mean tilted >= {card['gate']['lying_before_deg']} deg from upright) is dropped: "
        "a fall starts standing or sitting",
        f"  ({card['data']['gated_windows']} candidate windows of the data dropped, "
        f"{card['data']['gated_windows_in_fall_trials']} of them in fall trials).",
        "  A fall out of bed starts lying too; SisFall has none, and this gate would drop it:",
        "  the wearer's long press (sos) and the inactivity detector remain for that case.",
        "  Every fall in the data peaks above 1.59 g; sitting, standing and lying stay below",
        "  1.4 g, so the classifier only sees impact-like moments "
        f"({card['data']['adl_windows_per_hour']} windows per hour of the daily-activity",
        "  recordings, which are mostly walking, jogging and stairs; far fewer in a quiet home).",
        "  That keeps the gateway's work tiny and lets the classifier learn impacts rather than",
        "  the whole space of daily movement. A fall with no impact above 1.4 g is not",
        "  detected: none in this data, but soft slides to the floor exist; the wearer's long",
        "  press (sos) is the answer for those.",
        f"- Window: {card['window']['pre_s']} s before the peak and {card['window']['post_s']} s "
        "after it; the score is computed once those post-peak seconds have arrived, so",
        "  posture and stillness after the impact are part of the decision.",
        f"- Classifier: scikit-learn {card['classifier']['type']} "
        f"({json.dumps(card['classifier']['params'])}), exported with skl2onnx.",
        f"- Threshold: {card['threshold']:.4f} ({card['split']['threshold_rule']}).",
        "",
        *orientation_lines(card),
        "## Features (input `features`, float32, in this order)",
        "",
        *[f"{i + 1}. `{name}`" for i, name in enumerate(card["features"])],
        "",
        "Computed by `models/features.py` (pure numpy), imported by training and the gateway.",
        "",
        "## Split and validation",
        "",
        f"- Outer: {card['split']['outer']}; inner: {card['split']['inner']}.",
        "- Labels, threshold and model of each outer fold come from its training subjects only;",
        "  every held-out trial is then streamed through the production `FallDetector`",
        "  (frames of 25 samples, confirmation window not applied). No subject is in both.",
        "",
    ]
    if cv is not None:
        lines += [
            "Every held-out trial's detector knows its wearer's upright direction from the",
            f"subject's own walk ({card['data']['priming_walk']['activity']}, first "
            f"{card['data']['priming_walk']['seconds']:g} s, the device turned the same way), as",
            "the gateway knows it from the wearer's earlier walking; the tracker keeps learning",
            "during the trial.",
            "",
            "| trials | group | fall trials | sensitivity | ADL trials | false-alarm trials | "
            "specificity |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, key in (("as recorded", "groups"), ("turned", "groups_turned")):
            for name, g in cv[key].items():
                lines.append(
                    f"| {label} | {name} | {g['fall_trials']} | {_pct(g['sensitivity'])} | "
                    f"{g['adl_trials']} | {g['false_alarm_trials']} | "
                    f"{_pct(g['specificity'])} |"
                )
        turn = cv["turn"]
        lines += [
            "",
            f"Turned: each held-out trial (and its priming walk) turned by a rotation drawn "
            f"{turn['rotation'].split(',')[0]}, plus a bias drawn in +-{turn['bias_mg']:g} mg per",
            f"axis and {turn['noise_mg']:g} mg of white noise (seed {turn['seed']}, never a "
            "training seed).",
            "",
            "BLE link through the real stream decoder (`edge.decode.wearable.WearableStream`),",
            "the firmware's 8-sample frames, every held-out trial turned as above:",
            "",
            "| link | sensitivity all / young / elderly | specificity all | false-alarm trials |",
            "|---|---|---|---|",
            *[
                f"| {lk['link']} | {_pct(lk['groups']['all']['sensitivity'])} / "
                f"{_pct(lk['groups']['young']['sensitivity'])} / "
                f"{_pct(lk['groups']['elderly']['sensitivity'])} | "
                f"{_pct(lk['groups']['all']['specificity'])} | "
                f"{lk['groups']['all']['false_alarm_trials']} |"
                for lk in cv["links"]
            ],
            "",
            "A lost frame is bridged by holding the last sample (up to 2 s); a late frame was",
            "already bridged when it comes and is dropped; a duplicate is dropped.",
            "",
        ]
        streams = cv["adl_stream"]
        raw = streams["raw"]
        lines += [
            "",
            f"All daily-activity trials of the held-out subjects streamed back to back "
            f"({raw['hours']} h of recordings, one clock; one detector per fold, or per subject "
            "when turned):",
            "",
            "| stream | false alarms | per 24 h | alarms whose window reaches a join |",
            "|---|---|---|---|",
            *[
                f"| {STREAM_WORDS[name]} | {st['false_alarms']} | "
                f"{'**' if name in HEADLINE_STREAMS else ''}{st['false_alarms_per_24h']}"
                f"{'**' if name in HEADLINE_STREAMS else ''} | "
                f"{st['false_alarms_with_window_across_a_trial_join']} |"
                for name, st in streams.items()
            ],
            "",
            "- Which stream is faithful: SisFall's recordings are separate sessions; what the",
            "  wearer did between two of them (minutes of standing, walking to the next set-up)",
            "  was not recorded. Butting them together teleports the sensor (seated at the end",
            "  of one, lying at the start of the next) and builds windows whose seconds before an",
            "  impact come from another session; the blended stream only smooths that teleport",
            "  into a 1 s straight line, a movement nobody made, and its windows still span two",
            f"  sessions. The paused stream gives the gateway what it would get: {GAP_S:g} s with",
            "  no frame between recordings, through the real stream decoder, which reports the",
            "  lost samples, so the detector starts its signal again (as after any outage) and",
            "  keeps the wearer's upright direction. Every candidate inside a recording is still",
            "  scored, the first seconds of a recording included (their window is padded with",
            "  the recording's first sample), so no alarm of a real recording is hidden: the",
            "  paused streams count the same alarms as the trials streamed one by one (with 1",
            "  turned copy the one alarm left was SE07's car trial, D17, its false-alarm",
            "  trial). Any",
            f"  pause longer than {fall_detect.MAX_FILL_GAP_S:g} s gives the same restart. "
            "The other streams are kept for the",
            "  record; their extra alarms are windows that span two sessions.",
            "  The per-24 h figures divide by the recordings' hours only.",
            f"- Missed falls by activity: {cv['missed_falls']}; turned: "
            f"{cv['missed_falls_turned']}.",
            f"- False-alarm trials by activity: {cv['false_alarm_trials']}; turned: "
            f"{cv['false_alarm_trials_turned']}.",
            "- Elderly falls come from one subject (SE06), the only elderly subject who fell in",
            "  this split: the elderly sensitivity rests on 75 trials of one person.",
            f"- Per-fold thresholds: {[f['threshold'] for f in cv['folds']]}.",
            "",
            "Threshold rules compared (nested, per trial; the shipped rule is marked):",
            "",
            "| inner out-of-fold ADL trials allowed above it | sensitivity all / young / elderly | "
            "specificity all | false-alarm trials |",
            "|---|---|---|---|",
            *[
                f"| {RULE_WORDS[r['rule']]}{' (shipped)' if r['shipped_rule'] else ''}"
                f" | {_pct(r['groups']['all']['sensitivity'])} / "
                f"{_pct(r['groups']['young']['sensitivity'])} / "
                f"{_pct(r['groups']['elderly']['sensitivity'])} | "
                f"{_pct(r['groups']['all']['specificity'])} | "
                f"{r['groups']['all']['false_alarm_trials']} |"
                for r in cv["threshold_rules"]
            ],
            "",
            "The shipped rule is the goal itself. The other two are reported because they",
            "were compared on these same nested results (a small selection on them): they",
            "detect more elderly falls (SE06) at the price of ADL trials alarmed, that is more",
            "false alarms per 24 h than the goal allows. Switching is `SHIPPED_RULE`.",
            "",
            *history_lines(),
            "",
            *second_pass_lines(),
            "",
            *third_pass_lines(),
            "",
            "## Against the goals (issues 3 and 14)",
            "",
            *goal_lines(cv),
            "",
            "How honest these figures are: models, labels and thresholds are nested as above.",
            "The design itself (trigger level, window lengths, feature list, the two-round",
            "labels, the classifier settings, the lying-before gate and its 70 deg level, for",
            "which 60 deg was tried as well, and the threshold rule among the three above) was",
            "chosen while looking at subject-wise cross-validation on this same split, so the",
            "figures may be optimistic; the held-out subjects kept outside this folder are the",
            "real test. Per trial, the elderly figure rests on one subject (SE06). The",
            f"per-24 h figures count few alarms in {cv['adl_stream']['raw']['hours']} h: one "
            f"alarm is {24.0 / cv['adl_stream']['raw']['hours']:.1f} per 24 h, and none seen "
            "still allows, at 95 %",
            f"confidence, up to 3 in that time ({72.0 / cv['adl_stream']['raw']['hours']:.1f} "
            "per 24 h): these data cannot show <= 1 per 24 h.",
            "",
        ]
    lines += [
        "## Speed (`python -m bench.fall`, one core)",
        "",
        *BENCH_LINES,
        "",
        "## File",
        "",
        f"- `{card['file']}`: {card['size_bytes']} bytes, sha256 `{card['sha256']}`.",
        f"- Made by: `{card['command']}` ({card['train_seconds']} s on one core).",
        f"- Versions: {card['versions']}.",
        "",
    ]
    return "\n".join(lines)


def goal_lines(cv: dict[str, Any]) -> list[str]:
    """Each goal of the issues with the cross-validated figure and whether it is met."""
    def verdict(v: float | None, goal: float) -> str:
        return "met" if v is not None and v >= goal else "NOT met"

    out = []
    for words, key, sens_goal in (("as recorded", "groups", 0.98),
                                  ("turned + bias + noise", "groups_turned", 0.97)):
        g = cv[key]
        for label, metric, goal in ((f"sensitivity >= {100 * sens_goal:g} %", "sensitivity",
                                     sens_goal),
                                    ("specificity >= 99.5 %", "specificity", 0.995)):
            out.append(f"- {words}, {label}: all {_pct(g['all'][metric])} "
                       f"({verdict(g['all'][metric], goal)}); young "
                       f"{_pct(g['young'][metric])}, elderly {_pct(g['elderly'][metric])} "
                       "(reported apart)")
    streams = cv["adl_stream"]
    zero = all(streams[n]["false_alarms"] == 0 for n in HEADLINE_STREAMS)
    out.append(f"- 0 false alarms over the daily-activity recordings back to back: paused "
               f"{streams['paused']['false_alarms']}, turned {streams['turned']['false_alarms']}"
               f" ({'met' if zero else 'NOT met'}; blended "
               f"{streams['blended']['false_alarms']}, turned and blended "
               f"{streams['turned_blended']['false_alarms']}, raw "
               f"{streams['raw']['false_alarms']})")
    return out


def orientation_lines(card: dict[str, Any]) -> list[str]:
    """How the model copes with a device worn at any angle (issue 14)."""
    aug = card["data"]["augmentation"]
    return [
        "## Orientation: the device may be clipped on at any angle",
        "",
        "- No feature reads a fixed device axis. Magnitude features, the angle between the",
        "  gravity direction before and after the impact, total (not per-axis) variance and",
        "  the velocity along the gravity direction just before the impact do not change when",
        "  the device is turned. Posture features (tilt before, after, least tilt before, final",
        "  posture, acceleration along and across upright at the peak, velocity along upright)",
        "  are measured against the wearer's upright direction.",
        "- That direction is learned from the stream (`models.features.UprightTracker`): each",
        "  2 s block that looks like walking (stepping magnitude with a step period, a steady",
        "  mean direction) gives one estimate; two agreeing blocks set it, later walking",
        "  refines it, and three walking blocks in a row that agree on another direction",
        "  replace it (the device was clipped on differently). Standing still is never used",
        "  on its own: standing and lying still look alike to an accelerometer. Until the",
        "  wearer walks, the device's nominal axis (worn as designed) stands in. The",
        "  installer's walk-through checks it: \"portez le capteur, marchez quelques pas\".",
        "- The lying-before gate uses the same direction, so it works with the device upside",
        "  down (tested in six orientations).",
        f"- Training: every trial as recorded plus {aug['turned_copies']} turned "
        f"cop{'y' if aug['turned_copies'] == 1 else 'ies'} (random "
        f"rotation, +-{aug['bias_mg']:g} mg bias per axis, {aug['noise_mg']:g} mg noise; seed "
        f"{aug['seed']}), its priming walk turned alike.",
        "- Limit: the detector needs the wearer to have walked with the device as it is worn.",
        "  A detector that knows no wearer yet (a new wearable, or `veille eval-fall`, which",
        "  streams each trial alone) reads posture against the nominal axis until the first",
        "  walk; falls that follow walking in the same trial are found, others may not be; a",
        "  re-clipped device is re-learned after about 6 s of walking. Measured with the",
        "  previous model (1 turned copy) on its own training trials (in-sample, an upper",
        "  bound): turned trials with no earlier walk 60.5 % sensitivity, the same trials",
        "  after the walk 99.7 %. The gateway keeps the learned direction across restarts",
        "  (registry document `wearers`), so only a new wearable or a re-clipped one waits for",
        "  a walk.",
        "",
    ]


def history_lines() -> list[str]:
    """The first pass's figures (17 features, no lying gate), for the record."""
    return [
        "## Before and after (same nested protocol, same data)",
        "",
        "First pass (17 features, no lying-before gate, early stopping on a 10 % row split):",
        "sensitivity young 99.11 %, elderly 93.33 %, all 98.81 %; specificity young 99.79 %,",
        "elderly 99.83 %, all 99.80 %; back-to-back raw stream 9 false alarms in 10.85 h =",
        "19.91 per 24 h (5 of them at joins). The fair stream did not exist then.",
        "",
        "This model: the table above. What changed and why:",
        "",
        "- Lying-before gate (`models.features.lying_before`): the top false alarms were D14",
        "  (rolling from the back to the side, 2-3 g peaks) with the wearer lying before and",
        "  after. A fall from standing or sitting cannot start lying, so such a window is",
        "  dropped before the classifier, in training and in the gateway alike.",
        "- 11 more features: the least tilt over the pre-impact span, the final posture, the",
        "  velocity along the gravity direction before the impact, the longest low-g run, the",
        "  longest stillness after, and the unit gravity direction before and after.",
        "- Fixed 300 boosting rounds instead of early stopping on a random 10 % of rows (rows",
        "  of one subject on both sides of that split).",
    ]


def second_pass_lines() -> list[str]:
    """Issue 14's second pass: what was tried against the two goals left, with its figures."""
    return [
        "## Issue 14, second pass: what was tried against the goals left",
        "",
        "Same nested protocol (the code is deterministic: rerun, the previous model's",
        "configuration reproduced every figure of its card, fold thresholds included). Rows",
        "with 1 copy share one set of fold models, rows with 2 copies another. Per trial, a",
        "held-out trial counts as detected when one of its candidate windows scores at least",
        "its fold's threshold, which is the detector's own decision.",
        "",
        "| configuration | as recorded: sensitivity all / young / elderly | turned: all / young"
        " / elderly | specificity as recorded / turned | fold thresholds |",
        "|---|---|---|---|---|",
        "| the previous model: 1 turned copy; no inner out-of-fold ADL trial above the threshold"
        " per 24 h, capped at 0.99 | 97.75 / 98.30 / 88.00 % | 97.75 / 98.22 / 89.33 % |"
        " 99.95 / 99.95 % | 0.9204, 0.99 (x5), 0.9645 |",
        "| the same rule without the 0.99 cap | 97.05 / 97.56 / 88.00 % | 97.12 / 97.56 /"
        " 89.33 % | 99.95 / 99.95 % | 0.9204, 0.997, 0.9977, 0.9983, 0.9991, 0.9971, 0.9645 |",
        "| cap at 0.999 | 97.05 / 97.56 / 88.00 % | 97.12 / 97.56 / 89.33 % | 99.95 / 99.95 % |"
        " as above, 0.999 in fold 4 |",
        "| hours counted once per recording (not again for its turned copy) | same as the"
        " previous model | same | same | same (0 alarms allowed either way: ~9 h < 24 h) |",
        "| a recording alarmed when any of its copies is | same as the previous model | same |"
        " same |"
        " same |",
        "| <= 0.1 % of inner ADL trials (compared, not the goal) | 98.32 / 98.59 / 93.33 % |"
        " 98.25 / 98.52 / 93.33 % | 99.90 / 99.90 % (2 trials) | 0.4983, 0.9417, 0.9716, "
        "0.9804, 0.99, 0.9226, 0.9144 |",
        *SECOND_PASS_AUGMENTATION,
        "",
        "What these show:",
        "",
        "- What sets the threshold (1 copy): in folds 1-5 the highest inner out-of-fold ADL"
        " score is",
        "  SE07 getting into a car (D17, 0.997-0.998; in fold 4 SE08's quick sit into a low",
        "  chair, D10 turned, 0.9991, then SE07's D17, 0.996), above the 0.99 cap. The cap",
        "  already lets that trial through the inner folds; the rule as written (no cap)",
        "  raises those thresholds to",
        "  0.997-0.999 and misses 10 more falls. The threshold cannot go lower without letting",
        "  more inner ADL trials through (next in most folds: SE08 lying down, D12, 0.947-0.984),",
        "  i.e. more false alarms than the goal allows.",
        "- The falls missed as recorded (1 copy): 32 of 1425; 5 score between 0.97 and 0.99"
        " (folds 2",
        "  and 3: SA02 F14, SA09 F13, SA15 F14 three times), the others below 0.93 (9 of them",
        "  SE06's, fold 0, threshold 0.92). 98 % needs 4 of them. The 0.1 % rule finds them",
        "  (98.32 %, 2 ADL trials alarmed, 99.90 % specificity: both per-trial goals met),",
        "  but it allows inner ADL trials above the threshold, more than the 1 per 24 h goal,",
        "  and picking it now, after seeing these outer figures, would be a choice made on the",
        "  evaluation folds: not shipped.",
        "- Two turned copies per trial instead of one: as recorded 1 more fall found (97.82 %",
        "  with the rule counting each recording's hours once; 1394 of 1425, 98 % is 1397),",
        "  2 more turned (97.89 %), SE07's car trial no longer above its fold's threshold",
        "  (specificity 100 %; 0 false alarms in the paused day streams, as recorded and",
        "  turned; the blended and butted streams keep 2, 1 turned, each a window spanning a",
        "  join), but 2 fewer of SE06's falls (85.33 %), and over the link with 1-2 s outages",
        "  4 ADL trials alarmed instead of 1 (specificity 99.80 %). Differences of 1-3",
        "  trials, but the faithful day streams' goal is now met and no ADL trial is alarmed:",
        "  shipped, with the per-24 h rule counting each recording's hours once (the copies'",
        "  hours reach 28 h and would have let one inner ADL trial through; that variant is",
        "  the row above it, not chosen). The 98 % stays out of reach.",
        "- The car: with 1 copy SE07's D17 trial was the one false alarm left in the faithful",
        "  day streams (held out in fold 6: 0.972 against 0.9645; 0.974 turned) and the trial",
        "  that pins five folds' thresholds at the cap; with 2 copies it scores 0.919 (0.914",
        "  turned) against 0.9607, below but not far: the case to watch. In that car seat the",
        "  device reads the wearer as lying: its three D17 trials with a candidate end",
        "  100-114 deg from upright, as falls",
        "  do (F11-F15 median about 91-94 deg), after a 1.56 g impact that soft falls also",
        "  reach. What tells it apart comes later than the 4 s scored: the wearer gets out of",
        "  the car. A feature or a check from after those 4 s is the next thing to try; it was",
        "  not tried here (one nested run takes 40-45 min on this shared machine).",
    ]


def third_pass_lines() -> list[str]:
    """Issue 14's third pass: a second look after the scored window (measured, not shipped)."""
    return [
        "## Issue 14, third pass: a second look after the scored window (not shipped)",
        "",
        "The idea the second pass left: a check from after the 4 s window, inside the 30 s",
        "confirmation window the gateway applies anyway, as post-fall lying checks do. The",
        "form measured: a candidate scoring at or above its fold's threshold alarms as",
        "shipped; one scoring below it but at or above a lower threshold alarms only if the",
        "wearer is still down L s after the peak (the mean direction of the second before",
        "+L at least 60 deg from upright, the detector's own `lying` level). The lower",
        "threshold comes from the inner folds by the shipped rule applied to the inner",
        "out-of-fold ADL candidates below the shipped threshold that pass the look (a",
        "recording ending before the look counted as passing it: the gateway's stream goes",
        "on; those above the shipped threshold alarm already). A held-out candidate whose",
        "recording ends before the look is not alarmed by it, as the streaming detector",
        "could not. Measured with `python -m models.sweep_fall --data ... --second-look 6`",
        "(per trial, the same fold models and thresholds as shipped; its shipped rows",
        "reproduce this card's figures: 97.82 / 98.52 / 85.33 %, turned 97.89 / 98.44 /",
        "88.00 %, specificity 100 %).",
        "",
        "What the recordings hold after the impact (`python -m models.sweep_fall --data ...",
        "--facts`): a fall trial has 2.2-12.6 s after its largest peak (median 8.5 s; at",
        "least 6 s in 1291 of 1425, 8 s in 883, 10 s in 277, 12 s in 21, 13 s in none); 1401",
        "of 1425 end lying (>= 60 deg in their last second), 8 read upright (< 35 deg)",
        "again in some second from +1 s on. SE07's car trials (D17): every candidate reads the",
        "wearer down from +1-2 s after the peak and upright again only at +12.5-14.5 s, when",
        "the wearer gets out.",
        "",
        "Choices, and what they looked at: L = 6 s was chosen on the inner out-of-fold",
        "scores of outer folds 1-3 only (the `inner` lines of `--second-look L`; L = 6, 8,",
        "10, 12, 14 s compared: 6 s gave the most inner falls in all three, +0.14 to +0.20",
        "points; later looks fall after the end of more fall recordings), before any outer",
        "figure of it was computed; 60 deg is the detector's existing level. The second row's",
        "15 s was read off the car trials' signal above (SE07's raw recordings, not a",
        "figure of the evaluation folds).",
        "",
        "| decision | as recorded: sensitivity all / young / elderly | turned: all / young /"
        " elderly | specificity as recorded / turned (ADL trials alarmed) | lower thresholds |",
        "|---|---|---|---|---|",
        "| shipped (no look) | 97.82 / 98.52 / 85.33 % | 97.89 / 98.44 / 88.00 % | 100.00 /"
        " 100.00 % (0 / 0) | - |",
        "| still down at +6 s | 98.32 / 98.59 / 93.33 % (1401 of 1425) | 98.25 / 98.59 /"
        " 92.00 % | 99.95 / 99.95 % (1 / 1: SE07's car, D17) | 0.3535, 0.9759, 0.9802,"
        " 0.9737, 0.9899, 0.9475, 0.8297 |",
        "| still down at +6 s and at +15 s (past a recording's end its last second stands in:"
        " an assumption, a bound) | 98.46 / 98.67 / 94.67 % (1403 of 1425) | 98.39 / 98.67 /"
        " 93.33 % | 99.90 / 99.95 % (2 / 1: SE08's D11 and D12, turned D12) | 0.0911, 0.9759,"
        " 0.9802, 0.9737, 0.9899, 0.0714, 0.8297 |",
        "",
        "What these show:",
        "",
        "- A look at +6 s finds 7 more falls as recorded (SA05 F13 and six of SE06's: F01,",
        "  F07 twice, F10 three times), 5 more turned: sensitivity 98.32 %, both per-trial",
        "  goals met. It gains most where the threshold is not pinned at the 0.99 cap (fold 0,",
        "  SE06's, lower threshold 0.35: every inner ADL candidate between 0.35 and 0.9675",
        "  shows the wearer up again at +6 s).",
        "- Its price is the one trial the second pass called the case to watch: SE07's car",
        "  (D17, held out in fold 6, 0.919 between the lower threshold 0.8297 and 0.9607)",
        "  is still down at +6 s, so it alarms, as recorded and turned. The paused day",
        "  streams have counted the same alarms as the trials one by one in every run so far,",
        "  so that is 1 false alarm in 10.85 h (not streamed for this variant), where the",
        "  goal met today is 0. Not better on every goal: not shipped.",
        "- A look that sees the car wearer get out must come at +13-15 s; no fall recording",
        "  of SisFall lasts that long after its impact, so for falls that look cannot be",
        "  measured here, only assumed (the recording's last second held: the last row,",
        "  `--second-look 6 --then 15`, a bound, not a measurement). Even so granted, it",
        "  removes the car but not the goal's problem: with the inner candidates up again by",
        "  +15 s (the car's among them) no longer pinning them, the lower thresholds of",
        "  folds 0 and 5 fall to 0.09 and 0.07, and SE08's",
        "  collapse into a chair (D11) and slow lying down (D12), 12 s recordings whose",
        "  last second reads the wearer down, alarm (2 ADL trials as recorded, 1 turned).",
        "  98 % is reached (98.46 %) only by giving up the 0 false alarms met today.",
        "- The cost for a real fall: one whose wearer lies still is alerted by the look;",
        "  one who gets up before it and scores in the band is not (SisFall holds 8 fall",
        "  trials whose wearer reads upright again). That is why the look only adds alarms",
        "  below the shipped threshold and never removes one above it.",
        "- What it would take: recordings that go on after the fall (30 s or more, the",
        "  confirmation window) and car and low-seat sessions that long, to measure a look",
        "  at +15 s on falls; then the detector keeps a band candidate until its look, in",
        "  `edge/detect/fall.py`, with the look itself in `models/features.py`.",
    ]


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


if __name__ == "__main__":
    sys.exit(main())
