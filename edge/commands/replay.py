"""Load recorded ambient events (DESIGN.md section 5) as the gateway's normalized `Event`s.

The files are CSV.gz (or plain CSV) with the columns `timestamp, epoch_s, sensor_id,
sensor_type, room, value` and sometimes an annotation column, which is never read here.
`epoch_s` is the home's local wall clock read as if it were UTC; it becomes `Event.at`.

Only `room` and `sensor_type` (plus the sensor's name for the door it watches) give a
sensor its meaning, the way an installer's home description would: room names map to room
kinds and sensor types to roles (tables below, data rather than if-chains).
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cloud_bridge.errors import VeilleError
from edge.events import Event, EventKind, Role, RoomKind

_LOGGER = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("epoch_s", "sensor_id", "sensor_type", "room", "value")
REPLAY_SOURCE = "replay"

# Room-name words -> room kind, tried in this order on the lower-cased name without spaces,
# dashes or underscores ("LivingRoom" -> "livingroom").
ROOM_WORDS: tuple[tuple[str, RoomKind], ...] = (
    ("bath", RoomKind.BATHROOM),
    ("toilet", RoomKind.BATHROOM),
    ("wc", RoomKind.BATHROOM),
    ("shower", RoomKind.BATHROOM),
    ("bed", RoomKind.BEDROOM),
    ("sleep", RoomKind.BEDROOM),
    ("kitchen", RoomKind.KITCHEN),
    ("cuisine", RoomKind.KITCHEN),
    ("entr", RoomKind.ENTRANCE),  # entrance, entry, entree
    ("hall", RoomKind.ENTRANCE),
    ("door", RoomKind.ENTRANCE),
    ("foyer", RoomKind.ENTRANCE),
    ("living", RoomKind.LIVING),
    ("lounge", RoomKind.LIVING),
    ("sitting", RoomKind.LIVING),
    ("salon", RoomKind.LIVING),
    ("dining", RoomKind.LIVING),
    ("work", RoomKind.LIVING),  # a work area / study is lived in like a living room
    ("office", RoomKind.LIVING),
    ("study", RoomKind.LIVING),
)


@dataclass(frozen=True, slots=True)
class SensorType:
    """How one `sensor_type` of the files becomes an event."""

    kind: EventKind
    role: Role


SENSOR_TYPES: Mapping[str, SensorType] = {
    "motion": SensorType(EventKind.MOTION, Role.MOTION),
    "pir": SensorType(EventKind.MOTION, Role.MOTION),
    "door": SensorType(EventKind.OPEN, Role.DOOR),
    "magnetic": SensorType(EventKind.OPEN, Role.DOOR),
    "contact": SensorType(EventKind.OPEN, Role.DOOR),
    "pressure": SensorType(EventKind.PRESENCE, Role.CHAIR),  # BED in a bedroom, see below
    "presence": SensorType(EventKind.PRESENCE, Role.PRESENCE),
    "flush": SensorType(EventKind.FLUSH, Role.TOILET_FLUSH),
    "electric": SensorType(EventKind.SWITCH, Role.POWER),  # appliance in use: on/off
    "power": SensorType(EventKind.SWITCH, Role.POWER),
    "light_switch": SensorType(EventKind.SWITCH, Role.LIGHT_SWITCH),
    "switch": SensorType(EventKind.SWITCH, Role.LIGHT_SWITCH),
}

TRUE_VALUES = frozenset({"on", "open", "true", "1", "occupied", "yes"})
FALSE_VALUES = frozenset({"off", "close", "closed", "false", "0", "clear", "no"})
ENTRANCE_DOOR_WORDS = ("front", "main", "outside", "entr", "street")
FRIDGE_WORDS = ("fridge", "refrigerator", "freezer")


def room_kind(name: str) -> RoomKind:
    """A free room name -> its kind ("LivingRoom" -> living, "Entry" -> entrance)."""
    key = re.sub(r"[\s_\-.]", "", name.lower())
    for word, kind in ROOM_WORDS:
        if word in key:
            return kind
    return RoomKind.OTHER


def sensor_role(sensor_id: str, sensor_type: str, kind: RoomKind) -> SensorType | None:
    """What an installer would declare this sensor as; None for a type we do not know."""
    base = SENSOR_TYPES.get(sensor_type.strip().lower())
    if base is None:
        return None
    name = sensor_id.lower()
    if base.kind is EventKind.OPEN:
        if kind is RoomKind.ENTRANCE or any(w in name for w in ENTRANCE_DOOR_WORDS):
            return SensorType(EventKind.OPEN, Role.DOOR_ENTRANCE)
        if any(w in name for w in FRIDGE_WORDS):
            return SensorType(EventKind.OPEN, Role.DOOR_FRIDGE)
    if base.kind is EventKind.PRESENCE and sensor_type.strip().lower() == "pressure":
        bed = kind is RoomKind.BEDROOM or "bed" in name
        return SensorType(EventKind.PRESENCE, Role.BED if bed else Role.CHAIR)
    return base


def parse_rows(rows: Iterable[Mapping[str, str]], name: str = "") -> list[Event]:
    """Rows of the ambient format -> events sorted by time; bad rows are logged and skipped."""
    events: list[Event] = []
    kinds: dict[str, RoomKind] = {}
    for n, row in enumerate(rows, start=2):
        try:
            at = float(row["epoch_s"])
            sensor_id = row["sensor_id"].strip()
            stype = row["sensor_type"].strip()
            room = row["room"].strip()
            raw = row["value"].strip().lower()
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            _LOGGER.warning("%s:%d: skipped a bad row (%s)", name, n, exc)
            continue
        if not sensor_id or not math.isfinite(at):
            _LOGGER.warning("%s:%d: skipped a row without sensor id or time", name, n)
            continue
        if raw in TRUE_VALUES:
            value = True
        elif raw in FALSE_VALUES:
            value = False
        else:
            _LOGGER.warning("%s:%d: skipped value %r of %s", name, n, raw, sensor_id)
            continue
        kind = kinds.get(room)
        if kind is None:
            kind = kinds[room] = room_kind(room)
        st = sensor_role(sensor_id, stype, kind)
        if st is None:
            _LOGGER.warning("%s:%d: skipped unknown sensor type %r", name, n, stype)
            continue
        events.append(
            Event(
                device_id=sensor_id,
                kind=st.kind,
                value=value,
                at=at,
                source=REPLAY_SOURCE,
                room=room or None,
                room_kind=kind if room else None,
                role=st.role,
            )
        )
    events.sort(key=lambda e: e.at)  # stable: same-time rows keep their file order
    return events


def _open_text(path: Path) -> io.TextIOBase:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return io.StringIO(raw.decode("utf-8-sig"))


def load_events(path: Path | str) -> list[Event]:
    """Read one ambient events file; VeilleError when it cannot be read at all."""
    path = Path(path)
    try:
        text = _open_text(path)
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise VeilleError(f"{path}: cannot read events: {exc}") from exc
    reader = csv.DictReader(text)
    header = reader.fieldnames or []
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise VeilleError(f"{path}: not an ambient events file (missing {', '.join(missing)})")
    try:
        return parse_rows(reader, path.name)
    except csv.Error as exc:
        raise VeilleError(f"{path}: bad CSV: {exc}") from exc


def rooms_of(events: Iterable[Event]) -> dict[str, RoomKind]:
    """The room name -> kind table that these events imply (for a detector's `rooms`)."""
    return {e.room: e.room_kind for e in events if e.room and e.room_kind}


def iter_days(events: list[Event], day_s: float = 86400.0) -> Iterator[list[Event]]:
    """Events grouped by as-if-UTC calendar day, in order."""
    day: list[Event] = []
    current = None
    for ev in events:
        d = int(ev.at // day_s)
        if current is not None and d != current:
            yield day
            day = []
        current = d
        day.append(ev)
    if day:
        yield day
