"""Serve a FastAPI app with uvicorn inside the gateway's event loop."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

_LOGGER = logging.getLogger(__name__)


_LISTEN_RE = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$"
)


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:8080`, port 0 = any free one) -> (host, port); ValueError
    otherwise. The one reader of a listen address: gateway.toml, `--http` of the hub."""
    match = _LISTEN_RE.match(listen)
    if match is None or int(match.group("port")) > 65535:
        raise ValueError(f"listen {listen!r} must be HOST:PORT (port 0-65535)")
    return match.group("v6") or match.group("host"), int(match.group("port"))


class HttpServer:
    """uvicorn on an asyncio task; `port` is known once `started` is set (port 0 = any)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="on",
            access_log=False,
            http="h11",  # the pages need neither httptools nor websockets: not loaded
            ws="none",
        )
        self.server = uvicorn.Server(config)
        self.host = host
        self.port = port
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        self.task = asyncio.create_task(self.server.serve(), name="http")
        while not self.server.started:
            if self.task.done():
                self.task.result()  # raises the startup error
                raise OSError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.02)
        sock = self.server.servers[0].sockets[0]
        self.port = int(sock.getsockname()[1])
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task
