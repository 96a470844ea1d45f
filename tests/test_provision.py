"""`veille provision`: run as the installer runs it, through the installed `veille` script."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from edge.commands.provision import checklist
from edge.events import Role, RoomKind
from edge.home import Device, HomeProfile, Room
from edge.storage.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
VEILLE = ROOT / ".venv" / "bin" / "veille"

HOME_TOML = """\
[home]
id = "h-0001"
timezone = "Europe/Paris"

[[rooms]]
name = "bedroom"
kind = "bedroom"

[[rooms]]
name = "hall"
kind = "entrance"

[[devices]]
id = "sos-1"
source = "zigbee2mqtt"
address = "0x00158d0001a2b3c4"
friendly_name = "sos_button"
room = "hall"
role = "sos_button"

[[devices]]
id = "door-1"
source = "zigbee2mqtt"
address = "0x00158d0001a2b3c5"
friendly_name = "front_door"
room = "hall"
role = "door_entrance"

[[devices]]
id = "pir-bed"
source = "bthome"
address = "A4:C1:38:00:00:01"
room = "bedroom"
role = "motion"
bindkey = "231d39c1d7cc1ab1aee224cd096db932"

[[contacts]]
name = "Marie"
phone = "+33600000000"
"""


def veille(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VEILLE, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def write(tmp_path: Path, text: str, name: str = "home.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_import_good_file_then_show_and_checklist(tmp_path: Path) -> None:
    home = write(tmp_path, HOME_TOML)
    storage = tmp_path / "st"
    done = veille("provision", "import", home, "--storage", storage)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"imported home h-0001 (Europe/Paris): 2 rooms, 3 devices, 1 contacts into {storage}"
    )

    reg = Registry(storage)
    profile = reg.profile()
    reg.close()
    assert profile is not None
    assert [d.id for d in profile.devices] == ["sos-1", "door-1", "pir-bed"]
    assert profile.device("pir-bed") == Device(
        "pir-bed",
        "bthome",
        "A4:C1:38:00:00:01",
        "bedroom",
        Role.MOTION,
        bindkey="231d39c1d7cc1ab1aee224cd096db932",
    )

    shown = veille("provision", "show", "json", "--storage", storage)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["id"] == "h-0001"
    assert [r["kind"] for r in data["rooms"]] == ["bedroom", "entrance"]
    assert "231d39c1d7cc1ab1aee224cd096db932" not in shown.stdout  # keys are not displayed

    text = veille("provision", "show", "--storage", storage)
    assert text.returncode == 0
    assert text.stdout.startswith('[home]\nid = "h-0001"\n')
    assert 'role = "door_entrance"' in text.stdout

    check = veille("provision", "checklist", "--storage", storage)
    assert check.returncode == 0, check.stderr
    lines = check.stdout.splitlines()
    assert lines[:7] == [
        "home h-0001",
        "  room bedroom (bedroom)",
        "    pir-bed: motion",
        "  room hall (entrance)",
        "    sos-1: sos_button",
        "    door-1: door_entrance",
        "[ ] no family PIN set (veille provision set-pin family ...)",
    ]
    assert lines[-1] == "2 essential(s) missing"


def test_set_pin_stores_a_hash_that_checks(tmp_path: Path) -> None:
    storage = tmp_path / "st"
    assert (
        veille("provision", "import", write(tmp_path, HOME_TOML), "--storage", storage).returncode
        == 0
    )
    done = veille("provision", "set-pin", "family", "4821", "--storage", storage)
    assert done.returncode == 0, done.stderr
    done = veille("provision", "set-pin", "installer", "correct horse", "--storage", storage)
    assert done.returncode == 0, done.stderr
    assert "4821" not in (storage / "registry.json").read_text()
    reg = Registry(storage)
    assert reg.check_secret("family_pin", "4821")
    assert reg.check_secret("installer", "correct horse")
    assert not reg.check_secret("family_pin", "1111")
    reg.close()
    check = veille("provision", "checklist", "--storage", storage)
    assert check.stdout.splitlines()[-1] == "complete"

    for args in (("family", "12a4"), ("family", "123"), ("installer", "short"), ("nurse", "1234")):
        bad = veille("provision", "set-pin", *args, "--storage", storage)
        assert bad.returncode == 1, args
        assert bad.stderr.count("\n") == 1, bad.stderr
        assert bad.stderr.startswith("veille provision: ")


# (what to change in HOME_TOML, expected line, words expected in the reason)
BAD_FILES = [
    pytest.param(
        ('role = "motion"', 'role = "motion"\ncolour = "red"'),
        35,
        "unknown key 'colour'",
        id="unknown-key",
    ),
    pytest.param(
        ('role = "door_entrance"', 'role = "front_door"'), 27, "role 'front_door'", id="bad-role"
    ),
    pytest.param(
        ('room = "bedroom"', 'room = "kitchen"'),
        33,
        "room 'kitchen' is not declared",
        id="bad-room",
    ),
    pytest.param(('id = "h-0001"', 'id = "H 0001"'), 2, "home id 'H 0001'", id="bad-home-id"),
    pytest.param(
        ('kind = "entrance"', 'kind = "garage"'), 11, "room kind 'garage'", id="bad-room-kind"
    ),
    pytest.param(
        ('address = "A4:C1:38:00:00:01"', 'address = "A4:C1:38"'), 32, "BLE address", id="bad-mac"
    ),
    pytest.param(
        ("[[contacts]]", "[[contact]]"), 37, "unknown section [contact]", id="unknown-section"
    ),
    pytest.param(('name = "Marie"', 'name = "Marie'), 38, "not valid TOML", id="bad-toml"),
]


@pytest.mark.parametrize(("change", "line", "reason"), BAD_FILES)
def test_import_bad_file_exits_1_with_file_line_and_reason(
    tmp_path: Path, change: tuple[str, str], line: int, reason: str
) -> None:
    old, new = change
    assert HOME_TOML.count(old) >= 1
    home = write(tmp_path, HOME_TOML.replace(old, new, 1))
    storage = tmp_path / "st"
    done = veille("provision", "import", home, "--storage", storage)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback
    assert done.stderr.startswith(f"veille provision: {home}:{line}: "), done.stderr
    assert reason in done.stderr
    assert not (storage / "registry.json").exists()  # nothing was imported


THRESHOLD_LINE = HOME_TOML.count("\n") + 3  # after a blank line and [thresholds]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("1e12", "fall_confirm_s = 1e+12 is outside 5..120 s", id="huge-float"),
        pytest.param("nan", "must be a finite number, not nan", id="nan"),
        pytest.param("inf", "must be a finite number, not inf", id="inf"),
        pytest.param("9" * 400, "a number too large is outside 5..120 s", id="400-digits"),
        pytest.param("-3", "fall_confirm_s = -3 is outside", id="negative"),
        pytest.param('"30"', "must be a number", id="string"),
        pytest.param("true", "must be a number", id="bool"),
    ],
)
def test_import_refuses_a_threshold_outside_its_range_with_file_and_line(
    tmp_path: Path, value: str, reason: str
) -> None:
    home = write(tmp_path, f"{HOME_TOML}\n[thresholds]\nfall_confirm_s = {value}\n")
    storage = tmp_path / "st"
    done = veille("provision", "import", home, "--storage", storage)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback
    assert done.stderr.startswith(f"veille provision: {home}:{THRESHOLD_LINE}: "), done.stderr
    assert reason in done.stderr
    assert not (storage / "registry.json").exists()


def test_import_refuses_night_start_99_and_cold_above_hot(tmp_path: Path) -> None:
    home = write(tmp_path, f"{HOME_TOML}\n[thresholds]\nnight_start_h = 99\n")
    done = veille("provision", "import", home, "--storage", tmp_path / "a")
    assert done.returncode == 1
    assert "night_start_h = 99 is outside 0..24 h" in done.stderr
    home = write(tmp_path, f"{HOME_TOML}\n[thresholds]\ntemp_low_c = 22\ntemp_high_c = 21\n")
    done = veille("provision", "import", home, "--storage", tmp_path / "b")
    assert done.returncode == 1
    assert "temp_low_c (22) must be below temp_high_c (21)" in done.stderr
    good = f"{HOME_TOML}\n[thresholds]\nfall_confirm_s = 45\nnight_start_h = 21.5\n"
    done = veille("provision", "import", write(tmp_path, good), "--storage", tmp_path / "c")
    assert done.returncode == 0, done.stderr


def test_import_refuses_a_home_that_is_not_the_gateways(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[home]\nid = "h-0002"\n[local]\nurl = "mqtt://127.0.0.1:1883"\n'
        '[hub]\nurl = "mqtt://127.0.0.1:1884"\n[storage]\ndir = "st"\n',
        "gateway.toml",
    )
    home = write(tmp_path, HOME_TOML)
    done = veille("provision", "import", home, "--storage", tmp_path / "st", "--config", config)
    assert done.returncode == 1
    assert "'h-0001' differs from the gateway config's 'h-0002'" in done.stderr


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("dance",), "unknown action 'dance'"),
        (("show",), "no home here yet"),
        (("checklist",), "no home here yet"),
        (("import",), "import takes 1 argument"),
        (("import", "/nonexistent/home.toml"), "/nonexistent/home.toml: cannot read"),
        (("show", "yaml"), "usage: veille provision show"),
    ],
)
def test_bad_use_says_why_in_one_line(tmp_path: Path, args: tuple[str, ...], reason: str) -> None:
    done = veille("provision", *args, "--storage", tmp_path / "st")
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert reason in done.stderr


def _profile(*devices: tuple[str, str | None, Role]) -> HomeProfile:
    rooms = (
        Room("bed", RoomKind.BEDROOM),
        Room("hall", RoomKind.ENTRANCE),
        Room("bath", RoomKind.BATHROOM),
    )
    devs = tuple(
        Device(dev_id, "zigbee2mqtt", f"0x{n:016x}", room, role)
        for n, (dev_id, room, role) in enumerate(devices)
    )
    return HomeProfile(id="h-0001", rooms=rooms, devices=devs)


FULL = [
    ("sos", "hall", Role.SOS_BUTTON),
    ("door", "hall", Role.DOOR_ENTRANCE),
    ("bedpad", "bed", Role.BED),
    ("flush", "bath", Role.TOILET_FLUSH),
    ("wrist", None, Role.WEARABLE),
]


@pytest.mark.parametrize(
    ("drop", "missing"),
    [
        (None, []),
        ("sos", ["no sos_button"]),
        ("door", ["no door_entrance contact"]),
        ("bedpad", ["no bedroom sensor"]),
        ("flush", []),
    ],
)
def test_checklist_names_missing_essentials(drop: str | None, missing: list[str]) -> None:
    check = checklist(_profile(*[d for d in FULL if d[0] != drop]), {"family": True})
    assert [m.split(":")[0].split(" (")[0] for m in check.missing] == missing
    assert check.complete is (not missing)
    assert check.unassigned == (("wrist", "wearable"),)
    if drop == "flush":
        assert "no bathroom sensor: long bathroom stays are not seen" in check.notes
    assert checklist(_profile(*FULL), {"family": False}).missing == (
        "no family PIN set (veille provision set-pin family ...)",
    )


def test_csr_makes_a_private_key_and_a_request_the_hub_ca_signs(tmp_path: Path) -> None:
    from cryptography import x509

    from cloud_bridge import pki

    storage = tmp_path / "store"
    home = tmp_path / "home.toml"
    home.write_text('[home]\nid = "h-csr-1"\n')
    veille("provision", "import", home, "--storage", storage)
    out = veille("provision", "csr", "--storage", storage)
    assert out.returncode == 0, out.stderr
    key = storage / "tls" / "hub-client.key"
    csr = storage / "tls" / "hub-client.csr"
    assert "veille pki sign-csr" in out.stdout
    assert key.stat().st_mode & 0o077 == 0
    ca = tmp_path / "ca"
    pki.init_ca(ca)
    cert = x509.load_pem_x509_certificate(pki.sign_csr(ca, csr).read_bytes())
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == "h-csr-1"
    again = veille("provision", "csr", "--storage", storage)
    assert again.returncode == 1  # never overwrites the home's key
    assert "already exists" in again.stderr


def test_the_shipped_example_files_are_valid(tmp_path: Path) -> None:
    from edge.config import load_gateway_config

    examples = Path(__file__).resolve().parents[1] / "firmware_configs" / "veille"
    out = veille("provision", "import", examples / "home.toml", "--storage", tmp_path / "s")
    assert out.returncode == 0, out.stderr
    assert "13 devices" in out.stdout
    # the example names production paths: the same file with them under tmp_path
    text = (examples / "gateway.toml").read_text()
    for prefix in ("/etc/veille/", "/var/lib/veille/tls/", "/var/lib/veille"):
        text = text.replace(prefix, f"{tmp_path}/")
    for name in ("hub-ca.pem", "hub-client.pem", "hub-client.key"):
        (tmp_path / name).write_text("x")
    (tmp_path / "gateway.toml").write_text(text)
    assert load_gateway_config(tmp_path / "gateway.toml").home_id == "h-0001"
