"""Pipeline benchmark (issue 2): `python -m bench.pipeline` prints one JSON object.

Everything is real: a local Mosquitto and a hub Mosquitto on free loopback ports, the
production gateway as a `veille run` subprocess on a home with `SOS_BUTTONS` Zigbee SOS
buttons, a motion sensor, a door contact and a temperature sensor.

- Throughput: `MESSAGES` Zigbee2MQTT messages (motion, contact, temperature; each differs from
  the device's previous one, so none is filtered as a repeat) published as fast as one paho
  client can, then a marker: one SOS press. The pipeline handles its inbox in order, so when
  the marker's alert reaches the hub broker every message before it went through decode,
  detectors and the outbox. Rate = messages / (first publish -> marker alert at the hub).
- Latency: each SOS button pressed once, `PRESS_GAP_S` apart; publish on the local broker ->
  the `sos` alert received from the hub broker (decode, alert book, durable outbox commit,
  uplink, two broker hops); p50/p99.
- Baseline, same run, same messages, same publisher: a bare paho subscriber on the local
  broker (QoS 1), rate = messages / (first publish -> last message received), latency =
  publish -> received.
Targets: the gateway keeps >= half the bare subscriber's rate; p99 < 50 ms.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench._common import broker, percentile
from tests.gateway_proc import GatewayProc

HOME = "bench-pipe"
SOS_BUTTONS = 200
MARKERS = 3  # extra buttons: warm-up, baseline marker, gateway marker
MESSAGES = 20_000
PRESS_GAP_S = 0.05
WAIT_S = 120.0
TARGET_RATE_RATIO = 0.5
TARGET_P99_MS = 50.0
SOS_PAYLOAD = b'{"action":"single","battery":87,"linkquality":96}'
EXTRA_DEVICES = """
[[devices]]
id = "bedroom-th"
source = "zigbee2mqtt"
address = "0x00158d0001aaaa03"
friendly_name = "bedroom_climate"
room = "bedroom"
role = "temperature"
"""


def stream(n: int) -> list[tuple[str, bytes]]:
    """`n` Zigbee2MQTT messages cycling over motion, contact and temperature, each a change."""
    out: list[tuple[str, bytes]] = []
    for i in range(n):
        k, turn = i % 3, i // 3
        body: dict[str, Any]
        if k == 0:
            body = {"occupancy": turn % 2 == 0, "battery": 90, "linkquality": 80}
            out.append(("zigbee2mqtt/kitchen_motion", json.dumps(body).encode()))
        elif k == 1:
            body = {"contact": turn % 2 == 0, "battery": 80, "linkquality": 70}
            out.append(("zigbee2mqtt/front_door", json.dumps(body).encode()))
        else:
            temp = 19.0 + (turn % 40) * 0.1
            body = {"temperature": round(temp, 2), "humidity": 48.0, "battery": 95}
            out.append(("zigbee2mqtt/bedroom_climate", json.dumps(body).encode()))
    return out


def sos_topic(i: int) -> str:
    return f"zigbee2mqtt/sos_button_{i}"


class Timed:
    """A paho MQTT v5 client that stamps every message with time.monotonic() when received."""

    def __init__(self, port: int, topic: str | None, client_id: str = "") -> None:
        self.got: list[tuple[float, str, bytes]] = []
        self.cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if topic is not None:
            self.client.subscribe(topic, qos=1)
            if not self._subscribed.wait(10):
                raise TimeoutError("subscriber did not subscribe")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.got.append((time.monotonic(), msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[list[tuple[float, str, bytes]]], bool]) -> None:
        with self.cond:
            if not self.cond.wait_for(lambda: pred(self.got), WAIT_S):
                raise TimeoutError(f"not received in {WAIT_S} s ({len(self.got)} messages)")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(pub: Timed, messages: list[tuple[str, bytes]]) -> float:
    """Publish every message at QoS 1 as fast as the client goes; returns the start time."""
    t0 = time.monotonic()
    infos = [pub.client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos[-1:]:
        info.wait_for_publish(WAIT_S)
    return t0


def press_all(pub: Timed, buttons: range) -> dict[str, float]:
    """Press each button once, PRESS_GAP_S apart; {device id: publish time}."""
    sent: dict[str, float] = {}
    for i in buttons:
        sent[f"sos-{i}"] = time.monotonic()
        pub.client.publish(sos_topic(i), SOS_PAYLOAD, qos=1)
        time.sleep(PRESS_GAP_S)
    return sent


def _alerts(got: list[tuple[float, str, bytes]]) -> dict[str, float]:
    """{device_id: first time its sos alert was received} from the hub's messages."""
    out: dict[str, float] = {}
    for at, topic, payload in got:
        if topic.endswith("/alert"):
            body = json.loads(payload)
            if body.get("type") == "sos" and body.get("state") == "raised":
                out.setdefault(str(body.get("device_id")), at)
    return out


def _lat(sent: dict[str, float], got: dict[str, float]) -> dict[str, Any]:
    ms = [1000.0 * (got[k] - t) for k, t in sent.items() if k in got]
    return {
        "n": len(ms),
        "lost": len(sent) - len(ms),
        "p50_ms": round(percentile(ms, 50), 2) if ms else None,
        "p99_ms": round(percentile(ms, 99), 2) if ms else None,
        "max_ms": round(max(ms), 2) if ms else None,
    }


def _baseline(local_port: int, messages: list[tuple[str, bytes]]) -> dict[str, Any]:
    """The bare subscriber: same publisher, same messages, same broker."""
    sub = Timed(local_port, "zigbee2mqtt/#")
    pub = Timed(local_port, None)
    try:
        marker = sos_topic(SOS_BUTTONS + 1)
        t0 = publish_all(pub, [*messages, (marker, SOS_PAYLOAD)])
        sub.wait_for(lambda got: bool(got) and got[-1][1] == marker)
        rate = len(messages) / (sub.got[-1][0] - t0)
        sub.got.clear()
        sent = press_all(pub, range(SOS_BUTTONS))
        sub.wait_for(lambda got: len(got) >= SOS_BUTTONS)
        recv = {f"sos-{t.rsplit('_', 1)[1]}": at for at, t, _p in sub.got}
        return {"events_per_s": round(rate, 1), "latency": _lat(sent, recv)}
    finally:
        sub.close()
        pub.close()


def _gateway(gw: GatewayProc, hub_port: int, messages: list[tuple[str, bytes]]) -> dict[str, Any]:
    hub = Timed(hub_port, f"veille/v1/{HOME}/#")
    pub = Timed(gw.local_port, None)
    try:
        # warm-up: the uplink is connected and one alert went all the way
        hub.wait_for(lambda got: any(t.endswith("/status") for _a, t, _p in got))
        warm = f"sos-{SOS_BUTTONS}"
        pub.client.publish(sos_topic(SOS_BUTTONS), SOS_PAYLOAD, qos=1)
        hub.wait_for(lambda got: warm in _alerts(got))
        hub.got.clear()
        marker = f"sos-{SOS_BUTTONS + 2}"
        t0 = publish_all(pub, [*messages, (sos_topic(SOS_BUTTONS + 2), SOS_PAYLOAD)])
        published_s = time.monotonic() - t0
        hub.wait_for(lambda got: marker in _alerts(got))
        rate = len(messages) / (_alerts(hub.got)[marker] - t0)
        hub.got.clear()
        sent = press_all(pub, range(SOS_BUTTONS))
        hub.wait_for(lambda got: len(_alerts(got)) >= SOS_BUTTONS)
        return {
            "events_per_s": round(rate, 1),
            "publisher_per_s": round(len(messages) / published_s, 1),
            "latency": _lat(sent, _alerts(hub.got)),
        }
    finally:
        hub.close()
        pub.close()


def run(messages: int = MESSAGES) -> dict[str, Any]:
    """Baseline first (the gateway is not yet subscribed), then the gateway."""
    msgs = stream(messages)
    with tempfile.TemporaryDirectory(prefix="veille-bench-pipe-") as tmp:
        work = Path(tmp)
        with broker(work / "local") as local, broker(work / "hub") as hub:
            baseline = _baseline(local.port, msgs)
            (work / "gw").mkdir()
            gw = GatewayProc(work / "gw", HOME, local.port, hub.port)
            gw.provision(n_sos=SOS_BUTTONS + MARKERS, extra_devices=EXTRA_DEVICES)
            gw.start()
            try:
                gateway = _gateway(gw, hub.port, msgs)
            finally:
                code = gw.stop()
    ratio = gateway["events_per_s"] / baseline["events_per_s"]
    p99 = gateway["latency"]["p99_ms"]
    return {
        "messages": messages,
        "sos_buttons": SOS_BUTTONS,
        "gateway": gateway,
        "baseline_bare_subscriber": baseline,
        "rate_ratio": round(ratio, 3),
        "gateway_exit_code": code,
        "targets": {"rate_ratio_min": TARGET_RATE_RATIO, "p99_ms_max": TARGET_P99_MS},
        "pass": {
            "rate_ratio": ratio >= TARGET_RATE_RATIO,
            "p99_ms": p99 is not None and p99 < TARGET_P99_MS,
        },
    }


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=2)
    sys.stdout.write("\n")
