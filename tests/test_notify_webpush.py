"""Web push with VAPID, received by a push service on loopback that checks the VAPID
signature and decrypts the message (RFC 8291, http_ece) the way the phone's browser would:
the test reads what the phone reads."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import http_ece
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cloud_bridge.notify import webpush
from cloud_bridge.notify.config import WebpushChannel, load_notify_config
from cloud_bridge.notify.errors import ChannelError
from cloud_bridge.notify.message import Notice

NOTICE = Notice(
    alert_id="a-7f3e9c21",
    home_id="h-0042",
    alert_type="sos",
    severity="critical",
    raised_at="2026-12-01T06:45:00Z",
    resident="M. Paul Girard",
    room="chambre",
    ack_url="https://hub.example.org/ack/abc.def",
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Phone:
    """A browser's side of a subscription: its key pair and auth secret."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self, endpoint: str) -> webpush.Subscription:
        point = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return webpush.Subscription(endpoint, b64(point), b64(self.auth))


@dataclass
class PushService:
    """What a push service and the phone do with a push: check VAPID, decrypt."""

    phones: dict[str, Phone] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # phones whose subscription ended: 410
    port: int = 0

    def check_vapid(self, authorization: str, audience: str) -> dict[str, Any]:
        scheme, _, params = authorization.partition(" ")
        assert scheme == "vapid"
        fields = dict(p.strip().split("=", 1) for p in params.split(","))
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(fields["k"]))
        head, body, sig = fields["t"].split(".")
        raw = unb64(sig)
        der = encode_dss_signature(int.from_bytes(raw[:32]), int.from_bytes(raw[32:]))
        public.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
        claims: dict[str, Any] = json.loads(unb64(body))
        assert claims["aud"] == audience
        assert time.time() < claims["exp"] <= time.time() + 24 * 3600
        claims["k"] = fields["k"]
        return claims

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        name = path.rsplit("/", 1)[-1]
        if path.startswith("/gone/") or name in self.gone:
            return 410
        phone = self.phones.get(name)
        if phone is None:
            return 404
        try:
            claims = self.check_vapid(headers["authorization"], f"http://127.0.0.1:{self.port}")
        except (InvalidSignature, AssertionError, KeyError, ValueError) as exc:
            self.refused.append(f"{exc!r} {sorted(headers)}")
            return 401
        assert headers["content-encoding"] == "aes128gcm"
        self.headers.append(headers)
        try:  # the service carries it; the phone decrypts it
            plain = http_ece.decrypt(
                body, private_key=phone.key, auth_secret=phone.auth, version="aes128gcm"
            )
        except Exception as exc:  # any failure means the phone cannot read it
            self.unreadable.append(repr(exc))
            return 201
        self.received.append({"to": name, "claims": claims, "message": json.loads(plain)})
        return 201


@pytest.fixture
def service() -> Iterator[PushService]:
    push = PushService()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = push.handle(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    push.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield push
    finally:
        server.shutdown()
        server.server_close()


def write_vapid_key(path: Path) -> None:
    """A new VAPID key (P-256), as the hub reads it: PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture
def channel(tmp_path: Path) -> WebpushChannel:
    """A webpush channel read from notify.toml, its VAPID key in a PEM file."""
    write_vapid_key(tmp_path / "vapid.pem")
    (tmp_path / "notify.toml").write_text("""\
[[channel]]
name = "phones"
kind = "webpush"
vapid_private_key_file = "vapid.pem"
subject = "mailto:admin@hub.example.org"
ttl_s = 600
[[escalation]]
after_s = 0
channels = ["phones"]
""")
    loaded = load_notify_config(tmp_path / "notify.toml").channels["phones"]
    assert isinstance(loaded, WebpushChannel)
    return loaded


def test_each_phone_reads_the_alert_in_french(
    service: PushService, channel: WebpushChannel
) -> None:
    service.phones = {"claire": Phone(), "malik": Phone()}
    base = f"http://127.0.0.1:{service.port}/push/"
    subs = [p.subscription(base + name) for name, p in service.phones.items()]
    try:
        result = asyncio.run(webpush.send(channel, NOTICE, subs))
    finally:
        assert service.refused == []
    assert result == webpush.PushResult(delivered=2, gone=())
    assert sorted(r["to"] for r in service.received) == ["claire", "malik"]
    for got in service.received:
        assert got["message"] == {
            "title": "Appel d'urgence (bouton SOS) : M. Paul Girard",
            "body": "Appel d'urgence (bouton SOS) (chambre), le 01/12/2026 à 07:45.",
            "alert_id": "a-7f3e9c21",
            "home_id": "h-0042",
            "severity": "critical",
            "url": "https://hub.example.org/ack/abc.def",
        }
        assert got["claims"]["sub"] == "mailto:admin@hub.example.org"
        assert got["claims"]["k"] == webpush.application_server_key(channel)
    assert {h["ttl"] for h in service.headers} == {"600"}
    assert {h["urgency"] for h in service.headers} == {"high"}


def test_gone_subscriptions_are_reported_and_a_push_to_nobody_is_an_error(
    service: PushService, channel: WebpushChannel, tmp_path: Path
) -> None:
    service.phones = {"claire": Phone()}
    base = f"http://127.0.0.1:{service.port}"
    subs = [
        service.phones["claire"].subscription(f"{base}/push/claire"),
        Phone().subscription(f"{base}/gone/old-phone"),
    ]
    result = asyncio.run(webpush.send(channel, NOTICE, subs))
    assert result == webpush.PushResult(delivered=1, gone=(f"{base}/gone/old-phone",))
    with pytest.raises(ChannelError, match=r"no push delivered \(1 subscription\(s\), 1 gone"):
        asyncio.run(webpush.send(channel, NOTICE, subs[1:]))
    with pytest.raises(ChannelError, match="no phone has subscribed"):
        asyncio.run(webpush.send(channel, NOTICE))


def test_a_wrong_key_is_not_readable_and_a_service_down_is_an_error(
    service: PushService, channel: WebpushChannel
) -> None:
    service.phones = {"claire": Phone()}
    # keys that are not the phone's: the service carries it, the phone cannot read it
    stranger = Phone().subscription(f"http://127.0.0.1:{service.port}/push/claire")
    asyncio.run(webpush.send(channel, NOTICE, [stranger]))
    assert service.received == []
    assert len(service.unreadable) == 1
    server_down = Phone().subscription("http://127.0.0.1:9/push/nobody")
    with pytest.raises(ChannelError, match="no push delivered"):
        asyncio.run(webpush.send(channel, NOTICE, [server_down]))


def test_subscriptions_file_is_read_and_bad_entries_skipped(
    service: PushService, channel: WebpushChannel, tmp_path: Path
) -> None:
    service.phones = {"claire": Phone()}
    good = service.phones["claire"].subscription(f"http://127.0.0.1:{service.port}/push/claire")
    path = tmp_path / "subs.json"
    path.write_text(json.dumps([good.info(), {"endpoint": "ftp://x"}, {"keys": {}}]))
    assert webpush.load_subscriptions(path) == [good]
    assert "auth" not in repr(good).replace("p256dh", "")
