"""BLE adapter: a fake scanner at the bleak boundary fed with recorded advertisement bytes.

The fake stands in for the radio only: it parses the recorded raw advertising data with
bluetooth-data-tools into bleak's own `AdvertisementData` / `BLEDevice` and calls the
adapter's detection callback, exactly as bleak's BlueZ backend does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bluetooth_data_tools import parse_advertisement_data_bytes

from edge.adapters.ble import BleScanner, _bleak_scanner
from edge.decode.bthome import BthomeDecoder
from tests.test_decode_bthome import VECTORS, profile_of


class FakeScanner:
    """Replays recorded advertising bytes through the detection callback."""

    instances: ClassVar[list[FakeScanner]] = []

    def __init__(self, callback: Callable[[Any, Any], None], adapter: str | None) -> None:
        self.callback = callback
        self.adapter = adapter
        self.started = False
        self.stopped = False
        FakeScanner.instances.append(self)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def hear(self, address: str, raw_adv: bytes, rssi: int) -> None:
        name, uuids, service_data, manufacturer, tx_power = parse_advertisement_data_bytes(raw_adv)
        data = AdvertisementData(name, manufacturer, service_data, uuids, tx_power, rssi, ())
        self.callback(BLEDevice(address, name, None), data)


def recorded() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for path in sorted(VECTORS.glob("bthome_*.json")):
        vec = json.loads(path.read_text())
        out.extend((vec["device"], adv) for adv in vec["adverts"])
    return out


def test_recorded_adverts_flow_through_scanner_and_decoder() -> None:
    asyncio.run(_recorded_adverts_flow())


async def _recorded_adverts_flow() -> None:
    adverts = recorded()
    devices = {d["address"]: d for d, _ in adverts}
    profile = profile_of(*devices.values())
    decoder = BthomeDecoder(profile)
    async with BleScanner(scanner_factory=FakeScanner, adapter="hci1") as scanner:
        fake = FakeScanner.instances[-1]
        assert fake.started
        assert fake.adapter == "hci1"
        for dev, adv in adverts:
            fake.hear(dev["address"], bytes.fromhex(adv["raw_adv"]), adv["rssi"])
        got = []
        for dev, adv in adverts:
            item = await asyncio.wait_for(anext(aiter(scanner)), 1.0)
            assert item.address == dev["address"]
            assert item.service_data == {
                u: bytes.fromhex(h) for u, h in adv["service_data"].items()
            }
            assert item.rssi == adv["rssi"]
            assert item.name == adv["name"]
            result = decoder.decode(
                item.address, item.service_data, item.rssi, adv["at"], item.name
            )
            got.append(sorted((e.kind.value, repr(e.value)) for e in result.events))
        assert scanner.get_nowait() is None
    assert fake.stopped
    assert got == [
        sorted((e["kind"], repr(e["value"])) for e in adv["expect"]) for _, adv in adverts
    ]
    assert scanner.heard == len(adverts)


def test_full_queue_drops_oldest_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    asyncio.run(_full_queue())
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


async def _full_queue() -> None:
    raw = bytes.fromhex("020106" + "0a16d2fc4002ca0903bf13")
    async with BleScanner(scanner_factory=FakeScanner, queue_max=3) as scanner:
        fake = FakeScanner.instances[-1]
        for rssi in range(-50, -60, -1):  # ten adverts into a queue of three
            fake.hear("A4:C1:38:8D:18:B2", raw, rssi)
        kept = [scanner.get_nowait() for _ in range(3)]
    assert [a.rssi for a in kept if a] == [-57, -58, -59]
    assert scanner.dropped == 7


def test_scanner_stopped_when_the_body_fails() -> None:
    async def body() -> None:
        async with BleScanner(scanner_factory=FakeScanner):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(body())
    assert FakeScanner.instances[-1].stopped


def test_real_scanner_is_passive_with_bthome_patterns() -> None:
    """The production factory builds a passive bleak scanner (not started: no radio here)."""
    scanner = _bleak_scanner(lambda _d, _a: None, None)
    backend = scanner._backend  # type: ignore[attr-defined]
    assert type(scanner).__name__ == "BleakScanner"
    assert "BlueZ" in type(backend).__name__
