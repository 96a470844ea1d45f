"""Zigbee2MQTT on the home's local broker: paho-mqtt messages -> an asyncio queue, nothing more.

The gateway keeps a persistent MQTT v5 session (fixed client id, `clean_start=False`, a long
session expiry) subscribed to `zigbee2mqtt/#` at QoS 1 with **manual acks**: the broker keeps
every QoS 1 message until the pipeline calls `message.ack()`, which it does only once the
message's effects are durable. Messages published while the gateway restarts, and messages it
received but had not acknowledged when it died, are delivered again.

    async with Zigbee2MqttAdapter("mqtt://127.0.0.1:1883", "veille-h-0001") as z2m:
        async for msg in z2m.messages():
            ...            # decode, detect, write durably
            msg.ack()

paho runs in one thread of ours (`client.loop()`), reconnecting with jittered backoff
(`backoff_delay`); each message crosses to asyncio with `loop.call_soon_threadsafe`.

Mosquitto drops what goes over its queue limits without telling the client, so the adapter
also reads the broker's `$SYS/broker/publish/messages/dropped` counter and logs an error
when it is above zero or grows (`dropped`): lost events are at least said.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_bridge.broker import (
    BrokerUrl,
    backoff_delay,
    parse_broker_url,
    write_on_network_thread,
)
from cloud_bridge.errors import ConfigError, VeilleError
from edge.runtime.clock import Clock, GatewayClock

_LOGGER = logging.getLogger(__name__)

SUBSCRIPTION = "zigbee2mqtt/#"
PERMIT_JOIN_TOPIC = "zigbee2mqtt/bridge/request/permit_join"
DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"  # Mosquitto's counter since it started
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our session and queue through a week offline
KEEPALIVE_S = 30
RECEIVE_MAXIMUM = 200  # unacknowledged QoS 1 messages the broker may have in flight to us
LOOP_TIMEOUT_S = 0.2  # paho network loop tick: how fast a stop request is seen
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
        url: str | BrokerUrl,
        client_id: str,
        *,
        subscription: str = SUBSCRIPTION,
        clock: Clock | None = None,
        session_expiry_s: int = SESSION_EXPIRY_S,
        keepalive_s: int = KEEPALIVE_S,
        backoff: Callable[[int], float] = backoff_delay,
    ) -> None:
        if not client_id:
            raise ConfigError("the local broker session needs a fixed client id")
        self.broker = url if isinstance(url, BrokerUrl) else parse_broker_url(url)
        self.client_id = client_id
        self._subscription = subscription
        self._clock = clock or GatewayClock()
        self._session_expiry_s = session_expiry_s
        self._keepalive_s = keepalive_s
        self._backoff = backoff
        self.ready = asyncio.Event()  # subscribed on the current connection
        self.connects = 0  # successful connections, for health and tests
        self.dropped = 0  # messages the broker says it dropped since it started
        self._dropped_seen: int | None = None
        self._queue: asyncio.Queue[LocalMessage] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._generation = 0
        self._connected = False
        self._client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        v5 = self.broker.version == 5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,  # 3.1.1: a persistent session too
            manual_ack=True,
        )
        write_on_network_thread(client)
        if self.broker.username is not None:
            client.username_pw_set(self.broker.username, self.broker.password)
        if self.broker.tls:
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.message_callback_add(DROPPED_TOPIC, self._on_dropped)
        return client

    # -- asyncio side ------------------------------------------------------------------

    async def __aenter__(self) -> Zigbee2MqttAdapter:
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"mqtt-local-{self.client_id}", daemon=True
        )
        self._thread.start()
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
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.join, STOP_TIMEOUT_S)
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
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
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
        rc = self._client.ack(msg.mid, msg.qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            _LOGGER.debug("ack of mid %d not sent: %s", msg.mid, mqtt.error_string(rc))

    def _to_loop(self, func: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(func, *args)
        except RuntimeError:  # the loop closed while we were handing over
            _LOGGER.debug("event loop closed; message left to the broker's redelivery")

    # -- paho thread -------------------------------------------------------------------

    def _run(self) -> None:
        """Connect, run paho's network loop, reconnect with jittered backoff, until stopped."""
        attempt = 0
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        while not self._stop.is_set():
            connects_before = self.connects
            try:
                if self.broker.version == 5:
                    self._client.connect(
                        self.broker.host,
                        self.broker.port,
                        keepalive=self._keepalive_s,
                        clean_start=False,
                        properties=props,
                    )
                else:
                    self._client.connect(
                        self.broker.host, self.broker.port, keepalive=self._keepalive_s
                    )
                rc = MQTTErrorCode.MQTT_ERR_SUCCESS
                while not self._stop.is_set() and rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                    rc = self._client.loop(timeout=LOOP_TIMEOUT_S)
            except (OSError, ValueError) as exc:
                _LOGGER.debug("local broker connect failed: %s", exc)
            if self._stop.is_set():
                break
            attempt = 0 if self.connects > connects_before else attempt + 1
            delay = self._backoff(attempt)
            _LOGGER.warning(
                "local broker %s:%d unreachable, retry %d in %.1f s",
                self.broker.host,
                self.broker.port,
                attempt,
                delay,
            )
            self._stop.wait(delay)
        self._shutdown()

    def _shutdown(self) -> None:
        if self._connected:
            self._client.disconnect()
            for _ in range(10):  # let paho write the DISCONNECT
                if self._client.loop(timeout=0.05) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        else:
            self._client.disconnect()  # closes a half-open socket if any
        self._connected = False

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            _LOGGER.warning("local broker refused the connection: %s", reason)
            return
        self._generation += 1
        self._connected = True
        self.connects += 1
        _LOGGER.info(
            "connected to local broker %s:%d as %s (session present: %s)",
            self.broker.host,
            self.broker.port,
            self.client_id,
            flags.session_present,
        )
        client.subscribe([(self._subscription, 1), (DROPPED_TOPIC, 0)])

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        if not reasons or reasons[0].is_failure:
            _LOGGER.error("local broker refused subscription %s: %s", self._subscription, reasons)
            return
        if len(reasons) > 1 and reasons[1].is_failure:
            _LOGGER.warning("local broker: cannot watch %s (%s)", DROPPED_TOPIC, reasons[1])
        self._to_loop(self.ready.set)

    def _on_dropped(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
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

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        was = self._connected
        self._connected = False
        self._to_loop(self.ready.clear)
        if was and not self._stop.is_set():
            _LOGGER.warning("disconnected from local broker: %s", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
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
