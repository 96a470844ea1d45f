"""Installer workflow: `veille provision ACTION [ARGS...] --storage DIR [--config gateway.toml]`.

Actions: `import FILE`, `show [toml|json]`, `set-pin family|installer PIN`, `checklist`.
The functions below do the work and return data (the installer's web pages call them too);
`main` only parses, calls and prints. Bad input raises `ConfigError` with one line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_bridge.errors import ConfigError
from edge.config import load_gateway_config
from edge.events import Role, RoomKind
from edge.home import HomeFileError, HomeProfile, load_home_toml
from edge.storage.registry import Registry, ensure_private_dir

FAMILY_PIN_RE = re.compile(r"^\d{4,12}$")
INSTALLER_MIN_CHARS = 8
PIN_KINDS = {"family": "family_pin", "installer": "installer"}
ACTIVITY_ROLES = frozenset({Role.MOTION, Role.PRESENCE, Role.BED, Role.CHAIR})
ACTIONS = ("import", "show", "set-pin", "checklist", "csr")
BINDKEY_MASK = "(set, hidden)"


@dataclass(frozen=True, slots=True)
class RoomCheck:
    name: str
    kind: str
    devices: tuple[tuple[str, str], ...]  # (device id, role)


@dataclass(frozen=True, slots=True)
class Checklist:
    """What an installer checks before leaving the home."""

    home_id: str
    rooms: tuple[RoomCheck, ...]
    unassigned: tuple[tuple[str, str], ...]  # devices with no room: (id, role)
    missing: tuple[str, ...] = field(default=())  # essentials not there yet
    notes: tuple[str, ...] = field(default=())  # worth a look, not blocking

    @property
    def complete(self) -> bool:
        return not self.missing


def import_home(storage: Path, file: Path, config_home_id: str | None = None) -> HomeProfile:
    """Load a home description and save it as the registry's profile; ConfigError if bad."""
    try:
        profile = load_home_toml(Path(file))
    except HomeFileError as exc:
        raise ConfigError(str(exc)) from exc
    if config_home_id is not None and profile.id != config_home_id:
        raise ConfigError(
            f"{file}: home id {profile.id!r} differs from the gateway config's {config_home_id!r}"
        )
    registry = Registry(storage)
    try:
        registry.save_profile(profile)
    finally:
        registry.close()
    return profile


def load_profile(storage: Path) -> HomeProfile:
    """The stored profile; ConfigError when no home was imported into `storage` yet."""
    registry = Registry(storage)
    try:
        profile = registry.profile()
    finally:
        registry.close()
    if profile is None:
        raise ConfigError(f"{storage}: no home here yet (veille provision import FILE first)")
    return profile


def set_pin(storage: Path, who: str, pin: str) -> None:
    """Store the salted hash of the family PIN (4-12 digits) or installer password (8+)."""
    if who not in PIN_KINDS:
        raise ConfigError(f"set-pin takes {' or '.join(PIN_KINDS)}, not {who!r}")
    if who == "family" and not FAMILY_PIN_RE.match(pin):
        raise ConfigError("the family PIN must be 4 to 12 digits")
    if who == "installer" and (len(pin) < INSTALLER_MIN_CHARS or pin.strip() != pin):
        raise ConfigError(
            f"the installer PIN must be at least {INSTALLER_MIN_CHARS} characters, "
            "without leading or trailing spaces"
        )
    registry = Registry(storage)
    try:
        registry.set_secret(PIN_KINDS[who], pin)
    finally:
        registry.close()


def secrets_set(storage: Path) -> dict[str, bool]:
    """{"family": bool, "installer": bool}: which PINs are set."""
    registry = Registry(storage)
    try:
        return {who: registry.has_secret(kind) for who, kind in PIN_KINDS.items()}
    finally:
        registry.close()


def checklist(profile: HomeProfile, pins: dict[str, bool] | None = None) -> Checklist:
    """Rooms with their devices, and the essentials still missing (pure)."""
    rooms = tuple(
        RoomCheck(
            r.name,
            str(r.kind),
            tuple((d.id, str(d.role)) for d in profile.devices if d.room == r.name),
        )
        for r in profile.rooms
    )
    unassigned = tuple((d.id, str(d.role)) for d in profile.devices if d.room is None)
    roles = {d.role for d in profile.devices}

    def covered(kind: RoomKind, wanted: frozenset[Role]) -> bool:
        names = {r.name for r in profile.rooms if r.kind is kind}
        return any(d.room in names and d.role in wanted for d in profile.devices)

    missing: list[str] = []
    notes: list[str] = []
    if Role.SOS_BUTTON not in roles:
        missing.append("no sos_button: the resident has no way to call for help")
    if Role.DOOR_ENTRANCE not in roles:
        missing.append("no door_entrance contact: night exits and time out cannot be seen")
    if not any(r.kind is RoomKind.BEDROOM for r in profile.rooms):
        missing.append("no bedroom room declared")
    elif not covered(RoomKind.BEDROOM, ACTIVITY_ROLES):
        missing.append("no bedroom sensor (motion, presence or bed): getting up is not seen")
    if not any(r.kind is RoomKind.BATHROOM for r in profile.rooms):
        notes.append("no bathroom room declared")
    elif not covered(RoomKind.BATHROOM, ACTIVITY_ROLES | {Role.DOOR, Role.TOILET_FLUSH}):
        notes.append("no bathroom sensor: long bathroom stays are not seen")
    if Role.WEARABLE not in roles:
        notes.append("no wearable: falls are detected only from inactivity")
    notes.extend(f"room {r.name!r} has no device" for r in rooms if not r.devices)
    if pins is not None:
        missing.extend(
            f"no {who} PIN set (veille provision set-pin {who} ...)"
            for who, is_set in pins.items()
            if not is_set
        )
    return Checklist(profile.id, rooms, unassigned, tuple(missing), tuple(notes))


def checklist_text(check: Checklist) -> str:
    lines = [f"home {check.home_id}"]
    for room in check.rooms:
        lines.append(f"  room {room.name} ({room.kind})")
        lines.extend(f"    {dev_id}: {role}" for dev_id, role in room.devices)
        if not room.devices:
            lines.append("    (no device)")
    if check.unassigned:
        lines.append("  no room")
        lines.extend(f"    {dev_id}: {role}" for dev_id, role in check.unassigned)
    lines.extend(f"[ ] {item}" for item in check.missing)
    lines.extend(f"note: {item}" for item in check.notes)
    lines.append("complete" if check.complete else f"{len(check.missing)} essential(s) missing")
    return "\n".join(lines)


def profile_dict(profile: HomeProfile) -> dict[str, Any]:
    """The profile as plain data for display; BTHome bindkeys are masked."""
    d: dict[str, Any] = json.loads(json.dumps(profile.to_dict()))
    for dev in d["devices"]:
        if dev.get("bindkey"):
            dev["bindkey"] = BINDKEY_MASK
    return d


def profile_text(profile: HomeProfile) -> str:
    """The profile in the shape of the home description file (TOML-like, keys masked)."""
    d = profile_dict(profile)
    lines = ["[home]", f'id = "{d["id"]}"', f'timezone = "{d["timezone"]}"']
    for section in ("rooms", "devices", "contacts"):
        for item in d[section]:
            lines.append(f"\n[[{section}]]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in item.items() if v not in (None, ""))
    lines.append("\n[thresholds]")
    lines.extend(f"{k} = {v}" for k, v in d["thresholds"].items())
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(str(value), ensure_ascii=False)
    return str(value)


def main(args: Any) -> int:
    """Dispatch `veille provision ACTION ...`; print results; ConfigError for bad input."""
    action: str = args.action
    rest: Sequence[str] = list(args.args or ())
    storage = Path(args.storage)
    if action not in ACTIONS:
        raise ConfigError(f"unknown action {action!r}; one of: {', '.join(ACTIONS)}")
    if action == "import":
        _arity(action, rest, 1, "import FILE")
        home_id = None
        if getattr(args, "config", None):
            home_id = load_gateway_config(args.config).home_id
        profile = import_home(storage, Path(rest[0]), home_id)
        print(
            f"imported home {profile.id} ({profile.timezone}): {len(profile.rooms)} rooms, "
            f"{len(profile.devices)} devices, {len(profile.contacts)} contacts into {storage}"
        )
        return 0
    if action == "show":
        if rest not in ([], ["toml"], ["json"]):
            raise ConfigError("usage: veille provision show [toml|json] --storage DIR")
        profile = load_profile(storage)
        if rest == ["json"]:
            print(json.dumps(profile_dict(profile), ensure_ascii=False))
        else:
            print(profile_text(profile))
        return 0
    if action == "set-pin":
        _arity(action, rest, 2, "set-pin family|installer PIN")
        set_pin(storage, rest[0], rest[1])
        print(f"{rest[0]} PIN set (stored as a salted hash)")
        return 0
    if action == "csr":
        _arity(action, rest, 0, "csr")
        key, csr = make_home_csr(storage)
        print(CSR_STEPS.format(key=key, csr=csr, home=load_profile(storage).id))
        return 0
    _arity(action, rest, 0, "checklist")
    check = checklist(load_profile(storage), secrets_set(storage))
    print(checklist_text(check))
    return 0


CSR_STEPS = """\
The home's private key stays here: {key} (readable by the service user only).
Send the certificate signing request to the hub operator: {csr}
  1. The operator checks that the request names this home ({home}) and signs it:
       veille pki sign-csr {csr} --dir HUB_CA_DIR
  2. Copy the signed certificate back to the gateway, next to the key, as hub-client.pem,
     and the hub's CA certificate as hub-ca.pem.
  3. In gateway.toml, [hub]: url = "mqtts://HUB:8883", ca_file, cert_file and key_file.
  4. Restart the gateway: `/health` then shows the hub link; the hub lists the home online."""


def make_home_csr(storage: Path) -> tuple[Path, Path]:
    """The home's TLS key and certificate signing request, in `storage/tls/` (key 0600)."""
    from cloud_bridge.pki import make_csr  # lazy: cryptography, for this one action

    profile = load_profile(storage)
    tls = ensure_private_dir(storage / "tls")
    return make_csr(tls / "hub-client.key", tls / "hub-client.csr", profile.id)


def _arity(action: str, rest: Sequence[str], n: int, usage: str) -> None:
    if len(rest) != n:
        raise ConfigError(f"{action} takes {n} argument(s): veille provision {usage}")
