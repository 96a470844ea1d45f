"""Test helpers: a real Mosquitto on a free loopback port, and a collecting MQTT client."""

from __future__ import annotations

import contextlib
import os
import queue
import random
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


# Listening ports come from below the kernel's ephemeral range (32768-60999 by default), so
# an outgoing connection cannot take a port between the moment we pick it and a server's bind
# (a restarted Mosquitto keeps its port). Ports already handed out are not handed out again.
# Under pytest-xdist each worker draws from its own slice, so two workers never hand out the
# same port (one worker's restarted broker frees its port for a moment; another must not
# take it).


def _listen_ports() -> range:
    first, stop = 20000, 32768
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return range(first, stop)
    size = (stop - first) // count
    start = first + int(worker[2:]) * size
    return range(start, start + size)


_LISTEN_PORTS = _listen_ports()
_handed_out: set[int] = set()


def free_port() -> int:
    rng = random.Random()
    while True:
        port = rng.choice(_LISTEN_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


def wait_port(
    port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server for 127.0.0.1:{port} exited with {proc.returncode}")
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
            # started as root, mosquitto would switch to the `mosquitto` user, which cannot
            # write its persistence file into the test's folder (sessions would not survive)
            + ("user root\n" if os.geteuid() == 0 else "")
            + self.extra_conf
        )

    def start(self) -> Mosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(self.conf_text())
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        wait_port(self.port, proc=self.proc)
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


REPO = Path(__file__).resolve().parents[1]
HUB_CONF = REPO / "firmware_configs" / "mosquitto" / "hub.conf"
HUB_ACL = REPO / "firmware_configs" / "mosquitto" / "hub.acl"
HUB_RECEIVERS = ("hub-receiver-1", "hub-receiver-2", "hub-receiver-3")


def make_hub_pki(
    tls_dir: Path, homes: tuple[str, ...] = (), receivers: tuple[str, ...] = HUB_RECEIVERS
) -> Path:
    """A test CA in `tls_dir` with the hub's server certificate (`hub.pem`/`hub.key`) and a
    client certificate `<name>.pem`/`<name>.key` for every home and receiver."""
    from cloud_bridge import pki

    pki.init_ca(tls_dir)
    pki.issue(tls_dir, "hub", "server", ("127.0.0.1", "localhost"))
    for name in (*homes, *receivers):
        pki.issue(tls_dir, name, "client")
    return tls_dir


@dataclass
class TlsHub(Mosquitto):
    """The hub broker as configured by the committed hub.conf + hub.acl (TLS, per-home ACL),
    rendered for a free loopback port, the test CA in `tls_dir` and the given receivers."""

    tls_dir: Path = Path()
    receivers: tuple[str, ...] = HUB_RECEIVERS

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def conf_text(self) -> str:
        from cloud_bridge import pki

        acl = self.workdir / "hub.acl"
        acl.write_text(pki.render_hub_acl(HUB_ACL.read_text(), self.receivers))
        conf = pki.render_hub_conf(
            HUB_CONF.read_text(),
            port=self.port,
            tls_dir=self.tls_dir,
            data_dir=self.workdir,
            acl_path=acl,
            host="127.0.0.1",
        )
        # Started as root, mosquitto would switch to the `mosquitto` user, which cannot read
        # the test's private files; in production the files belong to that user instead.
        if os.geteuid() == 0:
            conf += "user root\n"
        return conf + self.extra_conf


def tls_client(tls_dir: Path, name: str | None, client_id: str = "") -> mqtt.Client:
    """A paho MQTT v5 client set up with the test CA and `name`'s certificate (None: none)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if name is None:
        client.tls_set(str(tls_dir / "ca.pem"))
    else:
        client.tls_set(
            str(tls_dir / "ca.pem"), str(tls_dir / f"{name}.pem"), str(tls_dir / f"{name}.key")
        )
    return client
