"""The acknowledgement link in headless Chromium, as a phone opens it from the mail: the
real `veille hub --notify --directory` mails through aiosmtpd, the page shows the alert
and one button (nothing done yet), the tap acknowledges and shows the home's card; the
same link opened again is refused. Screenshots at phone and desktop widths go to
$VEILLE_SHOTS when it is set."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Browser, expect

from cloud_bridge.contract import alert_topic, encode
from tests.browser.shots import shoot
from tests.browser.test_pages import PHONE, browser  # noqa: F401 - the fixture
from tests.gateway_proc import HubProc
from tests.support import Mosquitto, publish
from tests.test_directory import hub  # noqa: F401 - the fixture
from tests.test_notify_hub import alert, wait
from tests.test_notify_links import LINK_RE
from tests.test_notify_mail import Inbox

DESKTOP = {"width": 1280, "height": 800}


def test_the_link_page_on_a_phone_acknowledges_by_its_one_button(
    browser: Browser,  # noqa: F811 - the fixture
    hub: tuple[HubProc, Inbox, list[Any]],  # noqa: F811 - the fixture
    hub_broker: Mosquitto,
) -> None:
    proc, inbox, _ = hub
    publish(hub_broker.port, alert_topic("h-0042"), encode(alert(41)))
    wait(lambda: inbox.mails, 5)
    match = LINK_RE.search(inbox.mails[0].get_body(("plain",)).get_content())
    assert match is not None
    link = match[1]
    for name, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        context = browser.new_context(viewport=viewport, locale="fr-FR")
        page = context.new_page()
        page.goto(link)
        expect(page.locator("#ack-link")).to_have_attribute("data-status", "ask")
        expect(page.locator("button")).to_have_count(1)
        expect(page.locator("h2")).to_contain_text("Chute détectée chez Mme Jeanne Martin")
        expect(page.locator("#ack-card")).to_have_count(0)
        shoot(page, f"ack-link-{name}")
        context.close()
    assert proc.hub_log()[0]["acknowledged_by"] is None  # two opens, nothing done
    context = browser.new_context(viewport=PHONE, locale="fr-FR")
    page = context.new_page()
    page.goto(link)
    page.click("#ack-button")
    expect(page.locator("#ack-done")).to_be_visible()
    expect(page.locator("#ack-card")).to_contain_text("12 rue des Lilas")
    expect(page.locator("#ack-card")).to_contain_text("Boîte à clés")
    expect(page.locator("#ack-card")).to_contain_text("Famille")
    expect(page.locator("#ack-card")).to_contain_text("Paul Martin")
    shoot(page, "ack-link-done-phone")
    # the page fits a phone: nothing wider than the screen
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    page.goto(link)
    expect(page.locator("#ack-refused")).to_contain_text("déjà servi")
    expect(page.locator("button")).to_have_count(0)
    context.close()
    assert proc.hub_log()[0]["acknowledged_by"] == "astreinte (lien)"
