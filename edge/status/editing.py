"""Pure edits of a home profile for the installer pages, checked like an imported file.

Each function takes a `HomeProfile` and returns a new one; the result goes through
`edge.home.parse_home`, the same checks as `veille provision import`, so the pages cannot
store what the command line would refuse. Bad input raises `HomeFileError` with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from edge.events import Role
from edge.home import (
    THRESHOLD_LIMITS,
    Device,
    HomeFileError,
    HomeProfile,
    Thresholds,
    parse_home,
    threshold_problem,
    thresholds_problem,
)

# Which Zigbee2MQTT exposes (any one of them) let a device serve a role: the pages offer a
# device only the roles its exposes can serve. BLE devices' capabilities are not known
# before they speak, and a wearable is never a Zigbee device.
ROLE_EXPOSES: Mapping[Role, frozenset[str]] = {
    Role.MOTION: frozenset({"occupancy"}),
    Role.PRESENCE: frozenset({"presence", "occupancy"}),
    Role.DOOR_ENTRANCE: frozenset({"contact"}),
    Role.DOOR_FRIDGE: frozenset({"contact"}),
    Role.DOOR: frozenset({"contact"}),
    Role.BED: frozenset({"contact", "occupancy", "presence", "pressure_state"}),
    Role.CHAIR: frozenset({"contact", "occupancy", "presence", "pressure_state"}),
    Role.SOS_BUTTON: frozenset({"action"}),
    Role.CHECKIN_BUTTON: frozenset({"action"}),
    Role.TEMPERATURE: frozenset({"temperature"}),
    Role.WATER_LEAK: frozenset({"water_leak"}),
    Role.POWER: frozenset({"power", "state"}),
    Role.TOILET_FLUSH: frozenset({"contact", "vibration", "occupancy", "water_leak"}),
    Role.LIGHT_SWITCH: frozenset({"state"}),
    Role.PROMPT: frozenset({"warning", "effect", "state"}),
}


class ThresholdError(HomeFileError):
    """A threshold the form cannot take; `key` names it so the page can show its range."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def roles_for(source: str, properties: frozenset[str] | None) -> list[str]:
    """The roles a device can serve: by its exposes for Zigbee (all while not known)."""
    if source == "wearable":
        return [str(Role.WEARABLE)]
    roles = [r for r in Role if r is not Role.WEARABLE]
    if source != "zigbee2mqtt" or properties is None:
        return [str(r) for r in roles]
    return [str(r) for r in roles if ROLE_EXPOSES.get(r, frozenset()) & properties]


def check_role(device: Device, properties: frozenset[str] | None) -> None:
    """Refuse a role the device's exposes cannot serve (HomeFileError with the reason)."""
    allowed = roles_for(device.source, properties)
    if str(device.role) not in allowed:
        raise HomeFileError(
            f"installer page: device {device.id!r} cannot serve as {device.role}: "
            f"its exposes ({', '.join(sorted(properties or ()))}) offer {', '.join(allowed)}"
        )


def to_description(profile: HomeProfile) -> dict[str, Any]:
    """The profile in the shape of a home description file (what `parse_home` reads)."""
    d = json.loads(json.dumps(profile.to_dict()))
    devices = []
    for dev in d["devices"]:
        item = {k: v for k, v in dev.items() if v not in (None, "")}
        devices.append(item)
    return {
        "home": {
            "id": d["id"],
            "timezone": d["timezone"],
            **{k: d[k] for k in ("resident", "address", "installer") if d.get(k)},
        },
        "rooms": d["rooms"],
        "devices": devices,
        "contacts": d["contacts"],
        "thresholds": d["thresholds"],
    }


def _edit(profile: HomeProfile, change: Callable[[dict[str, Any]], None]) -> HomeProfile:
    desc = to_description(profile)
    change(desc)
    return parse_home(desc, None, "installer page")


def set_people(profile: HomeProfile, resident: str, address: str, installer: str) -> HomeProfile:
    """Who lives here, where, and who installed it (shown on the pages and the report)."""

    def change(d: dict[str, Any]) -> None:
        d["home"].update(resident=resident, address=address, installer=installer)

    return _edit(profile, change)


def set_timezone(profile: HomeProfile, timezone: str) -> HomeProfile:
    def change(d: dict[str, Any]) -> None:
        d["home"]["timezone"] = timezone.strip()

    return _edit(profile, change)


def add_room(profile: HomeProfile, name: str, kind: str) -> HomeProfile:
    def change(d: dict[str, Any]) -> None:
        d["rooms"].append({"name": name.strip(), "kind": kind})

    return _edit(profile, change)


def remove_room(profile: HomeProfile, name: str) -> HomeProfile:
    """Remove a room; its devices stay, with no room."""
    if name not in {r.name for r in profile.rooms}:
        raise HomeFileError(f"installer page: no room {name!r}")

    def change(d: dict[str, Any]) -> None:
        d["rooms"] = [r for r in d["rooms"] if r["name"] != name]
        for dev in d["devices"]:
            if dev.get("room") == name:
                dev.pop("room")

    return _edit(profile, change)


def add_contact(profile: HomeProfile, name: str, phone: str, relation: str) -> HomeProfile:
    def change(d: dict[str, Any]) -> None:
        d["contacts"].append(
            {"name": name.strip(), "phone": phone.strip(), "relation": relation.strip()}
        )

    return _edit(profile, change)


def remove_contact(profile: HomeProfile, index: int) -> HomeProfile:
    if not 0 <= index < len(profile.contacts):
        raise HomeFileError(f"installer page: no contact number {index}")

    def change(d: dict[str, Any]) -> None:
        del d["contacts"][index]

    return _edit(profile, change)


def set_thresholds(profile: HomeProfile, values: Mapping[str, str]) -> HomeProfile:
    """Set thresholds from form text (`12,5` or `12.5`); unknown names and values outside
    their range are refused (`ThresholdError` says which, for the page to say it in words)."""
    parsed: dict[str, float] = {}
    for key, text in values.items():
        if key not in THRESHOLD_LIMITS:
            raise ThresholdError(key, f"installer page: unknown threshold {key!r}")
        if str(text).strip() == "":
            continue
        try:
            value = float(str(text).replace(",", ".").replace("\u202f", "").strip())
        except ValueError:
            raise ThresholdError(key, f"installer page: threshold {key} must be a number") from None
        if (problem := threshold_problem(key, value)) is not None:
            raise ThresholdError(key, f"installer page: {problem}")
        parsed[key] = value
    merged = {f.name: getattr(profile.thresholds, f.name) for f in fields(Thresholds)} | parsed
    if (problem := thresholds_problem(merged)) is not None:
        raise ThresholdError("temp_low_c", f"installer page: {problem}")

    def change(d: dict[str, Any]) -> None:
        d["thresholds"].update(parsed)

    return _edit(profile, change)


def add_device(profile: HomeProfile, device: Mapping[str, str]) -> HomeProfile:
    """Register a device (`id`, `source`, `address`, `role`, optional room/name/bindkey)."""
    item = {k: str(v).strip() for k, v in device.items() if str(v).strip() != ""}

    def change(d: dict[str, Any]) -> None:
        d["devices"].append(item)

    return _edit(profile, change)


def update_device(
    profile: HomeProfile,
    device_id: str,
    *,
    friendly_name: str | None = None,
    room: str | None = None,
    role: str | None = None,
    bindkey: str | None = None,
) -> HomeProfile:
    """Rename, move (room "" = none) or change the role of a registered device."""
    if profile.device(device_id) is None:
        raise HomeFileError(f"installer page: no device {device_id!r}")

    def change(d: dict[str, Any]) -> None:
        for dev in d["devices"]:
            if dev["id"] != device_id:
                continue
            for key, value in (
                ("friendly_name", friendly_name),
                ("room", room),
                ("role", role),
                ("bindkey", bindkey),
            ):
                if value is None:
                    continue
                if value.strip() == "":
                    dev.pop(key, None)
                else:
                    dev[key] = value.strip()

    return _edit(profile, change)


def remove_device(profile: HomeProfile, device_id: str) -> HomeProfile:
    if profile.device(device_id) is None:
        raise HomeFileError(f"installer page: no device {device_id!r}")

    def change(d: dict[str, Any]) -> None:
        d["devices"] = [dev for dev in d["devices"] if dev["id"] != device_id]

    return _edit(profile, change)
