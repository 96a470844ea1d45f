"""The installer's pages: the home, rooms, contacts, thresholds, pairing, walk-through, report.

Behind the installer code. Edits go through `edge.status.editing` (the same checks as
`veille provision import`) and the checklist is `edge.commands.provision.checklist`; Zigbee pairing
publishes Zigbee2MQTT's own requests on the local broker through the gateway's adapter.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from cloud_bridge.pages import i18n
from cloud_bridge.pages.auth import Session
from cloud_bridge.pages.web import Csrf, lang_of, render, verify_csrf
from edge.events import Role, RoomKind
from edge.home import THRESHOLD_LIMITS, HomeFileError, HomeProfile, Thresholds
from edge.status import editing
from edge.status.deps import Pages, pages_of, require

if TYPE_CHECKING:
    from edge.commands.provision import Checklist

_LOGGER = logging.getLogger(__name__)

router = APIRouter(prefix="/installer", tags=["installer"])
InstallerSession = Annotated[Session, Depends(require("installer"))]
Text = Annotated[str, Form(max_length=200)]
OptText = Annotated[str, Form(max_length=200)]

PERMIT_JOIN_TOPIC = "zigbee2mqtt/bridge/request/permit_join"
RENAME_TOPIC = "zigbee2mqtt/bridge/request/device/rename"
PERMIT_JOIN_S = 254
PAIRING_DOC = "pairing"  # when the installer last opened joining, and until when
WALKTHROUGH_DOC = "walkthrough"


# --- helpers ---------------------------------------------------------------------------------
def apply_profile(pages: Pages, profile: HomeProfile) -> None:
    """Save the profile and hand it to the running gateway's decoders and detectors."""
    pages.registry.save_profile(profile)
    if pages.gateway is not None:
        pages.gateway.apply_profile(profile)
    elif pages.core is not None:
        pages.core.apply_profile(profile)


async def local_publish(pages: Pages, topic: str, payload: dict[str, Any]) -> bool:
    """Publish a request to Zigbee2MQTT on the home's broker; False if it cannot be sent."""
    adapter = pages.gateway.local_adapter if pages.gateway is not None else None
    data = json.dumps(payload, separators=(",", ":")).encode()
    try:
        if adapter is not None:
            await adapter.publish(topic, data)
            return True
    except Exception as exc:  # the broker went away: say so on the page
        _LOGGER.error("installer: cannot publish %s: %s", topic, exc)
        return False
    _LOGGER.error("installer: no local broker connection to publish %s", topic)
    return False


def _back(path: str, message: str = "", error: str = "") -> RedirectResponse:
    from urllib.parse import urlencode

    query = urlencode({k: v for k, v in (("msg", message), ("err", error)) if v})
    return RedirectResponse(f"{path}?{query}" if query else path, status_code=303)


def _edit(request: Request, csrf: str, change: Any, path: str = "/installer") -> RedirectResponse:
    """Check the form's CSRF token, apply `change` to the profile, and go back to `path`."""
    verify_csrf(request, csrf)
    pages = pages_of(request)
    lang = lang_of(request)
    try:
        profile = change(pages.profile())
    except HomeFileError as exc:
        return _back(path, error=i18n.edit_error_words(str(exc), lang))
    apply_profile(pages, profile)
    return _back(path, message=i18n.t("saved", lang))


def _checklist(pages: Pages, profile: HomeProfile, lang: str) -> Checklist:
    """`veille provision`'s checklist of the home, knowing which codes are set."""
    from edge.commands.provision import checklist

    pins = {
        "family": pages.registry.has_secret("family_pin"),
        "installer": pages.registry.has_secret("installer"),
    }
    check = checklist(profile, pins)
    return replace(
        check,
        missing=tuple(i18n.checklist_words(m, lang) for m in check.missing),
        notes=tuple(i18n.checklist_words(m, lang) for m in check.notes),
    )


def _exposes(state: Any, device: Any) -> frozenset[str] | None:
    """The exposes' property names Zigbee2MQTT listed for a registered device, if known."""
    if device.source != "zigbee2mqtt":
        return None
    for dev in state.bridge_devices:
        if dev.ieee_address.lower() == device.address.lower() or (
            device.friendly_name and dev.friendly_name == device.friendly_name
        ):
            return frozenset(dev.properties) if dev.properties else None
    return None


def _checked(pages: Pages, profile: HomeProfile, device_id: str) -> HomeProfile:
    """`profile`, once the device's role is one its exposes can serve (HomeFileError)."""
    dev = profile.device(device_id)
    if dev is not None:
        editing.check_role(dev, _exposes(pages.state, dev))
    return profile


def _room_choices(profile: HomeProfile) -> list[str]:
    return [r.name for r in profile.rooms]


def threshold_rows(profile: HomeProfile, lang: str) -> list[dict[str, Any]]:
    """Each threshold with its label, unit, help and range in words, for the form."""
    rows = []
    for f in fields(Thresholds):
        limit = THRESHOLD_LIMITS[f.name]
        unit = i18n.unit_name(limit.unit, lang)
        rows.append(
            {
                "key": f.name,
                "label": i18n.threshold_label(f.name, lang),
                "help": i18n.threshold_help(f.name, lang),
                "unit": unit,
                "value": i18n.number(getattr(profile.thresholds, f.name), lang, 2),
                "low": limit.low,
                "high": limit.high,
                "range": i18n.t(
                    "threshold_range",
                    lang,
                    low=i18n.number(limit.low, lang),
                    high=i18n.number(limit.high, lang),
                    unit=unit,
                ),
            }
        )
    return rows


def threshold_error_words(key: str, lang: str) -> str:
    """The page's sentence for a refused threshold: its label and its range."""
    if key not in THRESHOLD_LIMITS:
        return i18n.t("error", lang)
    limit = THRESHOLD_LIMITS[key]
    return i18n.t(
        "threshold_bad",
        lang,
        label=i18n.threshold_label(key, lang),
        low=i18n.number(limit.low, lang),
        high=i18n.number(limit.high, lang),
        unit=i18n.unit_name(limit.unit, lang),
    )


def _common(request: Request) -> dict[str, Any]:
    pages = pages_of(request)
    profile = pages.profile()
    lang = lang_of(request)
    kinds = {r.name: str(r.kind) for r in profile.rooms}
    return {
        "profile": profile,
        "room_kinds": [(str(k), i18n.room_kind_name(str(k), lang)) for k in RoomKind],
        "roles": [(str(r), i18n.role_name(str(r), lang)) for r in Role],
        "role_words": {str(r): i18n.role_name(str(r), lang) for r in Role},
        "device_roles": {
            d.id: [
                (r, i18n.role_name(r, lang))
                for r in editing.roles_for(d.source, _exposes(pages.state, d))
            ]
            for d in profile.devices
        },
        "device_names": {
            d.id: i18n.device_name(
                d.friendly_name, str(d.role), d.room, kinds.get(d.room or ""), lang
            )
            for d in profile.devices
        },
        "source_names": {d.id: i18n.source_name(d.source, lang) for d in profile.devices},
        "room_words": {name: i18n.room_name(name, kind, lang) for name, kind in kinds.items()},
        "kind_words": {name: i18n.room_kind_name(kind, lang) for name, kind in kinds.items()},
        "rooms": _room_choices(profile),
        "msg": request.query_params.get("msg", "")[:300],
        "err": request.query_params.get("err", "")[:300],
    }


# --- overview and profile edits ----------------------------------------------------------------
@router.get("", response_model=None)
def overview(request: Request, session: InstallerSession) -> Response:
    """The home at a glance with forms for rooms, contacts, thresholds and devices."""
    ctx = _common(request)
    thresholds = threshold_rows(ctx["profile"], lang_of(request))
    check = _checklist(pages_of(request), ctx["profile"], lang_of(request))
    return render(
        request,
        "installer.html",
        {**ctx, "check": check, "thresholds": thresholds},
        session=session,
    )


@router.post("/home", response_model=None)
def edit_home(request: Request, session: InstallerSession, csrf: Csrf, timezone: Text) -> Response:
    return _edit(request, csrf, lambda p: editing.set_timezone(p, timezone))


@router.post("/rooms", response_model=None)
def add_room(
    request: Request, session: InstallerSession, csrf: Csrf, name: Text, kind: Text
) -> Response:
    return _edit(request, csrf, lambda p: editing.add_room(p, name, kind))


@router.post("/rooms/delete", response_model=None)
def delete_room(request: Request, session: InstallerSession, csrf: Csrf, name: Text) -> Response:
    return _edit(request, csrf, lambda p: editing.remove_room(p, name))


@router.post("/contacts", response_model=None)
def add_contact(
    request: Request,
    *,
    session: InstallerSession,
    csrf: Csrf,
    name: Text,
    phone: OptText = "",
    relation: OptText = "",
) -> Response:
    return _edit(request, csrf, lambda p: editing.add_contact(p, name, phone, relation))


@router.post("/contacts/delete", response_model=None)
def delete_contact(
    request: Request,
    session: InstallerSession,
    csrf: Csrf,
    index: Annotated[int, Form(ge=0, le=1000)],
) -> Response:
    return _edit(request, csrf, lambda p: editing.remove_contact(p, index))


@router.post("/thresholds", response_model=None)
async def edit_thresholds(request: Request, session: InstallerSession) -> Response:
    """Every threshold of the form (one field each); blank fields keep their value."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    csrf = values.pop("csrf", "")
    verify_csrf(request, csrf)
    lang = lang_of(request)
    try:
        editing.set_thresholds(pages_of(request).profile(), values)
    except editing.ThresholdError as exc:
        words = (
            i18n.t("threshold_order", lang)
            if "must be below" in str(exc)
            else threshold_error_words(exc.key, lang)
        )
        return _back("/installer", error=words)
    return _edit(request, csrf, lambda p: editing.set_thresholds(p, values))


@router.post("/people", response_model=None)
def edit_people(
    request: Request,
    *,
    session: InstallerSession,
    csrf: Csrf,
    resident: OptText = "",
    address: OptText = "",
    installer: OptText = "",
) -> Response:
    """Who lives here, the address and the installer's name (for the pages and the report)."""
    return _edit(request, csrf, lambda p: editing.set_people(p, resident, address, installer))


@router.post("/devices", response_model=None)
def add_device(
    request: Request,
    *,
    session: InstallerSession,
    csrf: Csrf,
    id: Text,
    source: Text,
    address: Text,
    role: Text,
    room: OptText = "",
    friendly_name: OptText = "",
    bindkey: OptText = "",
    back: OptText = "/installer",
) -> Response:
    """Register a device heard by Zigbee2MQTT or over BLE (with its BTHome key)."""
    device = {
        "id": id,
        "source": source,
        "address": address,
        "role": role,
        "room": room,
        "friendly_name": friendly_name,
        "bindkey": bindkey,
    }
    target = back if back in ("/installer", "/installer/zigbee", "/installer/ble") else "/installer"
    pages = pages_of(request)
    return _edit(
        request,
        csrf,
        lambda p: _checked(pages, editing.add_device(p, device), id.strip()),
        target,
    )


@router.post("/devices/{device_id}", response_model=None)
async def edit_device(
    request: Request,
    *,
    session: InstallerSession,
    device_id: str,
    csrf: Csrf,
    room: OptText = "",
    role: Text = "",
    friendly_name: OptText = "",
) -> Response:
    """Rename (also in Zigbee2MQTT), move to a room, or change the role of a device."""
    pages = pages_of(request)
    before = pages.profile().device(device_id)
    response = _edit(
        request,
        csrf,
        lambda p: _checked(
            pages,
            editing.update_device(
                p, device_id, friendly_name=friendly_name, room=room, role=role or None
            ),
            device_id,
        ),
    )
    after = pages.profile().device(device_id)
    if (
        before is not None
        and after is not None
        and before.source == "zigbee2mqtt"
        and after.friendly_name
        and after.friendly_name != before.friendly_name
    ):
        old = before.friendly_name or before.address
        await local_publish(pages, RENAME_TOPIC, {"from": old, "to": after.friendly_name})
    return response


@router.post("/devices/{device_id}/delete", response_model=None)
def delete_device(
    request: Request, session: InstallerSession, device_id: str, csrf: Csrf
) -> Response:
    return _edit(request, csrf, lambda p: editing.remove_device(p, device_id))


# --- Zigbee pairing -------------------------------------------------------------------------
def pairing_view(pages: Pages, lang: str) -> dict[str, Any]:
    profile = pages.profile()
    state = pages.state
    registered = {d.address.lower(): d for d in profile.devices if d.source == "zigbee2mqtt"}
    by_name = {
        d.friendly_name: d for d in profile.devices if d.source == "zigbee2mqtt" and d.friendly_name
    }
    devices = []
    for dev in state.bridge_devices:
        if getattr(dev, "type", "") == "Coordinator":
            continue
        known = registered.get(dev.ieee_address.lower()) or by_name.get(dev.friendly_name)
        devices.append(
            {
                "ieee": dev.ieee_address,
                "name": dev.friendly_name,
                "model": " ".join(x for x in (dev.vendor, dev.model) if x),
                "interviewed": dev.interview_completed,
                "registered": known.id if known else "",
                "roles": [
                    (r, i18n.role_name(r, lang))
                    for r in editing.roles_for("zigbee2mqtt", frozenset(dev.properties) or None)
                ],
            }
        )
    events = [
        {
            "at": i18n.clock_time(at, state.tz, pages.now(), lang),
            "type": ev.type,
            "words": i18n.join_event_words(ev.type, ev.status, lang),
            "name": ev.friendly_name or ev.ieee_address,
            "status": ev.status,
        }
        for at, ev in reversed(state.bridge_events)
    ]
    pairing = pages.registry.get_doc(PAIRING_DOC) or {}
    now = pages.now()
    opened = float(pairing.get("from", 0.0))
    left = max(0, round(float(pairing.get("until", 0.0)) - now))
    joined_names = {
        ev.ieee_address.lower()
        for at, ev in state.bridge_events
        if at >= opened and ev.type in ("device_joined", "device_interview") and opened
    }
    joined = [d for d in devices if d["ieee"].lower() in joined_names]
    return {
        "devices": devices,
        "events": events,
        "bridge_online": state.bridge_online,
        "left": left,
        "left_words": i18n.t("pair_left", lang, s=left) if left else "",
        "opened": bool(opened),
        "joined": joined,
        "joined_waiting": sorted(joined_names - {d["ieee"].lower() for d in joined}),
    }


@router.get("/zigbee", response_model=None)
def zigbee_page(request: Request, session: InstallerSession, partial: bool = False) -> Response:
    """Permit joining, watch joins and interviews, register the new devices."""
    pages = pages_of(request)
    ctx = {**_common(request), "z": pairing_view(pages, lang_of(request))}
    return render(request, "zigbee_list.html" if partial else "zigbee.html", ctx, session=session)


@router.post("/zigbee/permit-join", response_model=None)
async def permit_join(request: Request, session: InstallerSession, csrf: Csrf) -> Response:
    """Ask Zigbee2MQTT to accept new devices for about four minutes."""
    verify_csrf(request, csrf)
    pages = pages_of(request)
    lang = lang_of(request)
    ok = await local_publish(pages, PERMIT_JOIN_TOPIC, {"value": True, "time": PERMIT_JOIN_S})
    if ok:  # the page's countdown says it from now on
        pages.registry.put_doc(
            PAIRING_DOC, {"from": pages.now(), "until": pages.now() + PERMIT_JOIN_S}
        )
        return _back("/installer/zigbee")
    return _back("/installer/zigbee", error=i18n.t("no_local", lang))


# --- BLE ------------------------------------------------------------------------------------------
@router.get("/ble", response_model=None)
def ble_page(request: Request, session: InstallerSession, partial: bool = False) -> Response:
    """BLE devices heard nearby, strongest first, with a form to bind one."""
    pages = pages_of(request)
    if pages.gateway is not None:
        pages.gateway.want_ble()  # a home without BLE devices scans from now on
    heard = list(pages.core.bthome.nearby.values()) if pages.core is not None else []
    heard.sort(key=lambda d: -d.rssi)
    now = pages.now()
    registered = {
        d.address.upper(): d.id for d in pages.profile().devices if d.source != "zigbee2mqtt"
    }
    nearby = [
        {
            "registered": registered.get(d.address.upper(), ""),
            "address": d.address,
            "name": d.name or "",
            "rssi": d.rssi,
            "bthome": d.bthome,
            "ago": i18n.duration(now - d.at, lang_of(request)),
        }
        for d in heard
    ]
    ctx = {**_common(request), "nearby": nearby}
    return render(request, "ble_list.html" if partial else "ble.html", ctx, session=session)


# --- walk-through test ----------------------------------------------------------------------------
def walkthrough_status(pages: Pages, lang: str) -> dict[str, Any]:
    """Each device's step and whether its event arrived since the test started."""
    doc = pages.registry.get_doc(WALKTHROUGH_DOC) or {}
    started = doc.get("started_at")
    results: dict[str, float] = dict(doc.get("results", {}))
    profile = pages.profile()
    changed = False
    steps = []
    kinds = {r.name: str(r.kind) for r in profile.rooms}
    for dev in profile.devices:
        room = i18n.room_name(dev.room, kinds.get(dev.room), lang) if dev.room else None
        last = pages.state.device_last.get(dev.id)
        wearer = _wearer_check(pages, dev.id, started, lang) if dev.role is Role.WEARABLE else None
        if wearer is not None:  # the wearer's check: the gateway found their upright direction
            if wearer["done"] and dev.id not in results:
                results[dev.id] = wearer["at"]
                changed = True
        elif isinstance(started, int | float) and dev.id not in results:
            # a message in which the device did something (not its battery or signal in the
            # same message after it); a siren or light has nothing but "I am here" to show
            acted = (
                last[0] if last is not None and dev.role is Role.PROMPT else None
            ) or pages.state.device_acted.get(dev.id)
            if acted is not None and acted >= started:
                results[dev.id] = acted
                changed = True
        steps.append(
            {
                "id": dev.id,
                "room": dev.room or "",
                "role": str(dev.role),
                "name": i18n.device_name(
                    dev.friendly_name, str(dev.role), dev.room, kinds.get(dev.room or ""), lang
                ),
                "prompt": i18n.role_prompt(str(dev.role), room, lang)
                if wearer is None
                else i18n.t("walk_wearer", lang),
                "done": dev.id in results,
                "detail": "" if wearer is None else wearer["detail"],
            }
        )
    if changed:
        pages.registry.put_doc(WALKTHROUGH_DOC, {**doc, "results": results})
    return {
        "started": isinstance(started, int | float),
        "steps": steps,
        "done": sum(1 for s in steps if s["done"]),
        "total": len(steps),
    }


def _wearer_check(pages: Pages, device_id: str, started: Any, lang: str) -> dict[str, Any] | None:
    """ "Wear the sensor, walk a few steps": done once the wearable's fall detector learned the
    wearer's upright direction from a walk since the test started, whatever the orientation."""
    core = pages.core
    detector = core.wearable_detector(device_id) if core is not None else None
    if detector is None:
        return None
    at = detector.upright_at
    done = isinstance(started, int | float) and at is not None and at >= started
    detail = ""
    if done:
        from models.features import UP_AXIS, angle_deg

        deg = round(angle_deg(detector.upright.up, UP_AXIS))
        detail = i18n.t("walk_upright", lang, deg=deg)
    return {"done": done, "at": at, "detail": detail}


@router.get("/walkthrough", response_model=None)
def walkthrough_page(request: Request, session: InstallerSession) -> Response:
    """'Press the button, open the door...': each sensor ticks green as its event arrives."""
    pages = pages_of(request)
    ctx = {**_common(request), "w": walkthrough_status(pages, lang_of(request))}
    return render(request, "walkthrough.html", ctx, session=session)


@router.post("/walkthrough/start", response_model=None)
def walkthrough_start(request: Request, session: InstallerSession, csrf: Csrf) -> Response:
    verify_csrf(request, csrf)
    pages = pages_of(request)
    pages.registry.put_doc(WALKTHROUGH_DOC, {"started_at": pages.now(), "results": {}})
    return _back("/installer/walkthrough")


@router.get("/api/walkthrough")
def walkthrough_json(request: Request, session: InstallerSession) -> JSONResponse:
    """The walk-through's state, polled by its page."""
    pages = pages_of(request)
    return JSONResponse(
        walkthrough_status(pages, lang_of(request)), headers={"Cache-Control": "no-store"}
    )


# --- report ---------------------------------------------------------------------------------------
@router.get("/report", response_model=None)
def report(request: Request, session: InstallerSession) -> Response:
    """A printable report to leave in the home: devices, rooms, batteries, signal, tests."""
    pages = pages_of(request)
    lang = lang_of(request)
    profile = pages.profile()
    walk = walkthrough_status(pages, lang)
    tested = {s["id"]: s["done"] for s in walk["steps"]}
    status = {row["id"]: row for row in pages.state.devices}
    now = pages.now()
    kinds = {r.name: str(r.kind) for r in profile.rooms}
    rows = []
    for dev in profile.devices:
        st = status.get(dev.id, {})
        last = pages.state.device_last.get(dev.id)
        battery = st.get("battery")
        signal = pages.state.device_signal.get(dev.id)
        rows.append(
            {
                "id": dev.id,
                "name": i18n.device_name(
                    dev.friendly_name, str(dev.role), dev.room, kinds.get(dev.room or ""), lang
                ),
                "source": i18n.source_name(dev.source, lang),
                "room": i18n.room_name(dev.room, kinds.get(dev.room), lang) if dev.room else "—",
                "role": i18n.role_name(str(dev.role), lang),
                "battery": f"{i18n.number(battery, lang, 0)}\u00a0%"
                if isinstance(battery, int | float)
                else "—",
                "signal": (
                    f"{i18n.number(signal, lang, 0)}\u00a0dBm"
                    if dev.source != "zigbee2mqtt"
                    else f"LQI\u00a0{i18n.number(signal, lang, 0)}"
                )
                if signal is not None
                else "—",
                "last_seen": i18n.clock_time(last[0], pages.state.tz, now, lang)
                if last
                else i18n.t("never", lang),
                "silent": bool(st.get("offline")) or last is None,
                "test": (
                    i18n.t("walk_ok", lang) if tested.get(dev.id) else i18n.t("not_tested", lang)
                )
                if walk["started"]
                else i18n.t("not_tested", lang),
                "tested": bool(tested.get(dev.id)),
            }
        )
    ctx = {
        **_common(request),
        "rows": rows,
        "silent_count": sum(1 for r in rows if r["silent"]),
        "check": _checklist(pages, profile, lang),
        "date": dt.datetime.fromtimestamp(now, pages.state.tz).strftime("%d/%m/%Y %H:%M"),
        "walk": walk,
    }
    return render(request, "report.html", ctx, session=session)
