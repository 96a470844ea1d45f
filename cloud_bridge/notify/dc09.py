"""SIA DC-09 framing, pure: Contact ID events and link tests out, the centre's answer in.

A message is `LF crc(4 hex) length(4 hex) "type" seq Rrcvr Lpref #acct [data]_timestamp CR`.
The CRC (CRC-16, polynomial 0xA001 reflected, start 0) and the length cover everything from
the first `"` to the character before CR. Types sent: `ADM-CID` (a Contact ID event) and
`NULL` (the link test). With an AES key (16/24/32 characters: AES-128/192/256) the type is
prefixed with `*` and everything after `[` is sent as upper-case hex of AES-CBC (zero IV)
over `pad|data]_timestamp`, `pad` being 1-16 random characters that bring the length to a
multiple of 16. The timestamp is UTC, `_HH:MM:SS,MM-DD-YYYY`.

The centre answers `"ACK"` (taken), `"NAK"` (refused: a bad timestamp or key; it carries its
own time), or `"DUH"` (not understood): `parse_reply` reads any of them.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cloud_bridge.notify.contact_id import ContactId

ZERO_IV = bytes(16)
SEQ_MAX = 9999
PAD_FORBIDDEN = frozenset("|[]")
BARE_REFUSALS = frozenset({'"NAK"', '"DUH"'})
_REPLY = re.compile(
    r"^\n?(?P<crc>[0-9A-Fa-f]{4})(?P<length>[0-9A-Fa-f]{4})"
    r"(?P<body>\"(?P<enc>\*?)(?P<kind>ACK|NAK|DUH|RSP)\"(?P<seq>\d{4})"
    r"(?:[RL][0-9A-Fa-f]{1,6}){0,2}"  # receivers put R and L in either order
    r"(?:#(?P<account>[0-9A-Fa-f]{3,16})|A0)?\[(?P<rest>[^\r]*))\r?$"
)


class FrameError(ValueError):
    """A reply from the centre that is not a valid DC-09 message."""


@dataclass(frozen=True, slots=True)
class Line:
    """Who we are at the centre: account, receiver and line prefix (hex), AES key."""

    account: str
    receiver: str = "0"
    line: str = "0"
    key: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    kind: str  # ACK | NAK | DUH | RSP
    seq: int
    account: str | None
    encrypted: bool
    content: str  # the data after `[`, decrypted when it was


def crc16(text: str) -> int:
    """CRC-16/ARC of `text`'s ASCII bytes, as DC-09 uses it."""
    crc = 0
    for byte in text.encode("ascii"):
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def timestamp(when: dt.datetime) -> str:
    """`_HH:MM:SS,MM-DD-YYYY` in UTC."""
    return when.astimezone(dt.UTC).strftime("_%H:%M:%S,%m-%d-%Y")


def next_seq(seq: int) -> int:
    """Sequence numbers run 0001-9999, then start again at 0001."""
    return 1 if seq >= SEQ_MAX else seq + 1


def _cipher(key: str) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key.encode("ascii")), modes.CBC(ZERO_IV))


def encrypt(key: str, plain: str, pad: str) -> str:
    """Hex of AES-CBC over `pad|plain`; `pad` must hold at least 16 usable characters."""
    need = 16 - (len(plain) + 1) % 16 or 16
    chars = [c for c in pad if c.isascii() and c.isprintable() and c not in PAD_FORBIDDEN]
    if len(chars) < need:
        raise ValueError("not enough pad characters")
    data = ("".join(chars[:need]) + "|" + plain).encode("ascii")
    encryptor = _cipher(key).encryptor()
    return (encryptor.update(data) + encryptor.finalize()).hex().upper()


def decrypt(key: str, hex_text: str) -> str:
    try:
        data = bytes.fromhex(hex_text)
    except ValueError as exc:
        raise FrameError("encrypted part is not hexadecimal") from exc
    if not data or len(data) % 16:
        raise FrameError("encrypted part is not whole AES blocks")
    decryptor = _cipher(key).decryptor()
    return (decryptor.update(data) + decryptor.finalize()).decode("ascii", "replace")


def frame(line: Line, seq: int, event: ContactId | None, when: dt.datetime, pad: str = "") -> bytes:
    """One message: the Contact ID `event`, or the NULL link test when `event` is None."""
    kind = "ADM-CID" if event is not None else "NULL"
    data = f"#{line.account}|{event.text()}]" if event is not None else "]"
    plain = data + timestamp(when)
    if line.key:
        kind, rest = "*" + kind, encrypt(line.key, plain, pad)
    else:
        rest = plain
    body = f'"{kind}"{seq:04d}R{line.receiver}L{line.line}#{line.account}[{rest}'
    return f"\n{crc16(body):04X}{len(body):04X}{body}\r".encode("ascii")


def parse_reply(raw: bytes, key: str = "") -> Reply:
    """The centre's answer; FrameError when it is not one (bad CRC, length, format).

    A bare `"NAK"` or `"DUH"` (no frame: some receivers answer so to a message for an
    account they do not know) is taken as that refusal; a bare `"ACK"` is not an ACK, since
    nothing in it says which message it takes.
    """
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError("reply is not ASCII") from exc
    bare = text.strip()
    if bare in BARE_REFUSALS:
        return Reply(bare.strip('"'), 0, None, False, "")
    match = _REPLY.match(text)
    if match is None:
        raise FrameError(f"not a DC-09 reply: {text[:60]!r}")
    body = match["body"]
    if int(match["crc"], 16) != crc16(body):
        raise FrameError("reply CRC does not match")
    if int(match["length"], 16) != len(body):
        raise FrameError("reply length does not match")
    content = match["rest"]
    encrypted = bool(match["enc"])
    if encrypted:
        if not key:
            raise FrameError("encrypted reply on a clear line")
        content = decrypt(key, content)
        if "]" not in content:
            raise FrameError("encrypted reply does not decrypt with our key")
    return Reply(match["kind"], int(match["seq"]), match["account"], encrypted, content)
