"""Hub chaos: nothing lost between the home and the hub's store, with the real `veille run`
(its uplink and outbox) and the real `veille hub` processes on real Mosquitto brokers.

Each test prints its counts (`hubchaos[...]`): presses, alerts raised, stored, resent, lost,
and the worst wait of an alert (raised at the gateway -> first stored at the hub). At the
end of each, the gateway's alarm log (`veille log`) and the hub's (`veille hub-log`) are
equal both ways, and every entry of the alarm log is delivered by a receipt.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_bridge.contract import parse_iso_utc
from tests.gateway_proc import GatewayProc, HubProc, alarm_log, hub_log, logs_agree, sos_press
from tests.pg import Postgres, running_postgres
from tests.support import Mosquitto, publish
from tests.test_hub_poison import poison

pytestmark = [pytest.mark.broker, pytest.mark.slow]

SETTLE_S = 240.0  # resends are up to 60 s apart: give a few of them time


def report(name: str, **counts: object) -> None:
    print(f"\nhubchaos[{name}] " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


def resent_count(gw: GatewayProc) -> int:
    """Alert messages the gateway sent again for want of a receipt, over all its runs."""
    total = 0
    for n in range(1, gw.starts + 1):
        text = (gw.workdir / f"gateway-{n}.log").read_text(errors="replace")
        total += len(re.findall(r"sent again \(try", text))
    return total


def worst_wait_s(records: list[dict[str, Any]]) -> float:
    """Longest time from an alert's raise (gateway clock) to its first storing at the hub."""
    waits = [
        parse_iso_utc(str(r["received_at"])) - parse_iso_utc(str(r["raised_at"]))
        for r in records
        if r["received_at"] is not None
    ]
    return round(max(waits), 1) if waits else 0.0


def wait_all_at_hub(store: str, home_id: str, want: int, timeout_s: float = SETTLE_S) -> list:
    deadline = time.monotonic() + timeout_s
    held: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        held = [r for r in hub_log(store) if r["home_id"] == home_id and r["type"] == "sos"]
        if len(held) >= want:
            return held
        time.sleep(1.0)
    return held


def wait_delivered(gw: GatewayProc, want: int, timeout_s: float = SETTLE_S) -> None:
    """The gateway's alarm log (`veille log`) holds `want` alerts, each with its receipt."""
    deadline = time.monotonic() + timeout_s
    log: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        log = alarm_log(gw.storage)
        if len(log) >= want and all(e["delivered_at"] is not None for e in log):
            return
        time.sleep(1.0)
    undelivered = [e["id"] for e in log if e["delivered_at"] is None]
    raise AssertionError(f"{len(log)} alerts in the alarm log, {len(undelivered)} undelivered")


def presses(port: int, buttons: range, every_s: float) -> threading.Thread:
    def run() -> None:
        for i in buttons:
            sos_press(port, i)
            time.sleep(every_s)

    thread = threading.Thread(target=run, name="presses", daemon=True)
    thread.start()
    return thread


@pytest.fixture
def hub_mqtt(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "hub-broker").start()
    try:
        yield broker
    finally:
        broker.stop()


# --- 1. the receiver SIGKILLed during traffic, several times --------------------------------


def test_receiver_sigkilled_during_traffic_loses_nothing(
    tmp_path: Path, local_broker: Mosquitto, hub_mqtt: Mosquitto
) -> None:
    n_press, n_kills = 40, 5
    rng = random.Random(10)
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = HubProc(tmp_path / "hub", hub_mqtt.url, store, client_id="chaos-receiver")
    hub.start()
    gw = GatewayProc(tmp_path / "gw", "h-hubchaos-1", local_broker.port, hub_mqtt.port)
    gw.workdir.mkdir()
    gw.provision(n_sos=n_press)
    gw.start()
    downs: list[float] = []
    try:
        presser = presses(local_broker.port, range(n_press), 0.25)
        for _ in range(n_kills):
            time.sleep(rng.uniform(0.3, 1.5))
            hub.kill()
            down = rng.uniform(0.5, 3.0)
            downs.append(round(down, 1))
            time.sleep(down)
            hub.start()
        presser.join()
        held = wait_all_at_hub(store, gw.home_id, n_press)
        wait_delivered(gw, n_press)
        log, mine = logs_agree(gw.storage, store, gw.home_id)
    finally:
        gw.stop()
        hub.stop()
    per_device = Counter(str(r["id"]) for r in held)
    report(
        "receiver-sigkill",
        kills=n_kills,
        down_s=downs,
        presses=n_press,
        raised=len(log),
        stored=len(mine),
        resent=resent_count(gw),
        worst_wait_s=worst_wait_s(mine),
        lost=n_press - len(held),
    )
    assert len(held) == n_press
    assert max(per_device.values()) == 1


# --- 2. a poison corpus from a second home while a first home's SOS goes through ------------


def test_poison_from_a_second_home_while_an_sos_goes_through(
    tmp_path: Path, local_broker: Mosquitto, hub_mqtt: Mosquitto
) -> None:
    bad_home = "h-poison"
    corpus = [c for c in poison(bad_home) if c[1] != "receipt"]
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = HubProc(tmp_path / "hub", hub_mqtt.url, store, client_id="poison-receiver")
    hub.start()
    gw = GatewayProc(tmp_path / "gw", "h-hubchaos-2", local_broker.port, hub_mqtt.port)
    gw.workdir.mkdir()
    gw.provision(n_sos=6)
    gw.start()
    try:
        sos_press(local_broker.port, 0)
        for rounds in range(2):
            for i, (_name, leaf, payload) in enumerate(corpus):
                publish(hub_mqtt.port, f"veille/v1/{bad_home}/{leaf}", payload)
                if i % 10 == 0:
                    sos_press(local_broker.port, 1 + rounds * 2 + (i // 10) % 2)
        sos_press(local_broker.port, 5)
        held = wait_all_at_hub(store, gw.home_id, 6)
        wait_delivered(gw, 6)
        code, health = hub.health()
        _log, mine = logs_agree(gw.storage, store, gw.home_id)
        poisoned = [r for r in hub_log(store) if r["home_id"] == bad_home]
    finally:
        gw.stop()
        assert hub.stop() == 0, hub.log()
    report(
        "poison",
        bad_messages=2 * len(corpus),
        rejected=health.get("rejected"),
        failed=health.get("failed"),
        sos=6,
        stored=len(held),
        lost=6 - len(held),
        worst_wait_s=worst_wait_s(mine),
    )
    assert code == 200
    assert len(held) == 6
    assert poisoned == []
    assert health["rejected"] == 2 * len(corpus)
    assert health["failed"] == 0
    assert "Traceback" not in hub.log()


# --- 3. a foreign client in the shared group ------------------------------------------------


def test_a_foreign_client_in_the_shared_group_takes_no_alert_away(
    tmp_path: Path, local_broker: Mosquitto, hub_mqtt: Mosquitto
) -> None:
    """A client that is no receiver joins `$share/hub/...` and swallows what it is handed
    (on this plain broker it may even read it): every alert still reaches the real receiver's
    store, because its gateway sends again what got no receipt."""
    n_press = 10
    swallowed: list[str] = []
    thief = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="thief", protocol=mqtt.MQTTv5)
    thief.on_message = lambda _c, _u, m: swallowed.append(m.topic)
    thief.on_connect = lambda c, *_a: c.subscribe("$share/hub/veille/v1/+/alert", 1)
    thief.connect("127.0.0.1", hub_mqtt.port)
    thief.loop_start()
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = HubProc(tmp_path / "hub", hub_mqtt.url, store, client_id="real-receiver")
    hub.start()
    gw = GatewayProc(tmp_path / "gw", "h-hubchaos-3", local_broker.port, hub_mqtt.port)
    gw.workdir.mkdir()
    gw.provision(n_sos=n_press)
    gw.start()
    try:
        presses(local_broker.port, range(n_press), 0.2).join()
        held = wait_all_at_hub(store, gw.home_id, n_press)
        wait_delivered(gw, n_press)
        _log, mine = logs_agree(gw.storage, store, gw.home_id)
    finally:
        gw.stop()
        hub.stop()
        thief.loop_stop()
        thief.disconnect()
    report(
        "foreign-client",
        presses=n_press,
        swallowed=len(swallowed),
        resent=resent_count(gw),
        stored=len(held),
        worst_wait_s=worst_wait_s(mine),
        lost=n_press - len(held),
    )
    assert len(held) == n_press
    assert swallowed, "the foreign client was handed a share of the alerts"


# --- 4. a receiver restart with a PostgreSQL store -----------------------------------------


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    with running_postgres() as pg:
        yield pg


def test_receiver_restart_with_a_postgresql_store(
    tmp_path: Path, local_broker: Mosquitto, hub_mqtt: Mosquitto, postgres: Postgres
) -> None:
    """Alerts raised while the receiver is down (SIGKILL) wait in the broker's session for
    it and reach PostgreSQL once it is back; a second restart (SIGTERM) changes nothing."""
    store = postgres.new_database()
    hub = HubProc(tmp_path / "hub", hub_mqtt.url, store, client_id="pg-receiver")
    hub.start()
    gw = GatewayProc(tmp_path / "gw", "h-hubchaos-4", local_broker.port, hub_mqtt.port)
    gw.workdir.mkdir()
    gw.provision(n_sos=12)
    gw.start()
    try:
        presses(local_broker.port, range(4), 0.2).join()
        hub.kill()
        presses(local_broker.port, range(4, 8), 0.2).join()
        time.sleep(2.0)
        hub.start()
        assert hub.stop() == 0
        presses(local_broker.port, range(8, 12), 0.2).join()
        hub.start()
        held = wait_all_at_hub(store, gw.home_id, 12)
        wait_delivered(gw, 12)
        log, mine = logs_agree(gw.storage, store, gw.home_id)
    finally:
        gw.stop()
        hub.stop()
    report(
        "postgres-restart",
        presses=12,
        raised=len(log),
        stored=len(held),
        resent=resent_count(gw),
        worst_wait_s=worst_wait_s(mine),
        lost=12 - len(held),
    )
    assert len(held) == 12
