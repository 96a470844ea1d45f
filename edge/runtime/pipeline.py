"""The async shell around `HomeCore`: adapters in, outbox and uplink out, one event loop.

Every batch of inputs is processed, its alerts and aggregates committed to the outbox in one
transaction, and only then are the local broker's messages acknowledged (manual ack): a
crash in between makes the broker deliver them again instead of losing them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cloud_bridge.contract import aggregate_topic, alert_topic, encode
from cloud_bridge.errors import StorageError
from cloud_bridge.uplink import Uplink
from edge.events import CheckIn, Event
from edge.runtime.clock import Clock
from edge.runtime.core import HomeCore, Outputs
from edge.storage.outbox import Outbox
from edge.storage.registry import Registry

_LOGGER = logging.getLogger(__name__)

TICK_S = 1.0  # real seconds between detector clock ticks
PERSIST_S = 60.0  # real seconds between saves of learned state
BATCH_MAX = 500


class LocalMessage(Protocol):
    """A local broker message (`edge.adapters.zigbee.LocalMessage`)."""

    topic: str
    payload: bytes
    received_at: float  # on the clock's time basis
    retain: bool

    def ack(self) -> None: ...


@dataclass(frozen=True, slots=True)
class BleAdvert:
    address: str
    service_data: dict[str, bytes]
    rssi: float
    name: str | None = None  # the advertised local name: the installer's "heard nearby" list


@dataclass(frozen=True, slots=True)
class WearableBytes:
    device_id: str
    data: bytes
    received_at: float  # when the link delivered the notification (the clock's time basis)


@dataclass(frozen=True, slots=True)
class HubAck:
    """Care staff acknowledged or resolved an alert (the uplink's ack topic)."""

    payload: dict[str, Any]


Input = LocalMessage | BleAdvert | WearableBytes | Event | HubAck


def received_at(item: Input, now: float) -> float:
    """When the adapter received `item`, where it says so; never later than `now`."""
    if isinstance(item, BleAdvert | Event | HubAck):
        return now
    return min(item.received_at, now)


def shifted(out: Outputs, offset_s: float) -> Outputs:
    """The same outputs with their times moved by `offset_s` (for the wire only)."""
    return Outputs(
        alerts=[
            dataclasses.replace(a, at=a.at + offset_s, raised_at=a.raised_at + offset_s)
            for a in out.alerts
        ],
        aggregates=[
            dataclasses.replace(
                a, period_start=a.period_start + offset_s, period_end=a.period_end + offset_s
            )
            for a in out.aggregates
        ],
    )


@dataclass
class Pipeline:
    core: HomeCore
    outbox: Outbox
    clock: Clock
    registry: Registry | None = None  # for learned state
    uplink: Uplink | None = None
    tick_s: float = TICK_S
    on_outputs: Callable[[Outputs], None] | None = None
    inbox: asyncio.Queue[Input] = field(default_factory=asyncio.Queue)
    processed: int = 0
    _unsaved: Outputs = field(default_factory=Outputs)  # refused by a full disk, retried
    _commit_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wire_offset_s: float = 0.0  # added to times sent upstream after an NTP step (gateway.py)
    # asks the resident (prompt devices, speaker) for each check-in; never the hub
    prompter: Callable[[list[CheckIn]], None] | None = None

    # --- sources -------------------------------------------------------------------------
    async def pump(self, source: AsyncIterator[Any]) -> None:
        """Move items from an adapter's async iterator into the inbox."""
        async for item in source:
            self.inbox.put_nowait(item)

    # --- processing ----------------------------------------------------------------------
    def handle(self, item: Input, at: float) -> Outputs:
        core = self.core
        try:
            if isinstance(item, BleAdvert):
                return core.ble_advert(item.address, item.service_data, item.rssi, at, item.name)
            if isinstance(item, WearableBytes):
                return core.wearable_frame(item.device_id, item.data, at)
            if isinstance(item, Event):  # already normalized (the wearable's battery)
                return core.event(item)
            if isinstance(item, HubAck):
                return core.hub_ack(item.payload)
            return core.zigbee_message(item.topic, bytes(item.payload), at, bool(item.retain))
        except Exception:  # one bad input must never stop the gateway
            _LOGGER.exception("dropped an input that broke a detector: %r", item)
            return Outputs()

    async def commit(self, out: Outputs) -> bool:
        """Write outputs durably (one transaction), update state, wake the uplink.

        The SQLite commit (`synchronous=FULL`: an fsync) runs in a worker thread, so the
        event loop keeps serving adapters and pages meanwhile; commits run one at a time, in
        the order asked. What is written is taken from the core before, on the loop.

        If the storage refuses even an alert (disk full beyond what dropping aggregates
        frees), the alerts stay in memory and are tried again at every commit (the batch's
        aggregates are dropped, as the disk budget drops them), the health says `error`,
        and False tells the caller not to acknowledge the inputs: the local broker keeps
        them. The gateway keeps running rather than crash-looping.
        """
        async with self._commit_lock:
            return await self._commit(out)

    async def _commit(self, out: Outputs) -> bool:
        if out.check_ins and self.prompter is not None:
            try:
                self.prompter(out.check_ins)
            except Exception:  # a prompt device's trouble must not stop the alerts
                _LOGGER.exception("cannot prompt the resident for a check-in")
        if self._unsaved:
            out = Outputs(self._unsaved.alerts + out.alerts, out.aggregates)
            self._unsaved = Outputs()
        saved = True
        if out:
            rows = self._rows(out)
            try:
                await asyncio.to_thread(self.outbox.put, **rows)
            except StorageError as exc:
                # the outbox already dropped this batch's aggregates (counted as dropped,
                # as the disk budget does); the alerts are kept here and tried again
                _LOGGER.error(
                    "cannot store %d alert(s) yet, kept in memory: %s", len(out.alerts), exc
                )
                self._unsaved = Outputs(alerts=out.alerts)
                if self.on_outputs is not None and out.aggregates:
                    self.on_outputs(Outputs(aggregates=out.aggregates))
                saved = False
            else:
                if self.uplink is not None:
                    self.uplink.wake()
                if self.on_outputs is not None:
                    self.on_outputs(out)
        counts, health = await asyncio.to_thread(self._outbox_state)
        self.core.state.outbox = counts
        self.core.state.storage_health = "error" if self._unsaved else health
        return saved

    def _outbox_state(self) -> tuple[dict[str, int], str]:
        return self.outbox.counts(), self.outbox.health()

    def _rows(self, out: Outputs) -> dict[str, Any]:
        """`Outbox.put`'s arguments for `out`, read from the core on the event loop."""
        home = self.core.profile.id
        if self.wire_offset_s:
            out = shifted(out, self.wire_offset_s)
        return {
            "alerts": [(a, alert_topic(home)) for a in out.alerts],
            "aggregates": [
                (aggregate_topic(home, a.period), encode(a.to_wire(home)))
                for a in out.aggregates
            ],
            # the book's open alerts in the same transaction as their rows: a crash in
            # between would let the redelivered input raise the same alert again
            "docs": {"alert_book": self.core.book.state_dict()} if out.alerts else None,
        }

    async def process_inbox(self) -> None:
        while True:
            first = await self.inbox.get()
            batch = [first]
            while len(batch) < BATCH_MAX and not self.inbox.empty():
                batch.append(self.inbox.get_nowait())
            out = Outputs()
            now = self.clock.now()
            for item in batch:
                out.extend(self.handle(item, received_at(item, now)))
            if not await self.commit(out):
                continue  # not durable: the local broker keeps these inputs unacknowledged
            for item in batch:
                if not isinstance(item, BleAdvert | WearableBytes | Event | HubAck):
                    item.ack()
            self.processed += len(batch)

    def ack_from_hub(self, payload: dict[str, Any]) -> None:
        """Queued with the other inputs: handled and committed in order, off the caller."""
        self.inbox.put_nowait(HubAck(payload))

    async def ticker(self) -> None:
        while True:
            if self.inbox.empty():  # inputs first: time must not pass over queued events
                await self.commit(self.core.tick(self.clock.now()))
            await asyncio.sleep(self.tick_s)

    async def persister(self) -> None:
        while True:
            await asyncio.sleep(PERSIST_S)
            self.save_docs()

    def save_docs(self) -> None:
        if self.registry is None:
            return
        for name, doc in self.core.docs().items():
            try:
                self.registry.put_doc(name, doc)
            except OSError as exc:
                _LOGGER.error("cannot save %s to the registry: %s", name, exc)

    async def run(self, *sources: AsyncIterator[Any]) -> None:
        """Run until cancelled; learned state is saved on the way out."""
        try:
            async with asyncio.TaskGroup() as tg:
                for i, source in enumerate(sources):
                    tg.create_task(self.pump(source), name=f"source-{i}")
                tg.create_task(self.process_inbox(), name="process")
                tg.create_task(self.ticker(), name="ticker")
                tg.create_task(self.persister(), name="persister")
                if self.uplink is not None:
                    tg.create_task(self.uplink.run(), name="uplink")
        finally:
            with contextlib.suppress(Exception):
                self.save_docs()
