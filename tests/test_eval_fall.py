"""`veille eval-fall DATA.npz --json` as a subprocess, on files cut from the shared SisFall."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge.detect.fall import load_default_detector
from edge.eval_fall import first_fall_s, stream_trial
from tests.conftest import FALLS_NPZ

REPO = Path(__file__).resolve().parents[1]


def veille(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def write_three_keys(path: Path, picks: list[int]) -> list[np.ndarray]:
    """A file with only acc_mg, offsets and fs_hz (no labels), holding the picked trials."""
    with np.load(FALLS_NPZ) as z:
        acc, off = z["acc_mg"], z["offsets"]
        trials = [acc[off[i] : off[i + 1]] for i in picks]
    offsets = np.r_[0, np.cumsum([t.shape[0] for t in trials])].astype(np.int64)
    np.savez(path, acc_mg=np.concatenate(trials), offsets=offsets, fs_hz=np.int16(50))
    return trials


def test_eval_fall_json_lines(tmp_path: Path) -> None:
    with np.load(FALLS_NPZ) as z:
        activity, subject = z["activity"], z["subject"]
    picks = [
        int(np.flatnonzero((activity == a) & (subject == s))[0])
        for a, s in (("F01", "SA01"), ("D01", "SA01"), ("F05", "SA10"), ("D07", "SE02"),
                     ("F12", "SE06"), ("D17", "SA04"))
    ]
    data = tmp_path / "six.npz"
    trials = write_three_keys(data, picks)
    run = veille("eval-fall", str(data), "--json")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["index"] for r in lines] == list(range(6))
    assert all(set(r) == {"index", "detected", "first_alert_s"} for r in lines)
    # the CLI gives what the production detector gives in-process, trial by trial
    for r, trial in zip(lines, trials, strict=True):
        t = first_fall_s(stream_trial(load_default_detector(confirm_s=0.0), trial))
        assert r["detected"] is (t is not None)
        assert r["first_alert_s"] == (None if t is None else round(t, 3))
    assert [r["detected"] for r in lines] == [True, False, True, False, True, False]
    for r, trial in zip(lines, trials, strict=True):
        if r["detected"]:
            assert 0.0 < r["first_alert_s"] <= trial.shape[0] / 50.0


def test_eval_fall_bad_files(tmp_path: Path) -> None:
    missing = veille("eval-fall", str(tmp_path / "nope.npz"), "--json")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    bad_junk = veille("eval-fall", str(junk), "--json")
    nokeys = tmp_path / "nokeys.npz"
    np.savez(nokeys, acc_mg=np.zeros((10, 3), np.int16))
    bad_keys = veille("eval-fall", str(nokeys), "--json")
    badoff = tmp_path / "badoff.npz"
    np.savez(badoff, acc_mg=np.zeros((10, 3), np.int16), offsets=np.array([0, 20]),
             fs_hz=np.int16(50))
    bad_off = veille("eval-fall", str(badoff), "--json")
    for run, words in ((missing, "nope.npz"), (bad_junk, "junk.npz"),
                       (bad_keys, "missing key"), (bad_off, "offsets")):
        assert run.returncode == 1
        assert run.stdout == ""
        assert "Traceback" not in run.stderr
        assert words in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
