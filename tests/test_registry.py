"""The registry: TinyDB behind an atomic, fsynced JSON storage, on real files."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from cloud_bridge.errors import StorageError
from edge.events import Role, RoomKind
from edge.home import Device, HomeProfile, Room, Thresholds
from edge.storage.registry import AtomicJSONStorage, Registry

PROFILE = HomeProfile(
    id="h-0001",
    timezone="Europe/Paris",
    rooms=(Room("bedroom", RoomKind.BEDROOM), Room("hall", RoomKind.ENTRANCE)),
    devices=(
        Device("sos-1", "zigbee2mqtt", "0x00158d0001a2b3c4", "hall", Role.SOS_BUTTON, "sos"),
        Device(
            "pir-1",
            "bthome",
            "A4:C1:38:00:00:01",
            "bedroom",
            Role.MOTION,
            bindkey="231d39c1d7cc1ab1aee224cd096db932",
        ),
    ),
    thresholds=Thresholds(night_start_h=21.5),
)


def test_profile_and_documents_survive_a_reopen(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "st")
    assert reg.profile() is None
    assert reg.get_doc("inactivity") is None
    reg.save_profile(PROFILE)
    reg.put_doc("inactivity", {"usual_max_min": [95, 120], "days": 7})
    reg.put_doc("inactivity", {"usual_max_min": [96, 121], "days": 8})
    reg.put_doc("fall", {"threshold": 0.5})
    reg.close()

    again = Registry(tmp_path / "st")
    assert again.profile() == PROFILE
    assert again.get_doc("inactivity") == {"usual_max_min": [96, 121], "days": 8}
    assert again.get_doc("fall") == {"threshold": 0.5}
    again.save_profile(HomeProfile(id="h-0002"))
    assert again.profile() == HomeProfile(id="h-0002")


def test_writes_are_atomic_and_keep_the_previous_good_file(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.put_doc("a", {"v": 1})
    reg.put_doc("a", {"v": 2})
    main = json.loads((tmp_path / "registry.json").read_text())
    bak = json.loads((tmp_path / "registry.json.bak").read_text())
    assert main["docs"]["1"]["doc"] == {"v": 2}
    assert bak["docs"]["1"]["doc"] == {"v": 1}
    # no temporary file is left behind, and the new file replaced the old one (new inode)
    inode = (tmp_path / "registry.json").stat().st_ino
    reg.put_doc("a", {"v": 3})
    assert (tmp_path / "registry.json").stat().st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.json", "registry.json.bak"]


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.put_doc("a", {"v": 1})
    before = (tmp_path / "registry.json").read_bytes()
    with pytest.raises(TypeError):
        reg.put_doc("b", {"v": object()})  # not JSON: the write fails before any rename
    assert (tmp_path / "registry.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.json", "registry.json.bak"]
    assert reg.get_doc("a") == {"v": 1}


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],  # truncated by a power cut mid-write
        lambda raw: b"\x00" * len(raw),  # a block of zeros
        lambda raw: b"[1, 2, 3]",  # JSON, but not a TinyDB document
    ],
    ids=["truncated", "zeros", "not-tinydb"],
)
def test_corrupt_file_falls_back_to_the_backup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    reg = Registry(tmp_path)
    reg.save_profile(PROFILE)
    reg.put_doc("model", {"v": 1})
    reg.close()
    path = tmp_path / "registry.json"
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]

    again = Registry(tmp_path)
    assert again.profile() == PROFILE  # the backup had the profile, not yet the model
    assert again.get_doc("model") is None
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "unreadable" in errors[0].getMessage()
    assert "registry.json.bak" in errors[0].getMessage()
    again.put_doc("model", {"v": 2})  # writing repairs the main file, the backup is kept
    assert json.loads(path.read_text())["docs"]["1"]["doc"] == {"v": 2}
    assert Registry(tmp_path).profile() == PROFILE


def test_corrupt_file_and_backup_start_empty_without_crashing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "registry.json").write_bytes(b'{"profile": {"1": {"id": "h-')
    (tmp_path / "registry.json.bak").write_bytes(b"")
    reg = Registry(tmp_path)
    assert reg.profile() is None
    assert "an empty registry" in caplog.text
    reg.save_profile(PROFILE)
    assert Registry(tmp_path).profile() == PROFILE


def test_secrets_are_stored_as_salted_hashes_only(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    assert not reg.has_secret("family_pin")
    assert not reg.check_secret("family_pin", "4821")
    reg.set_secret("family_pin", "4821")
    reg.set_secret("staff", "4821")
    assert reg.has_secret("family_pin")
    assert reg.check_secret("family_pin", "4821")
    assert not reg.check_secret("family_pin", "4822")
    assert not reg.check_secret("family_pin", "")
    assert not reg.check_secret("installer", "4821")

    raw = (tmp_path / "registry.json").read_text()
    assert "4821" not in raw
    records = json.loads(raw)["secrets"].values()
    salts = {r["salt"] for r in records}
    hashes = {r["hash"] for r in records}
    assert len(salts) == 2  # a salt per secret: the same PIN hashes differently
    assert len(hashes) == 2
    reg.set_secret("family_pin", "9999")
    assert not reg.check_secret("family_pin", "4821")
    assert reg.check_secret("family_pin", "9999")
    with pytest.raises(ValueError, match="empty"):
        reg.set_secret("family_pin", "")
    with pytest.raises(ValueError, match="kind"):
        reg.set_secret("../x", "1234")


def test_files_are_private_to_the_service_user(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "st"
    reg = Registry(folder)
    reg.put_doc("a", {"v": 1})
    reg.put_doc("a", {"v": 2})
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("registry.json", "registry.json.bak"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name

    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)  # noqa: S103 - the loose folder the registry must tighten
    Registry(loose).put_doc("a", {"v": 1})
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_storage_sees_a_file_replaced_by_another_process(tmp_path: Path) -> None:
    first = AtomicJSONStorage(tmp_path / "registry.json")
    second = AtomicJSONStorage(tmp_path / "registry.json")
    first.write({"docs": {"1": {"name": "a"}}})
    assert second.read() == {"docs": {"1": {"name": "a"}}}
    second.write({"docs": {"1": {"name": "b"}}})
    assert first.read() == {"docs": {"1": {"name": "b"}}}
    # read() hands out copies: changing one does not change the stored data
    got = first.read()
    assert got is not None
    got["docs"]["1"]["name"] = "changed"
    assert first.read() == {"docs": {"1": {"name": "b"}}}


def test_unusable_storage_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="registry"):
        Registry(blocker / "st")
    reg = Registry(tmp_path / "st")
    reg.put_doc("a", {"v": 1})
    (tmp_path / "st" / "registry.json").unlink()
    (tmp_path / "st" / "registry.json").mkdir()  # a folder where the file should be
    with pytest.raises(StorageError, match="cannot write"):
        reg.put_doc("a", {"v": 2})
