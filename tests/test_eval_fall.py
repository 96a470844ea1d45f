"""`veille eval-fall DATA.npz --json` as a subprocess, on files cut from the shared SisFall."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from edge.commands.eval_fall import first_fall_s, stream_trial
from edge.detect.fall import load_default_detector
from tests.conftest import FALLS_NPZ

REPO = Path(__file__).resolve().parents[1]


def veille(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.commands.cli", *args], cwd=REPO,
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


def _trial(activity: str, subject: str) -> np.ndarray:
    with np.load(FALLS_NPZ) as z:
        i = int(np.flatnonzero((z["activity"] == activity) & (z["subject"] == subject))[0])
        return np.asarray(z["acc_mg"][z["offsets"][i] : z["offsets"][i + 1]])


def test_link_simulation_does_what_it_says() -> None:
    """The robustness figures' links: losses, outages of 1-2 s, late and repeated frames, all
    seen as such by the real stream decoder."""
    from edge.commands.eval_fall import LINKS, Link, link_notifications
    from edge.decode.wearable import WearableStream

    samples = _trial("D01", "SA01")  # 100 s, 625 frames of 8 samples
    n_frames = -(-samples.shape[0] // 8)
    clean = link_notifications(samples, Link("clean"), np.random.default_rng(0))
    assert len(clean) == n_frames
    assert [at for _, at in clean] == sorted(at for _, at in clean)
    by_name = {link.name: link for link in LINKS}
    for name, share in (("frames lost at random, 5 %", 0.05),
                        ("frames lost at random, 10 %", 0.10)):
        got = link_notifications(samples, by_name[name], np.random.default_rng(1))
        assert abs(1.0 - len(got) / n_frames - share) < 0.03, name
    outages = link_notifications(samples, LINKS[2], np.random.default_rng(2))
    times = np.array([at for _, at in outages])
    holes = np.diff(times)[np.diff(times) > 0.2]  # a frame every 0.16 s otherwise
    assert holes.size >= 3
    assert np.all((holes > 0.9) & (holes < 2.2))
    messy = link_notifications(samples, LINKS[3], np.random.default_rng(3))
    stream = WearableStream("wearable")
    for data, at in messy:
        stream.feed(data, at)
    s = stream.stats
    assert s.duplicates >= 10
    assert s.out_of_order >= 10
    # nothing was lost on this link, but a late frame's samples were bridged before it came
    assert 0 < s.lost_samples <= 8 * s.out_of_order
    assert s.samples + s.lost_samples == samples.shape[0]
    assert s.frames + s.duplicates + s.out_of_order == len(messy)


def test_fall_through_a_clean_and_a_messy_link() -> None:
    from edge.commands.eval_fall import LINKS, Link, stream_over_link

    samples = _trial("F05", "SA05")
    direct = first_fall_s(stream_trial(load_default_detector(confirm_s=0.0), samples,
                                       frame_samples=8))
    assert direct is not None
    clean = stream_over_link(load_default_detector(confirm_s=0.0), samples, Link("clean"),
                             np.random.default_rng(0))
    assert first_fall_s(clean) == direct
    messy = stream_over_link(load_default_detector(confirm_s=0.0), samples, LINKS[3],
                             np.random.default_rng(0))
    assert first_fall_s(messy) is not None
