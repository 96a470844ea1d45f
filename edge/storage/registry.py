"""The home's registry: profile, learned documents and credential hashes, in TinyDB.

TinyDB's own `JSONStorage` rewrites its file in place, so a power cut mid-write leaves half a
file. `AtomicJSONStorage` writes a temporary file in the same folder, fsyncs it, renames it
over the old one and fsyncs the folder; the previous good file is kept as `registry.json.bak`.
A corrupt or truncated file is reported in one ERROR line and the `.bak` is used instead (or
an empty registry): the gateway never crash-loops on it. Files are 0600, the folder 0700.

Secrets (PINs, passwords) are stored as salted scrypt hashes only.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from tinydb import Query, TinyDB
from tinydb.storages import Storage

from cloud_bridge.errors import StorageError
from edge.const import (
    REGISTRY_FILE,
    SECRET_HASH_BYTES,
    SECRET_SALT_BYTES,
    SECRET_SCRYPT_N,
    SECRET_SCRYPT_P,
    SECRET_SCRYPT_R,
    STORAGE_DIR_MODE,
    STORAGE_FILE_MODE,
)
from edge.home import HomeProfile

_LOGGER = logging.getLogger(__name__)

SECRET_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_SCRYPT_MAXMEM_BYTES = 64 * 1024 * 1024


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700, or tighten an existing folder to 0700."""
    path = Path(path)
    path.mkdir(mode=STORAGE_DIR_MODE, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        try:
            path.chmod(STORAGE_DIR_MODE)
        except OSError as exc:
            _LOGGER.warning("storage %s is mode %o and cannot be made private: %s", path, mode, exc)
        else:
            _LOGGER.info("storage %s was mode %o, now %o", path, mode, STORAGE_DIR_MODE)
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves either the old or the new file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, STORAGE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


class AtomicJSONStorage(Storage):
    """A TinyDB storage that never leaves a half-written file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.bak = self.path.with_name(self.path.name + ".bak")
        ensure_private_dir(self.path.parent)
        self._cache: dict[str, dict[str, Any]] | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._main_good = False  # the file on disk is one we read or wrote successfully

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def read(self) -> dict[str, dict[str, Any]] | None:
        """The stored tables (a copy); None when nothing usable is stored."""
        stamp = self._file_stamp()
        if self._cache is None or stamp != self._stamp:
            self._cache = self._load()
            self._stamp = stamp
        return copy.deepcopy(self._cache) if self._cache is not None else None

    def _load(self) -> dict[str, dict[str, Any]] | None:
        self._main_good = False
        if self.path.exists():
            data, why = _read_json(self.path)
            if data is not None:
                self._main_good = True
                return data
            backup, why_bak = _read_json(self.bak) if self.bak.exists() else (None, "missing")
            _LOGGER.error(
                "registry %s is unreadable (%s): using %s",
                self.path,
                why,
                f"the backup {self.bak.name}"
                if backup is not None
                else f"an empty registry (backup {why_bak})",
            )
            return backup
        if self.bak.exists():
            backup, why_bak = _read_json(self.bak)
            _LOGGER.warning(
                "registry %s is missing: %s",
                self.path,
                f"using the backup {self.bak.name}"
                if backup is not None
                else f"starting empty (backup {why_bak})",
            )
            return backup
        return None

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        """Keep the current good file as .bak, then atomically put `data` in place."""
        raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            if self._main_good and self.path.exists():
                # a hard link gives the .bak the good file's content with no moment without it
                link = self.bak.with_name(f".{self.bak.name}.tmp-{os.getpid()}")
                with contextlib.suppress(FileNotFoundError):
                    link.unlink()
                os.link(self.path, link)
                os.replace(link, self.bak)
            write_atomic(self.path, raw)
        except OSError as exc:
            raise StorageError(f"registry {self.path}: cannot write: {exc}") from exc
        self._main_good = True
        self._cache = copy.deepcopy(data)
        self._stamp = self._file_stamp()

    def close(self) -> None:
        """Nothing stays open between writes."""


def _read_json(path: Path) -> tuple[dict[str, dict[str, Any]] | None, str]:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        return None, "not a TinyDB document"
    return data, ""


class Registry:
    """The gateway's registry in `storage_dir/registry.json`; one writer process at a time."""

    def __init__(self, storage_dir: Path) -> None:
        try:
            self.storage_dir = ensure_private_dir(Path(storage_dir))
        except OSError as exc:
            raise StorageError(f"registry {storage_dir}: {exc}") from exc
        self.path = self.storage_dir / REGISTRY_FILE
        self._db = TinyDB(self.path, storage=AtomicJSONStorage)
        self._lock = threading.RLock()

    def profile(self) -> HomeProfile | None:
        """The home's profile, or None before one was imported (or if it is unusable)."""
        with self._lock:
            doc = self._db.table("profile").get(doc_id=1)
        if doc is None:
            return None
        try:
            return HomeProfile.from_dict(dict(doc))
        except (KeyError, TypeError, ValueError) as exc:
            _LOGGER.error("registry %s: stored home profile is unusable: %s", self.path, exc)
            return None

    def save_profile(self, p: HomeProfile) -> None:
        """Replace the home's profile."""
        doc = json.loads(json.dumps(p.to_dict()))  # enums -> str, tuples -> lists
        with self._lock:
            table = self._db.table("profile")
            table.truncate()
            table.insert(doc)

    def get_doc(self, name: str) -> dict[str, Any] | None:
        """A stored document (learned model, detector state) by name, or None."""
        with self._lock:
            doc = self._db.table("docs").get(Query().name == name)
        if doc is None:
            return None
        value = dict(doc).get("doc")
        return value if isinstance(value, dict) else None

    def put_doc(self, name: str, doc: dict[str, Any]) -> None:
        """Store (replace) a JSON-able document under `name`."""
        with self._lock:
            self._db.table("docs").upsert({"name": name, "doc": doc}, Query().name == name)

    def set_secret(self, kind: str, secret: str) -> None:
        """Store a salted scrypt hash of `secret` for `kind` ("family_pin", "installer", ...)."""
        if not SECRET_KIND_RE.match(kind):
            raise ValueError(f"bad secret kind {kind!r}")
        if not secret:
            raise ValueError("an empty secret cannot be set")
        salt = os.urandom(SECRET_SALT_BYTES)
        record = {
            "kind": kind,
            "algo": "scrypt",
            "n": SECRET_SCRYPT_N,
            "r": SECRET_SCRYPT_R,
            "p": SECRET_SCRYPT_P,
            "salt": salt.hex(),
            "hash": _scrypt(secret, salt, SECRET_SCRYPT_N, SECRET_SCRYPT_R, SECRET_SCRYPT_P).hex(),
        }
        with self._lock:
            self._db.table("secrets").upsert(record, Query().kind == kind)

    def check_secret(self, kind: str, secret: str) -> bool:
        """Whether `secret` matches the stored hash for `kind` (constant-time compare)."""
        with self._lock:
            rec = self._db.table("secrets").get(Query().kind == kind)
        if rec is None or not secret:
            return False
        try:
            salt = bytes.fromhex(rec["salt"])
            want = bytes.fromhex(rec["hash"])
            got = _scrypt(secret, salt, int(rec["n"]), int(rec["r"]), int(rec["p"]))
        except (KeyError, TypeError, ValueError) as exc:
            _LOGGER.error("registry %s: stored %s hash is unusable: %s", self.path, kind, exc)
            return False
        return hmac.compare_digest(got, want)

    def secret_version(self, kind: str) -> str:
        """Changes each time the secret is set (its salt); "" while none is set. Sessions
        remember it, so a new PIN ends the sessions the old one opened."""
        with self._lock:
            rec = self._db.table("secrets").get(Query().kind == kind)
        return str(rec.get("salt", "")) if rec is not None else ""

    def has_secret(self, kind: str) -> bool:
        with self._lock:
            return self._db.table("secrets").contains(Query().kind == kind)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        secret.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_SCRYPT_MAXMEM_BYTES,
        dklen=SECRET_HASH_BYTES,
    )
