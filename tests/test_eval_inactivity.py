"""`veille eval-inactivity` as a subprocess on small files cut from the real CASAS home."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_bridge.contract import parse_iso_utc
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
        [sys.executable, "-m", "edge.commands.cli", "eval-inactivity", *args],
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


def _lines(done: subprocess.CompletedProcess[str]) -> list[dict]:
    assert done.returncode == 0, done.stderr
    return [json.loads(x) for x in done.stdout.splitlines()]


def test_an_ordinary_day_raises_no_alert_and_every_check_in_is_answered(
    files: dict[str, Path],
) -> None:
    lines = _lines(
        _run("--history", str(files["history"]), "--monitor", str(files["day"]), "--json")
    )
    assert [x for x in lines if x["type"] != "check_in"] == []
    assert all(x["answered"] for x in lines)
    assert len(lines) <= 3  # at most the daily maximum and a few off furniture


def test_a_home_gone_silent_asks_first_then_raises_inactivity(files: dict[str, Path]) -> None:
    until = "2011-06-23T22:00:00Z"
    lines = _lines(
        _run(
            "--history", str(files["history"]), "--monitor", str(files["cut"]), "--until", until,
            "--unresponsive-from", "2011-06-23T10:16:00Z", "--json",
        )
    )  # fmt: skip
    assert lines, "nothing for a home silent from 10:16 to 22:00"
    ask, first = lines[0], lines[1]
    assert ask["type"] == "check_in"
    assert ask["answered"] is False
    assert set(first) >= {"type", "raised_at", "evidence"}
    assert first["type"] in {"inactivity", "no_morning_activity", "bathroom_long"}
    assert first["raised_at"].endswith("Z")
    asked = parse_iso_utc(ask["raised_at"])
    last_event = parse_iso_utc(_last_timestamp(files["cut"]) + "Z")
    raised = parse_iso_utc(first["raised_at"])
    assert last_event < asked
    assert asked + 600 <= raised <= asked + 660  # the answer window, then the next tick
    assert raised <= last_event + 2 * 3600  # the last sign was in the bathroom: off furniture
    assert first["evidence"]["check_in"] == "unanswered"
    assert len({(x["type"], x["raised_at"]) for x in lines}) == len(lines)


def test_a_resident_who_answers_is_asked_but_staff_are_not_told_at_once(
    files: dict[str, Path],
) -> None:
    until = "2011-06-23T13:00:00Z"
    args = ("--history", str(files["history"]), "--monitor", str(files["cut"]), "--until", until)
    answered = _lines(_run(*args, "--json"))
    silent = _lines(_run(*args, "--unresponsive-from", "2011-06-23T10:16:00Z", "--json"))
    assert answered[0]["type"] == "check_in"
    assert answered[0]["answered"] is True
    assert answered[0]["raised_at"] == silent[0]["raised_at"]  # the same first question
    first_alert = next(x for x in silent if x["type"] != "check_in")
    later = [x for x in answered if x["type"] != "check_in"]
    assert all(x["raised_at"] > first_alert["raised_at"] for x in later)


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
