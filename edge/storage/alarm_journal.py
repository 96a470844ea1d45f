"""A second copy of the alarm log, kept apart from the outbox file: `alarm_log.jsonl`.

The alarm log lives in the outbox's SQLite file, in the same transactions as the queued
messages. A damaged file (a clobbered header) can leave nothing readable in it, so every
alarm-log change is also appended here, one JSON line each, after its transaction committed:

    {"log": [alert_id, type, severity, raised_at, room, device_id]}   an alert first logged
    {"state": [state_id, alert_id, state, at]}                        one state change
    {"delivered": [[state_id, ...], at]}                              their hub receipt

When the outbox is rebuilt, the journal fills in what the salvage could not read. When the
outbox opens cleanly, what a crash between the commit and the append left out is appended
(`sync`). A damaged line is skipped; the journal is only ever appended to.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from edge.const import STORAGE_FILE_MODE
from edge.events import Alert

_LOGGER = logging.getLogger(__name__)

JOURNAL_FILE = "alarm_log.jsonl"


class AlarmJournal:
    """Append-only JSON lines beside the outbox (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, lines: Sequence[dict[str, Any]]) -> None:
        """Append and fsync; a failure is logged (the outbox file still has the rows)."""
        if not lines:
            return
        text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, STORAGE_FILE_MODE)
            try:
                os.write(fd, text.encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            _LOGGER.error("alarm journal %s: %d lines not appended: %s", self.path, len(lines), exc)

    def read(self) -> tuple[dict[str, list[Any]], dict[int, list[Any]], dict[int, float]]:
        """(alert_id -> log row, state_id -> state row, state_id -> delivered at), in order."""
        heads: dict[str, list[Any]] = {}
        states: dict[int, list[Any]] = {}
        delivered: dict[int, float] = {}
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return heads, states, delivered
        except OSError as exc:
            _LOGGER.error("alarm journal %s: unreadable: %s", self.path, exc)
            return heads, states, delivered
        bad = 0
        for line in raw.splitlines():
            try:
                entry = json.loads(line)
                if "log" in entry:
                    alert_id, kind, severity, raised_at, room, device_id = entry["log"]
                    heads.setdefault(
                        str(alert_id), [alert_id, kind, severity, float(raised_at), room, device_id]
                    )
                elif "state" in entry:
                    state_id, alert_id, state, at = entry["state"]
                    states.setdefault(int(state_id), [int(state_id), alert_id, state, float(at)])
                elif "delivered" in entry:
                    ids, at = entry["delivered"]
                    for state_id in ids:
                        delivered.setdefault(int(state_id), float(at))
            except (ValueError, TypeError, KeyError, AttributeError):
                bad += 1
        if bad:
            _LOGGER.warning("alarm journal %s: %d damaged lines skipped", self.path, bad)
        return heads, states, delivered

    def sync(self, db: sqlite3.Connection) -> int:
        """Append what the outbox file holds and the journal lacks; returns how many lines."""
        heads, states, delivered = self.read()
        lines: list[dict[str, Any]] = []
        for row in db.execute(
            "SELECT alert_id, type, severity, raised_at, room, device_id FROM alarm_log "
            "ORDER BY rowid"
        ):
            if row[0] not in heads:
                lines.append({"log": list(row)})
        late: dict[float, list[int]] = {}
        for state_id, alert_id, state, at, when in db.execute(
            "SELECT id, alert_id, state, at, delivered_at FROM alarm_state ORDER BY id"
        ):
            if state_id not in states:
                lines.append({"state": [state_id, alert_id, state, at]})
            if when is not None and state_id not in delivered:
                late.setdefault(float(when), []).append(int(state_id))
        lines += [{"delivered": [ids, at]} for at, ids in sorted(late.items())]
        self.append(lines)
        return len(lines)


def log_line(alert: Alert) -> dict[str, Any]:
    """The line of an alert first logged (its alarm_log row)."""
    head = [alert.id, str(alert.type), str(alert.severity), alert.raised_at]
    return {"log": [*head, alert.room, alert.device_id]}


def state_line(state_id: int, alert_id: str, state: str, at: float) -> dict[str, Any]:
    return {"state": [state_id, alert_id, state, at]}


def delivered_line(state_ids: Iterable[int], at: float) -> dict[str, Any]:
    return {"delivered": [list(state_ids), at]}
