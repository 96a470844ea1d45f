"""Hourly aggregates on event time: local clock hours, counts, bed minutes, gaps, wire form."""

from __future__ import annotations

import csv
import gzip
import logging
from datetime import UTC, datetime
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from cloud_bridge.contract import iso_utc, validate_hourly
from edge.detect.aggregates import HourlyAggregator
from edge.detect.rules import RuleDetector
from edge.events import Aggregate, Event, EventKind, Role, RoomKind
from edge.home import Device, HomeProfile, Room
from tests.conftest import AMBIENT

PARIS = ZoneInfo("Europe/Paris")
PROFILE = HomeProfile(
    id="h-test",
    rooms=(
        Room("bedroom", RoomKind.BEDROOM),
        Room("kitchen", RoomKind.KITCHEN),
        Room("entrance", RoomKind.ENTRANCE),
        Room("living", RoomKind.LIVING),
    ),
    devices=(
        Device("bed-1", "zigbee2mqtt", "0x01", "bedroom", Role.BED),
        Device("bed-2", "zigbee2mqtt", "0x02", "bedroom", Role.BED),
        Device("pir-k", "zigbee2mqtt", "0x03", "kitchen", Role.MOTION),
        Device("fridge", "zigbee2mqtt", "0x04", "kitchen", Role.DOOR_FRIDGE),
        Device("door-e", "zigbee2mqtt", "0x05", "entrance", Role.DOOR_ENTRANCE),
    ),
)


def paris(day: int, hour: int, minute: int = 0, month: int = 1) -> float:
    return datetime(2024, month, day, hour, minute, tzinfo=PARIS).timestamp()


def ev(device: str, kind: EventKind, value: object, at: float) -> Event:
    return Event(device_id=device, kind=kind, value=value, at=at)  # type: ignore[arg-type]


def run(agg: HourlyAggregator, events: list[Event], until: float) -> list[Aggregate]:
    out: list[Aggregate] = []
    for event in events:
        out += agg.feed(event)
    return out + agg.advance(until)


def test_nothing_before_the_first_event_then_local_hours() -> None:
    agg = HourlyAggregator(PROFILE, PARIS)
    assert agg.feed(ev("pir-k", EventKind.MOTION, True, paris(15, 10, 20))) == []
    assert agg.advance(paris(15, 10, 59)) == []
    out = agg.advance(paris(15, 12, 5))
    assert [(iso_utc(a.period_start), iso_utc(a.period_end)) for a in out] == [
        ("2024-01-15T09:00:00.000Z", "2024-01-15T10:00:00.000Z"),  # 10:00-11:00 in Paris
        ("2024-01-15T10:00:00.000Z", "2024-01-15T11:00:00.000Z"),
    ]
    assert out[0].body["totals"]["activity"] == 1
    assert out[1].body["totals"] == {"activity": 0, "door_openings": 0, "entrance_openings": 0}


def test_counts_per_room_and_totals() -> None:
    agg = HourlyAggregator(PROFILE, PARIS)
    t = paris(15, 8, 0)
    events = [
        ev("pir-k", EventKind.MOTION, True, t + 10),
        ev("pir-k", EventKind.MOTION, False, t + 70),  # a motion ending is not activity
        ev("pir-k", EventKind.MOTION, True, t + 100),
        ev("pir-k", EventKind.BATTERY, 80.0, t + 100),
        ev("fridge", EventKind.OPEN, True, t + 200),
        ev("fridge", EventKind.OPEN, False, t + 230),
        ev("door-e", EventKind.OPEN, True, t + 300),
        ev("door-e", EventKind.OPEN, False, t + 320),
        ev("door-e", EventKind.OPEN, True, t + 3000),
        ev("stranger", EventKind.MOTION, True, t + 400),  # unknown device, no room
    ]
    [hour] = run(agg, events, t + 3600)
    assert hour.body == {
        "rooms": {
            "bedroom": {"activity": 0, "door_openings": 0, "bed_min": 0.0},
            "kitchen": {"activity": 4, "door_openings": 1, "bed_min": 0.0},
            "entrance": {"activity": 3, "door_openings": 2, "bed_min": 0.0},
            "living": {"activity": 0, "door_openings": 0, "bed_min": 0.0},
        },
        "totals": {"activity": 8, "door_openings": 3, "entrance_openings": 2},
    }


def test_bed_minutes_across_hour_boundaries() -> None:
    agg = HourlyAggregator(PROFILE, PARIS)
    events = [
        ev("pir-k", EventKind.MOTION, True, paris(15, 22, 5)),
        ev("bed-1", EventKind.PRESENCE, True, paris(15, 22, 40)),
        ev("bed-2", EventKind.PRESENCE, True, paris(15, 23, 10)),  # second mat: still one bed
        ev("bed-1", EventKind.PRESENCE, False, paris(16, 0, 30)),  # bed-2 still occupied
        ev("bed-2", EventKind.PRESENCE, False, paris(16, 1, 15)),
        ev("bed-1", EventKind.PRESENCE, True, paris(16, 1, 45)),
        ev("bed-1", EventKind.PRESENCE, False, paris(16, 1, 50)),
    ]
    out = run(agg, events, paris(16, 3, 0))
    minutes = [a.body["rooms"]["bedroom"]["bed_min"] for a in out]
    assert minutes == [20.0, 60.0, 60.0, 20.0, 0.0]  # 22h, 23h, 0h, 1h (15 + 5), 2h


def test_bed_stretch_still_open_carries_on() -> None:
    agg = HourlyAggregator(PROFILE, PARIS)
    agg.feed(ev("bed-1", EventKind.PRESENCE, True, paris(15, 23, 30)))
    agg.feed(ev("bed-1", EventKind.PRESENCE, "maybe", paris(15, 23, 40)))  # bad value: skipped
    out = agg.advance(paris(16, 2, 0))
    assert [a.body["rooms"]["bedroom"]["bed_min"] for a in out] == [30.0, 60.0, 60.0]


def test_long_gap_emits_at_most_a_day(caplog: pytest.LogCaptureFixture) -> None:
    agg = HourlyAggregator(PROFILE, PARIS)
    agg.feed(ev("pir-k", EventKind.MOTION, True, paris(1, 10, 20)))
    agg.feed(ev("bed-1", EventKind.PRESENCE, True, paris(1, 10, 30)))
    caplog.clear()
    out = agg.advance(paris(12, 9, 10))  # the gateway was off for eleven days
    assert len(out) == 24
    assert out[0].period_start == paris(1, 10)  # the hour that held counts is kept
    assert out[0].body["totals"]["activity"] == 2
    assert out[0].body["rooms"]["bedroom"]["bed_min"] == 30.0
    assert [a.period_start for a in out[1:]] == [paris(12, 9) - h * 3600 for h in range(23, 0, -1)]
    assert all(a.body["rooms"]["bedroom"]["bed_min"] == 60.0 for a in out[1:])
    assert "skipping 239 empty hours" in caplog.text
    assert caplog.records[-1].levelno == logging.WARNING
    assert agg.advance(paris(12, 10, 0))[0].period_start == paris(12, 9)


def test_time_going_back_emits_nothing() -> None:
    agg = HourlyAggregator(PROFILE, PARIS)
    agg.advance(paris(15, 10, 0))
    assert agg.advance(paris(15, 9, 0)) == []
    late = agg.feed(ev("pir-k", EventKind.MOTION, True, paris(15, 9, 30)))  # counted in open hour
    assert late == []
    assert agg.advance(paris(15, 11, 0))[0].body["totals"]["activity"] == 1


@pytest.mark.parametrize(
    ("zone", "start", "hours", "utc_minute"),
    [
        ("Europe/Paris", datetime(2024, 3, 30, 22, tzinfo=UTC), 6, 0),  # 02:00 local is skipped
        ("Europe/Paris", datetime(2024, 10, 26, 22, tzinfo=UTC), 6, 0),  # 02:00 comes twice
        ("Asia/Kolkata", datetime(2024, 1, 15, 0, 10, tzinfo=UTC), 4, 30),  # UTC+05:30
    ],
)
def test_local_clock_hours_across_zones_and_dst(
    zone: str, start: datetime, hours: int, utc_minute: int
) -> None:
    agg = HourlyAggregator(PROFILE, ZoneInfo(zone))
    t0 = start.timestamp()
    agg.advance(t0)
    out = agg.advance(t0 + hours * 3600)
    assert len(out) == hours
    for a in out:
        assert a.period_end - a.period_start == 3600.0
        assert datetime.fromtimestamp(a.period_start, ZoneInfo(zone)).minute == 0
        assert datetime.fromtimestamp(a.period_start, UTC).minute == utc_minute
    assert all(b.period_start == a.period_end for a, b in pairwise(out))


def test_wire_form_validates_with_sensor_health() -> None:
    agg = HourlyAggregator(PROFILE, PARIS)
    rules = RuleDetector(PROFILE)
    t = paris(15, 8, 0)
    for event in (ev("door-e", EventKind.OPEN, True, t), ev("bed-1", EventKind.PRESENCE, True, t)):
        agg.feed(event)
        rules.feed(event)
    [hour] = agg.advance(t + 3700)
    wire = hour.to_wire("h-test")
    wire["sensor_health"] = {**rules.health(t + 3700), "unknown_devices": 0}
    assert validate_hourly(wire) is wire
    assert wire["period_start"] == "2024-01-15T07:00:00.000Z"
    assert wire["sensor_health"] == {
        "devices": 5,
        "offline": 0,
        "low_battery": 0,
        "unknown_devices": 0,
    }


# ---- a real home: Ordonez home B (bed and seat pressure mats, doors, PIR, flush) ------------

ORDONEZ_ROLES = {  # sensor_id -> (event kind, role)
    "Bed": (EventKind.PRESENCE, Role.BED),
    "Seat": (EventKind.PRESENCE, Role.CHAIR),
    "Maindoor": (EventKind.OPEN, Role.DOOR_ENTRANCE),
    "Fridge": (EventKind.OPEN, Role.DOOR_FRIDGE),
    "Cupboard": (EventKind.OPEN, Role.DOOR),
    "Toilet": (EventKind.FLUSH, Role.TOILET_FLUSH),
    "Microwave": (EventKind.POWER, Role.POWER),
}


def test_real_home_bed_minutes_and_counts_add_up() -> None:
    with gzip.open(AMBIENT / "ordonezB_dev_events.csv.gz", "rt") as fh:
        rows = list(csv.DictReader(fh))
    devices = tuple(
        Device(sid, "zigbee2mqtt", sid, room, ORDONEZ_ROLES.get(sid, (None, Role.MOTION))[1])
        for sid, room in sorted({(r["sensor_id"], r["room"]) for r in rows})
    )
    rooms = tuple(Room(name, RoomKind.OTHER) for name in sorted({r["room"] for r in rows}))
    profile = HomeProfile(id="h-ordonez-b", rooms=rooms, devices=devices)
    agg = HourlyAggregator(profile, UTC)  # epoch_s reads local time as UTC
    out: list[Aggregate] = []
    for r in rows:
        kind = ORDONEZ_ROLES.get(r["sensor_id"], (EventKind.MOTION, Role.MOTION))[0]
        on = r["value"] == "ON"
        value: bool | float = (1000.0 if on else 0.0) if kind is EventKind.POWER else on
        out += agg.feed(ev(r["sensor_id"], kind, value, float(r["epoch_s"])))
    end = float(rows[-1]["epoch_s"])
    out += agg.advance(end + 3600)

    bed = [float(r["epoch_s"]) for r in rows if r["sensor_id"] == "Bed"]
    bed_s = sum(off - on for on, off in zip(bed[::2], bed[1::2], strict=True))
    assert len(out) == int((end // 3600 + 1) - float(rows[0]["epoch_s"]) // 3600)
    got_min = sum(a.body["rooms"]["Bedroom"]["bed_min"] for a in out)
    assert abs(got_min - bed_s / 60) <= 0.05 * len(out)  # rounding to 0.1 min per hour
    assert all(0 <= a.body["rooms"]["Bedroom"]["bed_min"] <= 60 for a in out)
    # 2012-11-12 01:55:09 in bed until 09:30:35: 4.85 min in the 01:00 hour, full hours after
    first = {iso_utc(a.period_start)[:13]: a.body["rooms"]["Bedroom"]["bed_min"] for a in out}
    assert abs(first["2012-11-12T01"] - 4.85) <= 0.05
    assert [first[f"2012-11-12T0{h}"] for h in range(2, 9)] == [60.0] * 7
    assert abs(first["2012-11-12T09"] - 30.58) <= 0.05

    openings = sum(1 for r in rows if r["sensor_type"] == "magnetic" and r["value"] == "ON")
    entrance = sum(1 for r in rows if r["sensor_id"] == "Maindoor" and r["value"] == "ON")
    activity = sum(1 for r in rows if r["value"] == "ON" or r["sensor_type"] == "magnetic")
    assert sum(a.body["totals"]["door_openings"] for a in out) == openings
    assert sum(a.body["totals"]["entrance_openings"] for a in out) == entrance
    assert sum(a.body["totals"]["activity"] for a in out) == activity
