"""Zigbee2MQTT on the home's local broker: paho-mqtt messages -> an asyncio queue, nothing more.

The gateway keeps a persistent MQTT v5 session (fixed client id, `clean_start=False`, a long
session expiry) subscribed to `zigbee2mqtt/#` at QoS 1 with **manual acks**: the broker keeps
every QoS 1 message until the pipeline calls `message.ack()`, which it does only once the
message's effects are durable. Messages published while the gateway restarts, and messages it
received but had not acknowledged when it died, are delivered again.

    url = parse_broker_url("mqtt://127.0.0.1:1883")
    async with Zigbee2MqttAdapter(url, "veille-h-0001") as z2m:
        async for msg in z2m.messages():
            ...            # decode, detect, write durably
            msg.ack()

The connection is a `cloud_bridge.broker.MqttLink`, the one MQTT runtime: its own network
thread (the only one that writes to the socket), reconnecting with `backoff_delay`; each
message crosses to asyncio with `loop.call_soon_threadsafe`.

Mosquitto drops what goes over its queue limits without telling the client, so the adapter
also reads the broker's `$SYS/broker/publish/messages/dropped` counter and logs an error
when it is above zero or grows (`dropped`): lost events are at least said.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from cloud_bridge.broker import (
    KEEPALIVE_S,
    BrokerUrl,
    Credentials,
    MqttLink,
    backoff_delay,
    mqtt,
)
from cloud_bridge.errors import ConfigError, VeilleError
from edge.runtime.clock import Clock, GatewayClock

_LOGGER = logging.getLogger(__name__)

SUBSCRIPTION = "zigbee2mqtt/#"
PERMIT_JOIN_TOPIC = "zigbee2mqtt/bridge/request/permit_join"
DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"  # Mosquitto's counter since it started
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our session and queue through a week offline
RECEIVE_MAXIMUM = 200  # unacknowledged QoS 1 messages the broker may have in flight to us
PUBLISH_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
PERMIT_JOIN_MAX_S = 254  # Zigbee's longest permit-join window


class LocalBrokerError(VeilleError):
    """A request to the home's local broker that could not be done."""


@dataclass(eq=False, slots=True)
class LocalMessage:
    """One message from the local broker; call `ack()` once its effects are durable."""

    topic: str
    payload: bytes
    received_at: float  # on the gateway clock's time basis
    retain: bool
    qos: int
    mid: int
    _ack: Callable[[LocalMessage], None] = field(repr=False)
    generation: int = 0  # which connection delivered it
    acked: bool = False

    def ack(self) -> None:
        """Tell the broker it may forget this message (PUBACK). Idempotent; QoS 0: no-op."""
        if not self.acked:
            self.acked = True
            self._ack(self)


class Zigbee2MqttAdapter:
    """Async context manager over one persistent paho session on the local broker."""

    def __init__(
        self,
        url: BrokerUrl,
        client_id: str,
        *,
        credentials: Credentials | None = None,
        subscription: str = SUBSCRIPTION,
        clock: Clock | None = None,
        session_expiry_s: int = SESSION_EXPIRY_S,
        keepalive_s: int = KEEPALIVE_S,
        backoff: Callable[[int], float] = backoff_delay,
    ) -> None:
        if not client_id:
            raise ConfigError("the local broker session needs a fixed client id")
        self.broker = url
        self.client_id = client_id
        self._subscription = subscription
        self._clock = clock or GatewayClock()
        self.ready = asyncio.Event()  # subscribed on the current connection
        self.dropped = 0  # messages the broker says it dropped since it started
        self._dropped_seen: int | None = None
        self._queue: asyncio.Queue[LocalMessage] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._generation = 0  # which connection is current: acks only go back on it
        self._connected = False  # set once `_generation` names the current connection
        self._link = MqttLink(
            self.broker,
            client_id,
            credentials=credentials,
            clean_start=False,  # a persistent session, in MQTT 3.1.1 too
            session_expiry_s=session_expiry_s,
            receive_maximum=RECEIVE_MAXIMUM,
            keepalive_s=keepalive_s,
            backoff=backoff,
            manual_ack=True,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_message=self._on_message,
            on_subscribe=self._on_subscribe,
            name=f"mqtt-local-{client_id}",
        )

    @property
    def connects(self) -> int:
        """Successful connections, for health and tests."""
        return self._link.connects

    # -- asyncio side ------------------------------------------------------------------

    async def __aenter__(self) -> Zigbee2MqttAdapter:
        self._loop = asyncio.get_running_loop()
        self._link.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Disconnect cleanly (the session and unacknowledged messages stay on the broker)."""
        await asyncio.to_thread(self._link.stop, STOP_TIMEOUT_S)
        self.ready.clear()

    async def messages(self) -> AsyncIterator[LocalMessage]:
        """Messages in the order the broker delivered them."""
        while True:
            yield await self._queue.get()

    async def wait_ready(self, timeout_s: float) -> None:
        """Wait until subscribed; raise LocalBrokerError after `timeout_s`."""
        try:
            await asyncio.wait_for(self.ready.wait(), timeout_s)
        except TimeoutError as exc:
            raise LocalBrokerError(
                f"not subscribed to {self.broker.host}:{self.broker.port} after {timeout_s} s"
            ) from exc

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        """Publish to the local broker and wait for its PUBACK (QoS 1)."""
        info = self._link.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise LocalBrokerError(f"cannot publish to {topic}: {mqtt.error_string(info.rc)}")
        try:
            await asyncio.to_thread(info.wait_for_publish, timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise LocalBrokerError(f"cannot publish to {topic}: {exc}") from exc
        if not info.is_published():
            raise LocalBrokerError(f"no acknowledgement for {topic} within {timeout_s} s")

    async def permit_join(self, seconds: int = PERMIT_JOIN_MAX_S) -> None:
        """Ask Zigbee2MQTT to let new devices join for `seconds` (0 closes the network)."""
        seconds = max(0, min(int(seconds), PERMIT_JOIN_MAX_S))
        await self.publish(PERMIT_JOIN_TOPIC, json.dumps({"time": seconds}))

    def _ack(self, msg: LocalMessage) -> None:
        """Send the PUBACK, only on the connection that delivered the message."""
        if msg.qos == 0:
            return
        if msg.generation != self._generation or not self._connected:
            # The broker will deliver it again on the new connection; that copy gets acked.
            _LOGGER.debug("ack of %s (mid %d) skipped: its connection is gone", msg.topic, msg.mid)
            return
        rc = self._link.client.ack(msg.mid, msg.qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            _LOGGER.debug("ack of mid %d not sent: %s", msg.mid, mqtt.error_string(rc))

    def _to_loop(self, func: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(func, *args)
        except RuntimeError:  # the loop closed while we were handing over
            _LOGGER.debug("event loop closed; message left to the broker's redelivery")

    # -- the network thread --------------------------------------------------------------

    def _on_connect(self) -> None:
        self._generation += 1
        self._connected = True
        _LOGGER.info(
            "connected to local broker %s:%d as %s (session present: %s)",
            self.broker.host,
            self.broker.port,
            self.client_id,
            self._link.session_present,
        )
        self._link.client.subscribe([(self._subscription, 1), (DROPPED_TOPIC, 0)])

    def _on_subscribe(self, reasons: list[Any]) -> None:
        if not reasons or reasons[0].is_failure:
            _LOGGER.error("local broker refused subscription %s: %s", self._subscription, reasons)
            return
        if len(reasons) > 1 and reasons[1].is_failure:
            _LOGGER.warning("local broker: cannot watch %s (%s)", DROPPED_TOPIC, reasons[1])
        self._to_loop(self.ready.set)

    def _on_dropped(self, msg: mqtt.MQTTMessage) -> None:
        """The broker's count of dropped messages: an error line when it is new or grows."""
        try:
            count = int(bytes(msg.payload))
        except ValueError:
            _LOGGER.debug("local broker: unreadable %s: %r", DROPPED_TOPIC, msg.payload[:40])
            return
        seen, self._dropped_seen = self._dropped_seen, count
        self.dropped = count
        if seen is None or count < seen:  # first reading, or the broker restarted
            if count > 0:
                _LOGGER.error(
                    "the local broker has dropped %d messages since it started (queue full "
                    "while the gateway was away? see max_queued_bytes in local.conf): "
                    "sensor events may be lost",
                    count,
                )
        elif count > seen:
            _LOGGER.error(
                "the local broker dropped %d more messages (%d since it started): "
                "sensor events may be lost",
                count - seen,
                count,
            )

    def _on_disconnect(self) -> None:
        self._connected = False
        self._to_loop(self.ready.clear)

    def _on_message(self, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == DROPPED_TOPIC:
            self._on_dropped(msg)
            return
        item = LocalMessage(
            topic=msg.topic,
            payload=bytes(msg.payload),
            received_at=self._clock.now(),
            retain=bool(msg.retain),
            qos=int(msg.qos),
            mid=int(msg.mid),
            _ack=self._ack,
            generation=self._generation,
        )
        self._to_loop(self._queue.put_nowait, item)
