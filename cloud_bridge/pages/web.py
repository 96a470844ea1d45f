"""What the gateway's pages and the hub's care console share: one way to serve a page.

Both apps keep their shared objects (`edge.status.deps.Pages`, `cloud_bridge.console.Console`)
on `app.state.site` (`install`); the helpers here read what they need from it (`Site`):
a page in the visitor's language with a CSRF token, a script nonce and a strict CSP, the
CSRF check of a form, the redirect to `/login`, the throttled sign-in's refusals, and the
`/logout` and `/prefs` routes (behind each app's own session dependency).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from cloud_bridge.pages import i18n
from cloud_bridge.pages.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    LoginThrottle,
    NeedLogin,
    Session,
    SessionStore,
    Signer,
    client_key,
    csrf_nonce,
    safe_next,
    same_origin,
    set_cookie,
)

TEMPLATES_DIR = Path(__file__).with_name("templates")  # base.html and _style.css: both apps
CSRF_COOKIE_S = 30 * 24 * 3600.0
LANG_COOKIE_S = 365 * 24 * 3600.0
PREFS_COOKIE = "veille_prefs"
PREFS_COOKIE_S = 365 * 24 * 3600.0
PREFS = ("big", "contrast")
SCRIPT_NONCE_BYTES = 12
# sent with every page (the CSP is added per page, with its script nonce)
PAGE_HEADERS: Mapping[str, str] = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

Csrf = Annotated[str, Form(max_length=128)]


class Site(Protocol):
    """What an app keeps on `app.state.site` for these helpers."""

    @property
    def signer(self) -> Signer:
        """Signs the session cookies and CSRF tokens."""
        ...

    @property
    def templates(self) -> Jinja2Templates:
        """Where the pages' templates are found."""
        ...

    @property
    def home_id(self) -> str:
        """The home the pages speak of ("" in the console, which serves many)."""
        ...

    @property
    def page_headers(self) -> Mapping[str, str]:
        """Headers sent with every page besides the CSP."""
        ...

    @property
    def throttle(self) -> LoginThrottle:
        """Wrong codes per client and for everyone."""
        ...

    @property
    def sessions(self) -> SessionStore:
        """The open sessions (a signed cookie whose session is not here is refused)."""
        ...

    def credential(self, role: str, name: str) -> str:
        """The current version of the credential `role`/`name` signs in with."""
        ...


def site_of(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


def install(app: FastAPI, site: Site, session: Callable[[Request], Session]) -> None:
    """Serve `site`'s pages: NeedLogin goes to /login; `/logout` and `/prefs` behind `session`."""
    app.state.site = site
    app.exception_handler(NeedLogin)(login_redirect)
    app.include_router(account_router(session))


def session_of(request: Request, now: float) -> Session | None:
    """The visitor's session if their cookie holds a valid one at `now`: signed, unexpired,
    not logged out, and opened with the credential as it is now."""
    site = site_of(request)
    session = site.signer.read_session(request.cookies.get(SESSION_COOKIE), now)
    if session is None:
        return None
    if not site.sessions.alive(session, site.credential(session.role, session.name), now):
        return None
    return session


def lang_of(request: Request) -> str:
    """`?lang=`, then the language cookie, then Accept-Language (French by default)."""
    return i18n.pick_lang(
        request.query_params.get("lang"),
        request.cookies.get(i18n.LANG_COOKIE),
        request.headers.get("accept-language"),
    )


def prefs_of(request: Request) -> list[str]:
    """The visitor's display preferences (large text, high contrast) from their cookie."""
    return [p for p in request.cookies.get(PREFS_COOKIE, "").split(",") if p in PREFS]


def csp(script_nonce: str) -> str:
    """Nothing from elsewhere; only the page's own scripts run (the console's: also its
    manifest and service worker, `cloud_bridge.console_pwa`)."""
    return (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        f"script-src 'nonce-{script_nonce}'; connect-src 'self'; form-action 'self'; "
        "manifest-src 'self'; worker-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
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
    site = site_of(request)
    lang = lang_of(request)
    nonce, new_nonce = csrf_nonce(request)
    script_nonce = secrets.token_urlsafe(SCRIPT_NONCE_BYTES)

    def tr(key: str, **kw: Any) -> str:
        return i18n.t(key, lang, **kw)

    response = site.templates.TemplateResponse(
        request,
        name,
        {
            "t": tr,
            "lang": lang,
            "other_lang": "en" if lang == "fr" else "fr",
            "csrf": site.signer.csrf_token(nonce),
            "script_nonce": script_nonce,
            "prefs": prefs_of(request),
            "session": session,
            "home_id": site.home_id,
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
    response.headers.update(site.page_headers)
    return response


def verify_csrf(request: Request, token: str) -> None:
    """403 unless the form's token matches the visitor's CSRF cookie and the origin is ours."""
    if not same_origin(request):
        raise HTTPException(403, "cross-site request refused")
    if not site_of(request).signer.csrf_ok(request.cookies.get(CSRF_COOKIE), token):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")


# --- sign-in ---------------------------------------------------------------------------------
def need_login(request: Request, api_prefixes: tuple[str, ...]) -> NeedLogin:
    """What a session dependency raises: 401 for the APIs, a way back after /login for pages."""
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return NeedLogin(request.url.path.startswith(api_prefixes), path)


def login_redirect(request: Request, exc: NeedLogin) -> Response:
    """The apps' NeedLogin handler: 401 JSON for the APIs, 303 to /login for pages."""
    if exc.api:
        return JSONResponse({"detail": "login required"}, status_code=401)
    query = [] if exc.next_path in ("/", "") else [f"next={quote(exc.next_path)}"]
    if request.cookies.get(SESSION_COOKIE):  # a session cookie that no longer opens anything
        query.append("why=expired")
    target = "/login" + ("?" + "&".join(query) if query else "")
    return RedirectResponse(target, status_code=303)


def throttled_login(request: Request, template: str, context: dict[str, Any]) -> Response | None:
    """Before a code is checked: 403 cross-site, the form again with 429 while throttled.

    An allowed try is counted as wrong at once (`LoginThrottle.attempt`); `signed_in` takes
    it back."""
    if not same_origin(request):
        raise HTTPException(403, "cross-site request refused")
    decision = site_of(request).throttle.attempt(client_key(request))
    if decision.allowed:
        return None
    lang = lang_of(request)
    wait = max(1, math.ceil(decision.wait_s))
    message = (
        i18n.tn("login_locked", math.ceil(wait / 60), lang, m=max(1, math.ceil(wait / 60)))
        if decision.locked
        else i18n.tn("login_wait", wait, lang, s=wait)
    )
    response = render(request, template, {**context, "error": message}, status_code=429)
    response.headers["Retry-After"] = str(wait)
    return response


def wrong_login(request: Request, template: str, context: dict[str, Any]) -> Response:
    """Show the form again (401); the try was counted by `throttled_login`."""
    error = i18n.t("login_wrong", lang_of(request))
    return render(request, template, {**context, "error": error}, status_code=401)


def signed_in(
    request: Request, target: str, *, role: str, name: str, now: float, ttl_s: float
) -> Response:
    """Forget the client's wrong codes, open a session and go on to `target` with its cookie."""
    site = site_of(request)
    site.throttle.succeeded(client_key(request))
    session = Session(role, name, now + ttl_s, secrets.token_hex(16))
    site.sessions.start(session, site.credential(role, name), now)
    response = RedirectResponse(target, status_code=303)
    set_cookie(
        response, SESSION_COOKIE, site.signer.cookie(session), ttl_s, request.url.scheme == "https"
    )
    return response


# --- /logout and /prefs ----------------------------------------------------------------------
def account_router(session: Callable[[Request], Session]) -> APIRouter:
    """`/logout` and `/prefs`, both behind the app's session dependency `session`."""
    router = APIRouter(tags=["login"], dependencies=[Depends(session)])

    @router.post("/logout", response_model=None)
    def logout(
        request: Request,
        csrf: Csrf,
        current: Session = Depends(session),  # noqa: B008 - a closure: no Annotated alias
    ) -> Response:
        """End the session (a copy of its cookie is refused from now on), forget the cookie."""
        verify_csrf(request, csrf)
        site_of(request).sessions.end(current.sid)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    @router.post("/prefs", response_model=None)
    def prefs(
        request: Request,
        csrf: Csrf,
        toggle: Annotated[str, Form(max_length=16)],
        back: Annotated[str, Form(max_length=512)] = "/",
    ) -> Response:
        """Switch large text or high contrast on or off (kept in a cookie)."""
        verify_csrf(request, csrf)
        if toggle not in PREFS:
            raise HTTPException(422, "unknown preference")
        current = set(prefs_of(request)) ^ {toggle}
        response = RedirectResponse(safe_next(back), status_code=303)
        set_cookie(
            response,
            PREFS_COOKIE,
            ",".join(sorted(current)),
            PREFS_COOKIE_S,
            request.url.scheme == "https",
        )
        return response

    return router
