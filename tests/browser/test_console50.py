"""The console for 50 homes in headless Chromium, on the real `veille hub --directory`: one
hub, one broker and one browser for the module; each home has one alert (no gateway answers,
so only the console itself can show an action's new state).

The inbox names the residents and reads in plain French (and English) at phone and desktop
widths, nothing wider than the screen; "Prendre en charge" is gone from the card the moment
the page comes back; a session that ends while a note is typed keeps the note through the
new sign-in. Screenshots go to $VEILLE_SHOTS when it is set (tests/browser/shots.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from playwright.sync_api import Browser, Page, expect

from cloud_bridge.contract import alert_topic, encode, iso_utc
from tests.browser.shots import shoot
from tests.browser.test_faces import CONTRAST_JS, VISIBLE_TEXT_JS, text_problems
from tests.browser.test_pages import browser  # noqa: F401 - the fixture
from tests.gateway_proc import STAFF_PASSWORD, HubProc
from tests.support import running_mosquitto

HOMES = 50
UNNAMED = {7, 23, 41}  # homes with no card in the directory: shown by their id
WOMEN = ("Jeanne", "Marie", "Simone", "Odette", "Yvette", "Colette", "Huguette")
MEN = ("Louis", "André", "Henri", "Marcel", "Robert", "Lucien")
LAST = ("Martin", "Petit", "Durand", "Lefèvre", "Moreau", "Girard", "Bonnet", "Fontaine")
# (type, severity, evidence) in turn, home after home
KINDS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("fall", "critical", {"peak_g": 3.4, "posture": "lying", "movement_resumed": False}),
    ("inactivity", "high", {"inactive_min": 212, "usual_max_min": 95, "context": "bedroom"}),
    ("low_battery", "warning", {"battery": 8}),
    ("sos", "critical", {"button": "single"}),
    ("night_exit", "high", {"door_at": "02:14", "out_min": 38}),
    ("sensor_offline", "warning", {"silent_min": 240, "usual_interval_min": 60}),
    ("bathroom_long", "high", {"stay_min": 75, "usual_max_min": 25}),
    ("no_morning_activity", "warning", {"usual_get_up": "07:30", "deadline": "10:00"}),
    ("temperature", "warning", {"temperature_c": 13.5, "threshold_c": 16}),
    ("water_leak", "high", {"wet": True}),
)


def home_id(n: int) -> str:
    return f"h-{n:04d}"


def resident(n: int) -> str:
    first = f"Mme {WOMEN[n % len(WOMEN)]}" if n % 3 else f"M. {MEN[n % len(MEN)]}"
    return f"{first} {LAST[n % len(LAST)]}"


def write_directory(path: Path) -> Path:
    lines = []
    for n in range(1, HOMES + 1):
        if n in UNNAMED:
            continue
        lines += [
            "[[home]]",
            f'home_id = "{home_id(n)}"',
            f'resident = "{resident(n)}"',
            f'address = "{n} rue des Lilas, 69003 Lyon"',
            'phone = "04 78 00 00 00"',
            "[[home.contact]]",
            f'name = "Paul {LAST[n % len(LAST)]}"',
            'relation = "family"',
            'phone = "06 12 34 56 78"',
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def alert(n: int, now: float) -> dict[str, Any]:
    kind, severity, evidence = KINDS[n % len(KINDS)]
    # from 3 minutes to a day and a half ago: today's and yesterday's dates both show
    at = now - (180 + (n * 1931) % (36 * 3600))
    return {
        "schema": "veille.alert/1",
        "id": f"0190c000-0000-7000-8000-{n:012d}",
        "home_id": home_id(n),
        "type": kind,
        "severity": severity,
        "state": "raised",
        "at": iso_utc(at),
        "raised_at": iso_utc(at),
        "room": ("bathroom", "bedroom", "kitchen", "Chambre de Jeanne")[n % 4],
        "device_id": None,
        "evidence": evidence,
    }


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProc]:
    tmp = tmp_path_factory.mktemp("console50")
    with running_mosquitto(tmp / "broker") as broker:
        proc = HubProc(
            tmp / "hub",
            broker.url,
            f"sqlite:///{tmp / 'hub.db'}",
            extra_args=("--directory", str(write_directory(tmp / "directory.toml"))),
        )
        proc.start()
        try:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            now = time.time()
            sent = [
                client.publish(alert_topic(home_id(n)), encode(alert(n, now)), qos=1)
                for n in range(1, HOMES + 1)
            ]
            for info in sent:
                info.wait_for_publish(10)
            client.disconnect()
            client.loop_stop()
            yield proc
        finally:
            proc.stop()


@pytest.fixture(scope="module")
def staff_state(browser: Browser, hub: HubProc) -> dict[str, Any]:  # noqa: F811 - the fixture
    """Alice signed in once; each test's pages open with her cookies."""
    context = browser.new_context(locale="fr-FR")
    page = context.new_page()
    page.goto(f"{hub.url}/")
    page.fill("#name", "alice")
    page.fill("#password", STAFF_PASSWORD)
    page.click("#login-button")
    expect(page.locator("#inbox")).to_be_visible()
    state: dict[str, Any] = context.storage_state()  # type: ignore[assignment]
    context.close()
    return state


def signed_in(
    browser: Browser,  # noqa: F811 - the fixture
    hub: HubProc,
    state: dict[str, Any],
    width: int,
) -> Page:
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        locale="fr-FR",
        storage_state=state,  # type: ignore[arg-type]
    )
    page = context.new_page()
    page.goto(f"{hub.url}/")
    expect(page.locator("#inbox")).to_be_visible()
    return page


def test_the_inbox_of_50_homes_reads_well_on_a_phone_and_a_desktop(
    browser: Browser,  # noqa: F811 - the fixture
    hub: HubProc,
    staff_state: dict[str, Any],
) -> None:
    """Names, order and links at both widths; on the phone, every page's words (French and
    English) and contrast; nothing wider than the screen."""
    problems: list[str] = []

    def check(page: Page, where: str, width: int, lang: str = "fr") -> None:
        if width == 390:
            text = page.evaluate(VISIBLE_TEXT_JS)
            problems.extend(f"{where} {lang}: {p}" for p in text_problems(text, lang))
            if lang == "fr":
                problems.extend(f"{where}: {p}" for p in page.evaluate(CONTRAST_JS))
        wide = page.evaluate("document.documentElement.scrollWidth")
        if wide > width:
            problems.append(f"{where}: the page is {wide} px wide at {width} px")

    for width in (390, 1366):
        page = signed_in(browser, hub, staff_state, width)
        cards = page.locator("#inbox article.alert")
        expect(cards).to_have_count(HOMES, timeout=20_000)
        expect(cards.first).to_contain_text("Chute détectée")  # the most severe, the oldest
        named = page.locator(f"#alert-0190c000-0000-7000-8000-{1:012d}")
        expect(named).to_contain_text(resident(1))
        expect(page.locator(f"#alert-0190c000-0000-7000-8000-{7:012d}")).to_contain_text(
            "logement h-0007"
        )
        expect(page.locator("#console-links a[href='/annuaire']")).to_be_visible()
        check(page, "/", width)
        shoot(page, f"console50-inbox-fr-{width}")
        alert_url = str(named.locator("h3 a").get_attribute("href"))
        page.goto(f"{hub.url}{alert_url}")
        expect(page.locator("#directory-card")).to_contain_text("rue des Lilas")
        check(page, alert_url, width)
        shoot(page, f"console50-alert-fr-{width}")
        if width == 390:
            page.goto(f"{hub.url}/?home=h-0002&type=fall")
            expect(page.locator("#filter-none")).to_contain_text("Aucune alerte ne correspond")
            check(page, "/?home=h-0002&type=fall", width)
            shoot(page, f"console50-filter-none-fr-{width}")
            for path in ("/?lang=en", f"{alert_url}?lang=en"):
                page.goto(f"{hub.url}{path}")
                check(page, path, width, "en")
        page.context.close()
    assert problems == [], "\n".join(problems)


def test_taking_in_charge_leaves_no_stale_button(
    browser: Browser,  # noqa: F811 - the fixture
    hub: HubProc,
    staff_state: dict[str, Any],
) -> None:
    page = signed_in(browser, hub, staff_state, 1366)
    card = page.locator(f"#alert-0190c000-0000-7000-8000-{4:012d}")  # an SOS
    card.locator("button.ack").click()
    page.wait_for_load_state()
    # at once, without waiting for a refresh (and no gateway will ever confirm it)
    state = page.evaluate(
        "id => { const c = document.getElementById(id);"
        " return [c.dataset.state, c.querySelectorAll('button.ack').length]; }",
        f"alert-0190c000-0000-7000-8000-{4:012d}",
    )
    assert state == ["acknowledged", 0]
    expect(card).to_contain_text("pris en charge (alice)")
    # what the next partial refresh brings: still taken
    partial = page.evaluate(
        "() => fetch('/inbox/partial', {cache: 'no-store'}).then(r => r.text())"
    )
    start = partial.index(f'id="alert-0190c000-0000-7000-8000-{4:012d}"')
    assert 'class="ack"' not in partial[start : partial.index("</article>", start)]
    page.context.close()


def test_an_expired_session_keeps_the_note_being_typed(
    browser: Browser,  # noqa: F811 - the fixture
    hub: HubProc,
    staff_state: dict[str, Any],
) -> None:
    page = signed_in(browser, hub, staff_state, 390)
    alert_id = f"0190c000-0000-7000-8000-{2:012d}"  # a low battery: closed with a note
    page.goto(f"{hub.url}/?home=h-0002")
    note = "Pile changée par la voisine, tout va bien"
    page.fill(f"#note-{alert_id}", note)
    session = next(c for c in page.context.cookies() if c["name"] == "veille_session")
    page.context.add_cookies(
        [{"name": "veille_session", "value": session["value"][:-4] + "AAAA", "url": hub.url}]
    )
    page.locator(f"#alert-{alert_id} button.resolve").click()
    expect(page.locator("#login-notice")).to_contain_text("session a expiré")
    expect(page.locator("#login-notice")).to_contain_text("note est gardée")
    shoot(page, "console50-login-draft-fr-390")
    page.fill("#name", "alice")
    page.fill("#password", STAFF_PASSWORD)
    page.click("#login-button")
    expect(page).to_have_url(f"{hub.url}/alerts/{alert_id}")
    expect(page.locator("#note")).to_have_value(note)
    expect(page.locator("#draft-kept")).to_be_visible()
    shoot(page, "console50-draft-kept-fr-390")
    page.locator("#alert-page button.resolve").click()
    expect(page.locator("#alert-page")).to_have_attribute("data-state", "resolved")
    expect(page.locator("#alert-page form")).to_have_count(0)
    page.context.close()
