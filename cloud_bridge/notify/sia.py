"""The monitoring centre channel: Contact ID events over SIA DC-09 (TCP), and supervision.

Each message goes on a new TCP connection: connect, send, read the centre's answer, close.
An `ACK` for our sequence number is a delivery; a `NAK`, a dropped line, a timeout or a
garbled answer is tried again on a new connection (`retries` times, with a short pause); a
`DUH` (the centre does not understand the message) is not, since it would not understand it
again. What could not be delivered is one `ChannelError`.

`supervise()` sends the NULL link test every `supervision_s`, so that the centre knows the
hub is alive (a centre raises its own alarm when the tests stop); `last_link_ok` says when
the last one was taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
import string
import time

from cloud_bridge.notify import contact_id, dc09
from cloud_bridge.notify.config import SiaChannel
from cloud_bridge.notify.contact_id import ContactId
from cloud_bridge.notify.errors import ChannelError
from cloud_bridge.notify.message import Notice

_LOGGER = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.5  # between two tries on new connections, times the try number
REPLY_MAX_BYTES = 1024
_PAD_ALPHABET = string.ascii_letters + string.digits
_BARE = frozenset(r.encode("ascii") for r in dc09.BARE_REFUSALS)


def _pad() -> str:
    return "".join(secrets.choice(_PAD_ALPHABET) for _ in range(16))


class SiaLink:
    """One account's line to the monitoring centre."""

    def __init__(self, channel: SiaChannel, account: str | None = None) -> None:
        self.channel = channel
        self.line = dc09.Line(
            account=(account or channel.account).upper(),
            receiver=channel.receiver,
            line=channel.line,
            key=channel.key,
        )
        self._seq = 0
        self._lock = asyncio.Lock()
        self.last_link_ok: float | None = None  # wall time of the last ACKed link test

    async def send_event(self, event: ContactId) -> dc09.Reply:
        """Deliver one Contact ID event; ChannelError if the centre never took it."""
        return await self._deliver(event)

    async def link_test(self) -> dc09.Reply:
        """The NULL message: tells the centre the hub is alive."""
        reply = await self._deliver(None)
        self.last_link_ok = time.time()
        return reply

    async def supervise(self) -> None:
        """Send the link test every `supervision_s` until cancelled (failures are logged)."""
        if self.channel.supervision_s <= 0:
            return
        while True:
            await asyncio.sleep(self.channel.supervision_s)
            try:
                await self.link_test()
            except ChannelError as exc:
                _LOGGER.warning("sia %s: link test failed: %s", self.channel.name, exc.reason)

    async def _deliver(self, event: ContactId | None) -> dc09.Reply:
        async with self._lock:
            self._seq = dc09.next_seq(self._seq)
            seq = self._seq
            what = event.text() if event else "NULL"
            last = "no try"
            for attempt in range(self.channel.retries + 1):
                if attempt:
                    await asyncio.sleep(RETRY_PAUSE_S * attempt)
                message = dc09.frame(self.line, seq, event, dt.datetime.now(dt.UTC), _pad())
                try:
                    reply = await self._exchange(message)
                except (OSError, TimeoutError, dc09.FrameError) as exc:
                    last = f"{exc.__class__.__name__}: {exc}"
                    _LOGGER.warning(
                        "sia %s: %s seq %04d, try %d: %s",
                        self.channel.name,
                        what,
                        seq,
                        attempt + 1,
                        last,
                    )
                    continue
                if reply.kind == "ACK" and reply.seq == seq:
                    _LOGGER.info(
                        "sia %s: %s seq %04d taken by the centre", self.channel.name, what, seq
                    )
                    return reply
                if reply.kind == "DUH":
                    raise ChannelError(
                        self.channel.name, f"the centre does not understand {what} (DUH)"
                    )
                last = f"{reply.kind} for seq {reply.seq:04d}"
                _LOGGER.warning(
                    "sia %s: %s seq %04d, try %d: %s",
                    self.channel.name,
                    what,
                    seq,
                    attempt + 1,
                    last,
                )
            raise ChannelError(
                self.channel.name,
                f"{what} not taken by {self.channel.host}:{self.channel.port} after "
                f"{self.channel.retries + 1} tries ({last})",
            )

    async def _exchange(self, message: bytes) -> dc09.Reply:
        timeout = self.channel.timeout_s
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(self.channel.host, self.channel.port)
        raw = b""
        try:
            writer.write(message)
            async with asyncio.timeout(timeout):
                await writer.drain()
                # a reply ends with CR; a bare "NAK" has no frame and ends the read itself
                while not raw.endswith(b"\r") and raw.strip() not in _BARE:
                    chunk = await reader.read(REPLY_MAX_BYTES)
                    if not chunk:
                        raise ConnectionResetError("the centre closed the line without answer")
                    raw += chunk
                    if len(raw) > REPLY_MAX_BYTES:
                        raise dc09.FrameError("reply too long")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return dc09.parse_reply(raw, self.line.key)


async def send(channel: SiaChannel, notice: Notice, account: str | None = None) -> None:
    """Tell the centre about `notice`'s alert (its Contact ID event); ChannelError if not."""
    await SiaLink(channel, account).send_event(contact_id.for_alert(notice.alert_type))
