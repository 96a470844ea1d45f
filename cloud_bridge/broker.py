"""The one MQTT runtime: URL parsing, TLS, and a network thread with jittered backoff.

Every link is an `MqttLink`: the uplink to the hub, the hub's receiver, the gateway's
Zigbee2MQTT session on the local broker and the demo's simulated Zigbee2MQTT. No other module
imports paho (tests/test_architecture.py checks it); the names of paho's that callers need
(`mqtt.MQTTMessage`, result codes) are reached through this module's `mqtt`.

The callbacks run on the connection's own thread; callers hand them over to asyncio with
`loop.call_soon_threadsafe` and do nothing else there.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_bridge.errors import ConfigError

_LOGGER = logging.getLogger(__name__)

KEEPALIVE_S = 30
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0  # the Zigbee adapter and the uplink; tests pass a smaller cap
LOOP_TIMEOUT_S = 0.05  # network loop tick: how soon a stop request or a queued write is seen
DISCONNECT_LOOPS = 10  # network loop ticks given to a DISCONNECT packet on stop

__all__ = [
    "BrokerUrl",
    "BrokerUrlError",
    "Credentials",
    "MqttLink",
    "backoff_delay",
    "mqtt",
    "parse_broker_url",
    "write_on_network_thread",
]


class BrokerUrlError(ConfigError):
    """A broker URL that is not mqtt:// or mqtts://[user[:password]@]host[:port]."""


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    version: int = 5  # MQTT 5; 4 = MQTT 3.1.1 for brokers without 5 (the demo's embedded one)

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """TLS files and/or username/password file: how a link logs in to its broker."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None

    def password(self) -> str | None:
        """The first line of `password_file`, read when needed; ConfigError if unreadable."""
        if self.password_file is None:
            return None
        try:
            lines = self.password_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.password_file}: cannot read the password: {exc}") from exc
        return lines[0] if lines else ""


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse a broker URL; BrokerUrlError (a ConfigError) with the reason."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port out of range or not a number, a broken [IPv6]
        raise BrokerUrlError(f"broker URL {url!r}: bad port or host ({exc})") from exc
    if parts.scheme not in ("mqtt", "mqtts"):
        raise BrokerUrlError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise BrokerUrlError(f"broker URL {url!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BrokerUrlError(f"broker URL {url!r}: unexpected path or query")
    tls = parts.scheme == "mqtts"
    return BrokerUrl(
        host=parts.hostname,
        port=port if port is not None else (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
    )


def backoff_delay(
    attempt: int,
    *,
    base_s: float = BACKOFF_BASE_S,
    max_s: float = BACKOFF_CAP_S,
    factor: float = 2.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds before retry `attempt` (0-based): "equal jitter", the project's one backoff.

    The ceiling grows by `factor` per attempt up to `max_s`; the delay is drawn in
    [ceiling/2, ceiling], so a fleet of gateways restarted together do not reconnect in step,
    and none spins (never below half the base). MQTT links, the uplink's resends and the
    wearable's BLE reconnects all use it.
    """
    ceiling = min(max_s, base_s * factor ** min(max(attempt, 0), 32))
    return ceiling / 2.0 + rand() * ceiling / 2.0


def write_on_network_thread(client: mqtt.Client) -> None:
    """Make the thread running `client.loop()` the only one that writes to the socket.

    Without `loop_start()`, paho writes a queued packet (publish, ack, disconnect) at once
    from the calling thread, concurrently with our network thread's `loop()`; the two can
    send one packet twice and drop the next one (a PUBACK lost this way makes the broker
    deliver the message again). With a socket-write callback registered, paho only queues
    the packet and wakes `select()`, and the network thread writes it.
    """
    client.on_socket_register_write = lambda _client, _userdata, _sock: None


def connect_properties(expiry_s: int, receive_maximum: int | None) -> Properties | None:
    """MQTT 5 CONNECT properties: session expiry and how many QoS 1 messages may be in flight."""
    if not expiry_s and receive_maximum is None:
        return None
    props = Properties(PacketTypes.CONNECT)
    if expiry_s:
        props.SessionExpiryInterval = expiry_s
    if receive_maximum is not None:
        props.ReceiveMaximum = receive_maximum
    return props


class MqttLink:
    """One paho client kept connected by a dedicated thread.

    `clean_start=False` with `session_expiry_s > 0` keeps a persistent session: the broker
    queues QoS 1 messages for us while we are away and redelivers unacknowledged ones.
    `session_present` says whether the broker had kept it at the last connection. A link can
    be started again after `stop`.
    """

    def __init__(
        self,
        url: BrokerUrl,
        client_id: str,
        *,
        credentials: Credentials | None = None,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        will: tuple[str, bytes, int, bool] | None = None,
        manual_ack: bool = False,
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        on_message: Callable[[mqtt.MQTTMessage], None] | None = None,
        on_publish: Callable[[int, bool], None] | None = None,
        on_subscribe: Callable[[list[Any]], None] | None = None,
        keepalive_s: int = KEEPALIVE_S,
        receive_maximum: int | None = None,
        backoff: Callable[[int], float] = backoff_delay,
        name: str = "mqtt",
    ) -> None:
        self.url = url
        self.name = name
        self.connected = threading.Event()
        self.connects = 0  # successful connections since construction
        self.session_present = False
        self._stop = threading.Event()
        self._clean_start = clean_start
        self._session_expiry_s = session_expiry_s
        self._receive_maximum = receive_maximum
        self._keepalive_s = keepalive_s
        self._backoff = backoff
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._thread: threading.Thread | None = None
        v5 = url.version == 5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else clean_start,
            manual_ack=manual_ack,
        )
        write_on_network_thread(client)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        creds = credentials or Credentials()
        username = url.username or creds.username
        password = url.password
        if creds.password_file is not None:
            password = creds.password()
        if username:
            client.username_pw_set(username, password)
        if url.tls:
            client.tls_set(
                ca_certs=str(creds.ca_file) if creds.ca_file else None,
                certfile=str(creds.cert_file) if creds.cert_file else None,
                keyfile=str(creds.key_file) if creds.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if will is not None:
            topic, payload, qos, retain = will
            client.will_set(topic, payload, qos=qos, retain=retain)
        client.on_connect = self._handle_connect
        if on_message is not None:
            client.on_message = lambda _c, _u, msg: on_message(msg)
        if on_publish is not None:
            # (mid, refused): a PUBACK with a failure reason (0x80+, e.g. 0x87 not authorized)
            # means the broker did not take the message; 0x10 "no subscribers" is a success
            client.on_publish = lambda _c, _u, mid, rc, _p: on_publish(mid, rc.is_failure)
        if on_subscribe is not None:
            client.on_subscribe = lambda _c, _u, _mid, reasons, _p: on_subscribe(list(reasons))
        self.client = client

    @property
    def thread(self) -> threading.Thread | None:
        """The network thread (None before `start`)."""
        return self._thread

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-net", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect cleanly (the network thread sends the DISCONNECT) and join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _handle_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            _LOGGER.error("%s: broker %s refused the connection: %s", self.name, self.url, reason)
            self.client.disconnect()
            return
        self.session_present = bool(getattr(_flags, "session_present", False))
        self.connects += 1
        _LOGGER.info(
            "%s: connected to %s (session present: %s)", self.name, self.url, self.session_present
        )
        self.connected.set()
        if self._on_connect is not None:
            self._on_connect()

    def _run(self) -> None:
        attempt = 0
        first = True
        while not self._stop.is_set():
            try:
                if first and self.url.version != 5:
                    self.client.connect(self.url.host, self.url.port, self._keepalive_s)
                    first = False
                elif first:
                    self.client.connect(
                        self.url.host,
                        self.url.port,
                        self._keepalive_s,
                        clean_start=self._clean_start,
                        properties=connect_properties(
                            self._session_expiry_s, self._receive_maximum
                        ),
                    )
                    first = False
                else:
                    self.client.reconnect()
            except (OSError, ssl.SSLError, ValueError) as exc:
                delay = self._backoff(attempt)
                _LOGGER.warning(
                    "%s: cannot reach %s (%s); retry in %.1f s", self.name, self.url, exc, delay
                )
                attempt += 1
                self._stop.wait(delay)
                continue
            while not self._stop.is_set():
                if self.client.loop(timeout=LOOP_TIMEOUT_S) != mqtt.MQTT_ERR_SUCCESS:
                    break
                if self.connected.is_set():
                    attempt = 0
            was_connected = self.connected.is_set()
            self.connected.clear()
            if self._stop.is_set():
                self._disconnect()
            if was_connected and self._on_disconnect is not None:
                self._on_disconnect()
            if self._stop.is_set():
                break
            delay = self._backoff(attempt)
            _LOGGER.warning("%s: lost %s; reconnect in %.1f s", self.name, self.url, delay)
            attempt += 1
            self._stop.wait(delay)

    def _disconnect(self) -> None:
        """On the network thread: queue a DISCONNECT and let the loop write it."""
        self.client.disconnect()
        for _ in range(DISCONNECT_LOOPS):
            if self.client.loop(timeout=LOOP_TIMEOUT_S) != mqtt.MQTT_ERR_SUCCESS:
                break
