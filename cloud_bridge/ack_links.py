"""One-click acknowledgement links: signed, expiring, single use (DESIGN.md section 8).

Every notification carries `{public_url}/lien/{token}`. The token is
`base64url(json [alert_id, recipient, expires]) "." base64url(HMAC-SHA256(key, payload))`:
the key is random, made once and kept in the hub's store (table `console_secrets`, row
`ack_link_key`, beside the console's session key), so every `veille hub` process on that
store signs and checks alike, and a restart keeps the links sent before it valid. The
recipient is the channel (or the directory contact) the link was sent to, so the
acknowledgement says who took the alert. A token is refused once `expires` has passed, and
after its first use: the used tokens are kept (table `ack_links_used`) until they expire.

`LinkSigner` is pure (time is given); `LinkStore` is the store's side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cloud_bridge.console_sessions import _Db

KEY_NAME = "ack_link_key"
KEY_BYTES = 32
TOKEN_MAX = 600  # characters; anything longer is refused before decoding
PATH = "/lien"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS console_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ack_links_used (token TEXT PRIMARY KEY, alert_id TEXT NOT NULL,"
    " used_at DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL)",
)


class LinkRefused(ValueError):
    """A link that cannot acknowledge; `str()` says why in French, `reason` names it
    (`invalid`, `tampered`, `expired`) for the page's words in its language."""

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Claim:
    """What a valid token says."""

    alert_id: str
    recipient: str
    expires: float
    token_id: str  # the signature: what is recorded when the link is used


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """Makes and checks tokens with the hub's key (pure: `now` is given)."""

    def __init__(self, key: bytes, public_url: str = "", ttl_s: float = 24 * 3600.0) -> None:
        self._key = key
        self.public_url = public_url.rstrip("/")
        self.ttl_s = ttl_s

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, b"ack-link\0" + payload, hashlib.sha256).digest())

    def token(self, alert_id: str, recipient: str, now: float) -> str:
        expires = int(now + self.ttl_s)
        payload = json.dumps([alert_id, recipient, expires], separators=(",", ":")).encode()
        return f"{_b64(payload)}.{self._sign(payload)}"

    def url(self, alert_id: str, recipient: str, now: float) -> str:
        """The link to put in a notification."""
        return f"{self.public_url}{PATH}/{self.token(alert_id, recipient, now)}"

    def check(self, token: str, now: float) -> Claim:
        """The token's claim, or LinkRefused (tampered, malformed, expired)."""
        if len(token) > TOKEN_MAX or token.count(".") != 1:
            raise LinkRefused("Ce lien n'est pas valide.")
        body, signature = token.split(".")
        try:
            payload = _unb64(body)
        except (binascii.Error, ValueError) as exc:
            raise LinkRefused("Ce lien n'est pas valide.") from exc
        if not hmac.compare_digest(self._sign(payload), signature):
            raise LinkRefused(
                "Ce lien n'est pas valide (il a été modifié ou mal copié).", "tampered"
            )
        try:
            alert_id, recipient, expires = json.loads(payload)
        except (ValueError, TypeError) as exc:  # signed by us, so never in practice
            raise LinkRefused("Ce lien n'est pas valide.") from exc
        if now >= float(expires):
            raise LinkRefused(
                "Ce lien a expiré. Prenez l'alerte en charge depuis la console.", "expired"
            )
        return Claim(str(alert_id), str(recipient), float(expires), signature)


class LinkStore:
    """The link key and the used tokens, in the hub's store (SQLite or PostgreSQL)."""

    def __init__(self, db: _Db) -> None:
        self._db = db
        db.create(SCHEMA)

    def key(self) -> bytes:
        """Made at random by the first process, then shared by all on this store."""
        self._db.rows(
            "INSERT INTO console_secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (KEY_NAME, os.urandom(KEY_BYTES).hex()),
        )
        ((value,),) = self._db.rows("SELECT value FROM console_secrets WHERE name = ?", (KEY_NAME,))
        return bytes.fromhex(str(value))

    def use(self, claim: Claim, now: float) -> bool:
        """Record the token as used; False if it already was (atomic across processes)."""
        self._db.rows("DELETE FROM ack_links_used WHERE expires < ?", (now,))
        rows = self._db.rows(
            "INSERT INTO ack_links_used (token, alert_id, used_at, expires) VALUES (?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING RETURNING token",
            (claim.token_id, claim.alert_id, now, claim.expires),
        )
        return bool(rows)

    def used(self, claim: Claim) -> bool:
        return bool(
            self._db.rows("SELECT 1 FROM ack_links_used WHERE token = ?", (claim.token_id,))
        )

    def close(self) -> None:
        self._db.close()


def open_link_store(spec: str | None) -> LinkStore:
    """The links' side of the store `spec`, as `veille hub --store` names it."""
    from cloud_bridge.console_sessions import open_on_store

    return open_on_store(spec, LinkStore, "the acknowledgement links")


def link_maker(
    signer: LinkSigner, clock: Callable[[], float]
) -> Callable[[Mapping[str, Any], str], str]:
    """The notifier's `ack_link(alert, recipient)`."""

    def ack_link(alert: Mapping[str, Any], recipient: str) -> str:
        return signer.url(str(alert["id"]), recipient, clock())

    return ack_link
