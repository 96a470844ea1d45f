"""`notify.toml`: channels and an escalation chain (DESIGN.md section 8).

Loaded once into a frozen `NotifyConfig`. Unknown keys and bad values are refused with
`file:line: reason` (a `NotifyConfigError`). Secrets (SMTP password, AES key, VAPID key)
come from files named beside the other keys (`password_file`, `key_file`,
`vapid_private_key_file`), relative to the config file's folder; they are read when the
file is loaded and never appear in a repr or a log line.
"""

from __future__ import annotations

import itertools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from cloud_bridge.contract import ALERT_TYPES, SEVERITIES

SMTP_PORT = 25
SMTPS_PORT = 465
SMTP_TIMEOUT_S = 10.0
SIA_TIMEOUT_S = 10.0
SIA_RETRIES = 3
SIA_SUPERVISION_S = 600.0  # a NULL link test every 10 min unless the centre agreed otherwise
WEBPUSH_TTL_S = 3600
AES_KEY_LENGTHS = (16, 24, 32)
LINK_TTL_S = 24 * 3600.0  # how long a one-click acknowledgement link stays valid

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
HEX_RE = re.compile(r"^[0-9A-Fa-f]+$")
ADDRESS_RE = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
STARTTLS_MODES = frozenset({"auto", "require", "never"})

_COMMON = frozenset({"name", "kind"})
_KIND_KEYS: dict[str, frozenset[str]] = {
    "email": _COMMON
    | {"smtp", "from", "to", "user", "password_file", "starttls", "ca_file", "timeout_s"},
    "sia-dc09": _COMMON
    | {
        "host",
        "port",
        "account",
        "key",
        "key_file",
        "receiver",
        "line",
        "supervision_s",
        "timeout_s",
        "retries",
    },
    "webpush": _COMMON | {"vapid_private_key_file", "subject", "ttl_s", "subscriptions_file"},
}
_STEP_KEYS = frozenset(
    {"after_s", "channels", "severities", "types", "repeat_s", "contacts", "contacts_via"}
)
CONTACTS = "@contacts"  # in a step's channels: the home's directory contacts (`Step.contacts`)
RELATIONS = ("family", "neighbour", "gp", "carer", "other")  # of a directory contact
_TOP_KEYS = frozenset({"channel", "escalation", "hub"})
_HUB_KEYS = frozenset({"public_url", "link_ttl_s"})


class NotifyConfigError(ValueError):
    """`notify.toml` cannot be used: the message is `file:line: reason`."""


@dataclass(frozen=True, slots=True)
class EmailChannel:
    name: str
    host: str
    port: int
    tls: bool  # smtps:// (TLS from the first byte)
    sender: str
    to: tuple[str, ...]
    starttls: str = "auto"  # auto: when offered; require: refuse a server without it
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    timeout_s: float = SMTP_TIMEOUT_S
    kind: str = "email"


@dataclass(frozen=True, slots=True)
class SiaChannel:
    name: str
    host: str
    port: int
    account: str  # hex, 3-16 characters, upper case
    key: str = field(default="", repr=False)  # AES key, 16/24/32 characters; "" = clear
    receiver: str = "0"  # hex receiver number (the `R` field)
    line: str = "0"  # hex line prefix (the `L` field)
    supervision_s: float = SIA_SUPERVISION_S  # 0 = no link test
    timeout_s: float = SIA_TIMEOUT_S
    retries: int = SIA_RETRIES
    kind: str = "sia-dc09"

    @property
    def encrypted(self) -> bool:
        return bool(self.key)


@dataclass(frozen=True, slots=True)
class WebpushChannel:
    name: str
    vapid_private_key: str = field(repr=False)  # PEM or base64url raw key, as pywebpush takes
    subject: str  # mailto: or https: contact the push services can reach
    ttl_s: int = WEBPUSH_TTL_S
    subscriptions_file: Path | None = None
    kind: str = "webpush"


Channel = EmailChannel | SiaChannel | WebpushChannel


@dataclass(frozen=True, slots=True)
class Step:
    """One escalation step: after `after_s` unacknowledged, notify `channels`."""

    index: int
    after_s: float
    channels: tuple[str, ...]
    severities: frozenset[str] = SEVERITIES
    types: frozenset[str] = ALERT_TYPES
    repeat_s: float = 0.0  # > 0: again every repeat_s until acknowledged
    contacts: frozenset[str] = frozenset()  # relations from the home directory to mail
    contacts_via: str = ""  # the email channel (server, sender) those mails go through

    def applies(self, alert_type: str, severity: str) -> bool:
        return severity in self.severities and alert_type in self.types


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    channels: Mapping[str, Channel]
    steps: tuple[Step, ...]
    source: Path | None = None
    public_url: str = ""  # the console's address as staff phones reach it; "" = no links
    link_ttl_s: float = LINK_TTL_S


class _Lines:
    """Where each key of `notify.toml` is: (section, index, key) -> line number."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.-]+)\s*\]\]?")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")

    def __init__(self, text: str) -> None:
        self._at: dict[tuple[str, int, str | None], int] = {}
        counts: dict[str, int] = {}
        section, index = "", 0
        for number, line in enumerate(text.splitlines(), start=1):
            if header := self._HEADER.match(line):
                section = header.group(2)
                index = counts.get(section, 0)
                counts[section] = index + 1
                self._at.setdefault((section, index, None), number)
            elif key := self._KEY.match(line):
                self._at.setdefault((section, index, key.group(1).strip('"')), number)

    def line(self, section: str, index: int = 0, key: str | None = None) -> int:
        return self._at.get((section, index, key)) or self._at.get((section, index, None)) or 1


def load_notify_config(path: Path) -> NotifyConfig:
    """Read and check `notify.toml`; NotifyConfigError("file:line: reason") if unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NotifyConfigError(f"{path}: cannot read: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise NotifyConfigError(
            f"{path}:{match.group(1) if match else 1}: not valid TOML: {exc}"
        ) from exc
    return parse_notify_config(data, text, path)


def parse_notify_config(
    data: Mapping[str, Any], text: str = "", path: Path | None = None
) -> NotifyConfig:
    """Check parsed TOML (`text` gives the line numbers); paths relative to `path`'s folder."""
    return _Parser(data, _Lines(text), path).config()


class _Parser:
    def __init__(self, data: Mapping[str, Any], lines: _Lines, path: Path | None) -> None:
        self.data = data
        self.lines = lines
        self.path = path
        self.name = str(path) if path else "<notify>"
        self.base = path.parent if path else Path.cwd()

    def fail(
        self, reason: str, section: str = "", index: int = 0, key: str | None = None
    ) -> NoReturn:
        raise NotifyConfigError(f"{self.name}:{self.lines.line(section, index, key)}: {reason}")

    def config(self) -> NotifyConfig:
        for key in self.data:
            if key not in _TOP_KEYS:
                self.fail(f"unknown section or key {key!r}", key)
        channels: dict[str, Channel] = {}
        for index, table in enumerate(self._tables("channel")):
            channel = self._channel(table, index)
            if channel.name in channels:
                self.fail(f"channel name {channel.name!r} used twice", "channel", index, "name")
            channels[channel.name] = channel
        if not channels:
            self.fail("no [[channel]]: nobody would be notified")
        steps = tuple(
            self._step(table, index, channels)
            for index, table in enumerate(self._tables("escalation"))
        )
        if not steps:
            self.fail("no [[escalation]] step: no channel would ever be used")
        for before, step in itertools.pairwise(steps):
            if step.after_s < before.after_s:
                self.fail(
                    f"escalation steps must be in order of after_s ({step.after_s:g} s "
                    f"comes after {before.after_s:g} s)",
                    "escalation",
                    step.index,
                    "after_s",
                )
        public_url, link_ttl_s = self._hub()
        return NotifyConfig(
            channels=channels,
            steps=steps,
            source=self.path,
            public_url=public_url,
            link_ttl_s=link_ttl_s,
        )

    def _hub(self) -> tuple[str, float]:
        """`[hub]`: `public_url` (base of the acknowledgement links) and `link_ttl_s`."""
        table = self.data.get("hub", {})
        if not isinstance(table, dict):
            self.fail("hub must be written [hub] (one table)", "hub")
        for key in table:
            if key not in _HUB_KEYS:
                self.fail(f"unknown key {key!r} in [hub]", "hub", 0, key)
        get = _Getter(self, table, 0, "hub")
        url = get.text("public_url", "")
        if url:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                get.fail(f"public_url {url!r} must be http(s)://HOST[:PORT][/path]", "public_url")
            if parts.query or parts.fragment:
                get.fail("public_url must not have a query or a fragment", "public_url")
        ttl = get.number("link_ttl_s", LINK_TTL_S, low=60)
        return url.rstrip("/"), ttl

    def _tables(self, section: str) -> list[Mapping[str, Any]]:
        tables = self.data.get(section, [])
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            self.fail(f"{section} must be written [[{section}]] (a list of tables)", section)
        return tables

    def _channel(self, table: Mapping[str, Any], index: int) -> Channel:
        kind = table.get("kind")
        if kind not in _KIND_KEYS:
            self.fail(
                f"channel kind {kind!r} must be one of {sorted(_KIND_KEYS)}",
                "channel",
                index,
                "kind",
            )
        for key in table:
            if key not in _KIND_KEYS[kind]:
                self.fail(f"unknown key {key!r} for a {kind} channel", "channel", index, key)
        name = table.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.fail(
                f"channel name {name!r} must match {NAME_RE.pattern}", "channel", index, "name"
            )
        get = _Getter(self, table, index)
        if kind == "email":
            return self._email(name, table, get)
        if kind == "sia-dc09":
            return self._sia(name, table, get)
        return self._webpush(name, get)

    def _email(self, name: str, table: Mapping[str, Any], get: _Getter) -> EmailChannel:
        url = get.text("smtp")
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            get.fail("smtp must be smtp://HOST[:PORT] or smtps://HOST[:PORT]", "smtp")
        if parts.username or parts.password:
            get.fail("no login in the smtp URL: use user and password_file", "smtp")
        try:
            port = parts.port or (SMTPS_PORT if parts.scheme == "smtps" else SMTP_PORT)
        except ValueError:
            get.fail("smtp port must be 1-65535", "smtp")
        sender = get.text("from")
        if not ADDRESS_RE.match(sender):
            get.fail(f"from {sender!r} is not a mail address", "from")
        to = table.get("to")
        if isinstance(to, str):
            to = [to]
        if (
            not isinstance(to, list)
            or not to
            or not all(isinstance(a, str) and ADDRESS_RE.match(a) for a in to)
        ):
            get.fail("to must be a non-empty list of mail addresses", "to")
        user = get.text("user", None)
        password = get.secret("password_file")
        if (user is None) != (password is None):
            get.fail("user and password_file go together", "user" if user else "password_file")
        starttls = get.text("starttls", "auto")
        if starttls not in STARTTLS_MODES:
            get.fail(f"starttls must be one of {sorted(STARTTLS_MODES)}", "starttls")
        if parts.scheme == "smtps" and starttls == "require":
            get.fail('starttls = "require" makes no sense on smtps://', "starttls")
        ca = get.text("ca_file", None)
        return EmailChannel(
            name=name,
            host=parts.hostname or "",
            port=port,
            tls=parts.scheme == "smtps",
            sender=sender,
            to=tuple(to),
            starttls=starttls,
            user=user,
            password=password,
            ca_file=_path(ca, self.base) if ca else None,
            timeout_s=get.number("timeout_s", SMTP_TIMEOUT_S, low=0.1),
        )

    def _sia(self, name: str, table: Mapping[str, Any], get: _Getter) -> SiaChannel:
        host = get.text("host")
        port = get.integer("port", None, low=1, high=65535)
        account = get.text("account")
        if not HEX_RE.match(account) or not 3 <= len(account) <= 16:
            get.fail("account must be 3-16 hexadecimal characters", "account")
        if "key" in table and "key_file" in table:
            get.fail("give key or key_file, not both", "key_file")
        key = (get.secret("key_file") if "key_file" in table else get.text("key", "")) or ""
        if key and (len(key) not in AES_KEY_LENGTHS or not key.isascii()):
            where = "key_file" if "key_file" in table else "key"
            get.fail(
                f"the AES key must be 16, 24 or 32 ASCII characters (it has {len(key)})", where
            )
        receiver = get.text("receiver", "0")
        line = get.text("line", "0")
        for key_name, value in (("receiver", receiver), ("line", line)):
            if not HEX_RE.match(value) or len(value) > 6:
                get.fail(f"{key_name} must be 1-6 hexadecimal characters", key_name)
        return SiaChannel(
            name=name,
            host=host,
            port=port,
            account=account.upper(),
            key=key,
            receiver=receiver.upper(),
            line=line.upper(),
            supervision_s=get.number("supervision_s", SIA_SUPERVISION_S, low=0),
            timeout_s=get.number("timeout_s", SIA_TIMEOUT_S, low=0.1),
            retries=get.integer("retries", SIA_RETRIES, low=0, high=20),
        )

    def _webpush(self, name: str, get: _Getter) -> WebpushChannel:
        key = get.secret("vapid_private_key_file")
        if key is None:
            get.fail("a webpush channel needs vapid_private_key_file", "vapid_private_key_file")
        subject = get.text("subject")
        if not subject.startswith(("mailto:", "https://")):
            get.fail("subject must be a mailto: or https:// contact", "subject")
        subs = get.text("subscriptions_file", None)
        return WebpushChannel(
            name=name,
            vapid_private_key=key,
            subject=subject,
            ttl_s=get.integer("ttl_s", WEBPUSH_TTL_S, low=0, high=28 * 86400),
            subscriptions_file=_path(subs, self.base) if subs else None,
        )

    def _step(self, table: Mapping[str, Any], index: int, channels: Mapping[str, Channel]) -> Step:
        for key in table:
            if key not in _STEP_KEYS:
                self.fail(f"unknown key {key!r} in [[escalation]]", "escalation", index, key)
        get = _Getter(self, table, index, "escalation")
        contacts = (
            get.subset("contacts", frozenset(RELATIONS)) if "contacts" in table else frozenset()
        )
        names = table.get("channels", [] if contacts else None)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            get.fail("channels must be a list of channel names", "channels")
        if not names and not contacts:
            get.fail("channels must be a non-empty list of channel names", "channels")
        for channel in names:
            if channel not in channels:
                get.fail(f"no channel named {channel!r}", "channels")
        via = ""
        if contacts:
            emails = [c.name for c in channels.values() if isinstance(c, EmailChannel)]
            via = get.text("contacts_via", emails[0] if len(emails) == 1 else ...)
            if not isinstance(channels.get(via), EmailChannel):
                get.fail(f"contacts_via {via!r} must name an email channel", "contacts_via")
            names = [*names, CONTACTS]
        elif "contacts_via" in table:
            get.fail("contacts_via needs contacts", "contacts_via")
        return Step(
            index=index,
            after_s=get.number("after_s", None, low=0),
            channels=tuple(names),
            contacts=contacts,
            contacts_via=via,
            severities=get.subset("severities", SEVERITIES),
            types=get.subset("types", ALERT_TYPES),
            repeat_s=get.number("repeat_s", 0.0, low=0),
        )


class _Getter:
    """Typed reads of one table's keys, failing with the key's line."""

    def __init__(
        self, parser: _Parser, table: Mapping[str, Any], index: int, section: str = "channel"
    ) -> None:
        self.parser, self.table, self.index, self.section = parser, table, index, section

    def fail(self, reason: str, key: str) -> NoReturn:
        self.parser.fail(reason, self.section, self.index, key)

    def text(self, key: str, default: Any = ...) -> Any:
        value = self.table.get(key, default)
        if value is ...:
            self.fail(f"{key} is required", key)
        if value is not default and (not isinstance(value, str) or not value.strip()):
            self.fail(f"{key} must be a non-empty string", key)
        return value

    def number(self, key: str, default: float | None, *, low: float) -> float:
        value = self.table.get(key, default)
        if value is None:
            self.fail(f"{key} is required", key)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < low:
            self.fail(f"{key} must be a number >= {low:g}", key)
        return float(value)

    def integer(self, key: str, default: int | None, *, low: int, high: int) -> int:
        value = self.table.get(key, default)
        if value is None:
            self.fail(f"{key} is required", key)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.fail(f"{key} must be a whole number {low}-{high}", key)
        return value

    def subset(self, key: str, allowed: frozenset[str]) -> frozenset[str]:
        value = self.table.get(key)
        if value is None:
            return allowed
        if not isinstance(value, list) or not value:
            self.fail(f"{key} must be a non-empty list", key)
        for item in value:
            if item not in allowed:
                self.fail(f"{item!r} in {key} is not one of {sorted(allowed)}", key)
        return frozenset(value)

    def secret(self, key: str) -> str | None:
        """The content of the file named by `key` (stripped), or None without the key."""
        name = self.text(key, None)
        if name is None:
            return None
        path = _path(name, self.parser.base)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            self.fail(f"cannot read {key} {path}: {exc.__class__.__name__}", key)
        if not value:
            self.fail(f"{key} {path} is empty", key)
        return value


def _path(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p
