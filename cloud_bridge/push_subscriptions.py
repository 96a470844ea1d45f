"""Staff phones' web push subscriptions, kept in the hub's store (SQLite or PostgreSQL).

A staff member signed in to the console presses "Recevoir les alertes sur ce téléphone";
the browser's `PushSubscription` (endpoint, P-256 key, auth secret) is posted to the console
(`cloud_bridge.console_pwa`) and kept here, in the table `push_subscriptions`, keyed by the
endpoint, with the staff member's name, the time and the VAPID public key it was made for
(a subscription only accepts pushes signed by that key). The web push channel sends to the
subscriptions made for its own key (`Notifier`'s `push`) and deletes those the push
service calls gone (404/410).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cloud_bridge.console_sessions import _Db
from cloud_bridge.notify.webpush import Subscription

ENDPOINT_MAX = 1024  # characters: real endpoints are a few hundred
PER_STAFF_MAX = 10  # phones and browsers per staff member (the oldest goes first)
TOTAL_MAX = 2000
P256_POINT_BYTES = 65  # an uncompressed P-256 point
AUTH_BYTES = 16
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS push_subscriptions (endpoint TEXT PRIMARY KEY,"
    " p256dh TEXT NOT NULL, auth TEXT NOT NULL, vapid_key TEXT NOT NULL, staff TEXT NOT NULL,"
    " created_at DOUBLE PRECISION NOT NULL)",
)


@dataclass(frozen=True, slots=True)
class Device:
    """What the console shows of a staff member's subscription (never its keys)."""

    endpoint: str
    service: str  # the push service's host
    created_at: float


def _raw(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_subscription(data: Any) -> Subscription:
    """A browser's `PushSubscription.toJSON()`, checked (ValueError says what is wrong)."""
    if not isinstance(data, Mapping):
        raise ValueError("a subscription is a JSON object")
    sub = Subscription.from_json(data)
    if len(sub.endpoint) > ENDPOINT_MAX:
        raise ValueError(f"the endpoint is longer than {ENDPOINT_MAX} characters")
    try:
        point, auth = _raw(sub.p256dh), _raw(sub.auth)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("keys.p256dh and keys.auth must be base64url") from exc
    if len(point) != P256_POINT_BYTES or point[0] != 4 or len(auth) != AUTH_BYTES:
        raise ValueError("keys.p256dh must be a P-256 point and keys.auth 16 bytes")
    return sub


class PushSubscriptions:
    """The `push_subscriptions` table on one connection of the hub's store."""

    def __init__(self, db: _Db) -> None:
        self._db = db
        db.create(SCHEMA)

    def put(self, sub: Subscription, vapid_key: str, staff: str, now: float) -> None:
        """Keep `sub` for `staff` (the same endpoint again replaces it: keys change)."""
        self._db.rows(
            "INSERT INTO push_subscriptions (endpoint, p256dh, auth, vapid_key, staff, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (endpoint) DO UPDATE SET"
            " p256dh = excluded.p256dh, auth = excluded.auth, vapid_key = excluded.vapid_key,"
            " staff = excluded.staff, created_at = excluded.created_at",
            (sub.endpoint, sub.p256dh, sub.auth, vapid_key, staff, now),
        )
        for sql, args in (  # bounded: the newest are kept
            (
                "DELETE FROM push_subscriptions WHERE staff = ? AND endpoint NOT IN (SELECT"
                " endpoint FROM push_subscriptions WHERE staff = ? ORDER BY created_at DESC"
                " LIMIT ?)",
                (staff, staff, PER_STAFF_MAX),
            ),
            (
                "DELETE FROM push_subscriptions WHERE endpoint NOT IN (SELECT endpoint FROM"
                " push_subscriptions ORDER BY created_at DESC LIMIT ?)",
                (TOTAL_MAX,),
            ),
        ):
            self._db.rows(sql, args)

    def remove(self, endpoint: str, staff: str | None = None) -> bool:
        """Forget one endpoint (a phone unsubscribed; with `staff`, only if it is theirs);
        False if it was not kept."""
        sql, args = "DELETE FROM push_subscriptions WHERE endpoint = ?", [endpoint]
        if staff is not None:
            sql, args = sql + " AND staff = ?", [endpoint, staff]
        return bool(self._db.rows(sql + " RETURNING endpoint", args))

    def forget(self, endpoints: Iterable[str]) -> None:
        """Forget the endpoints a push service called gone."""
        for endpoint in endpoints:
            self.remove(endpoint)

    def for_key(self, vapid_key: str) -> list[Subscription]:
        """The subscriptions made with this VAPID public key, oldest first."""
        rows = self._db.rows(
            "SELECT endpoint, p256dh, auth FROM push_subscriptions WHERE vapid_key = ?"
            " ORDER BY created_at, endpoint",
            (vapid_key,),
        )
        return [Subscription(str(e), str(p), str(a)) for e, p, a in rows]

    def devices(self, staff: str) -> list[Device]:
        """`staff`'s subscriptions, newest first."""
        rows = self._db.rows(
            "SELECT endpoint, created_at FROM push_subscriptions WHERE staff = ?"
            " ORDER BY created_at DESC",
            (staff,),
        )
        return [Device(str(e), urlsplit(str(e)).hostname or "", float(t)) for e, t in rows]

    def close(self) -> None:
        self._db.close()


def open_push_subscriptions(spec: str | None) -> PushSubscriptions:
    """The subscriptions' side of the store `spec`, as `veille hub --store` names it."""
    from cloud_bridge.console_sessions import open_on_store

    return open_on_store(spec, PushSubscriptions, "the push subscriptions")
