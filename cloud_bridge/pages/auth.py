"""Who may see what: PIN login, signed session cookies, CSRF tokens, wrong-PIN throttling.

- The login throttle is a pure policy (`throttle_decision`, `after_failure`): a few wrong
  codes are free, then each attempt must wait longer, then the code is locked for a while.
- Sessions are `payload.signature` cookies (HMAC-SHA256 with a random per-gateway key kept
  in the registry), HttpOnly and SameSite=Strict; nothing secret is inside them. A signed
  cookie is not enough: its session id must also be in the app's `SessionStore`, under the
  version of the credential it was opened with. Logout removes it, and a new PIN or
  password (a new version) ends every session the old one opened.
- Every form carries a CSRF token bound to the visitor's `veille_csrf` cookie; a POST whose
  `Origin` names another site is refused as well (this also guards the login form).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

from fastapi import HTTPException, Request

_LOGGER = logging.getLogger(__name__)

SESSION_COOKIE = "veille_session"
CSRF_COOKIE = "veille_csrf"
CSRF_FIELD = "csrf"
SESSION_KEY_DOC = "http_session_key"
SESSION_KEY_BYTES = 32
SESSIONS_DOC = "http_sessions"
MAX_SESSIONS = 200  # open sessions kept per app (the oldest is ended first)
FAMILY_SESSION_S = 14 * 24 * 3600.0
INSTALLER_SESSION_S = 4 * 3600.0

# throttle policy
FREE_FAILURES = 3  # wrong codes allowed with no wait
SLOW_BASE_S = 2.0  # then 2, 4, 8, 16 s between attempts
LOCK_AFTER_FAILURES = 8
LOCK_S = 15 * 60.0
FORGET_AFTER_S = 3600.0  # failures older than this are forgotten
GLOBAL_FACTOR = 4  # failing addresses together get 4x one client's budget, same policy
MAX_CLIENTS = 1000  # attempt records kept (the oldest is forgotten first)

ROLES = ("family", "installer", "staff")
ROLE_RANK = {"family": 0, "installer": 1, "staff": 1}


# --- throttling (pure) ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Attempts:
    """Recent wrong codes from one client (or from everyone)."""

    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    wait_s: float = 0.0
    locked: bool = False


def wait_after(failures: int, scale: int = 1) -> float:
    """Seconds to wait after `failures` wrong codes before the next attempt (before a lock)."""
    free = FREE_FAILURES * scale
    if failures < free:
        return 0.0
    return SLOW_BASE_S * 2.0 ** ((failures - free) // scale)


def throttle_decision(rec: Attempts, now: float, scale: int = 1) -> Decision:
    """May a code be tried now? Pure: a table test covers it."""
    if now < rec.locked_until:
        return Decision(False, rec.locked_until - now, locked=True)
    if rec.failures == 0 or now - rec.last_failure >= FORGET_AFTER_S:
        return Decision(True)
    ready_at = rec.last_failure + wait_after(rec.failures, scale)
    if now < ready_at:
        return Decision(False, ready_at - now)
    return Decision(True)


def after_failure(rec: Attempts, now: float, scale: int = 1) -> Attempts:
    """The record after one more wrong code; the LOCK_AFTER-th one locks for LOCK_S."""
    failures = 1 if now - rec.last_failure >= FORGET_AFTER_S else rec.failures + 1
    if failures >= LOCK_AFTER_FAILURES * scale:
        return Attempts(0, now, now + LOCK_S)
    return replace(rec, failures=failures, last_failure=now)


class LoginThrottle:
    """Attempt records per client, and a shared record of failing clients (in memory).

    `attempt()` decides and counts in one step under a lock: a try is counted as wrong
    *before* its code is checked, and `succeeded()` takes it back, so concurrent wrong codes
    cannot all pass the check before the first one is counted. The shared record counts each
    failing address once an hour, not each of its guesses: one address guessing for hours
    (already slowed and locked by its own record) never locks the others out; many addresses
    together still meet the same policy, scaled by GLOBAL_FACTOR.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._clients: dict[str, Attempts] = {}
        self._all = Attempts()
        self._counted: dict[str, float] = {}  # address -> when it last counted in `_all`

    def _decide(self, client: str, now: float) -> Decision:
        mine = throttle_decision(self._clients.get(client, Attempts()), now)
        if not mine.allowed:
            return mine
        return throttle_decision(self._all, now, GLOBAL_FACTOR)

    def check(self, client: str) -> Decision:
        """May `client` try a code now? (A question only: nothing is counted.)"""
        now = self.clock()
        with self._lock:
            return self._decide(client, now)

    def attempt(self, client: str) -> Decision:
        """May `client` try a code now? If so, the try counts as wrong until `succeeded`."""
        now = self.clock()
        with self._lock:
            decision = self._decide(client, now)
            if decision.allowed:
                self._clients[client] = after_failure(self._clients.get(client, Attempts()), now)
                if now - self._counted.get(client, -FORGET_AFTER_S) >= FORGET_AFTER_S:
                    self._counted[client] = now
                    self._all = after_failure(self._all, now, GLOBAL_FACTOR)
                for records in (self._clients, self._counted):
                    if len(records) > MAX_CLIENTS:  # bounded memory: forget the oldest
                        records.pop(next(iter(records)))
            return decision

    def succeeded(self, client: str) -> None:
        """The code was right: forget the client's failures (and the try counted for it)."""
        with self._lock:
            rec = self._clients.pop(client, None)
            if rec is not None and rec.failures == 1 and client in self._counted:
                del self._counted[client]  # this try alone had counted the address
                self._all = replace(self._all, failures=max(0, self._all.failures - 1))


# --- sessions --------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    role: str
    name: str
    expires: float
    sid: str


class Signer:
    """Signs and checks session cookies and CSRF tokens with one secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the session key is too short")
        self._key = key

    def _mac(self, purpose: str, data: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\0{data}".encode(), hashlib.sha256).digest())

    def session_cookie(self, role: str, name: str, expires: float) -> str:
        return self.cookie(Session(role, name, expires, secrets.token_hex(16)))

    def cookie(self, session: Session) -> str:
        """The signed cookie that carries `session` (its id, role, name and expiry)."""
        body = {"r": session.role, "n": session.name, "e": session.expires, "s": session.sid}
        payload = _b64(json.dumps(body).encode())
        return f"{payload}.{self._mac('session', payload)}"

    def read_session(self, cookie: str | None, now: float) -> Session | None:
        """The session in a cookie, or None if absent, forged, malformed or expired."""
        if not cookie or cookie.count(".") != 1:
            return None
        payload, mac = cookie.split(".")
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(str(data["r"]), str(data["n"]), float(data["e"]), str(data["s"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.role not in ROLES or now >= session.expires:
            return None
        return session

    def seal(self, purpose: str, data: dict[str, Any]) -> str:
        """`data` (JSON, compressed) signed for `purpose`: readable, but not forgeable."""
        raw = zlib.compress(json.dumps(data, ensure_ascii=False).encode())
        payload = _b64(raw)
        return f"{payload}.{self._mac(purpose, payload)}"

    def unseal(self, purpose: str, token: str | None) -> dict[str, Any] | None:
        """What `seal(purpose, ...)` signed, or None if absent, forged or malformed."""
        if not token or token.count(".") != 1:
            return None
        payload, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(purpose, payload)):
            return None
        try:
            data = json.loads(zlib.decompress(_unb64(payload)))
        except (ValueError, zlib.error):
            return None
        return data if isinstance(data, dict) else None

    def csrf_token(self, nonce: str) -> str:
        return self._mac("csrf", nonce)

    def csrf_ok(self, nonce: str | None, token: str | None) -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(token, self.csrf_token(nonce))


class SessionStore(Protocol):
    """Where an app keeps its open sessions: id -> (credential version, expiry)."""

    def start(self, session: Session, credential: str, now: float) -> None:
        """Remember a new session, opened with the credential of version `credential`."""
        ...

    def alive(self, session: Session, credential: str, now: float) -> bool:
        """Whether the session is open, unexpired, and its credential still the current one."""
        ...

    def end(self, sid: str) -> None:
        """Forget the session (logout)."""
        ...


class MemorySessions:
    """A SessionStore in memory (one process; sessions end when it stops)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[str, float]] = {}

    def _load(self) -> dict[str, tuple[str, float]]:
        return self._open

    def _save(self, sessions: dict[str, tuple[str, float]]) -> None:
        """Nothing to persist in memory."""

    def start(self, session: Session, credential: str, now: float) -> None:
        with self._lock:
            sessions = {sid: rec for sid, rec in self._load().items() if rec[1] > now}
            sessions[session.sid] = (credential, session.expires)
            while len(sessions) > MAX_SESSIONS:
                sessions.pop(min(sessions, key=lambda sid: sessions[sid][1]))
            self._open = sessions
            self._save(sessions)

    def alive(self, session: Session, credential: str, now: float) -> bool:
        with self._lock:
            rec = self._open.get(session.sid)
        return (
            rec is not None
            and now < rec[1]
            and bool(credential)
            and hmac.compare_digest(rec[0], credential)
        )

    def end(self, sid: str) -> None:
        with self._lock:
            if self._open.pop(sid, None) is not None:
                self._save(self._open)


class RegistrySessions(MemorySessions):
    """The gateway's sessions, kept in its registry so that they survive a restart."""

    def __init__(self, registry: Any) -> None:
        super().__init__()
        self._registry = registry
        self._open = self._load()

    def _load(self) -> dict[str, tuple[str, float]]:
        doc = self._registry.get_doc(SESSIONS_DOC) or {}
        out: dict[str, tuple[str, float]] = {}
        for sid, rec in (doc.get("open") or {}).items():
            if isinstance(rec, list) and len(rec) == 2 and isinstance(rec[1], int | float):
                out[str(sid)] = (str(rec[0]), float(rec[1]))
        return out

    def _save(self, sessions: dict[str, tuple[str, float]]) -> None:
        open_ = {sid: [cred, exp] for sid, (cred, exp) in sessions.items()}
        self._registry.put_doc(SESSIONS_DOC, {"open": open_})


def gateway_session_key(registry: Any) -> bytes:
    """The gateway's random session key, made once and kept in the registry."""
    doc = registry.get_doc(SESSION_KEY_DOC) if registry is not None else None
    if doc and isinstance(doc.get("key"), str):
        try:
            key = bytes.fromhex(doc["key"])
        except ValueError:
            key = b""
        if len(key) >= SESSION_KEY_BYTES:
            return key
    key = os.urandom(SESSION_KEY_BYTES)
    if registry is not None:
        registry.put_doc(SESSION_KEY_DOC, {"key": key.hex()})
    return key


# --- request helpers -------------------------------------------------------------------------
class NeedLogin(Exception):
    """Raised by a page dependency when the visitor has no valid session."""

    def __init__(self, api: bool, next_path: str) -> None:
        super().__init__(next_path)
        self.api = api
        self.next_path = next_path


def client_key(request: Request) -> str:
    return request.client.host if request.client else "?"


def csrf_nonce(request: Request) -> tuple[str, bool]:
    """The visitor's CSRF nonce, and whether it is new (then the response must set it)."""
    nonce = request.cookies.get(CSRF_COOKIE, "")
    if len(nonce) == 32 and all(c in "0123456789abcdef" for c in nonce):
        return nonce, False
    return secrets.token_hex(16), True


def same_origin(request: Request) -> bool:
    """False when the browser says the POST comes from another site."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return origin != "null"
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def check_csrf(request: Request, signer: Signer) -> dict[str, str]:
    """The posted form, after checking its CSRF token and origin (403 otherwise)."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not same_origin(request):
        raise HTTPException(403, "cross-site request refused")
    if not signer.csrf_ok(request.cookies.get(CSRF_COOKIE), fields.get(CSRF_FIELD)):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page")
    return fields


def set_cookie(response: Any, name: str, value: str, max_age: float, secure: bool) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(max_age),
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )


def safe_next(path: str | None, default: str = "/") -> str:
    """Only local paths after login (no open redirect)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return default
    return path
