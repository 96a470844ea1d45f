"""The console as an installable web app, and staff phones subscribing to web push.

Served without a session (browsers fetch them without cookies, and they hold no data):
`/manifest.webmanifest`, the service worker `/sw.js` (root scope, so it sees every console
page), `/pwa.js` (registers the worker; the subscription page's button), the icons
`/icons/*.png` (drawn by `scripts/make_icons.py`) and `/hors-ligne`, the page the worker
shows when the console cannot be reached. The worker caches that page only: never an alert,
so a phone offline never shows stale alerts as current. It shows each push the hub sends
(`notify.webpush.payload`: title, body, the one-click acknowledgement link) and opens the
link when tapped.

Behind the staff session: `/notifications` (the page with "Recevoir les alertes sur ce
téléphone"), `GET /api/push/key` (the VAPID public key the browser subscribes with),
`POST /api/push/subscribe` and `/api/push/unsubscribe` (JSON, CSRF token in `X-CSRF-Token`):
the subscription is kept in the hub's store (`push_subscriptions`) and the web push channel
sends to it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from cloud_bridge.console_staff import StaffSession
from cloud_bridge.pages import i18n
from cloud_bridge.pages.web import Csrf, lang_of, render, verify_csrf
from cloud_bridge.push_subscriptions import ENDPOINT_MAX, PushSubscriptions, parse_subscription

_LOGGER = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
ICONS = ("icon-192.png", "icon-512.png", "icon-maskable-512.png")
OFFLINE_PATH = "/hors-ligne"
BODY_MAX = 4096  # bytes of a posted subscription
THEME = "#174a8b"  # the pages' accent (`_style.css`)
BACKGROUND = "#fbfaf7"
CSRF_HEADER = "x-csrf-token"
SERVICES = (  # push services by host suffix, as staff know them
    ("fcm.googleapis.com", "Chrome / Android"),
    ("push.apple.com", "iPhone / Safari"),
    ("push.services.mozilla.com", "Firefox"),
    ("notify.windows.com", "Edge / Windows"),
)
STATIC_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
MANIFEST: dict[str, Any] = {
    "id": "/",
    "name": "Veille — console des soignants",
    "short_name": "Veille",
    "description": "Les alertes des logements suivis, et les prendre en charge.",
    "lang": "fr",
    "dir": "ltr",
    "start_url": "/",
    "scope": "/",
    "display": "standalone",
    "orientation": "any",
    "background_color": BACKGROUND,
    "theme_color": THEME,
    "icons": [
        {"src": "/icons/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any"},
        {"src": "/icons/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any"},
        {
            "src": "/icons/icon-maskable-512.png",
            "sizes": "512x512",
            "type": "image/png",
            "purpose": "maskable",
        },
    ],
}
TEXTS: dict[str, tuple[str, str]] = {  # the subscription page's words: (French, English)
    "title": ("Alertes sur ce téléphone", "Alerts on this phone"),
    "intro": (
        "Recevez chaque alerte sur ce téléphone, même console fermée. Touchez la notification"
        " pour prendre l'alerte en charge.",
        "Receive every alert on this phone, even with the console closed. Tap the"
        " notification to take the alert in charge.",
    ),
    "on_button": ("Recevoir les alertes sur ce téléphone", "Receive alerts on this phone"),
    "off_button": ("Ne plus recevoir les alertes ici", "Stop receiving alerts here"),
    "on": ("Ce téléphone reçoit les alertes.", "This phone receives the alerts."),
    "off": ("Ce téléphone ne reçoit pas les alertes.", "This phone does not receive the alerts."),
    "unsupported": (
        "Ce navigateur ne sait pas recevoir de notifications. Sur iPhone, ajoutez d'abord la"
        " console à l'écran d'accueil (Partager, puis « Sur l'écran d'accueil »).",
        "This browser cannot receive notifications. On an iPhone, first add the console to"
        " the home screen (Share, then “Add to Home Screen”).",
    ),
    "insecure": (
        "Les notifications demandent une console en https:// : ouvrez-la par son adresse"
        " sécurisée.",
        "Notifications need the console over https://: open it by its secure address.",
    ),
    "denied": (
        "Les notifications sont refusées pour la console : autorisez-les dans les réglages du"
        " navigateur, puis réessayez.",
        "Notifications are blocked for the console: allow them in the browser's settings,"
        " then try again.",
    ),
    "error": (
        "L'abonnement n'a pas pu être enregistré. Réessayez.",
        "The subscription could not be saved. Try again.",
    ),
    "busy": ("Un instant…", "One moment…"),
    "not_set_up": (
        "Le hub n'envoie pas de notifications sur les téléphones (pas de canal web push dans"
        " sa configuration).",
        "The hub sends no notifications to phones (no web push channel in its settings).",
    ),
    "devices": ("Vos appareils abonnés", "Your subscribed devices"),
    "no_device": ("Aucun appareil abonné.", "No subscribed device."),
    "since": ("depuis", "since"),
    "remove": ("Retirer", "Remove"),
    "offline_title": ("Console injoignable", "Console unreachable"),
    "offline": (
        "La console ne répond pas : ce téléphone n'a pas de réseau, ou le hub est arrêté."
        " Aucune alerte n'est affichée tant qu'elle est injoignable. Vérifiez le réseau puis"
        " réessayez ; si la console reste injoignable, prévenez la personne qui administre"
        " le hub.",
        "The console does not answer: this phone has no network, or the hub is down. No"
        " alert is shown while it cannot be reached. Check the network and try again; if"
        " the console stays unreachable, tell whoever runs the hub.",
    ),
    "retry": ("Réessayer", "Try again"),
}


def service_name(host: str) -> str:
    """`fcm.googleapis.com` -> "Chrome / Android"; an unknown push service by its host."""
    return next((name for suffix, name in SERVICES if host.endswith(suffix)), host)


def words(lang: str) -> dict[str, str]:
    index = 1 if lang == "en" else 0
    return {key: pair[index] for key, pair in TEXTS.items()}


@dataclass(frozen=True, slots=True)
class Push:
    """What the console needs for subscriptions: where they are kept, and the key of the
    hub's web push channel (`notify.webpush.application_server_key`)."""

    subscriptions: PushSubscriptions
    vapid_key: str


def _static(name: str, media_type: str, **headers: str) -> Response:
    return Response(
        (STATIC / name).read_bytes(), media_type=media_type, headers={**STATIC_HEADERS, **headers}
    )


def install_pwa(app: FastAPI, console: Any, push: Push | None = None) -> None:
    """Add the manifest, the service worker, the icons, the offline page and (with `push`)
    the subscription routes to the console app; console pages then link the manifest and
    register the worker (`pwa` in the templates)."""
    console.templates.env.globals["pwa"] = True

    @app.get("/manifest.webmanifest", include_in_schema=False)
    def manifest() -> Response:
        body = json.dumps(MANIFEST, ensure_ascii=False).encode()
        return Response(body, media_type="application/manifest+json", headers=STATIC_HEADERS)

    @app.get("/sw.js", include_in_schema=False)
    def service_worker() -> Response:
        # scope "/" is the script's own folder: the header says so for proxies that move it
        return _static("sw.js", "text/javascript", **{"Service-Worker-Allowed": "/"})

    @app.get("/pwa.js", include_in_schema=False)
    def page_script() -> Response:
        return _static("pwa.js", "text/javascript")

    @app.get("/icons/{name}", include_in_schema=False)
    def icon(name: str) -> Response:
        if name not in ICONS:
            raise HTTPException(404, "no such icon")
        return _static(name, "image/png", **{"Cache-Control": "public, max-age=86400"})

    @app.get(OFFLINE_PATH, response_model=None, include_in_schema=False)
    def offline(request: Request) -> Response:
        """Shown by the worker when the console is unreachable: no alert, both languages."""
        return render(request, "offline.html", {"fr": words("fr"), "en": words("en")})

    @app.get("/notifications", response_model=None)
    def notifications(request: Request, session: StaffSession) -> Response:
        """This staff member's phones: subscribe this one, or stop."""
        lang = lang_of(request)
        devices = push.subscriptions.devices(session.name) if push is not None else []
        now = console.clock()
        return render(
            request,
            "notifications.html",
            {
                "w": words(lang),
                "ready": push is not None,
                "devices": [
                    {
                        "endpoint": d.endpoint,
                        "service": service_name(d.service),
                        "since": i18n.clock_time(d.created_at, console.tz, now, lang),
                    }
                    for d in devices
                ],
            },
            session=session,
        )

    if push is None:
        return

    @app.post("/notifications/retirer", response_model=None)
    def remove_device(
        request: Request,
        session: StaffSession,
        csrf: Csrf,
        endpoint: Annotated[str, Form(max_length=ENDPOINT_MAX)],
    ) -> Response:
        """Stop pushing to one of this staff member's devices (a lost or shared phone)."""
        verify_csrf(request, csrf)
        if push.subscriptions.remove(endpoint, staff=session.name):
            _LOGGER.info("console: %s removed a phone from web push", session.name)
        return RedirectResponse("/notifications", status_code=303)

    @app.get("/api/push/key")
    def push_key(session: StaffSession) -> JSONResponse:
        """The VAPID public key (base64url) for `pushManager.subscribe`."""
        return JSONResponse({"key": push.vapid_key}, headers={"Cache-Control": "no-store"})

    async def posted(request: Request) -> dict[str, Any]:
        """The JSON body of a subscription POST, after the CSRF check (403)."""
        verify_csrf(request, request.headers.get(CSRF_HEADER, ""))
        body = await request.body()
        if len(body) > BODY_MAX:
            raise HTTPException(413, "subscription too large")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise HTTPException(422, "the body must be JSON") from exc
        if not isinstance(data, dict):
            raise HTTPException(422, "the body must be a JSON object")
        return data

    @app.post("/api/push/subscribe")
    async def subscribe(request: Request, session: StaffSession) -> JSONResponse:
        """Keep this browser's `PushSubscription.toJSON()` for the signed-in staff member."""
        data = await posted(request)
        try:
            sub = parse_subscription(data)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        await run_in_threadpool(
            push.subscriptions.put, sub, push.vapid_key, session.name, console.clock()
        )
        _LOGGER.info("console: %s subscribed a phone to web push", session.name)
        return JSONResponse({"subscribed": True}, status_code=201)

    @app.post("/api/push/unsubscribe")
    async def unsubscribe(request: Request, session: StaffSession) -> JSONResponse:
        """Forget the endpoint this browser no longer wants pushed to."""
        endpoint = (await posted(request)).get("endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise HTTPException(422, "an endpoint is needed")
        removed = await run_in_threadpool(push.subscriptions.remove, endpoint)
        _LOGGER.info("console: %s unsubscribed a phone from web push", session.name)
        return JSONResponse({"removed": removed})
