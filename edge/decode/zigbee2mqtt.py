"""Zigbee2MQTT messages (topic + JSON payload) -> normalized `Event`s. Pure: no I/O, no clock.

Zigbee2MQTT publishes each device's state as a JSON object on `zigbee2mqtt/<friendly_name>`
and describes every paired device, with its `definition.exposes`, on the retained
`zigbee2mqtt/bridge/devices`. Properties map to event kinds through the `EXPOSES` table
(data, not if-chains, like bthome-ble's MEAS_TYPES); a device's role can change what a
property means (`ROLE_EXPOSES`: a bed's pressure mat reports presence, not an opening).

Bad input (not JSON, wrong types, unknown devices) gives one log line and no exception.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.decode.policy import ChangeFilter, WarnLimiter
from edge.events import Event, EventKind, Role, RoomKind, Value
from edge.home import Device, HomeProfile

_LOGGER = logging.getLogger(__name__)

SOURCE = "zigbee2mqtt"
BASE_TOPIC = "zigbee2mqtt"
COMMAND_SUFFIXES = frozenset({"set", "get"})  # requests to Zigbee2MQTT, not device state


class _Skip(Exception):
    """A property present but empty (`"action": ""`, `null`): nothing to report."""


def _as_bool(raw: Any) -> bool:
    """A JSON boolean, as Zigbee2MQTT sends binary exposes."""
    if raw is None:
        raise _Skip
    if not isinstance(raw, bool):
        raise TypeError(f"expected true/false, got {raw!r}")
    return raw


def _as_not_bool(raw: Any) -> bool:
    """The inverse of a JSON boolean (Zigbee2MQTT's `contact: true` means closed)."""
    return not _as_bool(raw)


def _as_float(raw: Any) -> float:
    """A finite JSON number (booleans refused: `true` is not 1 degree)."""
    if raw is None:
        raise _Skip
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise TypeError(f"expected a number, got {raw!r}")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {raw!r}")
    return value


def _as_action(raw: Any) -> str:
    """A button action name; Zigbee2MQTT clears it to "" or null after each press."""
    if raw is None or raw == "":
        raise _Skip
    if not isinstance(raw, str):
        raise TypeError(f"expected an action name, got {raw!r}")
    return raw


def _as_on_off(raw: Any) -> bool:
    """Zigbee2MQTT's `state`: "ON" / "OFF"."""
    if raw is None:
        raise _Skip
    if raw not in ("ON", "OFF"):
        raise ValueError(f"expected ON/OFF, got {raw!r}")
    return raw == "ON"


PRESSURE_STATES: Mapping[str, bool] = {"sit": True, "sedentary": True, "none": False}


def _as_pressure_state(raw: Any) -> bool:
    """A bed or seat strap's `pressure_state`: someone sits or lies on it, or nobody."""
    if raw is None:
        raise _Skip
    if not isinstance(raw, str) or raw not in PRESSURE_STATES:
        raise ValueError(f"expected one of {', '.join(PRESSURE_STATES)}, got {raw!r}")
    return PRESSURE_STATES[raw]


@dataclass(frozen=True, slots=True)
class Expose:
    """How one Zigbee2MQTT payload property becomes an event."""

    kind: EventKind
    convert: Callable[[Any], Value]  # raises TypeError/ValueError on a wrong type


EXPOSES: Mapping[str, Expose] = {
    "occupancy": Expose(EventKind.MOTION, _as_bool),
    "presence": Expose(EventKind.PRESENCE, _as_bool),
    "contact": Expose(EventKind.OPEN, _as_not_bool),
    "action": Expose(EventKind.ACTION, _as_action),
    "water_leak": Expose(EventKind.WATER_LEAK, _as_bool),
    "vibration": Expose(EventKind.VIBRATION, _as_bool),
    "temperature": Expose(EventKind.TEMPERATURE, _as_float),
    "humidity": Expose(EventKind.HUMIDITY, _as_float),
    "power": Expose(EventKind.POWER, _as_float),
    "battery": Expose(EventKind.BATTERY, _as_float),
    "battery_low": Expose(EventKind.BATTERY, _as_bool),  # sensors with no percentage
    "linkquality": Expose(EventKind.LINKQUALITY, _as_float),
}

# A pressure mat under a bed or a chair seat, on a contact or occupancy sensor: someone is on
# it while the circuit is closed (contact true) or occupancy is reported.
_ON_SEAT: Mapping[str, Expose] = {
    "occupancy": Expose(EventKind.PRESENCE, _as_bool),
    "presence": Expose(EventKind.PRESENCE, _as_bool),
    "contact": Expose(EventKind.PRESENCE, _as_bool),
    "pressure_state": Expose(EventKind.PRESENCE, _as_pressure_state),  # bed straps
}

ROLE_EXPOSES: Mapping[Role, Mapping[str, Expose]] = {
    Role.BED: _ON_SEAT,
    Role.CHAIR: _ON_SEAT,
    Role.TOILET_FLUSH: {
        "contact": Expose(EventKind.FLUSH, _as_not_bool),  # the cistern lever opens it
        "vibration": Expose(EventKind.FLUSH, _as_bool),
        "occupancy": Expose(EventKind.FLUSH, _as_bool),
        "water_leak": Expose(EventKind.FLUSH, _as_bool),
    },
    Role.LIGHT_SWITCH: {"state": Expose(EventKind.SWITCH, _as_on_off)},
}


@dataclass(frozen=True, slots=True)
class BridgeDevice:
    """One entry of `zigbee2mqtt/bridge/devices`, for the provisioning pages."""

    ieee_address: str
    friendly_name: str
    type: str = ""  # Coordinator, Router, EndDevice
    model: str = ""
    vendor: str = ""
    description: str = ""
    supported: bool = False
    interview_completed: bool = False
    properties: frozenset[str] = frozenset()  # every `property` in definition.exposes


@dataclass(frozen=True, slots=True)
class BridgeEvent:
    """A `zigbee2mqtt/bridge/event`: device_joined, device_interview, device_leave, ..."""

    type: str
    friendly_name: str = ""
    ieee_address: str = ""
    status: str = ""  # device_interview: started, successful, failed


@dataclass(frozen=True, slots=True)
class Z2mResult:
    """What one message told: events, and what the provisioning pages and health want."""

    events: tuple[Event, ...] = ()
    unknown: str | None = None  # friendly name of a device not in the registry
    bridge_devices: tuple[BridgeDevice, ...] | None = None  # set by bridge/devices
    bridge_event: BridgeEvent | None = None
    bridge_online: bool | None = None  # bridge/state
    availability: tuple[str, bool] | None = None  # (device id, online) from <name>/availability
    bad: bool = False  # the message was bad input (and was logged)

    @property
    def capabilities(self) -> dict[str, frozenset[str]]:
        """`{friendly_name or ieee_address: property names}` from bridge/devices."""
        caps: dict[str, frozenset[str]] = {}
        for dev in self.bridge_devices or ():
            caps[dev.friendly_name] = dev.properties
            caps[dev.ieee_address] = dev.properties
        return caps


@dataclass
class Z2mCounters:
    """Totals for the status page and sensor health."""

    messages: int = 0
    events: int = 0
    bad: int = 0
    unknown: dict[str, int] = field(default_factory=dict)  # friendly name -> messages


def _heartbeat(device: Device, room_kind: RoomKind | None, at: float) -> Event:
    """The device spoke, with nothing new to say: sensor health wants to know."""
    return Event(
        device.id, EventKind.HEARTBEAT, None, at, SOURCE, device.room, room_kind, device.role
    )


class Zigbee2MqttDecoder:
    """Decodes the messages of one home's Zigbee2MQTT, with the registry's devices."""

    def __init__(
        self,
        profile: HomeProfile,
        *,
        base_topic: str = BASE_TOPIC,
        warn_interval_s: float | None = None,
    ) -> None:
        self._base = base_topic.rstrip("/") + "/"
        self._changes = ChangeFilter()
        self._warn = (
            WarnLimiter(_LOGGER)
            if warn_interval_s is None
            else WarnLimiter(_LOGGER, warn_interval_s)
        )
        self.counters = Z2mCounters()
        self.capabilities: dict[str, frozenset[str]] = {}
        self._profile = profile
        self._by_name: dict[str, Device] = {}
        self.update_profile(profile)

    def update_profile(self, profile: HomeProfile) -> None:
        """Take a new registry state (a device added, renamed or moved)."""
        self._profile = profile
        by_name: dict[str, Device] = {}
        for dev in profile.devices:
            if dev.source != SOURCE:
                continue
            by_name[dev.address] = dev
            by_name[dev.address.lower()] = dev
            if dev.friendly_name:
                by_name[dev.friendly_name] = dev
        self._by_name = by_name

    def decode(self, topic: str, payload: bytes, at: float, *, retained: bool = False) -> Z2mResult:
        """Decode one message; never raises. `retained` messages only seed the known state."""
        self.counters.messages += 1
        try:
            result = self._decode(topic, payload, at, retained)
        except Exception as exc:  # a decoder bug must not stop the home: log and skip
            _LOGGER.exception("zigbee2mqtt %s: cannot decode message: %s", topic, exc)
            result = Z2mResult(bad=True)
        self.counters.events += len(result.events)
        self.counters.bad += int(result.bad)
        return result

    def _decode(self, topic: str, payload: bytes, at: float, retained: bool) -> Z2mResult:
        if not topic.startswith(self._base):
            _LOGGER.debug("not a zigbee2mqtt topic, ignored: %s", topic)
            return Z2mResult()
        rest = topic[len(self._base) :]
        if rest.startswith("bridge/"):
            return self._bridge(rest[len("bridge/") :], payload, at)
        parts = rest.split("/")
        if parts[-1] in COMMAND_SUFFIXES or (len(parts) > 2 and parts[-2] in COMMAND_SUFFIXES):
            return Z2mResult()  # our own or others' requests to Zigbee2MQTT
        if parts[-1] == "availability" and len(parts) > 1:
            return self._availability(rest[: -len("/availability")], payload, at)
        return self._state(rest, payload, at, retained)

    def _state(self, name: str, payload: bytes, at: float, retained: bool) -> Z2mResult:
        device = self._by_name.get(name)
        if device is None:
            self.counters.unknown[name] = self.counters.unknown.get(name, 0) + 1
            self._warn.warn(
                name, "unknown", at, "zigbee2mqtt: unknown device %r (not in the registry)", name
            )
            return Z2mResult(unknown=name)
        if not payload:
            _LOGGER.debug("zigbee2mqtt %s: empty payload (retained state cleared)", name)
            return Z2mResult()
        data = self._json(name, payload, at)
        if not isinstance(data, dict):
            if data is not _BAD:
                self._warn.warn(
                    name,
                    "shape",
                    at,
                    "zigbee2mqtt %s: payload is not a JSON object: %.80r",
                    name,
                    payload,
                )
            return Z2mResult(bad=True)
        table = {**EXPOSES, **ROLE_EXPOSES.get(device.role, {})}
        room_kind = self._profile.room_kind(device.room)
        events: list[Event] = []
        problems: list[str] = []
        for prop, raw in data.items():
            expose = table.get(prop)
            if expose is None:
                continue  # voltage, illuminance, energy, ...: not needed by the detectors
            try:
                value = expose.convert(raw)
            except _Skip:
                continue
            except (TypeError, ValueError) as exc:
                problems.append(f"{prop}: {exc}")
                continue
            if retained:
                self._changes.remember(device.id, expose.kind, value)
                continue
            if not self._changes.passes(device.id, expose.kind, value):
                continue
            events.append(
                Event(
                    device.id, expose.kind, value, at, SOURCE, device.room, room_kind, device.role
                )
            )
        if problems:
            self._warn.warn(
                name,
                "types",
                at,
                "zigbee2mqtt %s: skipped bad values: %s",
                name,
                "; ".join(problems),
            )
        if not events and not retained and not problems:
            # Nothing new, but the device spoke: sensor health wants to know.
            events.append(_heartbeat(device, room_kind, at))
        return Z2mResult(events=tuple(events), bad=bool(problems))

    def _availability(self, name: str, payload: bytes, at: float) -> Z2mResult:
        device = self._by_name.get(name)
        if device is None:
            _LOGGER.debug("zigbee2mqtt: availability of a device not in the registry: %s", name)
            return Z2mResult()
        state = _state_word(payload)
        if state not in ("online", "offline"):
            self._warn.warn(
                name,
                "availability",
                at,
                "zigbee2mqtt %s: bad availability payload %.80r",
                name,
                payload,
            )
            return Z2mResult(bad=True)
        online = state == "online"
        events: tuple[Event, ...] = ()
        if online:
            events = (_heartbeat(device, self._profile.room_kind(device.room), at),)
        return Z2mResult(events=events, availability=(device.id, online))

    def _bridge(self, sub: str, payload: bytes, at: float) -> Z2mResult:
        if sub == "state":
            state = _state_word(payload)
            if state not in ("online", "offline"):
                self._warn.warn(
                    "bridge", "state", at, "zigbee2mqtt: bad bridge/state payload %.80r", payload
                )
                return Z2mResult(bad=True)
            return Z2mResult(bridge_online=state == "online")
        if sub == "devices":
            return self._bridge_devices(payload, at)
        if sub == "event":
            return self._bridge_event(payload, at)
        _LOGGER.debug("zigbee2mqtt: bridge/%s ignored", sub)
        return Z2mResult()

    def _bridge_devices(self, payload: bytes, at: float) -> Z2mResult:
        data = self._json("bridge/devices", payload, at)
        if not isinstance(data, list):
            if data is not _BAD:
                self._warn.warn(
                    "bridge", "devices", at, "zigbee2mqtt: bridge/devices is not a JSON list"
                )
            return Z2mResult(bad=True)
        devices: list[BridgeDevice] = []
        skipped = 0
        for entry in data:
            dev = _bridge_device(entry)
            if dev is None:
                skipped += 1
            else:
                devices.append(dev)
        if skipped:
            self._warn.warn(
                "bridge",
                "devices",
                at,
                "zigbee2mqtt: bridge/devices: %d malformed entries skipped",
                skipped,
            )
        result = Z2mResult(bridge_devices=tuple(devices), bad=bool(skipped))
        self.capabilities = result.capabilities
        return result

    def _bridge_event(self, payload: bytes, at: float) -> Z2mResult:
        data = self._json("bridge/event", payload, at)
        if data is _BAD:
            return Z2mResult(bad=True)
        kind = data.get("type") if isinstance(data, dict) else None
        body = data.get("data") if isinstance(data, dict) else None
        if not isinstance(kind, str) or not isinstance(body, dict):
            self._warn.warn(
                "bridge", "event", at, "zigbee2mqtt: malformed bridge/event %.80r", payload
            )
            return Z2mResult(bad=True)
        return Z2mResult(
            bridge_event=BridgeEvent(
                kind,
                _text(body.get("friendly_name")),
                _text(body.get("ieee_address")),
                _text(body.get("status")),
            )
        )

    def _json(self, key: str, payload: bytes, at: float) -> Any:
        """The decoded JSON, or `_BAD` after logging one line."""
        try:
            return json.loads(payload)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            self._warn.warn(
                key,
                "json",
                at,
                "zigbee2mqtt %s: payload is not JSON (%s): %.80r",
                key,
                exc,
                payload,
            )
            return _BAD


_BAD = object()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _state_word(payload: bytes) -> str | None:
    """`online`/`offline` from either `{"state": "online"}` or the legacy plain word."""
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        try:
            return payload.decode("ascii").strip()
        except UnicodeDecodeError:
            return None
    if isinstance(data, dict):
        state = data.get("state")
        return state if isinstance(state, str) else None
    return data if isinstance(data, str) else None


def _bridge_device(entry: Any) -> BridgeDevice | None:
    """One bridge/devices entry, or None when it lacks the address or the name."""
    if not isinstance(entry, dict):
        return None
    ieee, name = entry.get("ieee_address"), entry.get("friendly_name")
    if not isinstance(ieee, str) or not isinstance(name, str):
        return None
    definition = entry.get("definition")
    if not isinstance(definition, dict):
        definition = {}  # the coordinator and devices not yet interviewed have none
    return BridgeDevice(
        ieee_address=ieee,
        friendly_name=name,
        type=_text(entry.get("type")),
        model=_text(definition.get("model")),
        vendor=_text(definition.get("vendor")),
        description=_text(definition.get("description")),
        supported=entry.get("supported") is True,
        interview_completed=entry.get("interview_completed") is True,
        properties=frozenset(_properties(definition.get("exposes"))),
    )


def _properties(exposes: Any, depth: int = 0) -> Iterator[str]:
    """Every `property` in an exposes list, including nested `features` (switch, light...)."""
    if not isinstance(exposes, list) or depth > _MAX_EXPOSE_DEPTH:
        return
    for item in exposes:
        if not isinstance(item, dict):
            continue
        prop = item.get("property")
        if isinstance(prop, str):
            yield prop
        yield from _properties(item.get("features"), depth + 1)


_MAX_EXPOSE_DEPTH = 4


# How a `prompt` device asks the resident, by what its exposes offer, best first: a siren's
# `warning` (short, low, with the strobe), a light's `effect`, else a plain `state`.
PROMPT_ASK: tuple[tuple[str, Mapping[str, Any]], ...] = (
    ("warning", {"warning": {"mode": "emergency", "level": "low", "strobe": True, "duration": 10}}),
    ("effect", {"effect": "blink"}),
    ("state", {"state": "ON"}),
)
PROMPT_STOP: Mapping[str, Mapping[str, Any]] = {
    "warning": {"warning": {"mode": "stop"}},
    "effect": {"effect": "finish_effect"},
    "state": {"state": "OFF"},
}


def prompt_commands(
    profile: HomeProfile,
    capabilities: Mapping[str, frozenset[str]],
    *,
    stop: bool = False,
    base_topic: str = BASE_TOPIC,
) -> list[tuple[str, bytes]]:
    """`(topic, payload)` to publish so each Zigbee `prompt` device asks (or stops asking).

    A device's exposes (from `bridge/devices`) pick the command; one whose exposes are not
    known yet gets `state`, which nearly every switchable device takes.
    """
    out: list[tuple[str, bytes]] = []
    for dev in profile.devices:
        if dev.role is not Role.PROMPT or dev.source != SOURCE:
            continue
        name = dev.friendly_name or dev.address
        props = capabilities.get(name) or capabilities.get(dev.address)
        chosen = next(
            (
                (prop, payload)
                for prop, payload in PROMPT_ASK
                if (props is None and prop == "state") or (props is not None and prop in props)
            ),
            None,
        )
        if chosen is None:
            _LOGGER.warning(
                "zigbee2mqtt %s: a prompt device with none of %s in its exposes: not driven",
                name,
                ", ".join(p for p, _ in PROMPT_ASK),
            )
            continue
        prop, payload = chosen
        body = PROMPT_STOP[prop] if stop else payload
        out.append((f"{base_topic}/{name}/set", json.dumps(body, separators=(",", ":")).encode()))
    return out
