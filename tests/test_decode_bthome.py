"""BTHome decoder against the BTHome format's published examples (tests/vectors/ble)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from cloud_bridge.contract import AlertType
from edge.decode.bthome import BthomeDecoder, NearbyDevice
from edge.events import Event, EventKind, Role, RoomKind
from edge.home import Device, HomeProfile, Room

VECTORS = Path(__file__).parent / "vectors" / "ble"
ADVERT_FILES = sorted(p for p in VECTORS.glob("*.json") if p.name != "bad_input.json")
ROOMS = tuple(Room(k.value, k) for k in RoomKind)
UUID_V2 = "0000fcd2-0000-1000-8000-00805f9b34fb"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def profile_of(*devices: dict[str, Any]) -> HomeProfile:
    return HomeProfile(
        id="h-0001",
        rooms=ROOMS,
        devices=tuple(
            Device(
                d["id"],
                "bthome",
                d["address"],
                d["room"],
                Role(d["role"]),
                bindkey=d.get("bindkey", ""),
            )
            for d in devices
        ),
    )


def service_data(advert: dict[str, Any]) -> dict[str, bytes]:
    return {uuid: bytes.fromhex(data) for uuid, data in advert["service_data"].items()}


def warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def by_kind(events: Any) -> list[tuple[str, str]]:
    return sorted((e.kind.value, repr(e.value)) for e in events)


@pytest.mark.parametrize("path", ADVERT_FILES, ids=lambda p: p.stem)
def test_advert_vectors(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    vec = load(path)
    dev = vec["device"]
    decoder = BthomeDecoder(profile_of(dev))
    for adv in vec["adverts"]:
        result = decoder.decode(
            dev["address"].lower(), service_data(adv), adv["rssi"], adv["at"], adv["name"]
        )
        expected = [
            Event(
                dev["id"],
                EventKind(e["kind"]),
                e["value"],
                adv["at"],
                "bthome",
                dev["room"],
                RoomKind(dev["room"]),
                Role(dev["role"]),
            )
            for e in adv["expect"]
        ]
        key = lambda e: (e.kind.value, repr(e.value))  # noqa: E731
        assert sorted(result.events, key=key) == sorted(expected, key=key), (path.name, adv)
        assert result.unknown is None
        assert not result.bad
    assert warnings(caplog) == []


def test_unknown_address_is_listed_nearby_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    decoder = BthomeDecoder(profile_of())
    data = {UUID_V2: bytes.fromhex("4002ca0903bf13")}
    result = decoder.decode("aa:bb:cc:dd:ee:ff", data, -77, 50.0, "ATC_DDEEFF")
    assert result.events == ()
    assert result.unknown == NearbyDevice("AA:BB:CC:DD:EE:FF", "ATC_DDEEFF", -77, 50.0, True)
    decoder.decode("AA:BB:CC:DD:EE:FF", data, -70, 51.0)
    phone = decoder.decode("11:22:33:44:55:66", {}, -90, 52.0, None)  # not BTHome
    assert phone.unknown is not None
    assert not phone.unknown.bthome
    assert decoder.unknown_counts == {"AA:BB:CC:DD:EE:FF": 2}
    assert list(decoder.nearby) == ["AA:BB:CC:DD:EE:FF", "11:22:33:44:55:66"]
    assert len(warnings(caplog)) == 1  # one line for the unknown BTHome sensor, none for phones


@pytest.mark.parametrize(
    "case", load(VECTORS / "bad_input.json")["cases"], ids=lambda c: str(c["name"])
)
def test_bad_input_gives_one_warning_and_no_events(
    case: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    decoder = BthomeDecoder(profile_of(case["device"]))
    result = decoder.decode(case["device"]["address"], service_data(case), -60, 1000.0, "TEST")
    assert len(warnings(caplog)) == 1, [r.getMessage() for r in caplog.records]
    assert result.bad
    assert result.events == ()


def test_bthome_library_lines_do_not_leak(caplog: pytest.LogCaptureFixture) -> None:
    """The library's own diagnostics are folded into our one line."""
    dev = {"id": "x", "address": "A4:C1:38:8D:18:B2", "role": "temperature", "room": "bedroom"}
    decoder = BthomeDecoder(profile_of(dev))
    decoder.decode(dev["address"], {UUID_V2: bytes.fromhex("e1020c04138a01")}, -60, 1.0)
    assert [r.name for r in caplog.records if r.name.startswith("bthome_ble")] == []
    assert "version 7" in warnings(caplog)[0].getMessage()


def test_wrong_bindkey_then_right_bindkey_after_profile_update() -> None:
    good = load(VECTORS / "bthome_v2_encrypted.json")
    dev = dict(good["device"], bindkey="814aac74c4f17b6c1581e1ab87816b99")
    decoder = BthomeDecoder(profile_of(dev))
    adv = good["adverts"][0]
    assert decoder.decode(dev["address"], service_data(adv), -60, 1.0).bad
    decoder.update_profile(profile_of(good["device"]))
    events = decoder.decode(dev["address"], service_data(adv), -60, 2.0).events
    assert (EventKind.TEMPERATURE, 25.06) in [(e.kind, e.value) for e in events]


def test_multi_button_device_names_the_button() -> None:
    dev = {"id": "remote", "address": "3C:2E:F5:00:00:44", "role": "sos_button", "room": "living"}
    decoder = BthomeDecoder(profile_of(dev))
    # Two button objects (0x3A twice): first none, second double press.
    result = decoder.decode(dev["address"], {UUID_V2: bytes.fromhex("403a003a02")}, -60, 1.0)
    assert [e.value for e in result.events if e.kind is EventKind.ACTION] == ["button_2_double"]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({UUID_V2: "40fe01"}, "object ids bthome-ble does not read"),
        ({"0000fe95-0000-1000-8000-00805f9b34fb": "3020aa01"}, "no decoder here reads"),
    ],
)
def test_an_unreadable_ble_format_gets_one_clear_line(
    data: dict[str, str], words: str, caplog: pytest.LogCaptureFixture
) -> None:
    dev = {"id": "b", "address": "3C:2E:F5:00:00:5D", "role": "temperature", "room": "living"}
    decoder = BthomeDecoder(profile_of(dev))
    raw = {uuid: bytes.fromhex(hexdata) for uuid, hexdata in data.items()}
    for at in (1.0, 2.0, 3.0):  # the device keeps sending it: still one line
        assert decoder.decode(dev["address"], raw, -60, at).bad
    lines = [r.getMessage() for r in warnings(caplog)]
    assert len(lines) == 1
    assert words in lines[0]
    assert dev["address"] in lines[0]


def test_a_held_bthome_button_is_an_sos_hold() -> None:
    from edge.detect.rules import RuleDetector

    dev = {"id": "sos-1", "address": "3C:2E:F5:00:00:3A", "role": "sos_button", "room": "living"}
    profile = profile_of(dev)
    decoder, rules = BthomeDecoder(profile), RuleDetector(profile)
    events = decoder.decode(dev["address"], {UUID_V2: bytes.fromhex("403afe")}, -60, 5.0).events
    found = [f for e in events for f in rules.feed(e)]
    assert [(f.type, f.action, f.evidence) for f in found] == [
        (AlertType.SOS, "raise", {"button": "hold"})
    ]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("wrong_bindkey", "cannot decrypt"),
        ("tampered_mic", "cannot decrypt"),
        ("encrypted_without_bindkey", "no bindkey in the registry"),
        ("plaintext_with_bindkey", "plaintext advertisement"),
        ("truncated_temperature", "truncated at object 0x02"),
        ("version_7", "version 7"),
    ],
)
def test_why_an_advert_is_bad_is_read_from_its_bytes_and_the_parser_state(
    name: str, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each reason is told apart without the library's log: its logger is left as it was
    set when loaded (no level change, no filter per advertisement)."""
    case = next(c for c in load(VECTORS / "bad_input.json")["cases"] if c["name"] == name)
    decoder = BthomeDecoder(profile_of(case["device"]))
    library = logging.getLogger("bthome_ble.parser")
    before = (library.level, list(library.filters), logging.getLogger("bthome_ble").level)
    assert decoder.decode(case["device"]["address"], service_data(case), -60, 1000.0).bad
    assert (library.level, list(library.filters), logging.getLogger("bthome_ble").level) == before
    [line] = [r.getMessage() for r in warnings(caplog)]
    assert words in line


def test_registered_sensors_are_listed_nearby_too() -> None:
    """The installer's Bluetooth page finds the home's own sensors, not only strangers."""
    decoder = BthomeDecoder(
        profile_of(
            {"id": "th-1", "address": "A4:C1:38:00:00:09", "room": "bedroom", "role": "temperature"}
        )
    )
    data = {UUID_V2: bytes.fromhex("4002ca0903bf13")}
    result = decoder.decode("a4:c1:38:00:00:09", data, -61, 10.0, "ATC_000009")
    assert result.unknown is None
    assert list(decoder.nearby) == ["A4:C1:38:00:00:09"]
    assert decoder.nearby["A4:C1:38:00:00:09"] == NearbyDevice(
        "A4:C1:38:00:00:09", "ATC_000009", -61, 10.0, True
    )
