"""Fuzz each FastAPI app's OpenAPI operations with schemathesis: no input gives a 5xx.

The apps serve no /openapi.json (nothing answers without a credential), so the description
is taken from `app.openapi()` and the calls go to the app in-process (ASGI). Each operation
is fuzzed twice: anonymously, and signed in with a valid CSRF token slipped into the forms,
so the handlers themselves see the random input. Examples per operation are bounded.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from cloud_bridge.broker import parse_broker_url
from cloud_bridge.console import create_console_app
from cloud_bridge.hub import HubReceiver
from cloud_bridge.hub_store import SqliteHubStore
from cloud_bridge.pages.auth import CSRF_COOKIE, SESSION_COOKIE
from edge.status.app import create_app
from tests.support import Mosquitto
from tests.test_status_auth import INSTALLER_CODE, build

EXAMPLES = 12
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


def fuzz(app: Any, cookies: dict[str, str], token: str | None) -> Counter[int]:
    """Run every operation with generated inputs; return the status codes seen."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    seen: Counter[int] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            if token is not None and isinstance(case.body, dict) and "csrf" in case.body:
                case.body["csrf"] = token
            response = case.call(cookies=cookies)
            seen[response.status_code] += 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:300]}"
            )

        run()
    return seen


def signed_in(app: Any, path: str, form: dict[str, str]) -> tuple[dict[str, str], str]:
    client = TestClient(app, base_url="http://testserver")
    resp = client.post("/login", data=form, follow_redirects=False)
    assert resp.status_code == 303
    page = client.get(path)
    token = CSRF_RE.search(page.text)
    assert token is not None
    cookies = {
        SESSION_COOKIE: client.cookies[SESSION_COOKIE],
        CSRF_COOKIE: client.cookies[CSRF_COOKIE],
    }
    return cookies, token.group(1)


@pytest.fixture
def gateway_app(tmp_path: Path) -> Iterator[Any]:
    registry, core = build(tmp_path)
    yield create_app(core.state, registry=registry, core=core)
    registry.close()


def test_gateway_app_never_answers_5xx(gateway_app: Any) -> None:
    # sign in first: the anonymous run's wrong codes throttle further logins
    cookies, token = signed_in(gateway_app, "/installer", {"pin": INSTALLER_CODE})
    anonymous = fuzz(gateway_app, {}, None)
    installer = fuzz(gateway_app, cookies, token)
    assert sum(anonymous.values()) > 100
    assert installer[200] > 10  # signed in, the handlers themselves got the inputs


def test_console_app_never_answers_5xx(hub_broker: Mosquitto, tmp_path: Path) -> None:
    store = SqliteHubStore(tmp_path / "hub.db")
    hub = HubReceiver(parse_broker_url(hub_broker.url), store)
    hub.start()
    try:
        assert hub.wait_connected(10)
        app = create_console_app(hub, staff_password="fuzz-password-1")
        cookies, token = signed_in(app, "/", {"name": "zed", "password": "fuzz-password-1"})
        anonymous = fuzz(app, {}, None)
        staff = fuzz(app, cookies, token)
        assert sum(anonymous.values()) > 50
        assert staff[200] > 5
        assert sum(staff.values()) > 50
    finally:
        hub.stop()
        store.close()
