"""BTHome v1/v2 BLE advertisements -> normalized `Event`s, through bthome-ble. Pure: no I/O.

The protocol (object ids, factors, AES-CCM decryption, packet-id and replay checks) is
bthome-ble's; this module keeps one `BTHomeBluetoothDeviceData` per registered MAC (with its
bindkey from the registry) and maps the library's `SensorUpdate` onto our event kinds through
the `SENSOR_KINDS` / `BINARY_KINDS` tables.

Bad input (truncated frames, garbage, wrong bindkey, plaintext from a device that should
encrypt) gives exactly one log line: the library's own diagnostics are captured while it
parses and summarised in that line.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.decode.policy import ChangeFilter, WarnLimiter
from edge.events import Event, EventKind, Role, Value
from edge.home import Device, HomeProfile

if TYPE_CHECKING:  # imported where first used: a home without BLE sensors never loads them
    from bthome_ble import BTHomeBluetoothDeviceData, SensorUpdate
    from habluetooth import BluetoothServiceInfoBleak

_LOGGER = logging.getLogger(__name__)

SOURCE = "bthome"
BTHOME_UUIDS = frozenset(
    {
        "0000fcd2-0000-1000-8000-00805f9b34fb",  # v2 (encryption flagged in the first byte)
        "0000181c-0000-1000-8000-00805f9b34fb",  # v1
        "0000181e-0000-1000-8000-00805f9b34fb",  # v1, encrypted
    }
)
NEARBY_MAX = 256  # BLE devices remembered for the installer's "heard nearby" list

# bthome-ble sensor keys (its device classes) -> our kinds. Others (pressure, illuminance,
# voltage, packet id, ...) are not needed by the detectors.
SENSOR_KINDS: Mapping[str, EventKind] = {
    "temperature": EventKind.TEMPERATURE,
    "humidity": EventKind.HUMIDITY,
    "battery": EventKind.BATTERY,
    "power": EventKind.POWER,
    "signal_strength": EventKind.LINKQUALITY,
}

# bthome-ble binary sensor keys -> our kinds; every one reads True = detected / open / wet.
BINARY_KINDS: Mapping[str, EventKind] = {
    "motion": EventKind.MOTION,
    "occupancy": EventKind.MOTION,  # as Zigbee2MQTT's occupancy: a PIR-style detection
    "presence": EventKind.PRESENCE,
    "opening": EventKind.OPEN,
    "door": EventKind.OPEN,
    "window": EventKind.OPEN,
    "garage_door": EventKind.OPEN,
    "moisture": EventKind.WATER_LEAK,
    "vibration": EventKind.VIBRATION,
}

# Button event 0xFE: a held press, as buttons met in real homes send it (Shelly BLU); the
# library's table stops at 0x81 and would drop it silently. Our row, added to its table.
HELD_EVENT = 0xFE


def _load_library() -> None:
    """Import bthome-ble (and habluetooth) and add our held-press row to its event table."""
    from bthome_ble.event import BUTTON_EVENTS

    BUTTON_EVENTS.setdefault(HELD_EVENT, "hold_press")


# BTHome button event types -> our action names (Zigbee2MQTT's words).
BUTTON_ACTIONS: Mapping[str, str] = {
    "press": "single",
    "double_press": "double",
    "triple_press": "triple",
    "long_press": "long",
    "long_double_press": "long_double",
    "long_triple_press": "long_triple",
    "hold_press": "hold",
    "hold_release": "release",
}

# What a device's role makes of a binary kind (a pressure mat on a bed, a flush sensor).
ROLE_KINDS: Mapping[Role, Mapping[EventKind, EventKind]] = {
    Role.BED: {EventKind.MOTION: EventKind.PRESENCE, EventKind.OPEN: EventKind.PRESENCE},
    Role.CHAIR: {EventKind.MOTION: EventKind.PRESENCE, EventKind.OPEN: EventKind.PRESENCE},
    Role.TOILET_FLUSH: {
        EventKind.OPEN: EventKind.FLUSH,
        EventKind.VIBRATION: EventKind.FLUSH,
        EventKind.MOTION: EventKind.FLUSH,
        EventKind.WATER_LEAK: EventKind.FLUSH,
    },
}

# bthome-ble reports these as DEBUG lines; they are normal (devices repeat each advert).
_REPEAT_MARKERS = ("older packet", "same as the previous service data")
_NO_KEY_MARKER = "Encryption key not set"
_TRUNCATED_MARKERS = ("Truncated", "Invalid payload data length", "Invalid data length")
_UNKNOWN_OBJECT_MARKERS = ("UNKNOWN dataobject", "Invalid Object ID")
_POSTFIX = re.compile(r"^(?P<base>.+?)_(?P<n>\d+)$")


@dataclass(frozen=True, slots=True)
class NearbyDevice:
    """A BLE device heard, in the registry or not (for the installer's pairing page)."""

    address: str
    name: str | None
    rssi: int
    at: float
    bthome: bool  # it sent BTHome service data


@dataclass(frozen=True, slots=True)
class BleResult:
    """What one advertisement told."""

    events: tuple[Event, ...] = ()
    unknown: NearbyDevice | None = None  # set when the address is not in the registry
    bad: bool = False  # bad input (and it was logged)


class _Capture(logging.Filter):
    """Collects bthome-ble's log records during one parse and keeps them off the log."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


_LIBRARY_LOGGER = "bthome_ble.parser"


class BthomeDecoder:
    """Decodes the BTHome advertisements of one home's registered BLE sensors."""

    def __init__(self, profile: HomeProfile, *, warn_interval_s: float | None = None) -> None:
        self._warn = (
            WarnLimiter(_LOGGER)
            if warn_interval_s is None
            else WarnLimiter(_LOGGER, warn_interval_s)
        )
        self._changes = ChangeFilter()
        self._profile = profile
        self._devices: dict[str, Device] = {}
        self._parsers: dict[str, BTHomeBluetoothDeviceData] = {}
        # The library's SensorUpdate holds every value it ever saw; each reading is a new
        # object, so the readings of one advertisement are those not seen before it.
        self._seen: dict[str, SensorUpdate] = {}
        self.unknown_counts: Counter[str] = Counter()
        self.nearby: OrderedDict[str, NearbyDevice] = OrderedDict()
        self.update_profile(profile)

    def update_profile(self, profile: HomeProfile) -> None:
        """Take a new registry state; parsers of devices whose bindkey changed start afresh."""
        self._profile = profile
        devices = {
            d.address.upper(): d for d in profile.devices if d.source == SOURCE and d.address
        }
        for mac in list(self._parsers):
            old = self._devices.get(mac)
            if mac not in devices or old is None or old.bindkey != devices[mac].bindkey:
                del self._parsers[mac]
                self._seen.pop(mac, None)
        self._devices = devices
        if devices:  # loaded now, not with the first advertisement (which may be an alert)
            _load_library()

    def decode(
        self,
        address: str,
        service_data: Mapping[str, bytes],
        rssi: int,
        at: float,
        name: str | None = None,
    ) -> BleResult:
        """Decode one advertisement; never raises."""
        mac = address.upper()
        is_bthome = any(uuid.lower() in BTHOME_UUIDS for uuid in service_data)
        self._heard(NearbyDevice(mac, name, int(rssi), at, is_bthome))
        device = self._devices.get(mac)
        if device is None:
            return self._unknown(mac, name, rssi, at, is_bthome)
        if not is_bthome:
            if service_data:
                self._warn.warn(
                    mac,
                    "format",
                    at,
                    "ble %s: registered as %s but sends service data %s that no decoder here "
                    "reads (not BTHome); nothing decoded",
                    mac,
                    device.role,
                    ", ".join(sorted(service_data)),
                )
                return BleResult(bad=True)
            _LOGGER.debug("%s: advertisement without service data", mac)
            return BleResult()
        if any(not v for u, v in service_data.items() if u.lower() in BTHOME_UUIDS):
            self._warn.warn(mac, "truncated", at, "bthome %s: empty service data", mac)
            return BleResult(bad=True)
        info = service_info(mac, service_data, rssi, at, name)
        try:
            return self._decode(device, info)
        except Exception as exc:  # a library bug must not stop the home: log and skip
            _LOGGER.exception("bthome %s: cannot decode advertisement: %s", mac, exc)
            return BleResult(bad=True)

    def _heard(self, heard: NearbyDevice) -> None:
        """Remember the newest advertisement of each address, the oldest forgotten first."""
        self.nearby.pop(heard.address, None)
        self.nearby[heard.address] = heard
        while len(self.nearby) > NEARBY_MAX:
            self.nearby.popitem(last=False)

    def _unknown(
        self, mac: str, name: str | None, rssi: int, at: float, is_bthome: bool
    ) -> BleResult:
        if is_bthome:
            self.unknown_counts[mac] += 1
            self._warn.warn(
                mac, "unknown", at, "bthome: unknown device %s (not in the registry)", mac
            )
        return BleResult(unknown=self.nearby[mac])

    def _parser(self, mac: str, device: Device) -> BTHomeBluetoothDeviceData:
        parser = self._parsers.get(mac)
        if parser is None:
            key = bytes.fromhex(device.bindkey) if device.bindkey else None
            from bthome_ble import BTHomeBluetoothDeviceData

            parser = self._parsers[mac] = BTHomeBluetoothDeviceData(bindkey=key)
            self._seen.pop(mac, None)
        return parser

    def _decode(self, device: Device, info: BluetoothServiceInfoBleak) -> BleResult:
        mac, at, service_data = info.address, info.time, info.service_data
        parser = self._parser(mac, device)
        before = _snapshot(self._seen.get(mac))
        capture = _Capture()
        # The library says why it skipped a frame only at DEBUG: hear everything while it
        # parses, and keep it off the log (our one line summarises it).
        library = logging.getLogger(_LIBRARY_LOGGER)
        level = library.level
        library.setLevel(logging.DEBUG)
        library.addFilter(capture)
        try:
            update = parser.update(info)
        finally:
            library.removeFilter(capture)
            library.setLevel(level)
        self._seen[mac] = update
        readings = list(_readings(update, before))
        decoded = [r for r in readings if r[0] != "signal_strength"]
        problem = self._problem(capture.records, bool(decoded))
        if problem is None and not decoded:
            _LOGGER.debug("bthome %s: repeated advertisement skipped", mac)
            return BleResult()
        if problem is not None:
            self._warn.warn(
                mac,
                problem[0],
                at,
                "bthome %s: %s (advertisement %s)",
                mac,
                problem[1],
                _hex(service_data),
            )
            if not decoded:
                return BleResult(bad=True)
        events = self._events(device, [r for r in readings if r[1] is not None], at)
        return BleResult(events=tuple(events), bad=problem is not None)

    @staticmethod
    def _problem(records: list[logging.LogRecord], decoded: bool) -> tuple[str, str] | None:
        """(reason key, text) when the advertisement was bad input; None when it was fine."""
        for record in records:
            if record.levelno >= logging.WARNING:  # decryption failed, plaintext downgrade...
                return str(record.msg)[:40], record.getMessage()
        notes = [str(record.msg) for record in records]
        if any(_NO_KEY_MARKER in note for note in notes):
            return "nokey", "encrypted advertisement but no bindkey in the registry"
        truncated = [
            r.getMessage() for r in records if any(m in str(r.msg) for m in _TRUNCATED_MARKERS)
        ]
        if truncated:
            return "truncated", truncated[0]
        if not decoded and any(m in note for note in notes for m in _UNKNOWN_OBJECT_MARKERS):
            return "format", "object ids bthome-ble does not read (newer BTHome firmware?)"
        if decoded or any(m in note for note in notes for m in _REPEAT_MARKERS):
            return None
        return "empty", "no measurement in it"

    def _events(
        self, device: Device, readings: list[tuple[str, EventKind, Value]], at: float
    ) -> list[Event]:
        """Events for the mapped readings, after role overrides and the change filter."""
        room_kind = self._profile.room_kind(device.room)
        overrides = ROLE_KINDS.get(device.role, {})
        events: list[Event] = []
        for _key, read_kind, value in readings:
            kind = overrides.get(read_kind, read_kind)
            if not self._changes.passes(device.id, kind, value):
                continue
            events.append(
                Event(device.id, kind, value, at, SOURCE, device.room, room_kind, device.role)
            )
        return events


def service_info(
    address: str, service_data: Mapping[str, bytes], rssi: int, at: float, name: str | None
) -> BluetoothServiceInfoBleak:
    """The lightest `BluetoothServiceInfoBleak` bthome-ble accepts (no bleak device object)."""
    from habluetooth import BluetoothServiceInfoBleak

    return BluetoothServiceInfoBleak(
        name=name or address,
        address=address,
        rssi=int(rssi),
        manufacturer_data={},
        service_data={uuid.lower(): bytes(data) for uuid, data in service_data.items()},
        service_uuids=[uuid.lower() for uuid in service_data],
        source="local",
        device=None,  # type: ignore[arg-type]  # bthome-ble never reads it
        advertisement=None,
        connectable=False,
        time=at,
        tx_power=None,
    )


def _snapshot(update: SensorUpdate | None) -> dict[Any, Any]:
    """The value objects a SensorUpdate holds now (kept alive, compared by identity)."""
    if update is None:
        return {}
    return {
        **{("v", k): v for k, v in update.entity_values.items()},
        **{("b", k): v for k, v in update.binary_entity_values.items()},
    }


def _readings(update: SensorUpdate, before: Mapping[Any, Any]) -> Any:
    """(library key, our kind, value) for every new reading of a `SensorUpdate` we use."""
    for dkey, sval in update.entity_values.items():
        if before.get(("v", dkey)) is sval:
            continue
        kind = SENSOR_KINDS.get(_base_key(dkey.key))
        value = sval.native_value
        if kind is not None and isinstance(value, int | float) and not isinstance(value, bool):
            yield dkey.key, kind, float(value)
        else:
            yield dkey.key, None, None  # decoded, but not a kind the detectors use
    for dkey, bval in update.binary_entity_values.items():
        if before.get(("b", dkey)) is bval:
            continue
        kind = BINARY_KINDS.get(_base_key(dkey.key))
        if kind is not None and bval.native_value is not None:
            yield dkey.key, kind, bool(bval.native_value)
        else:
            yield dkey.key, None, None
    for dkey, ev in update.events.items():
        match = _POSTFIX.match(dkey.key)
        base = match.group("base") if match else dkey.key
        if base != "button":
            continue
        action = BUTTON_ACTIONS.get(ev.event_type, ev.event_type)
        if match:  # multi-button devices: "button_2_single", as Zigbee2MQTT names them
            action = f"button_{match.group('n')}_{action}"
        yield dkey.key, EventKind.ACTION, action


def _base_key(key: str) -> str:
    """bthome-ble suffixes repeated measurements: "temperature_2" -> "temperature"."""
    match = _POSTFIX.match(key)
    return match.group("base") if match else key


def _hex(service_data: Mapping[str, bytes]) -> str:
    return ",".join(bytes(v).hex() for v in service_data.values())[:120]
