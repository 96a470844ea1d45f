"""The pipeline shell on a real outbox file: what happens when storage refuses an alert."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.contract import AlertType, Severity
from cloud_bridge.errors import StorageError
from edge.events import Finding, Role, RoomKind
from edge.home import Device, HomeProfile, Room
from edge.runtime.clock import FakeClock
from edge.runtime.core import HomeCore
from edge.runtime.pipeline import Pipeline
from edge.storage.outbox import Outbox

T0 = 1_700_000_000.0
PROFILE = HomeProfile(
    "h-pipe-1",
    rooms=(Room("entrée", RoomKind.ENTRANCE),),
    devices=(
        Device("sos", "zigbee2mqtt", "0x00158d0000000001", "entrée", Role.SOS_BUTTON, "btn"),
    ),
)


class Press:
    """A local broker message with the ack the adapter would give it."""

    topic = "zigbee2mqtt/btn"
    payload = b'{"action":"single"}'
    received_at = T0
    retain = False

    def __init__(self) -> None:
        self.acked = False

    def ack(self) -> None:
        self.acked = True


def fill_with_alerts(outbox: Outbox) -> None:
    book = HomeCore(PROFILE, routine=False).book
    for i in range(10_000):
        [alert] = book.apply(Finding(f"k{i}", AlertType.SOS, Severity.CRITICAL, T0))
        outbox.put(alerts=[(alert, "veille/v1/h-pipe-1/alert")])


def test_an_alert_the_disk_refuses_stays_in_memory_unacked_then_is_stored(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    pipeline = Pipeline(HomeCore(PROFILE, routine=False), outbox, FakeClock(T0))
    pages = outbox._db.execute("PRAGMA page_count").fetchone()[0]
    outbox._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full ...
    with pytest.raises(StorageError):  # ... of alerts, nothing left to drop for them
        fill_with_alerts(outbox)
    stored = outbox.counts()["alerts"]
    press = Press()
    out = pipeline.handle(press, T0)
    assert [a.type for a in out.alerts] == ["sos"]
    assert asyncio.run(pipeline.commit(out)) is False
    assert pipeline.core.state.health() == "error"
    assert outbox.counts()["alerts"] == stored
    outbox._db.execute("PRAGMA max_page_count = 1000000")  # space again
    assert asyncio.run(pipeline.commit(pipeline.core.tick(T0 + 1))) is True
    assert outbox.counts()["alerts"] == stored + 1
    assert len(list(outbox.alarm_log())) == stored + 1
    assert pipeline.core.state.storage_health != "error"


class SlowDisk(Outbox):
    """A real outbox whose commits take as long as a slow SD card's fsync."""

    def put(self, *args: Any, **kwargs: Any) -> list[int]:
        time.sleep(0.3)
        return super().put(*args, **kwargs)


def test_an_outbox_commit_does_not_stop_the_event_loop(tmp_path: Path) -> None:
    """While an alert is written (synchronous=FULL), the loop keeps serving the rest."""
    outbox = SlowDisk(tmp_path / "outbox.db")
    pipeline = Pipeline(HomeCore(PROFILE, routine=False), outbox, FakeClock(T0))

    async def main() -> tuple[bool, int]:
        beats = 0

        async def heartbeat() -> None:
            nonlocal beats
            while True:
                beats += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(heartbeat())
        await asyncio.sleep(0)
        saved = await pipeline.commit(pipeline.handle(Press(), T0))
        task.cancel()
        return saved, beats

    saved, beats = asyncio.run(main())
    assert saved
    assert outbox.counts()["alerts"] == 1
    assert beats >= 10  # about 30 in 0.3 s; a blocked loop gives 1


def test_an_aggregate_leaves_the_core_whole_and_the_shell_only_encodes_it(
    tmp_path: Path,
) -> None:
    """The hourly aggregate carries the home's sensor health as of its hour's end, from the
    core itself; the outbox row is exactly its wire form (no call back into the core)."""
    core = HomeCore(PROFILE, routine=False)
    core.zigbee_message("zigbee2mqtt/btn", b'{"action":"single"}', T0 + 5, False)
    hour_end = (T0 // 3600 + 1) * 3600
    out = core.tick(hour_end + 1)
    [hourly] = [a for a in out.aggregates if a.period == "hourly"]
    assert hourly.body["sensor_health"] == core.sensor_health(hour_end + 1)
    outbox = Outbox(tmp_path / "outbox.db")
    pipeline = Pipeline(core, outbox, FakeClock(hour_end + 600))
    assert asyncio.run(pipeline.commit(out))
    row = next(i for i in outbox.next_batch(10) if i.priority == 1)
    assert json.loads(row.payload) == hourly.to_wire(PROFILE.id)
    outbox.close()
