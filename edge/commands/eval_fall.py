"""`veille eval-fall DATA.npz --json`: every trial through the production fall detector.

Each trial is streamed as the live gateway sees a wearable: frames of `FRAME_SAMPLES` samples
into `FallDetector.feed_frame`, event time from 0 at the trial's first sample, a fresh
detector per trial, the confirmation window not applied (`confirm_s=0`). Only `acc_mg`,
`offsets` and `fs_hz` are read; labels are not. A fresh detector knows no wearer: until it
sees walking it reads posture against the device's nominal axis.

`stream_over_link` feeds a recording through a simulated BLE `Link` (losses, outages, late
and duplicated notifications) and the real stream decoder, for the model card's figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cloud_bridge.errors import VeilleError
from edge.decode.wearable import WearableStream, encode_accel
from edge.detect.fall import FallDetector
from edge.events import AccelFrame, Finding

_LOGGER = logging.getLogger(__name__)

FRAME_SAMPLES = 25  # what the wearable sends per notification (0.5 s at 50 Hz)
FS_HZ = 50
LINK_FRAME_SAMPLES = 8  # what the firmware sends per notification over a real link
_REORDER_S = 0.001  # a late or repeated notification arrives this long after the next one


@dataclass(frozen=True)
class Link:
    """What a BLE link does to the wearable's notifications (for the robustness figures)."""

    name: str
    loss: float = 0.0  # each notification lost with this probability
    outage_every_s: float = 0.0  # mean time between outages (0: none), exponential
    outage_s: tuple[float, float] = (1.0, 2.0)  # each outage lasts uniformly this long
    late: float = 0.0  # share of notifications delivered after the next one
    duplicate: float = 0.0  # share of notifications delivered twice


LINKS: tuple[Link, ...] = (
    Link("frames lost at random, 5 %", loss=0.05),
    Link("frames lost at random, 10 %", loss=0.10),
    Link("outages of 1-2 s, one per 15 s on average", outage_every_s=15.0),
    Link("5 % of frames late, 5 % duplicated", late=0.05, duplicate=0.05),
)


def link_notifications(
    samples_mg: np.ndarray,
    link: Link,
    rng: np.random.Generator,
    t0: float = 0.0,
    per_frame: int = LINK_FRAME_SAMPLES,
    *,
    seq0: int = 0,
) -> list[tuple[bytes, float]]:
    """The firmware's accel frames of a recording as they arrive over `link`: (bytes, time)
    in arrival order; the wearable's sample counter reads `seq0` at the recording's start."""
    n = samples_mg.shape[0]
    starts = np.arange(0, n, per_frame)
    ends = np.minimum(starts + per_frame, n)
    arrive = t0 + (ends - 1) / FS_HZ
    keep = rng.random(starts.size) >= link.loss
    if link.outage_every_s > 0.0:
        t, t_end = t0, t0 + n / FS_HZ
        while True:
            t += rng.exponential(link.outage_every_s)
            if t >= t_end:
                break
            length = rng.uniform(*link.outage_s)
            keep &= ~((arrive >= t) & (arrive < t + length))
            t += length
    out: list[tuple[bytes, float]] = []
    for k in np.flatnonzero(keep):
        data = encode_accel(seq0 + int(starts[k]), samples_mg[starts[k] : ends[k]])
        at = float(arrive[k])
        if link.late and rng.random() < link.late and k + 1 < starts.size:
            at = float(arrive[k + 1]) + _REORDER_S
        out.append((data, at))
        if link.duplicate and rng.random() < link.duplicate:
            out.append((data, at + _REORDER_S))
    out.sort(key=lambda note: note[1])
    return out


def stream_over_link(
    detector: FallDetector,
    samples_mg: np.ndarray,
    link: Link,
    rng: np.random.Generator,
    t0: float = 0.0,
) -> list[Finding]:
    """Feed one recording through `link` and the real stream decoder
    (`edge.decode.wearable.WearableStream`: gaps, duplicates, late frames) to the detector."""
    stream = WearableStream(detector.device_id)
    found: list[Finding] = []
    for data, at in link_notifications(samples_mg, link, rng, t0):
        frame = stream.feed(data, at)
        if isinstance(frame, AccelFrame):
            found.extend(detector.feed_frame(frame))
    return found


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
    # lazy: numpy and onnxruntime, for this command only
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
