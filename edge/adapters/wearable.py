"""Thin BLE I/O for the wearable: keep a GATT connection, queue what it sends.

`WearableLink.run()` connects (bleak-retry-connector's `establish_connection` retries the
transient failures), subscribes to the frame characteristic, reads the battery level now and
every `BATTERY_READ_S`, and waits for the disconnection; then it reconnects after a jittered
backoff, for ever. Each notification goes into the queue as `(bytes, received_at)`; battery
readings and link changes go in as `Event`s. Decoding is `edge.decode.wearable`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from cloud_bridge.broker import backoff_delay
from edge.decode.wearable import WearableFrameError, decode_battery
from edge.events import Event, EventKind, Role
from edge.runtime.clock import Clock

_LOGGER = logging.getLogger(__name__)

SERVICE_UUID = "a0e5f000-7e11-4e1a-8f00-5645494c4c45"
FRAME_CHAR_UUID = "a0e5f001-7e11-4e1a-8f00-5645494c4c45"
BATTERY_LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"
BATTERY_READ_S = 600.0
FIND_TIMEOUT_S = 20.0
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 120.0

Item = tuple[bytes, float] | Event


class GattClient(Protocol):
    """The part of `BleakClient` we use (a fake stands in for it in tests)."""

    @property
    def is_connected(self) -> bool: ...

    async def start_notify(self, char: str, callback: Callable[[Any, bytearray], None]) -> None: ...

    async def read_gatt_char(self, char: str) -> bytearray: ...

    async def disconnect(self) -> Any: ...


Connector = Callable[[Callable[[Any], None]], Awaitable[GattClient]]


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Delay before reconnection attempt `attempt` (0-based): the project's one backoff
    (`backoff_delay`, equal jitter), growing by half per attempt to `BACKOFF_MAX_S`."""
    rand = (rng or random).random
    return backoff_delay(
        attempt, base_s=BACKOFF_BASE_S, max_s=BACKOFF_MAX_S, factor=1.5, rand=rand
    )


def bleak_connector(address: str, name: str) -> Connector:
    """Find the device by address and connect with bleak-retry-connector."""

    async def connect(on_disconnect: Callable[[Any], None]) -> GattClient:
        from bleak import BleakScanner
        from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

        device = await BleakScanner.find_device_by_address(address, timeout=FIND_TIMEOUT_S)
        if device is None:
            raise ConnectionError(f"{name} ({address}) not found")
        client = await establish_connection(
            BleakClientWithServiceCache, device, name, disconnected_callback=on_disconnect
        )
        return cast(GattClient, client)

    return connect


def _setter(flag: asyncio.Event) -> Callable[[Any], None]:
    """A disconnection callback that sets `flag`."""
    return lambda _client: flag.set()


class WearableLink:
    """One wearable's connection, kept up for ever; items go to `queue`."""

    def __init__(
        self,
        device_id: str,
        queue: asyncio.Queue[Item],
        clock: Clock,
        connect: Connector,
        *,
        room: str | None = None,
        battery_read_s: float = BATTERY_READ_S,
        rng: random.Random | None = None,
        backoff: Callable[[int, random.Random], float] | None = None,
    ) -> None:
        self.device_id = device_id
        self.queue = queue
        self.clock = clock
        self.connect = connect
        self.room = room
        self.battery_read_s = battery_read_s
        self.rng = rng or random.Random()
        self.backoff = backoff or backoff_s

    def _event(self, kind: EventKind, value: float | None) -> Event:
        return Event(
            self.device_id,
            kind,
            value,
            self.clock.now(),
            source="wearable",
            room=self.room,
            role=Role.WEARABLE,
        )

    def _on_notify(self, _char: Any, data: bytearray) -> None:
        self.queue.put_nowait((bytes(data), self.clock.now()))

    async def run(self) -> None:
        """Connect, stream, reconnect with backoff; returns only when cancelled."""
        attempt = 0
        while True:
            gone = asyncio.Event()
            try:
                client = await self.connect(_setter(gone))
            except Exception as exc:  # bleak raises many kinds; every one means "try later"
                delay = self.backoff(attempt, self.rng)
                _LOGGER.warning(
                    "%s: connection failed (%s), retry in %.1f s", self.device_id, exc, delay
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            attempt = 0
            _LOGGER.info("%s: connected", self.device_id)
            try:
                await client.start_notify(FRAME_CHAR_UUID, self._on_notify)
                await self._keep(client, gone)
            except Exception as exc:
                _LOGGER.warning("%s: link lost (%s)", self.device_id, exc)
            finally:
                with contextlib.suppress(Exception):
                    await client.disconnect()
            delay = self.backoff(0, self.rng)
            _LOGGER.info("%s: disconnected, reconnecting in %.1f s", self.device_id, delay)
            await asyncio.sleep(delay)

    async def _keep(self, client: GattClient, gone: asyncio.Event) -> None:
        while client.is_connected and not gone.is_set():
            await self._read_battery(client)
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(self.battery_read_s):
                    await gone.wait()

    async def _read_battery(self, client: GattClient) -> None:
        try:
            level = decode_battery(bytes(await client.read_gatt_char(BATTERY_LEVEL_UUID)))
        except WearableFrameError as exc:
            _LOGGER.warning("%s: battery reading skipped: %s", self.device_id, exc)
            return
        self.queue.put_nowait(self._event(EventKind.BATTERY, level))
