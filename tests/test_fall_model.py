"""The shipped fall model: ONNX agrees with scikit-learn, card matches the feature module,
and the feature module is pure numpy."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from models import features as ft
from models.runtime import FALL_MODEL_PATH, ModelError, OnnxModel, card_path
from tests.conftest import FALLS_NPZ

VECTORS = Path(__file__).parent / "vectors" / "fall_windows.npz"
# Tree thresholds are float64 in scikit-learn and float32 in ONNX; on these recorded windows
# the two agree to float32 rounding of the summed leaf values.
SCORE_TOLERANCE = 1e-5


def test_onnx_scores_equal_sklearn_on_recorded_windows() -> None:
    model = OnnxModel(FALL_MODEL_PATH)
    with np.load(VECTORS) as v:
        rows, expected, threshold = v["rows"], v["sklearn_prob"], float(v["threshold"])
    assert rows.shape == (512, ft.N_FEATURES)
    got = model.score(rows)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= SCORE_TOLERANCE
    assert model.threshold == pytest.approx(threshold, abs=1e-6)
    # the vectors hold both decisions, so the comparison covers both sides of the threshold
    assert 0 < int(np.sum(expected >= threshold)) < rows.shape[0]
    # one row at a time (as the detector calls it) gives the same scores as a batch
    assert np.allclose([model.score(r[None, :])[0] for r in rows[:20]], got[:20], atol=1e-7)


def test_fresh_export_matches_its_sklearn_model(tmp_path: Path) -> None:
    """The export path itself: fit on recorded windows, export, compare with onnxruntime."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from models.train_fall import INPUT_NAME, export_onnx

    with np.load(VECTORS) as v:
        rows = v["rows"]
    labels = (rows[:, 0] > np.median(rows[:, 0])).astype(int)
    clf = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(rows, labels)
    path = tmp_path / "m.onnx"
    export_onnx(clf, path)
    card = {"features": list(ft.FEATURE_NAMES), "input_name": INPUT_NAME, "threshold": 0.5}
    onnx = OnnxModel(path, card=card)
    diff = np.abs(onnx.score(rows) - clf.predict_proba(rows)[:, 1])
    assert diff.max() <= SCORE_TOLERANCE


def test_card_describes_the_file() -> None:
    card = json.loads(card_path(FALL_MODEL_PATH).read_text(encoding="utf-8"))
    assert card["features"] == list(ft.FEATURE_NAMES)
    assert card["size_bytes"] == FALL_MODEL_PATH.stat().st_size < 1_000_000
    assert card["window"] == {"fs_hz": ft.FS_HZ, "pre_s": ft.PRE_S, "post_s": ft.POST_S}
    assert "doi:10.3390/s17010198" in card["data"]["citation"]
    assert card["command"].startswith("python -m models.train_fall --data")
    cv = card["cross_validation"]
    assert set(cv["groups"]) == {"young", "elderly", "all"}
    # issue 14: figures with every held-out trial turned, over lossy links, turned day streams
    assert set(cv["groups_turned"]) == {"young", "elderly", "all"}
    assert (cv["turn"]["bias_mg"], cv["turn"]["noise_mg"]) == (40.0, 15.0)
    from edge.commands.eval_fall import LINKS

    assert [lk["link"] for lk in cv["links"]] == [link.name for link in LINKS]
    from models.train_fall import DAY_STREAMS

    assert set(cv["adl_stream"]) == set(DAY_STREAMS)
    md = FALL_MODEL_PATH.with_suffix(".card.md").read_text("utf-8")
    assert "per 24 h" in md
    assert "Sucerquia" in md
    assert "## Orientation" in md
    assert "UprightTracker" in md


def test_card_mismatch_refused(tmp_path: Path) -> None:
    card = json.loads(card_path(FALL_MODEL_PATH).read_text(encoding="utf-8"))
    card["features"] = list(reversed(card["features"]))
    with pytest.raises(ModelError, match="differ"):
        OnnxModel(FALL_MODEL_PATH, card=card)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError):
        OnnxModel(bad, card={**card, "features": list(ft.FEATURE_NAMES)})


def test_features_on_a_real_window() -> None:
    with np.load(FALLS_NPZ) as z:
        acc, off = z["acc_mg"], z["offsets"]
        i = int(np.flatnonzero(z["activity"] == "F01")[0])
    trial = acc[off[i] : off[i + 1]]
    mag = ft.magnitude_g(trial)
    peak = int(np.argmax(mag))
    assert ft.PRE_N <= peak <= trial.shape[0] - ft.POST_N - 1
    window = trial[peak - ft.PRE_N : peak + ft.POST_N + 1]
    row = ft.window_features(window)
    assert row.dtype == np.float32
    assert row.shape == (ft.N_FEATURES,)
    named = dict(zip(ft.FEATURE_NAMES, row.tolist(), strict=True))
    assert named["peak_g"] == pytest.approx(mag[peak], rel=1e-6)
    assert named["pre_tilt_deg"] < 45.0  # walking upright before the slip
    assert np.array_equal(row, ft.window_features(window.copy()))  # no hidden state
    with pytest.raises(ValueError, match="window shape"):
        ft.window_features(window[:-1])


def test_feature_module_is_pure_numpy() -> None:
    tree = ast.parse(Path(ft.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "math", "numpy"}  # pure: no I/O, no clock, no model
    calls = {n.func.id for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & {"open", "print", "input", "exec", "eval"}


def test_day_streams_add_no_candidate_at_joins() -> None:
    """The card's back-to-back streams: neither a 1 s straight transition between recordings
    (a straight line between two vectors never exceeds the longer one) nor a pause between
    them adds a candidate; a real impact right after a join is counted, flagged as near it."""
    from edge.detect.fall import FallDetector
    from models.train_fall import BLEND_S, GAP_S, stream_day

    lying = np.tile(np.array([[0, 0, 1000]], dtype=np.int16), (300, 1))
    upright = np.tile(np.array([[0, -1000, 0]], dtype=np.int16), (300, 1))
    counted: list[int] = []

    def scorer(rows: np.ndarray) -> np.ndarray:
        counted.append(rows.shape[0])
        return np.ones(rows.shape[0])

    for blend, gap in ((0.0, 0.0), (BLEND_S, 0.0), (0.0, GAP_S)):
        det = FallDetector(scorer, confirm_s=0.0, threshold=0.5)
        assert stream_day(det, [lying, upright, lying], blend_s=blend, gap_s=gap) == (0, 0)
        assert det.scored_windows + det.gated_windows == 0
    bump = upright.copy()
    bump[60:63] = [0, -3000, 0]
    for blend, gap in ((BLEND_S, 0.0), (0.0, GAP_S)):
        det = FallDetector(scorer, confirm_s=0.0, threshold=0.5)
        assert stream_day(det, [upright, bump], blend_s=blend, gap_s=gap) == (1, 1)
    assert counted == [1, 1]


def test_paused_day_stream_restarts_the_signal_between_recordings() -> None:
    """Between two recordings of the paused stream the real decoder reports the lost samples
    and the detector starts its signal again: a window just after the join holds no sample of
    the previous recording (here the wearer lying), where the blended stream's does; the
    wearer's upright direction is kept."""
    from edge.detect.fall import FallDetector
    from models.train_fall import BLEND_S, GAP_S, stream_day

    lying = np.tile(np.array([[1000, 0, 0]], dtype=np.int16), (500, 1))
    bump = np.tile(np.array([[0, -1000, 0]], dtype=np.int16), (500, 1))
    bump[60:63] = [0, -3000, 0]  # an impact 1.2 s into the second recording
    rows: list[np.ndarray] = []

    def scorer(x: np.ndarray) -> np.ndarray:
        rows.append(x[0].copy())
        return np.zeros(x.shape[0])

    tilt = ft.FEATURE_NAMES.index("pre_tilt_deg")
    pre_tilts = {}
    for name, blend, gap in (("blended", BLEND_S, 0.0), ("paused", 0.0, GAP_S)):
        det = FallDetector(scorer, confirm_s=0.0, threshold=0.5, upright=ft.UP_AXIS)
        stream_day(det, [lying, bump], blend_s=blend, gap_s=gap)
        assert det.scored_windows == 1, name
        assert det.upright.found
        pre_tilts[name] = float(rows[-1][tilt])
    assert pre_tilts["blended"] > 80.0
    assert pre_tilts["paused"] < 1.0


def _walk(subject: str = "SA03", seconds: float = 30.0) -> np.ndarray:
    with np.load(FALLS_NPZ) as z:
        i = int(np.flatnonzero((z["activity"] == "D01") & (z["subject"] == subject))[0])
        return np.asarray(z["acc_mg"][z["offsets"][i] : z["offsets"][i] + int(seconds * 50)])


def _random_rotation(seed: int) -> np.ndarray:
    from models.train_fall import random_rotation

    return random_rotation(np.random.default_rng(seed))


def test_features_do_not_depend_on_how_the_device_is_turned() -> None:
    """The same window turned any way, with the wearer's upright direction turned alike, gives
    the same row: no feature reads a fixed device axis."""
    with np.load(FALLS_NPZ) as z:
        acc, off = z["acc_mg"], z["offsets"]
        picks = [int(np.flatnonzero(z["activity"] == a)[0]) for a in ("F01", "F09", "D14")]
    up = ft.UP_AXIS + np.array([0.1, 0.0, -0.05])
    for i in picks:
        t = acc[off[i] : off[i + 1]].astype(np.float64)
        peak = int(np.argmax(ft.magnitude_g(t)[ft.PRE_N : -ft.POST_N])) + ft.PRE_N
        window = t[peak - ft.PRE_N : peak + ft.POST_N + 1]
        row = ft.window_features(window, up)
        for seed in range(5):
            r = _random_rotation(seed)
            turned = ft.window_features(window @ r.T, r @ up)
            assert np.allclose(turned, row, rtol=1e-4, atol=1e-3), (i, seed)
        # and a wrong idea of upright changes the posture features: they do read `up`
        other = ft.window_features(window, np.array([1.0, 0.0, 0.0]))
        assert not np.allclose(other, row, rtol=1e-4, atol=1e-3)


def test_walking_gives_the_upright_direction_whatever_the_turn() -> None:
    walk = _walk().astype(np.float64)
    plain = ft.UprightTracker()
    plain.observe(walk)
    assert plain.found
    assert plain.walking_blocks >= 10
    assert ft.angle_deg(plain.up, ft.UP_AXIS) < 25.0  # SisFall's sensor, worn as designed
    for seed in range(4):
        r = _random_rotation(seed)
        tracker = ft.UprightTracker()
        tracker.observe(walk @ r.T)
        assert tracker.found
        assert ft.angle_deg(tracker.up, r @ plain.up) < 0.5


def test_stillness_never_sets_upright() -> None:
    """Standing and lying still look alike: neither is taken for the upright direction."""
    rng = np.random.default_rng(0)
    lying = np.array([0.0, 0.0, 1000.0]) + rng.normal(0.0, 5.0, (1500, 3))
    tracker = ft.UprightTracker()
    tracker.observe(lying)
    assert (tracker.found, tracker.walking_blocks) == (False, 0)
    assert np.array_equal(tracker.up, ft.UP_AXIS)
    for block in (lying[:99], np.zeros((100, 3))):
        assert ft.walking_direction(np.resize(block, (100, 3))) is None


def test_reclipped_device_relearned_after_a_few_walking_blocks() -> None:
    walk = _walk().astype(np.float64)
    tracker = ft.UprightTracker()
    tracker.observe(walk[:600])
    first = tracker.up.copy()
    r = _random_rotation(7)
    assert ft.angle_deg(r @ first, first) > 45.0
    blocks = [walk[k : k + ft.WALK_BLOCK_N] @ r.T for k in range(600, 1500, ft.WALK_BLOCK_N)]
    walking = [b for b in blocks if ft.walking_direction(b) is not None]
    assert len(walking) >= ft.RECLIP_BLOCKS + 1
    for n, b in enumerate(walking[: ft.RECLIP_BLOCKS], start=1):
        tracker.observe_block(b)
        # one or two odd blocks do not move it; the third in a row does
        moved = ft.angle_deg(tracker.up, first) > 1.0
        assert moved is (n == ft.RECLIP_BLOCKS)
    assert ft.angle_deg(tracker.up, r @ first) < 10.0
