"""The small PKI: files, modes, extensions, and interop with OpenSSL's own verifier."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud_bridge import pki
from cloud_bridge.errors import VeilleError
from edge.commands import cli

OPENSSL = shutil.which("openssl")
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def openssl_verify(ca: Path, cert: Path, purpose: str) -> str:
    assert OPENSSL, "openssl is part of the test environment"
    done = subprocess.run(
        [OPENSSL, "verify", "-CAfile", str(ca), "-purpose", purpose, str(cert)],
        capture_output=True,
        text=True,
        check=False,
    )
    return (done.stdout + done.stderr).strip()


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    pki.init_ca(tmp_path / "ca")
    return tmp_path / "ca"


def test_init_ca_makes_a_p256_ca_for_ten_years(tmp_path: Path) -> None:
    cert_path, key_path = pki.init_ca(tmp_path / "ca")
    assert (cert_path.name, key_path.name) == ("ca.pem", "ca.key")
    assert mode(key_path) == 0o600
    cert = load(cert_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(key.curve, ec.SECP256R1)
    assert cert.public_key() == key.public_key()
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    cert.verify_directly_issued_by(cert)  # self-signed
    years = (cert.not_valid_after_utc - cert.not_valid_before_utc).days / 365
    assert 9.9 < years < 10.1
    with pytest.raises(VeilleError, match="already exists"):
        pki.init_ca(tmp_path / "ca")


def test_server_certificate_names_its_hosts(ca_dir: Path) -> None:
    cert_path, key_path = pki.issue(
        ca_dir, "hub", "server", ("127.0.0.1", "::1", "Hub.Example.org")
    )
    assert mode(key_path) == 0o600
    cert = load(cert_path)
    cert.verify_directly_issued_by(load(ca_dir / "ca.pem"))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    assert san.get_values_for_type(x509.DNSName) == ["hub.example.org"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert openssl_verify(ca_dir / "ca.pem", cert_path, "sslserver").endswith(": OK")
    assert "OK" not in openssl_verify(ca_dir / "ca.pem", cert_path, "sslclient")


def test_client_certificate_is_for_clients_only(ca_dir: Path) -> None:
    cert_path, _key = pki.issue(ca_dir, "h-0001", "client")
    cert = load(cert_path)
    assert common_name(cert) == "h-0001"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert openssl_verify(ca_dir / "ca.pem", cert_path, "sslclient").endswith(": OK")
    assert "OK" not in openssl_verify(ca_dir / "ca.pem", cert_path, "sslserver")


def test_csr_signed_by_the_hub_keeps_the_home_key_at_home(ca_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    key_path, csr_path = pki.make_csr(home / "h-0042.key", home / "h-0042.csr", "h-0042")
    assert mode(key_path) == 0o600
    cert_path = pki.sign_csr(ca_dir, csr_path, days=90)
    assert cert_path == ca_dir / "h-0042.pem"
    assert not (ca_dir / "h-0042.key").exists()
    cert = load(cert_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert cert.public_key() == key.public_key()
    assert common_name(cert) == "h-0042"
    cert.verify_directly_issued_by(load(ca_dir / "ca.pem"))
    now = dt.datetime.now(dt.UTC)
    assert abs((cert.not_valid_after_utc - now) - dt.timedelta(days=90)) < dt.timedelta(minutes=5)
    assert cert.not_valid_before_utc < now
    with pytest.raises(VeilleError, match="already exists"):
        pki.make_csr(key_path, home / "again.csr", "h-0042")
    assert key_path.read_bytes() == key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_csr(path: Path, name: str, key: PrivateKey) -> Path:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize(
    ("name", "key_factory", "reason"),
    [
        ("Home_A", lambda: ec.generate_private_key(ec.SECP256R1()), "not a home id"),
        ("ab", lambda: ec.generate_private_key(ec.SECP256R1()), "not a home id"),
        ("hub-admin", lambda: ec.generate_private_key(ec.SECP256R1()), "receivers and the hub"),
        ("h-0001", lambda: ec.generate_private_key(ec.SECP256K1()), "curve secp256k1"),
        (
            "h-0001",
            lambda: rsa.generate_private_key(65537, 1024),  # noqa: S505 - refused on purpose
            "1024 bits is too small",
        ),
    ],
)
def test_sign_csr_refuses_bad_requests(
    ca_dir: Path, tmp_path: Path, name: str, key_factory: Callable[[], PrivateKey], reason: str
) -> None:
    csr = write_csr(tmp_path / "req.csr", name, key_factory())
    with pytest.raises(VeilleError, match=reason):
        pki.sign_csr(ca_dir, csr)
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca.key", "ca.pem"]


def test_sign_csr_accepts_rsa(ca_dir: Path, tmp_path: Path) -> None:
    rsa_csr = write_csr(tmp_path / "h.csr", "h-0007", rsa.generate_private_key(65537, 2048))
    cert_path = pki.sign_csr(ca_dir, rsa_csr)
    assert openssl_verify(ca_dir / "ca.pem", cert_path, "sslclient").endswith(": OK")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("h-0001\n", "not a home id"),  # `$` would let the newline through
        ("h-0001\nuser hub-receiver-1", "not a home id"),
        ("hub-receiver-2", "receivers and the hub"),  # a home must not become a receiver
        ("hub", "receivers and the hub"),
        ("hub-1", "receivers and the hub"),
    ],
)
def test_sign_csr_signs_only_home_ids(ca_dir: Path, tmp_path: Path, name: str, reason: str) -> None:
    csr = write_csr(tmp_path / "req.csr", name, ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(VeilleError, match=reason):
        pki.sign_csr(ca_dir, csr)
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca.key", "ca.pem"]


def test_sign_csr_never_overwrites_a_certificate_unless_forced(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = pki.sign_csr(
        ca_dir, write_csr(tmp_path / "a.csr", "h-0005", ec.generate_private_key(ec.SECP256R1()))
    )
    kept = first.read_bytes()
    other = write_csr(tmp_path / "b.csr", "h-0005", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(VeilleError, match=r"already exists.*--force"):
        pki.sign_csr(ca_dir, other)
    assert first.read_bytes() == kept
    assert cli.main(["pki", "sign-csr", str(other), "--dir", str(ca_dir)]) == 1
    assert "--force" in capsys.readouterr().err
    assert first.read_bytes() == kept
    assert cli.main(["pki", "sign-csr", str(other), "--force", "--dir", str(ca_dir)]) == 0
    replaced = load(first)
    want = x509.load_pem_x509_csr(other.read_bytes()).public_key()
    assert replaced.public_key() == want


def test_sign_csr_refuses_a_tampered_request(ca_dir: Path, tmp_path: Path) -> None:
    _key, csr_path = pki.make_csr(tmp_path / "k.key", tmp_path / "good.csr", "h-0001")
    der = bytearray(
        x509.load_pem_x509_csr(csr_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    )
    at = der.find(b"h-0001")
    der[at : at + 6] = b"h-0002"  # the name changed after the home signed the request
    tampered = tmp_path / "tampered.csr"
    tampered.write_bytes(
        x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(VeilleError, match="signature does not match"):
        pki.sign_csr(ca_dir, tampered)
    (tmp_path / "junk.csr").write_text("not a request\n")
    with pytest.raises(VeilleError, match="not a PEM certificate signing request"):
        pki.sign_csr(ca_dir, tmp_path / "junk.csr")
    with pytest.raises(VeilleError, match="validity"):
        pki.sign_csr(ca_dir, csr_path, days=0)
    with pytest.raises(VeilleError, match="no CA in"):
        pki.sign_csr(tmp_path / "nowhere", csr_path)


def test_issue_refuses_bad_names(ca_dir: Path) -> None:
    with pytest.raises(VeilleError, match="neither an IP address nor a DNS name"):
        pki.issue(ca_dir, "hub", "server", ("bad host",))
    with pytest.raises(VeilleError, match="reserved"):
        pki.issue(ca_dir, "hub-everything", "client")
    with pytest.raises(VeilleError, match="neither 'server' nor 'client'"):
        pki.issue(ca_dir, "h-0001", "admin")  # type: ignore[arg-type]


def test_key_files_stay_private_when_rewritten(ca_dir: Path) -> None:
    _cert, key_path = pki.issue(ca_dir, "h-0003", "client")
    key_path.chmod(0o644)
    pki.issue(ca_dir, "h-0003", "client")
    assert mode(key_path) == 0o600


def test_cli_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca, home = tmp_path / "ca", tmp_path / "home"
    assert cli.main(["pki", "init-ca", "--dir", str(ca)]) == 0
    assert cli.main(["pki", "issue", "hub", "server", "10.0.0.5", "--dir", str(ca)]) == 0
    assert cli.main(["pki", "csr", "h-0009", "--dir", str(home)]) == 0
    assert cli.main(["pki", "sign-csr", str(home / "h-0009.csr"), "30", "--dir", str(ca)]) == 0
    out = capsys.readouterr().out.split()
    assert out == [
        str(ca / "ca.pem"),
        str(ca / "ca.key"),
        str(ca / "hub.pem"),
        str(ca / "hub.key"),
        str(home / "h-0009.key"),
        str(home / "h-0009.csr"),
        str(ca / "h-0009.pem"),
    ]
    assert openssl_verify(ca / "ca.pem", ca / "h-0009.pem", "sslclient").endswith(": OK")


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["pki", "forge"], "unknown action 'forge'"),
        (["pki", "init-ca", "extra"], "usage: veille pki init-ca"),
        (["pki", "issue", "hub"], "usage: veille pki issue"),
        (["pki", "issue", "h-0001", "client", "1.2.3.4"], "client certificates take no host"),
        (["pki", "sign-csr", "x.csr", "soon"], "DAYS must be a whole number"),
        (["pki", "sign-csr", "missing.csr"], "missing.csr: no such file"),
    ],
)
def test_cli_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], reason: str
) -> None:
    pki.init_ca(tmp_path)
    assert cli.main([*argv, "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("veille pki: ")
    assert reason in err
