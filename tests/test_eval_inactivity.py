"""`veille eval-inactivity` as a subprocess on small files cut from the real CASAS home."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.events import parse_iso_utc
from tests.conftest import AMBIENT

REPO = Path(__file__).resolve().parents[1]
CASAS = AMBIENT / "casas_al_smarthome_dev.csv.gz"
SPLIT = "2011-06-23T00:00:00"  # 8 days of history before it (the first starts at 01:03)


def _rows() -> tuple[list[str], list[list[str]]]:
    with gzip.open(CASAS, "rt", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, list(reader)


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "eval-inactivity", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("eval")
    header, rows = _rows()
    history = [r for r in rows if r[0] < SPLIT]
    day = [r for r in rows if SPLIT <= r[0] < "2011-06-24T00:00:00"]
    cut = [r for r in day if r[0] < "2011-06-23T10:16:00"]  # last seen in the bathroom
    return {
        "history": _write(tmp / "history.csv", header, history),
        "day": _write(tmp / "day.csv", header, day),
        "cut": _write(tmp / "cut.csv", header, cut),
    }


def test_an_ordinary_day_prints_nothing(files: dict[str, Path]) -> None:
    done = _run("--history", str(files["history"]), "--monitor", str(files["day"]), "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_a_home_gone_silent_raises_inactivity(files: dict[str, Path]) -> None:
    until = "2011-06-23T22:00:00Z"
    done = _run(
        "--history", str(files["history"]), "--monitor", str(files["cut"]), "--until", until,
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert lines, "no alert for a home silent from 10:16 to 22:00"
    first = lines[0]
    assert set(first) >= {"type", "raised_at", "evidence"}
    assert first["type"] in {"inactivity", "no_morning_activity", "bathroom_long"}
    assert first["raised_at"].endswith("Z")
    last_event = parse_iso_utc(_last_timestamp(files["cut"]) + "Z")
    raised = parse_iso_utc(first["raised_at"])
    assert last_event < raised <= last_event + 6 * 3600  # far sooner than a 12-hour rule
    assert raised <= parse_iso_utc(until)
    assert first["evidence"]["inactive_min"] >= 45
    assert len({(x["type"], x["raised_at"]) for x in lines}) == len(lines)


def _last_timestamp(path: Path) -> str:
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[-1][0][:19]


def test_until_defaults_to_the_last_event(files: dict[str, Path]) -> None:
    done = _run("--history", str(files["history"]), "--monitor", str(files["cut"]), "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # no time runs on past the last event


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"a,b\n1,2\n", "not an ambient events file"),
        (b"\x1f\x8b\x08\x00broken", "cannot read"),
    ],
)
def test_bad_files_fail_in_one_line(tmp_path: Path, content: bytes, reason: str) -> None:
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(content)
    done = _run("--history", str(bad), "--monitor", str(bad), "--json")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert reason in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_bad_until_fails_in_one_line(files: dict[str, Path]) -> None:
    done = _run(
        "--history", str(files["history"]), "--monitor", str(files["cut"]),
        "--until", "tomorrow", "--json",
    )  # fmt: skip
    assert done.returncode == 1
    assert "--until" in done.stderr
    assert "Traceback" not in done.stderr
