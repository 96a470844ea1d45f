"""The console's staff-session dependencies, apart from `console` so that the pages added
beside it (`ack_page`, `directory_page`, `outcome_page`) use them without importing the
console module that installs them.

A session can end while someone types a note (12 hours passed, a logout elsewhere, a new
password). The alert actions then take `MaybeStaff` and answer with `keep_draft`: what was
typed goes into a short-lived signed cookie (`veille_draft`, HttpOnly, SameSite=Strict),
the browser goes to `/login?next=/alerts/{id}`, and after signing in again the alert page
(or the closing form) finds the note and the outcome there (`take_draft`), ready to
confirm. Only a POST that passes the CSRF check keeps a draft, so no other site can plant one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from cloud_bridge.pages import web
from cloud_bridge.pages.auth import CSRF_COOKIE, NeedLogin, Session, same_origin, set_cookie

DRAFT_COOKIE = "veille_draft"
DRAFT_S = 30 * 60.0
DRAFT_PURPOSE = "draft"
COOKIE_MAX = 3800  # what a browser keeps of one cookie, with room for its name and flags


def console_of(request: Request) -> Any:
    """The app's `console.Console`."""
    return request.app.state.console


def staff_or_none(request: Request) -> Session | None:
    """A dependency: the staff session, or None (the route says what to do without one)."""
    session = web.session_of(request, console_of(request).clock())
    return session if session is not None and session.role == "staff" else None


def staff(request: Request) -> Session:
    """A dependency: the staff session, or NeedLogin."""
    session = staff_or_none(request)
    if session is None:
        raise web.need_login(request, ("/api/",))
    return session


StaffSession = Annotated[Session, Depends(staff)]
MaybeStaff = Annotated[Session | None, Depends(staff_or_none)]


def action_page(alert_id: str, action: str) -> str:
    """Where an action on an alert is done again: its closing form, or the alert page."""
    return f"/alerts/{alert_id}/close" if action == "close" else f"/alerts/{alert_id}"


def keep_draft(
    request: Request, alert_id: str, action: str, *, csrf: str, note: str = "", outcome: str = ""
) -> Response:
    """The answer to an action posted without a session: to /login, then back to the
    action's page; what was typed is kept in a signed cookie when the form is ours."""
    console = console_of(request)
    response = web.login_redirect(request, NeedLogin(False, action_page(alert_id, action)))
    if not same_origin(request) or not console.signer.csrf_ok(
        request.cookies.get(CSRF_COOKIE), csrf
    ):
        return response
    data = {"a": alert_id, "k": action, "n": note, "o": outcome, "e": console.clock() + DRAFT_S}
    token = console.signer.seal(DRAFT_PURPOSE, data)
    while len(token) > COOKIE_MAX and data["n"]:  # a note longer than a cookie: its start
        data["n"] = str(data["n"])[: len(str(data["n"])) * 3 // 4]
        token = console.signer.seal(DRAFT_PURPOSE, data)
    set_cookie(response, DRAFT_COOKIE, token, DRAFT_S, request.url.scheme == "https")
    return response


def draft_of(request: Request) -> dict[str, Any] | None:
    """The kept draft, if this browser has an unexpired one."""
    console = console_of(request)
    data = console.signer.unseal(DRAFT_PURPOSE, request.cookies.get(DRAFT_COOKIE))
    if data is None or not isinstance(data.get("e"), int | float):
        return None
    if console.clock() >= float(data["e"]) or not isinstance(data.get("a"), str):
        return None
    return {
        "alert_id": data["a"],
        "action": str(data.get("k", "")),
        "note": str(data.get("n", "")),
        "outcome": str(data.get("o", "")),
    }


def take_draft(request: Request, alert_id: str) -> dict[str, Any] | None:
    """The kept draft for this alert (None for another alert's); `forget_draft` it once shown."""
    draft = draft_of(request)
    return draft if draft is not None and draft["alert_id"] == alert_id else None


def forget_draft(response: Response) -> Response:
    response.delete_cookie(DRAFT_COOKIE, path="/", httponly=True, samesite="strict")
    return response
