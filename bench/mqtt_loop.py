"""Many `MqttLink`s driven by one network thread, for the load bench's simulated gateways.

`MqttLink` gives every connection its own thread, which is right for a gateway (two links)
and too heavy for a process that plays 250 homes: 250 threads polling every 50 ms cost a
fifth of a core while idle. `SharedNetworkLoop.adopt(link)` keeps the link's paho client,
its callbacks and everything above it (the real `Uplink`) as they are, and only replaces
the thread: one epoll loop reads and writes every adopted client's socket, runs paho's
keepalive, and reconnects a lost client with the same jittered backoff as `MqttLink`.

All socket I/O happens on the loop thread: a publish from the event loop queues the
packet, paho calls `on_socket_register_write`, and that wakes the loop, which writes it.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cloud_bridge.broker import KEEPALIVE_S, MqttLink, backoff_delay, connect_properties

_LOGGER = logging.getLogger(__name__)

SELECT_TIMEOUT_S = 0.25
MISC_INTERVAL_S = 1.0  # paho's keepalive bookkeeping (loop_misc) for every client
STOP_WAIT_S = 5.0


@dataclass(eq=False)
class _Slot:
    """One adopted link and what the loop knows about it."""

    link: MqttLink
    fd: int | None = None
    writing: bool = False
    attempt: int = 0
    retry_at: float = 0.0
    first: bool = True
    stopping: bool = False
    stopped: threading.Event = field(default_factory=threading.Event)


class SharedNetworkLoop:
    """One thread that runs the network side of many MQTT links (see the module docstring)."""

    def __init__(self, name: str = "net") -> None:
        self.name = name
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._lock = threading.Lock()
        self._requests: deque[tuple[str, _Slot]] = deque()
        self._want_write: set[_Slot] = set()
        self._slots: set[_Slot] = set()
        self._running = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public -----------------------------------------------------------------------------

    def adopt(self, link: MqttLink) -> None:
        """From now on `link.start()` / `link.stop()` hand the link to this loop."""
        slot = _Slot(link)
        client = link.client
        client.on_socket_open = lambda _c, _u, sock: self._opened(slot, sock)
        client.on_socket_close = lambda _c, _u, sock: self._closed(slot, sock)
        client.on_socket_register_write = lambda _c, _u, _s: self._wants_write(slot)
        client.on_disconnect = lambda _c, _u, _f, rc, _p: self._lost(slot, rc)
        link.start = lambda: self._request("add", slot)  # type: ignore[method-assign]

        def stop(timeout_s: float = STOP_WAIT_S) -> None:
            self._stop_link(slot, timeout_s)

        link.stop = stop  # type: ignore[method-assign]

    def start(self) -> None:
        self._running.set()
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._running.clear()
        self._wake()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()

    # -- any thread ---------------------------------------------------------------------------

    def _wake(self) -> None:
        # BlockingIOError: already woken (buffer full); OSError: shutting down
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _request(self, what: str, slot: _Slot) -> None:
        with self._lock:
            self._requests.append((what, slot))
        self._wake()

    def _wants_write(self, slot: _Slot) -> None:
        with self._lock:
            self._want_write.add(slot)
        self._wake()

    def _stop_link(self, slot: _Slot, timeout_s: float) -> None:
        self._request("stop", slot)
        slot.stopped.wait(timeout_s)

    # -- loop thread (paho calls these from inside loop_read/loop_write/connect) --------------

    def _opened(self, slot: _Slot, sock: Any) -> None:
        slot.fd = sock.fileno()
        self._sel.register(slot.fd, selectors.EVENT_READ, slot)
        slot.writing = False

    def _closed(self, slot: _Slot, _sock: Any) -> None:
        if slot.fd is not None:
            self._sel.unregister(slot.fd)
            slot.fd = None
        slot.writing = False

    def _lost(self, slot: _Slot, reason: Any) -> None:
        link = slot.link
        was_connected = link.connected.is_set()
        link.connected.clear()
        on_disconnect = getattr(link, "_on_disconnect", None)  # what MqttLink's thread calls
        if was_connected and on_disconnect is not None:
            on_disconnect()
        if slot.stopping:
            slot.stopped.set()
            self._slots.discard(slot)
            return
        delay = backoff_delay(slot.attempt)
        slot.attempt += 1
        slot.retry_at = time.monotonic() + delay
        _LOGGER.warning("%s: lost %s (%s); reconnect in %.1f s", link.name, link.url, reason, delay)

    # -- the loop -----------------------------------------------------------------------------

    def _connect(self, slot: _Slot) -> None:
        link, client = slot.link, slot.link.client
        try:
            if slot.first and link.url.version != 5:
                client.connect(link.url.host, link.url.port, KEEPALIVE_S)
                slot.first = False
            elif slot.first:
                # the session MqttLink's own thread would ask for (the uplink's: clean)
                expiry = getattr(link, "_session_expiry_s", 0)
                client.connect(
                    link.url.host,
                    link.url.port,
                    KEEPALIVE_S,
                    clean_start=getattr(link, "_clean_start", True),
                    properties=connect_properties(expiry, None),
                )
                slot.first = False
            else:
                client.reconnect()
        except (OSError, ssl.SSLError, ValueError) as exc:
            delay = backoff_delay(slot.attempt)
            slot.attempt += 1
            slot.retry_at = time.monotonic() + delay
            _LOGGER.warning(
                "%s: cannot reach %s (%s); retry in %.1f s", link.name, link.url, exc, delay
            )
            return
        slot.retry_at = 0.0

    def _apply_requests(self) -> None:
        with self._lock:
            requests, self._requests = self._requests, deque()
        for what, slot in requests:
            if what == "add":
                self._slots.add(slot)
                self._connect(slot)
            elif what == "stop":
                slot.stopping = True
                if slot.fd is None:
                    slot.stopped.set()
                    self._slots.discard(slot)
                else:
                    slot.link.client.disconnect()  # DISCONNECT is written, then paho closes

    def _flush_writes(self) -> None:
        with self._lock:
            wanted, self._want_write = self._want_write, set()
        for slot in wanted:
            self._write(slot)

    def _write(self, slot: _Slot) -> None:
        client = slot.link.client
        if slot.fd is None:
            return
        client.loop_write()
        if slot.fd is None:
            return  # the write closed the connection (DISCONNECT sent, or an error)
        want = client.want_write()
        if want != slot.writing:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            self._sel.modify(slot.fd, events, slot)
            slot.writing = want

    def _read(self, slot: _Slot) -> None:
        client = slot.link.client
        client.loop_read()
        sock = client.socket()
        # TLS may hold decrypted bytes that select() cannot see: read them too
        while slot.fd is not None and isinstance(sock, ssl.SSLSocket) and sock.pending():
            client.loop_read()
            sock = client.socket()
        if slot.fd is not None and client.want_write():
            self._write(slot)

    def _run(self) -> None:
        next_misc = time.monotonic() + MISC_INTERVAL_S
        while self._running.is_set():
            self._apply_requests()
            self._flush_writes()
            for key, mask in self._sel.select(SELECT_TIMEOUT_S):
                slot = key.data
                if slot is None:
                    with contextlib.suppress(BlockingIOError):
                        while self._wake_r.recv(4096):
                            pass
                    continue
                if mask & selectors.EVENT_READ and slot.fd is not None:
                    self._read(slot)
                if mask & selectors.EVENT_WRITE and slot.fd is not None:
                    self._write(slot)
            now = time.monotonic()
            for slot in list(self._slots):
                if slot.fd is None and not slot.stopping and 0 < slot.retry_at <= now:
                    self._connect(slot)
            if now >= next_misc:
                next_misc = now + MISC_INTERVAL_S
                for slot in list(self._slots):
                    if slot.fd is not None:
                        slot.link.client.loop_misc()
        for slot in list(self._slots):
            if slot.fd is not None:
                slot.link.client.disconnect()
                slot.link.client.loop_write()
