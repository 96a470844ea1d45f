"""Fall features: the ONE pure numpy module that training and the gateway both import.

A candidate window is centred on an impact peak: `PRE_S` seconds before the peak sample and
`POST_S` seconds after it, 3-axis acceleration in milli-g at `FS_HZ`, in whatever axes the
device happens to be worn.

Orientation: a round belt-clip device sits at any angle, upside down included, so no feature
reads a fixed device axis. Each feature is either invariant to a rotation of the device
(magnitudes, the angle between two gravity directions, total variance, acceleration along the
gravity direction just before the impact) or expressed against the wearer's upright
direction `up`: the mean acceleration direction while the wearer walks, which
`UprightTracker` estimates from the stream itself and keeps per wearer (a person walks only
upright; standing and lying still look alike to an accelerometer, so stillness alone never
sets it). Before any walk is seen the tracker holds `UP_AXIS`, the device's nominal axis on
the belt clip (SisFall's sensor: y down towards the feet, gravity reads y ~ -1000 mg).

Nothing here reads files, clocks or models: `window_features(window, up)` -> one row of
`FEATURE_NAMES`, in that order. The model card lists the same names and the runtime checks it.
`lying_before(row)` is the physical gate the detector applies before the classifier: a wearer
who was lying during the whole pre-impact posture span did not fall from standing or sitting;
measured against `up`, it holds with the device upside down.
"""

from __future__ import annotations

import math

import numpy as np

FS_HZ = 50
PRE_S = 4.0  # seconds of signal kept before the impact peak
POST_S = 4.0  # seconds after the peak before a candidate can be scored
PRE_N = int(PRE_S * FS_HZ)
POST_N = int(POST_S * FS_HZ)
WINDOW_N = PRE_N + 1 + POST_N  # the peak sample sits at index PRE_N

G_MG = 1000.0  # one g in milli-g
FREE_FALL_G = 0.6  # below this magnitude the body is (partly) falling freely
MOVING_G = 0.2  # |magnitude - 1 g| above this counts as movement
UP_AXIS = np.array([0.0, -1.0, 0.0])  # nominal upright direction (device worn as designed)
LOW_G = 0.8  # a run below this magnitude before the peak is the drop of a fall
STILL_G = 0.1  # |magnitude - 1 g| below this counts as still
LYING_BEFORE_DEG = 70.0  # every half second of -4 s .. -1 s tilted this far: lying before
_BLOCK_N = FS_HZ // 2  # half-second blocks for the pre-impact posture span

# The upright tracker: 2 s blocks of the stream that look like walking (steady mean direction,
# stepping magnitude, periodic) give the wearer's upright direction.
WALK_BLOCK_N = 2 * FS_HZ
WALK_STD_G = (0.05, 0.6)  # magnitude std of walking at the waist (slow walk .. brisk walk)
WALK_STEADY = 0.9  # |mean vector| / mean magnitude: the device does not turn while walking
WALK_HALVES_DEG = 15.0  # the two 1 s halves' mean directions agree within this
WALK_PERIODIC = 0.3  # autocorrelation of the magnitude at a step period (0.3 .. 1.2 s)
_STEP_LAGS = slice(int(0.3 * FS_HZ), int(1.2 * FS_HZ) + 1)
UPRIGHT_FOUND_BLOCKS = 2  # agreeing walking blocks before the first estimate is trusted
UPRIGHT_AGREE_DEG = 30.0  # a walking block this close to the estimate refines it
UPRIGHT_RATE = 0.1  # weight of one agreeing walking block in the running estimate
RECLIP_BLOCKS = 3  # this many walking blocks far from the estimate and agreeing together:
RECLIP_AGREE_DEG = 20.0  # the device was clipped on differently, start again from them

# Segments relative to the peak, in samples: [start, stop) with the peak at index PRE_N.
_PRE_REST = slice(0, PRE_N - 2 * FS_HZ)  # -4 s .. -2 s: posture before
_PRE_ACT = slice(0, PRE_N - FS_HZ)  # -4 s .. -1 s: activity before
_DROP = slice(PRE_N - int(1.5 * FS_HZ), PRE_N + 1)  # -1.5 s .. peak: free fall
_VEL = slice(PRE_N - FS_HZ, PRE_N - 2)  # -1 s .. -0.04 s: velocity gained before impact
_IMPACT = slice(PRE_N - FS_HZ // 2, PRE_N + FS_HZ // 2 + 1)  # +-0.5 s
_AROUND = slice(PRE_N - FS_HZ, PRE_N + FS_HZ + 1)  # +-1 s
_POST = slice(PRE_N + int(1.5 * FS_HZ), WINDOW_N)  # +1.5 s .. +4 s: after the fall
_POST_EARLY = slice(PRE_N + int(1.5 * FS_HZ), PRE_N + int(2.5 * FS_HZ))
_POST_LATE = slice(WINDOW_N - FS_HZ, WINDOW_N)
_AFTER = slice(PRE_N + FS_HZ // 2, WINDOW_N)  # +0.5 s .. +4 s: stillness after the impact

FEATURE_NAMES: tuple[str, ...] = (
    "peak_g",  # magnitude at the peak
    "min_pre_g",  # lowest magnitude in the 1.5 s before the peak
    "free_fall_s",  # time spent below FREE_FALL_G in the 1.5 s before the peak
    "velocity_ms",  # integral of (1 g - magnitude) over the second before the peak, m/s
    "impact_area_gs",  # integral of |magnitude - 1 g| over +-0.5 s, g*s
    "impact_std_g",  # std of magnitude over +-1 s
    "jerk_max_gps",  # largest magnitude change between samples around the peak, g/s
    "pre_std_g",  # std of magnitude from -4 s to -1 s (activity before)
    "pre_vec_std_g",  # total std of the acceleration vector from -4 s to -1 s
    "post_std_g",  # std of magnitude from +1.5 s to +4 s (stillness after)
    "post_mean_g",  # mean magnitude after
    "post_moving_frac",  # share of samples after with |magnitude - 1 g| > MOVING_G
    "post_vec_std_g",  # total std of the acceleration vector after
    "angle_change_deg",  # angle between the gravity direction before and after
    "pre_tilt_deg",  # angle of the gravity direction before from the wearer's upright
    "post_tilt_deg",  # angle of the gravity direction after from the wearer's upright
    "post_settle_deg",  # angle between early (+1.5 s) and late (+3 s) gravity after
    "pre_min_tilt_deg",  # least tilt of a half-second mean gravity from -4 s to -1 s
    "post_late_tilt_deg",  # tilt of the last second's mean gravity (the posture it ends in)
    "vertical_velocity_ms",  # integral of (1 g - acc along the gravity before) over 1 s, m/s
    "low_g_run_s",  # longest run below LOW_G in the 1.5 s before the peak
    "post_still_s",  # longest run with |magnitude - 1 g| < STILL_G from +0.5 s to +4 s
    "peak_up_g",  # acceleration along the wearer's upright direction at the peak
    "peak_across_g",  # acceleration across it at the peak
    "up_velocity_ms",  # integral of (1 g - acc along the wearer's up) over 1 s, m/s
)
N_FEATURES = len(FEATURE_NAMES)
PRE_MIN_TILT_INDEX = FEATURE_NAMES.index("pre_min_tilt_deg")


def magnitude_g(samples_mg: np.ndarray) -> np.ndarray:
    """Euclidean norm per sample, in g."""
    s = np.asarray(samples_mg, dtype=np.float64)
    return np.sqrt(np.einsum("ij,ij->i", s, s)) / G_MG


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two vectors in degrees (0 when either is zero)."""
    na = math.sqrt(float(a @ a))
    nb = math.sqrt(float(b @ b))
    if na == 0.0 or nb == 0.0:
        return 0.0
    cos = float(a @ b) / (na * nb)
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def _unit(v: np.ndarray) -> np.ndarray:
    n = math.sqrt(float(v @ v))
    return v / n if n > 0.0 else np.zeros_like(v)


def _tilts_deg(directions: np.ndarray, up: np.ndarray) -> np.ndarray:
    """Angle of each row's direction from the unit upright direction `up`, in degrees."""
    n = np.sqrt(np.einsum("ij,ij->i", directions, directions))
    cos = directions @ up / np.maximum(n, 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _mean_rows(x: np.ndarray) -> np.ndarray:
    """Mean of the rows of a 2-D array (`x.mean(axis=0)` without numpy's wrapper)."""
    return np.add.reduce(x, axis=0) / x.shape[0]


def _std(x: np.ndarray) -> float:
    """Population standard deviation of a 1-D array (`x.std()` without numpy's wrapper)."""
    d = x - float(np.add.reduce(x)) / x.size
    return math.sqrt(float(d @ d) / x.size)


def _longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True."""
    breaks = np.concatenate(([-1], np.flatnonzero(~mask), [mask.size]))  # False positions
    return int((breaks[1:] - breaks[:-1]).max()) - 1


def lying_before(row: np.ndarray) -> bool:
    """Whether a feature row shows the wearer lying all through -4 s .. -1 s (no fall from
    standing or sitting: rolling over in bed, lying down and moving). The detector does not
    score such a window, and training never sees one."""
    return bool(row[PRE_MIN_TILT_INDEX] >= LYING_BEFORE_DEG)


def _vec_std(g: np.ndarray) -> float:
    """Total standard deviation of 3-axis samples (root of the covariance trace): the same
    whichever way the device is turned."""
    c = g - np.add.reduce(g, axis=0) / g.shape[0]
    return math.sqrt(float(np.einsum("ij,ij->", c, c)) / g.shape[0])


def window_features(window_mg: np.ndarray, up: np.ndarray = UP_AXIS) -> np.ndarray:
    """One candidate window (WINDOW_N, 3) milli-g, peak at PRE_N, and the wearer's upright
    direction in the same device axes -> (N_FEATURES,) float32."""
    w = np.asarray(window_mg, dtype=np.float64)
    if w.shape != (WINDOW_N, 3):
        raise ValueError(f"window shape {w.shape}, expected ({WINDOW_N}, 3)")
    up = _unit(np.asarray(up, dtype=np.float64))
    if not up.any():
        raise ValueError("upright direction is the zero vector")
    dt = 1.0 / FS_HZ
    mag = magnitude_g(w)
    g = w / G_MG
    drop = mag[_DROP]
    around = mag[_AROUND]
    post = mag[_POST]
    pre_dir = _mean_rows(g[_PRE_REST])
    post_dir = _mean_rows(g[_POST])
    post_late = _mean_rows(g[_POST_LATE])
    pre_blocks = np.add.reduce(g[_PRE_ACT].reshape(-1, _BLOCK_N, 3), axis=1) / _BLOCK_N
    up_before = _unit(pre_dir)
    peak = float(mag[PRE_N])
    peak_up = float(g[PRE_N] @ up)
    vel = g[_VEL]
    vel_n = vel.shape[0]
    row = (
        peak,
        float(drop.min()),
        float(np.count_nonzero(drop < FREE_FALL_G)) * dt,
        (vel_n - float(np.add.reduce(mag[_VEL]))) * dt * 9.81,
        float(np.add.reduce(np.abs(mag[_IMPACT] - 1.0))) * dt,
        _std(around),
        float(np.abs(np.diff(around)).max()) / dt,
        _std(mag[_PRE_ACT]),
        _vec_std(g[_PRE_ACT]),
        _std(post),
        float(np.add.reduce(post)) / post.size,
        float(np.count_nonzero(np.abs(post - 1.0) > MOVING_G)) / post.size,
        _vec_std(g[_POST]),
        angle_deg(pre_dir, post_dir),
        angle_deg(pre_dir, up),
        angle_deg(post_dir, up),
        angle_deg(_mean_rows(g[_POST_EARLY]), post_late),
        float(_tilts_deg(pre_blocks, up).min()),
        angle_deg(post_late, up),
        (vel_n - float(np.add.reduce(vel @ up_before))) * dt * 9.81,
        _longest_run(drop < LOW_G) * dt,
        _longest_run(np.abs(mag[_AFTER] - 1.0) < STILL_G) * dt,
        peak_up,
        math.sqrt(max(0.0, peak**2 - peak_up**2)),
        (vel_n - float(np.add.reduce(vel @ up))) * dt * 9.81,
    )
    return np.asarray(row, dtype=np.float32)


def features_matrix(windows_mg: list[np.ndarray]) -> np.ndarray:
    """Stack `window_features` rows; (0, N_FEATURES) for no windows."""
    if not windows_mg:
        return np.zeros((0, N_FEATURES), dtype=np.float32)
    return np.stack([window_features(w) for w in windows_mg])


def walking_direction(block_mg: np.ndarray) -> np.ndarray | None:
    """Unit mean direction of a `WALK_BLOCK_N`-sample block that looks like walking, else None.

    Walking: the magnitude steps (std within `WALK_STD_G`) with a step period (its
    autocorrelation reaches `WALK_PERIODIC` at a lag of 0.3 .. 1.2 s), while the mean vector
    stays long and steady (the device does not turn: not bending, sitting down or handling)."""
    b = np.asarray(block_mg, dtype=np.float64)
    mag = np.sqrt(np.einsum("ij,ij->i", b, b)) / G_MG
    mag_mean = float(np.add.reduce(mag)) / mag.size
    d = mag - mag_mean
    std = math.sqrt(float(d @ d) / d.size)
    if not WALK_STD_G[0] <= std <= WALK_STD_G[1]:
        return None
    mean = _mean_rows(b)
    norm = math.sqrt(float(mean @ mean))
    if norm / G_MG < WALK_STEADY * mag_mean:
        return None
    half = b.shape[0] // 2
    if angle_deg(_mean_rows(b[:half]), _mean_rows(b[half:])) > WALK_HALVES_DEG:
        return None
    auto = np.correlate(d, d, mode="full")[d.size - 1 :]  # auto[k]: lag of k samples
    if float(auto[_STEP_LAGS].max()) < WALK_PERIODIC * float(auto[0]):
        return None
    return mean / norm


class UprightTracker:
    """The wearer's upright direction in device axes, learned from walking and kept as they
    move: refined by each walking block close to it, replaced when `RECLIP_BLOCKS` walking
    blocks in a row agree on another direction (the device was clipped on differently)."""

    def __init__(self, up: np.ndarray | None = None) -> None:
        self.found = up is not None  # an estimate from walking (or given), not the nominal axis
        self.up = UP_AXIS.copy() if up is None else _unit(np.asarray(up, dtype=np.float64))
        self.walking_blocks = 0  # walking blocks seen, for the installer's wearer check
        self._other: list[np.ndarray] = []  # recent walking blocks away from the estimate

    def observe_block(self, block_mg: np.ndarray) -> bool:
        """One `WALK_BLOCK_N`-sample block; True when it was walking and updated the estimate."""
        u = walking_direction(block_mg)
        if u is None:
            return False
        self.walking_blocks += 1
        if self.found and angle_deg(u, self.up) <= UPRIGHT_AGREE_DEG:
            self.up = _unit((1.0 - UPRIGHT_RATE) * self.up + UPRIGHT_RATE * u)
            self._other = []
            return True
        if self._other and angle_deg(u, self._other[0]) > RECLIP_AGREE_DEG:
            self._other = []
        self._other.append(u)
        needed = RECLIP_BLOCKS if self.found else UPRIGHT_FOUND_BLOCKS
        if len(self._other) >= needed:
            self.up = _unit(np.mean(self._other, axis=0))
            self.found = True
            self._other = []
        return True

    def observe(self, samples_mg: np.ndarray) -> None:
        """Every whole block of a recording, in order (a wearer's earlier walk)."""
        s = np.asarray(samples_mg)
        for start in range(0, s.shape[0] - WALK_BLOCK_N + 1, WALK_BLOCK_N):
            self.observe_block(s[start : start + WALK_BLOCK_N])
