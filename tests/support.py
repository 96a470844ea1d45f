"""Test helpers: a real Mosquitto on a free loopback port, and a collecting MQTT client."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass
class Mosquitto:
    """One real mosquitto process; `stop()`/`start()` keep its port and persistence file."""

    workdir: Path
    port: int = field(default_factory=free_port)
    extra_conf: str = ""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def conf_text(self) -> str:
        return (
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.workdir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\n"
            + self.extra_conf
        )

    def start(self) -> Mosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.conf_text())
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        wait_port(self.port)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # clean stop: persistence is saved
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def running_mosquitto(workdir: Path, extra_conf: str = "") -> Iterator[Mosquitto]:
    broker = Mosquitto(workdir, extra_conf=extra_conf).start()
    try:
        yield broker
    finally:
        broker.stop()


class Collector:
    """A paho client that subscribes and queues every (topic, payload, retain) it receives."""

    def __init__(self, port: int, *topics: str, client_id: str = "") -> None:
        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("collector did not subscribe")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.messages.put((msg.topic, msg.payload, bool(msg.retain)))

    def get(self, timeout: float = 5.0) -> tuple[str, bytes, bool]:
        return self.messages.get(timeout=timeout)

    def drain(self, timeout: float = 0.5) -> list[tuple[str, bytes, bool]]:
        out = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self.messages.get(timeout=timeout))
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(port: int, topic: str, payload: bytes | str, retain: bool = False) -> None:
    """Publish one QoS 1 message and wait for its PUBACK."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def session_props(expiry_s: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry_s
    return props


def env_without_proxy() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        env.pop(key, None)
    return env
