"""Salvage of a damaged outbox file: read back what can be read, write it into a new file.

Used by `edge.storage.outbox` when `PRAGMA quick_check` or the first query says the file is corrupt
or truncated: the file was moved aside first, so nothing here can make things worse.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloud_bridge import contract
from cloud_bridge.contract import iso_utc, parse_iso_utc
from edge.const import OUTBOX_ROW_OVERHEAD_BYTES, PRIORITY_AGGREGATE, PRIORITY_ALERT

_LOGGER = logging.getLogger(__name__)


@dataclass
class Salvage:
    """Rows read back from a damaged file."""

    outbox: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    log: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    states: dict[int, tuple[Any, ...]] = field(default_factory=dict)
    dropped: int = 0
    requeued: int = 0  # alert messages rebuilt from the alarm log


def aside_name(path: Path) -> Path:
    """`outbox.db.corrupt-<n>` with the first n not yet used."""
    n = 1
    while Path(f"{path}.corrupt-{n}").exists():
        n += 1
    return Path(f"{path}.corrupt-{n}")


def _read_rows(db: sqlite3.Connection, queries: Sequence[str], into: dict[Any, Any]) -> None:
    """Run each query, keeping the rows read before an error (keyed by the first column)."""
    for sql in queries:
        try:
            for row in db.execute(sql):
                into.setdefault(row[0], tuple(row))
        except sqlite3.Error as exc:
            _LOGGER.debug("salvage: %s stopped: %s", sql, exc)


def merge_journal(
    found: Salvage,
    heads: dict[str, list[Any]],
    states: dict[int, list[Any]],
    delivered: dict[int, float],
) -> int:
    """Fill in from the alarm journal (edge.storage.alarm_journal) what the salvage could not read;
    returns how many alarm-log entries came from it."""
    for state_id, (_i, alert_id, state, at) in states.items():
        if state_id not in found.states:
            found.states[state_id] = (state_id, alert_id, state, at, delivered.get(state_id))
        elif found.states[state_id][4] is None and state_id in delivered:
            found.states[state_id] = (*found.states[state_id][:4], delivered[state_id])
    first_delivery: dict[str, float] = {}
    for _i, alert_id, _state, _at, when in found.states.values():
        if when is not None:
            first_delivery[alert_id] = min(float(when), first_delivery.get(alert_id, float(when)))
    added = 0
    for alert_id, (_a, kind, severity, raised_at, room, device_id) in heads.items():
        if alert_id in found.log:
            row = found.log[alert_id]
            if row[7] is None and alert_id in first_delivery:
                found.log[alert_id] = (*row[:7], first_delivery[alert_id])
            continue
        rowid = max((r[1] for r in found.log.values()), default=0) + 1
        found.log[alert_id] = (
            alert_id,
            rowid,
            kind,
            severity,
            raised_at,
            room,
            device_id,
            first_delivery.get(alert_id),
        )
        added += 1
    return added


def salvage(
    aside: Path, home_id: str | None = None, journal: tuple[Any, Any, Any] | None = None
) -> Salvage:
    """Read what can be read from a damaged file: alerts first, then the alarm log and the
    aggregates, each table walked forwards and backwards to get round a bad page. With
    `home_id`, an alert state the alarm log holds as not yet delivered whose queued message
    was lost is queued again, rebuilt from the log (evidence says so). `journal`: what
    `AlarmJournal.read` returned, merged in first so no alarm-log entry is lost. Never
    raises."""
    found = Salvage()
    try:
        db = sqlite3.connect(aside, isolation_level=None)
        # writable_schema: read a truncated file by its real size instead of refusing it
        # because the header counts more pages; query_only: nothing here writes to it.
        db.execute("PRAGMA writable_schema = ON")
        db.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        _LOGGER.debug("salvage: cannot open %s: %s", aside, exc)
        return found
    try:
        cols = "seq, priority, topic, payload, size, state_id FROM outbox"
        _read_rows(
            db,
            [
                f"SELECT {cols} WHERE priority = 0 ORDER BY priority, seq",
                f"SELECT {cols} ORDER BY seq",
                f"SELECT {cols} ORDER BY seq DESC",
            ],
            found.outbox,
        )
        log_cols = "alert_id, rowid, type, severity, raised_at, room, device_id, delivered_at"
        _read_rows(
            db,
            [
                f"SELECT {log_cols} FROM alarm_log ORDER BY rowid",
                f"SELECT {log_cols} FROM alarm_log ORDER BY rowid DESC",
            ],
            found.log,
        )
        st_cols = "id, alert_id, state, at, delivered_at FROM alarm_state"
        _read_rows(
            db,
            [f"SELECT {st_cols} ORDER BY id", f"SELECT {st_cols} ORDER BY id DESC"],
            found.states,
        )
        with contextlib.suppress(sqlite3.Error):
            row = db.execute("SELECT max(seq) FROM outbox").fetchone()
            if row and row[0] is not None:
                found.dropped = max(0, int(row[0]) - max(found.outbox, default=0))
    finally:
        db.close()
    _check_salvage(found)
    if journal is not None:
        merge_journal(found, *journal)
    if home_id is not None:
        _requeue_lost_alerts(found, home_id)
    return found


def _check_salvage(found: Salvage) -> None:
    """Drop rows with wrong types; rebuild alarm-log rows from queued alert payloads."""
    good: dict[int, tuple[Any, ...]] = {}
    for seq, row in found.outbox.items():
        _s, priority, topic, payload, size, state_id = row
        if (
            priority in (PRIORITY_ALERT, PRIORITY_AGGREGATE)
            and isinstance(topic, str)
            and isinstance(payload, bytes)
            and isinstance(size, int)
        ):
            good[seq] = row
        else:
            found.dropped += 1
    found.outbox = good
    for seq, row in sorted(found.outbox.items()):
        _s, priority, topic, payload, size, state_id = row
        if priority != PRIORITY_ALERT or state_id in found.states:
            continue
        try:
            msg = contract.validate_alert(contract.decode(payload))
            at = parse_iso_utc(msg["at"])
            raised = parse_iso_utc(msg["raised_at"])
        except (contract.ContractError, ValueError, KeyError) as exc:
            _LOGGER.debug("salvage: queued alert %s unreadable: %s", seq, exc)
            continue
        new_id = max(found.states, default=0) + 1
        found.states[new_id] = (new_id, msg["id"], msg["state"], at, None)
        found.outbox[seq] = (seq, priority, topic, payload, size, new_id)
        if msg["id"] not in found.log:
            rowid = max((r[1] for r in found.log.values()), default=0) + 1
            found.log[msg["id"]] = (
                msg["id"],
                rowid,
                msg["type"],
                msg["severity"],
                raised,
                msg["room"],
                msg["device_id"],
                None,
            )


def _requeue_lost_alerts(found: Salvage, home_id: str) -> None:
    """Queue again every undelivered alert state whose outbox row was not read back."""
    queued = {row[5] for row in found.outbox.values() if row[1] == PRIORITY_ALERT}
    seq = max(found.outbox, default=0)
    requeued = 0
    for state_id, (_id, alert_id, state, at, delivered) in sorted(found.states.items()):
        head = found.log.get(alert_id)
        if delivered is not None or state_id in queued or head is None:
            continue
        _a, _rowid, kind, severity, raised_at, room, device_id, _d = head
        try:
            payload = contract.encode(
                contract.validate_alert(
                    {
                        "schema": "veille.alert/1",
                        "id": alert_id,
                        "home_id": home_id,
                        "type": kind,
                        "severity": severity,
                        "state": state,
                        "at": iso_utc(float(at)),
                        "raised_at": iso_utc(float(raised_at)),
                        "room": room,
                        "device_id": device_id,
                        "evidence": {"rebuilt_from_alarm_log": True},
                    }
                )
            )
        except (contract.ContractError, TypeError, ValueError) as exc:
            _LOGGER.debug("salvage: alarm-log state %s cannot be rebuilt: %s", state_id, exc)
            continue
        seq += 1
        topic = contract.alert_topic(home_id)
        size = len(payload) + len(topic.encode()) + OUTBOX_ROW_OVERHEAD_BYTES
        found.outbox[seq] = (seq, PRIORITY_ALERT, topic, payload, size, state_id)
        requeued += 1
    found.requeued = requeued


def _log_order(row: tuple[Any, ...]) -> int:
    return int(row[1])


def restore(db: sqlite3.Connection, found: Salvage) -> None:
    """Write salvaged rows into the new file in one transaction, keeping their keys."""
    log_rows = sorted(found.log.values(), key=_log_order)
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany(
            "INSERT INTO alarm_log (alert_id, rowid, type, severity, raised_at, room, "
            "device_id, delivered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            log_rows,
        )
        db.executemany(
            "INSERT INTO alarm_state (id, alert_id, state, at, delivered_at) "
            "VALUES (?, ?, ?, ?, ?)",
            sorted(r for r in found.states.values() if r[1] in found.log),
        )
        db.executemany(
            "INSERT INTO outbox (seq, priority, topic, payload, size, state_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            sorted(found.outbox.values()),
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
