"""`/login` with the family PIN or the installer code (`/logout` and `/prefs`: `web`)."""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from cloud_bridge.pages import i18n
from cloud_bridge.pages.auth import FAMILY_SESSION_S, INSTALLER_SESSION_S, client_key, safe_next
from cloud_bridge.pages.web import lang_of, render, signed_in, throttled_login, wrong_login
from edge.status.deps import pages_of, session_of

_LOGGER = logging.getLogger(__name__)

PIN_MAX_CHARS = 64

router = APIRouter(tags=["login"])


@router.get("/login", response_model=None)
def login_page(request: Request, next: str = "/", why: str = "") -> Response:
    """The PIN form (also used by the installer with the installer code). `why` says why the
    visitor is here: their session expired, or the family's code was typed for /installer."""
    pages = pages_of(request)
    session = session_of(request, pages)
    target = safe_next(next)
    if session is not None and (session.role == "installer" or not target.startswith("/installer")):
        return RedirectResponse(target, status_code=303)
    lang = lang_of(request)
    notice = ""
    family_here = session is not None and session.role == "family"
    if family_here and target.startswith("/installer"):
        notice = i18n.t("login_family_code", lang)
    elif why == "expired" and session is None:
        notice = i18n.t("login_expired", lang)
    return render(
        request,
        "login.html",
        {"next": target, "error": "", "notice": notice, "family_here": family_here},
    )


@router.post("/login", response_model=None)
def login(
    request: Request,
    pin: Annotated[str, Form(max_length=PIN_MAX_CHARS)],
    next: Annotated[str, Form(max_length=512)] = "/",
) -> Response:
    """Check the code; set the session cookie (HttpOnly, SameSite=Strict) or refuse."""
    pages = pages_of(request)
    target = safe_next(next)
    refused = throttled_login(request, "login.html", {"next": target})
    if refused is not None:
        return refused
    client = client_key(request)
    role = None
    if pages.registry.check_secret("installer", pin):
        role = "installer"
    elif pages.registry.check_secret("family_pin", pin):
        role = "family"
    if role is None:
        _LOGGER.warning("status page: wrong code from %s", client)
        return wrong_login(request, "login.html", {"next": target})
    ttl = INSTALLER_SESSION_S if role == "installer" else FAMILY_SESSION_S
    if role == "installer" and target == "/":
        target = "/installer"
    if role == "family" and target.startswith("/installer"):
        # the wrong door: the family's session opens, and the form says what happened
        target = f"/login?next={quote(target)}"
    _LOGGER.info("status page: %s signed in from %s", role, client)
    return signed_in(request, target, role=role, name=role, now=pages.wall(), ttl_s=ttl)
