"""Streaming fall detector for one wearable: pure, on event time, with a numpy ring buffer.

Design (the model card explains the choice):
0. The wearer's upright direction: every 2 s block of the stream that looks like walking
   updates a `models.features.UprightTracker`, kept for the detector's life (a wearer, not a
   window): posture and tilt features are measured against it, so the device may be clipped
   on at any angle, upside down included.
1. A cheap trigger: the acceleration magnitude crosses `TRIGGER_G`. Crossings within
   `CLUSTER_S` of the first form one cluster; its largest sample is the candidate peak.
2. When `POST_S` seconds after the peak have arrived, the window around it goes through
   `models.features.window_features`. A window whose wearer was lying all through the
   posture span before the peak (`models.features.lying_before`: rolling over in bed) is
   dropped; the others go to the classifier (ONNX in production). A score at or above the
   threshold is a detected fall.
3. A detected fall opens a confirmation window (`confirm_s`, per home): a short press of the
   wearable's button ("I'm fine") cancels it; otherwise, when the window ends, a critical
   `fall` finding is raised with evidence. A fall is never downgraded, whatever happens next.
4. A long press is a call for help: an `sos` finding at once (and a pending fall is raised).
5. A wearable silent for `offline_after_s` (taken off, out of range, flat) raises
   `sensor_offline` (key `offline:<device>`), resolved by its next frame.

No I/O, no clock: frames and button events carry their time, `advance(now)` moves time on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from cloud_bridge.contract import AlertType, Severity
from edge.events import AccelFrame, Event, EventKind, Finding
from models import features as ft

_LOGGER = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray], np.ndarray]

FS_HZ = ft.FS_HZ
TRIGGER_G = 1.4  # magnitude that makes a window a candidate (every SisFall fall peaks > 1.59 g)
CLUSTER_S = 1.0  # crossings closer than this to the first one belong to the same impact
RING_S = 20.0  # samples kept: window + cluster + confirmation look-back, with margin
MAX_FILL_GAP_S = 2.0  # a sequence gap up to this is bridged by holding the last sample
HOLDOFF_S = 10.0  # after a detection, no new candidate for this long (one fall, one alert)
MOVING_SAMPLES_S = 1.0  # this much movement after a detection means movement resumed
UPRIGHT_MAX_DEG = 35.0  # trunk tilt up to this reads "upright"
LYING_MIN_DEG = 60.0  # and from this on "lying"; in between "reclined"
DEFAULT_THRESHOLD = 0.5
OFFLINE_AFTER_S = 300.0  # a wearable silent this long is reported offline

_TRIGGER_MG2 = (TRIGGER_G * ft.G_MG) ** 2
_CLUSTER_N = int(CLUSTER_S * FS_HZ)
_RING_N = int(RING_S * FS_HZ)
_MAX_FILL_N = int(MAX_FILL_GAP_S * FS_HZ)
_HOLDOFF_N = int(HOLDOFF_S * FS_HZ)
_MOVING_MG = ft.MOVING_G * ft.G_MG
_POSTURE_N = FS_HZ  # the last second gives the posture


@dataclass(slots=True)
class _PendingFall:
    key: str
    detected_at: float
    deadline: float
    peak_g: float
    score: float
    moving_samples: int


def posture(direction: np.ndarray, up: np.ndarray = ft.UP_AXIS) -> str:
    """Mean gravity direction and the wearer's upright one (device axes) -> "upright" |
    "reclined" | "lying"."""
    tilt = ft.angle_deg(direction, up)
    if tilt <= UPRIGHT_MAX_DEG:
        return "upright"
    return "reclined" if tilt < LYING_MIN_DEG else "lying"


class FallDetector:
    """One wearable's fall detector; feed it frames and button events in time order."""

    def __init__(
        self,
        model: Scorer,
        confirm_s: float = 30.0,
        device_id: str = "wearable",
        room: str | None = None,
        *,
        threshold: float | None = None,
        offline_after_s: float | None = OFFLINE_AFTER_S,
        upright: np.ndarray | None = None,
    ) -> None:
        self.model = model
        # the wearer's upright direction: `upright` when already known, else learned
        self.upright = ft.UprightTracker(upright)
        self.upright_at: float | None = None  # event time of the last walk that updated it
        if threshold is None:
            threshold = float(getattr(model, "threshold", DEFAULT_THRESHOLD))
        self.threshold = threshold
        self.confirm_s = max(0.0, float(confirm_s))
        self.device_id = device_id
        self.room = room
        self.offline_after_s = offline_after_s
        self.scored_windows = 0  # candidates that reached the classifier (for the bench)
        self.gated_windows = 0  # candidates not scored: the wearer was lying before
        self._last_frame_at: float | None = None
        self._offline = False
        self._pending: _PendingFall | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the signal (not the pending fall): after a long gap or a reconnection."""
        self._buf = np.zeros((_RING_N, 3), dtype=np.float32)
        self._n = 0  # samples written since the start
        self._origin = 0  # first sample index still valid after the last reset
        self._t_last: float | None = None
        self._cluster: tuple[int, int, float] | None = None  # (end index, peak index, peak mg^2)
        self._candidates: list[int] = []
        self._holdoff_until = -1
        self._walk_next = 0  # first sample of the next block for the upright tracker

    def wearer_doc(self) -> dict[str, Any] | None:
        """The learned upright direction to keep across restarts, or None before a walk."""
        if not self.upright.found:
            return None
        return {"up": [round(float(v), 5) for v in self.upright.up]}

    @property
    def pending(self) -> bool:
        """Whether a detected fall waits in its confirmation window."""
        return self._pending is not None

    # -- input ------------------------------------------------------------------------

    def feed_frame(self, frame: AccelFrame) -> list[Finding]:
        """Take one frame of samples; returns findings due by the frame's time."""
        if frame.device_id != self.device_id:
            _LOGGER.debug("%s: frame from %s ignored", self.device_id, frame.device_id)
            return []
        samples = np.asarray(frame.samples_mg)
        if samples.ndim != 2 or samples.shape[1] != 3 or samples.shape[0] == 0:
            _LOGGER.warning("%s: frame of shape %s skipped", self.device_id, samples.shape)
            return []
        if abs(frame.fs_hz - FS_HZ) > 0.5:
            _LOGGER.warning(
                "%s: frame at %s Hz skipped (model: %s Hz)", self.device_id, frame.fs_hz, FS_HZ
            )
            return []
        if self._t_last is not None and frame.at < self._t_last:
            _LOGGER.warning(
                "%s: frame at %.3f before %.3f skipped", self.device_id, frame.at, self._t_last
            )
            return []
        if frame.gap_samples > 0 and self._n > self._origin:
            if frame.gap_samples > _MAX_FILL_N:
                _LOGGER.info(
                    "%s: %d samples lost, signal restarted", self.device_id, frame.gap_samples
                )
                self._restart()
            else:
                last = self._buf[(self._n - 1) % _RING_N]
                self._write(np.repeat(last[None, :], frame.gap_samples, axis=0))
        k0 = self._n
        self._write(samples)
        self._track_upright(float(frame.at))
        self._t_last = float(frame.at)
        found: list[Finding] = []
        if self._offline:
            self._offline = False
            found.append(self._offline_finding(frame.at, "resolve"))
        self._last_frame_at = float(frame.at)
        self._trigger(samples, k0)
        self._score_ready(found)
        if self._pending is not None:
            self._track_movement(samples)
        found.extend(self.advance(float(frame.at)))
        return found

    def feed(self, event: Event) -> list[Finding]:
        """The wearable's button: "single" cancels a pending fall, "long" calls for help."""
        if event.kind is not EventKind.ACTION or event.device_id != self.device_id:
            return []
        if event.value == "long":
            found = [
                Finding(
                    key=f"sos:{self.device_id}:{int(event.at)}",
                    type=AlertType.SOS,
                    severity=Severity.CRITICAL,
                    at=event.at,
                    room=self.room,
                    device_id=self.device_id,
                    evidence={"button": "long"},
                )
            ]
            if self._pending is not None:
                found.append(self._raise(event.at, help_pressed=True))
            return found
        if event.value == "single" and self._pending is not None:
            pending = self._pending
            self._pending = None
            _LOGGER.info("%s: fall %s cancelled by the wearer", self.device_id, pending.key)
            return [
                Finding(
                    key=pending.key,
                    type=AlertType.FALL,
                    severity=Severity.CRITICAL,
                    at=event.at,
                    action="cancel",
                    room=self.room,
                    device_id=self.device_id,
                    evidence={
                        "peak_g": pending.peak_g,
                        "score": pending.score,
                        "cancelled_by": "wearer",
                    },
                    raised_at=pending.detected_at,
                )
            ]
        return []

    def advance(self, now: float) -> list[Finding]:
        """Raise a pending fall whose window has ended by `now`; report a silent wearable."""
        found: list[Finding] = []
        if self._pending is not None and now >= self._pending.deadline:
            found.append(self._raise(now))
        if (
            self.offline_after_s is not None
            and not self._offline
            and self._last_frame_at is not None
            and now - self._last_frame_at >= self.offline_after_s
        ):
            self._offline = True
            found.append(self._offline_finding(now, "raise"))
        return found

    def _offline_finding(self, now: float, action: Literal["raise", "resolve"]) -> Finding:
        silent = 0.0 if self._last_frame_at is None else now - self._last_frame_at
        return Finding(
            key=f"offline:{self.device_id}",
            type=AlertType.SENSOR_OFFLINE,
            severity=Severity.WARNING,
            at=now,
            action=action,
            room=self.room,
            device_id=self.device_id,
            evidence={"silent_min": round(silent / 60.0, 1), "device": "wearable"},
        )

    # -- internals --------------------------------------------------------------------

    def _restart(self) -> None:
        self._origin = self._n
        self._walk_next = self._n
        self._cluster = None
        self._candidates = []

    def _track_upright(self, now: float) -> None:
        """Hand each whole block of new samples to the upright tracker."""
        block = ft.WALK_BLOCK_N
        self._walk_next = max(self._walk_next, self._n - _RING_N)
        while self._walk_next + block <= self._n:
            start = self._walk_next % _RING_N
            if start + block <= _RING_N:
                walked = self.upright.observe_block(self._buf[start : start + block])
            else:
                idx = np.arange(self._walk_next, self._walk_next + block) % _RING_N
                walked = self.upright.observe_block(self._buf[idx])
            if walked and self.upright.found:
                self.upright_at = now
            self._walk_next += block

    def _write(self, samples: np.ndarray) -> None:
        n = samples.shape[0]
        if n >= _RING_N:
            samples = samples[-_RING_N:]
            self._n += n - _RING_N
            n = _RING_N
        start = self._n % _RING_N
        first = min(n, _RING_N - start)
        self._buf[start : start + first] = samples[:first]
        if first < n:
            self._buf[: n - first] = samples[first:]
        self._n += n

    def _trigger(self, samples: np.ndarray, k0: int) -> None:
        """Cluster magnitude crossings into candidate peaks (indices are global)."""
        s = samples.astype(np.float32, copy=False)
        mag2 = np.einsum("ij,ij->i", s, s)
        if self._cluster is None and float(mag2.max()) <= _TRIGGER_MG2:
            return  # the common case: no crossing and no open cluster
        last = self._n - 1
        if self._cluster is not None:
            end, peak, peak_m2 = self._cluster
            stop = min(end, last)
            seg = mag2[: stop - k0 + 1]
            if seg.size:
                j = int(seg.argmax())
                if seg[j] > peak_m2:
                    peak, peak_m2 = k0 + j, float(seg[j])
            if end <= last:
                self._add_candidate(peak)
                self._cluster = None
            else:
                self._cluster = (end, peak, peak_m2)
                return
            above = np.flatnonzero(mag2 > _TRIGGER_MG2) + k0
            above = above[above > end]
        else:
            above = np.flatnonzero(mag2 > _TRIGGER_MG2) + k0
        while above.size:
            start = int(above[0])
            end = start + _CLUSTER_N - 1
            seg = mag2[start - k0 : min(end, last) - k0 + 1]
            j = int(seg.argmax())
            peak, peak_m2 = start + j, float(seg[j])
            if end <= last:
                self._add_candidate(peak)
                above = above[above > end]
            else:
                self._cluster = (end, peak, peak_m2)
                break

    def _add_candidate(self, peak: int) -> None:
        if peak >= self._holdoff_until and self._pending is None:
            self._candidates.append(peak)

    def _window(self, peak: int) -> np.ndarray:
        idx = np.arange(peak - ft.PRE_N, peak + ft.POST_N + 1)
        oldest = max(self._origin, self._n - _RING_N)
        np.clip(idx, oldest, None, out=idx)  # not enough history: hold the oldest sample
        return self._buf[idx % _RING_N]

    def _score_ready(self, found: list[Finding]) -> None:
        last = self._n - 1
        while self._candidates and self._candidates[0] + ft.POST_N <= last:
            peak = self._candidates.pop(0)
            if peak < self._holdoff_until or self._pending is not None:
                continue
            window = self._window(peak)
            row = ft.window_features(window, self.upright.up)
            if ft.lying_before(row):  # already lying before the impact: not a fall from up
                self.gated_windows += 1
                continue
            score = float(np.asarray(self.model(row[None, :])).reshape(-1)[0])
            self.scored_windows += 1
            if score < self.threshold:
                continue
            assert self._t_last is not None
            at = self._t_last - (last - (peak + ft.POST_N)) / FS_HZ
            post = window[ft.PRE_N + int(1.5 * FS_HZ) :]
            moving = int(
                np.count_nonzero(np.abs(ft.magnitude_g(post) * ft.G_MG - ft.G_MG) > _MOVING_MG)
            )
            self._pending = _PendingFall(
                key=f"fall:{self.device_id}:{int(at)}",
                detected_at=at,
                deadline=at + self.confirm_s,
                peak_g=round(float(row[0]), 2),
                score=round(score, 3),
                moving_samples=moving,
            )
            self._holdoff_until = peak + _HOLDOFF_N
            self._candidates = [c for c in self._candidates if c >= self._holdoff_until]
            _LOGGER.info(
                "%s: fall detected at %.2f (peak %.2f g, score %.3f)",
                self.device_id,
                at,
                row[0],
                score,
            )
            found.extend(self.advance(at))

    def _track_movement(self, samples: np.ndarray) -> None:
        assert self._pending is not None
        dev = np.abs(ft.magnitude_g(samples) * ft.G_MG - ft.G_MG)
        self._pending.moving_samples += int(np.count_nonzero(dev > _MOVING_MG))

    def _current_posture(self) -> str:
        n = min(_POSTURE_N, self._n - max(self._origin, self._n - _RING_N))
        if n <= 0:
            return "unknown"
        idx = np.arange(self._n - n, self._n) % _RING_N
        return posture(self._buf[idx].astype(np.float64).mean(axis=0), self.upright.up)

    def _raise(self, now: float, help_pressed: bool = False) -> Finding:
        pending = self._pending
        assert pending is not None
        self._pending = None
        evidence: dict[str, Any] = {
            "peak_g": pending.peak_g,
            "score": pending.score,
            "posture": self._current_posture(),
            "movement_resumed": pending.moving_samples >= int(MOVING_SAMPLES_S * FS_HZ),
            "confirm_s": self.confirm_s,
        }
        if help_pressed:
            evidence["help_pressed"] = True
        return Finding(
            key=pending.key,
            type=AlertType.FALL,
            severity=Severity.CRITICAL,  # never downgraded, whatever happened afterwards
            at=now,
            room=self.room,
            device_id=self.device_id,
            evidence=evidence,
            raised_at=pending.detected_at,
        )


def upright_from_doc(doc: Any) -> np.ndarray | None:
    """A saved `FallDetector.wearer_doc()` -> its upright direction; None (one log line) when
    it is not three finite numbers of some length."""
    up = doc.get("up") if isinstance(doc, dict) else None
    try:
        v = np.asarray(up, dtype=np.float64)
    except (TypeError, ValueError):
        v = np.zeros(0)
    if v.shape != (3,) or not np.all(np.isfinite(v)) or float(np.linalg.norm(v)) < 1e-6:
        if doc is not None:
            _LOGGER.warning("saved wearer upright direction %r ignored", doc)
        return None
    return v


def load_default_detector(
    confirm_s: float = 30.0, device_id: str = "wearable", room: str | None = None
) -> FallDetector:
    """A detector on the shipped model (`models/fall_detector.onnx`, threshold from its card)."""
    from models.runtime import FALL_MODEL_PATH, OnnxModel

    return FallDetector(
        OnnxModel(FALL_MODEL_PATH), confirm_s=confirm_s, device_id=device_id, room=room
    )
