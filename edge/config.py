"""`gateway.toml`: where the gateway's brokers and storage are (DESIGN.md section 7).

Loaded once into a frozen `GatewayConfig`. Unknown sections and keys and bad values are
refused with `file:line: reason` (a `ConfigError`, which the CLI prints on one line). Relative
file paths are taken from the folder of the config file.

```toml
[home]
id = "h-0001"
[local]                     # the home's Mosquitto, where Zigbee2MQTT publishes
url = "mqtt://127.0.0.1:1883"
[hub]                       # ca_file; cert_file + key_file and/or username + password_file
url = "mqtts://hub.example.org:8883"
ca_file = "/etc/veille/hub-ca.pem"
[storage]
dir = "/var/lib/veille"
[http]                      # optional; default 127.0.0.1:8080
listen = "0.0.0.0:8080"
```

`[local]` takes the same optional TLS and login keys as `[hub]`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from cloud_bridge.broker import BrokerUrl, BrokerUrlError, Credentials, parse_broker_url
from cloud_bridge.contract import HOME_ID_RE
from cloud_bridge.errors import ConfigError
from cloud_bridge.pages.http import parse_listen
from edge.home import _Locator

HTTP_LISTEN_DEFAULT = "127.0.0.1:8080"

_BROKER_KEYS = frozenset({"url", "ca_file", "cert_file", "key_file", "username", "password_file"})
_SECTION_KEYS: dict[str, frozenset[str]] = {
    "home": frozenset({"id"}),
    "local": _BROKER_KEYS,
    "hub": _BROKER_KEYS,
    "storage": frozenset({"dir"}),
    "http": frozenset({"listen"}),
    "speaker": frozenset({"command"}),  # optional: check-ins spoken (e.g. "espeak-ng")
}
_REQUIRED = ("home", "local", "hub", "storage")


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """One MQTT broker: where it is (parsed once) and how to log in."""

    url: BrokerUrl
    credentials: Credentials = field(default_factory=Credentials)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    home_id: str
    local: BrokerConfig
    hub: BrokerConfig
    storage_dir: Path
    http: tuple[str, int] = ("127.0.0.1", 8080)  # where the pages listen
    speaker: str = ""  # text-to-speech command for check-ins; "" = none
    source: Path | None = None  # the file it was loaded from


Fail = Callable[..., NoReturn]


def load_gateway_config(path: Path) -> GatewayConfig:
    """Read and check `gateway.toml`; ConfigError("file:line: reason") when it is not usable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            f"{path}:{match.group(1) if match else 1}: not valid TOML: {exc}"
        ) from exc
    return parse_gateway_config(data, _Locator(text), path)


def parse_gateway_config(
    data: Mapping[str, Any], where: _Locator | None = None, path: Path | None = None
) -> GatewayConfig:
    """Check parsed TOML; relative paths are resolved from `path`'s folder."""
    loc = where or _Locator("")
    name = str(path) if path else "<config>"
    base = path.parent if path else Path.cwd()

    def fail(reason: str, section: str, key: str | None = None) -> NoReturn:
        raise ConfigError(f"{name}:{loc.line(section, None, key)}: {reason}")

    for section, table in data.items():
        if section not in _SECTION_KEYS:
            fail(f"unknown section [{section}]", section)
        if not isinstance(table, dict):
            fail(f"[{section}] must be a table", section)
        for key in table:
            if key not in _SECTION_KEYS[section]:
                fail(f"unknown key {key!r} in [{section}]", section, key)
    for section in _REQUIRED:
        if section not in data:
            raise ConfigError(f"{name}:1: missing [{section}] section")

    home_id = data["home"].get("id")
    if not isinstance(home_id, str) or not HOME_ID_RE.match(home_id):
        fail(f"home id {home_id!r} must match {HOME_ID_RE.pattern}", "home", "id")

    storage = data["storage"].get("dir")
    if not isinstance(storage, str) or not storage.strip():
        fail("storage dir must be a non-empty path", "storage", "dir")

    listen = data.get("http", {}).get("listen", HTTP_LISTEN_DEFAULT)
    try:
        http = parse_listen(listen if isinstance(listen, str) else repr(listen))
    except ValueError as exc:
        fail(str(exc), "http", "listen")
    if http[1] == 0:
        fail(f"listen {listen!r} needs a fixed port (1-65535)", "http", "listen")
    speaker = data.get("speaker", {}).get("command", "")
    if not isinstance(speaker, str):
        fail("speaker command must be a string", "speaker", "command")
    return GatewayConfig(
        home_id=home_id,
        local=_broker(data["local"], "local", base, fail),
        hub=_broker(data["hub"], "hub", base, fail),
        storage_dir=_path(storage, base),
        http=http,
        speaker=speaker.strip(),
        source=path,
    )


def _path(value: str, base: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _broker(table: Mapping[str, Any], section: str, base: Path, fail: Fail) -> BrokerConfig:
    url = table.get("url")
    if not isinstance(url, str):
        fail(f"[{section}] needs a url like mqtt://host:1883 or mqtts://host:8883", section)
    try:
        broker = parse_broker_url(url)
    except BrokerUrlError as exc:
        fail(str(exc), section, "url")
    if broker.username is not None:
        fail(
            f"url {url!r} must be scheme://host[:port] (credentials go in their own keys)",
            section,
            "url",
        )
    tls = broker.tls

    files: dict[str, Path | None] = {}
    for key in ("ca_file", "cert_file", "key_file", "password_file"):
        value = table.get(key)
        if value is None:
            files[key] = None
            continue
        if not isinstance(value, str) or not value:
            fail(f"{key} must be a path", section, key)
        p = _path(value, base)
        if not p.is_file():
            fail(f"{key} {str(p)!r} does not exist or is not a file", section, key)
        files[key] = p
    if (files["cert_file"] is None) != (files["key_file"] is None):
        missing = "key_file" if files["key_file"] is None else "cert_file"
        fail(
            f"cert_file and key_file go together: {missing} is missing",
            section,
            "cert_file" if missing == "key_file" else "key_file",
        )
    if not tls and (files["ca_file"] or files["cert_file"]):
        fail(
            "TLS files need an mqtts:// url",
            section,
            "ca_file" if files["ca_file"] else "cert_file",
        )
    username = table.get("username")
    if username is not None and (not isinstance(username, str) or not username):
        fail("username must be a non-empty string", section, "username")
    if files["password_file"] is not None and username is None:
        fail("password_file needs a username", section, "password_file")
    return BrokerConfig(
        broker,
        Credentials(
            ca_file=files["ca_file"],
            cert_file=files["cert_file"],
            key_file=files["key_file"],
            username=username,
            password_file=files["password_file"],
        ),
    )
