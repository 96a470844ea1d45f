"""A real fall trace through the live gateway to a real hub broker: cancel and no-cancel.

The gateway runs in-process (the BLE radio is the only fake: wearable frame bytes are handed
to the pipeline where bleak would) on a clock the test moves, against real Mosquitto brokers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from cloud_bridge.broker import parse_broker_url
from edge.decode.wearable import encode_button
from edge.events import Role, RoomKind
from edge.home import Device, HomeProfile, Room
from edge.runtime.clock import FakeClock
from edge.runtime.gateway import Gateway, GatewaySettings
from edge.runtime.pipeline import WearableBytes
from edge.sim.wearable import encode_frames
from edge.storage.registry import Registry
from tests.conftest import FALLS_NPZ
from tests.support import Collector, Mosquitto

pytestmark = pytest.mark.broker

HOME = "h-fall-1"
FRAME = 25  # samples per GATT frame, 0.5 s at 50 Hz


def fall_trace() -> np.ndarray:
    """The first elderly fall trial of the shared data, then 40 s lying still."""
    z = np.load(FALLS_NPZ)
    i = int(np.flatnonzero(z["is_fall"] & (z["age_group"] == "elderly"))[0])
    trace = z["acc_mg"][z["offsets"][i] : z["offsets"][i + 1]]
    still = np.repeat(trace[-1:], 40 * 50, axis=0)
    return np.concatenate([trace, still]).astype(np.int16)


def provision(storage: Path) -> None:
    registry = Registry(storage)
    registry.save_profile(
        HomeProfile(
            HOME,
            rooms=(Room("salon", RoomKind.LIVING),),
            devices=(Device("belt", "wearable", "C0:11:22:33:44:55", "salon", Role.WEARABLE),),
        )
    )
    registry.set_secret("family_pin", "2468")
    registry.set_secret("installer", "pose-2024")
    registry.close()


async def stream_fall(tmp_path: Path, local: Mosquitto, hub: Mosquitto, cancel: bool) -> None:
    provision(tmp_path / "storage")
    clock = FakeClock(1_700_000_000.0)
    settings = GatewaySettings(
        home_id=HOME,
        local=parse_broker_url(local.url),
        hub=parse_broker_url(hub.url),
        storage=tmp_path / "storage",
        ble=False,
    )
    gateway = Gateway(settings, clock=clock)
    gateway.pipeline.tick_s = 0.02
    radio: asyncio.Queue[WearableBytes] = asyncio.Queue()

    async def radio_source():  # type: ignore[no-untyped-def]
        while True:
            yield await radio.get()

    stop = asyncio.Event()
    task = asyncio.create_task(gateway.run(stop, (radio_source(),)))
    while not gateway.state.ready:
        await asyncio.sleep(0.02)
    sent = 0

    async def received(data: bytes) -> None:
        """One notification, dated when received; simulated time moves on once it is handled
        (frames carry their reception time, so a lagging pipeline would date nothing late)."""
        nonlocal sent
        radio.put_nowait(WearableBytes("belt", data, clock.now()))
        sent += 1
        while gateway.pipeline.processed < sent:
            await asyncio.sleep(0.001)

    for frame in encode_frames(fall_trace(), per_frame=FRAME):
        clock.advance(FRAME / 50)
        await received(frame)
        if cancel and gateway.core._wearables["belt"].pending:
            clock.advance(5.0)  # the wearer presses "I'm fine" a few seconds later
            await received(encode_button(1, "single"))
            cancel = False
    while not radio.empty():
        await asyncio.sleep(0.01)
    clock.advance(60.0)  # well past the confirmation window
    await asyncio.sleep(1.0)
    stop.set()
    await task


@pytest.mark.parametrize("cancel", [False, True])
def test_fall_states_at_the_hub(
    tmp_path: Path, local_broker: Mosquitto, hub_broker: Mosquitto, cancel: bool
) -> None:
    collector = Collector(hub_broker.port, f"veille/v1/{HOME}/alert")
    asyncio.run(stream_fall(tmp_path, local_broker, hub_broker, cancel))
    alerts = [json.loads(p) for _t, p, _r in collector.drain(1.0)]
    collector.close()
    falls = [a for a in alerts if a["type"] == "fall"]
    assert len(falls) == 1, alerts
    fall = falls[0]
    if cancel:
        assert fall["state"] == "cancelled"
        assert fall["evidence"]["cancelled_by"] == "wearer"
    else:
        assert (fall["state"], fall["severity"]) == ("raised", "critical")
        assert fall["evidence"]["posture"] in {"lying", "reclined"}
        assert isinstance(fall["evidence"]["movement_resumed"], bool)
        assert fall["evidence"]["peak_g"] > 1.4
        assert fall["evidence"]["score"] >= 0.5
    assert fall["device_id"] == "belt"
    assert fall["room"] == "salon"
