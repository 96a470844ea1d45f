"""`veille demo`: a simulated home driven through the real gateway, to a real hub receiver.

The simulator publishes Zigbee2MQTT payloads on the local broker, hands BTHome
advertisement bytes to the BLE decode path and wearable GATT frames to the wearable decode
path; the `Gateway` of `veille run` does the rest. With no `--local`/`--hub`, embedded
pure-Python brokers (amqtt, MQTT 3.1.1) stand in, so it runs on a machine with nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from cloud_bridge.broker import BrokerUrl, MqttLink, parse_broker_url
from cloud_bridge.errors import VeilleError
from cloud_bridge.hub import HubReceiver
from cloud_bridge.hub_store import SqliteHubStore
from cloud_bridge.pages.http import parse_listen
from edge.runtime.gateway import Gateway, GatewaySettings
from edge.runtime.pipeline import BleAdvert, WearableBytes

_LOGGER = logging.getLogger(__name__)

DRIVE_STEP_S = 0.02  # real seconds between simulator steps
MIN_TICK_S = 0.05  # real seconds: the fastest the demo ticks the detectors
WARP_SPEED = 900.0  # simulated s per real s before the first incident (at lower speeds)
FIRST_INCIDENT_LEAD_S = 20 * 60.0  # the story slows down this long before it
WALK_POLL_S = 1.0  # real seconds between looks at whether a walk-through started
WALK_WEARABLE_TRACES = 3
ADL_WALK_S = 30.0  # simulated seconds between the walk-through's walks (a trace is ~25 s)
DRAIN_TIMEOUT_S = 60.0  # real seconds to wait for the outbox to drain at the end
HISTORY_DAYS = 14  # simulated days of routine used to seed the learned model
SAMPLES_PER_FRAME = 25
STILL_AFTER_FALL_S = 120.0
TRACE_VARIETY = 4  # different real traces per kind the simulated wearable replays
# the demo's installer password (printed); a real home sets its own with `veille provision`
DEMO_INSTALLER_SECRET = "installateur"  # noqa: S105
DEMO_STAFF_SECRET = "soignant"  # noqa: S105  the demo's care console password
INCIDENT_WORDS = {
    "sos": "appui sur le bouton d'appel",
    "sensor_silent": "le détecteur de la cuisine se tait",
    "fall": "chute",
    "night_exit": "sortie de nuit sans retour rapide",
    "inactivity": "longue immobilité",
}


class SpeedClock:
    """Simulated time: `start` + `speed` x real time elapsed since `go()`, frozen at `stop_at`.

    It stands still until `go()` (start-up does not eat simulated hours) and after `stop_at`
    (draining the outbox at the end does not make days pass with no events).
    """

    def __init__(
        self, start: float, speed: float, warp_until: float | None = None, warp_speed: float = 0.0
    ) -> None:
        self.start = start
        self.speed = speed
        # before `warp_until` the clock runs at `warp_speed` (the quiet morning before the
        # story's first incident goes by in seconds), then at `speed`
        self.warp_until = warp_until if warp_until is not None and warp_speed > speed else None
        self.warp_speed = warp_speed
        self.stop_at: float | None = None
        self._m0: float | None = None

    def go(self) -> None:
        self._m0 = time.monotonic()

    def now(self) -> float:
        if self._m0 is None:
            return self.start
        real = time.monotonic() - self._m0
        if self.warp_until is None:
            t = self.start + real * self.speed
        else:
            warp_real = max(0.0, self.warp_until - self.start) / self.warp_speed
            t = (
                self.start + real * self.warp_speed
                if real < warp_real
                else max(self.start, self.warp_until) + (real - warp_real) * self.speed
            )
        return t if self.stop_at is None else min(t, self.stop_at)


def walking_blocks(trace: np.ndarray) -> int:
    """How many of the trace's blocks the wearer's upright tracker takes as walking."""
    from models.features import WALK_BLOCK_N, walking_direction

    return sum(
        walking_direction(trace[s : s + WALK_BLOCK_N]) is not None
        for s in range(0, trace.shape[0] - WALK_BLOCK_N + 1, WALK_BLOCK_N)
    )


def warp_target(start: float, incidents: list[tuple[float, str]]) -> float | None:
    """Until when the demo may hurry: a little before its first scripted incident."""
    if not incidents:
        return None
    until = incidents[0][0] - FIRST_INCIDENT_LEAD_S
    return until if until > start else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def embedded_broker(name: str) -> AsyncIterator[BrokerUrl]:
    """A pure-Python MQTT 3.1.1 broker (amqtt) on a free loopback port."""
    from amqtt.broker import Broker

    for noisy in ("amqtt", "transitions"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    port = _free_port()
    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}}})
    await broker.start()
    _LOGGER.info("embedded %s broker on 127.0.0.1:%d", name, port)
    try:
        yield BrokerUrl("127.0.0.1", port, tls=False, version=4)
    finally:
        with contextlib.suppress(Exception):
            await broker.shutdown()


def sim_start(tz: ZoneInfo) -> float:
    """06:00 local today: the resident's day starts with the simulation."""
    today = datetime.now(tz).replace(hour=6, minute=0, second=0, microsecond=0)
    return today.timestamp()


def seed_routine(profile: Any, start: float, seed: int, tz: ZoneInfo) -> dict[str, Any]:
    """Learn the resident's routine from simulated past days (no week-long wait in a demo);
    the resident answered every check-in of those days."""
    from edge.commands.eval_inactivity import answer_until, replay
    from edge.detect.inactivity import RoutineDetector
    from edge.sim import history_events

    rooms = {r.name: r.kind for r in profile.rooms}
    detector = RoutineDetector(rooms, tz, profile.thresholds)
    events = history_events(profile, start, HISTORY_DAYS, seed, tz)
    replay(detector, events, start, answer=answer_until())
    return dict(detector.model.to_dict())


class SimDriver:
    """Moves the simulated home forward with the clock and delivers what its sensors send."""

    def __init__(
        self,
        sim: Any,
        clock: SpeedClock,
        local: MqttLink | None,
        wearable_id: str | None,
        seed: int,
    ):
        self.sim = sim
        self.clock = clock
        self.local = local
        self.wearable_id = wearable_id
        self.seed = seed
        self.sim_tz = getattr(sim, "_tz", None)
        self.radio: asyncio.Queue[Any] = asyncio.Queue()
        self.prompts: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()  # `set` commands
        self._frames: list[tuple[float, int, bytes]] = []
        self._traces: dict[tuple[str, int], Any] = {}
        self._last_sample = np.array([0, -1000, 0], dtype=np.int16)  # upright, at rest
        self._seq = 0
        self._n = 0
        self.published = 0
        self._walk_seen: float | None = None
        self._walk_trace = 0  # the real daily-activity trace with the most walking in it

    async def radio_source(self) -> AsyncIterator[Any]:
        """What the BLE radio hears: BTHome adverts and the wearable's GATT frames."""
        while True:
            yield await self.radio.get()

    def load_traces(self) -> None:
        """Read the few real traces replayed (slow: done before the clock starts)."""
        from edge.sim.wearable import wearable_trace

        for name in ("fall", "adl"):
            for k in range(TRACE_VARIETY):
                self._traces[(name, k)] = wearable_trace(name, self.seed + k)
        self._walk_trace = max(
            range(TRACE_VARIETY), key=lambda k: walking_blocks(self._traces[("adl", k)])
        )

    def _schedule_wearable(
        self, at: float, kind: str, duration_s: float, variety: int | None = None
    ) -> None:
        from edge.sim.wearable import encode_frames

        name = "fall" if kind == "fall" else "adl"
        trace = self._traces[(name, self._n % TRACE_VARIETY if variety is None else variety)]
        if kind == "heartbeat":  # a keep-alive: the wearer as still as the last samples showed
            trace = np.repeat(self._last_sample[None, :], SAMPLES_PER_FRAME, axis=0)
        elif duration_s > 0:
            trace = trace[: max(SAMPLES_PER_FRAME, int(duration_s * 50))]
        self._last_sample = trace[-1].copy()
        if kind == "fall":  # then lying still on the floor: the stream goes on
            still = np.repeat(self._last_sample[None, :], int(STILL_AFTER_FALL_S * 50), axis=0)
            trace = np.concatenate([trace, still])
        frames = encode_frames(trace, start_seq=self._seq, per_frame=SAMPLES_PER_FRAME)
        self._seq = (self._seq + len(trace)) & 0xFFFF  # the sequence counts samples
        for k, frame in enumerate(frames):
            self._n += 1
            heapq.heappush(self._frames, (at + (k + 1) * SAMPLES_PER_FRAME / 50, self._n, frame))

    def on_set(self, loop: asyncio.AbstractEventLoop, msg: Any) -> None:
        """The gateway drove a device (paho's thread): hand it to the simulation."""
        item = (str(msg.topic), bytes(msg.payload))
        loop.call_soon_threadsafe(self.prompts.put_nowait, item)

    def _prompted(self, now: float) -> None:
        """A prompt device sounds: show it; the resident answers when able to."""
        from edge.decode.zigbee2mqtt import PROMPT_STOP

        stops = {json.dumps(v, separators=(",", ":")).encode() for v in PROMPT_STOP.values()}
        while not self.prompts.empty():
            _topic, payload = self.prompts.get_nowait()
            stamp = sim_stamp(now, self.sim_tz)
            if payload in stops:
                print(f"[logement] {stamp}  fin de la question « ça va ? »", flush=True)
                continue
            answer = self.sim.answer_check_in(now)
            said = "la personne répond" if answer is not None else "personne ne répond"
            print(
                f"[logement] {stamp}  le carillon demande « ça va ? » ({said})",
                flush=True,
            )

    def step(self, now: float) -> None:
        from edge.sim import BleOut, WearableOut, Z2MOut

        self._prompted(now)
        for out in self.sim.until(now):
            if isinstance(out, Z2MOut) and self.local is not None:
                self.local.client.publish(out.topic, out.payload, qos=1)
                self.published += 1
            elif isinstance(out, BleOut):
                self.radio.put_nowait(BleAdvert(out.address, dict(out.service_data), out.rssi))
            elif isinstance(out, WearableOut) and self.wearable_id:
                self._schedule_wearable(out.at, out.kind, out.duration_s)
        while self._frames and self._frames[0][0] <= now and self.wearable_id:
            _at, _n, frame = heapq.heappop(self._frames)
            self.radio.put_nowait(WearableBytes(self.wearable_id, frame, self.clock.now()))

    def walk_if_started(self, started_at: float | None, now: float) -> None:
        """The installer pressed "Commencer le test": the simulated resident walks it."""
        if started_at is None or started_at == self._walk_seen:
            return
        self._walk_seen = started_at
        print(
            f"[logement] {sim_stamp(now, self.sim_tz)}  test de parcours : la personne fait "
            "agir chaque capteur",
            flush=True,
        )
        for line in self.sim.walk_through(now):
            print(f"[logement] {sim_stamp(now, self.sim_tz)}  {line}", flush=True)
        if self.wearable_id:  # wear the sensor and walk a few steps (a real walking trace)
            for k in range(WALK_WEARABLE_TRACES):
                self._schedule_wearable(now + k * ADL_WALK_S, "adl", 0.0, self._walk_trace)

    async def run(
        self, until: float | None, walk: Callable[[], float | None] | None = None
    ) -> None:
        polled = 0.0
        while until is None or self.clock.now() < until:
            now = self.clock.now() if until is None else min(self.clock.now(), until)
            if walk is not None and time.monotonic() - polled >= WALK_POLL_S:
                polled = time.monotonic()
                self.walk_if_started(walk(), now)
            self.step(now)
            await asyncio.sleep(DRIVE_STEP_S)
        self.step(until)


DAYS_FR = ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim.")


def sim_stamp(at: float, tz: Any) -> str:
    """`mer. 10:30`: the simulated home's local time (the only clock the story shows)."""
    local = datetime.fromtimestamp(at, tz)
    return f"{DAYS_FR[local.weekday()]} {local:%H:%M}"


def alert_line(payload: Mapping[str, Any], tz: Any, rooms: Mapping[str, str]) -> str:
    """One readable French line for an alert state the hub received."""
    from cloud_bridge.contract import parse_iso_utc
    from cloud_bridge.pages import i18n

    at = sim_stamp(parse_iso_utc(payload["at"]), tz)
    room = payload.get("room")
    where = f" — {i18n.room_name(room, rooms.get(room), 'fr')}" if room else ""
    words = i18n.evidence_words(dict(payload.get("evidence") or {}), "fr")
    title = i18n.alert_name(str(payload["type"]), "fr")
    state = i18n.state_name(str(payload["state"]), "fr")
    severity = i18n.severity_name(str(payload["severity"]), "fr")
    return f"[centre] {at}  {title}{where} ({severity}) : {words or '—'} · {state}"


def alert_printer(
    tz: ZoneInfo, rooms: Mapping[str, str] | None = None
) -> Callable[[Mapping[str, Any], bool], None]:
    """Print each alert state the hub receives, with the home's local (simulated) time."""

    def show(payload: Mapping[str, Any], new: bool) -> None:
        if new:
            print(alert_line(payload, tz, rooms or {}), flush=True)

    return show


def log_to_file(path: Path) -> None:
    """The technical log goes to `path` (from INFO); only errors still reach the terminal."""
    root = logging.getLogger()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for old in list(root.handlers):
        if isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
            old.setLevel(logging.ERROR)
    root.addHandler(handler)
    root.setLevel(min(root.level, logging.INFO))  # the file keeps what happened, in detail


async def run_demo(args: Any) -> int:
    from edge.sim import SimulatedHome, bridge_devices_payload, demo_profile
    from edge.storage.registry import Registry

    home_id = args.home_id
    profile = demo_profile(home_id)
    tz = ZoneInfo(profile.timezone)
    start = sim_start(tz)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        storage = args.storage or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        log_path = (
            Path(storage) / "demo.log"
            if args.storage
            else Path(tempfile.gettempdir()) / f"veille-demo-{home_id}.log"
        )
        log_to_file(log_path)
        local = (
            parse_broker_url(args.local)
            if args.local
            else await stack.enter_async_context(embedded_broker("local"))
        )
        hub_url = (
            parse_broker_url(args.hub)
            if args.hub
            else await stack.enter_async_context(embedded_broker("hub"))
        )
        registry = Registry(Path(storage))
        registry.save_profile(profile)
        registry.set_secret("family_pin", str(args.family_pin))
        registry.set_secret("installer", DEMO_INSTALLER_SECRET)
        registry.close()

        seed_docs = {}
        if args.scenario in ("inactivity", "all"):
            seed_docs["routine"] = seed_routine(profile, start, args.seed, tz)

        sim = SimulatedHome(profile, start, args.seed, args.scenario, tz)
        clock = SpeedClock(start, args.speed, warp_target(start, sim.incidents), WARP_SPEED)
        settings = GatewaySettings(
            home_id=home_id,
            local=local,
            hub=hub_url,
            storage=Path(storage),
            http=parse_listen(args.http) if args.http else None,
            ble=False,
        )
        gateway = Gateway(settings, clock=clock, seed_docs=seed_docs)
        # about a simulated minute between detector ticks (a check-in's answer window is 10)
        fastest = max(args.speed, WARP_SPEED if clock.warp_until is not None else 0.0)
        gateway.pipeline.tick_s = max(MIN_TICK_S, min(gateway.pipeline.tick_s, 60.0 / fastest))

        rooms = {r.name: str(r.kind) for r in profile.rooms}
        hub = HubReceiver(
            hub_url,
            SqliteHubStore(Path(storage) / "hub.db"),
            on_alert=alert_printer(tz, rooms),
        )
        hub.start()
        stack.callback(hub.stop)
        console = None
        if args.http:
            from cloud_bridge.console import start_console

            host = args.http.rpartition(":")[0] or "127.0.0.1"
            console = await start_console(hub, f"{host}:0", None, staff_password=DEMO_STAFF_SECRET)
            stack.push_async_callback(console.stop)

        wearable = next((d.id for d in profile.devices if d.role.value == "wearable"), None)
        driver = SimDriver(sim, clock, None, wearable, args.seed)

        def watch_sets() -> None:  # what the gateway drives, as Zigbee2MQTT would see it
            zigbee.client.subscribe("zigbee2mqtt/+/set", qos=1)

        zigbee = MqttLink(
            local,
            f"zigbee2mqtt-sim-{home_id}",
            name="zigbee2mqtt-sim",
            on_connect=watch_sets,
            on_message=lambda msg: driver.on_set(loop, msg),
        )
        driver.local = zigbee
        zigbee.start()
        stack.callback(zigbee.stop)
        if not await asyncio.to_thread(zigbee.connected.wait, 10):
            raise VeilleError(f"cannot reach the local broker {local}")
        zigbee.client.publish(
            "zigbee2mqtt/bridge/devices", bridge_devices_payload(profile), 1, retain=True
        )
        zigbee.client.publish("zigbee2mqtt/bridge/state", b'{"state":"online"}', 1, retain=True)

        end = start + args.duration if args.duration else None

        gw_task = asyncio.create_task(gateway.run(stop, (driver.radio_source(),)), name="gateway")
        while gateway.url is None and args.http and not gw_task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.02)  # the URL is known once uvicorn has bound its port
        print(
            f"Veille démo : logement {home_id} ({profile.resident or 'personne simulée'}), "
            f"scénario {args.scenario}, vitesse x{args.speed:g}",
            flush=True,
        )
        if gateway.url:
            print(f"Page de la famille (code {args.family_pin}) : {gateway.url}/", flush=True)
            print(
                f"Page de l'installateur (code « {DEMO_INSTALLER_SECRET} ») : "
                f"{gateway.url}/installer",
                flush=True,
            )
        if console is not None:
            print(
                f"Console des soignants (votre nom, mot de passe « {DEMO_STAFF_SECRET} ») : "
                f"{console.url}/",
                flush=True,
            )
        print(f"Journal technique : {log_path}", flush=True)
        if clock.warp_until is not None:
            print(
                f"  (le début de matinée passe vite : x{WARP_SPEED:g} jusqu'à "
                f"{sim_stamp(clock.warp_until, tz)}, puis x{args.speed:g})",
                flush=True,
            )
        for at, what in sim.incidents:
            print(f"  prévu : {sim_stamp(at, tz)} {INCIDENT_WORDS.get(what, what)}", flush=True)

        clock.stop_at = end
        if wearable is not None:
            await asyncio.to_thread(driver.load_traces)
        await asyncio.to_thread(gateway_ready_wait, gateway)
        clock.go()

        def walk_started() -> float | None:
            started = (gateway.registry.get_doc("walkthrough") or {}).get("started_at")
            return float(started) if isinstance(started, int | float) else None

        drive = asyncio.create_task(driver.run(end, walk_started), name="sim")
        code = 0
        try:
            waiters = {gw_task, drive, asyncio.create_task(stop.wait())}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if gw_task.done():
                gw_task.result()
            if end is not None and drive.done() and not stop.is_set():
                code = await _finish(gateway, hub, start, end)
        finally:
            stop.set()
            drive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drive
            await gw_task
        return code


def gateway_ready_wait(gateway: Gateway, timeout_s: float = 30.0) -> None:
    """Block until the gateway is subscribed to the local broker (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while not gateway.state.ready and time.monotonic() < deadline:
        time.sleep(0.02)


async def _finish(gateway: Gateway, hub: HubReceiver, start: float, end: float) -> int:
    """Let the last ticks run, then wait for the outbox to drain to the hub."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    await asyncio.sleep(2 * gateway.pipeline.tick_s)
    while time.monotonic() < deadline:
        counts = gateway.outbox.counts()
        if counts.get("alerts", 0) == 0 and counts.get("aggregates", 0) == 0:
            break
        await asyncio.sleep(0.1)
    else:
        print(
            f"veille demo : la file d'envoi ne s'est pas vidée en {DRAIN_TIMEOUT_S:.0f} s",
            flush=True,
        )
        return 1
    await asyncio.sleep(0.3)  # the hub's last PUBACKed messages are stored before we close
    simulated = timedelta(seconds=round(end - start))
    alerts = hub.store.alerts()
    print(
        f"Démo terminée : {simulated} simulées, {len(alerts)} alertes au centre, "
        f"{gateway.uplink.delivered} messages remis",
        flush=True,
    )
    return 0


def main(args: Any) -> int:
    if args.speed <= 0:
        raise VeilleError("--speed must be positive")
    if args.duration is not None and args.duration <= 0:
        raise VeilleError("--duration must be positive")
    return asyncio.run(run_demo(args))
