"""The gateway's HTTP listener: `/health`, the family status page and the installer pages.

`create_app(state, registry=..., core=..., gateway=...)` builds one FastAPI app per gateway.
Shared objects live in one `Pages` value on `app.state.pages` (no module globals); the
routers (`login`, `family`, `installer`) stay thin and call pure view builders.

Every route needs a session except `/login` and `/health` (the route-enumerating auth test
makes sure a new route cannot slip through): pages answer 303 to `/login`, JSON APIs 401.
The app refuses to be built until both the family PIN and the installer secret are set.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from edge.errors import ConfigError
from edge.state import HomeState
from edge.status import i18n
from edge.status.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    LoginThrottle,
    NeedLogin,
    Session,
    Signer,
    csrf_nonce,
    gateway_session_key,
    set_cookie,
)

TEMPLATES_DIR = Path(__file__).with_name("templates")
CSRF_COOKIE_S = 30 * 24 * 3600.0
LANG_COOKIE_S = 365 * 24 * 3600.0
PREFS_COOKIE = "veille_prefs"
PREFS = ("big", "contrast")
API_PREFIXES = ("/api/", "/installer/api/")


@dataclass
class Pages:
    """What every route of the gateway app needs."""

    state: HomeState
    registry: Any
    core: Any = None
    gateway: Any = None
    signer: Signer = field(default_factory=lambda: Signer(secrets.token_bytes(32)))
    throttle: LoginThrottle = field(default_factory=lambda: LoginThrottle(time.monotonic))
    templates: Jinja2Templates = field(
        default_factory=lambda: Jinja2Templates(directory=str(TEMPLATES_DIR))
    )
    wall: Callable[[], float] = time.time  # for cookie expiry: real time, never simulated
    walkthrough: dict[str, Any] = field(default_factory=dict)

    def now(self) -> float:
        """The pipeline's time basis (simulated in the demo), for 'how long ago'."""
        clock = getattr(self.gateway, "clock", None)
        return float(clock.now()) if clock is not None else time.time()

    def profile(self) -> Any:
        core_profile = getattr(self.core, "profile", None)
        return core_profile if core_profile is not None else self.registry.profile()


def pages_of(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


def session_of(request: Request, pages: Pages) -> Session | None:
    return pages.signer.read_session(request.cookies.get(SESSION_COOKIE), pages.wall())


def require(role: str) -> Callable[[Request], Session]:
    """A dependency: the visitor's session if it allows `role` pages, NeedLogin otherwise."""

    def dependency(request: Request) -> Session:
        pages = pages_of(request)
        session = session_of(request, pages)
        allowed = session is not None and (
            session.role == role or (role == "family" and session.role == "installer")
        )
        if not allowed or session is None:
            path = request.url.path
            if request.url.query:
                path += "?" + request.url.query
            raise NeedLogin(request.url.path.startswith(API_PREFIXES), path)
        return session

    dependency.__name__ = f"require_{role}"
    return dependency


def lang_of(request: Request) -> str:
    return i18n.pick_lang(
        request.query_params.get("lang"),
        request.cookies.get(i18n.LANG_COOKIE),
        request.headers.get("accept-language"),
    )


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    session: Session | None = None,
) -> Response:
    """A page in the visitor's language, with a CSRF token and a strict CSP."""
    pages = pages_of(request)
    lang = lang_of(request)
    nonce, new_nonce = csrf_nonce(request)
    script_nonce = secrets.token_urlsafe(12)
    prefs = [p for p in request.cookies.get(PREFS_COOKIE, "").split(",") if p in PREFS]

    def tr(key: str, **kw: Any) -> str:
        return i18n.t(key, lang, **kw)

    response = pages.templates.TemplateResponse(
        request,
        name,
        {
            "t": tr,
            "lang": lang,
            "other_lang": "en" if lang == "fr" else "fr",
            "csrf": pages.signer.csrf_token(nonce),
            "script_nonce": script_nonce,
            "prefs": prefs,
            "session": session,
            "home_id": pages.state.home_id,
            **context,
        },
        status_code=status_code,
    )
    secure = request.url.scheme == "https"
    if new_nonce:
        set_cookie(response, CSRF_COOKIE, nonce, CSRF_COOKIE_S, secure)
    if request.query_params.get("lang") in i18n.LANGS:
        set_cookie(response, i18n.LANG_COOKIE, lang, LANG_COOKIE_S, secure)
    response.headers["Content-Security-Policy"] = csp(script_nonce)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def csp(script_nonce: str) -> str:
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        f"script-src 'nonce-{script_nonce}'; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def check_credentials(registry: Any) -> None:
    """Refuse to serve pages while a credential is missing (ConfigError with the fix)."""
    if registry is None:
        raise ConfigError("the status pages need the registry (where the PINs are kept)")
    missing = [
        who
        for who, kind in (("family", "family_pin"), ("installer", "installer"))
        if not registry.has_secret(kind)
    ]
    if missing:
        raise ConfigError(
            "the status and installer pages refuse to start without credentials: set "
            + " and ".join(f"`veille provision set-pin {who} ...`" for who in missing)
        )


def create_app(state: HomeState, **services: Any) -> FastAPI:
    """One app per gateway; `services`: registry (required), core, gateway."""
    from edge.status import family, installer, login

    registry = services.get("registry")
    check_credentials(registry)
    # no /docs or /openapi.json: nothing answers without a credential but /login and /health
    app = FastAPI(
        title="Veille gateway", version="1", docs_url=None, redoc_url=None, openapi_url=None
    )
    pages = Pages(
        state=state,
        registry=registry,
        core=services.get("core"),
        gateway=services.get("gateway"),
        signer=Signer(gateway_session_key(registry)),
    )
    if "clock" in services:
        pages.throttle = LoginThrottle(services["clock"])
        pages.wall = services["clock"]
    app.state.home = state
    app.state.services = services
    app.state.pages = pages

    @app.get("/health", tags=["health"])
    def health() -> JSONResponse:
        """200 once subscribed to the local broker with detectors loaded, 503 before."""
        body = state.health_dict()
        return JSONResponse(body, status_code=200 if state.ready else 503)

    @app.exception_handler(NeedLogin)
    def need_login(request: Request, exc: NeedLogin) -> Response:
        if exc.api:
            return JSONResponse({"detail": "login required"}, status_code=401)
        from urllib.parse import quote

        target = "/login" if exc.next_path in ("/", "") else f"/login?next={quote(exc.next_path)}"
        return RedirectResponse(target, status_code=303)

    app.include_router(login.router)
    app.include_router(family.router)
    app.include_router(installer.router)
    return app
