"""Who may see what on the gateway's pages: every route, CSRF, PIN throttling, cookie flags.

The route test enumerates `app.routes`, so a route added later cannot escape it.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from cloud_bridge.pages.auth import (
    FREE_FAILURES,
    LOCK_AFTER_FAILURES,
    LOCK_S,
    SESSION_COOKIE,
    Attempts,
    Decision,
    Signer,
    after_failure,
    throttle_decision,
    wait_after,
)
from edge.home import load_home_toml
from edge.runtime.core import HomeCore
from edge.status.app import create_app
from edge.storage.registry import Registry
from tests.gateway_proc import write_home

FAMILY_PIN = "2468"
INSTALLER_CODE = "pose-1234-ok"
PUBLIC = {("GET", "/login"), ("POST", "/login"), ("GET", "/health")}
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class Home:
    app: object
    client: TestClient
    registry: Registry
    core: HomeCore
    clock: FakeClock


def build(tmp_path: Path, *, pins: bool = True) -> tuple[Registry, HomeCore]:
    profile = load_home_toml(write_home(tmp_path / "home.toml", "h-auth"))
    registry = Registry(tmp_path / "storage")
    registry.save_profile(profile)
    if pins:
        registry.set_secret("family_pin", FAMILY_PIN)
        registry.set_secret("installer", INSTALLER_CODE)
    core = HomeCore(profile, routine=False)
    core.state.ready = True
    return registry, core


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    registry, core = build(tmp_path)
    clock = FakeClock()
    app = create_app(core.state, registry=registry, core=core, clock=clock)
    with TestClient(app, base_url="http://testserver") as client:
        yield Home(app, client, registry, core, clock)
    registry.close()


def login(client: TestClient, pin: str) -> int:
    return client.post("/login", data={"pin": pin}, follow_redirects=False).status_code


def csrf_of(client: TestClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text[:300]
    match = CSRF_RE.search(page.text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "kitchen-pir", path)


def _walk(routes: list[object], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of every route, also inside included routers (any FastAPI version)."""
    out: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, APIRoute):
            out |= {(m, prefix + route.path) for m in route.methods}
            continue
        inner = getattr(route, "original_router", None)
        if inner is not None:
            ctx = getattr(route, "include_context", None)
            out |= _walk(inner.routes, prefix + getattr(ctx, "prefix", ""))
        elif getattr(route, "methods", None):
            out |= {(m, prefix + route.path) for m in route.methods}  # type: ignore[attr-defined]
    return out


def all_routes(app: object) -> list[tuple[str, str]]:
    """Every route of the app, walked, and every operation of its OpenAPI description."""
    walked = _walk(list(app.routes))  # type: ignore[attr-defined]
    schema = app.openapi()  # type: ignore[attr-defined]
    described = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    return sorted(walked | described)


def test_pages_answer_503_with_the_fix_until_credentials_are_set(tmp_path: Path) -> None:
    """The app always starts (monitoring never waits on a web credential); its pages do not."""
    registry, core = build(tmp_path, pins=False)
    app = create_app(core.state, registry=registry, core=core)
    client = TestClient(app, base_url="http://testserver")
    health = client.get("/health")
    assert (health.status_code, health.json()["pages"]) == (200, "not_configured")
    for method, path in all_routes(app):
        if path == "/health":
            continue
        r = client.request(method, concrete(path), follow_redirects=False)
        assert r.status_code == 503, (method, path, r.status_code)
        assert "veille provision set-pin family" in r.text, (method, path)
        assert "veille provision set-pin installer" in r.text, (method, path)
    registry.set_secret("family_pin", FAMILY_PIN)
    r = client.get("/login")
    assert r.status_code == 503
    assert "set-pin installer" in r.text
    assert "set-pin family" not in r.text
    registry.set_secret("installer", INSTALLER_CODE)  # no restart needed
    assert client.get("/login").status_code == 200
    assert client.get("/health").json()["pages"] == "ok"
    assert login(client, FAMILY_PIN) == 303
    registry.close()


def test_every_route_needs_its_credential(home: Home) -> None:
    routes = all_routes(home.app)
    assert len(routes) >= 20  # the installer and family routes are all there
    assert not any(path in ("/openapi.json", "/docs") for _m, path in routes)
    anonymous = TestClient(home.app, base_url="http://testserver")
    family = TestClient(home.app, base_url="http://testserver")
    assert login(family, FAMILY_PIN) == 303
    for method, path in routes:
        if (method, path) in PUBLIC:
            continue
        url = concrete(path)
        api = path.startswith(("/api/", "/installer/api/"))
        for who, client in (("anonymous", anonymous), ("family", family)):
            if who == "family" and not path.startswith("/installer"):
                continue  # family pages are open to the family
            resp = client.request(method, url, follow_redirects=False)
            if api:
                assert resp.status_code == 401, (who, method, path, resp.status_code)
            else:
                assert resp.status_code == 303, (who, method, path, resp.status_code)
                assert resp.headers["location"].startswith("/login"), (method, path)


def test_public_routes(home: Home) -> None:
    assert home.client.get("/health").status_code == 200
    home.core.state.ready = False
    assert home.client.get("/health").status_code == 503
    page = home.client.get("/login")
    assert page.status_code == 200
    assert 'name="pin"' in page.text
    assert "Code d'accès" in html.unescape(page.text)
    assert "Access code" in home.client.get("/login?lang=en").text


def test_login_sets_a_strict_httponly_cookie_and_opens_the_status_page(home: Home) -> None:
    resp = home.client.post("/login", data={"pin": FAMILY_PIN}, follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/"
    cookie = next(c for c in resp.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags
    assert "samesite=strict" in flags
    page = home.client.get("/")
    assert page.status_code == 200
    assert "Tout va bien" in page.text
    assert "Content-Security-Policy" in page.headers
    # the family cannot open installer pages
    assert home.client.get("/installer", follow_redirects=False).status_code == 303


def test_wrong_pin_is_refused_and_nothing_is_stored_in_clear(home: Home) -> None:
    resp = home.client.post("/login", data={"pin": "0000"}, follow_redirects=False)
    assert resp.status_code == 401
    assert SESSION_COOKIE not in resp.headers.get("set-cookie", "")
    assert "Code incorrect" in resp.text
    # (hex digests and salts may hold any 4 digits by chance: only other text is searched)
    raw = re.sub(r'"[0-9a-f]{32,}"', '""', home.registry.path.read_text())
    assert FAMILY_PIN not in raw
    assert INSTALLER_CODE not in raw


def test_forged_or_expired_session_is_refused(home: Home) -> None:
    other = Signer(b"k" * 32).session_cookie("installer", "x", home.clock() + 3600)
    home.client.cookies.set(SESSION_COOKIE, other)
    assert home.client.get("/", follow_redirects=False).status_code == 303
    assert login(home.client, INSTALLER_CODE) == 303
    assert home.client.get("/installer").status_code == 200
    home.clock.t += 5 * 3600  # the installer session lasts 4 h
    assert home.client.get("/installer", follow_redirects=False).status_code == 303


def test_forms_need_the_csrf_token(home: Home) -> None:
    assert login(home.client, INSTALLER_CODE) == 303
    token = csrf_of(home.client, "/installer")
    url = "/installer/rooms"
    form = {"name": "salon", "kind": "living"}
    assert home.client.post(url, data=form, follow_redirects=False).status_code == 422
    bad = home.client.post(url, data={**form, "csrf": "x" * 43}, follow_redirects=False)
    assert bad.status_code == 403
    cross = home.client.post(
        url,
        data={**form, "csrf": token},
        headers={"origin": "http://evil.example"},
        follow_redirects=False,
    )
    assert cross.status_code == 403
    assert "salon" not in {r.name for r in home.registry.profile().rooms}
    ok = home.client.post(url, data={**form, "csrf": token}, follow_redirects=False)
    assert ok.status_code == 303
    assert "salon" in {r.name for r in home.registry.profile().rooms}
    # a token from another visitor's cookie does not fit
    stranger = TestClient(home.app, base_url="http://testserver")
    assert login(stranger, INSTALLER_CODE) == 303
    resp = stranger.post(url, data={**form, "csrf": token}, follow_redirects=False)
    assert resp.status_code == 403


def test_login_from_another_site_is_refused(home: Home) -> None:
    resp = home.client.post(
        "/login",
        data={"pin": FAMILY_PIN},
        headers={"origin": "http://evil.example"},
        follow_redirects=False,
    )
    assert resp.status_code == 403


def test_wrong_pins_are_slowed_then_locked(home: Home) -> None:
    codes = [login(home.client, "9999") for _ in range(FREE_FAILURES)]
    assert codes == [401] * FREE_FAILURES
    # now the next try must wait, even with the right PIN
    slowed = home.client.post("/login", data={"pin": FAMILY_PIN}, follow_redirects=False)
    assert slowed.status_code == 429
    assert int(slowed.headers["retry-after"]) >= 1
    for _ in range(LOCK_AFTER_FAILURES - FREE_FAILURES):
        home.clock.t += 60
        assert login(home.client, "9999") == 401
    home.clock.t += 60
    locked = home.client.post("/login", data={"pin": FAMILY_PIN}, follow_redirects=False)
    assert locked.status_code == 429
    assert "bloqué" in locked.text
    home.clock.t += LOCK_S + 1
    assert login(home.client, FAMILY_PIN) == 303


T0 = 1000.0


@pytest.mark.parametrize(
    ("rec", "now", "expected"),
    [
        (Attempts(), T0, Decision(True)),
        (Attempts(FREE_FAILURES - 1, T0), T0, Decision(True)),
        (Attempts(FREE_FAILURES, T0), T0 + 1, Decision(False, 1.0)),
        (Attempts(FREE_FAILURES, T0), T0 + 2, Decision(True)),
        (Attempts(FREE_FAILURES + 1, T0), T0 + 3, Decision(False, 1.0)),
        (Attempts(FREE_FAILURES + 2, T0), T0 + 8, Decision(True)),
        (Attempts(0, T0, T0 + LOCK_S), T0 + 10, Decision(False, LOCK_S - 10, locked=True)),
        (Attempts(0, T0, T0 + LOCK_S), T0 + LOCK_S, Decision(True)),
        (Attempts(LOCK_AFTER_FAILURES - 1, T0), T0 + 3600, Decision(True)),  # forgotten
    ],
)
def test_throttle_decision_table(rec: Attempts, now: float, expected: Decision) -> None:
    assert throttle_decision(rec, now) == expected


@pytest.mark.parametrize(
    ("failures", "wait"),
    [
        (0, 0.0),
        (FREE_FAILURES - 1, 0.0),
        (FREE_FAILURES, 2.0),
        (FREE_FAILURES + 1, 4.0),
        (FREE_FAILURES + 3, 16.0),
    ],
)
def test_wait_grows(failures: int, wait: float) -> None:
    assert wait_after(failures) == wait


def test_after_failure_counts_then_locks() -> None:
    rec = Attempts()
    for n in range(1, LOCK_AFTER_FAILURES):
        rec = after_failure(rec, T0 + n)
        assert rec.failures == n
        assert rec.locked_until == 0.0
    rec = after_failure(rec, T0 + 100)
    assert rec == Attempts(0, T0 + 100, T0 + 100 + LOCK_S)
    # an old failure is forgotten: the count starts again
    assert after_failure(Attempts(5, T0), T0 + 4000).failures == 1


def test_everyone_together_is_throttled_too(home: Home) -> None:
    """Many clients (several addresses) share a larger budget, then are slowed as well."""
    throttle = home.app.state.pages.throttle  # type: ignore[attr-defined]
    for i in range(4 * FREE_FAILURES):
        home.clock.t += 30
        assert throttle.attempt(f"10.0.0.{i}").allowed
    assert not throttle.check("10.0.0.200").allowed


def test_one_address_guessing_for_hours_never_locks_out_another(home: Home) -> None:
    """An attacker who waits out every delay and lock, from one address, for three hours:
    the family's phone on another address still gets in with the right PIN."""
    attacker = TestClient(home.app, base_url="http://testserver", client=("10.0.0.66", 5000))
    family = TestClient(home.app, base_url="http://testserver", client=("10.0.0.7", 5000))
    throttle = home.app.state.pages.throttle  # type: ignore[attr-defined]
    checked = 0
    start = home.clock.t
    while home.clock.t - start < 3 * 3600:
        r = attacker.post("/login", data={"pin": "0000"}, follow_redirects=False)
        if r.status_code == 401:
            checked += 1
        else:
            assert r.status_code == 429
            home.clock.t += float(r.headers["retry-after"])
        assert throttle.check("10.0.0.7").allowed, f"family locked out at +{home.clock.t - start}"
        home.clock.t += 1
    assert checked >= 3 * LOCK_AFTER_FAILURES  # the attacker kept trying
    assert login(family, FAMILY_PIN) == 303


def test_concurrent_wrong_pins_cannot_slip_past_the_limit(home: Home) -> None:
    """30 wrong PINs at the same instant from one address: only the free ones are checked."""
    import threading

    codes: list[int] = []
    gate = threading.Barrier(30)

    def guess() -> None:
        client = TestClient(home.app, base_url="http://testserver", client=("10.0.0.66", 5000))
        gate.wait()
        codes.append(login(client, "0000"))

    threads = [threading.Thread(target=guess) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [401] * FREE_FAILURES + [429] * (30 - FREE_FAILURES)


def test_distinct_addresses_are_throttled_together(home: Home) -> None:
    """Guesses spread over many addresses still meet a limit (one try each is enough)."""
    throttle = home.app.state.pages.throttle  # type: ignore[attr-defined]
    refused = 0
    for i in range(200):
        home.clock.t += 1
        decision = throttle.attempt(f"10.1.{i // 250}.{i % 250}")
        refused += not decision.allowed
    assert refused > 100


def signed_cookie(client: TestClient, pin: str) -> str:
    assert login(client, pin) == 303
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie
    return cookie


def opens(app: object, cookie: str, path: str = "/") -> bool:
    """Whether a browser holding only `cookie` gets the page (not the way to /login)."""
    browser = TestClient(app, base_url="http://testserver")  # type: ignore[arg-type]
    browser.cookies.set(SESSION_COOKIE, cookie)
    return browser.get(path, follow_redirects=False).status_code == 200


def test_logout_ends_the_session_for_good(home: Home) -> None:
    cookie = signed_cookie(home.client, FAMILY_PIN)
    assert opens(home.app, cookie)
    token = csrf_of(home.client, "/")
    out = home.client.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == 303
    assert not opens(home.app, cookie)  # a copy of the cookie is worth nothing now


def test_a_pin_change_ends_the_sessions_it_opened(home: Home) -> None:
    family = signed_cookie(TestClient(home.app, base_url="http://testserver"), FAMILY_PIN)
    installer = signed_cookie(TestClient(home.app, base_url="http://testserver"), INSTALLER_CODE)
    assert opens(home.app, family)
    assert opens(home.app, installer, "/installer")
    home.registry.set_secret("family_pin", "1357")  # as `veille provision set-pin` does
    assert not opens(home.app, family)
    assert opens(home.app, installer, "/installer")
    home.registry.set_secret("installer", "nouveau-code-99")
    assert not opens(home.app, installer, "/installer")


def test_sessions_survive_a_restart_and_stay_ended(home: Home) -> None:
    kept = signed_cookie(TestClient(home.app, base_url="http://testserver"), FAMILY_PIN)
    client = TestClient(home.app, base_url="http://testserver")
    ended = signed_cookie(client, FAMILY_PIN)
    client.post("/logout", data={"csrf": csrf_of(client, "/")})
    again = create_app(home.core.state, registry=home.registry, core=home.core, clock=home.clock)
    assert opens(again, kept)
    assert not opens(again, ended)
