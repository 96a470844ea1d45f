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
DRAIN_TIMEOUT_S = 60.0  # real seconds to wait for the outbox to drain at the end
HISTORY_DAYS = 14  # simulated days of routine used to seed the learned model
SAMPLES_PER_FRAME = 25
STILL_AFTER_FALL_S = 120.0
TRACE_VARIETY = 4  # different real traces per kind the simulated wearable replays
# the demo's installer password (printed); a real home sets its own with `veille provision`
DEMO_INSTALLER_SECRET = "installateur"  # noqa: S105
DEMO_STAFF_SECRET = "soignant"  # noqa: S105  the demo's care console password


class SpeedClock:
    """Simulated time: `start` + `speed` x real time elapsed since `go()`, frozen at `stop_at`.

    It stands still until `go()` (start-up does not eat simulated hours) and after `stop_at`
    (draining the outbox at the end does not make days pass with no events).
    """

    def __init__(self, start: float, speed: float) -> None:
        self.start = start
        self.speed = speed
        self.stop_at: float | None = None
        self._m0: float | None = None

    def go(self) -> None:
        self._m0 = time.monotonic()

    def now(self) -> float:
        if self._m0 is None:
            return self.start
        t = self.start + (time.monotonic() - self._m0) * self.speed
        return t if self.stop_at is None else min(t, self.stop_at)


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

    def _schedule_wearable(self, at: float, kind: str, duration_s: float) -> None:
        from edge.sim.wearable import encode_frames

        name = "fall" if kind == "fall" else "adl"
        trace = self._traces[(name, self._n % TRACE_VARIETY)]
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
            topic, payload = self.prompts.get_nowait()
            stamp = datetime.fromtimestamp(now, self.sim_tz).strftime("%a %H:%M")
            device = topic.removeprefix("zigbee2mqtt/").removesuffix("/set")
            if payload in stops:
                print(f"[home] {stamp}  check-in over: {device} stops", flush=True)
                continue
            answer = self.sim.answer_check_in(now)
            said = "the resident answers" if answer is not None else "nobody answers"
            print(
                f"[home] {stamp}  check-in: {device} asks the resident "
                f"{payload.decode(errors='replace')} ({said})",
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

    async def run(self, until: float | None) -> None:
        while until is None or self.clock.now() < until:
            self.step(self.clock.now() if until is None else min(self.clock.now(), until))
            await asyncio.sleep(DRIVE_STEP_S)
        self.step(until)


def alert_printer(tz: ZoneInfo) -> Callable[[Mapping[str, Any], bool], None]:
    """Print each alert state the hub receives, with the home's local time."""
    from cloud_bridge.contract import parse_iso_utc

    def show(payload: Mapping[str, Any], new: bool) -> None:
        if not new:
            return
        at = datetime.fromtimestamp(parse_iso_utc(payload["at"]), tz).strftime("%a %H:%M")
        ev = payload.get("evidence") or {}
        room = f" ({payload['room']})" if payload.get("room") else ""
        print(
            f"[hub] {at}  {payload['type']:<20} {payload['severity']:<8} "
            f"{payload['state']:<12}{room} {ev}",
            flush=True,
        )

    return show


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

        clock = SpeedClock(start, args.speed)
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
        gateway.pipeline.tick_s = max(MIN_TICK_S, min(gateway.pipeline.tick_s, 60.0 / args.speed))

        hub = HubReceiver(
            hub_url, SqliteHubStore(Path(storage) / "hub.db"), on_alert=alert_printer(tz)
        )
        hub.start()
        stack.callback(hub.stop)
        console = None
        if args.http:
            from cloud_bridge.console import start_console

            host = args.http.rpartition(":")[0] or "127.0.0.1"
            console = await start_console(hub, f"{host}:0", None, staff_password=DEMO_STAFF_SECRET)
            stack.push_async_callback(console.stop)

        sim = SimulatedHome(profile, start, args.seed, args.scenario, tz)
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
            f"Veille demo: home {home_id}, scenario {args.scenario}, x{args.speed:g} speed",
            flush=True,
        )
        if gateway.url:
            print(f"Status page (PIN {args.family_pin}): {gateway.url}/", flush=True)
            print(f"Installer ({DEMO_INSTALLER_SECRET!r}): {gateway.url}/installer", flush=True)
        if console is not None:
            print(f"Care console ({DEMO_STAFF_SECRET!r}): {console.url}/", flush=True)
        for at, what in sim.incidents:
            stamp = datetime.fromtimestamp(at, tz).strftime("%a %H:%M")
            print(f"  scripted: {stamp} {what}", flush=True)

        clock.stop_at = end
        if wearable is not None:
            await asyncio.to_thread(driver.load_traces)
        await asyncio.to_thread(gateway_ready_wait, gateway)
        clock.go()
        drive = asyncio.create_task(driver.run(end), name="sim")
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
        print(f"veille demo: outbox not drained in {DRAIN_TIMEOUT_S:.0f} s", flush=True)
        return 1
    await asyncio.sleep(0.3)  # the hub's last PUBACKed messages are stored before we close
    simulated = timedelta(seconds=round(end - start))
    alerts = hub.store.alerts()
    print(
        f"Veille demo done: {simulated} simulated, {len(alerts)} alerts at the hub, "
        f"{gateway.uplink.delivered} messages delivered",
        flush=True,
    )
    return 0


def main(args: Any) -> int:
    if args.speed <= 0:
        raise VeilleError("--speed must be positive")
    if args.duration is not None and args.duration <= 0:
        raise VeilleError("--duration must be positive")
    return asyncio.run(run_demo(args))
