"""Rule detectors on event time: each rule raises when due and not before, and resolves."""

from __future__ import annotations

import json

import pytest

from cloud_bridge.contract import AlertType, Severity
from edge.detect.rules import RuleDetector
from edge.events import Event, EventKind, Finding, Role, RoomKind
from edge.home import Device, HomeProfile, Room, Thresholds

T0 = 1_700_000_000.0
HOUR = 3600.0

PROFILE = HomeProfile(
    id="h-test",
    rooms=(
        Room("entrance", RoomKind.ENTRANCE),
        Room("kitchen", RoomKind.KITCHEN),
        Room("living", RoomKind.LIVING),
    ),
    devices=(
        Device("sos-1", "zigbee2mqtt", "0x01", "entrance", Role.SOS_BUTTON),
        Device("pir-k", "zigbee2mqtt", "0x02", "kitchen", Role.MOTION),
        Device("th-1", "bthome", "AA:BB:CC:DD:EE:01", "living", Role.TEMPERATURE),
        Device("th-2", "bthome", "AA:BB:CC:DD:EE:02", "living", Role.TEMPERATURE),
        Device("watch", "wearable", "AA:BB:CC:DD:EE:03", None, Role.WEARABLE),
    ),
    thresholds=Thresholds(temp_low_c=16.0, temp_high_c=30.0, battery_low_pct=15.0),
)


def ev(device: str, kind: EventKind, value: object, at: float) -> Event:
    return Event(device_id=device, kind=kind, value=value, at=at)  # type: ignore[arg-type]


def keyed(findings: list[Finding], key: str) -> list[Finding]:
    return [f for f in findings if f.key == key]


def started() -> RuleDetector:
    det = RuleDetector(PROFILE)
    assert det.advance(T0) == []
    return det


# ---- sos -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "value", "raised"),
    [
        ("sos-1", "single", True),
        ("sos-1", "double", True),
        ("sos-1", "long", True),
        ("sos-1", "hold", True),
        ("sos-1", "release", False),
        ("sos-1", "long_release", False),
        ("sos-1", "", False),
        ("sos-1", 3.0, False),
        ("pir-k", "single", False),  # a button that is not an sos_button
        ("stranger", "single", False),  # not in the profile
    ],
)
def test_sos_press_kinds(device: str, value: object, raised: bool) -> None:
    det = started()
    out = det.feed(ev(device, EventKind.ACTION, value, T0 + 5))
    expected = [
        Finding(
            key="sos:sos-1",
            type=AlertType.SOS,
            severity=Severity.CRITICAL,
            at=T0 + 5,
            room="entrance",
            device_id="sos-1",
            evidence={"button": value},
        )
    ]
    assert out == (expected if raised else [])


def test_sos_repeated_presses_reuse_the_key() -> None:
    det = started()
    keys = [
        f.key for t in (1, 2, 30) for f in det.feed(ev("sos-1", EventKind.ACTION, "single", T0 + t))
    ]
    assert keys == ["sos:sos-1"] * 3  # the alert book ignores raises of an open key


# ---- sensor offline ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "limit_s", "severity"),
    [
        ("pir-k", 3 * HOUR, Severity.WARNING),  # Zigbee default 1 h x 3
        ("sos-1", 3 * HOUR, Severity.HIGH),  # protects the person
        ("th-1", 1 * HOUR, Severity.WARNING),  # BTHome default 60 s x 3 < floor 60 min
        ("watch", 1 * HOUR, Severity.HIGH),
    ],
)
def test_never_heard_device_waits_for_its_default(
    device: str, limit_s: float, severity: Severity
) -> None:
    det = started()
    assert keyed(det.advance(T0 + limit_s - 1), f"offline:{device}") == []
    out = keyed(det.advance(T0 + limit_s + 120), f"offline:{device}")
    assert len(out) == 1
    assert out[0].at == T0 + limit_s  # raised at the moment it became due
    assert out[0].severity is severity
    assert out[0].type is AlertType.SENSOR_OFFLINE
    assert out[0].evidence["never_heard"] is True
    assert keyed(det.advance(T0 + limit_s + 600), f"offline:{device}") == []  # once


def reports(det: RuleDetector, device: str, times: list[float]) -> None:
    for t in times:
        det.feed(ev(device, EventKind.LINKQUALITY, 90.0, t))
        det.feed(ev(device, EventKind.BATTERY, 90.0, t))  # same payload: one report


BIN_300_S = 2**8.25  # histogram bin holding 300 s: (2**8, 2**8.25] = (256, 304.4]
BIN_3000_S = 2**11.75  # (2**11.5, 2**11.75] = (2896, 3444]
BIN_10_S = 2**3.5  # (2**3.25, 2**3.5] = (9.5, 11.3]


def test_learned_five_minute_interval_goes_offline_after_the_floor() -> None:
    det = started()
    reports(det, "pir-k", [T0 + i * 300 for i in range(72)])  # 71 gaps: 5 h 55 min observed
    assert det.usual_interval_s("pir-k") == 3600.0  # still learning: the Zigbee default
    reports(det, "pir-k", [T0 + 72 * 300])  # 6 h observed: learned
    assert det.usual_interval_s("pir-k") == BIN_300_S
    last = T0 + 72 * 300
    # 3 x 5 min is under the 60 min floor: offline after 60 min, not after the 3 h default
    assert keyed(det.advance(last + HOUR - 1), "offline:pir-k") == []
    raised = keyed(det.advance(last + HOUR), "offline:pir-k")
    assert [(f.action, f.at, f.evidence["learned"]) for f in raised] == [
        ("raise", last + HOUR, True)
    ]
    assert raised[0].evidence["usual_interval_min"] == 5.1
    back = keyed(det.feed(ev("pir-k", EventKind.MOTION, True, last + 2 * HOUR)), "offline:pir-k")
    assert [(f.action, f.evidence["silent_min"]) for f in back] == [("resolve", 120.0)]
    assert det.state_dict()["intervals"]["pir-k"]["observed_s"] == 72 * 300  # outage not learned


def test_heartbeat_silences_outweigh_a_burst_of_motion() -> None:
    det = started()
    t = T0 + 3000 * 8
    reports(det, "pir-k", [T0 + i * 3000 for i in range(9)])  # heartbeats every 50 min, 6 h 40
    reports(det, "pir-k", [t + i * 20 for i in range(1, 181)])  # then a busy hour: 180 motions
    t += 180 * 20
    assert det.usual_interval_s("pir-k") == BIN_3000_S  # by count, 95 % of gaps are 20 s
    limit = 3 * BIN_3000_S
    assert keyed(det.advance(t + limit - 1), "offline:pir-k") == []
    assert [f.at for f in keyed(det.advance(t + limit), "offline:pir-k")] == [t + limit]


def test_few_reports_keep_the_default_interval() -> None:
    det = started()
    for i in range(3):
        det.feed(ev("pir-k", EventKind.MOTION, True, T0 + i * 60))
    assert det.usual_interval_s("pir-k") == 3600.0
    last = T0 + 120
    assert keyed(det.advance(last + 3 * HOUR - 1), "offline:pir-k") == []
    assert len(keyed(det.advance(last + 3 * HOUR), "offline:pir-k")) == 1


def test_wearable_that_stays_away() -> None:
    det = started()
    for i in range(2161):  # heartbeats every 10 s while streaming, for 6 h
        det.feed(ev("watch", EventKind.HEARTBEAT, None, T0 + i * 10))
    last = T0 + 21600
    assert det.usual_interval_s("watch") == BIN_10_S
    assert keyed(det.advance(last + HOUR - 1), "offline:watch") == []
    out = keyed(det.advance(last + HOUR), "offline:watch")
    assert [(f.severity, f.device_id, f.room) for f in out] == [(Severity.HIGH, "watch", None)]


def test_late_feed_raises_the_outage_before_resolving_it() -> None:
    det = started()
    for i in range(8):
        det.feed(ev("th-1", EventKind.TEMPERATURE, 20.0, T0 + i * 60))
    out = keyed(det.feed(ev("th-1", EventKind.TEMPERATURE, 20.0, T0 + 5 * HOUR)), "offline:th-1")
    assert [(f.action, f.at) for f in out] == [
        ("raise", T0 + 420 + HOUR),
        ("resolve", T0 + 5 * HOUR),
    ]


# ---- low battery ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("device", "severity"), [("th-1", Severity.WARNING), ("sos-1", Severity.HIGH)]
)
def test_low_battery_with_hysteresis(device: str, severity: Severity) -> None:
    det = started()
    steps = [
        (20.0, None),
        (14.0, "raise"),
        (12.0, None),
        (20.0, None),
        (24.9, None),
        (25.0, "resolve"),
        (16.0, None),
        (9.0, "raise"),
    ]
    for i, (pct, action) in enumerate(steps):
        out = keyed(det.feed(ev(device, EventKind.BATTERY, pct, T0 + i)), f"battery:{device}")
        assert [f.action for f in out] == ([action] if action else []), (i, pct)
        for f in out:
            assert (f.type, f.severity, f.evidence) == (
                AlertType.LOW_BATTERY,
                severity,
                {"battery_pct": pct, "threshold_pct": 15.0},
            )


@pytest.mark.parametrize("value", ["low", 150.0, -3.0, float("nan"), None])
def test_bad_battery_values_are_skipped(value: object, caplog: pytest.LogCaptureFixture) -> None:
    det = started()
    assert keyed(det.feed(ev("th-1", EventKind.BATTERY, value, T0 + 1)), "battery:th-1") == []
    assert "bad battery value" in caplog.text
    assert det.device_status(T0 + 1)[2]["battery"] is None


# ---- temperature ---------------------------------------------------------------------------


def temp_run(det: RuleDetector, readings: list[tuple[float, str, float]]) -> list[Finding]:
    out: list[Finding] = []
    for at, device, celsius in readings:
        out += det.feed(ev(device, EventKind.TEMPERATURE, celsius, at))
    return [f for f in out if f.type is AlertType.TEMPERATURE]


def test_cold_room_sustained_one_hour_then_hysteresis() -> None:
    det = started()
    assert temp_run(det, [(T0, "th-1", 15.0), (T0, "th-2", 15.5)]) == []
    assert temp_run(det, [(T0 + HOUR - 1, "th-1", 15.0)]) == []
    out = temp_run(det, [(T0 + HOUR + 900, "th-1", 14.8)])
    assert out == [
        Finding(
            key="temperature:living:cold",
            type=AlertType.TEMPERATURE,
            severity=Severity.WARNING,
            at=T0 + HOUR,
            room="living",
            evidence={"temperature_c": 15.2, "threshold_c": 16.0, "for_min": 60},
        )
    ]
    assert temp_run(det, [(T0 + 2 * HOUR, "th-1", 16.8), (T0 + 2 * HOUR, "th-2", 16.8)]) == []
    out = temp_run(det, [(T0 + 3 * HOUR, "th-1", 17.2), (T0 + 3 * HOUR, "th-2", 17.0)])
    assert [(f.key, f.action, f.at) for f in out] == [
        ("temperature:living:cold", "resolve", T0 + 3 * HOUR)
    ]


def test_cold_spell_interrupted_starts_over() -> None:
    det = started()
    temp_run(det, [(T0, "th-1", 15.0), (T0 + 1800, "th-1", 16.5), (T0 + 2400, "th-1", 15.0)])
    assert temp_run(det, [(T0 + 2400 + HOUR - 1, "th-1", 15.0)]) == []
    assert [f.at for f in det.advance(T0 + 2400 + HOUR)] == [T0 + 2400 + HOUR]


def test_room_median_ignores_one_odd_sensor() -> None:
    det = started()
    temp_run(det, [(T0, "th-1", 12.0), (T0, "th-2", 20.0)])  # median 16.0 is not below 16
    assert det.room_temperature("living", T0) == 16.0
    assert [f for f in det.advance(T0 + 3 * HOUR) if f.type is AlertType.TEMPERATURE] == []


def test_heat_wave_and_extreme_heat() -> None:
    det = started()
    temp_run(det, [(T0, "th-1", 31.0)])
    assert temp_run(det, [(T0 + 1799, "th-1", 31.0)]) == []
    hot = temp_run(det, [(T0 + 1800, "th-1", 36.0)])
    assert [(f.key, f.severity, f.at) for f in hot] == [
        ("temperature:living:hot", Severity.WARNING, T0 + 1800)
    ]
    extreme = [f for f in det.advance(T0 + 3600) if f.type is AlertType.TEMPERATURE]
    assert [(f.key, f.severity, f.at, f.evidence["temperature_c"]) for f in extreme] == [
        ("temperature:living:extreme_heat", Severity.HIGH, T0 + 3600, 36.0)
    ]
    cooler = temp_run(det, [(T0 + 4000, "th-1", 34.0)])
    assert [(f.key, f.action) for f in cooler] == [("temperature:living:extreme_heat", "resolve")]
    assert temp_run(det, [(T0 + 4100, "th-1", 29.5)]) == []  # hot needs <= 29 to resolve
    assert [f.key for f in temp_run(det, [(T0 + 4200, "th-1", 29.0)])] == ["temperature:living:hot"]


def test_stale_readings_stop_speaking_for_the_room() -> None:
    det = started()
    temp_run(det, [(T0, "th-1", 31.0)])
    assert det.room_temperature("living", T0 + 3 * HOUR) == 31.0
    assert det.room_temperature("living", T0 + 3 * HOUR + 1) is None
    assert temp_run(det, [(T0 + 10, "th-1", 500.0)]) == []  # implausible: skipped


# ---- status and persistence ----------------------------------------------------------------


def test_health_and_device_status() -> None:
    det = started()
    det.feed(ev("th-1", EventKind.BATTERY, 10.0, T0 + 1))
    det.feed(ev("sos-1", EventKind.BATTERY, 80.0, T0 + 1))
    now = T0 + HOUR  # th-2 and the wearable, never heard, are due; th-1 (heard at +1 s) is not
    assert det.health(now) == {"devices": 5, "offline": 2, "low_battery": 1}
    rows = {r["id"]: r for r in det.device_status(now)}
    assert rows["th-1"] == {
        "id": "th-1",
        "room": "living",
        "role": "temperature",
        "last_seen": T0 + 1,
        "battery": 10.0,
        "offline": False,
        "low_battery": True,
    }
    assert det.health(now + 1)["offline"] == 3
    assert rows["sos-1"]["offline"] is False
    assert rows["watch"]["last_seen"] is None


def test_state_round_trip_keeps_learning_and_open_conditions() -> None:
    det = started()
    temp_run(det, [(T0, "th-1", 10.0)])
    det.feed(ev("sos-1", EventKind.BATTERY, 5.0, T0 + 10))
    reports(det, "pir-k", [T0 + 20 + i * 300 for i in range(73)])
    det.advance(T0 + 8 * HOUR)  # pir-k offline, living cold (raised at +1 h, stale since +3 h)
    saved = json.loads(json.dumps(det.state_dict()))
    assert saved["offline"] == ["pir-k", "sos-1", "th-1", "th-2", "watch"]
    assert saved["low_battery"] == ["sos-1"]
    assert saved["temperature"] == [["living", "cold"]]

    again = RuleDetector(PROFILE, saved)
    again.advance(T0 + 10 * HOUR)  # a restart: new start, no last_seen
    assert again.usual_interval_s("pir-k") == BIN_300_S
    out = again.feed(ev("pir-k", EventKind.MOTION, True, T0 + 10 * HOUR + 5))
    assert [(f.key, f.action) for f in out] == [("offline:pir-k", "resolve")]
    out = again.feed(ev("sos-1", EventKind.BATTERY, 100.0, T0 + 10 * HOUR + 6))
    assert [(f.key, f.action) for f in out] == [
        ("offline:sos-1", "resolve"),
        ("battery:sos-1", "resolve"),
    ]
    out = temp_run(again, [(T0 + 10 * HOUR + 7, "th-1", 20.0)])
    assert [(f.key, f.action) for f in out] == [("temperature:living:cold", "resolve")]


@pytest.mark.parametrize(
    "state",
    [
        {"version": 99},
        {"version": 1, "intervals": {"pir-k": {"weights": {"x": 1}}}, "temperature": [3]},
        {"version": 1, "intervals": {"pir-k": {"observed_s": 9e9, "weights": {"999": 1.0}}}},
        {"version": 1, "intervals": {"pir-k": [1, 2]}, "offline": ["nobody"]},
    ],
)
def test_bad_saved_state_is_ignored(state: dict[str, object]) -> None:
    det = RuleDetector(PROFILE, state)
    assert det.usual_interval_s("pir-k") == 3600.0
    assert det.state_dict()["temperature"] == []


# ---- water leak, battery_low -------------------------------------------------------------
LEAK_PROFILE = HomeProfile(
    id="h-leak",
    rooms=(Room("kitchen", RoomKind.KITCHEN),),
    devices=(
        Device("leak-1", "zigbee2mqtt", "0x10", "kitchen", Role.WATER_LEAK),
        Device("pir-k", "zigbee2mqtt", "0x02", "kitchen", Role.MOTION),
    ),
)


def test_a_wet_leak_sensor_raises_water_leak_until_it_dries() -> None:
    det = RuleDetector(LEAK_PROFILE)
    det.advance(T0)
    wet = det.feed(ev("leak-1", EventKind.WATER_LEAK, True, T0 + 10))
    again = det.feed(ev("leak-1", EventKind.WATER_LEAK, True, T0 + 20))
    dry = det.feed(ev("leak-1", EventKind.WATER_LEAK, False, T0 + 600))
    assert [(f.type, f.action, f.severity, f.key) for f in keyed(wet, "water_leak:leak-1")] == [
        (AlertType.WATER_LEAK, "raise", Severity.HIGH, "water_leak:leak-1")
    ]
    assert keyed(again, "water_leak:leak-1") == []
    assert [f.action for f in keyed(dry, "water_leak:leak-1")] == ["resolve"]
    assert keyed(wet, "water_leak:leak-1")[0].room == "kitchen"


def test_battery_low_flag_from_a_sensor_with_no_percentage() -> None:
    det = RuleDetector(LEAK_PROFILE)
    det.advance(T0)
    assert keyed(det.feed(ev("leak-1", EventKind.BATTERY, False, T0 + 1)), "battery:leak-1") == []
    low = keyed(det.feed(ev("leak-1", EventKind.BATTERY, True, T0 + 2)), "battery:leak-1")
    assert [(f.type, f.action, f.evidence) for f in low] == [
        (AlertType.LOW_BATTERY, "raise", {"battery_low": True})
    ]
    assert keyed(det.feed(ev("leak-1", EventKind.BATTERY, True, T0 + 3)), "battery:leak-1") == []
    ok = keyed(det.feed(ev("leak-1", EventKind.BATTERY, False, T0 + 4)), "battery:leak-1")
    assert [f.action for f in ok] == ["resolve"]


def test_a_percentage_decides_over_the_battery_low_flag() -> None:
    det = RuleDetector(LEAK_PROFILE)
    det.advance(T0)
    det.feed(ev("leak-1", EventKind.BATTERY, 60.0, T0 + 1))
    # the device's own low flag (its threshold is not ours): the percentage rules
    assert keyed(det.feed(ev("leak-1", EventKind.BATTERY, True, T0 + 2)), "battery:leak-1") == []
    low = keyed(det.feed(ev("leak-1", EventKind.BATTERY, 10.0, T0 + 3)), "battery:leak-1")
    assert [f.action for f in low] == ["raise"]
