"""The email channel against a real SMTP server (aiosmtpd) on loopback: plain, STARTTLS
with login, smtps://, and the faults the chain must see as a clear ChannelError."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from cloud_bridge.notify import mail
from cloud_bridge.notify.config import EmailChannel
from cloud_bridge.notify.errors import ChannelError
from cloud_bridge.notify.message import Notice
from tests.support import free_port, make_hub_pki

NOTICE = Notice(
    alert_id="a-7f3e9c21",
    home_id="h-0042",
    alert_type="fall",
    severity="critical",
    raised_at="2026-12-01T21:10:05Z",
    resident="Mme Jeanne Martin",
    address="12 rue des Lilas, 69003 Lyon",
    phone="04 78 00 00 00",
    access="boîte à clés, code 1942",
    room="salon",
    ack_url="https://hub.example.org/ack/abc.def",
)


@dataclass
class Inbox:
    """aiosmtpd handler: keeps what it received."""

    mails: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        self.mails.append(parsed)
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            b"veille",
            b"s3cret",
        )
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    tls_dir = make_hub_pki(tmp_path / "tls", receivers=())
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tls_dir / "hub.pem", tls_dir / "hub.key")
    return ctx, tls_dir / "ca.pem"


@pytest.fixture
def server(
    request: pytest.FixtureRequest, tls: tuple[ssl.SSLContext, Path]
) -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server; `request.param` picks plain / starttls / smtps."""
    mode = getattr(request, "param", "plain")
    inbox, port = Inbox(), free_port()
    kwargs: dict[str, Any] = {}
    if mode == "starttls":
        kwargs = {
            "tls_context": tls[0],
            "require_starttls": True,
            "authenticator": inbox.authenticate,
            "auth_require_tls": True,
        }
    elif mode == "smtps":
        # the link is TLS from the first byte (aiosmtpd only checks STARTTLS)
        kwargs = {
            "ssl_context": tls[0],
            "authenticator": inbox.authenticate,
            "auth_require_tls": False,
        }
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def channel(port: int, **changes: Any) -> EmailChannel:
    base = EmailChannel(
        name="astreinte",
        host="127.0.0.1",
        port=port,
        tls=False,
        sender="veille@hub.example.org",
        to=("astreinte@ssiad.example.org", "cadre@ssiad.example.org"),
        timeout_s=5.0,
    )
    return replace(base, **changes)


def test_a_plain_smtp_server_receives_the_alert_in_plain_french(
    server: tuple[Inbox, int],
) -> None:
    inbox, port = server
    asyncio.run(mail.send(channel(port), NOTICE))
    [received] = inbox.mails
    assert inbox.envelopes[0].rcpt_tos == ["astreinte@ssiad.example.org", "cadre@ssiad.example.org"]
    assert received["Subject"] == "Chute détectée : Mme Jeanne Martin"
    assert received["From"] == "veille@hub.example.org"
    assert received["X-Veille-Alert"] == "a-7f3e9c21"
    plain = received.get_body(("plain",))
    page = received.get_body(("html",))
    assert plain is not None
    assert page is not None
    body = plain.get_content().replace("\r\n", "\n")
    assert body.startswith("Chute détectée chez Mme Jeanne Martin.\n")
    for line in (
        "Gravité : critique",
        "Adresse : 12 rue des Lilas, 69003 Lyon",
        "Accès : boîte à clés, code 1942",
        "Pièce : salon",
        "Déclenchée : le 01/12/2026 à 22:10",  # Paris time, winter: UTC+1
        "https://hub.example.org/ack/abc.def",
    ):
        assert line in body
    html = page.get_content()
    assert '<a href="https://hub.example.org/ack/abc.def">Prendre en charge' in html
    assert "<h1>Chute détectée chez Mme Jeanne Martin</h1>" in html


@pytest.mark.parametrize("server", ["starttls"], indirect=True)
def test_starttls_then_login_when_the_server_requires_it(
    server: tuple[Inbox, int], tls: tuple[ssl.SSLContext, Path]
) -> None:
    inbox, port = server
    secure = channel(port, user="veille", password="s3cret", ca_file=tls[1])
    asyncio.run(mail.send(secure, replace(NOTICE, attempt=2)))
    assert inbox.logins == ["veille"]
    assert inbox.mails[0]["Subject"] == "[Rappel] Chute détectée : Mme Jeanne Martin"
    with pytest.raises(ChannelError, match=r"'astreinte': login refused \(535\)"):
        asyncio.run(mail.send(replace(secure, password="wrong"), NOTICE))
    with pytest.raises(ChannelError, match="cannot send through"):  # server wants STARTTLS
        asyncio.run(mail.send(replace(secure, starttls="never", user=None), NOTICE))
    with pytest.raises(ChannelError, match="CERTIFICATE_VERIFY_FAILED"):  # unknown CA
        asyncio.run(mail.send(replace(secure, ca_file=None), NOTICE))
    assert len(inbox.mails) == 1


@pytest.mark.parametrize("server", ["smtps"], indirect=True)
def test_smtps_from_the_first_byte(
    server: tuple[Inbox, int], tls: tuple[ssl.SSLContext, Path]
) -> None:
    inbox, port = server
    asyncio.run(
        mail.send(channel(port, tls=True, ca_file=tls[1], user="veille", password="s3cret"), NOTICE)
    )
    assert inbox.logins == ["veille"]
    assert len(inbox.mails) == 1


def test_require_starttls_refuses_a_server_without_it(server: tuple[Inbox, int]) -> None:
    inbox, port = server
    with pytest.raises(ChannelError, match="does not offer STARTTLS"):
        asyncio.run(mail.send(channel(port, starttls="require"), NOTICE))
    with pytest.raises(ChannelError, match="no login over an unencrypted link"):
        asyncio.run(mail.send(channel(port, user="veille", password="s3cret"), NOTICE))
    assert inbox.mails == []


def test_a_server_down_is_a_clear_error_the_chain_can_act_on() -> None:
    port = free_port()  # nobody listens there
    with pytest.raises(ChannelError) as info:
        asyncio.run(mail.send(channel(port), NOTICE))
    assert info.value.channel == "astreinte"
    assert f"cannot send through 127.0.0.1:{port}: ConnectionRefusedError" in str(info.value)
