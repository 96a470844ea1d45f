"""Wearable frames: byte-exact decode, sequence tracking, and the BLE adapter with a fake client."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest

from edge.adapters.wearable import (
    BATTERY_LEVEL_UUID,
    FRAME_CHAR_UUID,
    WearableLink,
    backoff_s,
)
from edge.decode.wearable import (
    WearableFrameError,
    WearableStream,
    decode_battery,
    decode_frame,
    encode_accel,
    encode_button,
)
from edge.events import AccelFrame, Event, EventKind
from edge.runtime.clock import FakeClock
from edge.sim.wearable import encode_frames, falls_npz, wearable_trace
from tests.conftest import FALLS_NPZ

# The examples written in firmware_configs/wearable/FRAME.md.
ACCEL_513 = bytes.fromhex("10010200 0018fc0c00 05001afc0a00".replace(" ", ""))
BUTTON_LONG_3 = bytes.fromhex("11030002")


def test_decode_documented_accel_frame() -> None:
    frame = decode_frame(ACCEL_513)
    assert (frame.version, frame.kind, frame.seq, frame.button) == (1, "accel", 513, None)
    assert frame.samples_mg is not None
    assert frame.samples_mg.tolist() == [[0, -1000, 12], [5, -998, 10]]
    assert encode_accel(513, frame.samples_mg) == ACCEL_513


def test_decode_documented_button_frame() -> None:
    frame = decode_frame(BUTTON_LONG_3)
    assert (frame.kind, frame.seq, frame.button, frame.samples_mg) == ("button", 3, "long", None)
    assert encode_button(3, "long") == BUTTON_LONG_3


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x10\x01",  # header cut
        b"\x10\x01\x02",  # no body
        ACCEL_513[:-1],  # truncated sample
        b"\x20" + ACCEL_513[1:],  # version 2
        b"\x17\x01\x00\x00",  # unknown type
        b"\x11\x01\x00\x07",  # unknown button kind
        b"\x10\x00\x00" + bytes(6 * 41),  # too many samples
    ],
)
def test_bad_frames_raise(data: bytes) -> None:
    with pytest.raises(WearableFrameError):
        decode_frame(data)


def test_battery() -> None:
    assert decode_battery(b"\x57") == 87.0
    with pytest.raises(WearableFrameError):
        decode_battery(b"\x65")  # 101 %
    with pytest.raises(WearableFrameError):
        decode_battery(b"")


def _frames(n_frames: int, per: int = 8, start: int = 0) -> list[bytes]:
    trace = wearable_trace("adl", seed=3)[: n_frames * per]
    return encode_frames(trace, start_seq=start, per_frame=per)


def test_simulated_wearable_reads_the_shared_fall_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator and the benchmarks stream real SisFall trials, not the synthetic
    fallback: by default they find the shared data where the tests do."""
    monkeypatch.delenv("VEILLE_FALLS_NPZ", raising=False)
    assert falls_npz() == FALLS_NPZ
    assert FALLS_NPZ.exists()


def test_stream_gaps_duplicates_late_and_truncated() -> None:
    frames = _frames(6)
    stream = WearableStream("w1")
    out: list[Any] = []
    order = [0, 1, 1, 3, 2, 4]  # dup of 1, frame 2 lost then arrives late
    for k, i in enumerate(order):
        out.append(stream.feed(frames[i], at=float(k)))
    out.append(stream.feed(frames[5][:-3], at=6.0))  # truncated bytes
    assert [type(o).__name__ for o in out] == [
        "AccelFrame", "AccelFrame", "NoneType", "AccelFrame", "NoneType", "AccelFrame", "NoneType"
    ]
    accel = [o for o in out if isinstance(o, AccelFrame)]
    assert [f.seq for f in accel] == [0, 8, 24, 32]
    assert [f.gap_samples for f in accel] == [0, 0, 8, 0]
    s = stream.stats
    assert (s.frames, s.duplicates, s.out_of_order, s.lost_samples, s.bad) == (4, 1, 1, 8, 1)


def test_stream_wraps_around_u16() -> None:
    frames = _frames(4, start=65536 - 16)  # seqs 65520, 65528, 0, 8
    stream = WearableStream("w1")
    seqs = []
    for k, data in enumerate(frames):
        f = stream.feed(data, at=float(k))
        assert isinstance(f, AccelFrame)
        seqs.append((f.seq, f.gap_samples))
    assert seqs == [(65520, 0), (65528, 0), (0, 0), (8, 0)]
    assert stream.stats.lost_samples == 0


def test_stream_long_silence_counts_gap_from_clock() -> None:
    frames = _frames(2)
    stream = WearableStream("w1")
    stream.feed(frames[0], at=0.0)
    f = stream.feed(frames[0], at=3600.0)  # same seq an hour later: wearable rebooted
    assert isinstance(f, AccelFrame)
    assert f.gap_samples >= 3600 * 50 - 16


def test_button_events_deduplicated() -> None:
    stream = WearableStream("w1", room="bedroom")
    e1 = stream.feed(encode_button(1, "single"), at=5.0)
    again = stream.feed(encode_button(1, "single"), at=5.1)
    e2 = stream.feed(encode_button(2, "long"), at=9.0)
    assert isinstance(e1, Event)
    assert (e1.kind, e1.value, e1.at, e1.room) == (EventKind.ACTION, "single", 5.0, "bedroom")
    assert again is None
    assert isinstance(e2, Event)
    assert e2.value == "long"


@pytest.mark.parametrize(("attempt", "low", "high"), [(0, 1.0, 2.0), (2, 2.25, 4.5),
                                                      (30, 60.0, 120.0)])
def test_backoff_table(attempt: int, low: float, high: float) -> None:
    rng = random.Random(1)
    for _ in range(50):
        assert low <= backoff_s(attempt, rng) <= high


class FakeBleakClient:
    """Stands in for BleakClient: replays recorded notification bytes, then drops the link."""

    def __init__(self, frames: list[bytes], battery: bytes, on_disconnect: Any) -> None:
        self.frames = frames
        self.battery = battery
        self.on_disconnect = on_disconnect
        self.connected = True
        self.reads: list[str] = []

    @property
    def is_connected(self) -> bool:
        return self.connected

    async def start_notify(self, char: str, callback: Any) -> None:
        assert char == FRAME_CHAR_UUID
        loop = asyncio.get_running_loop()

        def replay() -> None:
            for data in self.frames:
                callback(char, bytearray(data))
            self.connected = False
            self.on_disconnect(self)

        loop.call_soon(replay)

    async def read_gatt_char(self, char: str) -> bytearray:
        self.reads.append(char)
        return bytearray(self.battery)

    async def disconnect(self) -> bool:
        self.connected = False
        return True


def test_adapter_with_fake_client_reconnects_and_reads_battery() -> None:
    frames = _frames(3)
    attempts: list[str] = []
    clients: list[FakeBleakClient] = []

    async def connect(on_disconnect: Any) -> FakeBleakClient:
        attempts.append("try")
        if len(attempts) == 1:
            raise TimeoutError("device not found")  # a transient failure first
        client = FakeBleakClient(frames, b"\x50", on_disconnect)
        clients.append(client)
        return client

    async def main() -> list[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        link = WearableLink("w1", queue, FakeClock(100.0), connect, rng=random.Random(0),
                            backoff=lambda attempt, rng: 0.001)
        task = asyncio.create_task(link.run())
        items: list[Any] = []
        while len(clients) < 2 or len(items) < 8:
            items.append(await asyncio.wait_for(queue.get(), 5.0))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return items

    items = asyncio.run(main())
    assert attempts[0] == "try"
    assert len(clients) >= 2
    batteries = [i for i in items if isinstance(i, Event)]
    raw = [i for i in items if isinstance(i, tuple)]
    assert batteries[0].kind is EventKind.BATTERY
    assert batteries[0].value == 80.0
    assert raw[:3] == [(f, 100.0) for f in frames]
    assert clients[0].reads == [BATTERY_LEVEL_UUID]
    # the bytes the adapter queued decode to the samples that were sent
    stream = WearableStream("w1")
    decoded = [stream.feed(b, t) for b, t in raw[:3]]
    got = np.concatenate([d.samples_mg for d in decoded if isinstance(d, AccelFrame)])
    assert got.tolist() == wearable_trace("adl", seed=3)[:24].tolist()


def test_stream_resyncs_after_wearable_restart() -> None:
    """A rebooted wearable counts from 0 again: after a few 'late' frames, follow it."""
    stream = WearableStream("w1")
    old = _frames(2, start=30000)
    for k, data in enumerate(old):
        assert isinstance(stream.feed(data, at=k * 0.16), AccelFrame)
    new = _frames(4, start=0)  # seq 0 is behind the expected 30016: looks late at first
    got = [stream.feed(data, at=10.0 + k * 0.16) for k, data in enumerate(new)]
    assert [type(g).__name__ for g in got] == ["NoneType", "NoneType", "AccelFrame",
                                               "AccelFrame"]
    third = got[2]
    assert isinstance(third, AccelFrame)
    assert third.seq == 16
    assert third.gap_samples > 0
    assert stream.stats.out_of_order == 2
