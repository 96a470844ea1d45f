"""Property tests of every decoder: arbitrary input never raises, and bad input gives exactly
one log line at WARNING or above (good input none)."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.decode.bthome import BTHOME_UUIDS, BthomeDecoder
from edge.decode.zigbee2mqtt import EXPOSES, ROLE_EXPOSES, Zigbee2MqttDecoder
from edge.events import Event, Role, RoomKind
from edge.home import Device, HomeProfile, Room

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROOMS = tuple(Room(k.value, k) for k in RoomKind)

Z2M_PROFILE = HomeProfile(
    id="h-0001",
    rooms=ROOMS,
    devices=(
        Device("pir", "zigbee2mqtt", "0x00158d0002c4a1b2", "entrance", Role.MOTION, "hall"),
        Device("bed", "zigbee2mqtt", "0x00158d0004b7c8d9", "bedroom", Role.BED, "bed_mat"),
        Device("flush", "zigbee2mqtt", "0x00158d0003d4e5f6", "bathroom", Role.TOILET_FLUSH, "wc"),
        Device("sw", "zigbee2mqtt", "0x000b57fffe8c2d11", "bedroom", Role.LIGHT_SWITCH, "a/sw"),
    ),
)
BLE_PROFILE = HomeProfile(
    id="h-0001",
    rooms=ROOMS,
    devices=(
        Device("ht", "bthome", "A4:C1:38:8D:18:B2", "bedroom", Role.TEMPERATURE),
        Device(
            "enc",
            "bthome",
            "54:48:E6:8F:80:A5",
            "bathroom",
            Role.TEMPERATURE,
            bindkey="231d39c1d7cc1ab1aee224cd096db932",
        ),
        Device("mat", "bthome", "3C:2E:F5:00:00:23", "bedroom", Role.BED),
    ),
)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def loud(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.levelno >= logging.WARNING]


@contextlib.contextmanager
def captured() -> Iterator[_Records]:
    handler = _Records()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["ON", "OFF", "single", "", "online", "offline"]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
z2m_keys = st.sampled_from(
    sorted({*EXPOSES, *(k for table in ROLE_EXPOSES.values() for k in table), "voltage", "state"})
)
z2m_state = st.dictionaries(st.one_of(z2m_keys, st.text(max_size=8)), json_value, max_size=6)
z2m_topic = st.one_of(
    st.sampled_from(
        [
            "zigbee2mqtt/hall",
            "zigbee2mqtt/bed_mat",
            "zigbee2mqtt/wc",
            "zigbee2mqtt/a/sw",
            "zigbee2mqtt/0x00158d0002c4a1b2",
            "zigbee2mqtt/hall/availability",
            "zigbee2mqtt/hall/set",
            "zigbee2mqtt/bridge/devices",
            "zigbee2mqtt/bridge/event",
            "zigbee2mqtt/bridge/state",
            "zigbee2mqtt/unknown_thing",
        ]
    ),
    st.text(max_size=30).map(lambda t: "zigbee2mqtt/" + t),
    st.text(max_size=30),
)


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()


z2m_payload = st.one_of(
    st.binary(max_size=64),
    z2m_state.map(_json_bytes),
    json_value.map(_json_bytes),
    st.lists(st.dictionaries(st.text(max_size=12), json_value, max_size=5), max_size=3).map(
        _json_bytes
    ),
)


@FUZZ
@given(topic=z2m_topic, payload=z2m_payload, retained=st.booleans())
def test_zigbee2mqtt_decoder_never_raises(topic: str, payload: bytes, retained: bool) -> None:
    decoder = Zigbee2MqttDecoder(Z2M_PROFILE)
    with captured() as logs:
        result = decoder.decode(topic, payload, 1000.0, retained=retained)
    assert all(isinstance(e, Event) for e in result.events)
    expected_lines = 1 if (result.bad or result.unknown is not None) else 0
    assert len(logs.loud) == expected_lines, [r.getMessage() for r in logs.loud]


@FUZZ
@given(messages=st.lists(st.tuples(z2m_topic, z2m_payload), min_size=2, max_size=8))
def test_zigbee2mqtt_decoder_sequences_never_raise(messages: list[tuple[str, bytes]]) -> None:
    decoder = Zigbee2MqttDecoder(Z2M_PROFILE, warn_interval_s=0.0)
    with captured() as logs:
        results = [decoder.decode(t, p, 1000.0 + i) for i, (t, p) in enumerate(messages)]
    expected = sum(1 for r in results if r.bad or r.unknown is not None)
    assert len(logs.loud) == expected


mac = st.one_of(
    st.sampled_from([d.address for d in BLE_PROFILE.devices]),
    st.sampled_from([d.address.lower() for d in BLE_PROFILE.devices]),
    st.binary(min_size=6, max_size=6).map(lambda b: ":".join(f"{x:02X}" for x in b)),
)
valid_fragments = st.sampled_from(
    [
        "4002ca0903bf13",
        "41a47266c95f730011223378237214",
        "2302ca090303bf13",
        "40000a0161",
        "402d01",
        "403a02",
        "400b021b00",
        "402301",
    ]
).map(bytes.fromhex)
frame = st.one_of(
    st.binary(max_size=40),
    # a real frame cut short, or with garbage appended
    st.tuples(valid_fragments, st.integers(0, 30)).map(lambda t: t[0][: t[1]]),
    st.tuples(valid_fragments, st.binary(max_size=8)).map(lambda t: t[0] + t[1]),
    st.tuples(st.sampled_from([0x40, 0x41, 0x44, 0x45, 0x42, 0xE0]), st.binary(max_size=20)).map(
        lambda t: bytes([t[0]]) + t[1]
    ),
)
service_data = st.dictionaries(
    st.one_of(st.sampled_from(sorted(BTHOME_UUIDS)), st.uuids().map(str)), frame, max_size=2
)


@FUZZ
@given(
    address=mac,
    data=service_data,
    rssi=st.integers(-127, 20),
    name=st.one_of(st.none(), st.text(max_size=12)),
)
def test_bthome_decoder_never_raises(
    address: str, data: dict[str, bytes], rssi: int, name: str | None
) -> None:
    decoder = BthomeDecoder(BLE_PROFILE)
    with captured() as logs:
        result = decoder.decode(address, data, rssi, 1000.0, name)
    assert all(isinstance(e, Event) for e in result.events)
    unknown_bthome = result.unknown is not None and result.unknown.bthome
    expected_lines = 1 if (result.bad or unknown_bthome) else 0
    assert len(logs.loud) == expected_lines, [r.getMessage() for r in logs.loud]
    assert not [r for r in logs.records if r.name.startswith("bthome_ble")]


@FUZZ
@given(adverts=st.lists(st.tuples(mac, service_data, st.floats(0.0, 10.0)), min_size=2, max_size=8))
def test_bthome_decoder_sequences_never_raise(
    adverts: list[tuple[str, dict[str, bytes], float]],
) -> None:
    decoder = BthomeDecoder(BLE_PROFILE, warn_interval_s=0.0)
    at = 1000.0
    with captured() as logs:
        results = []
        for address, data, step in adverts:
            at += step
            results.append(decoder.decode(address, data, -60, at))
    expected = sum(1 for r in results if r.bad or (r.unknown is not None and r.unknown.bthome))
    assert len(logs.loud) == expected, [r.getMessage() for r in logs.loud]
