"""The home's Mosquitto queues days of Zigbee2MQTT traffic for the gateway, never drops an SOS.

The gateway holds a persistent session on the local broker; while it is down (a crash loop, an
upgrade, a stuck SD card), the broker queues every QoS 1 message for it. Mosquitto drops what
goes over its queue limits *silently*, and it drops the newest, so the SOS pressed last is the
one lost. These tests run the committed local.conf on a real Mosquitto and the real
`veille run`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.const import DAY_S
from tests.gateway_proc import GatewayProc, sos_press
from tests.support import Collector, Mosquitto
from tests.test_local_broker_conf import LOCAL_CONF, LocalBroker

pytestmark = pytest.mark.broker

# A busy home: ~15 Zigbee devices, plugs reporting power, 1 message a second on average,
# each a Zigbee2MQTT payload of ~300 bytes (battery, linkquality, voltage, ...).
BUSY_RATE_PER_S = 1.0
PAYLOAD_BYTES = 300
QUEUE_DAYS = 3
BACKLOG = 12_000  # more than the 10,000 messages the old local.conf held
MOTION = '{"battery":91,"illuminance":7,"linkquality":120,"occupancy":true,"voltage":3015}'


def conf_values() -> dict[str, str]:
    values = {}
    for line in LOCAL_CONF.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            values[key] = value.strip()
    return values


def duration_s(text: str) -> float:
    """Mosquitto's `2d`, `1w`, `12h` durations."""
    match = re.fullmatch(r"(\d+)([hdwmy])", text)
    assert match, text
    unit = {"h": 3600, "d": DAY_S, "w": 7 * DAY_S, "m": 30 * DAY_S, "y": 365 * DAY_S}
    return int(match[1]) * unit[match[2]]


def test_local_queue_holds_days_of_a_busy_homes_traffic() -> None:
    conf = conf_values()
    messages = QUEUE_DAYS * DAY_S * BUSY_RATE_PER_S
    count = int(conf.get("max_queued_messages", "1000"))  # Mosquitto's default: 1000
    assert count == 0 or count >= messages, f"{count} messages is not {QUEUE_DAYS} days"
    size = int(conf.get("max_queued_bytes", "0"))
    assert size == 0 or size >= messages * PAYLOAD_BYTES, f"{size} bytes is not {QUEUE_DAYS} days"
    assert count or size, "one limit at least, or a dead gateway fills the Pi's memory"
    # the session (and its queue) must outlive the queue's days
    assert duration_s(conf["persistent_client_expiration"]) >= QUEUE_DAYS * DAY_S


def publish_many(port: int, topic: str, payload: str, n: int) -> None:
    """`n` QoS 1 messages as Zigbee2MQTT sends them, all acknowledged by the broker."""
    done = threading.Event()
    acked = 0

    def on_publish(*_args: object) -> None:
        nonlocal acked
        acked += 1
        if acked == n:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for _ in range(n):
            client.publish(topic, payload, qos=1)
        assert done.wait(120), f"{acked} of {n} published"
    finally:
        client.disconnect()
        client.loop_stop()


def test_sos_queued_behind_a_backlog_is_raised(tmp_path: Path, hub_broker: Mosquitto) -> None:
    """The gateway is down while 12,000 events and then an SOS arrive, the broker restarts:
    the SOS is raised."""
    local = LocalBroker(tmp_path / "local").start()
    gw = GatewayProc(tmp_path, "h-queue-1", local.port, hub_broker.port)
    gw.provision()
    hub = Collector(hub_broker.port, "veille/v1/h-queue-1/alert")
    try:
        gw.start()  # makes the persistent session and its subscription
        assert gw.stop() == 0
        t0 = time.monotonic()
        publish_many(local.port, "zigbee2mqtt/kitchen_motion", MOTION, BACKLOG)
        sos_press(local.port, 0)
        queued_s = time.monotonic() - t0
        local.restart()  # the Pi reboots too: the queue is in Mosquitto's persistence file
        gw.start()
        t1 = time.monotonic()
        _t, payload, _r = hub.get(timeout=60)
        drained_s = time.monotonic() - t1
        alert = json.loads(payload)
        assert (alert["type"], alert["state"], alert["device_id"]) == ("sos", "raised", "sos-0")
        print(
            f"backlog={BACKLOG} queued in {queued_s:.1f} s; sos at the hub {drained_s:.1f} s "
            "after the gateway started"
        )
    finally:
        gw.stop()
        hub.close()
        local.stop()
    assert "dropped" not in (local.workdir / "mosquitto.log").read_text(errors="replace")
    assert "dropped" not in gw.log()  # the gateway reads the broker's counter: 0
