"""What the family and installer pages show, from a real HomeCore fed Zigbee2MQTT payloads."""

from __future__ import annotations

import html
import json
import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cloud_bridge.pages import i18n
from edge.events import Aggregate
from edge.home import HomeFileError, Thresholds
from edge.status import editing
from edge.status.app import create_app
from edge.status.family import status_view
from tests.test_status_auth import FAMILY_PIN, INSTALLER_CODE, build, csrf_of, login


@pytest.mark.parametrize(
    ("evidence", "lang", "words"),
    [
        (
            {"peak_g": 3.4, "posture": "lying", "movement_resumed": False},
            "fr",
            "choc de 3,4 g, personne allongée, aucun mouvement ensuite",
        ),
        ({"peak_g": 3.4, "score": 0.97}, "en", "impact of 3.4 g, model confidence 97 %"),
        (
            {"inactive_min": 212, "usual_max_min": 95},
            "fr",
            "aucun mouvement depuis 212 min, d'habitude au plus 95 min",
        ),
        ({"button": "single"}, "fr", "appui simple"),
        ({"strange_key": 2.5, "learned": True}, "fr", ""),  # never a raw key or a literal
        (
            {"silent_min": 180.0, "usual_interval_min": 60.0, "learned": False},
            "fr",
            "silencieux depuis 180 min, se manifeste d'habitude toutes les 60 min, "
            "rythme du capteur pas encore appris",
        ),
        (
            {"door_at": "02:31", "out_min": 26, "limit_min": 20},
            "fr",
            "porte ouverte à 02:31, dehors depuis 26 min, alerte prévue après 20 min",
        ),
        ({"context": "out", "device": "wearable"}, "en", "out of the home, wearable sensor"),
    ],
)
def test_evidence_in_plain_words(evidence: dict[str, object], lang: str, words: str) -> None:
    said = i18n.evidence_words(evidence, lang)
    assert said.replace("\u00a0", " ") == words
    assert not re.search(r"\d [a-z%°]", said)  # a number keeps its unit on its line


@pytest.mark.parametrize(
    ("query", "cookie", "accept", "lang"),
    [
        (None, None, None, "fr"),
        ("en", None, None, "en"),
        (None, "en", "fr-FR", "en"),
        (None, None, "en-GB,en;q=0.9", "en"),
        ("de", None, "de-DE", "fr"),
    ],
)
def test_language_choice(
    query: str | None, cookie: str | None, accept: str | None, lang: str
) -> None:
    assert i18n.pick_lang(query, cookie, accept) == lang


def test_status_view_summarises_the_day_the_fortnight_and_the_sensors(tmp_path: Path) -> None:
    registry, core = build(tmp_path)
    now = time.time()
    core.zigbee_message(
        "zigbee2mqtt/kitchen_motion",
        json.dumps({"occupancy": True, "battery": 5, "linkquality": 90}).encode(),
        now - 120,
    )
    for day in range(16):
        core.state.note_daily(
            Aggregate(
                "daily",
                now - 86400 * (17 - day),
                now - 86400 * (16 - day),
                {
                    "date": time.strftime("%Y-%m-%d", time.localtime(now - 86400 * (16 - day))),
                    "rooms": {"kitchen": {"activity": 100 + day, "door_openings": 2}},
                    "get_up": "07:15",
                },
            )
        )
    core.tick(now)
    view = status_view(core.state, core.profile, now, "fr")
    assert view["all_well"]
    assert view["last"]["room"] == "cuisine"
    assert view["last"]["ago"] == "il y a 2\u00a0min"
    assert view["today_total"] == 1
    assert view["usual"] == round(sum(100 + d for d in range(2, 16)) / 14)  # last 14 days
    assert str(view["bars"]).count('class="bar"') == 14
    assert str(view["bars"]).count('class="dot"') == 14
    problems = {s["id"]: s["problems"] for s in view["sensors"]}
    assert "pile faible (5 %)" in problems["kitchen-pir"]
    assert "raw" not in json.dumps({k: str(v) for k, v in view.items()})
    registry.close()


def test_installer_edits_pairing_and_report(tmp_path: Path) -> None:
    registry, core = build(tmp_path)
    app = create_app(core.state, registry=registry, core=core)
    client = TestClient(app, base_url="http://testserver")
    assert login(client, INSTALLER_CODE) == 303
    token = csrf_of(client, "/installer")
    # move and rename a device: the registry and the running decoder both take it
    resp = client.post(
        "/installer/devices/kitchen-pir",
        data={"csrf": token, "room": "bedroom", "role": "motion", "friendly_name": "pir_chambre"},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    dev = registry.profile().device("kitchen-pir")
    assert (dev.room, dev.friendly_name) == ("bedroom", "pir_chambre")
    core.zigbee_message("zigbee2mqtt/pir_chambre", b'{"occupancy":true}', time.time())
    assert core.state.last_activity_room == "bedroom"
    # a bad value is refused with the reason, nothing stored
    resp = client.post(
        "/installer/thresholds", data={"csrf": token, "temp_low_c": "froid"}, follow_redirects=True
    )
    assert "« Température basse » doit être un nombre entre 5 et 25 °C." in html.unescape(resp.text)
    assert registry.profile().thresholds.temp_low_c == 16.0
    # outside its range too (a fall confirmed after 1e12 s would never be an alert)
    for key, value in (("fall_confirm_s", "1e12"), ("night_start_h", "99"), ("temp_low_c", "nan")):
        resp = client.post(
            "/installer/thresholds", data={"csrf": token, key: value}, follow_redirects=True
        )
        assert "doit être un nombre entre" in html.unescape(resp.text), key
    assert registry.profile().thresholds == Thresholds()
    # a device that joined Zigbee2MQTT shows on the pairing page
    bridge = [
        {
            "ieee_address": "0x00158d000aaa0099",
            "friendly_name": "0x00158d000aaa0099",
            "type": "EndDevice",
            "supported": True,
            "interview_completed": True,
            "definition": {"model": "RTCGQ11LM", "vendor": "Aqara", "exposes": []},
        }
    ]
    core.zigbee_message("zigbee2mqtt/bridge/devices", json.dumps(bridge).encode(), time.time())
    core.zigbee_message(
        "zigbee2mqtt/bridge/event",
        json.dumps(
            {
                "type": "device_joined",
                "data": {
                    "friendly_name": "0x00158d000aaa0099",
                    "ieee_address": "0x00158d000aaa0099",
                },
            }
        ).encode(),
        time.time(),
    )
    page = client.get("/installer/zigbee").text
    assert "0x00158d000aaa0099" in page
    assert "appareil arrivé sur le réseau" in html.unescape(page)
    resp = client.post(
        "/installer/devices",
        data={
            "csrf": token,
            "id": "bath-pir",
            "source": "zigbee2mqtt",
            "address": "0x00158d000aaa0099",
            "role": "motion",
            "room": "bedroom",
            "back": "/installer/zigbee",
        },
        follow_redirects=False,
    )
    assert resp.headers["location"].startswith("/installer/zigbee")
    assert registry.profile().device("bath-pir") is not None
    report = client.get("/installer/report").text
    assert "bath-pir" in report
    # the family PIN still opens only the family pages
    family = TestClient(app, base_url="http://testserver")
    assert login(family, FAMILY_PIN) == 303
    assert family.get("/installer/report", follow_redirects=False).status_code == 303
    registry.close()


def test_editing_refuses_what_import_refuses(tmp_path: Path) -> None:
    registry, core = build(tmp_path)
    profile = core.profile
    with pytest.raises(HomeFileError, match="declared twice"):
        editing.add_room(profile, "kitchen", "kitchen")
    with pytest.raises(HomeFileError, match="room kind"):
        editing.add_room(profile, "cave", "cellar")
    with pytest.raises(HomeFileError, match="bindkey"):
        editing.add_device(
            profile,
            {
                "id": "t1",
                "source": "bthome",
                "address": "AA:BB:CC:DD:EE:FF",
                "role": "temperature",
                "bindkey": "xyz",
            },
        )
    moved = editing.remove_room(profile, "kitchen")
    assert moved.device("kitchen-pir").room is None
    th = editing.set_thresholds(profile, {"temp_low_c": "17,5"})
    assert th.thresholds.temp_low_c == 17.5
    registry.close()


def test_roles_offered_are_those_the_exposes_can_serve() -> None:
    motion = frozenset({"occupancy", "illuminance", "battery", "linkquality"})
    siren = frozenset({"warning", "mode", "level", "battery"})
    assert editing.roles_for("zigbee2mqtt", motion) == [
        "motion", "presence", "bed", "chair", "toilet_flush"
    ]  # fmt: skip
    assert editing.roles_for("zigbee2mqtt", siren) == ["prompt"]
    assert "sos_button" in editing.roles_for("zigbee2mqtt", None)  # exposes not known yet
    assert "wearable" not in editing.roles_for("zigbee2mqtt", None)
    assert editing.roles_for("wearable", None) == ["wearable"]
    assert "checkin_button" in editing.roles_for("bthome", None)


def test_installer_pages_refuse_a_role_the_exposes_cannot_serve(tmp_path: Path) -> None:
    registry, core = build(tmp_path)
    app = create_app(core.state, registry=registry, core=core)
    client = TestClient(app, base_url="http://testserver")
    assert login(client, INSTALLER_CODE) == 303
    token = csrf_of(client, "/installer")
    exposes = [
        {"type": "binary", "name": "occupancy", "property": "occupancy", "access": 1},
        {"type": "numeric", "name": "battery", "property": "battery", "access": 1},
    ]
    bridge = [
        {
            "ieee_address": "0x00158d000aaa0077",
            "friendly_name": "new_motion",
            "type": "EndDevice",
            "supported": True,
            "interview_completed": True,
            "definition": {"model": "RTCGQ11LM", "vendor": "Aqara", "exposes": exposes},
        }
    ]
    core.zigbee_message("zigbee2mqtt/bridge/devices", json.dumps(bridge).encode(), time.time())
    page = client.get("/installer/zigbee").text
    offered = page[page.index("new_motion") :]
    offered = offered[offered.index('name="role"') :]
    offered = offered[: offered.index("</select>")]
    assert '<option value="motion">détecteur de mouvement</option>' in offered
    assert "sos_button" not in offered
    assert "prompt" not in offered
    form = {
        "csrf": token,
        "id": "new-pir",
        "source": "zigbee2mqtt",
        "address": "0x00158d000aaa0077",
        "friendly_name": "new_motion",
        "room": "bedroom",
        "back": "/installer/zigbee",
    }
    resp = client.post("/installer/devices", data={**form, "role": "sos_button"})
    assert "ne peut pas servir de « bouton d'appel »" in html.unescape(resp.text)
    assert registry.profile().device("new-pir") is None
    resp = client.post(
        "/installer/devices", data={**form, "role": "motion"}, follow_redirects=False
    )
    assert resp.status_code == 303
    assert registry.profile().device("new-pir") is not None
    # changing it later to a role it cannot serve is refused too
    resp = client.post(
        "/installer/devices/new-pir", data={"csrf": token, "role": "prompt", "room": "bedroom"}
    )
    assert "ne peut pas servir de « carillon d'appel »" in html.unescape(resp.text)
    assert str(registry.profile().device("new-pir").role) == "motion"
    registry.close()


def test_check_in_and_water_leak_evidence_in_plain_french() -> None:
    evidence = {
        "inactive_min": 58,
        "check_in": "unanswered",
        "check_in_at": "14:09",
        "off_furniture": True,
    }
    assert i18n.evidence_words(evidence, "fr").replace("\u00a0", " ") == (
        "aucun mouvement depuis 58 min, la personne n'a pas répondu à la question « ça va ? », "
        "question posée à 14:09, hors du lit et du fauteuil"
    )
    assert i18n.alert_name("water_leak", "fr") == "Fuite d'eau"
    assert i18n.evidence_words({"wet": True}, "en") == "sensor wet"


@pytest.mark.parametrize(
    ("key", "count", "lang", "text"),
    [
        ("login_wait", 1, "fr", "Trop d'essais : réessayez dans 1 seconde."),
        ("login_wait", 30, "fr", "Trop d'essais : réessayez dans 30 secondes."),
        ("login_wait", 1, "en", "Too many attempts: try again in 1 second."),
        ("today_count", 0, "fr", "0 signe d'activité aujourd'hui jusqu'ici."),
        ("today_count", 25, "fr", "25 signes d'activité aujourd'hui jusqu'ici."),
        ("context_alerts", 1, "fr", "1 alerte au total"),
        ("context_alerts", 3, "fr", "3 alertes au total"),
    ],
)
def test_real_plurals(key: str, count: int, lang: str, text: str) -> None:
    values = {"login_wait": "s", "today_count": "n", "context_alerts": "n"}
    assert i18n.tn(key, count, lang, **{values[key]: count}) == text


@pytest.mark.parametrize(
    ("value", "lang", "text"),
    [
        (514.6, "fr", "514,6"),
        (514.6, "en", "514.6"),
        (12345, "fr", "12\u202f345"),
        (3.0, "fr", "3"),
    ],
)
def test_numbers_in_the_page_language(value: float, lang: str, text: str) -> None:
    assert i18n.number(value, lang) == text


@pytest.mark.parametrize(
    ("device", "lang", "name"),
    [
        (
            ("motion_kitchen", "motion", "kitchen", "kitchen"),
            "fr",
            "Détecteur de mouvement de la cuisine",
        ),
        (("", "sos_button", "entrée", "entrance"), "fr", "Bouton d'appel de l'entrée"),
        (
            ("0x00158d0001a2b3c4", "door_entrance", "hall", "entrance"),
            "fr",
            "Contact de la porte d'entrée",
        ),
        (("Lampe du salon", "power", "living", "living"), "fr", "Lampe du salon"),
        (("siren", "prompt", "bureau", "other"), "en", "Chime (bureau)"),
    ],
)
def test_devices_named_for_people(device: tuple[str, str, str, str], lang: str, name: str) -> None:
    assert i18n.device_name(*device, lang) == name
    assert i18n.room_name("bedroom", "bedroom", "fr") == "chambre"  # never "chambre (bedroom)"


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        (
            "installer page:12: room 'cuisine' is declared twice",
            "La pièce « cuisine » existe déjà.",
        ),
        (
            "installer page:3: unknown timezone 'Mars/Olympus'",
            "Fuseau horaire inconnu : « Mars/Olympus » (par exemple Europe/Paris).",
        ),
        ("installer page: no device 'x'", "« x » n'existe plus : rechargez la page."),
    ],
)
def test_refused_edits_said_in_french(reason: str, words: str) -> None:
    assert i18n.edit_error_words(reason, "fr") == words
