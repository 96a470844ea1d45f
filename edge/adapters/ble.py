"""Passive BLE scanning with bleak: advertisements -> an asyncio queue, nothing more.

`async with BleScanner() as scanner: async for adv in scanner: ...` yields one
`Advertisement(address, service_data, rssi, name)` per advertisement heard; decoding is
`edge.decode.bthome`'s job. On BlueZ, passive scanning needs advertisement-monitor patterns:
we ask for BTHome's service data UUIDs. Tests inject a fake scanner class at this boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, NamedTuple, Protocol

_LOGGER = logging.getLogger(__name__)

QUEUE_MAX = 1000  # advertisements waiting for the pipeline; the oldest are dropped past it
DROP_LOG_EVERY = 100  # one log line per this many dropped advertisements

# AD type 0x16 (service data, 16-bit UUID) starting with BTHome's UUIDs, little-endian.
_AD_SERVICE_DATA_UUID16 = 0x16
BTHOME_UUID16_LE = (b"\xd2\xfc", b"\x1c\x18", b"\x1e\x18")


class Advertisement(NamedTuple):
    """One advertisement, as bleak reported it."""

    address: str
    service_data: dict[str, bytes]  # full 128-bit UUID string -> bytes
    rssi: int
    name: str | None


class ScannerLike(Protocol):
    """The part of `bleak.BleakScanner` we use."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ScannerFactory = Callable[..., ScannerLike]


def _bleak_scanner(callback: Callable[[Any, Any], None], adapter: str | None) -> ScannerLike:
    """A real passive `BleakScanner` (imported here: bleak pulls in D-Bus on Linux)."""
    from bleak import BleakScanner
    from bleak.args.bluez import BlueZScannerArgs, OrPattern, OrPatternLike
    from bleak.assigned_numbers import AdvertisementDataType

    patterns: list[OrPatternLike] = [
        OrPattern(0, AdvertisementDataType(_AD_SERVICE_DATA_UUID16), uuid)
        for uuid in BTHOME_UUID16_LE
    ]
    bluez = BlueZScannerArgs(or_patterns=patterns)
    if adapter:
        bluez["adapter"] = adapter
    return BleakScanner(callback, scanning_mode="passive", bluez=bluez)


class BleScanner:
    """Passive scanner as an async context manager and async iterator of `Advertisement`s."""

    def __init__(
        self,
        *,
        adapter: str | None = None,
        scanner_factory: Callable[[Callable[[Any, Any], None], str | None], ScannerLike]
        | None = None,
        queue_max: int = QUEUE_MAX,
    ) -> None:
        self._adapter = adapter
        self._factory = scanner_factory or _bleak_scanner
        self._queue: asyncio.Queue[Advertisement] = asyncio.Queue(maxsize=queue_max)
        self._scanner: ScannerLike | None = None
        self.heard = 0
        self.dropped = 0

    async def __aenter__(self) -> BleScanner:
        self._scanner = self._factory(self._on_advertisement, self._adapter)
        await self._scanner.start()
        _LOGGER.info("BLE passive scanning started (adapter %s)", self._adapter or "default")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            try:
                await scanner.stop()
            except Exception as err:  # the radio may already be gone; we are leaving anyway
                _LOGGER.warning("BLE scanner did not stop cleanly: %s", err)
        _LOGGER.info("BLE scanning stopped: %d heard, %d dropped", self.heard, self.dropped)

    def _on_advertisement(self, device: Any, data: Any) -> None:
        """bleak's detection callback (runs in the event loop): queue and return."""
        adv = Advertisement(
            str(device.address),
            dict(data.service_data),
            int(data.rssi),
            data.local_name or getattr(device, "name", None),
        )
        self.heard += 1
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self.dropped += 1
            if self.dropped % DROP_LOG_EVERY == 1:
                _LOGGER.warning("BLE queue full: %d advertisements dropped so far", self.dropped)
        self._queue.put_nowait(adv)

    async def advertisements(self) -> AsyncIterator[Advertisement]:
        """Advertisements as they are heard, until the scanner is closed."""
        while True:
            yield await self._queue.get()

    def __aiter__(self) -> AsyncIterator[Advertisement]:
        return self.advertisements()

    def get_nowait(self) -> Advertisement | None:
        """The next queued advertisement, or None."""
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
