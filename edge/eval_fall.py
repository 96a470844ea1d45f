"""`veille eval-fall DATA.npz --json`: every trial through the production fall detector.

Each trial is streamed as the live gateway sees a wearable: frames of `FRAME_SAMPLES` samples
into `FallDetector.feed_frame`, event time from 0 at the trial's first sample, a fresh
detector per trial, the confirmation window not applied (`confirm_s=0`). Only `acc_mg`,
`offsets` and `fs_hz` are read; labels are not.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edge.detect.fall import FallDetector
from edge.errors import VeilleError
from edge.events import AccelFrame, Finding

_LOGGER = logging.getLogger(__name__)

FRAME_SAMPLES = 25  # what the wearable sends per notification (0.5 s at 50 Hz)
FS_HZ = 50


def stream_trial(
    detector: FallDetector,
    samples_mg: np.ndarray,
    t0: float = 0.0,
    frame_samples: int = FRAME_SAMPLES,
) -> list[Finding]:
    """Feed one recording frame by frame (first sample at `t0`); returns every finding."""
    found: list[Finding] = []
    n = samples_mg.shape[0]
    dev = detector.device_id
    for seq, start in enumerate(range(0, n, frame_samples)):
        chunk = samples_mg[start : start + frame_samples]
        at = t0 + (start + chunk.shape[0] - 1) / FS_HZ
        found.extend(detector.feed_frame(AccelFrame(dev, seq, at, chunk)))
    return found


def first_fall_s(found: list[Finding]) -> float | None:
    """Event time of the first raised fall, or None."""
    for f in found:
        if f.action == "raise" and f.type == "fall":
            return float(f.raised_at if f.raised_at is not None else f.at)
    return None


def load_trials(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(acc_mg (N,3) int16, offsets (T+1,)) from a fall-data npz; VeilleError when unusable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("acc_mg", "offsets", "fs_hz") if k not in z.files]
            if missing:
                raise VeilleError(f"{path}: missing key(s) {', '.join(missing)}")
            acc = np.asarray(z["acc_mg"])
            offsets = np.asarray(z["offsets"]).astype(np.int64)
            fs = float(np.asarray(z["fs_hz"]).reshape(-1)[0])
    except VeilleError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, IndexError) as exc:
        raise VeilleError(f"{path}: not a readable fall-data .npz ({exc})") from None
    if acc.ndim != 2 or acc.shape[1] != 3:
        raise VeilleError(f"{path}: acc_mg has shape {acc.shape}, expected (N, 3)")
    if round(fs) != FS_HZ:
        raise VeilleError(f"{path}: fs_hz is {fs:g}, the detector runs at {FS_HZ} Hz")
    if (
        offsets.ndim != 1
        or offsets.size < 1
        or offsets[0] != 0
        or offsets[-1] != acc.shape[0]
        or np.any(np.diff(offsets) < 0)
    ):
        raise VeilleError(f"{path}: offsets do not partition acc_mg ({acc.shape[0]} samples)")
    return acc, offsets


def iter_results(
    acc: np.ndarray, offsets: np.ndarray, make_detector: Callable[[], FallDetector]
) -> Iterator[dict[str, object]]:
    """One result dict per trial, in file order."""
    for i in range(offsets.size - 1):
        trial = acc[offsets[i] : offsets[i + 1]]
        first = first_fall_s(stream_trial(make_detector(), trial)) if trial.size else None
        yield {
            "index": i,
            "detected": first is not None,
            "first_alert_s": None if first is None else round(first, 3),
        }


def main(args: argparse.Namespace) -> int:
    """Print one JSON line per trial to stdout."""
    from edge.detect.fall import load_default_detector
    from models.runtime import ModelError

    acc, offsets = load_trials(Path(args.data))
    try:
        template = load_default_detector(confirm_s=0.0)
    except ModelError as exc:
        raise VeilleError(str(exc)) from None
    model = template.model

    def make() -> FallDetector:
        return FallDetector(model, confirm_s=0.0, device_id=template.device_id)

    out = sys.stdout
    for result in iter_results(acc, offsets, make):
        out.write(json.dumps(result, separators=(",", ":")) + "\n")
    out.flush()
    return 0
