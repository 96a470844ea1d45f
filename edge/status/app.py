"""The gateway's HTTP listener: `/health`, the family status page and the installer pages.

`create_app(state, registry=..., core=..., gateway=...)` builds one FastAPI app per gateway.
Shared objects live in one `Pages` value (`edge.status.deps`) on `app.state.pages` (no
module globals), which is also the `app.state.site` of the page helpers in
`cloud_bridge.pages.web` (shared with the care console); the routers (`login`, `family`,
`installer`, web's `/logout` and `/prefs`) stay thin and call pure view builders.

Every route needs a session except `/login` and `/health` (the route-enumerating auth test
makes sure a new route cannot slip through): pages answer 303 to `/login`, JSON APIs 401.
Monitoring never waits on the pages: while the family PIN or the installer secret is not set,
every route but `/health` answers 503 with the `veille provision set-pin` command that fixes
it, and `/health` says `"pages": "not_configured"`. The credentials are looked up at each
request, so setting them takes effect without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from cloud_bridge.errors import ConfigError
from cloud_bridge.pages import web
from cloud_bridge.pages.auth import (
    LoginThrottle,
    RegistrySessions,
    Signer,
    gateway_session_key,
)
from edge.runtime.core import HomeCore
from edge.status import family, installer, login
from edge.status.deps import CREDENTIALS, GatewayView, Pages, require
from edge.storage.registry import Registry
from edge.storage.state import HomeState


def missing_credentials(registry: Registry) -> list[str]:
    """Who has no credential yet ("family", "installer"), in that order."""
    return [who for who, kind in CREDENTIALS if not registry.has_secret(kind)]


def not_configured(registry: Registry, missing: list[str]) -> Response:
    """What every page answers while a credential is missing: 503 and the command to run."""
    storage = registry.storage_dir
    commands = "\n".join(
        f"  veille provision set-pin {who} {'PIN' if who == 'family' else 'CODE'}"
        f" --storage {storage}"
        for who in missing
    )
    body = (
        "Les pages ne sont pas encore configurées : le code d'accès n'est pas défini.\n"
        "La surveillance fonctionne, les alertes partent.\n"
        f"L'installateur le définit avec :\n{commands}\n\n"
        "The pages are not configured yet: no access code is set.\n"
        "Monitoring runs and alerts are sent. The installer sets it with the commands above.\n"
    )
    return PlainTextResponse(body, status_code=503, headers={"Retry-After": "60"})


def create_app(
    state: HomeState,
    *,
    registry: Registry | None,
    core: HomeCore | None = None,
    gateway: GatewayView | None = None,
    clock: Callable[[], float] | None = None,
) -> FastAPI:
    """One app per gateway; `registry` (where the PINs are kept) is required, `clock` (wall
    time for sessions and the login throttle) is for tests."""
    if registry is None:
        raise ConfigError("the status pages need the registry (where the PINs are kept)")
    # no /docs or /openapi.json: nothing answers without a credential but /login and /health
    app = FastAPI(
        title="Veille gateway", version="1", docs_url=None, redoc_url=None, openapi_url=None
    )
    pages = Pages(
        state=state,
        registry=registry,
        core=core,
        gateway=gateway,
        signer=Signer(gateway_session_key(registry)),
        sessions=RegistrySessions(registry),
        throttle=LoginThrottle(clock or time.monotonic),
        wall=clock or time.time,
    )
    app.state.home = state
    app.state.pages = pages

    @app.middleware("http")
    async def credentials_set(request: Request, call_next: Callable[..., Any]) -> Response:
        """503 with the fix on every page while a credential is missing (not on /health)."""
        if request.url.path != "/health":
            missing = missing_credentials(registry)
            if missing:
                return not_configured(registry, missing)
        response: Response = await call_next(request)
        return response

    @app.get("/health", tags=["health"])
    def health() -> JSONResponse:
        """200 once subscribed to the local broker with detectors loaded, 503 before; `pages`
        says whether the pages can be used (`not_configured` until the PINs are set)."""
        body = state.health_dict()
        body["pages"] = "not_configured" if missing_credentials(registry) else "ok"
        return JSONResponse(body, status_code=200 if state.ready else 503)

    web.install(app, pages, require("family"))
    app.include_router(login.router)
    app.include_router(family.router)
    app.include_router(installer.router)
    return app
