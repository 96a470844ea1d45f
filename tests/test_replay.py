"""The ambient-file loader: real homes' sensors get the kinds and roles an installer would give."""

from __future__ import annotations

import gzip
import itertools
import logging
from collections import Counter
from pathlib import Path

import pytest

from cloud_bridge.errors import VeilleError
from edge.commands.replay import load_events, room_kind, rooms_of
from edge.events import EventKind, Role, RoomKind
from tests.conftest import AMBIENT

HEADER = "timestamp,epoch_s,sensor_id,sensor_type,room,value"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("Bathroom", RoomKind.BATHROOM),
        ("Bedroom", RoomKind.BEDROOM),
        ("Kitchen", RoomKind.KITCHEN),
        ("LivingRoom", RoomKind.LIVING),
        ("Living", RoomKind.LIVING),
        ("WorkArea", RoomKind.LIVING),
        ("Entry", RoomKind.ENTRANCE),
        ("Entrance", RoomKind.ENTRANCE),
        ("front hall", RoomKind.ENTRANCE),
        ("Garage", RoomKind.OTHER),
    ],
)
def test_room_names_map_to_kinds(name: str, kind: RoomKind) -> None:
    assert room_kind(name) is kind


def test_casas_home_is_read_as_an_installer_would_describe_it() -> None:
    events = load_events(AMBIENT / "casas_al_smarthome_dev.csv.gz")
    assert len(events) == 42242
    assert all(a.at <= b.at for a, b in itertools.pairwise(events))
    roles = {(e.device_id, e.room_kind, e.role, e.kind) for e in events}
    assert roles == {
        ("Bathroom", RoomKind.BATHROOM, Role.MOTION, EventKind.MOTION),
        ("Bathroom.BathroomLight", RoomKind.BATHROOM, Role.LIGHT_SWITCH, EventKind.SWITCH),
        ("Bedroom", RoomKind.BEDROOM, Role.MOTION, EventKind.MOTION),
        ("Bedroom.Closet", RoomKind.BEDROOM, Role.MOTION, EventKind.MOTION),
        ("Kitchen", RoomKind.KITCHEN, Role.MOTION, EventKind.MOTION),
        ("Kitchen.KitchenLight", RoomKind.KITCHEN, Role.LIGHT_SWITCH, EventKind.SWITCH),
        ("LivingRoom", RoomKind.LIVING, Role.MOTION, EventKind.MOTION),
        ("LoungeChair.LivingRoom", RoomKind.LIVING, Role.MOTION, EventKind.MOTION),
        ("OutsideDoor.Entry", RoomKind.ENTRANCE, Role.MOTION, EventKind.MOTION),
        ("OutsideDoor.FrontDoor", RoomKind.ENTRANCE, Role.DOOR_ENTRANCE, EventKind.OPEN),
        ("WorkArea", RoomKind.LIVING, Role.MOTION, EventKind.MOTION),
        ("WorkArea.WorkAreaLight", RoomKind.LIVING, Role.LIGHT_SWITCH, EventKind.SWITCH),
    }
    door = [e for e in events if e.role is Role.DOOR_ENTRANCE]
    assert Counter(e.value for e in door) == {True: 158, False: 158}  # OPEN / CLOSE
    assert events[0].at == pytest.approx(1308099819.14962)  # 2011-06-15T01:03:39 as-if-UTC
    assert rooms_of(events)["WorkArea"] is RoomKind.LIVING


@pytest.mark.parametrize("home", ["ordonezA", "ordonezB"])
def test_ordonez_homes_sparse_sensors_get_their_roles(home: str) -> None:
    events = load_events(AMBIENT / f"{home}_dev_events.csv.gz")
    roles = {e.device_id: (e.role, e.kind, e.room_kind) for e in events}
    assert roles["Bed"] == (Role.BED, EventKind.PRESENCE, RoomKind.BEDROOM)
    assert roles["Seat"] == (Role.CHAIR, EventKind.PRESENCE, RoomKind.LIVING)
    assert roles["Maindoor"] == (Role.DOOR_ENTRANCE, EventKind.OPEN, RoomKind.ENTRANCE)
    assert roles["Fridge"] == (Role.DOOR_FRIDGE, EventKind.OPEN, RoomKind.KITCHEN)
    assert roles["Cupboard"] == (Role.DOOR, EventKind.OPEN, RoomKind.KITCHEN)
    assert roles["Toilet"] == (Role.TOILET_FLUSH, EventKind.FLUSH, RoomKind.BATHROOM)
    assert roles["Microwave"] == (Role.POWER, EventKind.SWITCH, RoomKind.KITCHEN)
    assert roles["Basin"] == (Role.MOTION, EventKind.MOTION, RoomKind.BATHROOM)
    expected = {"ordonezA": 637, "ordonezB": 3023}[home]
    assert len(events) == expected


def test_annotation_column_is_not_needed(tmp_path: Path) -> None:
    with_label = tmp_path / "a.csv"
    without = tmp_path / "b.csv"
    rows = [
        ("2011-06-15T01:03:39", "1308099819.5", "Bedroom", "motion", "Bedroom", "ON", "Sleep"),
        ("2011-06-15T01:03:40", "1308099820.5", "Bedroom", "motion", "Bedroom", "OFF", "Sleep"),
    ]
    with_label.write_text(
        HEADER + ",activity\n" + "".join(",".join(r) + "\n" for r in rows), encoding="utf-8"
    )
    without.write_text(HEADER + "\n" + "".join(",".join(r[:6]) + "\n" for r in rows), "utf-8")
    assert load_events(with_label) == load_events(without)
    assert [e.value for e in load_events(without)] == [True, False]


def test_bad_rows_are_logged_and_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "bad.csv.gz"
    text = "\n".join(
        [
            HEADER,
            "t,100,Kitchen,motion,Kitchen,ON",
            "t,not-a-number,Kitchen,motion,Kitchen,ON",
            "t,101,Kitchen,motion,Kitchen,MAYBE",
            "t,102,Thing,laser,Kitchen,ON",
            "t,nan,Kitchen,motion,Kitchen,ON",
            "t,103,Kitchen,motion,Kitchen",
            "t,104,Kitchen,motion,Kitchen,OFF",
        ]
    )
    path.write_bytes(gzip.compress(text.encode()))
    with caplog.at_level(logging.WARNING, logger="edge.commands.replay"):
        events = load_events(path)
    assert [(e.at, e.value) for e in events] == [(100.0, True), (104.0, False)]
    skipped = [r for r in caplog.records if r.name == "edge.commands.replay"]
    assert len(skipped) == 5
    assert all("bad.csv.gz:" in r.getMessage() for r in skipped)


def test_unreadable_files_raise_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(VeilleError, match="cannot read"):
        load_events(tmp_path / "missing.csv")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    with pytest.raises(VeilleError, match="missing epoch_s"):
        load_events(wrong)
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(VeilleError, match="cannot read"):
        load_events(broken)
