"""`veille run`: the production gateway, everything in one asyncio process.

`Gateway` builds the real parts (registry, outbox, detectors, Zigbee2MQTT adapter, BLE
scanner, wearable links, uplink, HTTP listener) and runs them until stopped; `veille demo`
runs the very same object with a simulated home in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cloud_bridge.broker import BrokerUrl, Credentials
from cloud_bridge.errors import ConfigError, VeilleError
from cloud_bridge.uplink import Uplink
from edge.adapters.zigbee import Zigbee2MqttAdapter
from edge.config import load_gateway_config
from edge.events import Event, Role
from edge.home import HomeProfile
from edge.runtime import systemd
from edge.runtime.clock import Clock, GatewayClock, time_synced
from edge.runtime.core import HomeCore, Outputs
from edge.runtime.pipeline import BleAdvert, Pipeline, WearableBytes
from edge.runtime.prompt import say, send_prompts
from edge.storage.outbox import Outbox
from edge.storage.registry import Registry

if TYPE_CHECKING:  # the BLE adapter is loaded only by a home with BLE devices (footprint)
    from edge.adapters.ble import Advertisement

_LOGGER = logging.getLogger(__name__)

VERSION = "0.1.0"
WATCHDOG_DEFAULT_S = 10.0
CLOCK_STEP_REPORT_S = 2.0


@dataclass
class GatewaySettings:
    home_id: str
    local: BrokerUrl
    hub: BrokerUrl
    storage: Path
    hub_credentials: Credentials = field(default_factory=Credentials)
    local_credentials: Credentials = field(default_factory=Credentials)
    http: tuple[str, int] | None = None  # (host, port) of the pages; port 0 = any
    ble: bool = True  # scan BLE and connect wearables (off in the demo: it feeds the radio)
    speaker: str = ""  # a text-to-speech command for check-ins (e.g. espeak-ng); "" = none


def uses_ble(profile: Any) -> bool:
    """Whether the home has a BLE device (BTHome sensor, wearable): only then does the
    gateway scan, and load bleak and bthome-ble."""
    return any(d.source != "zigbee2mqtt" for d in profile.devices)


def load_fall_model() -> Any:
    """The shipped fall model, or None with an error line (the rest of the gateway runs)."""
    try:
        from models.runtime import OnnxModel  # lazy: onnxruntime only for a home with a wearable

        return OnnxModel()
    except Exception as exc:  # a broken model file must not stop SOS and inactivity alerts
        _LOGGER.error("fall detection disabled: cannot load the fall model: %s", exc)
        return None


async def ble_inputs(scanner: AsyncIterable[Advertisement]) -> AsyncIterator[BleAdvert]:
    """The scanner's advertisements as pipeline inputs, name included."""
    async for adv in scanner:
        yield BleAdvert(adv.address, dict(adv.service_data), adv.rssi, adv.name)


async def wearable_inputs(
    device_id: str, queue: asyncio.Queue[Any]
) -> AsyncIterator[WearableBytes | Event]:
    """A wearable link's queue as pipeline inputs: `(frame, received_at)` tuples keep their
    reception time; battery `Event`s pass as they are."""
    while True:
        item = await queue.get()
        if isinstance(item, tuple):
            data, at = item
            yield WearableBytes(device_id, data, at)
        else:
            yield item


class Gateway:
    """One home's gateway: build once, `run()` until the stop event is set."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        clock: Clock | None = None,
        on_outputs: Callable[[Outputs], None] | None = None,
        seed_docs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or GatewayClock()
        settings.storage.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.registry = Registry(settings.storage)
        profile = self.registry.profile()
        if profile is None:
            raise ConfigError(
                f"no home is provisioned in {settings.storage}: "
                "run `veille provision import home.toml --storage DIR` first"
            )
        if profile.id != settings.home_id:
            raise ConfigError(
                f"the config says home {settings.home_id!r} but {settings.storage} "
                f"holds home {profile.id!r}"
            )
        self.profile = profile
        self.outbox = Outbox(settings.storage / "outbox.db", home_id=profile.id)
        docs = {
            name: doc
            for name in ("alert_book", "rules", "routine", "wearers")
            if (doc := self.registry.get_doc(name)) is not None
        }
        if (book := self.outbox.get_doc("alert_book")) is not None:
            docs["alert_book"] = book  # saved with the alert rows, so never behind the outbox
        for name, doc in (seed_docs or {}).items():
            docs.setdefault(name, doc)
        has_wearable = any(d.role is Role.WEARABLE for d in profile.devices)
        self.core = HomeCore(
            profile, docs=docs, fall_model=load_fall_model() if has_wearable else None
        )
        self.state = self.core.state
        self.state.time_synced = time_synced()
        self.uplink = Uplink(
            settings.hub,
            profile.id,
            self.outbox,
            now=self.clock.now,
            credentials=settings.hub_credentials,
            status=self._status,
            on_ack=self._ack_from_hub,
        )
        self.pipeline = Pipeline(
            self.core,
            self.outbox,
            self.clock,
            registry=self.registry,
            uplink=self.uplink,
            on_outputs=on_outputs,
            prompter=self._prompt,
        )
        self.local_adapter: Zigbee2MqttAdapter | None = None
        self._prompts: set[asyncio.Task[None]] = set()
        self.url: str | None = None
        self._ble_wanted = asyncio.Event()
        if uses_ble(profile):
            self._ble_wanted.set()

    def _ack_from_hub(self, payload: dict[str, Any]) -> None:
        """Care staff acknowledged or resolved an alert (the uplink's ack topic)."""
        self.pipeline.ack_from_hub(payload)

    def want_ble(self) -> None:
        """Start BLE scanning if it is not running (the installer looks for BLE sensors)."""
        self._ble_wanted.set()

    def apply_profile(self, profile: HomeProfile) -> None:
        """The installer pages changed the home (already saved in the registry)."""
        self.profile = profile
        self.core.apply_profile(profile)
        if uses_ble(profile):
            self._ble_wanted.set()

    def _prompt(self, check_ins: list[Any]) -> None:
        """Ask the resident (or stop asking): the prompt devices, and the speaker if any."""
        for check_in in check_ins:
            _LOGGER.info("check-in %s: %s", check_in.action, check_in.key)
            commands = self.core.prompt_commands(check_in)
            jobs = [send_prompts(self.local_adapter, commands)]
            if check_in.action == "ask" and self.settings.speaker:
                jobs.append(say(self.settings.speaker))
            for job in jobs:
                task = asyncio.get_running_loop().create_task(job, name="check-in prompt")
                self._prompts.add(task)
                task.add_done_callback(self._prompts.discard)

    def _status(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "health": "error" if self.uplink.refused else self.state.health(),
            "time_synced": self.state.time_synced,
            "outbox": self.outbox.counts(),
        }

    async def _zigbee_source(self) -> AsyncIterator[Any]:
        async with Zigbee2MqttAdapter(
            self.settings.local,
            client_id=f"veille-{self.profile.id}",
            credentials=self.settings.local_credentials,
            clock=self.clock,
        ) as adapter:
            self.local_adapter = adapter
            ready = asyncio.create_task(self._mark_ready(adapter))
            try:
                async for msg in adapter.messages():
                    yield msg
            finally:
                ready.cancel()

    async def _mark_ready(self, adapter: Any) -> None:
        await adapter.wait_ready(timeout_s=365 * 24 * 3600.0)
        self.state.local_connected = True
        self.state.ready = True
        _LOGGER.info("gateway ready: subscribed to the local broker %s", self.settings.local)
        systemd.ready()

    async def _ble_source(self) -> AsyncIterator[Any]:
        await self._ble_wanted.wait()  # a Zigbee-only home never scans, nor loads bleak
        from edge.adapters.ble import BleScanner

        try:
            async with BleScanner() as scanner:
                async for advert in ble_inputs(scanner):
                    yield advert
        except Exception as exc:  # no radio on this machine: run on Zigbee alone
            _LOGGER.error("BLE scanning unavailable: %s", exc)

    async def _wearable_source(self, device_id: str, address: str) -> AsyncIterator[Any]:
        from edge.adapters.wearable import WearableLink, bleak_connector  # lazy: bleak

        queue: asyncio.Queue[Any] = asyncio.Queue()
        link = WearableLink(device_id, queue, self.clock, bleak_connector(address, device_id))
        task = asyncio.create_task(link.run(), name=f"wearable-{device_id}")
        try:
            async for item in wearable_inputs(device_id, queue):
                yield item
        finally:
            task.cancel()

    def _check_time_sync(self) -> None:
        """Report "time not synced" until NTP syncs; then correct the times sent upstream.

        Detectors keep the steady clock they started with (a step would look like hours of
        silence); only the wire times of alerts and aggregates take the step into account.
        """
        synced = time_synced()
        if synced and not self.state.time_synced and isinstance(self.clock, GatewayClock):
            step = self.clock.wall_skew()
            if abs(step) > CLOCK_STEP_REPORT_S:
                _LOGGER.warning(
                    "the system clock stepped by %.0f s when it synced; times sent to the hub "
                    "are corrected from now on, detectors keep their steady clock",
                    step,
                )
                self.pipeline.wire_offset_s = step
        self.state.time_synced = synced

    async def _housekeeping(self) -> None:
        interval = systemd.watchdog_interval_s() or WATCHDOG_DEFAULT_S
        while True:
            self.state.hub_connected = self.uplink.connected
            self.state.hub_refused = len(self.uplink.refused)
            self.state.outbox = self.outbox.counts()  # alert rows also go on receipts
            self._check_time_sync()
            systemd.watchdog_ping()
            await asyncio.sleep(min(interval, 5.0))

    async def run(
        self, stop: asyncio.Event, extra_sources: tuple[AsyncIterator[Any], ...] = ()
    ) -> None:
        """Run until `stop` is set; then say offline, flush, close."""
        sources: list[AsyncIterator[Any]] = [self._zigbee_source(), *extra_sources]
        if self.settings.ble:
            sources.append(self._ble_source())
            for dev in self.profile.devices:
                if dev.role is Role.WEARABLE:
                    sources.append(self._wearable_source(dev.id, dev.address))
        http = None
        if self.settings.http:
            # lazy: fastapi and uvicorn are loaded only when the pages are served
            from cloud_bridge.pages.http import HttpServer
            from edge.status.app import create_app

            app = create_app(self.state, registry=self.registry, core=self.core, gateway=self)
            http = HttpServer(app, *self.settings.http)
            self.url = await http.start()
        task = asyncio.create_task(self.pipeline.run(*sources), name="pipeline")
        house = asyncio.create_task(self._housekeeping(), name="housekeeping")
        try:
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if task.done():
                task.result()  # a crash in the pipeline is raised here
        finally:
            systemd.stopping()
            house.cancel()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if http is not None:
                await http.stop()
            self.outbox.close()
            self.registry.close()


def settings_from_config(path: Path) -> GatewaySettings:
    cfg = load_gateway_config(path)
    return GatewaySettings(
        home_id=cfg.home_id,
        local=cfg.local.url,
        hub=cfg.hub.url,
        storage=cfg.storage_dir,
        hub_credentials=cfg.hub.credentials,
        local_credentials=cfg.local.credentials,
        http=cfg.http,
        speaker=cfg.speaker,
    )


def main(args: Any) -> int:
    """`veille run --config gateway.toml`."""
    os.umask(0o077)  # storage files: readable by the service user alone
    settings = settings_from_config(args.config)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        gateway = Gateway(settings)
        await gateway.run(stop)

    try:
        asyncio.run(_main())
    except OSError as exc:
        raise VeilleError(str(exc)) from exc
    return 0
