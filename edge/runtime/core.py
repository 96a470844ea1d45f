"""The gateway's brain without I/O: raw payloads in, alert states and aggregates out.

`HomeCore` decodes (Zigbee2MQTT JSON, BTHome service data, wearable frames), feeds every
detector, runs the alert book and keeps the home state. It never reads a clock: each call
carries its time. The async shell (`edge.runtime.pipeline`) does the I/O around it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from edge.alerts import AlertBook
from edge.decode.bthome import BthomeDecoder
from edge.decode.zigbee2mqtt import Zigbee2MqttDecoder, prompt_commands
from edge.detect.aggregates import HourlyAggregator
from edge.detect.inactivity import RoutineDetector
from edge.detect.routine import RoutineModel
from edge.detect.rules import RuleDetector
from edge.events import (
    AccelFrame,
    Aggregate,
    Alert,
    CheckIn,
    Emission,
    Event,
    EventKind,
    Finding,
    Role,
)
from edge.home import HomeProfile
from edge.storage.state import HomeState

if TYPE_CHECKING:  # numpy: only with a wearable (see _make_wearables)
    from edge.decode.wearable import WearableStream
    from edge.detect.fall import FallDetector, Scorer

_LOGGER = logging.getLogger(__name__)

WEARABLE_HEARTBEAT_S = 10.0


@dataclass
class Outputs:
    """What goes upstream (alerts, aggregates) and what stays home (check-ins to prompt)."""

    alerts: list[Alert] = field(default_factory=list)
    aggregates: list[Aggregate] = field(default_factory=list)
    check_ins: list[CheckIn] = field(default_factory=list)  # never sent to the hub

    def __bool__(self) -> bool:
        return bool(self.alerts or self.aggregates)

    def extend(self, other: Outputs) -> None:
        self.alerts.extend(other.alerts)
        self.aggregates.extend(other.aggregates)
        self.check_ins.extend(other.check_ins)


class HomeCore:
    """Detectors, alert book and home state for one home."""

    def __init__(
        self,
        profile: HomeProfile,
        *,
        docs: Mapping[str, Mapping[str, Any]] | None = None,
        fall_model: Scorer | None = None,
        routine: bool = True,
    ) -> None:

        docs = docs or {}
        self.profile = profile
        self.tz = ZoneInfo(profile.timezone)
        self.state = HomeState(profile.id, self.tz)
        self.book = AlertBook(profile.id, docs.get("alert_book"))
        self.state.open_alerts = self.book.open_alerts()  # a restart shows what is still open
        self.rules = RuleDetector(profile, dict(docs.get("rules") or {}) or None)
        self.hourly = HourlyAggregator(profile, self.tz)
        self.zigbee = Zigbee2MqttDecoder(profile)
        self.bthome = BthomeDecoder(profile)
        self.fall_model = fall_model
        self.routine: RoutineDetector | None = None
        if routine:
            model_doc = docs.get("routine")
            self._make_routine(RoutineModel.from_dict(dict(model_doc)) if model_doc else None)
        self._wearables: dict[str, FallDetector] = {}
        self._wearer_docs: dict[str, Any] = dict(docs.get("wearers") or {})
        self._streams: dict[str, WearableStream] = {}
        self._last_heartbeat: dict[str, float] = {}
        self._make_wearables()

    def _make_routine(self, model: RoutineModel | None) -> None:
        rooms = {r.name: r.kind for r in self.profile.rooms}
        self.routine = RoutineDetector(rooms, self.tz, self.profile.thresholds, model)

    def _make_wearables(self) -> None:
        """A fall detector and a stream per wearable of the profile (kept if already there)."""
        wearables = [d for d in self.profile.devices if d.role is Role.WEARABLE]
        if not wearables or self.fall_model is None:
            return
        # lazy: numpy is loaded only by a home with a wearable (a Zigbee-only home never)
        from edge.decode.wearable import WearableStream
        from edge.detect.fall import FallDetector, upright_from_doc

        for dev in wearables:
            if dev.id in self._wearables:
                continue
            self._wearables[dev.id] = FallDetector(
                self.fall_model,
                confirm_s=self.profile.thresholds.fall_confirm_s,
                device_id=dev.id,
                room=dev.room,
                offline_after_s=None,  # the rule detector watches every device's silence
                upright=upright_from_doc(self._wearer_docs.get(dev.id)),  # learned before
            )
            self._streams[dev.id] = WearableStream(dev.id, room=dev.room)

    def wearable_detector(self, device_id: str) -> FallDetector | None:
        """The running fall detector of a wearable, or None (the installer's wearer check)."""
        return self._wearables.get(device_id)

    def apply_profile(self, profile: HomeProfile) -> None:
        """An installer changed the home: every part sees it, learned state is kept."""

        self.profile = profile
        self.zigbee.update_profile(profile)
        self.bthome.update_profile(profile)
        self.rules = RuleDetector(profile, self.rules.state_dict())
        self.hourly = HourlyAggregator(profile, self.tz)
        if self.routine is not None:
            self._make_routine(self.routine.model)
        self._make_wearables()

    # --- inputs ----------------------------------------------------------------------------
    def zigbee_message(
        self, topic: str, payload: bytes, at: float, retained: bool = False
    ) -> Outputs:
        result = self.zigbee.decode(topic, payload, at, retained=retained)
        self.state.note_bridge(result, at)
        if result.unknown:
            self.state.note_unknown("zigbee2mqtt", result.unknown, at)
        return self._events(list(result.events))

    def ble_advert(
        self,
        address: str,
        service_data: Mapping[str, bytes],
        rssi: float,
        at: float,
        name: str | None = None,
    ) -> Outputs:
        result = self.bthome.decode(address, service_data, int(rssi), at, name)
        if result.unknown:
            self.state.note_unknown("bthome", address, at, rssi)
        return self._events(list(result.events))

    def wearable_frame(self, device_id: str, data: bytes, at: float) -> Outputs:
        stream = self._streams.get(device_id)
        detector = self._wearables.get(device_id)
        if stream is None or detector is None:
            self.state.note_unknown("wearable", device_id, at)
            return Outputs()
        frame: AccelFrame | Event | None = stream.feed(data, at)
        out = Outputs()
        if frame is None:
            return out
        if isinstance(frame, Event):  # the wearable's button
            return self.event(frame)
        if at - self._last_heartbeat.get(device_id, -1e18) >= WEARABLE_HEARTBEAT_S:
            self._last_heartbeat[device_id] = at
            dev = self.profile.device(device_id)
            out.extend(
                self.event(
                    Event(
                        device_id,
                        EventKind.HEARTBEAT,
                        None,
                        at,
                        "wearable",
                        dev.room if dev else None,
                        None,
                        Role.WEARABLE,
                    )
                )
            )
        out.extend(self._apply(detector.feed_frame(frame), at))
        return out

    def event(self, event: Event) -> Outputs:
        """One normalized event (decoded here, or from a replay / the wearable's button)."""
        return self._events([event])

    def _events(self, events: list[Event]) -> Outputs:
        out = Outputs()
        for ev in events:
            self.state.note_event(ev)
            emissions: list[Emission] = []
            emissions += self.rules.feed(ev)
            emissions += self.hourly.feed(ev)
            if self.routine is not None:
                emissions += self.routine.feed(ev)
            if ev.role is Role.WEARABLE and ev.device_id in self._wearables:
                emissions += self._wearables[ev.device_id].feed(ev)
            out.extend(self._apply(emissions, ev.at))
        return out

    def hub_ack(self, payload: Mapping[str, Any]) -> Outputs:
        alerts = self.book.on_ack(payload)
        self._note(alerts)
        return Outputs(alerts=alerts)

    def tick(self, now: float) -> Outputs:
        emissions: list[Emission] = []
        emissions += self.rules.advance(now)
        emissions += self.hourly.advance(now)
        if self.routine is not None:
            emissions += self.routine.advance(now)
        for detector in self._wearables.values():
            emissions += detector.advance(now)
        out = self._apply(emissions, now)
        self.state.devices = self.rules.device_status(now)
        return out

    # --- outputs ---------------------------------------------------------------------------
    def _apply(self, emissions: Sequence[Emission], now: float) -> Outputs:
        """Alerts through the book, check-ins noted, aggregates completed with the home's
        sensor health at `now`: what leaves the core is whole (the shell only encodes it)."""
        out = Outputs()
        for item in emissions:
            if isinstance(item, Finding):
                out.alerts.extend(self.book.apply(item))
            elif isinstance(item, CheckIn):
                out.check_ins.append(item)
                self.state.note_check_in(item)
            else:
                aggregate = item
                if "sensor_health" not in aggregate.body:
                    health = self.sensor_health(now)
                    aggregate = replace(aggregate, body={**aggregate.body, "sensor_health": health})
                out.aggregates.append(aggregate)
                if aggregate.period == "daily":
                    self.state.note_daily(aggregate)
        self._note(out.alerts)
        return out

    def _note(self, alerts: list[Alert]) -> None:
        if alerts:
            self.state.note_alerts(alerts, self.book.open_alerts())

    def prompt_commands(self, check_in: CheckIn) -> list[tuple[str, bytes]]:
        """Zigbee2MQTT `set` commands that make the home's prompt devices ask (or stop)."""
        return prompt_commands(
            self.profile, self.zigbee.capabilities, stop=check_in.action != "ask"
        )

    def sensor_health(self, now: float) -> dict[str, int]:
        return {**self.rules.health(now), "unknown_devices": len(self.state.unknown)}

    def docs(self) -> dict[str, dict[str, Any]]:
        """Learned and open state to persist (registry documents)."""
        out: dict[str, dict[str, Any]] = {
            "alert_book": self.book.state_dict(),
            "rules": self.rules.state_dict(),
        }
        if self.routine is not None:
            out["routine"] = self.routine.model.to_dict()
        wearers = {d: doc for d, det in self._wearables.items() if (doc := det.wearer_doc())}
        if wearers:
            out["wearers"] = {**self._wearer_docs, **wearers}
        return out
