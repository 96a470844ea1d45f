"""The demo's wearable: real SisFall traces replayed as the firmware's GATT frames.

`wearable_trace("fall" | "adl", seed)` takes one real trial from the shared fall data
(`../shared/data/falls/sisfall_dev_50hz.npz` from the repository root, or `$VEILLE_FALLS_NPZ`);
`encode_frames` cuts it into the wearable's frames so the demo goes through the real decode
path (`edge.decode.wearable`) and the real detector.

Without the data file, a synthetic fallback is used and logged: standing still, then for a
"fall" a 0.4 s free fall, a 4 g impact and lying on the side; for "adl" a few seconds of
walking-like sway. It exists so the demo runs anywhere; the model was never trained on it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np

from edge.decode.wearable import MAX_SAMPLES, encode_accel

_LOGGER = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FALLS_NPZ = REPO_ROOT.parent / "shared" / "data" / "falls" / "sisfall_dev_50hz.npz"
FS_HZ = 50
FRAME_SAMPLES = 8  # as the firmware sends
STILL_PAD_S = 2.0  # quiet standing before the trace, so the detector has history


def falls_npz() -> Path:
    """Where the shared fall data is expected."""
    env = os.environ.get("VEILLE_FALLS_NPZ")
    return Path(env) if env else DEFAULT_FALLS_NPZ


def wearable_trace(kind: Literal["fall", "adl"], seed: int) -> np.ndarray:
    """(n, 3) int16 milli-g at 50 Hz: a real trial of that kind, chosen by `seed`."""
    path = falls_npz()
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                is_fall = np.asarray(z["is_fall"]).astype(bool)
                offsets = np.asarray(z["offsets"])
                pool = np.flatnonzero(is_fall if kind == "fall" else ~is_fall)
                i = int(pool[np.random.default_rng(seed).integers(pool.size)])
                trace = np.asarray(z["acc_mg"][offsets[i] : offsets[i + 1]], dtype=np.int16)
                _LOGGER.info(
                    "wearable replays SisFall trial %d (%s, %s)",
                    i,
                    z["activity"][i],
                    z["subject"][i],
                )
                return trace
        except (OSError, KeyError, ValueError) as exc:
            _LOGGER.warning("%s unusable (%s), synthetic wearable trace", path, exc)
    else:
        _LOGGER.warning("%s not found, synthetic wearable trace (not real data)", path)
    return synthetic_trace(kind, seed)


def synthetic_trace(kind: Literal["fall", "adl"], seed: int) -> np.ndarray:
    """The documented fallback: a plain physical sketch, not a recording."""
    rng = np.random.default_rng(seed)
    upright = np.array([0.0, -1000.0, 0.0])
    lying = np.array([1000.0, 0.0, 0.0])
    n = 15 * FS_HZ
    t = np.arange(n) / FS_HZ
    out = np.tile(upright, (n, 1))
    if kind == "fall":
        start = 5 * FS_HZ
        out[start : start + 20] = upright * 0.2  # free fall, 0.4 s
        impact = start + 20
        out[impact : impact + 3] = np.array([2500.0, -3200.0, 800.0])  # ~4 g
        out[impact + 3 :] = lying
    else:
        sway = 250.0 * np.sin(2 * np.pi * 1.8 * t)
        out[:, 1] += sway
        out[:, 2] += 0.4 * sway
    out += rng.normal(0.0, 15.0, out.shape)
    return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def with_still_lead(trace: np.ndarray, seconds: float = STILL_PAD_S) -> np.ndarray:
    """Prefix a trace with its first sample held, as if the wearer stood still before."""
    pad = np.repeat(trace[:1], int(seconds * FS_HZ), axis=0)
    return np.concatenate([pad, trace]).astype(np.int16)


def encode_frames(
    samples: np.ndarray, start_seq: int = 0, per_frame: int = FRAME_SAMPLES
) -> list[bytes]:
    """Cut (n, 3) milli-g into the wearable's accel frames (seq counts samples)."""
    if not 1 <= per_frame <= MAX_SAMPLES:
        raise ValueError(f"per_frame must be 1..{MAX_SAMPLES}")
    s = np.asarray(samples)
    return [
        encode_accel(start_seq + i, s[i : i + per_frame]) for i in range(0, s.shape[0], per_frame)
    ]
