"""BTHome v1/v2 BLE advertisements -> normalized `Event`s, through bthome-ble. Pure: no I/O.

The protocol (object ids, factors, AES-CCM decryption, packet-id and replay checks) is
bthome-ble's; this module keeps one `BTHomeBluetoothDeviceData` per registered MAC (with its
bindkey from the registry) and maps the library's `SensorUpdate` onto our event kinds through
the `SENSOR_KINDS` / `BINARY_KINDS` tables.

Bad input (truncated frames, garbage, wrong bindkey, plaintext from a device that should
encrypt) gives exactly one log line. Why an advertisement is bad is read from its header and
object table (pure checks before parsing, `advert_problem`) and from the parser's own state
after it (decryption failed, bindkey verified, packet id), as Home Assistant's bthome
integration does; never from the library's log text. The library's logger is set once, when
it is loaded, to keep its per-advertisement lines (which repeat ours) off the log.
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
    # once: its lines (decryption failed, plaintext ignored, ...) repeat per advertisement
    # what our one line says from the parser's state
    logging.getLogger(_LIBRARY_LOGGER).setLevel(logging.CRITICAL)


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

V2_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
V1_ENCRYPTED_UUID = "0000181e-0000-1000-8000-00805f9b34fb"
V2_ENCRYPTED_BIT = 0x01
V2_MAC_INCLUDED_BIT = 0x02
V2_VERSION_SHIFT = 5
PACKET_ID_OBJECT = 0x00
VARIABLE_LENGTH_FORMATS = frozenset({"string", "raw"})  # a length byte follows the object id
MAC_BYTES = 6
COUNTER_BYTES = 4  # v2 encrypted: counter then MIC at the end of the service data
MIC_BYTES = 4
COUNTER_RESTART_BELOW = 100  # as bthome-ble: a counter back under this is a restart, not a replay
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


_LIBRARY_LOGGER = "bthome_ble"


def advert_problem(
    service_data: Mapping[str, bytes], has_bindkey: bool
) -> tuple[str, str] | None:
    """(reason key, text) for what makes an advertisement unusable before any parsing: its
    version, its encryption against the registry's bindkey, its object table. Pure."""
    uuid, data = next((u, v) for u, v in service_data.items() if u.lower() in BTHOME_UUIDS)
    if uuid.lower() != V2_UUID:
        encrypted = uuid.lower() == V1_ENCRYPTED_UUID
        return _key_problem(encrypted, has_bindkey)
    version = data[0] >> V2_VERSION_SHIFT
    if version != 2:
        return "version", f"BTHome version {version} in the first byte (only version 2 exists)"
    encrypted = bool(data[0] & V2_ENCRYPTED_BIT)
    if (problem := _key_problem(encrypted, has_bindkey)) is not None or encrypted:
        return problem  # the objects of an encrypted one are checked by decrypting it
    start = 1 + (MAC_BYTES if data[0] & V2_MAC_INCLUDED_BIT else 0)
    return _objects_problem(data, start)


def _is_encrypted(service_data: Mapping[str, bytes]) -> bool:
    for uuid, data in service_data.items():
        if uuid.lower() == V1_ENCRYPTED_UUID or (
            uuid.lower() == V2_UUID and data and data[0] & V2_ENCRYPTED_BIT
        ):
            return True
    return False


def _key_problem(encrypted: bool, has_bindkey: bool) -> tuple[str, str] | None:
    if encrypted and not has_bindkey:
        return "nokey", "encrypted advertisement but no bindkey in the registry"
    if not encrypted and has_bindkey:
        return "plaintext", "plaintext advertisement from a device with a bindkey: ignored"
    return None


def _objects_problem(data: bytes, start: int) -> tuple[str, str] | None:
    """Walk a v2 plaintext object table with bthome-ble's own table of object ids."""
    from bthome_ble.const import MEAS_TYPES

    i = start
    if i >= len(data):
        return "empty", "no measurement in it"
    while i < len(data):
        oid = data[i]
        meas = MEAS_TYPES.get(oid)
        if meas is None:
            return "format", f"object ids bthome-ble does not read (newer firmware?): 0x{oid:02x}"
        value_at = i + 1
        length = meas.data_length
        if meas.data_format in VARIABLE_LENGTH_FORMATS:
            if value_at >= len(data):
                return "truncated", f"truncated at object 0x{oid:02x}"
            length, value_at = data[value_at], value_at + 1
        if length == 0 or value_at + length > len(data):
            return "truncated", f"truncated at object 0x{oid:02x}"
        i = value_at + length
    return None


def _packet_id(data: bytes) -> int | None:
    """The packet id object of a well-formed v2 plaintext advertisement, if it has one."""
    from bthome_ble.const import MEAS_TYPES

    i = 1 + (MAC_BYTES if data[0] & V2_MAC_INCLUDED_BIT else 0)
    while i < len(data):
        meas = MEAS_TYPES[data[i]]
        if data[i] == PACKET_ID_OBJECT:
            return data[i + 1]
        if meas.data_format in VARIABLE_LENGTH_FORMATS:
            i += 2 + data[i + 1]
        else:
            i += 1 + meas.data_length
    return None


def _counter(service_data: Mapping[str, bytes]) -> int | None:
    """The encryption counter of a v2 encrypted advertisement."""
    data = service_data.get(V2_UUID)
    if data is None or not data[0] & V2_ENCRYPTED_BIT or len(data) < COUNTER_BYTES + MIC_BYTES:
        return None
    return int.from_bytes(data[-(COUNTER_BYTES + MIC_BYTES) : -MIC_BYTES], "little")


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
        problem = advert_problem(service_data, bool(device.bindkey))
        if problem is None:
            parser = self._parser(mac, device)
            before = _snapshot(self._seen.get(mac))
            state_before = (parser.packet_id, parser.encryption_counter, parser.last_service_info)
            update = parser.update(info)
            self._seen[mac] = update
            readings = list(_readings(update, before))
            decoded = [r for r in readings if r[0] != "signal_strength"]
            if decoded:
                events = self._events(device, [r for r in readings if r[1] is not None], at)
                return BleResult(events=tuple(events))
            problem = self._skipped(parser, service_data, state_before)
            if problem is None:
                _LOGGER.debug("bthome %s: repeated advertisement skipped", mac)
                return BleResult()
        self._warn.warn(
            mac,
            problem[0],
            at,
            "bthome %s: %s (advertisement %s)",
            mac,
            problem[1],
            _hex(service_data),
        )
        return BleResult(bad=True)

    @staticmethod
    def _skipped(
        parser: BTHomeBluetoothDeviceData,
        service_data: Mapping[str, bytes],
        state_before: tuple[Any, float, Any],
    ) -> tuple[str, str] | None:
        """Why the parser gave nothing for a well-formed advertisement, read from its state:
        None when it was a repeat (same data, or a packet id already seen)."""
        packet_id, counter_before, last = state_before
        if _is_encrypted(service_data):
            counter = _counter(service_data)
            if (
                counter is not None
                and counter < counter_before
                and counter >= COUNTER_RESTART_BELOW
            ):
                return "replay", "encryption counter went back: a replayed advertisement?"
            if parser.decryption_failed or not parser.bindkey_verified:
                return "decrypt", "cannot decrypt: wrong bindkey or altered advertisement"
            return None  # decrypted, and the same as the last one
        if last is not None and last.service_data == dict(service_data):
            return None
        data = service_data.get(V2_UUID)
        if data is not None and packet_id is not None and _packet_id(data) is not None:
            return None  # a packet id the parser had already seen (or an older one)
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
