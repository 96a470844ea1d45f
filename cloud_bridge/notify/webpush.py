"""The web push channel: the alert on staff phones, through their browsers' push services.

Each phone's browser subscribed once (a `PushSubscription`: endpoint URL plus its P-256 key
and auth secret); the hub encrypts the message for that browser (RFC 8291, aes128gcm) and
signs the request with its VAPID key (RFC 8292), so the push service carries what it cannot
read. `pywebpush` does both. The subscriptions come from the channel's `subscriptions_file`
and from the console (`cloud_bridge.push_subscriptions`, a `SubscriptionBook`); one the push
service calls gone (404/410) is reported and forgotten by the book. pywebpush is blocking:
sends run in a thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization

from cloud_bridge.notify import message
from cloud_bridge.notify.config import WebpushChannel
from cloud_bridge.notify.errors import ChannelError
from cloud_bridge.notify.message import Notice

_LOGGER = logging.getLogger(__name__)

PUSH_TIMEOUT_S = 10.0
# the push that replaces an alert's notification on the phones once it is taken or over
CLOSED_WORDS = {
    "acknowledged": ("Prise en charge", "Quelqu'un a pris l'alerte en charge."),
    "resolved": ("Close", "L'alerte est close."),
    "cancelled": ("Annulée", "Le logement a annulé l'alerte."),
}
GONE_STATUSES = frozenset({404, 410})


@dataclass(frozen=True, slots=True)
class Subscription:
    """One browser's push subscription (what `PushSubscription.toJSON()` gives)."""

    endpoint: str
    p256dh: str
    auth: str = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Subscription:
        keys = data.get("keys")
        endpoint = data.get("endpoint")
        if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("https", "http"):
            raise ValueError("a subscription needs an http(s) endpoint")
        if not isinstance(keys, dict) or not all(
            isinstance(keys.get(k), str) and keys[k] for k in ("p256dh", "auth")
        ):
            raise ValueError("a subscription needs keys.p256dh and keys.auth")
        return cls(endpoint, keys["p256dh"], keys["auth"])

    def info(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclass(frozen=True, slots=True)
class PushResult:
    delivered: int
    gone: tuple[str, ...]  # endpoints to forget


class SubscriptionBook(Protocol):
    """Where the console keeps the subscriptions staff made (`PushSubscriptions`)."""

    def for_key(self, vapid_key: str) -> list[Subscription]:
        """The subscriptions made with this VAPID public key (`application_server_key`)."""
        ...

    def forget(self, endpoints: Iterable[str]) -> None:
        """Delete these endpoints (the push service called them gone)."""
        ...


def load_subscriptions(path: Path) -> list[Subscription]:
    """A JSON list of subscriptions; a bad entry is logged and skipped."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: a JSON list of subscriptions is expected")
    subscriptions = []
    for index, entry in enumerate(data):
        try:
            subscriptions.append(Subscription.from_json(entry))
        except (ValueError, AttributeError) as exc:
            _LOGGER.warning("webpush: %s entry %d skipped: %s", path, index, exc)
    return subscriptions


def _vapid(channel: WebpushChannel) -> Any:
    from py_vapid import Vapid02

    key = channel.vapid_private_key
    if key.startswith("-----BEGIN"):
        return Vapid02.from_pem(key.encode("ascii"))
    return Vapid02.from_string(private_key=key)


def application_server_key(channel: WebpushChannel) -> str:
    """The VAPID public key as browsers take it (`applicationServerKey`, base64url)."""
    raw = _vapid(channel).public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def payload(notice: Notice) -> str:
    """What the service worker receives and shows."""
    return json.dumps(
        {
            "title": message.subject(notice),
            "body": message.short(notice),
            "alert_id": notice.alert_id,
            "home_id": notice.home_id,
            "severity": notice.severity,
            "url": notice.ack_url,
        },
        ensure_ascii=False,
    )


def closed_payload(notice: Notice, reason: str) -> str:
    """What the service worker shows in place of the alert's notification (same `alert_id`,
    so it replaces it, quietly) once the alert was acknowledged, resolved or cancelled."""
    state, body = CLOSED_WORDS.get(reason, ("Terminée", "Plus rien à faire pour cette alerte."))
    return json.dumps(
        {
            "title": f"{state} : {notice.what} : {notice.home_label}",
            "body": body,
            "alert_id": notice.alert_id,
            "home_id": notice.home_id,
            "severity": notice.severity,
            "closed": reason,
            "url": "",
        },
        ensure_ascii=False,
    )


def _send_one(channel: WebpushChannel, vapid: Any, sub: Subscription, data: str) -> int:
    """HTTP status of one push (0: no answer)."""
    from pywebpush import WebPushException, webpush

    origin = urlsplit(sub.endpoint)
    claims: dict[str, str | int] = {
        "sub": channel.subject,
        "aud": f"{origin.scheme}://{origin.netloc}",
    }
    try:
        response = webpush(
            sub.info(),
            data,
            vapid_private_key=vapid,
            vapid_claims=claims,
            ttl=channel.ttl_s,
            timeout=PUSH_TIMEOUT_S,
            headers={"Urgency": "high"},
        )
    except WebPushException as exc:
        status = exc.response.status_code if exc.response is not None else 0
        _LOGGER.warning(
            "webpush %s: %s refused the push (%s)",
            channel.name,
            origin.netloc,
            status or exc.message,
        )
        return status
    except OSError as exc:
        _LOGGER.warning("webpush %s: %s unreachable: %r", channel.name, origin.netloc, exc)
        return 0
    return int(getattr(response, "status_code", 0))


def send_sync(
    channel: WebpushChannel,
    notice: Notice,
    subscriptions: Sequence[Subscription],
    forget: Callable[[Sequence[str]], None] | None = None,
    data: str | None = None,
) -> PushResult:
    """Push `data` (default: the alert's `payload`) to each subscription; `forget(gone)`
    before the result (or the error)."""
    if not subscriptions:
        raise ChannelError(channel.name, "no phone has subscribed")
    vapid = _vapid(channel)
    data = payload(notice) if data is None else data
    delivered, gone = 0, []
    for sub in subscriptions:
        status = _send_one(channel, vapid, sub, data)
        if 200 <= status < 300:
            delivered += 1
        elif status in GONE_STATUSES:
            gone.append(sub.endpoint)
    if gone and forget is not None:
        forget(gone)
        _LOGGER.info("webpush %s: %d gone subscription(s) forgotten", channel.name, len(gone))
    if not delivered:
        raise ChannelError(
            channel.name,
            f"no push delivered ({len(subscriptions)} subscription(s), {len(gone)} gone)",
        )
    return PushResult(delivered, tuple(gone))


def channel_subscriptions(
    channel: WebpushChannel, book: SubscriptionBook | None = None
) -> list[Subscription]:
    """The channel's subscriptions_file's and the book's made for its key, once each."""
    path = channel.subscriptions_file
    subs = load_subscriptions(path) if path and path.exists() else []
    if book is not None:
        subs += book.for_key(application_server_key(channel))
    return list({s.endpoint: s for s in subs}.values())


async def send(
    channel: WebpushChannel,
    notice: Notice,
    subscriptions: Iterable[Subscription] | None = None,
    *,
    book: SubscriptionBook | None = None,
    data: str | None = None,
) -> PushResult:
    """Push `notice` (or `data`) to every subscription (default: `channel_subscriptions`);
    the gone ones are forgotten by `book`."""
    if subscriptions is None:
        subscriptions = await asyncio.to_thread(channel_subscriptions, channel, book)
    forget = book.forget if book is not None else None
    result = await asyncio.to_thread(send_sync, channel, notice, list(subscriptions), forget, data)
    _LOGGER.info(
        "webpush %s: alert %s pushed to %d phone(s)",
        channel.name,
        notice.alert_id,
        result.delivered,
    )
    return result
