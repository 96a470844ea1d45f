"""SIA DC-09 to a monitoring centre: our own framing and Contact ID table, received by a
real `pysiaalarm` receiver (Home Assistant's) on loopback, clear and AES; a centre that
NAKs, drops the line, does not understand, or is down."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from pysiaalarm import SIAAccount
from pysiaalarm.aio import SIAClient

from cloud_bridge.notify import contact_id, dc09, sia
from cloud_bridge.notify.config import SiaChannel
from cloud_bridge.notify.contact_id import ContactId
from cloud_bridge.notify.errors import ChannelError
from cloud_bridge.notify.message import Notice
from tests.support import free_port

ACCOUNT = "A1B2C3"
KEYS = ("0123456789ABCDEF", "0123456789ABCDEF01234567", "0123456789ABCDEF0123456789ABCDEF")
WHEN = dt.datetime(2026, 12, 1, 21, 10, 5, tzinfo=dt.UTC)


def notice(alert_type: str) -> Notice:
    return Notice(
        alert_id="a-7f3e9c21",
        home_id="h-0042",
        alert_type=alert_type,
        severity="critical",
        raised_at="2026-12-01T21:10:05Z",
    )


def channel(port: int, **changes: Any) -> SiaChannel:
    return replace(
        SiaChannel(
            name="centre", host="127.0.0.1", port=port, account=ACCOUNT, timeout_s=3.0, retries=2
        ),
        **changes,
    )


@asynccontextmanager
async def centre(
    key: str | None = None, account: str = ACCOUNT
) -> AsyncIterator[tuple[int, list[Any]]]:
    """A real pysiaalarm receiver on a free port; yields (port, events received)."""
    received: list[Any] = []

    async def on_event(event: Any) -> None:
        received.append(event)

    port = free_port()
    client = SIAClient("127.0.0.1", port, [SIAAccount(account, key)], function=on_event)
    await client.async_start()  # not `async with`: its __aexit__ swallows exceptions
    try:
        yield port, received
    finally:
        await client.async_stop()


@asynccontextmanager
async def peer(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[tuple[int, list[int]]]:
    """A hand-made centre on loopback; yields (port, [connection numbers])."""
    connections: list[int] = []

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(counted, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1], connections


def test_crc_is_crc16_arc_and_frames_are_built_from_the_table() -> None:
    assert dc09.crc16("123456789") == 0xBB3D  # the CRC-16/ARC check value
    assert contact_id.for_alert("sos").text() == "1101 01 001"
    assert contact_id.for_alert("fall").text() == "1100 01 001"
    assert contact_id.for_alert("inactivity").text() == "1102 01 001"
    assert contact_id.for_alert("fall", restore=True).text() == "3100 01 001"
    assert contact_id.cancel().text() == "1406 01 000"
    line = dc09.Line(ACCOUNT, receiver="12", line="3")
    body = '"ADM-CID"0007R12L3#A1B2C3[#A1B2C3|1101 01 001]_21:10:05,12-01-2026'
    assert dc09.frame(line, 7, contact_id.for_alert("sos"), WHEN) == (
        f"\n{dc09.crc16(body):04X}{len(body):04X}{body}\r".encode()
    )
    assert dc09.frame(line, 8, None, WHEN).endswith(
        b'"NULL"0008R12L3#A1B2C3[]_21:10:05,12-01-2026\r'
    )
    assert [dc09.next_seq(s) for s in (0, 1, 9998, 9999)] == [1, 2, 9999, 1]
    with pytest.raises(ValueError, match="no Contact ID code"):
        contact_id.for_alert("picnic")
    with pytest.raises(ValueError, match="bad Contact ID event"):
        ContactId(2, 100)


def test_every_alert_type_has_a_contact_id_code() -> None:
    from cloud_bridge.contract import ALERT_TYPES

    assert set(contact_id.CODES) == ALERT_TYPES


def test_replies_are_checked() -> None:
    body = '"ACK"0001R0L0#A1B2C3[]'
    good = f"\n{dc09.crc16(body):04X}{len(body):04X}{body}\r".encode()
    assert dc09.parse_reply(good) == dc09.Reply("ACK", 1, ACCOUNT, False, "]")
    with pytest.raises(dc09.FrameError, match="CRC"):
        dc09.parse_reply(good.replace(b"0001", b"0002"))
    with pytest.raises(dc09.FrameError, match="not a DC-09 reply"):
        dc09.parse_reply(b"\n\r")
    assert dc09.parse_reply(b'"NAK"').kind == "NAK"  # a bare refusal is one
    with pytest.raises(dc09.FrameError, match="not a DC-09 reply"):
        dc09.parse_reply(b'"ACK"')  # a bare ACK says nothing of which message it takes
    body = '"*ACK"0001R0L0#A1B2C3[00112233445566778899AABBCCDDEEFF'
    with pytest.raises(dc09.FrameError, match="encrypted reply on a clear line"):
        dc09.parse_reply(f"\n{dc09.crc16(body):04X}{len(body):04X}{body}\r".encode())


@pytest.mark.parametrize("key", ["", *KEYS], ids=["clear", "aes128", "aes192", "aes256"])
def test_the_centre_receives_contact_id_events_and_link_tests(key: str) -> None:
    async def scenario() -> None:
        async with centre(key or None) as (port, received):
            link = sia.SiaLink(channel(port, key=key, receiver="12", line="3"))
            for alert in ("fall", "sos", "inactivity"):
                reply = await link.send_event(contact_id.for_alert(alert))
                assert (reply.kind, reply.encrypted) == ("ACK", bool(key))
            await link.send_event(contact_id.for_alert("fall", restore=True))
            await link.link_test()
            assert link.last_link_ok is not None
            await asyncio.sleep(0.05)
            got = [
                (
                    e.message_type.value,
                    e.sequence,
                    e.account,
                    e.receiver,
                    e.line,
                    e.event_qualifier,
                    e.event_type,
                    e.partition,
                    e.ri,
                    e.code,
                    e.encrypted,
                )
                for e in received
            ]
            enc = bool(key)
            assert got == [
                ("ADM-CID", "0001", ACCOUNT, "R12", "L3", "1", "100", "01", "001", "MA", enc),
                ("ADM-CID", "0002", ACCOUNT, "R12", "L3", "1", "101", "01", "001", "QA", enc),
                # pysiaalarm's own table lacks 102; it still takes the raw event
                ("ADM-CID", "0003", ACCOUNT, "R12", "L3", "1", "102", "01", "001", "YN", enc),
                ("ADM-CID", "0004", ACCOUNT, "R12", "L3", "3", "100", "01", "001", "MH", enc),
                ("NULL", "0005", ACCOUNT, "R12", "L3", None, None, None, "0", "RP", enc),
            ]
            now = dt.datetime.now(dt.UTC)
            assert all(abs((e.timestamp - now).total_seconds()) < 10 for e in received)

    asyncio.run(scenario())


def test_supervision_sends_the_link_test_periodically() -> None:
    async def scenario() -> None:
        async with centre(KEYS[0]) as (port, received):
            link = sia.SiaLink(channel(port, key=KEYS[0], supervision_s=0.2))
            task = asyncio.create_task(link.supervise())
            await asyncio.sleep(0.75)
            task.cancel()
            assert [e.message_type.value for e in received] == ["NULL"] * 3
            assert [e.sequence for e in received] == ["0001", "0002", "0003"]

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ({"account": "BEEF01"}, {}),  # an account the centre does not know
        ({"key": KEYS[0]}, {"key": "FEDCBA9876543210"}),  # the wrong AES key
    ],
)
def test_a_centre_that_naks_is_tried_again_then_a_clear_error(
    ours: dict[str, str], theirs: dict[str, str]
) -> None:
    async def scenario() -> None:
        async with centre(**theirs) as (port, received):
            link = sia.SiaLink(channel(port, **ours))
            with pytest.raises(
                ChannelError,
                match=r"not taken by 127\.0\.0\.1:\d+ after 3 "
                r"tries \(NAK for seq 0000\)",
            ):
                await sia.SiaLink.send_event(link, contact_id.for_alert("sos"))
            assert received == []

    asyncio.run(scenario())


def test_a_dropped_line_is_tried_again_on_a_new_connection() -> None:
    async def scenario() -> None:
        async with centre() as (centre_port, received):

            async def drop_twice_then_forward(
                reader: asyncio.StreamReader, writer: asyncio.StreamWriter
            ) -> None:
                data = await reader.readuntil(b"\r")
                if len(connections) <= 2:
                    return  # hang up without an answer
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", centre_port)
                up_writer.write(data)
                writer.write(await up_reader.readuntil(b"\r"))
                await writer.drain()
                up_writer.close()

            async with peer(drop_twice_then_forward) as (port, connections):
                await sia.send(channel(port), notice("sos"))
                assert connections == [1, 2, 3]
            await asyncio.sleep(0.05)
            assert [(e.event_type, e.sequence) for e in received] == [("101", "0001")]

    asyncio.run(scenario())


def test_a_centre_that_does_not_understand_is_not_tried_again() -> None:
    async def duh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r")
        body = '"DUH"0001R0L0#A1B2C3[]'
        writer.write(f"\n{dc09.crc16(body):04X}{len(body):04X}{body}\r".encode())
        await writer.drain()

    async def scenario() -> None:
        async with peer(duh) as (port, connections):
            with pytest.raises(ChannelError, match=r"does not understand 1100 01 001 \(DUH\)"):
                await sia.send(channel(port), notice("fall"))
            assert connections == [1]

    asyncio.run(scenario())


def test_a_silent_centre_times_out_and_a_centre_down_is_refused() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def scenario() -> None:
        async with peer(silent) as (port, connections):
            with pytest.raises(ChannelError, match=r"after 2 tries \(TimeoutError"):
                await sia.send(channel(port, timeout_s=0.3, retries=1), notice("fall"))
            assert connections == [1, 2]
        with pytest.raises(ChannelError, match="ConnectionRefusedError"):
            await sia.send(channel(free_port(), retries=0), notice("fall"))

    asyncio.run(scenario())
