"""The console as an installable web app, in headless Chromium against the real
`veille hub --notify` (a web push channel, a loopback push service that decrypts with
http_ece): Chromium reads the manifest without an error and finds the console installable,
the service worker registers at the root scope and becomes active, shows a push as its
notification with the acknowledgement link, and answers "console injoignable" offline
(never a stale alert). Headless Chromium reaches no real push service, so the subscription
is one a phone would make (real P-256 keys), posted to the real console with the session
and CSRF token: the alert published on the hub broker reaches it, its link opens the
acknowledgement page, and a 410 from the push service deletes it from the store."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from cloud_bridge.contract import alert_topic, encode
from cloud_bridge.push_subscriptions import open_push_subscriptions
from tests.browser.shots import shoot
from tests.browser.test_ack_link import DESKTOP
from tests.browser.test_pages import PHONE, browser  # noqa: F401 - the fixture
from tests.gateway_proc import STAFF_PASSWORD, HubProc
from tests.support import Mosquitto, free_port, publish
from tests.test_notify_hub import alert, wait
from tests.test_notify_webpush import (  # noqa: F401 - the fixture
    Phone,
    PushService,
    service,
    write_vapid_key,
)


@pytest.fixture
def hub(tmp_path: Path, hub_broker: Mosquitto) -> Iterator[HubProc]:
    """`veille hub --notify` whose one step pushes to the staff phones at once."""
    write_vapid_key(tmp_path / "vapid.pem")
    http_port = free_port()
    notify = tmp_path / "notify.toml"
    notify.write_text(f"""\
[[channel]]
name = "telephones"
kind = "webpush"
vapid_private_key_file = "vapid.pem"
subject = "mailto:admin@hub.example.org"

[[escalation]]
after_s = 0
channels = ["telephones"]

[hub]
public_url = "http://127.0.0.1:{http_port}"
""")
    proc = HubProc(
        tmp_path / "hub",
        hub_broker.url,
        f"sqlite:///{tmp_path / 'hub.db'}",
        http_port=http_port,
        extra_args=("--notify", str(notify)),
    )
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/notifications")
    page.fill("#name", "alice")
    page.fill("#password", STAFF_PASSWORD)
    page.click("#login-button")
    expect(page).to_have_url(f"{url}/notifications")


def test_the_console_installs_shows_pushes_stays_honest_offline_and_its_phones_get_alerts(
    browser: Browser,  # noqa: F811 - the fixture
    hub: HubProc,
    hub_broker: Mosquitto,
    service: PushService,  # noqa: F811 - the fixture
) -> None:
    url = hub.url
    context = browser.new_context(viewport=PHONE, locale="fr-FR", service_workers="allow")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, url)
    # the worker, at the root scope, active; its script served as JavaScript
    ready = page.evaluate(
        "navigator.serviceWorker.ready.then(r => ({scope: r.scope, state: r.active.state,"
        " script: r.active.scriptURL}))"
    )
    assert ready == {"scope": f"{url}/", "state": "activated", "script": f"{url}/sw.js"}
    sw = page.request.get(f"{url}/sw.js")
    assert sw.headers["content-type"].startswith("text/javascript")
    assert sw.headers["service-worker-allowed"] == "/"
    # Chromium's own reading of the manifest: no error, and the console is installable
    cdp = context.new_cdp_session(page)
    manifest = cdp.send("Page.getAppManifest")
    assert manifest["url"] == f"{url}/manifest.webmanifest"
    assert manifest["errors"] == []
    installability = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    # a test context is incognito; nothing else stands in the way
    assert [e["errorId"] for e in installability if e["errorId"] != "in-incognito"] == []
    data = json.loads(manifest["data"])
    assert (data["name"], data["start_url"], data["display"]) == (
        "Veille — console des soignants",
        "/",
        "standalone",
    )
    assert data["lang"] == "fr"
    assert data["theme_color"] == "#174a8b"
    served = page.request.get(f"{url}/manifest.webmanifest")
    assert served.headers["content-type"] == "application/manifest+json"
    for icon in data["icons"]:
        got = page.request.get(f"{url}{icon['src']}")
        assert got.headers["content-type"] == "image/png"
        assert "{}x{}".format(*png_size(got.body())) == icon["sizes"]
    # the subscription page: this phone is not subscribed yet, the button offers it
    expect(page.locator("#push")).to_have_attribute("data-state", "off")
    expect(page.locator("#push-on")).to_have_text("Recevoir les alertes sur ce téléphone")
    shoot(page, "console-notifications-phone")
    page.set_viewport_size(DESKTOP)
    shoot(page, "console-notifications-desktop")
    page.set_viewport_size(PHONE)
    page.click("#push-on")  # the browser asks; this one says no: the page says how to allow
    expect(page.locator("#push")).to_have_attribute("data-state", "denied")
    expect(page.locator("#push-status")).to_contain_text("Les notifications sont refusées")
    # a browser without push, a console over plain http: the page says so, no button
    for script, state, words in (
        ("delete window.PushManager", "unsupported", "ajoutez d'abord la console"),
        (
            "Object.defineProperty(window, 'isSecureContext', {value: false})",
            "insecure",
            "https://",
        ),
    ):
        other = context.new_page()
        other.add_init_script(script)
        other.goto(f"{url}/notifications")
        expect(other.locator("#push")).to_have_attribute("data-state", state)
        expect(other.locator("#push-status")).to_contain_text(words)
        expect(other.locator("#push-on")).to_be_hidden()
        other.close()

    # a push as the hub sends it, delivered to the worker: its notification, its link
    context.grant_permissions(["notifications"], origin=url)
    registrations: list[dict[str, Any]] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda e: registrations.extend(
            r for r in e["registrations"] if r["scopeURL"] == f"{url}/" and not r["isDeleted"]
        ),
    )
    cdp.send("ServiceWorker.enable")
    for _ in range(50):  # the sync API hands events over while it waits
        if registrations:
            break
        page.wait_for_timeout(100)
    link = f"{url}/lien/abc.def"
    pushed = {
        "title": "Chute détectée : logement h-0042",
        "body": "Chute détectée (salon).",
        "alert_id": "a-1",
        "severity": "critical",
        "url": link,
    }
    registration = registrations[0]["registrationId"]

    def deliver(message: dict[str, Any]) -> list[dict[str, Any]]:
        """Push `message` to the worker; the notifications shown once its title is."""
        cdp.send(
            "ServiceWorker.deliverPushMessage",
            {"origin": url, "registrationId": registration, "data": json.dumps(message)},
        )
        shown: list[dict[str, Any]] = page.evaluate(
            """async (title) => { const r = await navigator.serviceWorker.ready;
            for (let i = 0; i < 50; i++) { const n = await r.getNotifications();
              if (n.some(x => x.title === title)) return n.map(x => ({title: x.title,
                body: x.body, tag: x.tag, sticky: x.requireInteraction, url: x.data.url}));
              await new Promise(ok => setTimeout(ok, 100)); }
            return []; }""",
            message["title"],
        )
        return shown

    assert deliver(pushed) == [
        {
            "title": pushed["title"],
            "body": pushed["body"],
            "tag": "a-1",
            "sticky": True,
            "url": link,
        }
    ]
    # a reminder replaces the alert's notification; a link that is not http(s) is not opened
    reminder = {**pushed, "title": "[Rappel] " + pushed["title"], "url": "javascript:alert(1)"}
    assert [(n["title"], n["url"]) for n in deliver(reminder)] == [(reminder["title"], f"{url}/")]
    # taken by someone: the notification is replaced and no longer waits for a touch
    closed = {**pushed, "title": "Prise en charge : " + pushed["title"], "closed": "acknowledged"}
    assert [(n["title"], n["sticky"]) for n in deliver(closed)] == [(closed["title"], False)]

    # offline: the console's own "unreachable" page, no alert shown as current
    context.set_offline(True)
    page.goto(f"{url}/")
    expect(page.locator("#offline")).to_contain_text("Console injoignable")
    expect(page.locator(".card[data-alert], #inbox")).to_have_count(0)
    shoot(page, "console-offline-phone")
    context.set_offline(False)
    page.goto(f"{url}/")
    expect(page.locator("#inbox")).to_have_count(1)
    assert not [e for e in errors if "Content Security Policy" in e], errors

    # a phone subscribed through the console receives the alert published on the hub broker
    phone = Phone()
    service.phones = {"alice": phone}
    sub = phone.subscription(f"http://127.0.0.1:{service.port}/push/alice").info()
    page.goto(f"{url}/notifications")  # posted as its script does: session, CSRF token
    csrf = page.get_attribute("#push", "data-csrf")
    assert csrf
    posted = page.request.post(
        f"{url}/api/push/subscribe",
        data=json.dumps(sub),
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
    )
    assert posted.status == 201, posted.text()
    key = page.request.get(f"{url}/api/push/key").json()["key"]
    page.reload()
    expect(page.locator("#push-devices")).to_contain_text("127.0.0.1")
    expect(page.locator("#push")).to_have_attribute("data-state", "off")  # not this browser
    shoot(page, "console-notifications-device-phone")
    publish(hub_broker.port, alert_topic("h-0042"), encode(alert(51)))
    wait(lambda: service.received, 5)
    assert service.refused == []
    message = service.received[0]["message"]
    assert message["title"] == "Chute détectée : logement h-0042"
    assert message["url"].startswith(f"{hub.url}/lien/")
    # the tap opens the link (through the worker): the acknowledgement page, its one button
    page.goto(message["url"])
    expect(page.locator("#ack-link")).to_have_attribute("data-status", "ask")
    page.click("#ack-button")
    expect(page.locator("#ack-done")).to_be_visible()
    context.close()
    # taken through the link: the phone's notification is replaced
    wait(lambda: len(service.received) == 2, 5)
    assert service.received[1]["message"]["closed"] == "acknowledged"
    # the phone dropped the subscription: the next push is refused (410), it is forgotten
    kept = open_push_subscriptions(hub.store)
    try:
        assert [s.endpoint for s in kept.for_key(key)] == [sub["endpoint"]]
        service.gone.add("alice")
        publish(hub_broker.port, alert_topic("h-0042"), encode(alert(52)))
        wait(lambda: kept.for_key(key) == [], 5)
    finally:
        kept.close()
    assert len(service.received) == 2
