"""A plain connection to the hub's store for the tables kept beside the hub's own.

The acknowledgement links (`ack_links`) and the home directory (`directory`) open their own
connection on the store `veille hub --store` names, as the console's sessions do
(`console_sessions`, whose SQLite and PostgreSQL connections this reuses).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from cloud_bridge.console_sessions import DEFAULT_STORE, _Db, _Postgres, _Sqlite
from cloud_bridge.errors import VeilleError

T = TypeVar("T")


def open_on_store(spec: str | None, make: Callable[[_Db], T], what: str) -> T:
    """`make(db)` on the store `spec` (`sqlite:///path`, default `hub.db`, or
    `postgresql://...`); VeilleError naming `what` if it cannot open."""
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
