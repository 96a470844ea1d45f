"""Zigbee2MQTT decoder against recorded payloads of common devices (tests/vectors/z2m)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from edge.decode.zigbee2mqtt import EXPOSES, BridgeEvent, Zigbee2MqttDecoder
from edge.events import Event, EventKind, Role, RoomKind
from edge.home import Device, HomeProfile, Room

VECTORS = Path(__file__).parent / "vectors" / "z2m"
DEVICE_FILES = sorted(
    p for p in VECTORS.glob("*.json") if p.name not in ("bridge.json", "bad_input.json")
)
ROOMS = tuple(Room(k.value, k) for k in RoomKind)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def profile_of(devices: list[dict[str, Any]]) -> HomeProfile:
    return HomeProfile(
        id="h-0001",
        rooms=ROOMS,
        devices=tuple(
            Device(
                d["id"], "zigbee2mqtt", d["address"], d["room"], Role(d["role"]), d["friendly_name"]
            )
            for d in devices
        ),
    )


def payload_of(case: dict[str, Any]) -> bytes:
    if "payload" in case:
        return json.dumps(case["payload"]).encode()
    if "payload_hex" in case:
        return bytes.fromhex(case["payload_hex"])
    return str(case["payload_text"]).encode()


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.stem)
def test_device_vectors(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vec = load(path)
    profile = profile_of(vec["devices"])
    decoder = Zigbee2MqttDecoder(profile)
    for msg in vec["messages"]:
        result = decoder.decode(
            msg["topic"], payload_of(msg), msg["at"], retained=msg.get("retained", False)
        )
        name = msg["topic"].removeprefix("zigbee2mqtt/").split("/set")[0]
        name = name.removesuffix("/availability")
        dev = next(d for d in profile.devices if d.friendly_name == name)
        expected = [
            Event(
                dev.id,
                EventKind(e["kind"]),
                e["value"],
                msg["at"],
                "zigbee2mqtt",
                dev.room,
                RoomKind(dev.room),
                dev.role,
            )
            for e in msg["expect"]
        ]
        key = lambda e: (e.kind.value, str(e.value))  # noqa: E731
        assert sorted(result.events, key=key) == sorted(expected, key=key), (path.name, msg)
        assert result.unknown is None
        assert not result.bad
    assert warnings(caplog) == []


def test_contact_means_closed_and_values_have_python_types() -> None:
    decoder = Zigbee2MqttDecoder(profile_of(load(VECTORS / "aqara_door_mccgq11lm.json")["devices"]))
    (open_event,) = [
        e
        for e in decoder.decode("zigbee2mqtt/front_door", b'{"contact": false}', 5.0).events
        if e.kind is EventKind.OPEN
    ]
    assert open_event.value is True
    assert EXPOSES["contact"].kind is EventKind.OPEN


def test_device_found_by_ieee_address_when_friendly_name_is_the_default() -> None:
    profile = HomeProfile(
        id="h-0001",
        rooms=ROOMS,
        devices=(Device("pir-1", "zigbee2mqtt", "0x00158D0002C4A1B2", "bedroom", Role.MOTION),),
    )
    result = Zigbee2MqttDecoder(profile).decode(
        "zigbee2mqtt/0x00158d0002c4a1b2", b'{"occupancy": true}', 7.0
    )
    assert [(e.device_id, e.kind, e.value) for e in result.events] == [
        ("pir-1", EventKind.MOTION, True)
    ]


def test_bridge_devices_events_and_state(caplog: pytest.LogCaptureFixture) -> None:
    vec = load(VECTORS / "bridge.json")
    decoder = Zigbee2MqttDecoder(profile_of(vec["devices"]))
    result = decoder.decode(
        "zigbee2mqtt/bridge/devices", json.dumps(vec["bridge_devices"]).encode(), 1.0, retained=True
    )
    expected = {k: frozenset(v) for k, v in vec["expect_capabilities"].items()}
    assert result.capabilities == expected
    assert decoder.capabilities == expected
    assert result.bridge_devices is not None
    kettle = next(d for d in result.bridge_devices if d.friendly_name == "kettle")
    assert (kettle.model, kettle.vendor, kettle.type, kettle.supported) == (
        "TS011F_plug_1",
        "Tuya",
        "Router",
        True,
    )
    joining = next(d for d in result.bridge_devices if d.ieee_address == "0x00158d0009999999")
    assert not joining.interview_completed
    for event in vec["events"]:
        got = decoder.decode("zigbee2mqtt/bridge/event", json.dumps(event["payload"]).encode(), 2.0)
        assert got.bridge_event == BridgeEvent(**event["expect"])
        assert got.events == ()
    for payload, online in vec["states"]:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        assert (
            decoder.decode("zigbee2mqtt/bridge/state", text.encode(), 3.0).bridge_online is online
        )
    assert decoder.decode("zigbee2mqtt/bridge/logging", b'{"level":"info"}', 4.0) == type(got)()
    assert warnings(caplog) == []


@pytest.mark.parametrize(
    "case", load(VECTORS / "bad_input.json")["cases"], ids=lambda c: str(c["name"])
)
def test_bad_input_gives_one_warning_and_no_exception(
    case: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    vec = load(VECTORS / "bad_input.json")
    profile = profile_of(vec["devices"])
    decoder = Zigbee2MqttDecoder(profile)
    result = decoder.decode(case["topic"], payload_of(case), 100.0)
    assert len(warnings(caplog)) == 1, [r.getMessage() for r in caplog.records]
    assert result.unknown == case.get("unknown")
    assert result.bad or result.unknown
    assert [(e.kind.value, e.value) for e in result.events] == [
        (e["kind"], e["value"]) for e in case.get("expect", [])
    ]


def test_repeated_bad_input_from_one_device_is_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    vec = load(VECTORS / "bad_input.json")
    decoder = Zigbee2MqttDecoder(profile_of(vec["devices"]), warn_interval_s=60.0)
    for i in range(10):
        decoder.decode("zigbee2mqtt/living_climate", b"not json", 100.0 + i)
    decoder.decode("zigbee2mqtt/living_climate", b"not json", 200.0)
    assert len(warnings(caplog)) == 2
    own = [r for r in caplog.records if r.name == "edge.decode.zigbee2mqtt"]
    assert len(own) == 11  # still one line per bad message, the repeats at DEBUG
    assert decoder.counters.bad == 11


def test_unknown_devices_are_counted() -> None:
    decoder = Zigbee2MqttDecoder(profile_of([]))
    for _ in range(3):
        assert decoder.decode("zigbee2mqtt/new_bulb", b'{"state":"ON"}', 1.0).unknown == "new_bulb"
    decoder.decode("zigbee2mqtt/new_plug", b'{"power": 3}', 1.0)
    assert decoder.counters.unknown == {"new_bulb": 3, "new_plug": 1}
    assert decoder.counters.messages == 4


def test_profile_update_takes_new_devices() -> None:
    decoder = Zigbee2MqttDecoder(profile_of([]))
    assert decoder.decode("zigbee2mqtt/hall", b'{"occupancy": true}', 1.0).unknown == "hall"
    decoder.update_profile(
        profile_of(
            [
                {
                    "id": "pir",
                    "friendly_name": "hall",
                    "address": "0x1",
                    "role": "motion",
                    "room": "entrance",
                }
            ]
        )
    )
    events = decoder.decode("zigbee2mqtt/hall", b'{"occupancy": true}', 2.0).events
    assert [(e.device_id, e.room_kind) for e in events] == [("pir", RoomKind.ENTRANCE)]


# ---- prompt devices: what the gateway sends them, from their exposes ----------------------
def _prompt_profile() -> HomeProfile:
    return profile_of(
        [
            {"id": f"p-{n}", "address": f"0x0{n}", "room": "living", "role": "prompt",
             "friendly_name": name}
            for n, name in enumerate(("siren", "bulb", "plug", "unknown", "sensor"))
        ]
    )  # fmt: skip


def test_prompt_commands_follow_each_device_s_exposes(caplog: pytest.LogCaptureFixture) -> None:
    from edge.decode.zigbee2mqtt import prompt_commands

    caps = {
        "siren": frozenset({"warning", "mode", "level", "strobe", "duration", "battery"}),
        "bulb": frozenset({"state", "brightness", "effect"}),
        "plug": frozenset({"state", "power"}),
        "sensor": frozenset({"temperature", "humidity"}),
    }
    ask = dict(prompt_commands(_prompt_profile(), caps))
    assert {k: json.loads(v) for k, v in ask.items()} == {
        "zigbee2mqtt/siren/set": {
            "warning": {"mode": "emergency", "level": "low", "strobe": True, "duration": 10}
        },
        "zigbee2mqtt/bulb/set": {"effect": "blink"},
        "zigbee2mqtt/plug/set": {"state": "ON"},
        "zigbee2mqtt/unknown/set": {"state": "ON"},  # exposes not known yet
    }
    assert "sensor" in " ".join(r.getMessage() for r in warnings(caplog))
    stop = dict(prompt_commands(_prompt_profile(), caps, stop=True))
    assert {k: json.loads(v) for k, v in stop.items()} == {
        "zigbee2mqtt/siren/set": {"warning": {"mode": "stop"}},
        "zigbee2mqtt/bulb/set": {"effect": "finish_effect"},
        "zigbee2mqtt/plug/set": {"state": "OFF"},
        "zigbee2mqtt/unknown/set": {"state": "OFF"},
    }


def test_our_own_set_commands_are_not_read_back_as_device_state() -> None:
    decoder = Zigbee2MqttDecoder(_prompt_profile())
    result = decoder.decode("zigbee2mqtt/siren/set", b'{"warning":{"mode":"stop"}}', 1.0)
    assert result.events == ()
    assert not result.bad
