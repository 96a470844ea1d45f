"""What people read and touch, in headless Chromium, on `veille demo` and on the real gateway.

The demo runs as its own process (the real command, fast: x600), with its family page,
installer pages and care console. Each page is read as a person sees it, in French and in
English: its visible text is scanned for raw keys (`motion_kitchen`), Python literals
(`True`, `{...}`), "(s)" plurals and, in French pages, English words. The charts' label
boxes (SVG getBBox) must not intersect nor leave the picture, every control must keep a
contrast of at least 4.5:1 in each display mode, and the family page must put the most
urgent alert first. With $VEILLE_SHOTS set to a folder, screenshots at 390, 820 and 1366 px
go there for a person to look at (tests/browser/shots.py).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from cloud_bridge.pages import charts
from edge.sim import demo_profile
from tests.browser.shots import shoot
from tests.browser.test_pages import CHROMIUM, CHROMIUM_ARGS
from tests.support import free_port

VEILLE = str(Path(sys.executable).with_name("veille"))
JS = Path(__file__).with_name("js")
WIDTHS = (390, 820, 1366)
DEMO_PIN = "1234"
DEMO_INSTALLER = "installateur"
DEMO_STAFF = "soignant"
MODES = ((), ("big",), ("contrast",), ("big", "contrast"))
DEMO_DEVICES = len(demo_profile().devices)

RAW_KEY = re.compile(r"\b[a-z]+(?:_[a-z0-9]+)+\b")
LITERAL = re.compile(r"\b(?:True|False|None)\b|[{}]|'\w+'\s*:")
PLURAL_S = re.compile(r"\w\((?:s|e|es)\)")
# English words a French page must not show (none of them is also French)
ENGLISH = frozenset(
    (
        *("the", "and", "with", "without", "sensor", "sensors", "room", "rooms", "bedroom"),
        *("kitchen", "bathroom", "living", "entrance", "motion", "door", "button", "battery"),
        *("waiting", "received", "learned", "interval", "usual", "activity", "up", "bed"),
        *("out", "home", "none", "true", "false", "other", "wearable", "temperature"),
        *("power", "presence", "fridge", "single", "lying", "score", "peak", "raised"),
        *("acknowledged", "resolved", "critical", "warning", "high", "offline", "online"),
        *("since", "ago", "alert", "alerts", "check-list", "checklist", "from", "to", "of"),
        *("at", "in", "is", "not", "got", "days", "day", "signs", "bind", "save", "print"),
    )
)
WORD = re.compile(r"[A-Za-zÀ-ÿ'’-]+")

# The page's text as a person meets it: rendered text, SVG labels, options, placeholders
# and accessible names, without <code> (identifiers and addresses an installer types).
VISIBLE_TEXT_JS = (JS / "visible_text.js").read_text()

# Every pair of SVG text boxes in a chart that intersect, and every box outside the viewBox
BBOX_JS = (JS / "label_boxes.js").read_text()

# Every visible control whose text/background contrast is under 4.5:1, or that lies
# outside the page's width (a control nobody can reach)
CONTRAST_JS = (JS / "controls.js").read_text()


def text_problems(text: str, lang: str) -> list[str]:
    """What a person should never read: raw keys, literals, "(s)", English in French."""
    problems = [f"raw key {m!r}" for m in RAW_KEY.findall(text)]
    problems += [f"literal {m!r}" for m in LITERAL.findall(text)]
    problems += [f"plural {m!r}" for m in PLURAL_S.findall(text)]
    if lang == "fr":
        problems += [
            f"English word {w!r}" for w in WORD.findall(text) if w.lower().strip("'’-") in ENGLISH
        ]
    return sorted(set(problems))


def test_the_scanner_catches_each_kind_of_fault() -> None:
    """The scan itself: each fault the issue saw is caught, plain French passes."""
    seen = [
        "motion_kitchen (cuisine) : ne répond plus",
        "silencieux depuis 180 min, usual interval min : 60, learned : False",
        "{'button': 'single'}",
        "25 signe(s) d'activité",
        "Activité / Activity",
        "chambre (bedroom)",
    ]
    for line in seen:
        assert text_problems(line, "fr"), line
    good = "Détecteur de mouvement de la cuisine : ne répond plus depuis 3 h 00. 25 signes."
    assert text_problems(good, "fr") == []


@dataclass
class Demo:
    """A running `veille demo` and the addresses it printed."""

    proc: subprocess.Popen[str]
    family: str = ""
    console: str = ""
    lines: list[str] = field(default_factory=list)

    def wait_line(self, pattern: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if rx.search(line):
                    return line
            assert self.proc.poll() is None, "\n".join(self.lines)
            time.sleep(0.1)
        raise AssertionError(f"no line {pattern!r} in:\n" + "\n".join(self.lines))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    storage = tmp_path_factory.mktemp("demo")
    port = free_port()
    proc = subprocess.Popen(
        [
            VEILLE,
            "demo",
            "--http",
            f"127.0.0.1:{port}",
            "--speed",
            "600",
            "--storage",
            str(storage),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=storage,
    )
    run = Demo(proc)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            run.lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    try:
        run.family = run.wait_line(r"^Page .*http", 60).split(": ", 1)[1].rstrip("/")
        run.console = run.wait_line(r"^Console .*http", 60).split(": ", 1)[1].rstrip("/")
        yield run
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_context(browser: Browser, width: int, modes: tuple[str, ...] = ()) -> BrowserContext:
    context = browser.new_context(viewport={"width": width, "height": 900}, locale="fr-FR")
    set_modes(context, modes)
    return context


def set_modes(context: BrowserContext, modes: tuple[str, ...]) -> None:
    """The display modes a person chose (large text, high contrast), as the pages keep them."""
    context.clear_cookies(name="veille_prefs")
    if modes:
        prefs = ",".join(modes)
        context.add_cookies([{"name": "veille_prefs", "value": prefs, "url": "http://127.0.0.1"}])


def sign_in(page: Page, base: str, code: str, path: str = "/") -> None:
    page.goto(f"{base}{path}")
    page.fill("#pin", code)
    page.click("#login-button")
    page.wait_for_load_state()


def staff_sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}/")
    page.fill("#name", "Claire Dubois")
    page.fill("#password", DEMO_STAFF)
    page.click("#login-button")
    expect(page).to_have_url(f"{base}/")


FAMILY_PAGES = ("/",)
INSTALLER_PAGES = (
    "/installer",
    "/installer/zigbee",
    "/installer/ble",
    "/installer/walkthrough",
    "/installer/report",
)


def _pages(demo: Demo) -> list[tuple[str, str, str]]:
    """(who, base URL, path) of every page a person meets in the demo."""
    return [
        *(("family", demo.family, p) for p in FAMILY_PAGES),
        *(("installer", demo.family, p) for p in INSTALLER_PAGES),
        ("console", demo.console, "/"),
        ("console", demo.console, "/homes/demo-home"),
    ]


def _signed_in(
    browser: Browser, demo: Demo, who: str, width: int, modes: tuple[str, ...] = ()
) -> tuple[BrowserContext, Page]:
    context = new_context(browser, width, modes)
    page = context.new_page()
    if who == "console":
        staff_sign_in(page, demo.console)
    else:
        sign_in(page, demo.family, DEMO_PIN if who == "family" else DEMO_INSTALLER, "/login")
    return context, page


def test_demo_pages_read_in_plain_words_at_every_width(browser: Browser, demo: Demo) -> None:
    """Every page, French and English, at phone, tablet and desktop widths: no raw key, no
    literal, no "(s)", no English in French; charts' labels apart; screenshots for a person."""
    demo.wait_line(r"\[centre\].*(Capteur silencieux|Chute)", 150)  # a few alerts are in
    problems: list[str] = []
    for who in ("family", "installer", "console"):
        context, page = _signed_in(browser, demo, who, WIDTHS[0])  # one sign-in a face
        try:
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                for _who, base, path in (p for p in _pages(demo) if p[0] == who):
                    for lang in ("fr", "en"):
                        page.goto(f"{base}{path}?lang={lang}")  # rendered by the server
                        where = f"{who} {path} {lang} {width}px"
                        problems += [
                            f"{where}: {p}"
                            for p in text_problems(page.evaluate(VISIBLE_TEXT_JS), lang)
                        ]
                        problems += [f"{where}: {p}" for p in page.evaluate(BBOX_JS)]
                        slug = path.strip("/").replace("/", "-") or "home"
                        shoot(page, f"{who}-{slug}-{lang}-{width}")
        finally:
            context.close()
    assert problems == [], "\n".join(problems)


def test_every_control_keeps_contrast_and_stays_on_the_page_in_each_mode(
    browser: Browser, demo: Demo
) -> None:
    """Normal, large text, high contrast and both: every control readable (>= 4.5:1) and
    inside the page, on a phone and on a desktop; the way back from a mode is visible."""
    problems: list[str] = []
    for who in ("family", "installer", "console"):
        context, page = _signed_in(browser, demo, who, WIDTHS[0])  # one sign-in a face
        try:
            for modes, width in ((m, w) for m in MODES for w in (WIDTHS[0], WIDTHS[2])):
                set_modes(context, modes)
                page.set_viewport_size({"width": width, "height": 900})
                for _who, base, path in (p for p in _pages(demo) if p[0] == who):
                    page.goto(f"{base}{path}")
                    where = f"{who} {path} {'+'.join(modes) or 'normal'} {width}px"
                    problems += [f"{where}: {p}" for p in page.evaluate(CONTRAST_JS)]
                    problems += [f"{where}: {p}" for p in page.evaluate(BBOX_JS)]
                    if modes and who != "console":
                        toggle = page.locator("nav button[aria-pressed=true]")
                        expect(toggle).to_have_count(len(modes))
                    if path in ("/", "/installer"):
                        mode = "+".join(modes) or "normal"
                        shoot(page, f"mode-{who}-{path.strip('/') or 'home'}-{mode}-{width}")
        finally:
            context.close()
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("days", [1, 7, 14, 28, 56])
def test_day_bars_labels_never_overlap_at_any_width(browser: Browser, big: bool, days: int) -> None:
    """The fortnight (and the console's weeks) chart: date labels, axes and hours apart."""
    start = time.mktime((2026, 11, 1, 12, 0, 0, 0, 0, -1))
    bodies = [
        {
            "date": time.strftime("%Y-%m-%d", time.localtime(start + 86400 * i)),
            "rooms": {"cuisine": {"activity": 100 + 37 * (i % 5)}},
            "get_up": f"0{6 + i % 3}:{(i * 7) % 60:02d}",
        }
        for i in range(days)
    ]
    svg = charts.daily_bars(bodies, "jours", "Heure du lever", big=big, activity_label="Activité")
    timeline = charts.day_timeline(
        {"salle de bain": [1] * 24, "chambre d'amis du fond": [0] * 24},
        {},
        "jour",
        12,
        big=big,
    )
    for width in WIDTHS:
        context = new_context(browser, width)
        page = context.new_page()
        page.set_content(
            f'<html><body style="margin:0"><div style="width:{width}px">{svg}{timeline}</div>'
            "</body></html>"
        )
        assert page.evaluate(BBOX_JS) == []
        # the axes are there: activity on the left, the get-up hours on the right
        labels = page.locator("svg.bars text").all_text_contents()
        assert {"0", "4 h", "8 h", "12 h"} <= set(labels)
        assert time.strftime("%d/%m", time.localtime(start + 86400 * (days - 1))) in labels
        context.close()


def test_family_page_most_urgent_first_with_name_meaning_and_whom_to_call(
    browser: Browser, demo: Demo
) -> None:
    """The SOS taken in charge by the staff sits below the new fall; the page names the
    resident, says what "pris en charge" means and whom to call."""
    staff = new_context(browser, 820).new_page()
    staff_sign_in(staff, demo.console)
    sos = staff.locator("article[data-state]").filter(has_text="Appel à l'aide")
    expect(sos).to_have_count(1, timeout=90_000)
    sos.locator("button.ack").click()
    demo.wait_line(r"\[centre\].*Chute", 150)
    family = new_context(browser, 390).new_page()
    sign_in(family, demo.family, DEMO_PIN, "/login")
    expect(family.locator("header h1")).to_have_text("Chez Jeanne Martin")
    banners = family.locator(".banner")
    expect(banners.first).to_contain_text("Chute détectée", timeout=30_000)
    expect(family.locator(".banner.taken")).to_contain_text("Appel à l'aide", timeout=30_000)
    order = family.locator(".banner").all_text_contents()
    fall = next(i for i, b in enumerate(order) if "Chute" in b)
    assert fall < next(i for i, b in enumerate(order) if "Appel" in b)
    expect(family.locator("#taken-means")).to_contain_text("s'en occupe")
    expect(family.locator("#contacts")).to_contain_text("Sophie Martin")
    expect(family.locator("#contacts a[href^='tel:']").first).to_be_visible()
    shoot(family, "family-urgent-first-390")
    staff.context.close()
    family.context.close()


def test_wrong_door_and_expired_session_say_so(browser: Browser, demo: Demo) -> None:
    """The family's PIN typed on /installer, and a session that no longer opens anything."""
    page = new_context(browser, 390).new_page()
    page.goto(f"{demo.family}/installer")
    page.fill("#pin", DEMO_PIN)
    page.click("#login-button")
    expect(page.locator("#login-notice")).to_contain_text("ouvre la page de la famille")
    page.locator("#login-notice a").click()
    expect(page).to_have_url(f"{demo.family}/")
    # the cookie is tampered with (or expired): the login says why it is shown
    session = next(c for c in page.context.cookies() if c["name"] == "veille_session")
    page.context.add_cookies(
        [
            {
                "name": "veille_session",
                "value": session["value"][:-4] + "AAAA",
                "url": demo.family,
            }
        ]
    )
    page.goto(f"{demo.family}/")
    expect(page.locator("#login-notice")).to_contain_text("session a expiré")
    shoot(page, "login-expired-390")
    page.context.close()


def test_demo_report_is_complete_and_flags_the_silent_sensor(browser: Browser, demo: Demo) -> None:
    """The printed report: resident, address, installer, date, contacts, signature lines,
    and the kitchen sensor that went silent flagged; "90 %" never split across lines."""
    demo.wait_line(r"\[centre\].*Capteur silencieux", 150)
    context = new_context(browser, 820)
    page = context.new_page()
    sign_in(page, demo.family, DEMO_INSTALLER, "/login")
    page.goto(f"{demo.family}/installer/report")
    expect(page.locator("#report-resident")).to_have_text("Jeanne Martin")
    expect(page.locator("#report-address")).to_contain_text("rue des Lilas")
    expect(page.locator("#report-installer")).to_contain_text("Karim Benali")
    expect(page.locator("#report-date")).to_contain_text(re.compile(r"\d\d/\d\d/\d{4} \d\d:\d\d"))
    expect(page.locator("#report-contacts")).to_contain_text("Sophie Martin")
    expect(page.locator("#report-signatures .sigline")).to_have_count(2)
    silent = page.locator("#report-devices li[data-silent=yes]")
    expect(silent).to_have_count(1)
    expect(silent).to_contain_text("Détecteur de mouvement de la cuisine")
    expect(silent).to_contain_text("ne répond pas")
    page.emulate_media(media="print")
    expect(page.locator("#print")).to_be_hidden()
    for cell in page.locator("#report-devices dd.nowrap").all():  # "89 %", "LQI 85": one line
        box = cell.bounding_box()
        assert box is not None
        assert box["height"] < 40, cell.inner_text()
    shoot(page, "installer-report-print-820")
    context.close()


def test_demo_installer_finds_bthome_sensors_and_walkthrough_reaches_all(
    browser: Browser, demo: Demo
) -> None:
    """Bluetooth discovery hears the simulated home's BTHome sensors; the walk-through
    started on the tablet ticks as the simulated resident walks it, every step (the issue
    saw 0 / 13 after three simulated hours; the home has 15 devices now)."""
    context = new_context(browser, 820)
    page = context.new_page()
    sign_in(page, demo.family, DEMO_INSTALLER, "/login")
    page.goto(f"{demo.family}/installer/ble")
    expect(page.locator("#live")).to_contain_text("A4:C1:38:5D:2E:11", timeout=30_000)
    expect(page.locator("#live")).to_contain_text("BTHome")
    page.goto(f"{demo.family}/installer/walkthrough")
    page.click("#walk-start")
    total = page.locator("#walk-total").inner_text()
    assert int(total) == DEMO_DEVICES  # every device of the simulated home has its step
    with contextlib.suppress(AssertionError):
        expect(page.locator("#walk-done")).to_have_text(total, timeout=90_000)
    shoot(page, "installer-walkthrough-820")
    waiting = page.locator("#walk-steps li").filter(has=page.locator(".tick.wait"))
    assert waiting.all_inner_texts() == []
    expect(page.locator("#walk-done")).to_have_text(total)
    page.goto(f"{demo.family}/installer/report")
    expect(page.locator("#report-walk")).to_contain_text(f"{total} / {total}")
    context.close()
