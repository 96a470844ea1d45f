"""The three faces in headless Chromium, against a real gateway, a real hub and real brokers.

The gateway is the production `Gateway` object on its own event loop (a thread), talking to
real Mosquitto brokers; the hub is the real `veille hub` command with its care console.
Zigbee2MQTT is stood in for by publishing its payloads on the local broker. Screenshots of
each page, at a phone's viewport, go to $VEILLE_SHOTS when it is set (tests/browser/shots.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from cloud_bridge.broker import parse_broker_url
from edge.home import load_home_toml
from edge.runtime.gateway import Gateway, GatewaySettings
from edge.storage.registry import Registry
from tests.browser.shots import shoot
from tests.gateway_proc import write_home
from tests.support import Collector, Mosquitto, free_port, publish

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"width": 390, "height": 844}
FAMILY_PIN = "4321"
INSTALLER_CODE = "poseur-2024"
STAFF, STAFF_PASSWORD = "claire", "veille-soins-1"
HOME_ID = "h-browser"
VEILLE = str(Path(sys.executable).with_name("veille"))


class GatewayThread:
    """The real gateway on its own asyncio loop, so the sync Playwright API can drive pages."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.gateway: Gateway | None = None
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="gateway", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()/stop()
            self.error = exc

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.gateway = Gateway(self.settings)
        await self.gateway.run(self._stop)

    def start(self, timeout_s: float = 20.0) -> str:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            gw = self.gateway
            if gw is not None and gw.url and gw.state.ready:
                return gw.url
            time.sleep(0.05)
        raise TimeoutError("the gateway did not get ready")

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        if self.error is not None:
            raise self.error


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def gateway(tmp_path: Path, local_broker: Mosquitto, hub_broker: Mosquitto) -> Iterator[str]:
    """A provisioned home's gateway; yields its status page URL."""
    profile = load_home_toml(write_home(tmp_path / "home.toml", HOME_ID))
    storage = tmp_path / "storage"
    registry = Registry(storage)
    registry.save_profile(profile)
    registry.set_secret("family_pin", FAMILY_PIN)
    registry.set_secret("installer", INSTALLER_CODE)
    registry.close()
    settings = GatewaySettings(
        home_id=HOME_ID,
        local=parse_broker_url(local_broker.url),
        hub=parse_broker_url(hub_broker.url),
        storage=storage,
        http=("127.0.0.1", free_port()),
        ble=False,
    )
    runner = GatewayThread(settings)
    url = runner.start()
    try:
        yield url
    finally:
        runner.stop()


@pytest.fixture
def console(tmp_path: Path, hub_broker: Mosquitto) -> Iterator[str]:
    """The real `veille hub` receiver with its care console; yields the console URL."""
    port = free_port()
    pw = tmp_path / "staff.txt"
    pw.write_text(f"{STAFF}:{STAFF_PASSWORD}\n")
    log = (tmp_path / "hub.log").open("wb")
    proc = subprocess.Popen(
        [
            VEILLE,
            "hub",
            "--broker",
            hub_broker.url,
            "--http",
            f"127.0.0.1:{port}",
            "--store",
            f"sqlite:///{tmp_path / 'hub.db'}",
            "--staff-password-file",
            str(pw),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (tmp_path / "hub.log").read_text()
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/health", timeout=1) as resp,  # noqa: S310 - http
            ):
                if resp.status == 200:
                    break
            assert time.monotonic() < deadline, "the care console did not start"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def phone(browser: Browser) -> Page:
    context = browser.new_context(viewport=PHONE, locale="fr-FR")
    return context.new_page()


def family_login(page: Page, url: str, pin: str) -> None:
    page.goto(f"{url}/")
    expect(page).to_have_url(f"{url}/login")
    page.fill("#pin", pin)
    page.click("#login-button")


def test_family_logs_in_with_the_pin_and_sees_all_is_well(
    browser: Browser, gateway: str, local_broker: Mosquitto
) -> None:
    page = phone(browser)
    family_login(page, gateway, FAMILY_PIN)
    expect(page).to_have_url(f"{gateway}/")
    expect(page.locator("#banner")).to_contain_text("Tout va bien")
    expect(page.locator("#hub-link")).to_be_visible()
    assert page.locator("svg.chart").count() >= 1
    shoot(page, "family-status")
    # the page updates itself: a movement in the kitchen shows as the last activity
    publish(local_broker.port, "zigbee2mqtt/kitchen_motion", json.dumps({"occupancy": True}))
    expect(page.locator("#last-activity")).to_contain_text("cuisine", timeout=20_000)
    shoot(page, "family-status-updated")
    page.context.close()


def test_wrong_pin_is_refused(browser: Browser, gateway: str) -> None:
    page = phone(browser)
    family_login(page, gateway, "0000")
    expect(page.locator("#login-error")).to_contain_text("Code incorrect")
    expect(page).to_have_url(f"{gateway}/login")
    page.goto(f"{gateway}/")
    expect(page).to_have_url(f"{gateway}/login")
    shoot(page, "family-wrong-pin")
    page.context.close()


def test_installer_walkthrough_ticks_green_on_a_real_zigbee_event(
    browser: Browser, gateway: str, local_broker: Mosquitto
) -> None:
    page = phone(browser)
    page.goto(f"{gateway}/installer/walkthrough")
    expect(page).to_have_url(f"{gateway}/login?next=/installer/walkthrough")
    page.fill("#pin", INSTALLER_CODE)
    page.click("#login-button")
    expect(page).to_have_url(f"{gateway}/installer/walkthrough")
    page.click("#walk-start")
    step = page.locator("#step-kitchen-pir .tick")
    expect(step).to_have_class("tick wait")
    expect(page.locator("#step-front-door .tick")).to_have_class("tick wait")
    publish(local_broker.port, "zigbee2mqtt/kitchen_motion", json.dumps({"occupancy": True}))
    expect(step).to_have_class("tick done", timeout=10_000)
    expect(step).to_contain_text("reçu")
    expect(page.locator("#step-front-door .tick")).to_have_class("tick wait")
    expect(page.locator("#walk-done")).to_have_text("1")
    shoot(page, "installer-walkthrough")
    # permit-join goes to Zigbee2MQTT on the real local broker
    requests = Collector(local_broker.port, "zigbee2mqtt/bridge/request/#")
    try:
        page.goto(f"{gateway}/installer/zigbee")
        page.click("#permit-join")
        topic, payload, _ = requests.get(10)
        assert topic == "zigbee2mqtt/bridge/request/permit_join"
        assert json.loads(payload) == {"value": True, "time": 254}
    finally:
        requests.close()
    page.goto(f"{gateway}/installer/report")
    expect(page.locator("#report-devices")).to_contain_text("kitchen-pir")
    shoot(page, "installer-report")
    page.context.close()


def test_staff_acknowledge_shows_taken_in_charge_on_the_family_page(
    browser: Browser, gateway: str, console: str, local_broker: Mosquitto
) -> None:
    family = phone(browser)
    family_login(family, gateway, FAMILY_PIN)
    expect(family.locator("#banner")).to_contain_text("Tout va bien")

    publish(local_broker.port, "zigbee2mqtt/sos_button_0", json.dumps({"action": "single"}))
    expect(family.locator("#banner")).to_contain_text("Appel à l'aide", timeout=20_000)
    shoot(family, "family-alert")

    staff = phone(browser)
    staff.goto(f"{console}/")
    staff.fill("#name", STAFF)
    staff.fill("#password", STAFF_PASSWORD)
    staff.click("#login-button")
    expect(staff).to_have_url(f"{console}/")
    alert = staff.locator("article[data-state]").filter(has_text="Appel à l'aide")
    expect(alert).to_have_count(1, timeout=20_000)
    expect(alert).to_contain_text(HOME_ID)
    shoot(staff, "console-inbox")
    alert.locator("button.ack").click()

    # the home gets the ack, the alert's state changes, the family page updates itself
    expect(family.locator("#banner")).to_contain_text("Pris en charge", timeout=30_000)
    expect(family.locator("#banner")).to_contain_text(STAFF)
    shoot(family, "family-taken-in-charge")
    expect(staff.locator("article[data-state=acknowledged]")).to_have_count(1, timeout=20_000)
    shoot(staff, "console-acknowledged")
    family.context.close()
    staff.context.close()


def test_pairing_counts_down_and_shows_devices_as_they_join(
    browser: Browser,
    gateway: str,
    local_broker: Mosquitto,
) -> None:
    """On the tablet: "Autoriser l'appairage" starts a countdown, and a device that joins
    Zigbee2MQTT appears in the list by itself, first waiting for its interview, then with
    its model once interviewed."""
    page = browser.new_context(viewport={"width": 820, "height": 1180}, locale="fr-FR").new_page()
    page.goto(f"{gateway}/installer/zigbee")
    page.fill("#pin", INSTALLER_CODE)
    page.click("#login-button")
    expect(page).to_have_url(f"{gateway}/installer/zigbee")
    expect(page.locator("#joined")).to_contain_text("Aucun nouvel appareil")
    page.click("#permit-join")
    left = page.locator("#pair-left")
    expect(left).to_contain_text("Appairage ouvert encore")
    first = int(re.findall(r"\d+", left.inner_text())[0])
    assert 240 <= first <= 254
    page.wait_for_timeout(2500)
    assert int(re.findall(r"\d+", left.inner_text())[0]) < first  # it counts down
    ieee = "0x00158d000bbb0042"
    event = {"type": "device_joined", "data": {"friendly_name": ieee, "ieee_address": ieee}}
    publish(local_broker.port, "zigbee2mqtt/bridge/event", json.dumps(event))
    expect(page.locator("#joined")).to_contain_text(ieee, timeout=15_000)
    expect(page.locator("#joined")).to_contain_text("interrogation en cours")
    bridge = [
        {
            "ieee_address": ieee,
            "friendly_name": ieee,
            "type": "EndDevice",
            "supported": True,
            "interview_completed": True,
            "definition": {
                "model": "RTCGQ11LM",
                "vendor": "Aqara",
                "exposes": [{"type": "binary", "name": "occupancy", "property": "occupancy"}],
            },
        }
    ]
    publish(local_broker.port, "zigbee2mqtt/bridge/devices", json.dumps(bridge), retain=True)
    expect(page.locator("#joined")).to_contain_text("Aqara RTCGQ11LM", timeout=15_000)
    expect(page.locator("#joined")).to_contain_text("interrogé")
    shoot(page, "installer-pairing")
    page.context.close()
