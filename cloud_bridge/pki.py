"""A small PKI for the hub broker's TLS: a test CA, server and client certificates, CSRs.

For tests and pilots. A production hub may use its own CA; the files are plain PEM either way.

Layout of a CA folder (`--dir`): `ca.pem` + `ca.key` (the CA), `<name>.pem` + `<name>.key`
for certificates issued here, `<home>.pem` for certificates signed from a home's CSR (the
home's key stays in the home: `make_csr` writes it there and only the CSR travels).

Names: a client certificate's common name is the MQTT username on the hub broker
(`use_identity_as_username`), so it must be a home id (wire contract) or a hub role such as
`hub-receiver-1`. The prefix `hub-` is reserved for hub roles: a home id starting with it
is refused, so a home can never be certified under a receiver's name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloud_bridge.contract import HOME_ID_RE
from cloud_bridge.errors import VeilleError

_LOGGER = logging.getLogger(__name__)

CA_DAYS = 3650
SERVER_CERT_DAYS = 825
CLIENT_CERT_DAYS = 825
MAX_CERT_DAYS = 3650
CLOCK_SKEW_S = 300  # certificates start a little in the past: a Pi's clock may lag at boot
KEY_FILE_MODE = 0o600
CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca.key"
HUB_ROLE_PREFIX = "hub-"
HUB_ROLE_RE = re.compile(r"^hub-receiver-[a-z0-9][a-z0-9-]{0,48}$")
_DNS_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
DNS_NAME_RE = re.compile(rf"^(?=.{{1,253}}$){_DNS_LABEL}(\.{_DNS_LABEL})*$")
MIN_RSA_BITS = 2048
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)
RECEIVER_BLOCK_START = "# --- receivers ---"
RECEIVER_BLOCK_END = "# --- end receivers ---"

Kind = Literal["server", "client"]


def _now() -> dt.datetime:
    """Certificates are dated from the wall clock (UTC); nothing else here reads a clock."""
    return dt.datetime.now(dt.UTC)


def check_client_name(name: str) -> str:
    """A client certificate's CN: a home id (not `hub-...`) or a hub role `hub-receiver-N`.

    `fullmatch`, never `match`: `$` also matches before a trailing newline."""
    if HUB_ROLE_RE.fullmatch(name):
        return name
    if name.startswith(HUB_ROLE_PREFIX):
        raise VeilleError(
            f"{name!r}: the prefix {HUB_ROLE_PREFIX!r} is reserved for hub roles "
            "(hub-receiver-<name>)"
        )
    if not HOME_ID_RE.fullmatch(name):
        raise VeilleError(f"{name!r} is neither a home id ({HOME_ID_RE.pattern}) nor a hub role")
    return name


def check_home_name(name: str) -> str:
    """A CSR's CN as `sign-csr` accepts it: a home id, exactly, and never a hub name."""
    if name == HUB_ROLE_PREFIX.rstrip("-") or name.startswith(HUB_ROLE_PREFIX):
        raise VeilleError(
            f"{name!r}: sign-csr signs homes only; receivers and the hub get their "
            "certificates from `veille pki issue` on the hub's side"
        )
    if not HOME_ID_RE.fullmatch(name):
        raise VeilleError(f"{name!r} is not a home id ({HOME_ID_RE.pattern}, nothing else)")
    return name


def _check_hosts(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        if not DNS_NAME_RE.match(host.lower()):
            raise VeilleError(f"{host!r} is neither an IP address nor a DNS name")
        names.append(x509.DNSName(host.lower()))
    if not names:
        raise VeilleError("a server certificate needs at least one host name or IP address")
    return names


def _check_days(days: int) -> int:
    if not 1 <= days <= MAX_CERT_DAYS:
        raise VeilleError(f"validity of {days} days is outside 1..{MAX_CERT_DAYS}")
    return days


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a PEM private key readable by its owner alone (created 0600, never widened)."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)  # an existing file keeps its mode through O_CREAT
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_pem(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Veille"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_dir / CA_CERT_NAME, ca_dir / CA_KEY_NAME
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise VeilleError(f"no CA in {ca_dir} (run `veille pki init-ca` first)") from exc
    except (ValueError, TypeError) as exc:
        raise VeilleError(f"unreadable CA in {ca_dir}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise VeilleError(f"{key_path}: the CA key is not an EC key")
    return cert, key


def _leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    *,
    kind: Kind,
    days: int,
    sans: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    now = _now()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if kind == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(seconds=CLOCK_SKEW_S))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def init_ca(ca_dir: Path, common_name: str = "Veille test CA") -> tuple[Path, Path]:
    """Create a CA (EC P-256, CA:TRUE, 10 years) in `ca_dir`; refuse to replace one."""
    ca_dir = Path(ca_dir)
    cert_path, key_path = ca_dir / CA_CERT_NAME, ca_dir / CA_KEY_NAME
    if cert_path.exists() or key_path.exists():
        raise VeilleError(f"a CA already exists in {ca_dir}; remove it first to make a new one")
    key = _new_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(seconds=CLOCK_SKEW_S))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path, key)
    _write_pem(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _LOGGER.info("CA %r created in %s", common_name, ca_dir)
    return cert_path, key_path


def issue(
    ca_dir: Path,
    common_name: str,
    kind: Kind,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
    days: int | None = None,
) -> tuple[Path, Path]:
    """Make a key and a certificate signed by the CA in `ca_dir`: `<cn>.pem`, `<cn>.key`.

    Server certificates carry `hosts` as IP/DNS subject alternative names; client
    certificates carry none and their CN must be a home id or a hub role.
    """
    ca_dir = Path(ca_dir)
    if kind == "client":
        check_client_name(common_name)
        sans: list[x509.GeneralName] = []
        days = _check_days(days or CLIENT_CERT_DAYS)
    elif kind == "server":
        if not DNS_NAME_RE.match(common_name.lower()):
            raise VeilleError(f"server name {common_name!r} is not a DNS-style name")
        sans = _check_hosts(hosts)
        days = _check_days(days or SERVER_CERT_DAYS)
    else:
        raise VeilleError(f"kind {kind!r} is neither 'server' nor 'client'")
    ca_cert, ca_key = _load_ca(ca_dir)
    key = _new_key()
    cert = _leaf(ca_cert, ca_key, common_name, key.public_key(), kind=kind, days=days, sans=sans)
    cert_path, key_path = ca_dir / f"{common_name}.pem", ca_dir / f"{common_name}.key"
    _write_key(key_path, key)
    _write_pem(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _LOGGER.info("%s certificate for %r issued in %s", kind, common_name, ca_dir)
    return cert_path, key_path


def make_csr(key_path_out: Path, csr_path_out: Path, common_name: str) -> tuple[Path, Path]:
    """The home's side: a new private key (0600, stays here) and a CSR to send to the hub.

    Refuses to replace an existing key: a home keeps its key across certificate renewals
    unless the installer removes it on purpose.
    """
    key_path_out, csr_path_out = Path(key_path_out), Path(csr_path_out)
    check_client_name(common_name)
    if key_path_out.exists():
        raise VeilleError(f"{key_path_out} already exists; remove it first to make a new key")
    key = _new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_name(common_name))
        .sign(key, hashes.SHA256())
    )
    _write_key(key_path_out, key)
    _write_pem(csr_path_out, csr.public_bytes(serialization.Encoding.PEM))
    _LOGGER.info("key %s and CSR %s made for %r", key_path_out, csr_path_out, common_name)
    return key_path_out, csr_path_out


def _csr_common_name(csr: x509.CertificateSigningRequest, csr_path: Path) -> str:
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        raise VeilleError(f"{csr_path}: the CSR must carry exactly one common name")
    return names[0].value


def _check_public_key(
    public_key: object, csr_path: Path
) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ALLOWED_CURVES):
            raise VeilleError(f"{csr_path}: curve {public_key.curve.name} is not accepted")
        return public_key
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise VeilleError(f"{csr_path}: RSA key of {public_key.key_size} bits is too small")
        return public_key
    raise VeilleError(f"{csr_path}: only EC (P-256, P-384) and RSA keys are accepted")


def sign_csr(
    ca_dir: Path, csr_path: Path, days: int = CLIENT_CERT_DAYS, *, force: bool = False
) -> Path:
    """The hub operator's side: check a home's CSR and sign it as `<cn>.pem` in `ca_dir`.

    Only a home id is signed (a receiver's or the hub's name would give a home their rights),
    and an existing certificate is replaced only with `force`."""
    ca_dir, csr_path = Path(ca_dir), Path(csr_path)
    _check_days(days)
    try:
        csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    except FileNotFoundError as exc:
        raise VeilleError(f"{csr_path}: no such file") from exc
    except ValueError as exc:
        raise VeilleError(f"{csr_path}: not a PEM certificate signing request") from exc
    try:
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature):
        valid = False
    if not valid:
        raise VeilleError(f"{csr_path}: the CSR's signature does not match its key")
    common_name = check_home_name(_csr_common_name(csr, csr_path))
    public_key = _check_public_key(csr.public_key(), csr_path)
    ca_cert, ca_key = _load_ca(ca_dir)
    cert_path = ca_dir / f"{common_name}.pem"
    if cert_path.exists() and not force:
        raise VeilleError(f"{cert_path} already exists; give --force to replace it")
    cert = _leaf(ca_cert, ca_key, common_name, public_key, kind="client", days=days)
    _write_pem(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    _LOGGER.info("CSR %s signed for %r, valid %d days: %s", csr_path, common_name, days, cert_path)
    return cert_path


def render_hub_acl(acl_text: str, receivers: Sequence[str]) -> str:
    """The hub ACL with one `user` block per receiver name, made from the first block.

    Mosquitto ACL files cannot match usernames by pattern, so each receiver gets its own
    block. The committed `hub.acl` holds the blocks between the receiver markers; the first
    block is the template (its `user` line is replaced by each name).
    """
    start, end = acl_text.find(RECEIVER_BLOCK_START), acl_text.find(RECEIVER_BLOCK_END)
    if start < 0 or end < start:
        raise VeilleError("the ACL has no receiver block markers")
    blocks = acl_text[start + len(RECEIVER_BLOCK_START) : end].strip().split("\n\n")
    template = [line for line in blocks[0].splitlines() if line.startswith("topic ")]
    if not template:
        raise VeilleError("the ACL's first receiver block has no topic lines")
    out = []
    for name in receivers:
        if not HUB_ROLE_RE.match(name):
            raise VeilleError(f"{name!r} is not a hub receiver name (hub-receiver-<name>)")
        out.append("\n".join([f"user {name}", *template]))
    body = "\n\n".join(out)
    return f"{acl_text[:start]}{RECEIVER_BLOCK_START}\n{body}\n{acl_text[end:]}"


def _print_paths(*paths: Path) -> None:
    for path in paths:
        print(path)  # the command's output is the list of files it wrote


def main(args: argparse.Namespace) -> int:
    """`veille pki ACTION [ARGS] --dir DIR`; see the usage line of each action below."""
    action, rest, ca_dir = args.action, list(args.args), Path(args.dir)
    usage = {
        "init-ca": "veille pki init-ca --dir CA_DIR",
        "issue": "veille pki issue NAME server|client [HOST ...] --dir CA_DIR",
        "csr": "veille pki csr HOME_ID --dir HOME_TLS_DIR   (writes HOME_ID.key and HOME_ID.csr)",
        "sign-csr": "veille pki sign-csr CSR_FILE [DAYS] [--force] --dir CA_DIR",
    }
    if action not in usage:
        raise VeilleError(f"unknown action {action!r}; one of: {', '.join(usage)}")
    if action == "init-ca":
        if rest:
            raise VeilleError(f"usage: {usage[action]}")
        _print_paths(*init_ca(ca_dir))
    elif action == "issue":
        if len(rest) < 2 or rest[1] not in ("server", "client"):
            raise VeilleError(f"usage: {usage[action]}")
        kind: Kind = "server" if rest[1] == "server" else "client"
        hosts = rest[2:] or ["127.0.0.1", "localhost"]
        if kind == "client" and rest[2:]:
            raise VeilleError("client certificates take no host names")
        _print_paths(*issue(ca_dir, rest[0], kind, hosts))
    elif action == "csr":
        if len(rest) != 1:
            raise VeilleError(f"usage: {usage[action]}")
        _print_paths(*make_csr(ca_dir / f"{rest[0]}.key", ca_dir / f"{rest[0]}.csr", rest[0]))
    else:
        if len(rest) not in (1, 2):
            raise VeilleError(f"usage: {usage[action]}")
        try:
            days = int(rest[1]) if len(rest) == 2 else CLIENT_CERT_DAYS
        except ValueError as exc:
            raise VeilleError(f"DAYS must be a whole number, not {rest[1]!r}") from exc
        _print_paths(sign_csr(ca_dir, Path(rest[0]), days, force=bool(args.force)))
    return 0


def render_hub_conf(
    conf_text: str, *, port: int, tls_dir: Path, data_dir: Path, acl_path: Path, host: str = ""
) -> str:
    """The committed `hub.conf` with its port, TLS folder, ACL file and data folder replaced.

    Used by tests and the load bench, so that the file that is committed is the one tested.
    Raises if the committed file no longer has one of the lines this replaces.
    """
    replacements = [
        ("listener 8883", f"listener {port} {host}".rstrip()),
        ("/etc/mosquitto/veille/hub.acl", str(acl_path)),
        ("/etc/mosquitto/veille/", f"{tls_dir}/"),
        ("/var/lib/mosquitto/", f"{data_dir}/"),
    ]
    for old, new in replacements:
        if old not in conf_text:
            raise VeilleError(f"hub.conf no longer contains {old!r}")
        conf_text = conf_text.replace(old, new)
    return conf_text
