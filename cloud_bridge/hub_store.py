"""The hub's store behind one small interface; SQLite is the single-machine default.

Alerts are deduplicated by `id`: the same state delivered twice (a retry after a lost
PUBACK, two receivers of a shared subscription) is recorded once. A state moves only
forward; a `raised` alert may be raised again at a higher severity (the gateway escalates a
growing silence from warning to critical), recorded as one more row of its history.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cloud_bridge.contract import loads_stored, sanitized

STATE_ORDER = {"raised": 0, "acknowledged": 1, "cancelled": 2, "resolved": 2}
SEVERITY_ORDER = {"info": 0, "warning": 1, "high": 2, "critical": 3}

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    home_id TEXT NOT NULL,
    type TEXT NOT NULL,
    severity TEXT NOT NULL,
    state TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    at TEXT NOT NULL,
    room TEXT,
    device_id TEXT,
    evidence TEXT NOT NULL,
    escalated INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '',
    handled_by TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts(state, severity);
CREATE TABLE IF NOT EXISTS alert_states (
    id TEXT NOT NULL,
    state TEXT NOT NULL,
    severity TEXT NOT NULL,
    at TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (id, state, severity)
);
CREATE TABLE IF NOT EXISTS aggregates (
    home_id TEXT NOT NULL,
    schema TEXT NOT NULL,
    period_start TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (home_id, schema, period_start)
);
CREATE TABLE IF NOT EXISTS statuses (
    home_id TEXT PRIMARY KEY,
    online INTEGER NOT NULL,
    body TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_chains (
    alert_id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    ok INTEGER NOT NULL,
    at REAL NOT NULL,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notify_log_alert ON notify_log(alert_id, seq);
"""

SQLITE_BUSY_S = 10.0  # how long a statement waits for another process's lock


def alerts_query(
    columns: str, open_only: bool, home_id: str | None, placeholder: str
) -> tuple[str, list[Any]]:
    """The alert listing's SQL and arguments; `placeholder` is the driver's (`?` or `%s`)."""
    sql = f"SELECT {columns} FROM alerts"
    where: list[str] = []
    args: list[Any] = []
    if open_only:
        where.append("state IN ('raised', 'acknowledged')")
    if home_id:
        where.append(f"home_id = {placeholder}")
        args.append(home_id)
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql + " ORDER BY raised_at DESC", args


def escalation_query(columns: str, iso_shape: str, placeholder: str) -> str:
    """`escalation_candidates`' SQL: contract times (`...Z`, one format, so their text sorts
    as time does) compared with the bound as text; any other text kept for the caller.
    `iso_shape` is the store's case-sensitive pattern of the contract's form."""
    return (
        f"SELECT {columns} FROM alerts WHERE state = 'raised' AND escalated = 0"
        f" AND (raised_at <= {placeholder} OR NOT ({iso_shape})) ORDER BY raised_at DESC"
    )


@dataclass(frozen=True, slots=True)
class Batch:
    """Messages stored in one transaction (one commit): alerts in the order they came,
    aggregates, and at most one status per home (the latest)."""

    alerts: Sequence[Mapping[str, Any]] = ()
    aggregates: Sequence[Mapping[str, Any]] = ()
    statuses: Sequence[Mapping[str, Any]] = ()
    received_at: float = 0.0
    size: int = field(default=0, compare=False)  # messages it stands for (before coalescing)


class HubStore(Protocol):
    """What the hub needs from a store (SQLite here; PostgreSQL across machines)."""

    def record_batch(self, batch: Batch) -> list[bool]:
        """Store the whole batch in one transaction, with the same dedupe rules as the
        single writes; per alert of `batch.alerts`, True if that state was new. If it
        raises, nothing of the batch is stored."""
        ...

    def record_alert(self, payload: Mapping[str, Any], received_at: float) -> bool:
        """Store one alert state; True if it was new (not a duplicate delivery)."""
        ...

    def record_aggregate(self, payload: Mapping[str, Any]) -> bool: ...

    def record_status(self, payload: Mapping[str, Any], received_at: float) -> None: ...

    def alerts(
        self, open_only: bool = False, home_id: str | None = None
    ) -> list[dict[str, Any]]: ...

    def alert(self, alert_id: str) -> dict[str, Any] | None: ...

    def mark(self, alert_id: str, **fields: Any) -> None:
        """Set hub-side fields: escalated, note, handled_by."""
        ...

    def aggregates(self, home_id: str, schema: str, limit: int = 60) -> list[dict[str, Any]]: ...

    def escalation_candidates(self, raised_by: str) -> list[dict[str, Any]]:
        """Alerts still `raised`, not escalated, raised at or before `raised_by` (ISO UTC
        text), and any whose `raised_at` is not in the contract's form (the caller reads
        every date): what the escalation check looks at, not every open alert."""
        ...

    def statuses(self) -> list[dict[str, Any]]: ...

    def state_count(self) -> int: ...

    def states(self) -> list[dict[str, Any]]:
        """Every alert state stored: {"id", "state", "severity", "at", "received_at"}."""
        ...

    # the escalation chain's state and the notification log (cloud_bridge.notify.notifier)
    def load_chains(self) -> list[Mapping[str, Any]]: ...

    def save_chain(self, record: Mapping[str, Any]) -> None: ...

    def log_notification(self, entry: Mapping[str, Any]) -> None: ...

    def notifications(self, alert_id: str | None = None) -> list[dict[str, Any]]:
        """The notification log, oldest first (one alert's, or all)."""
        ...

    def close(self) -> None: ...


def connect_sqlite(path: Path | str) -> sqlite3.Connection:
    """A connection to the hub's SQLite file in WAL mode, safe when several hub processes
    open a new file at the same moment.

    Switching a file to WAL takes a lock that SQLite does not wait for (no busy handler):
    the second of two processes doing it together gets "database is locked" at once. So the
    switch is tried again for up to `SQLITE_BUSY_S`; every other statement waits that long
    through the busy timeout.
    """
    db = sqlite3.connect(
        str(path), timeout=SQLITE_BUSY_S, check_same_thread=False, isolation_level=None
    )
    deadline = time.monotonic() + SQLITE_BUSY_S
    delay = 0.01
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return db
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class SqliteHubStore:
    """HubStore on one SQLite file (WAL); safe to call from several threads."""

    def __init__(self, path: Path | str) -> None:
        self._lock = threading.Lock()
        self._db = connect_sqlite(path)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SQLITE_SCHEMA)

    def record_batch(self, batch: Batch) -> list[bool]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                new = [self._write_alert(p, batch.received_at) for p in batch.alerts]
                self._db.executemany(
                    INSERT_AGGREGATE, [_aggregate_row(p) for p in batch.aggregates]
                )
                self._db.executemany(
                    UPSERT_STATUS, [_status_row(p, batch.received_at) for p in batch.statuses]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return new

    def record_alert(self, payload: Mapping[str, Any], received_at: float) -> bool:
        return self.record_batch(Batch(alerts=[payload], received_at=received_at, size=1))[0]

    def _write_alert(self, payload: Mapping[str, Any], received_at: float) -> bool:
        """Inside a transaction: log the state once, insert the alert or move it forward."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO alert_states(id, state, severity, at, received_at)"
            " VALUES (?,?,?,?,?)",
            (payload["id"], payload["state"], payload["severity"], payload["at"], received_at),
        )
        new = cur.rowcount == 1
        row = self._db.execute(
            "SELECT state, severity FROM alerts WHERE id = ?", (payload["id"],)
        ).fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO alerts(id, home_id, type, severity, state, raised_at, at,"
                " room, device_id, evidence) VALUES (?,?,?,?,?,?,?,?,?,?)",
                _alert_row(payload),
            )
        elif _moves_forward(payload, row):
            self._db.execute(
                "UPDATE alerts SET state=?, at=?, severity=?, evidence=? WHERE id=?",
                (
                    payload["state"],
                    payload["at"],
                    payload["severity"],
                    json.dumps(payload["evidence"]),
                    payload["id"],
                ),
            )
        return new

    def record_aggregate(self, payload: Mapping[str, Any]) -> bool:
        with self._lock:
            return self._db.execute(INSERT_AGGREGATE, _aggregate_row(payload)).rowcount == 1

    def record_status(self, payload: Mapping[str, Any], received_at: float) -> None:
        with self._lock:
            self._db.execute(UPSERT_STATUS, _status_row(payload, received_at))

    def alerts(self, open_only: bool = False, home_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = alerts_query("*", open_only, home_id, "?")
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_alert_dict(r) for r in rows]

    def escalation_candidates(self, raised_by: str) -> list[dict[str, Any]]:
        sql = escalation_query("*", "raised_at GLOB '[0-9][0-9][0-9][0-9]-*Z'", "?")
        with self._lock:
            rows = self._db.execute(sql, (raised_by,)).fetchall()
        return [_alert_dict(r) for r in rows]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        return _alert_dict(row) if row else None

    def mark(self, alert_id: str, **fields: Any) -> None:
        allowed = {"escalated", "note", "handled_by"}
        sets = [f"{k} = ?" for k in fields if k in allowed]
        if not sets:
            return
        with self._lock:
            self._db.execute(
                f"UPDATE alerts SET {', '.join(sets)} WHERE id = ?",
                [v for k, v in fields.items() if k in allowed] + [alert_id],
            )

    def aggregates(self, home_id: str, schema: str, limit: int = 60) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM aggregates WHERE home_id=? AND schema=?"
                " ORDER BY period_start DESC LIMIT ?",
                (home_id, schema, limit),
            ).fetchall()
        bodies = (loads_stored(r["body"]) for r in reversed(rows))
        return [b for b in bodies if isinstance(b, dict)]

    def statuses(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM statuses ORDER BY home_id").fetchall()
        out = []
        for r in rows:
            body = loads_stored(r["body"])
            if isinstance(body, dict):
                out.append({**body, "home_id": r["home_id"], "received_at": r["received_at"]})
        return out

    def state_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM alert_states").fetchone()[0])

    def states(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, state, severity, at, received_at FROM alert_states"
            ).fetchall()
        return [{k: sanitized(v) for k, v in dict(r).items()} for r in rows]

    def load_chains(self) -> list[Mapping[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM notify_chains").fetchall()
        records = (loads_stored(r["record"]) for r in rows)
        return [r for r in records if isinstance(r, dict)]

    def save_chain(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO notify_chains(alert_id, record, updated_at) VALUES (?,?,?)"
                " ON CONFLICT(alert_id) DO UPDATE SET record=excluded.record,"
                " updated_at=excluded.updated_at",
                (record["chain"]["alert_id"], json.dumps(record), time.time()),
            )

    def log_notification(self, entry: Mapping[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO notify_log(alert_id, channel, ok, at, entry) VALUES (?,?,?,?,?)",
                (
                    entry["alert_id"],
                    entry["channel"],
                    int(bool(entry["ok"])),
                    entry["at"],
                    json.dumps(entry),
                ),
            )

    def notifications(self, alert_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT entry FROM notify_log", []
        if alert_id is not None:
            sql, args = sql + " WHERE alert_id = ?", [alert_id]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        entries = (loads_stored(r["entry"]) for r in rows)
        return [e for e in entries if isinstance(e, dict)]

    def close(self) -> None:
        with self._lock:
            self._db.close()


INSERT_AGGREGATE = (
    "INSERT OR IGNORE INTO aggregates(home_id, schema, period_start, body) VALUES (?,?,?,?)"
)
UPSERT_STATUS = (
    "INSERT INTO statuses(home_id, online, body, received_at) VALUES (?,?,?,?)"
    " ON CONFLICT(home_id) DO UPDATE SET online=excluded.online, body=excluded.body,"
    " received_at=excluded.received_at"
)


def _aggregate_row(p: Mapping[str, Any]) -> tuple[Any, ...]:
    return (p["home_id"], p["schema"], p["period_start"], json.dumps(p))


def _status_row(p: Mapping[str, Any], received_at: float) -> tuple[Any, ...]:
    return (p["home_id"], int(bool(p["online"])), json.dumps(p), received_at)


def _moves_forward(payload: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    """A later state, or the same state raised to a higher severity (an escalation)."""
    new, old = STATE_ORDER[payload["state"]], STATE_ORDER[row["state"]]
    if new != old:
        return new > old
    return SEVERITY_ORDER[payload["severity"]] > SEVERITY_ORDER[row["severity"]]


def _alert_row(p: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        p["id"],
        p["home_id"],
        p["type"],
        p["severity"],
        p["state"],
        p["raised_at"],
        p["at"],
        p.get("room"),
        p.get("device_id"),
        json.dumps(p.get("evidence", {})),
    )


def _alert_dict(row: sqlite3.Row) -> dict[str, Any]:
    """A stored alert as a dict; whatever a row holds (written before the contract checked
    everything), it reads back as values every page can show."""
    out = {k: sanitized(v) for k, v in dict(row).items() if k != "evidence"}
    evidence = loads_stored(row["evidence"]) if isinstance(row["evidence"], str) else None
    out["evidence"] = evidence if isinstance(evidence, dict) else {}
    out["escalated"] = bool(out["escalated"])
    return out

