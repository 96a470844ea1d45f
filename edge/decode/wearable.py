"""Pure decode of the wearable's GATT frames (format: firmware_configs/wearable/FRAME.md).

One notify characteristic carries two frame types:

    byte 0      version (high nibble, 1) | type (low nibble: 0 = accel, 1 = button)
    bytes 1-2   u16 LE sequence number
                  accel:  index of the frame's first sample, modulo 65536 (counts samples)
                  button: press counter, modulo 65536
    accel:  bytes 3..  N x (x, y, z) int16 LE milli-g, N = (len - 3) / 6, 1 <= N <= 40
    button: byte 3      1 = short press ("I'm fine": cancel), 2 = long press (help: sos)

Battery comes from the standard Battery Level characteristic (0x2A19): one u8, percent.
`WearableStream` turns frames into `AccelFrame`s and button `Event`s: duplicates dropped,
late (out-of-order) frames dropped with a log line, lost samples counted in `gap_samples`,
the u16 wrap-around handled.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from edge.events import AccelFrame, Event, EventKind, Role

_LOGGER = logging.getLogger(__name__)

FRAME_VERSION = 1
TYPE_ACCEL = 0
TYPE_BUTTON = 1
HEADER_BYTES = 3
SAMPLE_BYTES = 6
MAX_SAMPLES = 40
SEQ_MOD = 1 << 16
BUTTON_KINDS = {1: "single", 2: "long"}
BUTTON_CODES = {v: k for k, v in BUTTON_KINDS.items()}
RESYNC_AFTER_LATE = 3  # this many "late" frames in a row: the wearable restarted its counter
WRAP_GUARD_S = 600.0  # silence longer than this may hide a wrap of the u16 sample counter
FS_HZ = 50.0

_SAMPLE_DTYPE = np.dtype("<i2")


class WearableFrameError(ValueError):
    """Bytes that are not a wearable frame of a version we read."""


@dataclass(frozen=True, slots=True, eq=False)
class WearableFrame:
    """One decoded notification."""

    version: int
    kind: Literal["accel", "button"]
    seq: int
    samples_mg: np.ndarray | None = None  # (n, 3) int16, accel frames only
    button: str | None = None  # "single" | "long", button frames only


def decode_frame(data: bytes) -> WearableFrame:
    """Bytes of one notification -> `WearableFrame`; raises `WearableFrameError`."""
    if len(data) < HEADER_BYTES + 1:
        raise WearableFrameError(f"frame of {len(data)} bytes is too short")
    version, ftype = data[0] >> 4, data[0] & 0x0F
    if version != FRAME_VERSION:
        raise WearableFrameError(f"frame version {version}, expected {FRAME_VERSION}")
    (seq,) = struct.unpack_from("<H", data, 1)
    body = memoryview(data)[HEADER_BYTES:]
    if ftype == TYPE_ACCEL:
        if len(body) % SAMPLE_BYTES:
            raise WearableFrameError(f"accel body of {len(body)} bytes is not whole samples")
        n = len(body) // SAMPLE_BYTES
        if n > MAX_SAMPLES:
            raise WearableFrameError(f"{n} samples in one frame, at most {MAX_SAMPLES}")
        samples = np.frombuffer(body, dtype=_SAMPLE_DTYPE).reshape(n, 3).astype(np.int16)
        return WearableFrame(version, "accel", seq, samples_mg=samples)
    if ftype == TYPE_BUTTON:
        if len(body) != 1 or body[0] not in BUTTON_KINDS:
            raise WearableFrameError(f"bad button frame body {bytes(body).hex()}")
        return WearableFrame(version, "button", seq, button=BUTTON_KINDS[body[0]])
    raise WearableFrameError(f"unknown frame type {ftype}")


def encode_accel(seq: int, samples_mg: np.ndarray) -> bytes:
    """The firmware's accel frame, for the simulator and tests."""
    s = np.clip(np.rint(np.asarray(samples_mg)), -32768, 32767).astype(_SAMPLE_DTYPE)
    if s.ndim != 2 or s.shape[1] != 3 or not 1 <= s.shape[0] <= MAX_SAMPLES:
        raise ValueError(f"cannot frame samples of shape {s.shape}")
    header = struct.pack("<BH", FRAME_VERSION << 4 | TYPE_ACCEL, seq % SEQ_MOD)
    return header + s.tobytes()


def encode_button(press_no: int, kind: str) -> bytes:
    """The firmware's button frame ("single" or "long")."""
    return struct.pack(
        "<BHB", FRAME_VERSION << 4 | TYPE_BUTTON, press_no % SEQ_MOD, BUTTON_CODES[kind]
    )


def decode_battery(data: bytes) -> float:
    """Battery Level (0x2A19): one u8 percent; raises `WearableFrameError`."""
    if len(data) != 1 or data[0] > 100:
        raise WearableFrameError(f"bad battery level {bytes(data).hex()}")
    return float(data[0])


@dataclass
class StreamStats:
    frames: int = 0
    samples: int = 0
    lost_samples: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    bad: int = 0


@dataclass
class WearableStream:
    """Sequence tracking for one wearable; `feed` is pure (no I/O, time is an input)."""

    device_id: str
    room: str | None = None
    fs_hz: float = FS_HZ
    stats: StreamStats = field(default_factory=StreamStats)
    _next_seq: int | None = None
    _last_at: float | None = None
    _last_press: int | None = None
    _late_run: int = 0

    def feed(self, data: bytes, at: float) -> AccelFrame | Event | None:
        """One notification received at `at` -> an AccelFrame, a button Event, or None."""
        try:
            frame = decode_frame(data)
        except WearableFrameError as exc:
            self.stats.bad += 1
            _LOGGER.warning("%s: frame skipped: %s", self.device_id, exc)
            return None
        if frame.kind == "button":
            return self._button(frame, at)
        assert frame.samples_mg is not None
        n = frame.samples_mg.shape[0]
        gap = 0
        if self._next_seq is not None:
            silent_s = at - (self._last_at if self._last_at is not None else at)
            ahead = (frame.seq - self._next_seq) % SEQ_MOD
            if silent_s > WRAP_GUARD_S:
                gap = max(ahead, round(silent_s * self.fs_hz) - n)
            elif ahead >= SEQ_MOD // 2 and self._late_run + 1 < RESYNC_AFTER_LATE:
                self._late_run += 1
                if SEQ_MOD - ahead == n:
                    self.stats.duplicates += 1
                    _LOGGER.debug("%s: duplicate frame %d dropped", self.device_id, frame.seq)
                else:
                    self.stats.out_of_order += 1
                    _LOGGER.info(
                        "%s: late frame %d dropped (expected %d)",
                        self.device_id,
                        frame.seq,
                        self._next_seq,
                    )
                return None
            elif ahead >= SEQ_MOD // 2:
                _LOGGER.info(
                    "%s: sequence restarted at %d (expected %d)",
                    self.device_id,
                    frame.seq,
                    self._next_seq,
                )
                gap = max(1, round(silent_s * self.fs_hz) - n)
            else:
                gap = ahead
        self._late_run = 0
        if gap:
            self.stats.lost_samples += gap
            _LOGGER.debug("%s: %d samples lost before frame %d", self.device_id, gap, frame.seq)
        self._next_seq = (frame.seq + n) % SEQ_MOD
        self._last_at = at
        self.stats.frames += 1
        self.stats.samples += n
        return AccelFrame(self.device_id, frame.seq, at, frame.samples_mg, self.fs_hz, gap)

    def _button(self, frame: WearableFrame, at: float) -> Event | None:
        if frame.seq == self._last_press:
            self.stats.duplicates += 1
            return None
        self._last_press = frame.seq
        return Event(
            self.device_id,
            EventKind.ACTION,
            frame.button,
            at,
            source="wearable",
            room=self.room,
            role=Role.WEARABLE,
        )
