"""The console's staff-session dependency, apart from `console` so that the pages added
beside it (`ack_page`, `directory_page`, `outcome_page`) use it without importing the
console module that installs them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from cloud_bridge.pages import web
from cloud_bridge.pages.auth import Session


def console_of(request: Request) -> Any:
    """The app's `console.Console`."""
    return request.app.state.console


def staff(request: Request) -> Session:
    """A dependency: the staff session, or NeedLogin."""
    session = web.session_of(request, console_of(request).clock())
    if session is None or session.role != "staff":
        raise web.need_login(request, ("/api/",))
    return session


StaffSession = Annotated[Session, Depends(staff)]
