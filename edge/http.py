"""Serve a FastAPI app with uvicorn inside the gateway's event loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

_LOGGER = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:8080`) -> (host, port); ValueError otherwise."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class HttpServer:
    """uvicorn on an asyncio task; `port` is known once `started` is set (port 0 = any)."""

    def __init__(self, app: Any, listen: str) -> None:
        import uvicorn

        host, port = parse_listen(listen)
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
