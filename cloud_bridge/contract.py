"""Wire contract v1 between a home gateway and the hub (DESIGN.md section 3).

Topic builders and a validator per payload schema live here together, so that what is sent
and what is accepted cannot drift. Pure: no MQTT, no I/O.

Aggregate fields (beyond `schema`, `home_id`, `period_start`, `period_end`):

`veille.aggregate.hourly/1`
    rooms           {room: {"activity": int, "door_openings": int, "bed_min": float}}
                    activity = events that show a person moving; bed_min = minutes a bed
                    sensor showed someone in bed during the hour (rooms with a bed sensor)
    totals          {"activity": int, "door_openings": int, "entrance_openings": int}
    sensor_health   {"devices": int, "offline": int, "low_battery": int, "unknown_devices": int}

`veille.aggregate.daily/1` (the same per-room and health fields over a local day, plus the
summary of the day; times of day as local "HH:MM", null when not observed)
    date            "YYYY-MM-DD", the home's local date
    get_up, bed_time, time_in_bed_min, night_bathroom_visits, time_out_min
    compare         {metric: {"usual": float | null, "z": float | null}}: how each metric
                    compares with the resident's learned usual (z-score; null while learning)
    check_ins       int, optional: how many times that day the gateway asked the resident
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


# --- the vocabulary: every side (gateway, hub, console) uses these, no other copy --------------
class AlertType(StrEnum):
    FALL = "fall"
    SOS = "sos"
    INACTIVITY = "inactivity"
    NIGHT_EXIT = "night_exit"
    BATHROOM_LONG = "bathroom_long"
    NO_MORNING_ACTIVITY = "no_morning_activity"
    TEMPERATURE = "temperature"
    WATER_LEAK = "water_leak"
    SENSOR_OFFLINE = "sensor_offline"
    LOW_BATTERY = "low_battery"


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    WARNING = "warning"
    INFO = "info"


SEVERITY_RANK: Mapping[Severity, int] = {
    Severity.CRITICAL: 0,
    Severity.HIGH: 1,
    Severity.WARNING: 2,
    Severity.INFO: 3,
}


class AlertState(StrEnum):
    RAISED = "raised"
    CANCELLED = "cancelled"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


def iso_utc(t: float) -> str:
    """Seconds since the epoch -> `2024-01-02T03:04:05.678Z` (milliseconds, UTC)."""
    whole = int(t // 1)
    ms = round((t - whole) * 1000)
    if ms == 1000:
        whole, ms = whole + 1, 0
    return datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def parse_iso_utc(text: str) -> float:
    """Inverse of `iso_utc`; also accepts no fraction and `+00:00`. Raises ValueError."""
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError(f"time without a timezone: {text!r}")
    return stamp.astimezone(UTC).timestamp()


HOME_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,63}$")
TOPIC_ROOT = "veille/v1"

ALERT_TYPES = frozenset(t.value for t in AlertType)
SEVERITIES = frozenset(s.value for s in Severity)
STATES = frozenset(s.value for s in AlertState)
ACK_ACTIONS = frozenset({AlertState.ACKNOWLEDGED.value, AlertState.RESOLVED.value})
HEALTH_STATES = frozenset({"ok", "warning", "error"})
ISO_UTC_RE = re.compile(
    r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z\Z"
)
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_EVIDENCE_BYTES = 2 * 1024
MAX_DEPTH = 8  # objects and arrays nested in one payload (ours use 3)
MAX_NUMBER = 1e15  # |value| of any number: counts, minutes, scores
MAX_INT_DIGITS = 16
MAX_RECEIPT_IDS = 1000
_BAD_CHARS_RE = re.compile("[\x00\ud800-\udfff]")  # NUL, lone surrogates (\uXXXX escapes)
_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))

ALERT_FIELDS = frozenset(
    {
        "schema",
        "id",
        "home_id",
        "type",
        "severity",
        "state",
        "at",
        "raised_at",
        "room",
        "device_id",
        "evidence",
    }
)
HOURLY_FIELDS = frozenset(
    {"schema", "home_id", "period_start", "period_end", "rooms", "totals", "sensor_health"}
)
DAILY_FIELDS = frozenset(
    {
        "schema",
        "home_id",
        "period_start",
        "period_end",
        "date",
        "rooms",
        "sensor_health",
        "get_up",
        "bed_time",
        "time_in_bed_min",
        "night_bathroom_visits",
        "time_out_min",
        "check_ins",
        "compare",
    }
)
STATUS_FIELDS = frozenset(
    {"schema", "home_id", "online", "at", "version", "health", "time_synced", "outbox"}
)
ACK_FIELDS = frozenset({"schema", "home_id", "alert_id", "action", "at", "by", "note"})
RECEIPT_FIELDS = frozenset({"schema", "home_id", "ids", "at", "alerts"})


class ContractError(ValueError):
    """A topic or payload that does not follow wire contract v1."""


@dataclass(frozen=True, slots=True)
class HomeId:
    value: str

    def __post_init__(self) -> None:
        if not HOME_ID_RE.match(self.value):
            raise ContractError(f"invalid home id {self.value!r}")

    def __str__(self) -> str:
        return self.value


def topic(home_id: str, leaf: str) -> str:
    """`veille/v1/{home}/{leaf}`, with the home id checked."""
    if leaf not in LEAVES:
        raise ContractError(f"unknown topic leaf {leaf!r}")
    return f"{TOPIC_ROOT}/{HomeId(home_id)}/{leaf}"


def alert_topic(home_id: str) -> str:
    return topic(home_id, "alert")


def aggregate_topic(home_id: str, period: str) -> str:
    return topic(home_id, f"aggregate/{period}")


def status_topic(home_id: str) -> str:
    return topic(home_id, "status")


def ack_topic(home_id: str) -> str:
    return topic(home_id, "ack")


def receipt_topic(home_id: str) -> str:
    return topic(home_id, "receipt")


def parse_topic(name: str) -> tuple[str, str]:
    """`veille/v1/h-1/aggregate/daily` -> ("h-1", "aggregate/daily"); ContractError otherwise."""
    parts = name.split("/")
    if len(parts) < 4 or parts[0] != "veille" or parts[1] != "v1":
        raise ContractError(f"not a veille v1 topic: {name!r}")
    home, leaf = parts[2], "/".join(parts[3:])
    HomeId(home)
    if leaf not in LEAVES:
        raise ContractError(f"unknown topic leaf {leaf!r} in {name!r}")
    return home, leaf


def encode(payload: Mapping[str, Any]) -> bytes:
    """Compact one-line UTF-8 JSON, as the contract asks."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _no_constant(name: str) -> Any:
    raise ContractError(f"{name} is not a number the contract allows")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ContractError(f"integer of {len(text)} digits is out of bounds")
    return int(text)


def _bounded_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        raise ContractError(f"number {text[:20]!r} is out of bounds")
    return value


def nesting_depth(raw: bytes) -> int:
    """How deep objects and arrays nest in a JSON text, without parsing it (no recursion)."""
    depth = deepest = 0
    # strings out, then every byte but the brackets (a payload is mostly not brackets)
    for byte in _STRING_RE.sub(b'""', raw).translate(None, _NOT_BRACKETS):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


def too_deep(raw: bytes) -> bool:
    """Whether a JSON text nests deeper than MAX_DEPTH; counted only when it has more
    opening brackets than that (inside strings included), since it cannot otherwise."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False
    return nesting_depth(raw) > MAX_DEPTH


def _check_strings(value: Any) -> None:
    """Every string and key is free of NUL and lone surrogates (iterative: no recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _BAD_CHARS_RE.search(item):
                raise ContractError("a string carries a NUL or a lone surrogate")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def sanitized(value: Any, depth: int = MAX_DEPTH) -> Any:
    """A copy of a stored JSON value that any page can render and any encoder can write:
    numbers outside the contract's bounds (NaN, inf, 400 digits) and anything nested deeper
    than `depth` become None, NUL and lone surrogates become U+FFFD."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return value if _is_number(value) else None
    if isinstance(value, str):
        return _BAD_CHARS_RE.sub("\ufffd", value)
    if depth <= 0:
        return None
    if isinstance(value, dict):
        return {sanitized(str(k)): sanitized(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitized(v, depth - 1) for v in value]
    return None


def loads_stored(text: str | bytes) -> Any:
    """A JSON text from a store, parsed whatever it holds (NaN, 30,000 levels), sanitized;
    None if it cannot be read."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if too_deep(data):
        return None
    try:
        return sanitized(json.loads(data.decode("utf-8", "replace")))
    except (ValueError, RecursionError):
        return None


def decode(raw: bytes | bytearray | str) -> dict[str, Any]:
    """Parse a payload into a JSON object; ContractError for anything else.

    Total: the size is checked before parsing, then the nesting depth (so no input can make
    the parser recurse), strict UTF-8, numbers finite and bounded (no NaN, no 400-digit
    integer), strings without NUL or lone surrogates.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise ContractError(f"payload of {len(data)} bytes is too large")
    if too_deep(data):
        raise ContractError(f"payload nests deeper than {MAX_DEPTH} levels")
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text,
            parse_int=_bounded_int,
            parse_float=_bounded_float,
            parse_constant=_no_constant,
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        if isinstance(exc, ContractError):
            raise
        raise ContractError(f"payload is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ContractError("payload is not a JSON object")
    if b"\\u" in data:
        # only a \uXXXX escape can put a NUL (a raw one is refused by the parser) or a lone
        # surrogate (strict UTF-8 refuses encoded ones) in a string: without one, none has any
        _check_strings(value)
    return value


def _require(cond: bool, reason: str) -> None:
    if not cond:
        raise ContractError(reason)


def _one_of(value: Any, allowed: frozenset[str]) -> bool:
    return isinstance(value, str) and value in allowed


def _is_time(value: Any) -> bool:
    """A real UTC instant written `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` (2026-99-99 is not)."""
    if not (isinstance(value, str) and ISO_UTC_RE.match(value)):
        return False
    try:
        dt.datetime.fromisoformat(value[:-1])
    except ValueError:
        return False
    return True


def _known_fields(payload: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(payload) - allowed)
    _require(not unknown, f"unknown fields {unknown[:5]}")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_NUMBER


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= MAX_NUMBER  # no float(): a 400-digit int would overflow it
    return isinstance(value, float) and math.isfinite(value) and abs(value) <= MAX_NUMBER


def _common(payload: Mapping[str, Any], schema: str) -> None:
    _require(payload.get("schema") == schema, f"schema must be {schema!r}")
    home = payload.get("home_id")
    _require(isinstance(home, str) and bool(HOME_ID_RE.match(home)), "bad home_id")


def validate_alert(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    _common(payload, "veille.alert/1")
    _known_fields(payload, ALERT_FIELDS)
    _require(isinstance(payload.get("id"), str) and 8 <= len(payload["id"]) <= 64, "bad id")
    _require(_one_of(payload.get("type"), ALERT_TYPES), f"bad type {payload.get('type')!r}")
    _require(_one_of(payload.get("severity"), SEVERITIES), "bad severity")
    _require(_one_of(payload.get("state"), STATES), "bad state")
    _require(_is_time(payload.get("at")), "at must be a UTC ISO-8601 time ending in Z")
    _require(_is_time(payload.get("raised_at")), "raised_at must be a UTC ISO-8601 time")
    for key in ("room", "device_id"):
        _require(key in payload, f"{key} is required (null allowed)")
        _require(payload[key] is None or isinstance(payload[key], str), f"{key} must be str/null")
    evidence = payload.get("evidence")
    if not isinstance(evidence, dict):
        raise ContractError("evidence must be an object")
    _require(len(encode(evidence)) <= MAX_EVIDENCE_BYTES, "evidence is too large")
    _require(
        all(not isinstance(v, list) or len(v) <= 16 for v in evidence.values()),
        "evidence must not carry sample streams",
    )
    return payload


def _validate_rooms(rooms: Any) -> None:
    _require(isinstance(rooms, dict), "rooms must be an object")
    for name, stats in rooms.items():
        _require(isinstance(stats, dict), f"rooms[{name!r}] must be an object")
        for key, value in stats.items():
            _require(_is_number(value) and value >= 0, f"rooms[{name!r}].{key} must be >= 0")


def _validate_health(health: Any) -> None:
    _require(isinstance(health, dict), "sensor_health must be an object")
    for key in ("devices", "offline", "low_battery", "unknown_devices"):
        _require(_is_count(health.get(key)), f"sensor_health.{key} must be a count")


def _validate_period(payload: Mapping[str, Any]) -> None:
    _require(_is_time(payload.get("period_start")), "bad period_start")
    _require(_is_time(payload.get("period_end")), "bad period_end")
    _require(payload["period_start"] < payload["period_end"], "period_end before period_start")


def validate_hourly(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    _common(payload, "veille.aggregate.hourly/1")
    _known_fields(payload, HOURLY_FIELDS)
    _validate_period(payload)
    _validate_rooms(payload.get("rooms"))
    totals = payload.get("totals")
    if not isinstance(totals, dict):
        raise ContractError("totals must be an object")
    for key in ("activity", "door_openings", "entrance_openings"):
        _require(_is_count(totals.get(key)), f"totals.{key} must be a count")
    _validate_health(payload.get("sensor_health"))
    return payload


def validate_daily(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    _common(payload, "veille.aggregate.daily/1")
    _known_fields(payload, DAILY_FIELDS)
    _validate_period(payload)
    _require(
        isinstance(payload.get("date"), str)
        and bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", payload["date"])),
        "date must be YYYY-MM-DD",
    )
    _validate_rooms(payload.get("rooms"))
    _validate_health(payload.get("sensor_health"))
    for key in ("get_up", "bed_time"):
        value = payload.get(key)
        _require(
            value is None or (isinstance(value, str) and bool(re.fullmatch(r"\d\d:\d\d", value))),
            f"{key} must be HH:MM or null",
        )
    for key in ("time_in_bed_min", "time_out_min"):
        value = payload.get(key)
        _require(value is None or (_is_number(value) and value >= 0), f"{key} must be >= 0")
    _require(_is_count(payload.get("night_bathroom_visits")), "night_bathroom_visits count")
    _require(_is_count(payload.get("check_ins", 0)), "check_ins must be a count")
    compare = payload.get("compare", {})
    _require(isinstance(compare, dict), "compare must be an object")
    for metric, cmp in compare.items():
        _require(isinstance(cmp, dict), f"compare[{metric!r}] must be an object")
        for key in ("usual", "z"):
            v = cmp.get(key)
            _require(v is None or _is_number(v), f"compare[{metric!r}].{key} must be a number")
    return payload


def validate_status(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    _common(payload, "veille.status/1")
    _known_fields(payload, STATUS_FIELDS)
    _require(isinstance(payload.get("online"), bool), "online must be a boolean")
    if payload["online"] or "at" in payload:
        _require(_is_time(payload.get("at")), "at must be a UTC time")
    if "health" in payload:
        _require(_one_of(payload["health"], HEALTH_STATES), "bad health")
    if "time_synced" in payload:
        _require(isinstance(payload["time_synced"], bool), "time_synced must be a boolean")
    if "version" in payload:
        version = payload["version"]
        _require(isinstance(version, str) and len(version) <= 64, "version: a short string")
    if "outbox" in payload:
        outbox = payload["outbox"]
        _require(
            isinstance(outbox, dict)
            and len(outbox) <= 16
            and all(isinstance(k, str) and _is_count(v) for k, v in outbox.items()),
            "outbox: an object of counts",
        )
    return payload


def validate_ack(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    _common(payload, "veille.ack/1")
    _known_fields(payload, ACK_FIELDS)
    _require(isinstance(payload.get("alert_id"), str) and payload["alert_id"] != "", "alert_id")
    _require(_one_of(payload.get("action"), ACK_ACTIONS), "action: acknowledged or resolved")
    _require(_is_time(payload.get("at")), "at must be a UTC time")
    _require(isinstance(payload.get("by", ""), str), "by must be a string")
    _require(isinstance(payload.get("note", ""), str), "note must be a string")
    return payload


def validate_receipt(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """`veille.receipt/1`: the hub stored these alert ids durably.

    `ids` is the contract; `alerts` (optional, one `{"id", "state", "severity"}` per stored
    message) says which state of each alert was stored, so a receipt for `raised` never
    confirms a `resolved` still on its way.
    """
    _common(payload, "veille.receipt/1")
    _known_fields(payload, RECEIPT_FIELDS)
    ids = payload.get("ids")
    if not isinstance(ids, list) or not 0 < len(ids) <= MAX_RECEIPT_IDS:
        raise ContractError("ids: a list of ids")
    _require(all(isinstance(i, str) and 8 <= len(i) <= 64 for i in ids), "bad id in ids")
    _require(_is_time(payload.get("at")), "at must be a UTC time")
    if "alerts" in payload:
        alerts = payload["alerts"]
        _require(isinstance(alerts, list) and len(alerts) <= MAX_RECEIPT_IDS, "alerts: a list")
        for entry in alerts:
            _require(
                isinstance(entry, dict) and set(entry) == {"id", "state", "severity"},
                "alerts: {id, state, severity} objects",
            )
            _require(entry["id"] in ids, "alerts: an id not in ids")
            _require(_one_of(entry["state"], STATES), "alerts: bad state")
            _require(_one_of(entry["severity"], SEVERITIES), "alerts: bad severity")
    return payload


VALIDATORS: dict[str, Callable[[Mapping[str, Any]], Mapping[str, Any]]] = {
    "veille.alert/1": validate_alert,
    "veille.aggregate.hourly/1": validate_hourly,
    "veille.aggregate.daily/1": validate_daily,
    "veille.status/1": validate_status,
    "veille.ack/1": validate_ack,
    "veille.receipt/1": validate_receipt,
}

LEAVES: dict[str, str] = {
    "alert": "veille.alert/1",
    "aggregate/hourly": "veille.aggregate.hourly/1",
    "aggregate/daily": "veille.aggregate.daily/1",
    "status": "veille.status/1",
    "ack": "veille.ack/1",
    "receipt": "veille.receipt/1",
}


def validate_message(topic_name: str, raw: bytes | bytearray | str) -> tuple[str, dict[str, Any]]:
    """Check a whole message: topic shape, payload schema for that topic, home ids agree."""
    home, leaf = parse_topic(topic_name)
    payload = decode(raw)
    schema = LEAVES[leaf]
    _require(payload.get("schema") == schema, f"topic {leaf} carries {schema}")
    VALIDATORS[schema](payload)
    _require(payload["home_id"] == home, "home_id differs from the topic's")
    return leaf, payload
