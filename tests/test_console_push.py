"""Staff phones subscribe in the console and the hub's chain pushes to them, on SQLite and
PostgreSQL: a subscription made from real P-256 keys is posted through the real console app
(session and CSRF checked), kept in the store, pushed to by the notifier's web push channel,
decrypted by the loopback push service (http_ece) as the phone would read it, and deleted
from the store once the push service calls it gone (410)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cloud_bridge.ack_links import LinkSigner, link_maker
from cloud_bridge.console import create_console_app
from cloud_bridge.console_pwa import Push
from cloud_bridge.console_sessions import open_console_state
from cloud_bridge.notify.config import NotifyConfig, Step, WebpushChannel
from cloud_bridge.notify.notifier import FileChainStore, Notifier
from cloud_bridge.notify.webpush import application_server_key
from cloud_bridge.push_subscriptions import open_push_subscriptions, parse_subscription
from cloud_bridge.stores import open_store
from tests.test_notify_webpush import Phone, PushService, channel, service  # noqa: F401

STAFF, PASSWORD = "claire", "veille-soins-1"
PUBLIC_URL = "https://hub.example.org"


class Hub:
    """What the console needs of a receiver here: its store (no ack is sent)."""

    def __init__(self, spec: str) -> None:
        self.store = open_store(spec)

    def send_ack(self, alert_id: str, action: str, by: str = "", note: str = "") -> bool:
        raise AssertionError("no acknowledgement in these tests")

    def health(self) -> dict[str, Any]:
        return {"ok": True}


def alert(n: int) -> dict[str, Any]:
    return {
        "id": f"0190a000-0000-7000-8000-{n:012d}",
        "home_id": "h-0042",
        "type": "fall",
        "severity": "critical",
        "state": "raised",
        "raised_at": "2026-12-01T06:45:00Z",
        "room": "salon",
    }


def test_a_phone_subscribed_in_the_console_gets_the_chains_push_until_gone(
    spec: str,
    tmp_path: Path,
    service: PushService,  # noqa: F811 - the fixture
    channel: WebpushChannel,  # noqa: F811 - the fixture
) -> None:
    key = application_server_key(channel)
    subscriptions = open_push_subscriptions(spec)
    hub = Hub(spec)
    state = open_console_state(spec)
    app = create_console_app(
        hub, staff_password=PASSWORD, state=state, push=Push(subscriptions, key)
    )
    base = f"http://127.0.0.1:{service.port}/push/"
    service.phones = {"claire-phone": Phone(), "old-tablet": Phone(), "spare": Phone()}
    subs = {name: p.subscription(base + name).info() for name, p in service.phones.items()}
    try:
        with TestClient(app, base_url="http://testserver") as browser:
            assert browser.post("/api/push/subscribe", json=subs["claire-phone"]).status_code == 401
            login = {"name": STAFF, "password": PASSWORD}
            assert browser.post("/login", data=login, follow_redirects=False).status_code == 303
            page = browser.get("/notifications")
            assert "Recevoir les alertes sur ce téléphone" in page.text
            match = re.search(r'data-csrf="([^"]+)"', page.text)
            assert match is not None
            csrf = {"X-CSRF-Token": match[1]}
            assert browser.get("/api/push/key").json() == {"key": key}
            # no token, or a cross-site page: refused before anything is kept
            assert browser.post("/api/push/subscribe", json=subs["claire-phone"]).status_code == 403
            cross = {**csrf, "Origin": "https://evil.example.net"}
            refused = browser.post("/api/push/subscribe", json=subs["claire-phone"], headers=cross)
            assert refused.status_code == 403
            bad = {**subs["claire-phone"], "keys": {"p256dh": "AAAA", "auth": "AAAA"}}
            assert browser.post("/api/push/subscribe", json=bad, headers=csrf).status_code == 422
            assert subscriptions.for_key(key) == []
            for name in service.phones:
                done = browser.post("/api/push/subscribe", json=subs[name], headers=csrf)
                assert done.status_code == 201, done.text
            spare = {"endpoint": subs["spare"]["endpoint"]}
            gone = browser.post("/api/push/unsubscribe", json=spare, headers=csrf)
            assert gone.json() == {"removed": True}
            # her list of devices; someone else cannot remove one of them, she can
            listed = browser.get("/notifications").text
            assert listed.count('data-endpoint="http://127.0.0.1:') == 2
            tablet = {"endpoint": subs["old-tablet"]["endpoint"], "csrf": match[1]}
            with TestClient(app, base_url="http://testserver") as other:
                login_bob = {"name": "bob", "password": PASSWORD}
                assert other.post("/login", data=login_bob, follow_redirects=False).is_redirect
                token = re.search(r'name="csrf" value="([^"]+)"', other.get("/").text)
                assert token is not None
                removal = other.post("/notifications/retirer", data={**tablet, "csrf": token[1]})
                assert removal.status_code == 200  # back to his own (empty) list
            assert len(subscriptions.for_key(key)) == 2
            assert browser.post("/notifications/retirer", data=tablet).status_code == 200
    finally:
        state.close()
        hub.store.close()
    # the hub's chain, on another connection to the same store (as `veille hub` opens it)
    kept = open_push_subscriptions(spec)
    claire = parse_subscription(subs["claire-phone"])
    assert kept.for_key(key) == [claire]
    assert [d.service for d in kept.devices(STAFF)] == ["127.0.0.1"]
    assert kept.for_key("another-vapid-key") == []  # made for this hub's key only
    config = NotifyConfig(
        channels={channel.name: channel},
        steps=(Step(0, 0.0, (channel.name,)),),
        public_url=PUBLIC_URL,
    )
    signer = LinkSigner(b"k" * 32, PUBLIC_URL)
    now = time.time()
    notifier = Notifier(
        config,
        FileChainStore(tmp_path / "chains.json"),
        ack_link=link_maker(signer, lambda: now),
        push=kept,
    )
    try:
        notifier.alert(alert(1), now)
        (entry,) = asyncio.run(notifier.tick(now))
        assert entry["ok"], entry
        assert service.refused == []
        (got,) = service.received  # the unsubscribed tablet got nothing
        assert got["to"] == "claire-phone"
        message = got["message"]
        assert message["title"] == "Chute détectée : logement h-0042"
        assert message["alert_id"] == alert(1)["id"]
        url = message["url"]
        assert url.startswith(f"{PUBLIC_URL}/lien/")
        claim = signer.check(url.rsplit("/", 1)[1], now)
        assert (claim.alert_id, claim.recipient) == (alert(1)["id"], channel.name)
        # taken (console or link): her phone's notification is replaced, nothing sent twice
        notifier.acknowledged(alert(1)["id"], now + 1)
        assert asyncio.run(notifier.tick(now + 1)) == []
        assert asyncio.run(notifier.tick(now + 2)) == []
        assert [r["message"] for r in service.received[1:]] == [
            {
                "title": "Prise en charge : Chute détectée : logement h-0042",
                "body": "Quelqu'un a pris l'alerte en charge.",
                "alert_id": alert(1)["id"],
                "home_id": "h-0042",
                "severity": "critical",
                "closed": "acknowledged",
                "url": "",
            }
        ]
        # her browser dropped the subscription: the next alert's push is refused, 410
        service.gone.add("claire-phone")
        notifier.alert(alert(2), now + 3)
        (entry,) = asyncio.run(notifier.tick(now + 3))
        assert not entry["ok"]
        assert "1 gone" in entry["error"]
        assert kept.for_key(key) == []
        assert len(service.received) == 2
    finally:
        kept.close()
        subscriptions.close()


def test_without_a_web_push_channel_the_page_says_so_and_takes_no_subscription(
    tmp_path: Path,
) -> None:
    hub = Hub(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        with TestClient(create_console_app(hub, staff_password=PASSWORD)) as browser:
            login = {"name": STAFF, "password": PASSWORD}
            assert browser.post("/login", data=login, follow_redirects=False).status_code == 303
            page = browser.get("/notifications")
            assert 'data-state="not-set-up"' in page.text
            assert "pas de canal web push" in page.text
            assert 'id="push-on"' not in page.text
            assert browser.get("/api/push/key").status_code == 404
            assert browser.get("/manifest.webmanifest").status_code == 200  # still installable
    finally:
        hub.store.close()
