"""The homes' time zones come with the gateway (the `tzdata` package), not from the system.

A slim Debian image has no `/usr/share/zoneinfo`: without `tzdata` installed,
`ZoneInfo("Europe/Paris")` fails there and `veille provision import` refuses every home (the
demo crashed the same way). `PYTHONTZPATH` pointed at an empty folder stands for that image.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.test_provision import HOME_TOML, ROOT, VEILLE


def _no_system_zones(tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "no-zoneinfo"
    empty.mkdir()
    return {**os.environ, "PYTHONTZPATH": str(empty)}


def test_tzdata_is_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [d.split(">")[0].split("=")[0].split("[")[0].strip() for d in project["dependencies"]]
    assert "tzdata" in names


def test_zones_load_without_system_zone_files(tmp_path: Path) -> None:
    code = (
        "import zoneinfo, datetime as dt\n"
        "assert zoneinfo.TZPATH == (sys_path,), zoneinfo.TZPATH\n"
        "z = zoneinfo.ZoneInfo('Europe/Paris')\n"
        "print(dt.datetime(2026, 7, 1, 12, tzinfo=z).utcoffset().total_seconds())\n"
    )
    env = _no_system_zones(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", f"sys_path = {env['PYTHONTZPATH']!r}\n" + code],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "7200.0"  # CEST, from the tzdata package


def test_provision_import_works_without_system_zone_files(tmp_path: Path) -> None:
    home = tmp_path / "home.toml"
    home.write_text(HOME_TOML)
    out = subprocess.run(
        [VEILLE, "provision", "import", str(home), "--storage", str(tmp_path / "storage")],
        env=_no_system_zones(tmp_path),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
