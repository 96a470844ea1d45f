"""`python -m bench._gateway_child gateway.toml`: the `veille run` gateway with a fake radio.

A subprocess cannot reach the BLE radio, so the footprint benchmark runs the very `Gateway`
that `veille run` builds from the same gateway.toml (same registry, outbox, detectors,
Zigbee2MQTT adapter, uplink and HTTP listener), with BLE scanning off and, at the bleak
boundary, what the radio would hear read from stdin: BTHome advertisements and the wearable's
GATT frames, as length-prefixed records written by the benchmark. A third record kind sets
the gateway clock (simulated time as a piecewise-linear function of CLOCK_MONOTONIC, which
both processes read), so a simulated week can be pushed through fast.

Record: 1 byte kind (b"W" frame, b"B" advert, b"C" clock), 4 bytes big-endian length, body.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import struct
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edge.events import Role
from edge.runtime.gateway import Gateway, settings_from_config
from edge.runtime.pipeline import BleAdvert, WearableBytes

_LOGGER = logging.getLogger(__name__)
HEADER = struct.Struct(">cI")


class PiecewiseClock:
    """Simulated seconds = start + speed x (CLOCK_MONOTONIC - mono), set by clock records."""

    def __init__(self, start: float, mono: float, speed: float) -> None:
        self.set(start, mono, speed)

    def set(self, start: float, mono: float, speed: float) -> None:
        self._start, self._mono, self._speed = start, mono, speed

    def now(self) -> float:
        return self._start + self._speed * (time.monotonic() - self._mono)


def record(kind: bytes, body: bytes) -> bytes:
    """One stdin record (used by the benchmark to write them)."""
    return HEADER.pack(kind, len(body)) + body


async def _stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    return reader


async def radio(
    reader: asyncio.StreamReader, clock: PiecewiseClock, wearable: str | None, stop: asyncio.Event
) -> AsyncIterator[Any]:
    """What the radio hears, from stdin; a clock record moves the clock; EOF stops."""
    while True:
        try:
            kind, size = HEADER.unpack(await reader.readexactly(HEADER.size))
            body = await reader.readexactly(size)
        except asyncio.IncompleteReadError:
            stop.set()
            return
        if kind == b"W" and wearable is not None:
            yield WearableBytes(wearable, body, clock.now())
        elif kind == b"B":
            adv = json.loads(body)
            data = {uuid: bytes.fromhex(h) for uuid, h in adv["service_data"].items()}
            yield BleAdvert(adv["address"], data, float(adv["rssi"]))
        elif kind == b"C":
            c = json.loads(body)
            clock.set(float(c["start"]), float(c["mono"]), float(c["speed"]))


async def main(config: Path) -> None:
    reader = await _stdin()
    kind, size = HEADER.unpack(await reader.readexactly(HEADER.size))
    first = json.loads(await reader.readexactly(size))
    assert kind == b"C", "the first record sets the clock"
    clock = PiecewiseClock(float(first["start"]), float(first["mono"]), float(first["speed"]))
    settings = settings_from_config(config)
    settings.ble = False  # the radio is stdin
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gateway = Gateway(settings, clock=clock)
    wearable = next((d.id for d in gateway.profile.devices if d.role is Role.WEARABLE), None)
    await gateway.run(stop, (radio(reader, clock, wearable, stop),))


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(main(Path(sys.argv[1])))
