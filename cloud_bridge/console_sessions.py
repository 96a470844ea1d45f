"""The care console's secret key and open sessions, kept in the hub's store.

Several `veille hub` processes (on one machine or several) serve the console on one store, so
what makes a session valid lives there too, in two tables of their own beside the hub's:

- `console_secrets`: the random key that signs session cookies and CSRF tokens, made once by
  whichever process comes first (`INSERT ... ON CONFLICT DO NOTHING`, then read back), so
  all processes sign alike. It is never derived from the staff passwords.
- `console_actions`: what staff sent to a home and the home has not confirmed yet, so that
  every process shows it at once (`console_inbox.LocalActions`).
- `console_sessions`: one row per open session (its id, the version of the password it was
  opened with, its expiry). Logout deletes the row, so a copy of the cookie is refused by
  every process; a new password has a new version, so the old sessions no longer match.

`open_console_state(spec)` takes the same store spec as `veille hub --store` and opens its
own connection (SQLite: the same file; PostgreSQL: the same database).
"""

from __future__ import annotations

import hmac
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from cloud_bridge.console_inbox import LocalAction
from cloud_bridge.errors import VeilleError
from cloud_bridge.hub_store import connect_sqlite
from cloud_bridge.pages.auth import SESSION_KEY_BYTES, Session

KEY_NAME = "session_key"
DEFAULT_STORE = "sqlite:///hub.db"  # as `cloud_bridge.stores.open_store`
MAX_SESSIONS = 5000  # open staff sessions kept (those expiring first are ended first)
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS console_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS console_sessions (sid TEXT PRIMARY KEY, credential TEXT NOT NULL,"
    " expires DOUBLE PRECISION NOT NULL)",
    # the actions sent to homes that they have not confirmed yet (`console_inbox`)
    "CREATE TABLE IF NOT EXISTS console_actions (alert_id TEXT PRIMARY KEY, action TEXT NOT NULL,"
    " by_name TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
)


T = TypeVar("T")


class _Db(Protocol):
    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (with `?` placeholders) and return its rows."""
        ...

    def create(self, statements: Sequence[str]) -> None:
        """Create the tables (once, when several processes start together)."""
        ...

    def close(self) -> None: ...


class _Sqlite:
    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._db = connect_sqlite(path)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return [tuple(r) for r in self._db.execute(sql, tuple(args)).fetchall()]

    def create(self, statements: Sequence[str]) -> None:
        for statement in statements:
            self.rows(statement)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Postgres:
    """One connection, reopened once when the server dropped it (a restart, a failover)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._lock = threading.Lock()
        self._conn: Any = None

    def _connect(self) -> Any:
        import psycopg

        from cloud_bridge.hub_store_pg import CONNECT_TIMEOUT_S

        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        sql = sql.replace("?", "%s")
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                try:
                    with self._conn.cursor() as cur:
                        cur.execute(sql, tuple(args))
                        return [tuple(r) for r in cur.fetchall()] if cur.description else []
                except psycopg.OperationalError:
                    self._conn = None
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    def create(self, statements: Sequence[str]) -> None:
        from cloud_bridge.hub_store_pg import SCHEMA_LOCK_KEY

        # the hub store's advisory lock: receivers starting together create tables once
        self.rows("SELECT pg_advisory_lock(?)", (SCHEMA_LOCK_KEY,))
        try:
            for statement in statements:
                self.rows(statement)
        finally:
            self.rows("SELECT pg_advisory_unlock(?)", (SCHEMA_LOCK_KEY,))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()


class ConsoleState:
    """The console's key and a `SessionStore` on the hub's store."""

    def __init__(self, db: _Db) -> None:
        self._db = db
        db.create(SCHEMA)

    def key(self) -> bytes:
        """The console's key: made at random by the first process, then shared."""
        self._db.rows(
            "INSERT INTO console_secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (KEY_NAME, os.urandom(SESSION_KEY_BYTES).hex()),
        )
        ((value,),) = self._db.rows("SELECT value FROM console_secrets WHERE name = ?", (KEY_NAME,))
        return bytes.fromhex(str(value))

    def start(self, session: Session, credential: str, now: float) -> None:
        self._db.rows("DELETE FROM console_sessions WHERE expires <= ?", (now,))
        self._db.rows(
            "INSERT INTO console_sessions (sid, credential, expires) VALUES (?, ?, ?)",
            (session.sid, credential, session.expires),
        )
        self._db.rows(  # bounded: the sessions expiring last are kept
            "DELETE FROM console_sessions WHERE sid NOT IN (SELECT sid FROM console_sessions"
            " ORDER BY expires DESC LIMIT ?)",
            (MAX_SESSIONS,),
        )

    def alive(self, session: Session, credential: str, now: float) -> bool:
        rows = self._db.rows(
            "SELECT credential, expires FROM console_sessions WHERE sid = ?", (session.sid,)
        )
        if not rows or not credential:
            return False
        stored, expires = rows[0]
        return now < float(expires) and hmac.compare_digest(str(stored), credential)

    def end(self, sid: str) -> None:
        self._db.rows("DELETE FROM console_sessions WHERE sid = ?", (sid,))

    # `console_inbox.LocalActions`
    def record_action(self, action: LocalAction) -> None:
        self._db.rows(
            "INSERT INTO console_actions (alert_id, action, by_name, at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (alert_id) DO UPDATE SET action = excluded.action,"
            " by_name = excluded.by_name, at = excluded.at",
            (action.alert_id, action.action, action.by, action.at),
        )

    def actions(self, since: float) -> dict[str, LocalAction]:
        rows = self._db.rows(
            "SELECT alert_id, action, by_name, at FROM console_actions WHERE at > ?", (since,)
        )
        return {str(r[0]): LocalAction(str(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows}

    def forget_actions(self, alert_ids: list[str], before: float) -> None:
        for alert_id in alert_ids:
            self._db.rows("DELETE FROM console_actions WHERE alert_id = ?", (alert_id,))
        self._db.rows("DELETE FROM console_actions WHERE at <= ?", (before,))

    def close(self) -> None:
        self._db.close()


def open_on_store(spec: str | None, make: Callable[[_Db], T], what: str) -> T:
    """`make(db)` on the store `spec` (`sqlite:///path`, default `hub.db`, or
    `postgresql://...`), as `veille hub --store` names it; VeilleError naming `what` if it
    cannot open. The tables kept beside the hub's own (sessions, links, directory,
    outcomes) each open their connection this way."""
    spec = spec or DEFAULT_STORE
    if spec.startswith("sqlite:///"):
        try:
            return make(_Sqlite(spec.removeprefix("sqlite:///")))
        except (OSError, sqlite3.Error) as exc:
            raise VeilleError(f"{what} cannot use {spec}: {exc}") from exc
    if spec.startswith(("postgresql://", "postgres://")):
        import psycopg

        try:
            return make(_Postgres(spec))
        except psycopg.Error as exc:
            raise VeilleError(f"{what} cannot use PostgreSQL: {exc}") from exc
    raise VeilleError(f"unknown store {spec!r}: use sqlite:///path or postgresql://...")


def open_console_state(spec: str | None) -> ConsoleState:
    """The console's key and sessions on the store `spec`; VeilleError if it cannot open."""
    return open_on_store(spec, ConsoleState, "the console's sessions")
