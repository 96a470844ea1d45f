"""Open the hub's store named by a spec: `sqlite:///path` or `postgresql://...`."""

from __future__ import annotations

from cloud_bridge.hub_store import HubStore, SqliteHubStore


def open_store(spec: str | None) -> HubStore:
    """`sqlite:///path` (default `hub.db`) or `postgresql://...` (see hub_store_pg)."""
    spec = spec or "sqlite:///hub.db"
    if spec.startswith("sqlite:///"):
        return SqliteHubStore(spec.removeprefix("sqlite:///"))
    if spec.startswith(("postgresql://", "postgres://")):
        # lazy: psycopg is loaded only by a hub that uses PostgreSQL
        from cloud_bridge.hub_store_pg import PostgresHubStore

        return PostgresHubStore(spec)
    raise ValueError(f"unknown store {spec!r}: use sqlite:///path or postgresql://...")
