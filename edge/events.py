"""The one typed event model: adapters produce `Event`s, detectors consume them.

Detectors answer with `Finding`s (a condition raised, cancelled or resolved, keyed by what it
is about) and `Aggregate`s; the alert book (`edge.alerts`) turns findings into `Alert` state
messages with stable ids. Everything here is pure data: no I/O, no clock.

Times are float seconds on the pipeline's time basis: event time in replays and the
simulator, the gateway's monotonic-anchored clock in production (see `edge.runtime.clock`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from cloud_bridge.contract import AlertState, AlertType, Severity, iso_utc  # the wire vocabulary

if TYPE_CHECKING:  # only wearable frames hold arrays: a Zigbee-only gateway never loads numpy
    import numpy as np


class EventKind(StrEnum):
    """Physical signal an event reports; the device's role says what it means."""

    MOTION = "motion"  # bool, PIR / occupancy
    PRESENCE = "presence"  # bool, mmWave presence, bed or chair pressure mat
    OPEN = "open"  # bool, True when a contact opens (Zigbee2MQTT's contact is the inverse)
    ACTION = "action"  # str, button press kind: single, double, long, ...
    WATER_LEAK = "water_leak"  # bool
    VIBRATION = "vibration"  # bool
    TEMPERATURE = "temperature"  # float, degrees Celsius
    HUMIDITY = "humidity"  # float, percent
    POWER = "power"  # float, watts
    BATTERY = "battery"  # float, percent
    LINKQUALITY = "linkquality"  # float, Zigbee LQI 0..255 or BLE RSSI in dBm
    FLUSH = "flush"  # bool, toilet flush sensor
    SWITCH = "switch"  # bool, a light switch turned on/off by a person
    HEARTBEAT = "heartbeat"  # no value: the device spoke (used for offline detection only)


class Role(StrEnum):
    """What an installer says a device is for (DESIGN.md section 7)."""

    MOTION = "motion"
    PRESENCE = "presence"
    DOOR_ENTRANCE = "door_entrance"
    DOOR_FRIDGE = "door_fridge"
    DOOR = "door"  # any other door, cupboard or drawer contact
    BED = "bed"
    CHAIR = "chair"
    SOS_BUTTON = "sos_button"
    WEARABLE = "wearable"
    TEMPERATURE = "temperature"
    WATER_LEAK = "water_leak"
    POWER = "power"  # an appliance plug: kettle, TV, ...
    TOILET_FLUSH = "toilet_flush"
    LIGHT_SWITCH = "light_switch"
    CHECKIN_BUTTON = "checkin_button"  # "ça va": the resident answers a check-in
    PROMPT = "prompt"  # a siren, chime or light that asks the resident (a check-in)


class RoomKind(StrEnum):
    BEDROOM = "bedroom"
    BATHROOM = "bathroom"
    KITCHEN = "kitchen"
    LIVING = "living"
    ENTRANCE = "entrance"
    OTHER = "other"


Value = bool | float | str | None


@dataclass(frozen=True, slots=True)
class Event:
    """One normalized observation from one device."""

    device_id: str
    kind: EventKind
    value: Value
    at: float
    source: str = ""  # zigbee2mqtt | bthome | wearable | sim | replay
    room: str | None = None
    room_kind: RoomKind | None = None
    role: Role | None = None


@dataclass(frozen=True, slots=True, eq=False)
class AccelFrame:
    """A run of wearable accelerometer samples (milli-g, shape (n, 3)) ending at `at`."""

    device_id: str
    seq: int
    at: float
    samples_mg: np.ndarray
    fs_hz: float = 50.0
    gap_samples: int = 0  # samples lost before this frame (sequence gap)


def is_activity(event: Event) -> bool:
    """Whether an event is a sign that a person is moving about (not a sensor report)."""
    kind = event.kind
    if kind in (EventKind.MOTION, EventKind.PRESENCE, EventKind.SWITCH, EventKind.FLUSH):
        return bool(event.value)
    if kind is EventKind.OPEN:
        return True  # opening and closing both need a hand
    if kind is EventKind.ACTION:
        return True
    if kind is EventKind.POWER:
        return isinstance(event.value, float | int) and event.value > POWER_ON_W
    return kind is EventKind.VIBRATION and bool(event.value)


POWER_ON_W = 5.0


@dataclass(frozen=True, slots=True)
class Finding:
    """A detector's word about one condition, identified by `key` (e.g. "offline:kitchen-pir").

    The alert book raises an alert for the first `raise` of a key, ignores repeats while it is
    open, and turns `cancel`/`resolve` into state changes of that same alert.
    """

    key: str
    type: AlertType
    severity: Severity
    at: float
    action: Literal["raise", "cancel", "resolve"] = "raise"
    room: str | None = None
    device_id: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    raised_at: float | None = None  # for a cancel of a condition never sent: when it began


@dataclass(frozen=True, slots=True)
class Alert:
    """One state of one alert, as sent on the wire (`veille.alert/1`)."""

    id: str
    home_id: str
    type: AlertType
    severity: Severity
    state: AlertState
    at: float
    raised_at: float
    room: str | None = None
    device_id: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def with_state(self, state: AlertState, at: float, **evidence: Any) -> Alert:
        merged = {**self.evidence, **evidence} if evidence else self.evidence
        return dataclasses.replace(self, state=state, at=at, evidence=merged)

    def to_wire(self) -> dict[str, Any]:
        return {
            "schema": "veille.alert/1",
            "id": self.id,
            "home_id": self.home_id,
            "type": str(self.type),
            "severity": str(self.severity),
            "state": str(self.state),
            "at": iso_utc(self.at),
            "raised_at": iso_utc(self.raised_at),
            "room": self.room,
            "device_id": self.device_id,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A summary over a period; `body` holds the per-schema fields (see cloud_bridge.contract)."""

    period: Literal["hourly", "daily"]
    period_start: float
    period_end: float
    body: Mapping[str, Any]

    def to_wire(self, home_id: str) -> dict[str, Any]:
        return {
            "schema": f"veille.aggregate.{self.period}/1",
            "home_id": home_id,
            "period_start": iso_utc(self.period_start),
            "period_end": iso_utc(self.period_end),
            **self.body,
        }


@dataclass(frozen=True, slots=True)
class CheckIn:
    """The gateway asking the resident whether all is well: local only, never sent upstream.

    `ask` starts one (the prompt devices sound); `answered` (a `checkin_button` press or any
    sign of life) ends it quietly; `unanswered` ends it when the answer window ran out, and
    the staff alert it stood in front of follows.
    """

    key: str
    at: float
    action: Literal["ask", "answered", "unanswered"]
    room: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)


Emission = Finding | Aggregate | CheckIn


def new_alert_id(at: float) -> str:
    """A UUIDv7 (RFC 9562) whose time part is `at`; random bits make it unique."""
    ms = max(0, int(at * 1000)) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = rand >> 68 & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
