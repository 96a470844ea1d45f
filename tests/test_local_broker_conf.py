"""The committed local.conf on a real Mosquitto: loopback only, and the gateway's persistent
session (subscription and queued Zigbee2MQTT events) survives a broker restart."""

from __future__ import annotations

import os
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import Mosquitto, publish, session_props

pytestmark = pytest.mark.broker

LOCAL_CONF = Path(__file__).resolve().parents[1] / "firmware_configs" / "mosquitto" / "local.conf"
WAIT_S = 5.0


@dataclass
class LocalBroker(Mosquitto):
    """Mosquitto running the committed local.conf, on a free port and a private data folder."""

    def conf_text(self) -> str:
        text = LOCAL_CONF.read_text()
        for old in ("listener 1883 127.0.0.1\n", "persistence_location /var/lib/mosquitto/\n"):
            assert old in text, f"local.conf no longer contains {old!r}"
        text = text.replace("listener 1883 127.0.0.1", f"listener {self.port} 127.0.0.1")
        text = text.replace("/var/lib/mosquitto/", f"{self.workdir}/")
        # started as root, mosquitto would switch to a user that cannot write the test's folder
        return text + ("user root\n" if os.geteuid() == 0 else "")


class Gateway:
    """A client with a persistent session, as the gateway holds one on the local broker."""

    def __init__(self, port: int, subscribe: bool) -> None:
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.connack: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="veille-gateway", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda _c, _u, m: self.messages.put(bytes(m.payload))
        self._subscribe = subscribe
        self._subscribed: queue.Queue[bool] = queue.Queue()
        self.client.on_subscribe = lambda *_a: self._subscribed.put(True)
        self.client.connect("127.0.0.1", port, clean_start=False, properties=session_props(3600))
        self.client.loop_start()
        self.session_present = self.connack.get(timeout=WAIT_S)
        if subscribe:
            assert self._subscribed.get(timeout=WAIT_S)

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        assert not rc.is_failure
        if self._subscribe:
            client.subscribe("zigbee2mqtt/#", qos=1)
        self.connack.put(bool(flags.session_present))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_local_broker_listens_on_loopback_only() -> None:
    listeners = [
        line.split() for line in LOCAL_CONF.read_text().splitlines() if line.startswith("listener")
    ]
    assert listeners == [["listener", "1883", "127.0.0.1"]]


def test_persistent_session_survives_a_broker_restart(tmp_path: Path) -> None:
    broker = LocalBroker(tmp_path / "local").start()
    try:
        gateway = Gateway(broker.port, subscribe=True)
        assert gateway.session_present is False
        gateway.close()
        for i in range(3):  # Zigbee2MQTT keeps publishing while the gateway is away
            publish(broker.port, "zigbee2mqtt/hall_motion", f'{{"occupancy":true,"n":{i}}}')
        broker.restart()
        gateway = Gateway(broker.port, subscribe=False)  # no new SUBSCRIBE: the session has it
        try:
            assert gateway.session_present is True
            got = [gateway.messages.get(timeout=WAIT_S) for _ in range(3)]
            publish(broker.port, "zigbee2mqtt/hall_motion", '{"occupancy":false}')
            got.append(gateway.messages.get(timeout=WAIT_S))
        finally:
            gateway.close()
    finally:
        broker.stop()
    assert got == [
        b'{"occupancy":true,"n":0}',
        b'{"occupancy":true,"n":1}',
        b'{"occupancy":true,"n":2}',
        b'{"occupancy":false}',
    ]
