"""What the gateway's adapters hear reaches the pipeline whole: the BLE device's name and the
wearable frame's reception time are carried, not dropped and guessed again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edge.adapters.ble import BleScanner
from edge.runtime.clock import FakeClock
from edge.runtime.core import HomeCore
from edge.runtime.gateway import ble_inputs, wearable_inputs
from edge.runtime.pipeline import Pipeline
from edge.storage.outbox import Outbox
from tests.test_adapter_ble import FakeScanner, recorded
from tests.test_pipeline import PROFILE, T0


def _named_advert() -> tuple[str, bytes, int, str]:
    dev, adv = next((d, a) for d, a in recorded() if a.get("name"))
    return dev["address"], bytes.fromhex(adv["raw_adv"]), int(adv["rssi"]), adv["name"]


async def _run_until_processed(
    pipeline: Pipeline, source: AsyncIterator[Any], count: int
) -> None:
    pump = asyncio.create_task(pipeline.pump(source))
    process = asyncio.create_task(pipeline.process_inbox())
    try:
        for _ in range(200):
            if pipeline.processed >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("the pipeline did not process the inputs")
    finally:
        pump.cancel()
        process.cancel()


def test_a_nearby_ble_device_keeps_its_name_on_the_way_to_the_installer(tmp_path: Path) -> None:
    address, raw, rssi, name = _named_advert()
    assert name  # the recorded advert names itself

    async def main() -> HomeCore:
        core = HomeCore(PROFILE, routine=False)  # the device is not in this home: "nearby"
        pipeline = Pipeline(core, Outbox(tmp_path / "outbox.db"), FakeClock(T0))
        async with BleScanner(scanner_factory=FakeScanner) as scanner:
            FakeScanner.instances[-1].hear(address, raw, rssi)
            await _run_until_processed(pipeline, ble_inputs(scanner), 1)
        return core

    core = asyncio.run(main())
    heard = core.bthome.nearby[address.upper()]
    assert (heard.name, heard.rssi) == (name, rssi)


def test_a_wearable_frame_keeps_the_time_it_was_received(tmp_path: Path) -> None:
    """A frame received at T0+1 and processed at T0+5 is dated T0+1."""
    clock = FakeClock(T0 + 5.0)

    async def main() -> HomeCore:
        core = HomeCore(PROFILE, routine=False)  # not a wearable of this home: noted unknown
        pipeline = Pipeline(core, Outbox(tmp_path / "outbox.db"), clock)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        queue.put_nowait((b"\x01\x02\x03", T0 + 1.0))
        await _run_until_processed(pipeline, wearable_inputs("belt", queue), 1)
        return core

    core = asyncio.run(main())
    assert core.state.unknown["wearable:belt"].last_seen == T0 + 1.0
