"""The simulated home: determinism, the resident's routine, scripted incidents, real payloads."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from bleak.backends.device import BLEDevice
from bthome_ble import BTHomeBluetoothDeviceData
from habluetooth import BluetoothServiceInfoBleak

from edge.decode.bthome import BthomeDecoder
from edge.decode.zigbee2mqtt import Zigbee2MqttDecoder
from edge.events import Event, EventKind, Role
from edge.home import HomeProfile
from edge.sim import (
    SCENARIOS,
    BleOut,
    SimOut,
    SimulatedHome,
    WearableOut,
    Z2MOut,
    bridge_devices_payload,
    demo_profile,
    history_events,
)
from edge.sim.bthome_encode import BTHOME_UUID, service_data_v2
from edge.sim.devices import ZigbeeEmu

TZ = ZoneInfo("Europe/Paris")
TWO_DAYS_S = 172800.0
START = datetime(2024, 3, 4, 9, 0, tzinfo=TZ).timestamp()
PROFILE = demo_profile()
PIRS = {d.friendly_name for d in PROFILE.devices if d.role is Role.MOTION}


def run(
    scenario: str, start: float = START, seed: int = 1, span: float = TWO_DAYS_S
) -> tuple[SimulatedHome, list[SimOut]]:
    home = SimulatedHome(PROFILE, start, seed, scenario, TZ)
    return home, home.until(start + span)


def z2m(outs: list[SimOut], name: str) -> Iterator[tuple[float, dict]]:
    """(time, payload) of the messages of one friendly name."""
    for o in outs:
        if isinstance(o, Z2MOut) and o.topic == f"zigbee2mqtt/{name}":
            yield o.at, json.loads(o.payload)


def motion_times(outs: list[SimOut]) -> list[float]:
    """Times of every `occupancy: true` from any motion sensor."""
    return sorted(t for name in PIRS for t, p in z2m(outs, name) if p["occupancy"] is True)


def local(t: float) -> datetime:
    return datetime.fromtimestamp(t, TZ)


def decode_bthome(address: str, data: bytes, bindkey: bytes | None = None) -> dict[str, float]:
    parser = BTHomeBluetoothDeviceData(bindkey)
    info = BluetoothServiceInfoBleak(
        name="sim",
        address=address,
        rssi=-60,
        manufacturer_data={},
        service_data={BTHOME_UUID: data},
        service_uuids=[BTHOME_UUID],
        source="local",
        device=BLEDevice(address, "sim", None),
        advertisement=None,
        connectable=False,
        time=0.0,
        tx_power=None,
    )
    update = parser.update(info)
    return {k.key: v.native_value for k, v in update.entity_values.items()}


# ---- determinism and speed ---------------------------------------------------------------------
def test_same_seed_same_home_whatever_the_steps() -> None:
    _, whole = run("all")
    home = SimulatedHome(PROFILE, START, 1, "all", TZ)
    stepped: list[SimOut] = []
    t = START
    while t < START + TWO_DAYS_S:
        t = min(t + 977.0, START + TWO_DAYS_S)
        stepped += home.until(t)
    assert stepped == whole
    assert [o.at for o in whole] == sorted(o.at for o in whole)
    assert all(START < o.at <= START + TWO_DAYS_S for o in whole)
    _, other = run("all", seed=2)
    assert other != whole


# ---- the resident's routine ----------------------------------------------------------------
def test_daily_routine_shape_across_a_dst_change() -> None:
    start = datetime(2024, 3, 29, 0, 0, 30, tzinfo=TZ).timestamp()  # DST starts on 31 March
    _, outs = run("normal", start=start, seed=7, span=5 * 86400.0)
    bed = [(t, p["contact"]) for t, p in z2m(outs, "bed_mat")]
    changes = [(t, v) for (t, v), (_, before) in zip(bed[1:], bed, strict=False) if v != before]
    kettle = [t for t, p in z2m(outs, "kettle_plug") if p["power"] > 1500]
    fridge = [t for t, p in z2m(outs, "fridge_door") if p["contact"] is False]
    kitchen = [t for t, p in z2m(outs, "motion_kitchen") if p["occupancy"]]
    for n in range(5):
        day = local(start).date() + timedelta(days=n)
        on_day = [(t, v) for t, v in changes if local(t).date() == day]
        wake = min(t for t, v in on_day if v is False and 5 <= local(t).hour < 9)
        to_bed = max(t for t, v in on_day if v is True and local(t).hour >= 20)
        wake_h = local(wake).hour + local(wake).minute / 60
        bed_h = local(to_bed).hour + local(to_bed).minute / 60
        assert 6.5 <= wake_h <= 7.5 + 1e-6, f"{day}: woke at {local(wake)}"
        assert 22.0 <= bed_h <= 23.0 + 1e-6, f"{day}: went to bed at {local(to_bed)}"
        # breakfast: the kettle boils and the fridge opens in the kitchen within 90 min
        assert any(wake < t < wake + 5400 for t in kettle), f"{day}: no kettle after wake-up"
        assert any(wake < t < wake + 5400 for t in fridge), f"{day}: no fridge after wake-up"
        assert any(wake < t < wake + 5400 for t in kitchen), f"{day}: no kitchen motion"
        # the kettle draws about 2 kW for about 3 minutes
        boil = min(t for t in kettle if t > wake)
        off = min(t for t, p in z2m(outs, "kettle_plug") if t > boil and p["power"] == 0.0)
        assert 150 <= off - boil <= 210
    # asleep: no motion between 23:30 and 05:00 except night bathroom visits (bed left)
    assert changes


@pytest.mark.parametrize(
    ("detections", "until", "expected"),
    [
        # blind for 60 s after a detection; false 90 s after the last one
        (
            [0.0, 30.0, 70.0, 200.0, 250.0, 400.0],
            1000.0,
            [
                (0.0, True),
                (70.0, True),
                (160.0, False),
                (200.0, True),
                (290.0, False),
                (400.0, True),
                (490.0, False),
            ],
        ),
        # a false still pending at the end waits for the next call
        ([0.0, 100.0], 150.0, [(0.0, True), (90.0, False), (100.0, True)]),
        ([], 1000.0, []),
    ],
)
def test_motion_sensor_blind_time_and_timeout(
    detections: list[float], until: float, expected: list[tuple[float, bool]]
) -> None:
    pir = ZigbeeEmu(PROFILE.devices[0], 1, 0.0)
    changes = pir.motion_changes(detections, until, lambda t: 100.0)
    assert [(t, c["occupancy"]) for t, c in changes] == expected
    if expected and expected[-1][1] is True:  # pending: resolved by the next call
        assert pir.motion_changes([], until + 1000.0, lambda t: 100.0) == [
            (expected[-1][0] + 90.0, {"occupancy": False})
        ]


def test_motion_messages_follow_the_timeout() -> None:
    _, outs = run("normal")
    for name in PIRS:
        msgs = list(z2m(outs, name))
        trues = {t for t, p in msgs if p["occupancy"] is True}
        state = False
        for t, p in msgs:
            if p["occupancy"] is False and state is True:
                assert t - 90.0 in trues, (name, local(t))
            state = p["occupancy"]
        assert len(trues) > 3, name


def test_every_battery_device_checks_in_and_drains_slowly() -> None:
    _, outs = run("normal")
    for dev in PROFILE.devices:
        if dev.source != "zigbee2mqtt":
            continue
        msgs = list(z2m(outs, dev.friendly_name))
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(msgs)]
        assert max(gaps) <= 52 * 60 + 91, f"{dev.id} silent for {max(gaps) / 60:.0f} min"
        if dev.role in (Role.POWER, Role.PROMPT):
            assert "battery" not in msgs[0][1]  # a mains plug, a mains siren
            continue
        levels = [p["battery"] for _, p in msgs]
        assert levels == sorted(levels, reverse=True)
        assert 0 <= levels[0] - levels[-1] <= 2


# ---- scripted incidents ----------------------------------------------------------------------
@pytest.mark.parametrize("hour", [0.5, 9.0, 23.5])
def test_all_scenario_incidents_within_two_days(hour: float) -> None:
    start = (datetime(2024, 6, 10, tzinfo=TZ) + timedelta(hours=hour)).timestamp()
    home, outs = run("all", start=start)
    names = [name for _, name in home.incidents]
    assert sorted(names) == ["fall", "night_exit", "sensor_silent", "sos"]
    times = sorted(t for t, _ in home.incidents)
    assert all(start + 3600 <= t < start + TWO_DAYS_S - 6 * 3600 for t in times)
    assert all(b - a >= 1800 for a, b in itertools.pairwise(times))
    when = {name: t for t, name in home.incidents}
    # the kitchen motion sensor sends nothing at all from its silence on
    kitchen = [t for t, _ in z2m(outs, "motion_kitchen")]
    assert home.silent_device_id == "pir-kitchen"
    assert not [t for t in kitchen if t >= when["sensor_silent"]]
    assert [t for t, _ in z2m(outs, "motion_living") if t > when["sensor_silent"] + 3 * 3600]
    # and the other incidents happen as in their own scenarios
    check_sos(outs, when["sos"])
    check_night_exit(outs, when["night_exit"])
    check_fall(outs, when["fall"])


def check_sos(outs: list[SimOut], at: float) -> None:
    presses = [(t, p["action"]) for t, p in z2m(outs, "sos_button") if "action" in p]
    assert presses == [(at, "single")]
    assert local(at).hour == 10


def check_night_exit(outs: list[SimOut], at: float) -> None:
    opens = [t for t, p in z2m(outs, "entrance_door") if p["contact"] is False]
    assert at in opens
    assert (local(at).hour, local(at).minute) == (2, 30)
    back = min(t for t in opens if t > at)
    assert back - at > 3600
    assert not [t for t in motion_times(outs) if at + 60 < t < back]  # nobody home


def check_fall(outs: list[SimOut], at: float) -> None:
    traces = [o for o in outs if isinstance(o, WearableOut) and o.kind == "fall"]
    assert [(o.at, o.kind) for o in traces] == [(at, "fall")]
    assert 12 <= local(at).hour < 18  # in the afternoon
    assert not [t for t in motion_times(outs) if at <= t < at + 3600]  # lying still
    assert not [
        o
        for o in outs
        if isinstance(o, WearableOut) and o.kind == "adl" and at - 120 < o.at < at + 3600
    ]
    assert [t for t in motion_times(outs) if at + 3600 < t < at + 4 * 3600]  # helped up


@pytest.mark.parametrize("scenario", ["sos", "night_exit", "fall", "inactivity", "normal"])
def test_each_scenario_produces_its_incident(scenario: str) -> None:
    home, outs = run(scenario)
    when = {name: t for t, name in home.incidents}
    assert set(when) == ({scenario} - {"normal"})
    falls = [o for o in outs if isinstance(o, WearableOut) and o.kind == "fall"]
    actions = [p for _, p in z2m(outs, "sos_button") if "action" in p]
    assert bool(falls) == (scenario == "fall")
    assert bool(actions) == (scenario == "sos")
    if scenario == "sos":
        check_sos(outs, when["sos"])
    elif scenario == "night_exit":
        check_night_exit(outs, when["night_exit"])
    elif scenario == "fall":
        check_fall(outs, when["fall"])
    elif scenario == "inactivity":
        at = when["inactivity"]
        assert local(at).hour == 13
        moving = motion_times(outs)
        assert not [t for t in moving if at <= t < at + 5 * 3600]
        assert [t for t in moving if at + 6 * 3600 <= t < at + 8 * 3600]  # then back to life
        assert not [o for o in outs if isinstance(o, WearableOut) and o.kind == "adl"]
    else:
        night_opens = [
            t
            for t, p in z2m(outs, "entrance_door")
            if p["contact"] is False and not 7 <= local(t).hour < 22
        ]
        assert night_opens == []


def test_wearable_heartbeats_day_and_night_and_adl_traces_by_day() -> None:
    _, outs = run("normal")
    worn = [o for o in outs if isinstance(o, WearableOut)]
    beats = [o.at for o in worn if o.kind == "heartbeat"]
    assert max(b - a for a, b in itertools.pairwise(beats)) <= 300.0 + 1e-6
    adl = [o for o in worn if o.kind == "adl"]
    assert len(adl) >= 6
    assert all(6 <= local(o.at).hour < 23 and o.duration_s > 0 for o in adl)


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(ValueError, match="scenario"):
        SimulatedHome(PROFILE, START, 1, "earthquake", TZ)
    assert set(SCENARIOS) == {"normal", "fall", "inactivity", "night_exit", "sos", "all"}


# ---- real payloads ---------------------------------------------------------------------------
def test_every_zigbee_payload_has_the_device_real_fields() -> None:
    _, outs = run("all")
    bridge = {d["friendly_name"]: d for d in json.loads(bridge_devices_payload(PROFILE))}
    seen = set()
    for o in outs:
        if not isinstance(o, Z2MOut):
            continue
        name = o.topic.removeprefix("zigbee2mqtt/")
        entry = bridge[name]
        props = set()
        for expose in entry["definition"]["exposes"]:
            props |= {f["property"] for f in expose.get("features", [expose])}
        payload = json.loads(o.payload)
        assert set(payload) <= props, (name, set(payload) - props)
        assert 0 <= payload["linkquality"] <= 255
        if entry["power_source"] == "Battery":
            assert 0 <= payload["battery"] <= 100
            assert 2700 <= payload["voltage"] <= 3200
        seen.add(name)
    assert seen == {d.friendly_name for d in PROFILE.devices if d.source == "zigbee2mqtt"}


def test_bridge_devices_lists_every_zigbee_device_with_exposes() -> None:
    devices = json.loads(bridge_devices_payload(PROFILE))
    coordinator, *rest = devices
    assert coordinator["type"] == "Coordinator"
    assert coordinator["definition"] is None
    zigbee = [d for d in PROFILE.devices if d.source == "zigbee2mqtt"]
    assert {(d["ieee_address"], d["friendly_name"]) for d in rest} == {
        (d.address, d.friendly_name) for d in zigbee
    }
    for entry in rest:
        assert entry["interview_completed"] is True
        assert entry["supported"] is True
        assert entry["type"] in ("EndDevice", "Router")
        definition = entry["definition"]
        assert definition["model"]
        assert definition["vendor"]
        assert definition["exposes"]
    models = {e["friendly_name"]: e["definition"]["model"] for e in rest}
    assert models["motion_kitchen"] == "RTCGQ11LM"
    assert models["entrance_door"] == "MCCGQ11LM"
    assert models["sos_button"] == "WXKG11LM"
    # and the gateway's own decoder reads the capabilities from it
    result = Zigbee2MqttDecoder(PROFILE).decode(
        "zigbee2mqtt/bridge/devices", bridge_devices_payload(PROFILE), START, retained=True
    )
    assert not result.bad
    assert "occupancy" in result.capabilities["motion_kitchen"]
    assert "power" in result.capabilities["kettle_plug"]


def test_bthome_encoder_decodes_with_bthome_ble_plain_and_encrypted() -> None:
    values = {"packet_id": 7, "battery": 93, "temperature": 21.37, "humidity": 48.25}
    mac = "A4:C1:38:8F:07:42"
    plain = service_data_v2(values, mac)
    assert plain[0] == 0x40
    assert plain == bytes.fromhex("40 0007 015d 025908 03d912".replace(" ", ""))
    got = decode_bthome(mac, plain)
    assert (got["temperature"], got["humidity"], got["battery"]) == (21.37, 48.25, 93)
    key = bytes.fromhex("5f3c0a8e2d714b9c86a1e4f7d2093b6c")
    sealed = service_data_v2(values, mac, key, counter=0x01020304)
    assert sealed[0] == 0x41
    assert sealed[-8:-4] == bytes([4, 3, 2, 1])
    assert plain[1:] not in sealed
    got = decode_bthome(mac, sealed, key)
    assert (got["temperature"], got["humidity"], got["battery"]) == (21.37, 48.25, 93)
    assert decode_bthome(mac, service_data_v2({"temperature": -5.5}, mac))["temperature"] == -5.5
    wrong = decode_bthome(mac, sealed, bytes(16))
    assert "temperature" not in wrong


def test_every_simulated_advertisement_decodes_to_a_room_climate() -> None:
    _, outs = run("normal")
    devices = {d.address: d for d in PROFILE.devices if d.source == "bthome"}
    parsers = {
        a: BTHomeBluetoothDeviceData(bytes.fromhex(d.bindkey) if d.bindkey else None)
        for a, d in devices.items()
    }
    humid: dict[str, list[float]] = {a: [] for a in devices}
    for o in outs:
        if not isinstance(o, BleOut):
            continue
        info = BluetoothServiceInfoBleak(
            name="sim",
            address=o.address,
            rssi=o.rssi,
            manufacturer_data={},
            service_data=o.service_data,
            service_uuids=[BTHOME_UUID],
            source="local",
            device=BLEDevice(o.address, "sim", None),
            advertisement=None,
            connectable=False,
            time=o.at,
            tx_power=None,
        )
        values = {
            k.key: v.native_value for k, v in parsers[o.address].update(info).entity_values.items()
        }
        assert o.service_data[BTHOME_UUID][0] == (0x41 if devices[o.address].bindkey else 0x40)
        assert 17.0 <= values["temperature"] <= 26.0
        assert 0 < values["battery"] <= 100
        humid[o.address].append(values["humidity"])
        assert -90 <= o.rssi <= -50
    bathroom = next(a for a, d in devices.items() if d.bindkey)
    living = next(a for a, d in devices.items() if not d.bindkey)
    assert len(humid[living]) > 2500  # about one a minute
    assert len(humid[bathroom]) > 2500
    assert max(humid[bathroom]) > 70.0  # the morning shower steams the bathroom up
    assert max(humid[living]) < 60.0


def test_gateway_decoders_read_the_simulated_home() -> None:
    _, outs = run("all")
    zig, ble = Zigbee2MqttDecoder(PROFILE), BthomeDecoder(PROFILE)
    events: list[Event] = []
    for o in outs:
        if isinstance(o, Z2MOut):
            z = zig.decode(o.topic, o.payload, o.at)
            assert not z.bad, o
            assert z.unknown is None, o
            events += z.events
        elif isinstance(o, BleOut):
            b = ble.decode(o.address, o.service_data, o.rssi, o.at)
            assert not b.bad, o
            assert b.unknown is None, o
            events += b.events
    kinds = {e.kind for e in events}
    assert {
        EventKind.MOTION,
        EventKind.PRESENCE,
        EventKind.OPEN,
        EventKind.POWER,
        EventKind.ACTION,
        EventKind.TEMPERATURE,
        EventKind.HUMIDITY,
        EventKind.BATTERY,
    } <= kinds
    bed = [e for e in events if e.role is Role.BED]
    assert bed
    assert {e.kind for e in bed} == {EventKind.PRESENCE, EventKind.BATTERY, EventKind.LINKQUALITY}


# ---- history for the learned routine --------------------------------------------------------
def test_history_events_are_normalized_and_cover_the_days() -> None:
    days = 7
    events = history_events(PROFILE, START, days, 3, TZ)
    assert events == history_events(PROFILE, START, days, 3, TZ)
    assert [e.at for e in events] == sorted(e.at for e in events)
    assert START - days * 86400 <= events[0].at
    assert events[-1].at < START
    for e in events:
        dev = PROFILE.device(e.device_id)
        assert dev is not None
        assert (e.room, e.role) == (dev.room, dev.role)
        assert e.room_kind is not None
        assert e.room_kind is PROFILE.room_kind(dev.room)
    kinds = {e.kind for e in events}
    assert {EventKind.MOTION, EventKind.PRESENCE, EventKind.OPEN, EventKind.POWER} <= kinds
    assert EventKind.ACTION not in kinds  # a normal routine: nobody pressed SOS
    per_day = {local(e.at).date() for e in events if e.kind is EventKind.MOTION and e.value}
    assert len(per_day) >= days
    # the bed's presence goes on in the evening and off in the morning, every day
    bed = [e for e in events if e.kind is EventKind.PRESENCE]
    assert sum(1 for e in bed if e.value is False and 6 <= local(e.at).hour < 8) >= days - 1


def test_a_profile_without_some_devices_still_simulates() -> None:
    profile = HomeProfile(
        id="small-home",
        rooms=PROFILE.rooms,
        devices=tuple(d for d in PROFILE.devices if d.role in (Role.MOTION, Role.SOS_BUTTON)),
    )
    home = SimulatedHome(profile, START, 1, "all", TZ)
    outs = home.until(START + 86400)
    assert {type(o) for o in outs} == {Z2MOut}
    assert any(
        o.topic == "zigbee2mqtt/sos_button" and b'"action"' in o.payload
        for o in outs
        if isinstance(o, Z2MOut)
    )


def test_walk_through_makes_every_zigbee_device_act_even_the_silent_one() -> None:
    """The installer starts the walk-through after the kitchen sensor went silent: each
    Zigbee device then reports something a walk-through step counts (not only battery or
    signal), the silent one too (a new battery), within a few minutes."""
    home = SimulatedHome(PROFILE, START, 1, "all", TZ)
    when = {name: t for t, name in home.incidents}
    at = when["sensor_silent"] + 1800
    zig = Zigbee2MqttDecoder(PROFILE)
    for o in home.until(at):  # the decoder knows each device's state so far
        if isinstance(o, Z2MOut):
            zig.decode(o.topic, o.payload, o.at)
    told = home.walk_through(at)
    assert told == [f"pile changée : {home.silent_device_id}"]
    acted: set[str] = set()
    for o in home.until(at + 300):
        if isinstance(o, Z2MOut):
            for e in zig.decode(o.topic, o.payload, o.at).events:
                if e.kind not in (EventKind.HEARTBEAT, EventKind.LINKQUALITY, EventKind.BATTERY):
                    acted.add(e.device_id)
    zigbee = {
        d.id for d in PROFILE.devices if d.source == "zigbee2mqtt" and d.role is not Role.PROMPT
    }
    assert zigbee <= acted, sorted(zigbee - acted)
