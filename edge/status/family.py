"""The families' status page: is all well, last activity, today against the usual, sensors.

`status_view` is pure (state, profile, now, lang -> plain data); the routes render it as the
page, as a fragment for the page's self-refresh, or as JSON. Only summaries are shown: the
last sign of activity and where, hourly counts per room, daily summaries, device health.
"""

from __future__ import annotations

import datetime as dt
from statistics import mean
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from markupsafe import Markup

from cloud_bridge.pages import charts, i18n
from cloud_bridge.pages.auth import Session
from cloud_bridge.pages.web import lang_of, prefs_of, render
from edge.status.deps import pages_of, require

router = APIRouter(tags=["family"])
FamilySession = Annotated[Session, Depends(require("family"))]

REFRESH_S = 5
SENSOR_ALERT_TYPES = frozenset({"sensor_offline", "low_battery"})
PLOT_DAYS = 14
SEVERITY_RANK = {"critical": 0, "high": 1, "warning": 2, "info": 3}


def urgency(alert: dict[str, Any]) -> tuple[int, int, float]:
    """Sort key: alerts nobody took in charge first, then the most severe, then the newest.
    (An SOS already taken in charge never sits above a new fall.)"""
    return (
        1 if alert["taken"] else 0,
        SEVERITY_RANK.get(alert["severity"], 9),
        -float(alert["raised_at"]),
    )


def device_label(device: Any, profile: Any, lang: str) -> str:
    """What a person calls the device: the installer's name, or its role and room."""
    return i18n.device_name(
        device.friendly_name,
        str(device.role),
        device.room,
        str(k) if (k := profile.room_kind(device.room)) is not None else None,
        lang,
    )


def room_labels(profile: Any, lang: str) -> dict[str, str]:
    """Room name -> what to show (the installer's name, or the kind in words if generic)."""
    labels: dict[str, str] = {}
    for room in getattr(profile, "rooms", ()):
        labels[room.name] = i18n.room_name(room.name, str(room.kind), lang)
    return labels


def alert_view(
    alert: Any, tz: dt.tzinfo, now: float, lang: str, labels: dict[str, str]
) -> dict[str, Any]:
    state = str(alert.state)
    by = str(alert.evidence.get("by", "")) if state == "acknowledged" else ""
    evidence = {k: v for k, v in alert.evidence.items() if k != "by"}
    return {
        "id": alert.id,
        "type": str(alert.type),
        "title": i18n.alert_name(str(alert.type), lang),
        "severity": str(alert.severity),
        "state": state,
        "taken": state == "acknowledged",
        "state_words": i18n.t("taken_by", lang, by=by) if by else i18n.state_name(state, lang),
        "room": labels.get(alert.room, alert.room) if alert.room else "",
        "since": i18n.clock_time(alert.raised_at, tz, now, lang),
        "raised_at": alert.raised_at,
        "evidence": i18n.evidence_words(evidence, lang),
    }


def status_view(
    state: Any, profile: Any, now: float, lang: str, big: bool = False
) -> dict[str, Any]:
    """Everything the status page shows, as plain data (no raw sensor stream)."""
    tz = state.tz
    labels = room_labels(profile, lang)
    alerts = sorted((alert_view(a, tz, now, lang, labels) for a in state.open_alerts), key=urgency)
    person = [a for a in alerts if a["type"] not in SENSOR_ALERT_TYPES]

    last = None
    if state.last_activity_at is not None:
        last = {
            "ago": i18n.t("ago", lang, d=i18n.duration(now - state.last_activity_at, lang)),
            "at": i18n.clock_time(state.last_activity_at, tz, now, lang),
            "room": labels.get(state.last_activity_room or "", state.last_activity_room or ""),
        }

    today = dt.datetime.fromtimestamp(now, tz).date().isoformat()
    rooms = state.today_rooms if state.today == today else {}
    today_total = sum(sum(v) for v in rooms.values())
    days = [d for d in list(state.daily)[-PLOT_DAYS:] if isinstance(d, dict)]
    totals = [charts.daily_activity(d) for d in days]
    usual = round(mean(totals)) if totals else None
    timeline_rooms = {name: rooms.get(name, [0] * 24) for name in labels} | dict(rooms)
    timeline = charts.day_timeline(
        timeline_rooms,
        labels,
        i18n.t("timeline_caption", lang),
        dt.datetime.fromtimestamp(now, tz).hour,
        big=big,
    )
    bars = None
    if days:
        bars = charts.daily_bars(
            days,
            i18n.t("days14_caption", lang),
            i18n.t("get_up_axis", lang),
            big=big,
            activity_label=i18n.t("activity_axis", lang),
        )

    sensors = []
    names = {d.id: d for d in getattr(profile, "devices", ())}
    for row in state.devices:
        if not (row.get("offline") or row.get("low_battery")):
            continue
        dev = names.get(row["id"])
        problems = []
        if row.get("low_battery"):
            battery = row.get("battery")
            problems.append(
                i18n.t("battery_low", lang, pct=round(battery))
                if isinstance(battery, int | float)
                else i18n.t("battery_low_nopct", lang)
            )
        if row.get("offline"):
            seen = row.get("last_seen")
            problems.append(
                i18n.t("silent", lang, d=i18n.duration(now - seen, lang))
                if isinstance(seen, int | float)
                else i18n.t("silent_never", lang)
            )
        sensors.append(
            {
                "id": row["id"],
                "name": device_label(dev, profile, lang) if dev else row["id"],
                "problems": ", ".join(problems),
            }
        )
    contacts = [
        {"name": c.name, "phone": c.phone, "relation": c.relation}
        for c in getattr(profile, "contacts", ())
    ]
    return {
        "resident": getattr(profile, "resident", ""),
        "contacts": contacts,
        "any_taken": any(a["taken"] for a in person),
        "today_words": (
            i18n.tn("today_vs_usual", today_total, lang, n=today_total, u=usual)
            if usual is not None
            else i18n.tn("today_count", today_total, lang, n=today_total)
        ),
        "all_well": not person,
        "alerts": person,
        "other_alerts": [a for a in alerts if a["type"] in SENSOR_ALERT_TYPES],
        "last": last,
        "today_total": today_total,
        "usual": usual,
        "timeline": Markup(timeline),  # noqa: S704 - built by charts with escaped labels
        "bars": Markup(bars) if bars else None,  # noqa: S704
        "hub_ok": bool(state.hub_connected),
        "sensors": sensors,
        "updated": dt.datetime.fromtimestamp(now, tz).strftime("%H:%M:%S"),
    }


def _view(request: Request) -> dict[str, Any]:
    pages = pages_of(request)
    big = "big" in prefs_of(request)
    return status_view(pages.state, pages.profile(), pages.now(), lang_of(request), big)


@router.get("/", response_model=None)
def status_page(request: Request, session: FamilySession) -> Response:
    """The family's page: one glance says whether all is well."""
    return render(
        request, "status.html", {"v": _view(request), "refresh_s": REFRESH_S}, session=session
    )


@router.get("/status/partial", response_model=None)
def status_partial(request: Request, session: FamilySession) -> Response:
    """The page's body alone, fetched by the page every few seconds."""
    return render(request, "status_body.html", {"v": _view(request)}, session=session)


@router.get("/api/status")
def status_json(request: Request, session: FamilySession) -> JSONResponse:
    """The same summary as JSON (no raw sensor streams)."""
    v = _view(request)
    body = {
        k: v[k]
        for k in (
            "resident",
            "all_well",
            "alerts",
            "other_alerts",
            "last",
            "today_total",
            "usual",
            "hub_ok",
            "sensors",
            "updated",
        )
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})
