"""The hub store on PostgreSQL, for hubs whose receivers run on several machines.

The same `HubStore` interface and the same dedupe rules as `SqliteHubStore`: an alert state
is recorded once per (id, state, severity) whatever the broker redelivers, and an alert only
moves forward: a later state (`STATE_ORDER`) or the same state more severe (an escalation).
Both rules are enforced inside PostgreSQL (`INSERT ... ON CONFLICT`), so receivers in
different processes or machines writing the same alert at the same moment cannot break them.

Threads: each thread that calls the store gets its own connection (paho's network thread,
the console's event loop); a connection lost with the server (a restart, a failover) is
reopened and the call retried. Times stay ISO text in byte order (`COLLATE "C"`), as in
SQLite, so both stores sort and return the same values.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from cloud_bridge.contract import sanitized
from cloud_bridge.hub_store import (
    SEVERITY_ORDER,
    STATE_ORDER,
    Batch,
    alerts_query,
    escalation_query,
)

_LOGGER = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10
RETRIES = 3  # a lost connection or a deadlock is retried this many times
RETRY_DELAY_S = 0.2
SCHEMA_LOCK_KEY = 0x5EE11E  # advisory lock: receivers starting together create tables once
MARKABLE = ("escalated", "note", "handled_by")

PG_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS alerts (
        id TEXT COLLATE "C" PRIMARY KEY,
        home_id TEXT COLLATE "C" NOT NULL,
        type TEXT NOT NULL,
        severity TEXT NOT NULL,
        state TEXT NOT NULL,
        raised_at TEXT COLLATE "C" NOT NULL,
        at TEXT COLLATE "C" NOT NULL,
        room TEXT,
        device_id TEXT,
        evidence JSONB NOT NULL,
        escalated INTEGER NOT NULL DEFAULT 0,
        note TEXT NOT NULL DEFAULT '',
        handled_by TEXT NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX IF NOT EXISTS alerts_open ON alerts(state, severity)",
    "CREATE INDEX IF NOT EXISTS alerts_home ON alerts(home_id, raised_at)",
    """CREATE TABLE IF NOT EXISTS alert_states (
        id TEXT COLLATE "C" NOT NULL,
        state TEXT NOT NULL,
        severity TEXT NOT NULL,
        at TEXT COLLATE "C" NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (id, state, severity)
    )""",
    """CREATE TABLE IF NOT EXISTS aggregates (
        home_id TEXT COLLATE "C" NOT NULL,
        schema TEXT COLLATE "C" NOT NULL,
        period_start TEXT COLLATE "C" NOT NULL,
        body JSONB NOT NULL,
        PRIMARY KEY (home_id, schema, period_start)
    )""",
    """CREATE TABLE IF NOT EXISTS statuses (
        home_id TEXT COLLATE "C" PRIMARY KEY,
        online INTEGER NOT NULL,
        body JSONB NOT NULL,
        received_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS notify_chains (
        alert_id TEXT COLLATE "C" PRIMARY KEY,
        record JSONB NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS notify_log (
        seq BIGSERIAL PRIMARY KEY,
        alert_id TEXT COLLATE "C" NOT NULL,
        channel TEXT NOT NULL,
        ok INTEGER NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        entry JSONB NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS notify_log_alert ON notify_log(alert_id, seq)",
)

ALERT_COLUMNS = (
    "id, home_id, type, severity, state, raised_at, at, room, device_id, evidence,"
    " escalated, note, handled_by"
)


def _rank_sql(column: str, order: Mapping[str, int] = STATE_ORDER) -> str:
    """`CASE column WHEN 'raised' THEN 0 ... END`, made from STATE_ORDER (or another order)."""
    whens = " ".join(f"WHEN '{value}' THEN {rank}" for value, rank in order.items())
    return f"(CASE {column} {whens} END)"


def _moves_forward_sql() -> str:
    """A later state, or the same state raised to a higher severity (an escalation)."""
    new, old = _rank_sql("EXCLUDED.state"), _rank_sql("alerts.state")
    new_sev = _rank_sql("EXCLUDED.severity", SEVERITY_ORDER)
    old_sev = _rank_sql("alerts.severity", SEVERITY_ORDER)
    return f"({new} > {old} OR ({new} = {old} AND {new_sev} > {old_sev}))"


# One statement, so one round trip and one implicit transaction: log the state once per
# (id, state, severity), and insert the alert or move it forward, never backward. Both parts
# see the same snapshot; the result says whether this state was new.
RECORD_ALERT = (
    "WITH logged AS (INSERT INTO alert_states (id, state, severity, at, received_at)"
    " VALUES (%(id)s, %(state)s, %(severity)s, %(at)s, %(received_at)s)"
    " ON CONFLICT DO NOTHING"
    " RETURNING 1),"
    " upserted AS (INSERT INTO alerts (id, home_id, type, severity, state, raised_at, at,"
    " room, device_id, evidence) VALUES (%(id)s, %(home_id)s, %(type)s, %(severity)s,"
    " %(state)s, %(raised_at)s, %(at)s, %(room)s, %(device_id)s, %(evidence)s)"
    " ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, at = EXCLUDED.at,"
    " severity = EXCLUDED.severity, evidence = EXCLUDED.evidence"
    f" WHERE {_moves_forward_sql()}"
    " RETURNING 1)"
    " SELECT (SELECT count(*) FROM logged) AS new, (SELECT count(*) FROM upserted) AS moved"
)

INSERT_AGGREGATE = (
    "INSERT INTO aggregates (home_id, schema, period_start, body)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
UPSERT_STATUS = (
    "INSERT INTO statuses (home_id, online, body, received_at)"
    " VALUES (%s, %s, %s, %s) ON CONFLICT (home_id) DO UPDATE SET"
    " online = EXCLUDED.online, body = EXCLUDED.body,"
    " received_at = EXCLUDED.received_at"
)
# A whole batch in ONE statement, so one round trip and one implicit transaction (the
# answer comes once it is committed): each part present is a data-modifying CTE, its rows
# one JSON array. Alerts do what RECORD_ALERT does, for every row at once, and say per row
# (in the batch's order) whether its state was new; this needs the batch's alert ids all
# different (the usual batch: alerts of many homes). A batch holding one id twice (two
# states of one alert, a redelivery) has its alerts written row by row instead, since each
# row must see the one before it. Rows go in key order, so receivers writing the same rows
# at once take the row locks in the same order (no deadlock). An aggregate twice in a batch
# is one row, as one at a time; a batch holds one status per home (`Batch`).
ALERTS_CTE = (
    "input AS (SELECT r->>'id' AS id, r->>'home_id' AS home_id, r->>'type' AS type,"
    " r->>'severity' AS severity, r->>'state' AS state, r->>'raised_at' AS raised_at,"
    " r->>'at' AS at, r->>'room' AS room, r->>'device_id' AS device_id,"
    " r->'evidence' AS evidence, ord"
    " FROM jsonb_array_elements(%(alerts)s::jsonb) WITH ORDINALITY AS t(r, ord)),"
    " logged AS (INSERT INTO alert_states (id, state, severity, at, received_at)"
    " SELECT id, state, severity, at, %(received_at)s FROM input ORDER BY id"
    " ON CONFLICT DO NOTHING RETURNING id),"
    " upserted AS (INSERT INTO alerts (id, home_id, type, severity, state, raised_at, at,"
    " room, device_id, evidence) SELECT id, home_id, type, severity, state, raised_at, at,"
    " room, device_id, evidence FROM input ORDER BY id"
    " ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, at = EXCLUDED.at,"
    " severity = EXCLUDED.severity, evidence = EXCLUDED.evidence"
    f" WHERE {_moves_forward_sql()})"
)
AGGREGATES_CTE = (
    "aggregated AS (INSERT INTO aggregates (home_id, schema, period_start, body)"
    " SELECT r->>'home_id', r->>'schema', r->>'period_start', r"
    " FROM jsonb_array_elements(%(aggregates)s::jsonb) AS r"
    " ORDER BY r->>'home_id' COLLATE \"C\", r->>'schema' COLLATE \"C\","
    " r->>'period_start' COLLATE \"C\""
    " ON CONFLICT DO NOTHING)"
)
STATUSES_CTE = (
    "statused AS (INSERT INTO statuses (home_id, online, body, received_at)"
    " SELECT r->>'home_id', (r->>'online')::int, r->'body', %(received_at)s"
    " FROM jsonb_array_elements(%(statuses)s::jsonb) AS r"
    " ORDER BY r->>'home_id' COLLATE \"C\""
    " ON CONFLICT (home_id) DO UPDATE SET online = EXCLUDED.online, body = EXCLUDED.body,"
    " received_at = EXCLUDED.received_at)"
)


@functools.cache
def batch_statement(alerts: bool, aggregates: bool, statuses: bool) -> str:
    """The one statement writing a batch with these parts (see ALERTS_CTE)."""
    parts = [
        cte
        for cte, present in ((ALERTS_CTE, alerts), (AGGREGATES_CTE, aggregates),
                             (STATUSES_CTE, statuses))
        if present
    ]  # fmt: skip
    answer = (
        "SELECT (logged.id IS NOT NULL) AS new FROM input LEFT JOIN logged USING (id)"
        " ORDER BY input.ord"
        if alerts
        else "SELECT true AS new WHERE false"
    )
    return f"WITH {', '.join(parts)} {answer}"


T = TypeVar("T")


class PostgresHubStore:
    """HubStore on PostgreSQL; safe from several threads and several processes."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[psycopg.Connection[dict[str, Any]]] = []
        self._closed = False
        self._run(self._create_schema)

    # -- connections ---------------------------------------------------------------------------

    def _conn(self) -> psycopg.Connection[dict[str, Any]]:
        conn: psycopg.Connection[dict[str, Any]] | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        if self._closed:
            raise RuntimeError("the hub store is closed")
        conn = psycopg.connect(
            self._dsn, autocommit=True, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_S
        )
        self._local.conn = conn
        with self._lock:
            self._conns.append(conn)
        return conn

    def _drop(self, conn: psycopg.Connection[dict[str, Any]]) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._conns:
                self._conns.remove(conn)
        try:
            conn.close()
        except psycopg.Error:
            _LOGGER.debug("hub store: closing a broken connection failed", exc_info=True)

    def _run(self, fn: Callable[[psycopg.Connection[dict[str, Any]]], T]) -> T:
        """Call `fn(connection)`; on a lost connection or a deadlock, reconnect and retry."""
        for attempt in range(RETRIES + 1):
            conn = self._conn()
            try:
                return fn(conn)
            except psycopg.OperationalError as exc:
                if attempt == RETRIES or self._closed:
                    raise
                _LOGGER.warning(
                    "hub store: %s (attempt %d of %d); retrying",
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                    attempt + 1,
                    RETRIES + 1,
                )
                if conn.broken or conn.closed:
                    self._drop(conn)
                time.sleep(RETRY_DELAY_S * (attempt + 1))
        raise AssertionError("unreachable")

    @staticmethod
    def _create_schema(conn: psycopg.Connection[dict[str, Any]]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            for statement in PG_SCHEMA:
                conn.execute(statement)

    # -- writes --------------------------------------------------------------------------------

    def record_batch(self, batch: Batch) -> list[bool]:
        """The whole batch in ONE statement (`batch_statement`): one round trip, one plan,
        one commit, however large the batch. The dedupe rules are the single writes'
        (`RECORD_ALERT`). A batch that holds one alert id twice has its alerts written row
        by row (pipelined, in order, as if its messages had come apart) and the rest after
        them, in one transaction."""
        for payload in batch.alerts:
            _check_state(payload)
        row_by_row = len({p["id"] for p in batch.alerts}) < len(batch.alerts)
        args: dict[str, Any] = {"received_at": batch.received_at}
        if batch.alerts and not row_by_row:
            args["alerts"] = _json([_alert_row(p) for p in batch.alerts])
        if batch.aggregates:
            args["aggregates"] = _json(list(batch.aggregates))
        latest = {p["home_id"]: p for p in batch.statuses}  # one per home: the last
        if latest:
            args["statuses"] = _json(
                [{"home_id": h, "online": int(bool(p["online"])), "body": p}
                 for h, p in latest.items()]
            )  # fmt: skip
        sql = batch_statement("alerts" in args, "aggregates" in args, "statuses" in args)
        one_by_one = [_alert_args(p, batch.received_at) for p in batch.alerts] if row_by_row else []
        rest = len(args) > 1

        def write(conn: psycopg.Connection[dict[str, Any]]) -> list[bool]:
            if not one_by_one:
                if not rest:
                    return []
                return [bool(row["new"]) for row in conn.execute(sql, args).fetchall()]
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(RECORD_ALERT, one_by_one, returning=True)
                new = [_new(cur.fetchone()) for _result in cur.results()]
                if rest:
                    cur.execute(sql, args)
            return new

        return self._run(write)

    def record_alert(self, payload: Mapping[str, Any], received_at: float) -> bool:
        """Store one alert state; True if it was new (not a duplicate delivery)."""
        row = _alert_args(payload, received_at)
        return self._run(lambda conn: _new(conn.execute(RECORD_ALERT, row).fetchone()))

    def record_aggregate(self, payload: Mapping[str, Any]) -> bool:
        args = _aggregate_args(payload)
        return self._run(lambda conn: conn.execute(INSERT_AGGREGATE, args).rowcount == 1)

    def record_status(self, payload: Mapping[str, Any], received_at: float) -> None:
        args = _status_args(payload, received_at)
        self._run(lambda conn: conn.execute(UPSERT_STATUS, args))

    def mark(self, alert_id: str, **fields: Any) -> None:
        """Set hub-side fields: escalated, note, handled_by (others are ignored)."""
        values = {k: v for k, v in fields.items() if k in MARKABLE}
        if not values:
            return
        if "escalated" in values:
            values["escalated"] = int(bool(values["escalated"]))
        sets = ", ".join(f"{k} = %({k})s" for k in values)
        args = {**values, "alert_id": alert_id}
        self._run(
            lambda conn: conn.execute(f"UPDATE alerts SET {sets} WHERE id = %(alert_id)s", args)
        )

    # -- reads ---------------------------------------------------------------------------------

    def alerts(self, open_only: bool = False, home_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = alerts_query(ALERT_COLUMNS, open_only, home_id, "%s")
        rows = self._run(lambda conn: conn.execute(sql, args).fetchall())
        return [_alert_dict(r) for r in rows]

    def escalation_candidates(self, raised_by: str) -> list[dict[str, Any]]:
        sql = escalation_query(ALERT_COLUMNS, "raised_at LIKE '____-%%Z'", "%s")
        rows = self._run(lambda conn: conn.execute(sql, (raised_by,)).fetchall())
        return [_alert_dict(r) for r in rows]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        row = self._run(
            lambda conn: conn.execute(
                f"SELECT {ALERT_COLUMNS} FROM alerts WHERE id = %s", (alert_id,)
            ).fetchone()
        )
        return _alert_dict(row) if row else None

    def aggregates(self, home_id: str, schema: str, limit: int = 60) -> list[dict[str, Any]]:
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT body FROM aggregates WHERE home_id = %s AND schema = %s"
                " ORDER BY period_start DESC LIMIT %s",
                (home_id, schema, limit),
            ).fetchall()
        )
        return [sanitized(dict(r["body"])) for r in reversed(rows)]

    def statuses(self) -> list[dict[str, Any]]:
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT body, received_at FROM statuses ORDER BY home_id"
            ).fetchall()
        )
        return [{**sanitized(dict(r["body"])), "received_at": r["received_at"]} for r in rows]

    def state_count(self) -> int:
        row = self._run(
            lambda conn: conn.execute("SELECT COUNT(*) AS n FROM alert_states").fetchone()
        )
        return int(row["n"]) if row else 0

    def states(self) -> list[dict[str, Any]]:
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT id, state, severity, at, received_at FROM alert_states"
            ).fetchall()
        )
        return [dict(r) for r in rows]

    # -- the escalation chain's state and the notification log ------------------------------

    def load_chains(self) -> list[Mapping[str, Any]]:
        rows = self._run(lambda conn: conn.execute("SELECT record FROM notify_chains").fetchall())
        return [dict(r["record"]) for r in rows if isinstance(r["record"], dict)]

    def save_chain(self, record: Mapping[str, Any]) -> None:
        args = (record["chain"]["alert_id"], Jsonb(dict(record)), time.time())
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO notify_chains (alert_id, record, updated_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (alert_id) DO UPDATE SET record = EXCLUDED.record,"
                " updated_at = EXCLUDED.updated_at",
                args,
            )
        )

    def log_notification(self, entry: Mapping[str, Any]) -> None:
        args = (
            entry["alert_id"],
            entry["channel"],
            int(bool(entry["ok"])),
            entry["at"],
            Jsonb(dict(entry)),
        )
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO notify_log (alert_id, channel, ok, at, entry)"
                " VALUES (%s, %s, %s, %s, %s)",
                args,
            )
        )

    def notifications(self, alert_id: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT entry FROM notify_log", cast(tuple[str, ...], ())
        if alert_id is not None:
            sql, args = sql + " WHERE alert_id = %s", (alert_id,)
        rows = self._run(lambda conn: conn.execute(sql + " ORDER BY seq", args).fetchall())
        return [dict(r["entry"]) for r in rows]

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        self._closed = True
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except psycopg.Error:
                _LOGGER.debug("hub store: close failed", exc_info=True)


def _check_state(payload: Mapping[str, Any]) -> None:
    if payload["state"] not in STATE_ORDER:
        raise ValueError(f"unknown alert state {payload['state']!r}")


def _json(value: Any) -> str:
    """JSON text for a `::jsonb` parameter (one C-encoded string for a whole batch)."""
    return json.dumps(value, separators=(",", ":"))


def _alert_row(payload: Mapping[str, Any]) -> dict[str, Any]:
    """An alert's columns, as `ALERTS_CTE` reads them (and `_alert_args` builds on)."""
    return {
        "id": payload["id"],
        "home_id": payload["home_id"],
        "type": payload["type"],
        "severity": payload["severity"],
        "state": payload["state"],
        "raised_at": payload["raised_at"],
        "at": payload["at"],
        "room": payload.get("room"),
        "device_id": payload.get("device_id"),
        "evidence": payload.get("evidence", {}),
    }


def _alert_args(payload: Mapping[str, Any], received_at: float) -> dict[str, Any]:
    """An alert's parameters for `RECORD_ALERT`."""
    _check_state(payload)
    row = _alert_row(payload)
    return {**row, "evidence": Jsonb(row["evidence"]), "received_at": received_at}


def _new(result: Mapping[str, Any] | None) -> bool:
    """RECORD_ALERT's answer: was this alert state new?"""
    return bool(result and result["new"] == 1)


def _aggregate_args(payload: Mapping[str, Any]) -> tuple[Any, ...]:
    return (payload["home_id"], payload["schema"], payload["period_start"], Jsonb(payload))


def _status_args(payload: Mapping[str, Any], received_at: float) -> tuple[Any, ...]:
    return (payload["home_id"], int(bool(payload["online"])), Jsonb(payload), received_at)


def _alert_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: sanitized(v) for k, v in row.items()}
    if not isinstance(out.get("evidence"), dict):
        out["evidence"] = {}
    out["escalated"] = bool(out["escalated"])
    return out
