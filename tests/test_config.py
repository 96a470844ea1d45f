"""`gateway.toml` loading: the DESIGN.md example, and precise `file:line: reason` refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_bridge.broker import BrokerUrl, Credentials
from cloud_bridge.errors import ConfigError
from edge.config import BrokerConfig, GatewayConfig, load_gateway_config
from edge.runtime.gateway import settings_from_config

EXAMPLE = """\
[home]
id = "h-0001"                      # as in the wire contract
[local]
url = "mqtt://127.0.0.1:1883"      # the home's Mosquitto, where Zigbee2MQTT publishes
[hub]
url = "mqtts://hub.example.org:8883"
ca_file = "certs/hub-ca.pem"
[storage]
dir = "/var/lib/veille"            # registry, outbox, learned models
[http]
listen = "0.0.0.0:8080"            # the status page
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "certs").mkdir()
    for name in ("hub-ca.pem", "gw.crt", "gw.key", "hub.pass"):
        (tmp_path / "certs" / name).write_text("secret-password\nignored\n")
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "gateway.toml"
    path.write_text(text)
    return path


def test_design_example_loads(folder: Path) -> None:
    path = write(folder, EXAMPLE)
    assert load_gateway_config(path) == GatewayConfig(
        home_id="h-0001",
        local=BrokerConfig(BrokerUrl("127.0.0.1", 1883)),
        hub=BrokerConfig(
            BrokerUrl("hub.example.org", 8883, tls=True),
            Credentials(ca_file=folder / "certs" / "hub-ca.pem"),
        ),
        storage_dir=Path("/var/lib/veille"),
        http=("0.0.0.0", 8080),
        source=path,
    )


def test_client_certificate_login_default_ports_and_ipv6(folder: Path) -> None:
    text = EXAMPLE.replace(
        'url = "mqtts://hub.example.org:8883"',
        'url = "mqtts://hub.example.org"\ncert_file = "certs/gw.crt"\nkey_file = "certs/gw.key"\n'
        'username = "h-0001"\npassword_file = "certs/hub.pass"',
    )
    text = text.replace('url = "mqtt://127.0.0.1:1883"', 'url = "mqtt://localhost"')
    text = text.replace('dir = "/var/lib/veille"', 'dir = "state"')
    text = text.replace('listen = "0.0.0.0:8080"', 'listen = "[::1]:9000"')
    path = write(folder, text)
    cfg = load_gateway_config(path)
    assert cfg.hub.url == BrokerUrl("hub.example.org", 8883, tls=True)
    assert cfg.local.url == BrokerUrl("localhost", 1883)
    assert cfg.hub.credentials == Credentials(
        ca_file=folder / "certs" / "hub-ca.pem",
        cert_file=folder / "certs" / "gw.crt",
        key_file=folder / "certs" / "gw.key",
        username="h-0001",
        password_file=folder / "certs" / "hub.pass",
    )
    assert cfg.hub.credentials.password() == "secret-password"
    assert cfg.local.credentials.password() is None
    assert cfg.storage_dir == folder / "state"
    assert cfg.http == ("::1", 9000)
    # what `veille run` gets: the same objects, not parsed again
    settings = settings_from_config(path)
    assert (settings.local, settings.hub, settings.http) == (cfg.local.url, cfg.hub.url, cfg.http)
    assert settings.hub_credentials == cfg.hub.credentials


def test_http_section_is_optional(folder: Path) -> None:
    text = EXAMPLE.split("[http]", maxsplit=1)[0]
    cfg = load_gateway_config(write(folder, text))
    assert cfg.http == ("127.0.0.1", 8080)


def test_speaker_is_optional_and_names_a_command(folder: Path) -> None:
    assert load_gateway_config(write(folder, EXAMPLE)).speaker == ""
    cfg = load_gateway_config(write(folder, EXAMPLE + '[speaker]\ncommand = "espeak-ng -s 140"\n'))
    assert cfg.speaker == "espeak-ng -s 140"


BAD = [
    pytest.param(
        ("[http]", "[speaker]\ncommand = 3\n[http]"),
        11,
        "speaker command must be a string",
        id="speaker-not-a-string",
    ),
    pytest.param(('id = "h-0001"', 'id = "H_1"'), 2, "home id 'H_1'", id="bad-home-id"),
    pytest.param(
        ("[http]", "[http]\nport = 8080"), 11, "unknown key 'port' in [http]", id="unknown-key"
    ),
    pytest.param(("[http]", "[mqtt]\n[http]"), 10, "unknown section [mqtt]", id="unknown-section"),
    pytest.param(
        ('"mqtt://127.0.0.1:1883"', '"http://127.0.0.1:1883"'),
        4,
        "mqtt:// or mqtts://",
        id="bad-scheme",
    ),
    pytest.param(
        ('"mqtt://127.0.0.1:1883"', '"mqtt://127.0.0.1:99999"'), 4, "bad port", id="bad-port"
    ),
    pytest.param(
        ('"mqtt://127.0.0.1:1883"', '"mqtt://u:p@127.0.0.1"'),
        4,
        "credentials go in their own keys",
        id="password-in-url",
    ),
    pytest.param(
        ('"certs/hub-ca.pem"', '"certs/missing.pem"'), 7, "does not exist", id="missing-ca"
    ),
    pytest.param(
        (
            'ca_file = "certs/hub-ca.pem"',
            'ca_file = "certs/hub-ca.pem"\ncert_file = "certs/gw.crt"',
        ),
        8,
        "key_file is missing",
        id="cert-without-key",
    ),
    pytest.param(
        ('ca_file = "certs/hub-ca.pem"', 'password_file = "certs/hub.pass"'),
        7,
        "needs a username",
        id="password-without-user",
    ),
    pytest.param(('"0.0.0.0:8080"', '"0.0.0.0"'), 11, "HOST:PORT", id="bad-listen"),
    pytest.param(('dir = "/var/lib/veille"', "dir = 3"), 9, "storage dir", id="bad-storage"),
    pytest.param(('url = "mqtt://127.0.0.1:1883"', ""), 3, "needs a url", id="no-local-url"),
    pytest.param(
        ("[storage]\n", "[storag]\n"), 8, "unknown section [storag]", id="misspelt-section"
    ),
    pytest.param(('id = "h-0001"', 'id = "h-0001'), 2, "not valid TOML", id="bad-toml"),
]


@pytest.mark.parametrize(("change", "line", "reason"), BAD)
def test_bad_config_is_refused_with_file_line_and_reason(
    folder: Path, change: tuple[str, str], line: int, reason: str
) -> None:
    old, new = change
    assert old in EXAMPLE
    path = write(folder, EXAMPLE.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert reason in message
    assert "\n" not in message


def test_missing_section_and_missing_file(folder: Path) -> None:
    path = write(folder, EXAMPLE.replace("[storage]\n", "").replace('dir = "/var/lib/veille"', ""))
    with pytest.raises(ConfigError, match=r"gateway.toml:1: missing \[storage\] section"):
        load_gateway_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_gateway_config(folder / "nope.toml")
