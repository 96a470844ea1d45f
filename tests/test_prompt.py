"""Asking the resident: the optional speaker, and prompts with no local broker yet."""

from __future__ import annotations

import asyncio
import logging
import stat
from pathlib import Path

import pytest

from edge.runtime.prompt import CHECKIN_SENTENCE_FR, say, send_prompts, speaker_argv


def fake_speaker(tmp_path: Path, name: str = "espeak-ng") -> tuple[Path, Path]:
    """An executable that records its arguments, standing in for the speech program."""
    said = tmp_path / "said.txt"
    exe = tmp_path / name
    exe.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {said}\n', encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe, said


def test_the_speaker_says_the_french_sentence_with_a_french_voice(tmp_path: Path) -> None:
    exe, said = fake_speaker(tmp_path)
    asyncio.run(say(f"{exe} -s 140"))
    assert said.read_text(encoding="utf-8").splitlines() == [
        "-s", "140", "-v", "fr", CHECKIN_SENTENCE_FR
    ]  # fmt: skip


def test_a_missing_speaker_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    assert speaker_argv("no-such-speech-program-here") is None
    asyncio.run(say("no-such-speech-program-here"))
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1
    assert "not found" in lines[0]


def test_a_failing_speaker_is_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exe = tmp_path / "say"
    exe.write_text("#!/bin/sh\necho 'no audio device' >&2\nexit 3\n", encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    asyncio.run(say(str(exe)))
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1
    assert "exited 3" in lines[0]
    assert "no audio device" in lines[0]


def test_prompts_without_a_local_broker_are_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asyncio.run(send_prompts(None, [("zigbee2mqtt/siren/set", b'{"state":"ON"}')]))
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert lines == ["check-in: the local broker is not connected; prompt devices not driven"]
