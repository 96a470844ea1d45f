"""The real `veille run` and its pages: monitoring never waits on the pages' credentials, and
the family page shows the persisted alert book after a restart."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.gateway_proc import FAMILY_PIN, INSTALLER_SECRET, GatewayProc, sos_press
from tests.support import Collector, Mosquitto

pytestmark = pytest.mark.broker


def pages(gw: GatewayProc) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{gw.http_port}", timeout=10, trust_env=False)


def test_veille_run_monitors_without_page_credentials(
    tmp_path: Path, local_broker: Mosquitto, hub_broker: Mosquitto
) -> None:
    gw = GatewayProc(tmp_path, "h-nopin-1", local_broker.port, hub_broker.port)
    gw.provision(pins=False)
    hub = Collector(hub_broker.port, "veille/v1/h-nopin-1/alert")
    gw.start()  # ready: /health 200
    try:
        code, health = gw.health()
        assert (code, health["ready"], health["pages"]) == (200, True, "not_configured")
        sos_press(local_broker.port, 0)
        _t, payload, _r = hub.get(timeout=10)
        assert json.loads(payload)["type"] == "sos"
        with pages(gw) as web:
            for path in ("/", "/login", "/installer"):
                r = web.get(path)
                assert r.status_code == 503, path
                assert "veille provision set-pin family" in r.text
                assert "veille provision set-pin installer" in r.text
            # the installer sets the credentials while the gateway runs: no restart needed
            gw.veille_provision("set-pin", "family", FAMILY_PIN)
            gw.veille_provision("set-pin", "installer", INSTALLER_SECRET)
            assert web.get("/login").status_code == 200
            assert gw.health()[1]["pages"] == "ok"
            r = web.post("/login", data={"pin": FAMILY_PIN}, follow_redirects=False)
            assert (r.status_code, r.headers["location"]) == (303, "/")
            assert web.get("/").status_code == 200
            # a new PIN set while the gateway runs ends the session the old one opened,
            # and the login says so
            gw.veille_provision("set-pin", "family", "97531")
            r = web.get("/", follow_redirects=False)
            assert (r.status_code, r.headers["location"]) == (303, "/login?why=expired")
            assert "Votre session a expiré" in web.get("/login?why=expired").text
    finally:
        assert gw.stop() == 0
        hub.close()
    assert "Traceback" not in gw.log()


def test_family_page_after_a_restart_shows_the_open_alerts(
    tmp_path: Path, local_broker: Mosquitto, hub_broker: Mosquitto
) -> None:
    n = 3
    gw = GatewayProc(tmp_path, "h-book-1", local_broker.port, hub_broker.port)
    gw.provision(n_sos=n)
    hub = Collector(hub_broker.port, "veille/v1/h-book-1/alert")
    gw.start()
    try:
        for i in range(n):
            sos_press(local_broker.port, i)
        raised = {json.loads(hub.get(timeout=10)[1])["id"] for _ in range(n)}
        with pages(gw) as web:
            web.post("/login", data={"pin": FAMILY_PIN})
            before = web.get("/")
        assert gw.health()[1]["open_alerts"] == n
        gw.kill()  # no clean stop: the book comes back from what was durable
        gw.start()
        assert gw.health()[1]["open_alerts"] == n
        with pages(gw) as web:
            web.post("/login", data={"pin": FAMILY_PIN})
            after = web.get("/")
            partial = web.get("/api/status")
    finally:
        gw.stop()
        hub.close()
    assert before.status_code == after.status_code == partial.status_code == 200
    assert "Tout va bien" not in before.text
    assert "Tout va bien" not in after.text
    status = partial.json()
    assert status["all_well"] is False
    assert {a["id"] for a in status["alerts"]} == raised
    assert {(a["type"], a["state"]) for a in status["alerts"]} == {("sos", "raised")}
