"""The simulated home's devices: its profile, Zigbee2MQTT's view of them, and their emulators.

Zigbee devices are emulated as Zigbee2MQTT shows them, with its default `cache_state: true`:
every message on `zigbee2mqtt/<friendly_name>` carries the device's whole cached state
(battery, voltage, linkquality, the last contact/occupancy, ...) plus what it just reported;
`action` is never cached. Aqara motion sensors report `occupancy: true` on motion, cannot see
again for 60 s, and Zigbee2MQTT sets `occupancy: false` 90 s after the last motion. Battery
devices check in about every 50 minutes, mains devices report about every 10 minutes.

Pure: emulators take event times and return reports; no I/O, no clock.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.const import DAY_S
from edge.events import Role, RoomKind
from edge.home import Contact, Device, HomeProfile, Room
from edge.sim.bthome_encode import BTHOME_UUID, service_data_v2

PIR_BLIND_S = 60.0  # an Aqara PIR sees nothing for a minute after a detection
PIR_TIMEOUT_S = 90.0  # Zigbee2MQTT's occupancy_timeout default for these sensors
BATTERY_CHECKIN_S = 50 * 60.0
MAINS_REPORT_S = 10 * 60.0
CHECKIN_JITTER_S = 90.0
BTHOME_INTERVAL_S = 60.0
BTHOME_JITTER_S = 4.0
KETTLE_W = 2000.0
MAINS_V = 231.0


@dataclass(frozen=True, slots=True)
class Z2MOut:
    """A Zigbee2MQTT MQTT message, payload in the device's real JSON shape."""

    at: float
    topic: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class BleOut:
    """A BTHome v2 advertisement as a scanner hears it."""

    at: float
    address: str
    service_data: dict[str, bytes]
    rssi: int


@dataclass(frozen=True, slots=True)
class WearableOut:
    """The wearable streams a real trace of `kind` ("fall", "adl") from `at`; or a heartbeat."""

    at: float
    kind: str
    duration_s: float


SimOut = Z2MOut | BleOut | WearableOut


# ---- Zigbee2MQTT models (definitions as `bridge/devices` lists them) --------------------------
def _binary(
    prop: str, label: str, *, on: Any, off: Any, desc: str, access: int = 1
) -> dict[str, Any]:
    return {
        "access": access,
        "description": desc,
        "label": label,
        "name": prop,
        "property": prop,
        "type": "binary",
        "value_off": off,
        "value_on": on,
    }


def _numeric(
    prop: str,
    label: str,
    *,
    unit: str | None,
    desc: str,
    lo: float | None = None,
    hi: float | None = None,
    category: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "access": 1,
        "description": desc,
        "label": label,
        "name": prop,
        "property": prop,
        "type": "numeric",
    }
    if unit:
        out["unit"] = unit
    if lo is not None:
        out["value_min"] = lo
    if hi is not None:
        out["value_max"] = hi
    if category:
        out["category"] = category
    return out


_DIAG = "diagnostic"
_BATTERY = _numeric(
    "battery", "Battery", unit="%", desc="Remaining battery in %", lo=0, hi=100, category=_DIAG
)
_VOLTAGE = _numeric(
    "voltage", "Voltage", unit="mV", desc="Voltage of the battery in millivolts", category=_DIAG
)
_DEVICE_TEMP = _numeric(
    "device_temperature",
    "Device temperature",
    unit="°C",
    desc="Temperature of the device",
    category=_DIAG,
)
_OUTAGES = _numeric(
    "power_outage_count",
    "Power outage count",
    unit=None,
    desc="Number of power outages",
    category=_DIAG,
)
_LQI = _numeric(
    "linkquality",
    "Linkquality",
    unit="lqi",
    desc="Link quality (signal strength)",
    lo=0,
    hi=255,
    category=_DIAG,
)
_AQARA_DIAG = (_BATTERY, _VOLTAGE, _DEVICE_TEMP, _OUTAGES, _LQI)


@dataclass(frozen=True, slots=True)
class ZigbeeModel:
    """A real Zigbee device model as Zigbee2MQTT defines it."""

    model: str
    vendor: str
    description: str
    model_id: str  # the device's own Basic-cluster model identifier
    manufacturer: str
    battery: bool
    exposes: tuple[dict[str, Any], ...]
    initial: Mapping[str, Any]  # cached state fields before the first event


MOTION_MODEL = ZigbeeModel(
    "RTCGQ11LM",
    "Aqara",
    "Motion sensor",
    "lumi.sensor_motion.aq2",
    "LUMI",
    True,
    (
        _binary(
            "occupancy",
            "Occupancy",
            on=True,
            off=False,
            desc="Indicates whether the device detected occupancy",
        ),
        _numeric("illuminance", "Illuminance", unit="lx", desc="Measured illuminance"),
        *_AQARA_DIAG,
    ),
    {"occupancy": False, "illuminance": 0},
)
CONTACT_MODEL = ZigbeeModel(
    "MCCGQ11LM",
    "Aqara",
    "Door and window sensor",
    "lumi.sensor_magnet.aq2",
    "LUMI",
    True,
    (
        _binary(
            "contact",
            "Contact",
            on=False,
            off=True,
            desc="Indicates if the contact is closed (= true) or open (= false)",
        ),
        *_AQARA_DIAG,
    ),
    {"contact": True},
)
BUTTON_MODEL = ZigbeeModel(
    "WXKG11LM",
    "Aqara",
    "Wireless mini switch",
    "lumi.sensor_switch.aq2",
    "LUMI",
    True,
    (
        {
            "access": 1,
            "description": "Triggered action (e.g. a button click)",
            "label": "Action",
            "name": "action",
            "property": "action",
            "type": "enum",
            "values": ["single", "double", "triple", "quadruple", "hold", "release"],
        },
        *_AQARA_DIAG,
    ),
    {},
)
PLUG_MODEL = ZigbeeModel(
    "SP-EUC01",
    "Aqara",
    "Smart plug EU",
    "lumi.plug.maeu01",
    "LUMI",
    False,
    (
        {
            "features": [
                _binary(
                    "state",
                    "State",
                    on="ON",
                    off="OFF",
                    access=7,
                    desc="On/off state of the switch",
                )
                | {"value_toggle": "TOGGLE"}
            ],
            "type": "switch",
        },
        _numeric("power", "Power", unit="W", desc="Instantaneous measured power"),
        _numeric("energy", "Energy", unit="kWh", desc="Sum of consumed energy"),
        _numeric("voltage", "Voltage", unit="V", desc="Measured electrical potential value"),
        _numeric("current", "Current", unit="A", desc="Instantaneous measured electrical current"),
        _DEVICE_TEMP,
        _binary(
            "power_outage_memory",
            "Power outage memory",
            on=True,
            off=False,
            access=7,
            desc="Enable/disable the power outage memory",
        ),
        _LQI,
    ),
    {
        "state": "ON",
        "power": 0.0,
        "energy": 0.0,
        "voltage": MAINS_V,
        "current": 0.0,
        "power_outage_memory": True,
    },
)
# A siren that asks the resident at a check-in (Zigbee2MQTT's `warning` composite).
SIREN_MODEL = ZigbeeModel(
    "HS2WD-E",
    "Heiman",
    "Smart siren",
    "WarningDevice",
    "HEIMAN",
    False,  # mains powered
    (
        {
            "access": 2,
            "features": [
                {
                    "access": 2,
                    "name": "mode",
                    "property": "mode",
                    "type": "enum",
                    "values": ["stop", "burglar", "fire", "emergency", "police_panic"],
                },
                {
                    "access": 2,
                    "name": "level",
                    "property": "level",
                    "type": "enum",
                    "values": ["low", "medium", "high", "very_high"],
                },
                _binary("strobe", "Strobe", on=True, off=False, access=2, desc="Strobe on or off"),
                _numeric("duration", "Duration", unit="s", desc="Duration in seconds of the alarm"),
            ],
            "name": "warning",
            "property": "warning",
            "type": "composite",
        },
        _DEVICE_TEMP,
        _LQI,
    ),
    {},
)
# The bed sensor: a pressure mat's dry contact wired to an Aqara contact sensor; contact is
# true (closed) while someone lies on the mat.
MODELS: Mapping[Role, ZigbeeModel] = {
    Role.MOTION: MOTION_MODEL,
    Role.DOOR_ENTRANCE: CONTACT_MODEL,
    Role.DOOR_FRIDGE: CONTACT_MODEL,
    Role.BED: CONTACT_MODEL,
    Role.SOS_BUTTON: BUTTON_MODEL,
    Role.CHECKIN_BUTTON: BUTTON_MODEL,
    Role.PROMPT: SIREN_MODEL,
    Role.POWER: PLUG_MODEL,
}

ROOMS = (
    Room("chambre", RoomKind.BEDROOM),
    Room("salle de bain", RoomKind.BATHROOM),
    Room("cuisine", RoomKind.KITCHEN),
    Room("séjour", RoomKind.LIVING),
    Room("entrée", RoomKind.ENTRANCE),
)
_ROOM_OF = {r.kind: r.name for r in ROOMS}
DEMO_BINDKEY = "5f3c0a8e2d714b9c86a1e4f7d2093b6c"


def demo_profile(home_id: str = "demo-home") -> HomeProfile:
    """The simulated home: five rooms, Zigbee sensors, two BTHome sensors and a wearable."""
    z = "zigbee2mqtt"
    devices = [
        Device(
            f"pir-{kind}",
            z,
            f"0x00158d00045a{n:04x}",
            _ROOM_OF[kind],
            Role.MOTION,
            f"motion_{kind}",
        )
        for n, kind in enumerate(
            (
                RoomKind.BEDROOM,
                RoomKind.BATHROOM,
                RoomKind.KITCHEN,
                RoomKind.LIVING,
                RoomKind.ENTRANCE,
            ),
            start=1,
        )
    ]
    devices += [
        Device(
            "door-entrance", z, "0x00158d0003f1a201", "entrée", Role.DOOR_ENTRANCE, "entrance_door"
        ),
        Device("door-fridge", z, "0x00158d0003f1a202", "cuisine", Role.DOOR_FRIDGE, "fridge_door"),
        Device("bed-1", z, "0x00158d0003f1a203", "chambre", Role.BED, "bed_mat"),
        Device("kettle-plug", z, "0x04cf8cdf3c7b1e21", "cuisine", Role.POWER, "kettle_plug"),
        Device("sos-1", z, "0x00158d0002b7c9e4", "entrée", Role.SOS_BUTTON, "sos_button"),
        Device("siren-1", z, "0x0015bc001b02f1a3", "séjour", Role.PROMPT, "siren"),
        Device("ok-button", z, "0x00158d0002b7c9e5", "séjour", Role.CHECKIN_BUTTON, "ok_button"),
        Device("th-living", "bthome", "A4:C1:38:5D:2E:11", "séjour", Role.TEMPERATURE),
        Device(
            "th-bathroom",
            "bthome",
            "A4:C1:38:8F:07:42",
            "salle de bain",
            Role.TEMPERATURE,
            bindkey=DEMO_BINDKEY,
        ),
        Device("wearable-1", "wearable", "C7:3A:12:5E:90:01", None, Role.WEARABLE),
    ]
    return HomeProfile(
        id=home_id,
        rooms=ROOMS,
        devices=tuple(devices),
        contacts=(
            Contact("Sophie Martin", "06 12 34 56 78", "fille"),
            Contact("Dr Lefèvre", "01 23 45 67 89", "médecin traitant"),
        ),
        resident="Jeanne Martin",
        address="12 rue des Lilas, 69003 Lyon",
        installer="Karim Benali (démo)",
    )


def bridge_devices_payload(profile: HomeProfile) -> bytes:
    """The retained `zigbee2mqtt/bridge/devices` JSON for the profile's Zigbee devices."""
    entries: list[dict[str, Any]] = [
        {
            "definition": None,
            "disabled": False,
            "endpoints": {
                "1": {
                    "bindings": [],
                    "clusters": {"input": [], "output": []},
                    "configured_reportings": [],
                    "scenes": [],
                }
            },
            "friendly_name": "Coordinator",
            "ieee_address": "0x00124b0024c1a3f0",
            "interview_completed": True,
            "interviewing": False,
            "network_address": 0,
            "supported": True,
            "type": "Coordinator",
        }
    ]
    for n, dev in enumerate(d for d in profile.devices if d.source == "zigbee2mqtt"):
        model = MODELS.get(dev.role, CONTACT_MODEL)
        entries.append(
            {
                "date_code": "20191205",
                "definition": {
                    "description": model.description,
                    "exposes": list(model.exposes),
                    "model": model.model,
                    "options": [],
                    "supports_ota": False,
                    "vendor": model.vendor,
                },
                "disabled": False,
                "endpoints": {
                    "1": {
                        "bindings": [],
                        "clusters": {"input": ["genBasic"], "output": []},
                        "configured_reportings": [],
                        "scenes": [],
                    }
                },
                "friendly_name": dev.friendly_name or dev.address,
                "ieee_address": dev.address,
                "interview_completed": True,
                "interviewing": False,
                "manufacturer": model.manufacturer,
                "model_id": model.model_id,
                "network_address": 0x1A2B + 97 * n,
                "power_source": "Battery" if model.battery else "Mains (single phase)",
                "software_build_id": "3000-0001",
                "supported": True,
                "type": "EndDevice" if model.battery else "Router",
            }
        )
    return json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode()


# ---- emulators --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Report:
    """What one device said at `at`: `changes` it reported, `payload` as Zigbee2MQTT sends it."""

    at: float
    device: Device
    changes: Mapping[str, Any]
    out: Z2MOut


class ZigbeeEmu:
    """One Zigbee device behind Zigbee2MQTT: cached state, battery, link quality, check-ins."""

    def __init__(self, device: Device, seed: int, t0: float) -> None:
        self.device = device
        self.model = MODELS.get(device.role, CONTACT_MODEL)
        self.topic = f"zigbee2mqtt/{device.friendly_name or device.address}"
        self.rng = random.Random(f"{seed}:{device.id}")
        self.t0 = t0
        self.battery0 = self.rng.uniform(70.0, 100.0)
        self.drain_per_day = self.rng.uniform(0.2, 0.6)
        self.lqi = self.rng.randint(70, 190)
        self.temp_c = self.rng.randint(19, 24)
        self.state: dict[str, Any] = dict(self.model.initial)
        if self.model.battery:
            self.state["power_outage_count"] = self.rng.randint(0, 6)
        self.interval_s = BATTERY_CHECKIN_S if self.model.battery else MAINS_REPORT_S
        self.next_checkin = t0 + self.rng.uniform(0.0, self.interval_s)
        self.silent_from = math.inf
        # motion sensor state
        self.last_motion: float | None = None

    def battery_pct(self, at: float) -> float:
        return max(0.0, self.battery0 - self.drain_per_day * (at - self.t0) / DAY_S)

    def report(self, at: float, changes: Mapping[str, Any]) -> Report | None:
        """Record `changes` and render the message Zigbee2MQTT publishes (None when silent)."""
        if at >= self.silent_from:
            return None
        self.state.update({k: v for k, v in changes.items() if k != "action"})
        payload: dict[str, Any] = dict(self.state)
        if "action" in changes:
            payload["action"] = changes["action"]
        if self.model.battery:
            pct = self.battery_pct(at)
            payload["battery"] = round(pct)
            payload["voltage"] = round(2800 + 3.0 * pct)
        payload["device_temperature"] = self.temp_c + self.rng.choice((-1, 0, 0, 1))
        payload["linkquality"] = max(0, min(255, self.lqi + self.rng.randint(-12, 12)))
        body = json.dumps(payload, separators=(",", ":")).encode()
        return Report(at, self.device, dict(changes), Z2MOut(at, self.topic, body))

    def run(self, changes: list[tuple[float, dict[str, Any]]], until: float) -> list[Report]:
        """Report `changes` (sorted by time) with the check-ins due among them, up to `until`."""
        out: list[Report] = []
        for at, change in changes:
            out += self._checkins(at)
            rep = self.report(at, change)
            if rep is not None:
                out.append(rep)
        out += self._checkins(until)
        return out

    def _checkins(self, until: float) -> list[Report]:
        out: list[Report] = []
        while self.next_checkin < until:
            rep = self.report(self.next_checkin, {})
            if rep is not None:
                out.append(rep)
            jitter = self.rng.uniform(-CHECKIN_JITTER_S, CHECKIN_JITTER_S)
            self.next_checkin += self.interval_s + jitter
        return out

    def motion_changes(
        self, detections: list[float], until: float, lux_of: Callable[[float], float]
    ) -> list[tuple[float, dict[str, Any]]]:
        """Motion detections (sorted) -> occupancy true/false changes, as an Aqara PIR and
        Zigbee2MQTT's timeout make them; a false still pending at `until` waits for the next
        call, as a later detection could push it back."""
        out: list[tuple[float, dict[str, Any]]] = []
        for d in detections:
            last = self.last_motion
            if last is not None and d - last < PIR_BLIND_S:
                continue
            if last is not None and d - last >= PIR_TIMEOUT_S:
                out.append((last + PIR_TIMEOUT_S, {"occupancy": False}))
            out.append((d, {"occupancy": True, "illuminance": round(lux_of(d))}))
            self.last_motion = d
        if self.last_motion is not None and self.last_motion + PIR_TIMEOUT_S <= until:
            out.append((self.last_motion + PIR_TIMEOUT_S, {"occupancy": False}))
            self.last_motion = None
        return out


class BthomeEmu:
    """A BTHome v2 temperature/humidity sensor advertising about every minute."""

    def __init__(self, device: Device, seed: int, t0: float, wet: bool) -> None:
        self.device = device
        self.rng = random.Random(f"{seed}:{device.id}")
        self.t0 = t0
        self.wet = wet  # a bathroom: warm and steamy after a shower
        self.bindkey = bytes.fromhex(device.bindkey) if device.bindkey else None
        self.packet_id = self.rng.randint(0, 255)
        self.counter = self.rng.randint(1, 5000)
        self.battery0 = self.rng.uniform(60.0, 100.0)
        self.rssi = self.rng.randint(-78, -58)
        self.next_at = t0 + self.rng.uniform(0.0, BTHOME_INTERVAL_S)
        self.base_c = 21.5 if wet else 20.5
        self.last: dict[str, float] = {}
        self.silent_from = math.inf

    def climate(self, at: float, hour: float, showers: list[float]) -> tuple[float, float]:
        """Room temperature and humidity: a daily swing, and steam after a shower."""
        temp = self.base_c + 1.2 * math.sin(2 * math.pi * (hour - 10.0) / 24.0)
        hum = 48.0 - 6.0 * math.sin(2 * math.pi * (hour - 10.0) / 24.0)
        if self.wet:
            for s in showers:
                if 0.0 <= at - s < 2 * 3600.0:
                    steam = math.exp(-(at - s) / 1200.0)
                    temp += 2.0 * steam
                    hum += 35.0 * steam
        return temp + self.rng.gauss(0, 0.05), min(99.0, hum + self.rng.gauss(0, 0.3))

    def advertisements(
        self, until: float, hour_of: Callable[[float], float], showers: list[float]
    ) -> list[BleOut]:
        """Advertisements due before `until`; `hour_of(t)` gives the local hour of day."""
        out: list[BleOut] = []
        while self.next_at < until:
            at = self.next_at
            self.next_at += BTHOME_INTERVAL_S + self.rng.uniform(-BTHOME_JITTER_S, BTHOME_JITTER_S)
            if at >= self.silent_from:
                continue
            temp, hum = self.climate(at, hour_of(at), showers)
            battery = max(0.0, self.battery0 - 0.3 * (at - self.t0) / DAY_S)
            self.packet_id = (self.packet_id + 1) % 256
            self.counter += 1
            values = {
                "packet_id": self.packet_id,
                "battery": round(battery),
                "temperature": round(temp, 2),
                "humidity": round(hum, 2),
            }
            self.last = values
            data = service_data_v2(values, self.device.address, self.bindkey, self.counter)
            rssi = self.rssi + self.rng.randint(-4, 4)
            out.append(BleOut(at, self.device.address, {BTHOME_UUID: data}, rssi))
        return out
