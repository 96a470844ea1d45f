"""Run the real `veille run` as a subprocess against real brokers, for end-to-end tests."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import free_port, publish

VEILLE = str(Path(sys.executable).with_name("veille"))
FAMILY_PIN = "4821"
INSTALLER_SECRET = "installateur-2024"


def write_home(path: Path, home_id: str, extra_devices: str = "", n_sos: int = 1) -> Path:
    buttons = "".join(
        f"""
[[devices]]
id = "sos-{i}"
source = "zigbee2mqtt"
address = "0x00158d0001a2{i:04x}"
friendly_name = "sos_button_{i}"
room = "entrance"
role = "sos_button"
"""
        for i in range(n_sos)
    )
    path.write_text(
        f"""[home]
id = "{home_id}"
timezone = "Europe/Paris"

[[rooms]]
name = "entrance"
kind = "entrance"

[[rooms]]
name = "kitchen"
kind = "kitchen"

[[rooms]]
name = "bedroom"
kind = "bedroom"

[[devices]]
id = "kitchen-pir"
source = "zigbee2mqtt"
address = "0x00158d0001aaaa01"
friendly_name = "kitchen_motion"
room = "kitchen"
role = "motion"

[[devices]]
id = "front-door"
source = "zigbee2mqtt"
address = "0x00158d0001aaaa02"
friendly_name = "front_door"
room = "entrance"
role = "door_entrance"
{buttons}{extra_devices}"""
    )
    return path


class VeilleProcess:
    """What the tests do with a running `veille` process: its /health, waiting for it,
    SIGKILL, SIGTERM and the tail of its log (`{LOG_NAME}-{starts}.log` in `workdir`)."""

    LABEL = "veille"
    LOG_NAME = "veille"
    READY_TIMEOUT_S = 30.0
    workdir: Path
    http_port: int
    proc: subprocess.Popen[bytes] | None
    starts: int

    def health(self) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}/health", timeout=2
            ) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def wait_ready(self, timeout: float | None = None) -> dict[str, object]:
        timeout = self.READY_TIMEOUT_S if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                code = self.proc.returncode
                raise AssertionError(f"{self.LABEL} exited with {code}: {self.log()}")
            with contextlib.suppress(OSError, ValueError):
                code, body = self.health()
                if code == 200:
                    return body
            time.sleep(0.1)
        raise TimeoutError(f"{self.LABEL} not ready in {timeout} s: {self.log()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return -9

    def log(self, tail: int | None = 4000) -> str:
        """The last `tail` characters of this start's log (all of it with None)."""
        path = self.workdir / f"{self.LOG_NAME}-{self.starts}.log"
        text = path.read_text(errors="replace")
        return text if tail is None else text[-tail:]


@dataclass
class GatewayProc(VeilleProcess):
    """`veille run` on a storage dir, with its own gateway.toml."""

    LABEL = "gateway"
    LOG_NAME = "gateway"

    workdir: Path
    home_id: str
    local_port: int
    hub_port: int
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)  # extra environment for `veille run`

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    def provision(self, n_sos: int = 1, extra_devices: str = "", pins: bool = True) -> None:
        home = write_home(self.workdir / "home.toml", self.home_id, extra_devices, n_sos)
        self.veille_provision("import", str(home))
        if pins:
            self.veille_provision("set-pin", "family", FAMILY_PIN)
            self.veille_provision("set-pin", "installer", INSTALLER_SECRET)
        (self.workdir / "gateway.toml").write_text(
            f"""[home]
id = "{self.home_id}"
[local]
url = "mqtt://127.0.0.1:{self.local_port}"
[hub]
url = "mqtt://127.0.0.1:{self.hub_port}"
[storage]
dir = "{self.storage}"
[http]
listen = "127.0.0.1:{self.http_port}"
"""
        )

    def veille_provision(self, *args: str) -> None:
        """`veille provision ARGS --storage` on this gateway's storage."""
        subprocess.run(
            [VEILLE, "provision", *args, "--storage", str(self.storage)],
            check=True,
            capture_output=True,
        )

    def start(self, wait_ready: bool = True) -> None:
        self.starts += 1
        log = open(self.workdir / f"gateway-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [VEILLE, "-v", "run", "--config", str(self.workdir / "gateway.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
        )
        if wait_ready:
            self.wait_ready()


def sos_press(port: int, i: int) -> None:
    """Zigbee2MQTT's message for a press of `sos_button_{i}`, published to the local broker."""
    publish(
        port, f"zigbee2mqtt/sos_button_{i}", '{"action":"single","battery":87,"linkquality":96}'
    )


class PersistentHubCollector:
    """A hub-side subscriber with a persistent session: it misses nothing while away."""

    def __init__(self, port: int, client_id: str) -> None:
        self.port = port
        self.client_id = client_id
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subscribed = threading.Event()
        self.client: mqtt.Client | None = None

    def connect(self) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        client.on_connect = lambda c, *_: c.subscribe("veille/#", 1)
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.reconnect_delay_set(0.1, 0.5)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        assert self._subscribed.wait(10)
        self.client = client

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def alert_ids(self, want: int, timeout: float) -> list[str]:
        ids: list[str] = []
        deadline = time.monotonic() + timeout
        while len(set(ids)) < want and time.monotonic() < deadline:
            try:
                topic, payload = self.messages.get(timeout=0.5)
            except queue.Empty:
                continue
            if topic.endswith("/alert"):
                ids.append(json.loads(payload)["id"])
        return ids


STAFF_PASSWORD = "soins-de-nuit-2024"


@dataclass
class HubProc(VeilleProcess):
    """The real `veille hub` receiver and care console as a subprocess, on a store spec."""

    LABEL = "veille hub"
    LOG_NAME = "hub"
    READY_TIMEOUT_S = 60.0

    workdir: Path
    broker_url: str
    store: str
    client_id: str = "veille-hub-test"
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    extra_args: tuple[str, ...] = ()  # e.g. ("--notify", "notify.toml")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, wait_ready: bool = True) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        staff = self.workdir / "staff.txt"
        staff.write_text(f"alice:{STAFF_PASSWORD}\n")
        self.starts += 1
        log = open(self.workdir / f"hub-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                VEILLE,
                "-v",
                "hub",
                "--broker",
                self.broker_url,
                "--store",
                self.store,
                "--client-id",
                self.client_id,
                "--http",
                f"127.0.0.1:{self.http_port}",
                "--staff-password-file",
                str(staff),
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if wait_ready:
            self.wait_ready()

    def hub_log(self) -> list[dict[str, object]]:
        """`veille hub-log --store SPEC --json`, as an operator runs it."""
        return hub_log(self.store)


def hub_log(store: str, *extra: str) -> list[dict[str, object]]:
    out = subprocess.run(
        [VEILLE, "hub-log", "--store", store, "--json", *extra],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def alarm_log(storage: Path) -> list[dict[str, object]]:
    """`veille log --storage DIR --json`, run as the installer would."""
    proc = subprocess.run(
        [VEILLE, "log", "--storage", str(storage), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [json.loads(line) for line in proc.stdout.splitlines()]


def logs_agree(
    storage: Path, store: str, home_id: str
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The gateway's alarm log (`veille log`) and what the hub holds for that home
    (`veille hub-log`) are equal both ways: the same ids, types and raise times; and every
    entry of the log is delivered (its receipt came)."""
    log = alarm_log(storage)
    mine = [r for r in hub_log(store) if r["home_id"] == home_id]
    home_ids = {str(e["id"]) for e in log}
    assert len(home_ids) == len(log), "an alert id appears twice in the alarm log"
    undelivered = [e["id"] for e in log if e["delivered_at"] is None]
    assert undelivered == [], f"alarm log: {len(undelivered)} alerts without a receipt"
    at_home = {(e["id"], e["type"], e["raised_at"]) for e in log}
    at_hub = {(r["id"], r["type"], r["raised_at"]) for r in mine}
    assert at_home - at_hub == set(), f"in the alarm log, not at the hub: {at_home - at_hub}"
    assert at_hub - at_home == set(), f"at the hub, not in the alarm log: {at_hub - at_home}"
    return log, mine
