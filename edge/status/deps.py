"""What every route of the gateway's pages depends on: the shared `Pages` and the session.

The routers (`login`, `family`, `installer`) import these; `app` builds the app from them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from fastapi import Request
from fastapi.templating import Jinja2Templates

from cloud_bridge.errors import ConfigError
from cloud_bridge.pages import web
from cloud_bridge.pages.auth import (
    LoginThrottle,
    MemorySessions,
    Session,
    SessionStore,
    Signer,
)
from edge.adapters.zigbee import Zigbee2MqttAdapter
from edge.home import HomeProfile
from edge.runtime.clock import Clock
from edge.runtime.core import HomeCore
from edge.storage.registry import Registry
from edge.storage.state import HomeState

TEMPLATES_DIR = Path(__file__).with_name("templates")  # then the base page and style of web
API_PREFIXES = ("/api/", "/installer/api/")
PAGE_HEADERS: Mapping[str, str] = web.PAGE_HEADERS
# who signs in with which secret of the registry
CREDENTIALS = (("family", "family_pin"), ("installer", "installer"))


class GatewayView(Protocol):
    """What the pages use of the running gateway (`edge.runtime.gateway.Gateway`)."""

    clock: Clock
    local_adapter: Zigbee2MqttAdapter | None  # None until connected to the local broker

    def want_ble(self) -> None: ...

    def apply_profile(self, profile: HomeProfile) -> None: ...


@dataclass
class Pages:
    """What every route of the gateway app needs."""

    state: HomeState
    registry: Registry
    core: HomeCore | None = None
    gateway: GatewayView | None = None
    signer: Signer = field(default_factory=lambda: Signer(secrets.token_bytes(32)))
    throttle: LoginThrottle = field(default_factory=lambda: LoginThrottle(time.monotonic))
    templates: Jinja2Templates = field(
        default_factory=lambda: Jinja2Templates(directory=[TEMPLATES_DIR, web.TEMPLATES_DIR])
    )
    wall: Callable[[], float] = time.time  # for cookie expiry: real time, never simulated
    sessions: SessionStore = field(default_factory=MemorySessions)
    walkthrough: dict[str, Any] = field(default_factory=dict)
    page_headers: ClassVar[Mapping[str, str]] = PAGE_HEADERS

    @property
    def home_id(self) -> str:
        return self.state.home_id

    def now(self) -> float:
        """The pipeline's time basis (simulated in the demo), for 'how long ago'."""
        return self.gateway.clock.now() if self.gateway is not None else time.time()

    def credential(self, role: str, name: str) -> str:
        """The version of the PIN (family) or code (installer) that opens `role`'s sessions."""
        kind = dict(CREDENTIALS).get(role)
        return self.registry.secret_version(kind) if kind is not None else ""

    def profile(self) -> HomeProfile:
        """The home as the running core sees it, else as provisioned."""
        profile = self.core.profile if self.core is not None else self.registry.profile()
        if profile is None:
            raise ConfigError(f"no home is provisioned in {self.registry.storage_dir}")
        return profile


def pages_of(request: Request) -> Pages:
    pages: Pages = request.app.state.pages
    return pages


def session_of(request: Request, pages: Pages) -> Session | None:
    return web.session_of(request, pages.wall())


def require(role: str) -> Callable[[Request], Session]:
    """A dependency: the visitor's session if it allows `role` pages, NeedLogin otherwise."""

    def dependency(request: Request) -> Session:
        pages = pages_of(request)
        session = session_of(request, pages)
        allowed = session is not None and (
            session.role == role or (role == "family" and session.role == "installer")
        )
        if not allowed or session is None:
            raise web.need_login(request, API_PREFIXES)
        return session

    dependency.__name__ = f"require_{role}"
    return dependency
