"""The home's profile: rooms, devices, contacts and thresholds, checked once when built.

`load_home_toml` reads the installer's declarative home description (DESIGN.md section 7)
and refuses unknown keys and bad values with the file name, the line and the reason.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud_bridge.contract import HOME_ID_RE
from edge.events import Role, RoomKind

MAC_RE = re.compile(r"([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}")
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
SOURCES = ("zigbee2mqtt", "bthome", "wearable")


class HomeFileError(ValueError):
    """A home description that cannot be used; the message names file, line and reason."""


@dataclass(frozen=True, slots=True)
class Room:
    name: str
    kind: RoomKind


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    source: str
    address: str
    room: str | None
    role: Role
    friendly_name: str = ""
    bindkey: str = ""  # hex, BTHome encryption key


@dataclass(frozen=True, slots=True)
class Contact:
    name: str
    phone: str = ""
    relation: str = ""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Per-home settings an installer may change; defaults suit most homes."""

    fall_confirm_s: float = 30.0
    night_start_h: float = 22.0
    night_end_h: float = 7.0
    night_exit_return_min: float = 20.0
    temp_low_c: float = 16.0
    temp_high_c: float = 30.0
    battery_low_pct: float = 15.0
    offline_floor_min: float = 60.0
    learning_days: float = 7.0
    # check-ins: the gateway asks the resident before an inactivity-type staff alert
    checkin_answer_min: float = 10.0  # the answer window; no answer -> the staff alert
    checkin_max_per_day: float = 2.0  # early check-ins a day (off furniture: not limited)
    checkin_quiet_from_h: float = 0.0  # no early check-in in [from, to) local; equal: none
    checkin_quiet_to_h: float = 0.0
    checkin_in_bed_at_night: float = 0.0  # 1: early check-ins in bed at night too


@dataclass(frozen=True, slots=True)
class Limit:
    """The range a threshold may take (inclusive) and its unit, for checks and for the pages."""

    low: float
    high: float
    unit: str  # s, min, h (an hour of the day), °C, %, days, per_day, flag


# Outside these a threshold would disarm a detector (a fall confirmed after 1e12 s) or make
# no sense (night starting at 99 h); the pages show them and `provision import` refuses them.
THRESHOLD_LIMITS: dict[str, Limit] = {
    "fall_confirm_s": Limit(5, 120, "s"),
    "night_start_h": Limit(0, 24, "h"),
    "night_end_h": Limit(0, 24, "h"),
    "night_exit_return_min": Limit(5, 180, "min"),
    "temp_low_c": Limit(5, 25, "°C"),
    "temp_high_c": Limit(20, 45, "°C"),
    "battery_low_pct": Limit(5, 50, "%"),
    "offline_floor_min": Limit(10, 1440, "min"),
    "learning_days": Limit(1, 60, "days"),
    "checkin_answer_min": Limit(1, 60, "min"),
    "checkin_max_per_day": Limit(0, 10, "per_day"),
    "checkin_quiet_from_h": Limit(0, 24, "h"),
    "checkin_quiet_to_h": Limit(0, 24, "h"),
    "checkin_in_bed_at_night": Limit(0, 1, "flag"),
}


def threshold_problem(key: str, value: object) -> str | None:
    """Why `value` cannot be threshold `key` (English, for files and logs), or None if it can.

    Checked without converting first: TOML integers have no size limit (a 400-digit number
    would overflow `float`) and floats may be `nan` or `inf`.
    """
    limit = THRESHOLD_LIMITS.get(key)
    if limit is None:
        return f"unknown threshold {key!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"threshold {key} must be a number"
    if isinstance(value, float) and not math.isfinite(value):
        return f"threshold {key} must be a finite number, not {value}"
    if not limit.low <= value <= limit.high:
        huge = isinstance(value, int) and value.bit_length() > 64
        shown = "a number too large" if huge else f"{value:g}"
        return f"threshold {key} = {shown} is outside {limit.low:g}..{limit.high:g} {limit.unit}"
    return None


def thresholds_problem(values: Mapping[str, float]) -> str | None:
    """A reason the thresholds do not hold together (e.g. cold above hot), or None."""
    defaults = Thresholds()
    low = values.get("temp_low_c", defaults.temp_low_c)
    high = values.get("temp_high_c", defaults.temp_high_c)
    if low >= high:
        return f"temp_low_c ({low:g}) must be below temp_high_c ({high:g})"
    return None


@dataclass(frozen=True, slots=True)
class HomeProfile:
    id: str
    timezone: str = "Europe/Paris"
    rooms: tuple[Room, ...] = ()
    devices: tuple[Device, ...] = ()
    contacts: tuple[Contact, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    # who and where, for the pages and the installation report (optional in [home])
    resident: str = ""
    address: str = ""
    installer: str = ""

    def device(self, device_id: str) -> Device | None:
        for dev in self.devices:
            if dev.id == device_id:
                return dev
        return None

    def room_kind(self, room: str | None) -> RoomKind | None:
        for r in self.rooms:
            if r.name == room:
                return r.kind
        return None

    def by_friendly_name(self) -> dict[str, Device]:
        return {d.friendly_name or d.address: d for d in self.devices if d.source == "zigbee2mqtt"}

    def by_address(self) -> dict[str, Device]:
        return {d.address.upper(): d for d in self.devices if d.source != "zigbee2mqtt"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HomeProfile:
        """Rebuild from `to_dict` output (the registry's stored form)."""
        return cls(
            id=data["id"],
            timezone=data.get("timezone", "Europe/Paris"),
            rooms=tuple(Room(r["name"], RoomKind(r["kind"])) for r in data.get("rooms", ())),
            devices=tuple(
                Device(**{**d, "role": Role(d["role"])}) for d in data.get("devices", ())
            ),
            contacts=tuple(Contact(**c) for c in data.get("contacts", ())),
            thresholds=Thresholds(**data.get("thresholds", {})),
            resident=str(data.get("resident", "")),
            address=str(data.get("address", "")),
            installer=str(data.get("installer", "")),
        )


_SECTION_KEYS: dict[str, set[str]] = {
    "home": {"id", "timezone", "resident", "address", "installer"},
    "rooms": {"name", "kind"},
    "devices": {"id", "source", "address", "friendly_name", "room", "role", "bindkey"},
    "contacts": {"name", "phone", "relation"},
    "thresholds": {f.name for f in fields(Thresholds)},
}


class _Locator:
    """Finds the line of `[section]` / `[[section]]` number `index`, key `key`, in raw TOML."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line(self, section: str, index: int | None = None, key: str | None = None) -> int:
        header = re.compile(r"^\s*\[\[?\s*" + re.escape(section) + r"\s*\]\]?\s*(#.*)?$")
        seen = -1
        start = None
        for n, raw in enumerate(self.lines):
            if header.match(raw):
                seen += 1
                if index is None or seen == index:
                    start = n
                    break
        if start is None:
            return 1
        if key is None:
            return start + 1
        keyline = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for n in range(start + 1, len(self.lines)):
            if self.lines[n].lstrip().startswith("["):
                break
            if keyline.match(self.lines[n]):
                return n + 1
        return start + 1


def load_home_toml(path: Path) -> HomeProfile:
    """Parse and check a home description; raise HomeFileError("file:line: reason")."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HomeFileError(f"{path}: cannot read: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, or an integer past Python's digit limit
        match = re.search(r"line (\d+)", str(exc))
        line = match.group(1) if match else "1"
        raise HomeFileError(f"{path}:{line}: not valid TOML: {exc}") from exc
    return parse_home(data, _Locator(text), str(path))


def parse_home(
    data: Mapping[str, Any], where: _Locator | None = None, name: str = ""
) -> HomeProfile:
    loc = where or _Locator("")

    def fail(
        reason: str, section: str, index: int | None = None, key: str | None = None
    ) -> NoReturn:
        raise HomeFileError(f"{name}:{loc.line(section, index, key)}: {reason}")

    for top in data:
        if top not in _SECTION_KEYS:
            fail(f"unknown section [{top}]", top)
    home = data.get("home")
    if not isinstance(home, dict):
        raise HomeFileError(f"{name}:1: missing [home] section")
    _check_keys(home, "home", None, fail)
    home_id = home.get("id")
    if not isinstance(home_id, str) or not HOME_ID_RE.match(home_id):
        fail(f"home id {home_id!r} must match {HOME_ID_RE.pattern}", "home", None, "id")
    tz = home.get("timezone", "Europe/Paris")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"unknown timezone {tz!r}", "home", None, "timezone")

    rooms: list[Room] = []
    for i, r in enumerate(_table_list(data, "rooms", fail)):
        _check_keys(r, "rooms", i, fail)
        rname = r.get("name")
        if not isinstance(rname, str) or not rname.strip():
            fail("room needs a non-empty name", "rooms", i, "name")
        if rname in {x.name for x in rooms}:
            fail(f"room {rname!r} is declared twice", "rooms", i, "name")
        kind = r.get("kind", "other")
        if kind not in RoomKind.__members__.values():
            fail(f"room kind {kind!r} is not one of {', '.join(RoomKind)}", "rooms", i, "kind")
        rooms.append(Room(str(rname), RoomKind(kind)))

    devices: list[Device] = []
    room_names = {r.name for r in rooms}
    for i, d in enumerate(_table_list(data, "devices", fail)):
        _check_keys(d, "devices", i, fail)
        dev_id = d.get("id")
        if not isinstance(dev_id, str) or not DEVICE_ID_RE.match(dev_id):
            fail(f"device id {dev_id!r} must match {DEVICE_ID_RE.pattern}", "devices", i, "id")
        if dev_id in {x.id for x in devices}:
            fail(f"device id {dev_id!r} is declared twice", "devices", i, "id")
        source = d.get("source")
        if source not in SOURCES:
            fail(f"source {source!r} is not one of {', '.join(SOURCES)}", "devices", i, "source")
        address = d.get("address", "")
        if not isinstance(address, str) or not address:
            fail("device needs an address (IEEE address or BLE MAC)", "devices", i, "address")
        if source != "zigbee2mqtt" and not MAC_RE.fullmatch(address):
            fail(f"BLE address {address!r} must be like AA:BB:CC:DD:EE:FF", "devices", i, "address")
        role = d.get("role")
        if not isinstance(role, str) or role not in Role.__members__.values():
            fail(f"role {role!r} is not one of {', '.join(Role)}", "devices", i, "role")
        room = d.get("room")
        if room is not None and room not in room_names:
            fail(f"room {room!r} is not declared in [[rooms]]", "devices", i, "room")
        bindkey = d.get("bindkey", "")
        if bindkey and (source != "bthome" or not re.fullmatch(r"[0-9A-Fa-f]{32}", str(bindkey))):
            fail("bindkey must be 32 hex digits, on a bthome device", "devices", i, "bindkey")
        friendly = d.get("friendly_name", "")
        if not isinstance(friendly, str):
            fail("friendly_name must be a string", "devices", i, "friendly_name")
        devices.append(
            Device(dev_id, source, address, room, Role(role), friendly, str(bindkey).lower())
        )

    contacts: list[Contact] = []
    for i, c in enumerate(_table_list(data, "contacts", fail)):
        _check_keys(c, "contacts", i, fail)
        if not isinstance(c.get("name"), str) or not c["name"].strip():
            fail("contact needs a name", "contacts", i, "name")
        contacts.append(Contact(c["name"], str(c.get("phone", "")), str(c.get("relation", ""))))

    thresholds = Thresholds()
    th = data.get("thresholds", {})
    if not isinstance(th, dict):
        fail("[thresholds] must be a table", "thresholds")
    _check_keys(th, "thresholds", None, fail)
    for key, value in th.items():
        if (problem := threshold_problem(key, value)) is not None:
            fail(problem, "thresholds", None, key)
    if (problem := thresholds_problem({k: float(v) for k, v in th.items()})) is not None:
        fail(problem, "thresholds", None, "temp_low_c" if "temp_low_c" in th else "temp_high_c")
    if th:
        thresholds = Thresholds(**{k: float(v) for k, v in th.items()})
    people: dict[str, str] = {}
    for key in ("resident", "address", "installer"):
        value = home.get(key, "")
        if not isinstance(value, str) or len(value) > 200:
            fail(f"{key} must be a text of at most 200 characters", "home", None, key)
        people[key] = value.strip()
    return HomeProfile(
        str(home_id),
        str(tz),
        tuple(rooms),
        tuple(devices),
        tuple(contacts),
        thresholds,
        **people,
    )


def _table_list(data: Mapping[str, Any], section: str, fail: Any) -> list[dict[str, Any]]:
    value = data.get(section, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        fail(f"[[{section}]] must be an array of tables", section)
    return list(value)


def _check_keys(table: Mapping[str, Any], section: str, index: int | None, fail: Any) -> None:
    for key in table:
        if key not in _SECTION_KEYS[section]:
            fail(f"unknown key {key!r} in [{section}]", section, index, key)
