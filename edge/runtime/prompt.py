"""Asking the resident: the Zigbee prompt devices' `set` commands and the Pi's speaker.

Both are best effort: a check-in that cannot sound still runs its answer window, and the
staff alert follows if nobody answers. Every failure is one log line.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_LOGGER = logging.getLogger(__name__)

CHECKIN_SENTENCE_FR = "Bonjour, tout va bien ? Appuyez sur le bouton « ça va » pour répondre."
SAY_TIMEOUT_S = 30.0


async def send_prompts(adapter: Any, commands: Sequence[tuple[str, bytes]]) -> None:
    """Publish each `(topic, payload)` on the local broker (`Zigbee2MqttAdapter.publish`)."""
    if not commands:
        return
    if adapter is None:
        _LOGGER.warning("check-in: the local broker is not connected; prompt devices not driven")
        return
    for topic, payload in commands:
        try:
            await adapter.publish(topic, payload)
        except Exception as exc:
            _LOGGER.warning("check-in: cannot publish %s: %s", topic, exc)


def speaker_argv(command: str, text: str = CHECKIN_SENTENCE_FR) -> list[str] | None:
    """The speaker's command line (`espeak-ng` gets a French voice), None when not installed."""
    parts = command.split()
    if not parts or shutil.which(parts[0]) is None:
        return None
    if Path(parts[0]).name.startswith("espeak") and "-v" not in parts:
        parts += ["-v", "fr"]
    return [*parts, text]


async def say(command: str, text: str = CHECKIN_SENTENCE_FR) -> None:
    """Speak `text` through the configured speaker command; a missing one is a log line."""
    argv = speaker_argv(command, text)
    if argv is None:
        _LOGGER.warning("check-in: speaker command %r not found; not spoken", command)
        return
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        _, err = await asyncio.wait_for(proc.communicate(), SAY_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        _LOGGER.warning("check-in: speaker %r failed: %s", argv[0], exc)
        return
    if proc.returncode:
        _LOGGER.warning("check-in: speaker %r exited %s: %.200s", argv[0], proc.returncode, err)
