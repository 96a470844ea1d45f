"""Chaos tests: the gateway under faults, each against real Mosquitto processes.

Hub outage over simulated days, 20 SIGKILLs during a busy run, a local broker restart, a
full disk, damaged storage files and wall-clock jumps. Each test prints what it did and the
counts (raised, delivered, duplicated, lost), and checks the alarm log against the hub: every
id in the log reached the hub broker, and the hub got no alert id the log lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import queue
import random
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_bridge.broker import parse_broker_url
from cloud_bridge.contract import parse_iso_utc
from cloud_bridge.hub import HubReceiver
from cloud_bridge.hub_store import SqliteHubStore
from cloud_bridge.pages.http import parse_listen
from edge.commands.demo import SpeedClock
from edge.const import HOUR_S
from edge.runtime.core import Outputs
from edge.runtime.gateway import Gateway, GatewaySettings
from tests.gateway_proc import (
    VEILLE,
    GatewayProc,
    HubProc,
    PersistentHubCollector,
    hub_log,
    logs_agree,
    sos_press,
)
from tests.support import Collector, Mosquitto, publish

pytestmark = [pytest.mark.broker, pytest.mark.slow]

FAST_TICK_S = 0.05  # detector ticks of the in-process gateways (production: 1 s)


# --- helpers -------------------------------------------------------------------------------


class GatewayThread:
    """The real `Gateway` object run in-process on its own event loop thread, with an
    injected clock; `outputs` collects every batch of alerts and aggregates it committed."""

    def __init__(self, settings: GatewaySettings, clock: Any, tick_s: float = FAST_TICK_S) -> None:
        self.outputs: list[Outputs] = []
        self.gateway = Gateway(settings, clock=clock, on_outputs=self.outputs.append)
        self.gateway.pipeline.tick_s = tick_s
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            await self.gateway.run(self._stop)

        try:
            self._loop.run_until_complete(main())
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            self._loop.close()

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.gateway.state.ready:
            assert self._thread.is_alive(), f"gateway died during start-up: {self.error!r}"
            assert time.monotonic() < deadline, "gateway not ready"
            time.sleep(0.05)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "gateway did not stop"
        if self.error is not None:
            raise AssertionError(f"gateway crashed: {self.error!r}") from self.error

    def raised_ids(self) -> list[str]:
        return [a.id for out in list(self.outputs) for a in out.alerts if a.state == "raised"]

    def aggregates(self) -> list[Any]:
        return [a for out in list(self.outputs) for a in out.aggregates]

    def wait_drained(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            counts = self.gateway.outbox.counts()
            if counts["alerts"] == 0 and counts["aggregates"] == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"outbox not drained: {self.gateway.outbox.counts()}")


def settings_for(gw: GatewayProc, hub: Mosquitto, http: str | None = None) -> GatewaySettings:
    """In-process settings for a home provisioned by `GatewayProc.provision`."""
    return GatewaySettings(
        home_id=gw.home_id,
        local=parse_broker_url(f"mqtt://127.0.0.1:{gw.local_port}"),
        hub=parse_broker_url(hub.url),
        storage=gw.storage,
        http=parse_listen(http) if http else None,
        ble=False,
    )


def drain_queue(q: queue.Queue[tuple[str, bytes]], quiet_s: float = 0.5) -> list[tuple[str, bytes]]:
    out = []
    with contextlib.suppress(queue.Empty):
        while True:
            out.append(q.get(timeout=quiet_s))
    return out


def alarm_log(storage: Path) -> list[dict[str, Any]]:
    """`veille log --storage DIR --json`, run as the installer would."""
    proc = subprocess.run(
        [VEILLE, "log", "--storage", str(storage), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [json.loads(line) for line in proc.stdout.splitlines()]


def check_log_against_hub(storage: Path, hub_ids: set[str]) -> list[dict[str, Any]]:
    """Every id in the alarm log reached the hub broker; the hub got no id the log lacks."""
    log = alarm_log(storage)
    log_ids = {entry["id"] for entry in log}
    assert len(log_ids) == len(log), "an alert id appears twice in the alarm log"
    undelivered = [e["id"] for e in log if e["delivered_at"] is None]
    assert not undelivered, f"alarm log: {len(undelivered)} alerts never acknowledged by the hub"
    assert log_ids - hub_ids == set(), f"in the alarm log, never at the hub: {log_ids - hub_ids}"
    assert hub_ids - log_ids == set(), (
        f"at the hub, missing from the alarm log: {hub_ids - log_ids}"
    )
    return log


def real_hub(tmp_path: Path, broker: Mosquitto, name: str) -> HubProc:
    """The real `veille hub` receiver (not started) on its own SQLite store."""
    store = f"sqlite:///{tmp_path / f'hub-{name}.db'}"
    return HubProc(tmp_path / f"receiver-{name}", broker.url, store, client_id=f"chaos-{name}")


def wait_receipts(storage: Path, want: int, timeout_s: float = 120.0) -> None:
    """The alarm log holds `want` alerts or more, each delivered (its receipt came)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = alarm_log(storage)
        if len(log) >= want and all(e["delivered_at"] is not None for e in log):
            return
        time.sleep(0.5)


def duplicates(alerts: Iterable[dict[str, Any]]) -> int:
    """Alert messages received more than once (same id and state), before dedupe."""
    seen = Counter((a["id"], a["state"]) for a in alerts)
    return sum(n - 1 for n in seen.values())


def report(name: str, **counts: object) -> None:
    print(f"\nchaos[{name}] " + " ".join(f"{k}={v}" for k, v in counts.items()), flush=True)


def health(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as r:  # noqa: S310  our http URL
        return dict(json.loads(r.read()))


# --- 1. a long hub outage --------------------------------------------------------------------


def test_long_hub_outage_everything_delivered_alerts_first(
    tmp_path: Path, local_broker: Mosquitto
) -> None:
    """Two simulated days without the hub: alerts and 48 hourly aggregates queue up; when
    the hub is back every one arrives, and every queued alert before any aggregate."""
    n_sos = 12
    outage_sim_s = 2 * 24 * HOUR_S
    speed = 36_000.0  # 10 simulated hours per real second
    hub = Mosquitto(tmp_path / "hub")
    hub.start()
    collector = PersistentHubCollector(hub.port, "chaos-hub-outage")
    collector.connect()  # a persistent session that keeps everything while the test is away
    collector.close()
    receiver = real_hub(tmp_path, hub, "outage")
    receiver.start()  # the real receiver's persistent session, kept through the outage
    assert receiver.stop() == 0
    gw = GatewayProc(tmp_path, "h-chaos-1", local_broker.port, hub.port)
    gw.provision(n_sos=n_sos)
    clock = SpeedClock(time.time(), speed)
    run = GatewayThread(settings_for(gw, hub), clock)
    hub.stop()  # the outage starts before the gateway does
    run.start()
    try:
        clock.go()
        t0 = clock.now()
        for i in range(n_sos):  # presses spread over the outage
            sos_press(local_broker.port, i)
            time.sleep(outage_sim_s / speed / n_sos)
        while clock.now() < t0 + outage_sim_s:
            time.sleep(0.05)
        clock.stop_at = clock.now()  # simulated time stands still from here: nothing new
        time.sleep(10 * FAST_TICK_S)
        queued = run.gateway.outbox.counts()
        raised = run.raised_ids()
        n_aggregates = len(run.aggregates())
        hub.start()
        receiver.start()
        run.wait_drained(120)  # aggregates on their PUBACK, alerts on their receipts
        collector.connect()
        got = drain_queue(collector.messages, 1.0)
    finally:
        collector.close()
        run.stop()
        receiver.stop()
        hub.stop()
    order = [(t, json.loads(p)) for t, p in got if not t.endswith("/status")]
    alerts = [(i, body) for i, (t, body) in enumerate(order) if t.endswith("/alert")]
    firsts = {a["id"]: i for i, a in reversed(alerts)}  # first arrival of each (resends after)
    aggs = [i for i, (t, _b) in enumerate(order) if "/aggregate/" in t]
    hub_ids = {a["id"] for _i, a in alerts}
    dup = duplicates(a for _i, a in alerts)
    report(
        "hub-outage",
        simulated_h=round(outage_sim_s / HOUR_S),
        queued_alerts=queued["alerts"],
        queued_aggregates=queued["aggregates"],
        raised=len(raised),
        delivered=len(hub_ids),
        aggregates_made=n_aggregates,
        aggregates_delivered=len(aggs),
        duplicated=dup,
        lost=len(set(raised) - hub_ids) + n_aggregates - len(set(aggs)),
    )
    assert queued["aggregates"] >= 40, "the outage did not queue a day's aggregates"
    assert queued["alerts"] >= n_sos
    assert set(raised) == hub_ids, f"lost: {set(raised) - hub_ids}"
    assert len(aggs) == n_aggregates
    assert max(firsts.values()) < min(aggs), "an aggregate overtook a queued alert"
    check_log_against_hub(gw.storage, hub_ids)
    _log, stored = logs_agree(gw.storage, receiver.store, gw.home_id)
    assert {r["id"] for r in stored} == hub_ids


# --- 2. twenty SIGKILLs during a busy run ----------------------------------------------------


def test_twenty_sigkills_at_random_points_of_a_busy_run(
    tmp_path: Path, local_broker: Mosquitto, hub_broker: Mosquitto
) -> None:
    """Button presses keep arriving while `veille run` is SIGKILLed 20 times at random
    points (start-up included): each press is one alert at the hub, none lost, none twice."""
    n_kills = 20
    n_sos = 160
    press_every_s = 0.15
    rng = random.Random(6)
    store = SqliteHubStore(tmp_path / "hub.db")
    receiver = HubReceiver(parse_broker_url(hub_broker.url), store, client_id="chaos-hub-2")
    receiver.start()
    assert receiver.wait_connected()
    raw = Collector(hub_broker.port, "veille/v1/+/alert")
    gw = GatewayProc(tmp_path, "h-chaos-2", local_broker.port, hub_broker.port)
    gw.provision(n_sos=n_sos)

    def presses() -> None:
        for i in range(n_sos):
            sos_press(local_broker.port, i)
            time.sleep(press_every_s)

    presser = threading.Thread(target=presses, name="presses")
    gw.start()
    presser.start()
    kills = 0
    lives: list[float] = []
    try:
        for _ in range(n_kills):
            life = rng.uniform(0.2, 2.5)
            time.sleep(life)
            gw.kill()
            kills += 1
            lives.append(life)
            gw.start(wait_ready=False)
        presser.join()
        gw.wait_ready()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sos = [a for a in store.alerts(home_id=gw.home_id) if a["type"] == "sos"]
            if len({a["device_id"] for a in sos}) >= n_sos:
                break
            time.sleep(0.2)
        time.sleep(1.0)  # anything late (a duplicate) has time to come
    finally:
        assert gw.stop() == 0
        raw.close()
        receiver.stop()
    stored = store.alerts(home_id=gw.home_id)
    store.close()
    wire = [json.loads(p) for _t, p, _r in raw.drain(0.5)]
    per_device = Counter(a["device_id"] for a in stored if a["type"] == "sos")
    lost = [f"sos-{i}" for i in range(n_sos) if per_device[f"sos-{i}"] == 0]
    twice = {d: n for d, n in per_device.items() if n > 1}
    log = check_log_against_hub(gw.storage, {a["id"] for a in stored})
    report(
        "sigkill",
        kills=kills,
        mean_life_s=round(sum(lives) / len(lives), 2),
        presses=n_sos,
        raised=len(log),
        delivered=len(stored),
        wire_messages=len(wire),
        duplicated_before_dedupe=duplicates(wire),
        duplicated_after_dedupe=sum(n - 1 for n in twice.values()),
        lost=len(lost),
    )
    assert kills == n_kills
    assert lost == [], f"presses with no alert at the hub: {lost}"
    assert twice == {}, f"presses that became more than one alert: {twice}"


# --- 3. local broker restart -----------------------------------------------------------------


def zigbee2mqtt_client(port: int) -> mqtt.Client:
    """A stand-in for Zigbee2MQTT: a paho client that queues QoS 1 publishes while its
    broker is away and sends them when it is back, as Zigbee2MQTT's MQTT client does."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id="zigbee2mqtt-chaos",
        protocol=mqtt.MQTTv311,
        clean_session=False,
    )
    client.reconnect_delay_set(1, 1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def z2m_press(client: mqtt.Client, i: int) -> None:
    client.publish(
        f"zigbee2mqtt/sos_button_{i}", '{"action":"single","battery":87,"linkquality":96}', qos=1
    )


def collect_alerts(
    collector: Collector, want_devices: int, timeout_s: float
) -> list[dict[str, Any]]:
    """Alert messages until `want_devices` devices have one (or the timeout), then 1 s more."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len({a["device_id"] for a in got}) < want_devices:
        with contextlib.suppress(queue.Empty):
            _t, payload, _r = collector.get(timeout=0.5)
            got.append(json.loads(payload))
    got += [json.loads(p) for _t, p, _r in collector.drain(1.0)]
    return got


def test_local_broker_restart_zigbee_events_still_arrive(
    tmp_path: Path, hub_broker: Mosquitto
) -> None:
    """The home's Mosquitto stops (SIGTERM) and starts again with its persistence: presses
    sent before, while it is down (queued by Zigbee2MQTT) and right after all become alerts."""
    per_phase = 8
    local = Mosquitto(tmp_path / "local")
    local.start()
    gw = GatewayProc(tmp_path, "h-chaos-3", local.port, hub_broker.port)
    gw.provision(n_sos=3 * per_phase)
    hub = Collector(hub_broker.port, "veille/v1/h-chaos-3/alert")
    receiver = real_hub(tmp_path, hub_broker, "local-restart")
    receiver.start()
    gw.start()
    z2m = zigbee2mqtt_client(local.port)
    try:
        for i in range(per_phase):  # before
            z2m_press(z2m, i)
        time.sleep(1.0)
        local.stop()
        for i in range(per_phase, 2 * per_phase):  # while the broker is down
            z2m_press(z2m, i)
        time.sleep(2.0)
        local.start()
        for i in range(2 * per_phase, 3 * per_phase):  # as soon as it is back
            z2m_press(z2m, i)
        got = collect_alerts(hub, 3 * per_phase, 30)
        wait_receipts(gw.storage, 3 * per_phase)
        code, body = gw.health()
    finally:
        z2m.disconnect()
        z2m.loop_stop()
        assert gw.stop() == 0
        hub.close()
        receiver.stop()
        local.stop()
    store = SqliteHubStore(tmp_path / "hub-local-restart.db")
    stored = store.alerts(home_id=gw.home_id)
    store.close()
    devices = Counter(a["device_id"] for a in stored if a["type"] == "sos")
    lost = [f"sos-{i}" for i in range(3 * per_phase) if devices[f"sos-{i}"] == 0]
    report(
        "local-restart",
        restarts=1,
        presses=3 * per_phase,
        raised=len({a["id"] for a in got}),
        delivered=sum(devices.values()),
        duplicated=duplicates(got),
        lost=len(lost),
    )
    assert lost == [], f"presses lost across the local broker restart: {lost}"
    assert max(devices.values()) == 1
    assert code == 200
    assert body["local_broker"] is True
    assert "Traceback" not in gw.log()
    check_log_against_hub(gw.storage, {a["id"] for a in stored})
    logs_agree(gw.storage, receiver.store, gw.home_id)


# --- 5. damaged storage files ----------------------------------------------------------------


def damage_outbox(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated":  # a power cut in the middle of a page
        path.write_bytes(raw[: len(raw) // 2 + 1234])
    else:  # garbage over the header and a stretch of pages
        rng = random.Random(5)
        junk = bytes(rng.randrange(256) for _ in range(len(raw) // 3))
        path.write_bytes(junk + raw[len(junk) :])


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_damaged_outbox_and_registry_are_rebuilt_never_a_crash_loop(
    tmp_path: Path, local_broker: Mosquitto, how: str
) -> None:
    """outbox.db truncated mid-page or overwritten with garbage, registry.json garbage: the
    gateway says so in one line, recovers (registry backup) or rebuilds (outbox), and
    reaches ready on three starts in a row; what it then raises reaches the hub."""
    n_before = 30
    hub = Mosquitto(tmp_path / "hub")  # down at first: alerts stay queued in the outbox
    gw = GatewayProc(tmp_path, f"h-chaos-5-{how}", local_broker.port, hub.port)
    gw.provision(n_sos=n_before + 3)
    gw.start()
    for i in range(n_before):
        sos_press(local_broker.port, i)
    deadline = time.monotonic() + 20
    while len(alarm_log(gw.storage)) < n_before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gw.stop() == 0
    assert len(alarm_log(gw.storage)) == n_before
    damage_outbox(gw.storage / "outbox.db", how)
    (gw.storage / "registry.json").write_bytes(b'{"home": {"1": {"id": "h-ch\x00\xff')
    starts = []
    hub.start()
    hub_seen = Collector(hub.port, "veille/v1/+/alert")
    receiver = real_hub(tmp_path, hub, f"damaged-{how}")
    receiver.start()
    try:
        for n in range(3):
            gw.start()
            sos_press(local_broker.port, n_before + n)
            time.sleep(0.5)
            assert gw.stop() == 0
            starts.append(gw.log())
        gw.start()  # a last run, for the receipts of what the short ones sent
        wait_receipts(gw.storage, n_before + 3)
        assert gw.stop() == 0
        got = [json.loads(p) for _t, p, _r in hub_seen.drain(1.5)]
    finally:
        hub_seen.close()
        receiver.stop()
        hub.stop()
    first = starts[0]
    assert "outbox" in first
    assert "damaged" in first
    assert "rebuilt" in first
    assert "registry" in first
    assert "unreadable" in first
    assert all("Traceback" not in log for log in starts)
    assert all("damaged" not in log for log in starts[1:]), "rebuilt again on a later start"
    assert len(list(gw.storage.glob("outbox.db.corrupt-*"))) == 1
    new = {f"sos-{n_before + n}" for n in range(3)}
    arrived = {a["device_id"] for a in got}
    stored_ids = {str(r["id"]) for r in hub_log(receiver.store)}
    log = check_log_against_hub(gw.storage, stored_ids)
    salvaged = [e for e in log if e["id"] in stored_ids]
    report(
        f"damaged-{how}",
        starts=3,
        ready=3,
        queued_before=n_before,
        salvaged=len(salvaged) - len(new & arrived),
        raised_after=len(new),
        delivered=len(stored_ids),
        duplicated=duplicates(got),
        lost_before=n_before - len(salvaged) + len(new & arrived),
        lost_after=len(new - arrived),
    )
    assert new <= arrived, f"alerts raised after the rebuild did not arrive: {new - arrived}"
    assert len(log) == n_before + 3, "the rebuild lost alarm-log entries"


# --- 6. wall clock jumps ---------------------------------------------------------------------

FAKETIME_LIBS = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))


def last_log_day(gw: GatewayProc, marker: str, timeout_s: float = 5.0) -> date:
    """The wall-clock day stamped on the newest gateway log line that holds `marker`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = [line for line in gw.log().splitlines() if marker in line]
        if lines:
            return datetime.strptime(lines[-1][:10], "%Y-%m-%d").date()
        time.sleep(0.1)
    raise AssertionError(f"no log line with {marker!r}: {gw.log()}")


def test_wall_clock_jumps_of_a_day_raise_no_spurious_alert(
    tmp_path: Path, local_broker: Mosquitto, hub_broker: Mosquitto
) -> None:
    """`veille run` under libfaketime: its wall clock jumps +1 day, then -1 day, while it
    runs (monotonic clock untouched, as after an NTP step on a Pi without RTC). No alert and
    no aggregate follows a jump; SOS presses still arrive, stamped with the steady time."""
    assert FAKETIME_LIBS, "libfaketime is missing: scripts/setup --test installs faketime"
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    gw = GatewayProc(
        tmp_path,
        "h-chaos-6",
        local_broker.port,
        hub_broker.port,
        env={
            "LD_PRELOAD": str(FAKETIME_LIBS[0]),
            "FAKETIME_TIMESTAMP_FILE": str(offset),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        },
    )
    gw.provision(n_sos=3)
    hub = Collector(hub_broker.port, "veille/v1/h-chaos-6/alert", "veille/v1/h-chaos-6/aggregate/#")
    receiver = real_hub(tmp_path, hub_broker, "clock")
    receiver.start()
    gw.start()
    jumps: list[str] = []
    spurious: list[dict[str, Any]] = []
    stamps: list[float] = []
    sos_ids: list[str] = []
    try:
        # every sensor seen: a detector on the wall clock would find them silent for a day
        publish(local_broker.port, "zigbee2mqtt/kitchen_motion", '{"occupancy":true,"battery":90}')
        publish(local_broker.port, "zigbee2mqtt/front_door", '{"contact":true,"battery":80}')
        sos_press(local_broker.port, 0)
        first = json.loads(hub.get(timeout=5)[1])
        assert first["type"] == "sos"
        hub.drain(1.0)
        for n, (step, days) in enumerate((("+1d", 1), ("-1d", -1)), start=1):
            offset.write_text(f"{step}\n")
            marker = f"clock_probe_{n}"
            publish(local_broker.port, f"zigbee2mqtt/{marker}", '{"occupancy":true}')
            seen_day = last_log_day(gw, marker)  # the process's wall clock really jumped
            assert seen_day == (datetime.now(UTC) + timedelta(days=days)).date()
            jumps.append(f"{step}@{seen_day}")
            time.sleep(3.0)  # three detector ticks and a housekeeping round on the new clock
            seen = {first["id"], *sos_ids}  # a resend of one of these is no new message
            spurious += [
                m
                for m in map(json.loads, (p for _t, p, _r in hub.drain(0.5)))
                if m["id"] not in seen
            ]
            sos_press(local_broker.port, n)
            alert = json.loads(hub.get(timeout=5)[1])
            while alert["id"] == first["id"] or alert["device_id"] != f"sos-{n}":
                alert = json.loads(hub.get(timeout=5)[1])  # a resend of an earlier one
            assert (alert["type"], alert["device_id"]) == ("sos", f"sos-{n}")
            stamps.append(parse_iso_utc(alert["at"]) - time.time())
            sos_ids.append(alert["id"])
        code, body = gw.health()
    finally:
        assert gw.stop() == 0
        hub.close()
        receiver.stop()
    report(
        "clock-jump",
        jumps=",".join(jumps),
        spurious=len(spurious),
        sos_delivered=1 + len(stamps),
        alert_time_error_s=",".join(f"{s:+.1f}" for s in stamps),
        lost=0,
    )
    assert spurious == [], f"messages after a clock jump: {spurious}"
    assert all(abs(s) < 60 for s in stamps), "alert times followed the wall clock jump"
    assert code == 200
    assert body["ready"] is True


# --- 4. disk full ------------------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` mounted at `where` (the test runs as root, as CI does)."""
    where.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)], check=True
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


class PausableClock(SpeedClock):
    """A SpeedClock that can stand still for a while and go on from where it stood."""

    def pause(self) -> None:
        self.stop_at = self.now()

    def resume(self) -> None:
        self.start, self.stop_at = self.now(), None
        self.go()


def fill_disk(path: Path) -> int:
    """Write zeros into `path` until the filesystem refuses (ENOSPC); bytes written."""
    written = 0
    chunk = bytes(16 * 1024)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return written


def wait_health(url: str, want: dict[str, Any], timeout_s: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = health(url)
        if all(body.get(k) == v for k, v in want.items()):
            return body
        time.sleep(0.2)
    raise AssertionError(f"/health never showed {want}: {body}")


def test_disk_full_keeps_alerts_drops_oldest_aggregates_and_says_warning(
    tmp_path: Path, local_broker: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The storage filesystem (a 4 MB tmpfs) fills up during a hub outage: SOS alerts are
    still stored and delivered, the oldest aggregates are dropped, health says `warning`."""
    # This sandbox has no NTP: without this the gateway would already report `warning`
    # for its clock, and the test could not see the disk's warning appear.
    monkeypatch.setattr("edge.runtime.gateway.time_synced", lambda: True)
    n_sos = 10
    speed = 36_000.0
    # no persistence: Mosquitto 2.0.11 crashed here (double free) autosaving this session
    hub = Mosquitto(tmp_path / "hub", extra_conf="persistence false\n")
    hub.start()
    receiver = real_hub(tmp_path, hub, "disk-full")
    receiver.start()  # it reconnects by itself after the outage
    with small_filesystem(tmp_path / "fs", "4m") as fs:
        gw = GatewayProc(fs, "h-chaos-4", local_broker.port, hub.port)
        gw.provision(n_sos=n_sos)
        clock = PausableClock(time.time(), speed)
        run = GatewayThread(settings_for(gw, hub, http="127.0.0.1:0"), clock)
        early = Collector(hub.port, "veille/v1/h-chaos-4/#")  # what arrives before the outage
        run.start()
        try:
            clock.go()
            url = str(run.gateway.url)
            before = wait_health(url, {"hub": True})
            # A clean edge for the outage: nothing in flight when the hub goes (an aggregate
            # the hub got but could not acknowledge would be both delivered and dropped).
            clock.pause()
            run.wait_drained(30)
            got = [(t, p) for t, p, _r in early.drain(0.5) if not t.endswith("/status")]
            early.close()
            hub.stop()  # outage: aggregates queue on the small disk
            clock.resume()
            time.sleep(2.0)
            filler = fill_disk(fs / "filler")
            queued_at_full = run.gateway.outbox.counts()
            time.sleep(3.0)  # 30 more simulated hours on a full disk
            for i in range(n_sos):
                sos_press(local_broker.port, i)
            time.sleep(1.0)
            clock.stop_at = clock.now()
            time.sleep(10 * FAST_TICK_S)
            queued = run.gateway.outbox.counts()
            raised = run.raised_ids()
            made = [(a.period_start, a.period) for a in run.aggregates()]
            hub.start()
            # subscribed before the gateway's reconnect backoff (>= 0.5 s) runs out
            collector = Collector(hub.port, "veille/v1/h-chaos-4/#")
            run.wait_drained(60)
            # alerts the full disk refused wait in memory and are stored once there is room
            deadline = time.monotonic() + 30
            while run.gateway.pipeline._unsaved and time.monotonic() < deadline:
                time.sleep(0.1)
            run.wait_drained(60)
            raised = run.raised_ids()  # every alert, stored at once or after the refusal
            got += [(t, p) for t, p, _r in collector.drain(1.0) if not t.endswith("/status")]
            collector.close()
            after = wait_health(url, {"hub": True})
            assert run.alive(), "the gateway stopped on a full disk"
        finally:
            run.stop()
            receiver.stop()
        status = Collector(hub.port, "veille/v1/h-chaos-4/status")
        last_status = json.loads(status.get()[1])
        status.close()
        hub.stop()
    bodies = [(t, json.loads(p)) for t, p in got]
    hub_ids = {b["id"] for t, b in bodies if t.endswith("/alert")}
    delivered = sorted(
        (parse_iso_utc(b["period_start"]), t.rpartition("/")[2])
        for t, b in bodies
        if "/aggregate/" in t
    )
    dropped = sorted(set(made) - set(delivered))
    report(
        "disk-full",
        filesystem="tmpfs 4 MB",
        filler_bytes=filler,
        queued_at_full=queued_at_full,
        queued_before_hub=queued,
        raised=len(raised),
        delivered=len(hub_ids),
        aggregates_made=len(made),
        aggregates_delivered=len(delivered),
        aggregates_dropped=len(dropped),
        duplicated=duplicates(b for t, b in bodies if t.endswith("/alert")),
        lost=len(set(raised) - hub_ids),
        health_before=before["health"],
        health_after=after["health"],
    )
    assert before["health"] == "ok"
    assert set(raised) == hub_ids, f"alerts lost on a full disk: {set(raised) - hub_ids}"
    assert len([r for r in raised]) >= n_sos
    assert dropped, "the disk never filled: no aggregate was dropped"
    assert after["outbox"]["dropped_aggregates"] == len(dropped)
    assert after["health"] == "warning"
    assert last_status["health"] == "warning"
    assert dropped[-1] < delivered[-1], "newer aggregates dropped before older ones"
