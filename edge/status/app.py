"""The gateway's HTTP listener: `/health` now; the family and installer pages plug in here."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from edge.state import HomeState


def create_app(state: HomeState, **services: Any) -> FastAPI:
    """One app per gateway; `services` (registry, core, local publisher...) go to pages."""
    app = FastAPI(title="Veille gateway", version="1")
    app.state.home = state
    app.state.services = services

    @app.get("/health", tags=["health"])
    def health() -> JSONResponse:
        """200 once subscribed to the local broker with detectors loaded, 503 before."""
        body = state.health_dict()
        return JSONResponse(body, status_code=200 if state.ready else 503)

    return app
