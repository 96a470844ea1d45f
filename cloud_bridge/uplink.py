"""The uplink: drain the outbox to the hub broker; aggregates go on PUBACK, alerts on receipt.

Alerts go before aggregates (the outbox orders them). Up to `window` messages are in flight
at once, so a week's backlog drains in seconds. An aggregate's row is deleted on the hub
broker's PUBACK. An alert's row stays until the hub's `veille.receipt/1` says it is in the
hub's store (a PUBACK only says the broker has it; reason 0x10, no subscriber, not even
that): until then it is sent again, `resend_delay(tries)` apart (at most
`RESEND_MAX_S`), without end. A retained `status` says the gateway is online; the Last Will
(and a clean stop) says it is not. Acks from the hub come back on the home's `ack` topic and
are handed to the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cloud_bridge.broker import (
    BrokerUrl,
    Credentials,
    MqttLink,
    backoff_delay,
    mqtt,  # paho's names, through the one MQTT runtime
)
from cloud_bridge.contract import (
    ContractError,
    ack_topic,
    encode,
    iso_utc,
    receipt_topic,
    status_topic,
    validate_message,
)
from cloud_bridge.errors import StorageError

_LOGGER = logging.getLogger(__name__)

INFLIGHT_WINDOW = 100
STATUS_INTERVAL_S = 300.0
STOP_FLUSH_S = 3.0
ACK_RETRY_S = 1.0  # a delete of delivered rows that failed (disk full) is tried again
# An alert without its receipt is sent again after 2.5-5 s, then 5-10, 10-20, 20-40, then
# 30-60 s apart for ever. A stored alert's receipt is back in milliseconds, so 5 s without
# one means the hub did not store it; the 60 s cap (DESIGN.md) bounds what a fleet resends
# while a receiver is down (one copy of each waiting alert a minute at most).
RESEND_BASE_S = 5.0
RESEND_MAX_S = 60.0


def resend_delay(
    tries: int,
    *,
    base_s: float = RESEND_BASE_S,
    max_s: float = RESEND_MAX_S,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before sending again an alert sent `tries` times without a receipt."""
    return backoff_delay(max(tries - 1, 0), base_s=base_s, max_s=max_s, rand=rand)


class OutboxLike(Protocol):
    def next_batch(self, limit: int, exclude: Any = ()) -> list[Any]: ...
    def ack_many(self, seqs: Any, at: float) -> None: ...
    def confirm(self, entries: Any, at: float) -> list[int]: ...


class Uplink:
    """Keeps one MQTT connection to the hub and drains the outbox through it."""

    def __init__(
        self,
        url: BrokerUrl,
        home_id: str,
        outbox: OutboxLike,
        *,
        now: Callable[[], float],
        credentials: Credentials | None = None,
        status: Callable[[], Mapping[str, Any]] = dict,
        on_ack: Callable[[dict[str, Any]], None] | None = None,
        window: int = INFLIGHT_WINDOW,
        client_id: str | None = None,
        resend_base_s: float = RESEND_BASE_S,
        resend_max_s: float = RESEND_MAX_S,
    ) -> None:
        self.home_id = home_id
        self.outbox = outbox
        self.window = window
        self._resend = (resend_base_s, resend_max_s)
        self._now = now
        self._status = status
        self._on_ack = on_ack
        self._inflight: dict[int, tuple[int, int]] = {}  # paho mid -> (outbox seq, priority)
        self._acked: list[int] = []  # PUBACKed aggregate seqs not yet deleted from the outbox
        self._deleting: asyncio.Task[None] | None = None  # the delete of `_acked` under way
        self.refused: set[int] = set()  # seqs the broker refused on this connection
        self._waiting: dict[int, float] = {}  # alert seq sent, no receipt -> resend (monotonic)
        self._tries: dict[int, int] = {}  # alert seq -> times sent without a receipt
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self.delivered = 0
        self.resent = 0  # alert messages sent again for want of a receipt
        self.receipts = 0
        offline = encode({"schema": "veille.status/1", "home_id": home_id, "online": False})
        self.link = MqttLink(
            url,
            client_id or f"veille-gw-{home_id}",
            credentials=credentials,
            will=(status_topic(home_id), offline, 1, True),
            on_connect=self._connected,
            on_disconnect=self._disconnected,
            on_message=self._message,
            on_publish=self._puback,
            name="uplink",
        )

    @property
    def connected(self) -> bool:
        return self.link.connected.is_set()

    def wake(self) -> None:
        """New rows are in the outbox."""
        self._wake.set()

    # --- callbacks: network thread -> event loop, nothing else -------------------------
    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _connected(self) -> None:
        self.link.client.subscribe([(ack_topic(self.home_id), 1), (receipt_topic(self.home_id), 1)])
        self._call(self._on_up)

    def _disconnected(self) -> None:
        self._call(self._on_down)

    def _puback(self, mid: int, refused: bool) -> None:
        self._call(self._on_puback, mid, refused)

    def _message(self, msg: mqtt.MQTTMessage) -> None:
        try:
            _leaf, payload = validate_message(msg.topic, msg.payload)
        except ContractError as exc:
            _LOGGER.warning("uplink: bad message on %s: %s", msg.topic, exc)
            return
        if payload.get("home_id") != self.home_id:
            return
        if _leaf == "receipt":
            self._call(self._on_receipt, payload)
        elif _leaf == "ack" and self._on_ack is not None:
            self._call(self._on_ack, payload)

    # --- event loop side -----------------------------------------------------------------
    def _on_up(self) -> None:
        self._inflight.clear()
        self.refused.clear()
        self._waiting.clear()  # a receipt may have been lost with the link: send them again
        self._up.set()
        self._wake.set()
        self.publish_status()

    def _on_down(self) -> None:
        self._up.clear()
        self._inflight.clear()  # unacked messages stay in the outbox and are sent again

    def _on_puback(self, mid: int, refused: bool = False) -> None:
        sent = self._inflight.pop(mid, None)
        if sent is None:
            return  # a status message, or one from before a reconnect
        seq, priority = sent
        if refused:
            # the hub broker would not take it (ACL: wrong certificate for this home?): keep
            # the row, do not send it again on this connection, and say so loudly
            if seq not in self.refused:
                _LOGGER.error(
                    "uplink: the hub broker refused outbox message %d; kept for a later retry",
                    seq,
                )
            self.refused.add(seq)
            return
        if priority == 0:
            # an alert is delivered when its receipt comes, not now: send it again later
            tries = self._tries.get(seq, 0) + 1
            self._tries[seq] = tries
            delay = resend_delay(tries, base_s=self._resend[0], max_s=self._resend[1])
            self._waiting[seq] = time.monotonic() + delay
            assert self._loop is not None
            self._loop.call_later(delay, self._wake.set)
            return
        if not self._acked:
            assert self._loop is not None
            self._loop.call_soon(self._flush_acks)  # after the PUBACKs already queued
        self._acked.append(seq)

    def _flush_acks(self) -> None:
        """Delete every PUBACKed row in one transaction (one fsync, not one per message),
        in a worker thread: the event loop does not wait for the disk.

        The rows stay in `_acked` until deleted, so they are not sent again meanwhile; those
        PUBACKed during the delete go in the next one. If the delete fails (a full disk:
        even a delete needs room in the WAL), they stay listed and the delete is retried.
        """
        if not self._acked or self._deleting is not None:
            return
        assert self._loop is not None
        self._deleting = self._loop.create_task(self._delete_acked(list(self._acked)))

    async def _delete_acked(self, batch: list[int]) -> None:
        assert self._loop is not None
        try:
            await asyncio.to_thread(self.outbox.ack_many, batch, self._now())
        except StorageError as exc:
            _LOGGER.error("uplink: %d delivered rows not deleted yet: %s", len(self._acked), exc)
            self._loop.call_later(ACK_RETRY_S, self._flush_acks)
            return
        finally:
            self._deleting = None
        del self._acked[: len(batch)]  # PUBACKs that came meanwhile were appended after
        self.delivered += len(batch)
        if self._acked:
            self._loop.call_soon(self._flush_acks)
        self._wake.set()

    def _on_receipt(self, receipt: Mapping[str, Any]) -> None:
        """The hub stored these alert messages: delete their rows, log their delivery."""
        entries: list[tuple[str, str | None, str | None]]
        if "alerts" in receipt:
            entries = [(a["id"], a["state"], a["severity"]) for a in receipt["alerts"]]
        else:
            entries = [(alert_id, None, None) for alert_id in receipt["ids"]]
        try:
            seqs = self.outbox.confirm(entries, self._now())
        except StorageError as exc:
            # the alert is sent again, and the hub answers again
            _LOGGER.error("uplink: receipt not recorded yet: %s", exc)
            return
        self.receipts += 1
        for seq in seqs:
            self._waiting.pop(seq, None)
            self._tries.pop(seq, None)
        self.delivered += len(seqs)
        if seqs:
            self._wake.set()

    def waiting_receipts(self) -> int:
        """Alert messages sent and not yet confirmed by a receipt."""
        return len(self._tries)

    def publish_status(self, online: bool = True) -> mqtt.MQTTMessageInfo | None:
        if not self.connected:
            return None

        payload = {
            "schema": "veille.status/1",
            "home_id": self.home_id,
            "online": online,
            "at": iso_utc(self._now()),
            **self._status(),
        }
        return self.link.client.publish(status_topic(self.home_id), encode(payload), 1, retain=True)

    def _fill_window(self) -> int:
        """Publish outbox rows up to the in-flight window; returns how many went out."""
        free = self.window - len(self._inflight)
        if free <= 0 or not self.link.connected.is_set():
            return 0
        # not again: what is in flight, what was PUBACKed but not yet deleted, what was
        # refused, and alerts waiting for their receipt until their resend time
        now = time.monotonic()
        for seq in [s for s, due in self._waiting.items() if due <= now]:
            del self._waiting[seq]
        busy = {seq for seq, _p in self._inflight.values()}
        busy |= set(self._acked) | self.refused | set(self._waiting)
        sent = 0
        for item in self.outbox.next_batch(free, exclude=busy):
            info = self.link.client.publish(item.topic, item.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # the link just dropped: wait for the reconnect instead of spinning (paho
                # would also queue every retried copy and send them all once back)
                _LOGGER.debug("uplink: publish failed rc=%s; waiting for reconnect", info.rc)
                if self.link.connected.is_set():  # not a lost link: try again in a second
                    assert self._loop is not None
                    self._loop.call_later(1.0, self._wake.set)
                else:
                    self._up.clear()
                break
            self._inflight[info.mid] = (item.seq, item.priority)
            if item.priority == 0 and item.seq in self._tries:
                self.resent += 1
                _LOGGER.info(
                    "uplink: alert message %d sent again (try %d): no receipt yet",
                    item.seq,
                    self._tries[item.seq] + 1,
                )
            sent += 1
        return sent

    async def run(self) -> None:
        """Connect and drain until cancelled."""
        self._loop = asyncio.get_running_loop()
        self.link.start()
        try:
            while True:
                await self._up.wait()
                self._wake.clear()
                sent = self._fill_window()
                await asyncio.sleep(0)  # never starve the loop, whatever the outbox holds
                if sent == 0 and self._up.is_set():
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
                    # that arrives as the event is set, and the uplink would never stop
                    try:
                        async with asyncio.timeout(STATUS_INTERVAL_S):
                            await self._wake.wait()
                    except TimeoutError:
                        self.publish_status()
        finally:
            await self.close()

    async def close(self) -> None:
        """Clean stop: finish a delete of delivered rows, say offline (retained), flush,
        disconnect."""
        if self._deleting is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._deleting)
        if self.connected:
            info = self.publish_status(online=False)
            if info is not None:
                await asyncio.to_thread(info.wait_for_publish, STOP_FLUSH_S)
        await asyncio.to_thread(self.link.stop)
