"""`/login` (family PIN or installer code), `/logout` and display preferences."""

from __future__ import annotations

import logging
import math
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from edge.status.app import (
    PREFS,
    PREFS_COOKIE,
    lang_of,
    pages_of,
    render,
    require,
    session_of,
)
from edge.status.auth import (
    CSRF_COOKIE,
    FAMILY_SESSION_S,
    INSTALLER_SESSION_S,
    SESSION_COOKIE,
    Session,
    client_key,
    safe_next,
    same_origin,
    set_cookie,
)

_LOGGER = logging.getLogger(__name__)

PIN_MAX_CHARS = 64
PREFS_COOKIE_S = 365 * 24 * 3600.0

router = APIRouter(tags=["login"])
FamilySession = Annotated[Session, Depends(require("family"))]


def verify_csrf(request: Request, token: str) -> None:
    """403 unless the form's token matches the visitor's CSRF cookie and the origin is ours."""
    pages = pages_of(request)
    if not same_origin(request):
        raise HTTPException(403, "cross-site request refused")
    if not pages.signer.csrf_ok(request.cookies.get(CSRF_COOKIE), token):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")


@router.get("/login", response_model=None)
def login_page(request: Request, next: str = "/") -> Response:
    """The PIN form (also used by the installer with the installer code)."""
    pages = pages_of(request)
    session = session_of(request, pages)
    target = safe_next(next)
    if session is not None and (session.role == "installer" or not target.startswith("/installer")):
        return RedirectResponse(target, status_code=303)
    return render(request, "login.html", {"next": target, "error": ""})


@router.post("/login", response_model=None)
def login(
    request: Request,
    pin: Annotated[str, Form(max_length=PIN_MAX_CHARS)],
    next: Annotated[str, Form(max_length=512)] = "/",
) -> Response:
    """Check the code; set the session cookie (HttpOnly, SameSite=Strict) or refuse."""
    pages = pages_of(request)
    lang = lang_of(request)
    target = safe_next(next)
    if not same_origin(request):
        raise HTTPException(403, "cross-site request refused")
    client = client_key(request)
    decision = pages.throttle.check(client)
    if not decision.allowed:
        from edge.status import i18n

        wait = max(1, math.ceil(decision.wait_s))
        message = (
            i18n.t("login_locked", lang, m=max(1, math.ceil(wait / 60)))
            if decision.locked
            else i18n.t("login_wait", lang, s=wait)
        )
        response = render(
            request, "login.html", {"next": target, "error": message}, status_code=429
        )
        response.headers["Retry-After"] = str(wait)
        return response
    role = None
    if pages.registry.check_secret("installer", pin):
        role = "installer"
    elif pages.registry.check_secret("family_pin", pin):
        role = "family"
    if role is None:
        pages.throttle.failed(client)
        _LOGGER.warning("status page: wrong code from %s", client)
        from edge.status import i18n

        return render(
            request,
            "login.html",
            {"next": target, "error": i18n.t("login_wrong", lang)},
            status_code=401,
        )
    pages.throttle.succeeded(client)
    ttl = INSTALLER_SESSION_S if role == "installer" else FAMILY_SESSION_S
    if role == "installer" and target == "/":
        target = "/installer"
    if role == "family" and target.startswith("/installer"):
        target = "/"
    response = RedirectResponse(target, status_code=303)
    cookie = pages.signer.session_cookie(role, role, pages.wall() + ttl)
    set_cookie(response, SESSION_COOKIE, cookie, ttl, request.url.scheme == "https")
    _LOGGER.info("status page: %s signed in from %s", role, client)
    return response


@router.post("/logout", response_model=None)
def logout(
    request: Request, session: FamilySession, csrf: Annotated[str, Form(max_length=128)]
) -> Response:
    """Forget the session cookie."""
    verify_csrf(request, csrf)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/prefs", response_model=None)
def prefs(
    request: Request,
    session: FamilySession,
    csrf: Annotated[str, Form(max_length=128)],
    toggle: Annotated[str, Form(max_length=16)],
    back: Annotated[str, Form(max_length=512)] = "/",
) -> Response:
    """Switch large text or high contrast on or off (kept in a cookie)."""
    verify_csrf(request, csrf)
    if toggle not in PREFS:
        raise HTTPException(422, "unknown preference")
    current = {p for p in request.cookies.get(PREFS_COOKIE, "").split(",") if p in PREFS}
    current ^= {toggle}
    response = RedirectResponse(safe_next(back), status_code=303)
    set_cookie(
        response,
        PREFS_COOKIE,
        ",".join(sorted(current)),
        PREFS_COOKIE_S,
        request.url.scheme == "https",
    )
    return response
