"""The durable outbox towards the hub, and the alarm log written in the same transactions.

Every alert state and aggregate is committed to SQLite (WAL, `synchronous=FULL`) before the
uplink may send it. An aggregate is deleted when the hub broker's PUBACK came back (`ack`);
an alert state when the hub's receipt says it is in the hub's store (`confirm`), which also
sets its `delivered_at` in the alarm log. Alerts drain before aggregates. Past the byte
budget the oldest aggregates are dropped, never an alert; a full disk is handled the same
way. The alarm log (one row per alert id and one per state change, with when the hub's
receipt came) is append-only: triggers in the
schema refuse deletes and rewrites. State documents that must agree with the queued alerts
(the alert book's open alerts) are saved in the same transactions (`put(docs=...)`).

The schema lives in `edge/storage/schema/outbox_vN.sql`, versioned with `PRAGMA user_version`; each
migration runs in one transaction. The file is checked with `PRAGMA quick_check` when opened;
a damaged file is moved aside, what can be read is salvaged (alerts first) into a new file,
and one ERROR line says so. Every alarm-log change is also appended to a journal beside the
file (`edge.storage.alarm_journal`), so even a file of which nothing reads back loses no
entry of it: the log is rebuilt from the journal, and the alerts without a receipt are queued again.
The gateway never crash-loops on a bad outbox file.

Threads: one `Outbox` may be used from any thread (`check_same_thread=False`, e.g. through
`asyncio.to_thread`), one call at a time; an internal lock serialises overlapping calls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import sys
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from cloud_bridge import contract
from cloud_bridge.contract import iso_utc
from cloud_bridge.errors import StorageError
from edge.const import (
    OUTBOX_BUSY_TIMEOUT_S,
    OUTBOX_DISK_FULL_FREE_BYTES,
    OUTBOX_FILE,
    OUTBOX_FULL_DISK_WAL_PAGES,
    OUTBOX_MAX_BYTES,
    OUTBOX_RESERVE_BYTES,
    OUTBOX_ROW_OVERHEAD_BYTES,
    OUTBOX_WAL_LIMIT_BYTES,
    PRIORITY_AGGREGATE,
    PRIORITY_ALERT,
    STORAGE_FILE_MODE,
)
from edge.events import Alert
from edge.storage.alarm_journal import AlarmJournal, delivered_line, log_line, state_line
from edge.storage.outbox_salvage import aside_name, restore, salvage
from edge.storage.registry import ensure_private_dir

_LOGGER = logging.getLogger(__name__)

ALERT = PRIORITY_ALERT
AGGREGATE = PRIORITY_AGGREGATE
_SCHEMA_RE = re.compile(r"^outbox_v(\d+)\.sql$")
_CORRUPT_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_LOG_PAGE = 256  # alerts read per query by alarm_log()


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One queued message: publish `payload` on `topic`, then `ack(seq)` on PUBACK."""

    seq: int
    topic: str
    payload: bytes
    priority: int  # 0 = alert, 1 = aggregate


class _Damaged(Exception):
    """The database file is corrupt or truncated (internal: triggers the rebuild)."""


def schema_scripts() -> dict[int, str]:
    """{version: SQL text} of every `edge/storage/schema/outbox_vN.sql` shipped with the package."""
    scripts: dict[int, str] = {}
    for entry in resources.files("edge.storage.schema").iterdir():
        match = _SCHEMA_RE.match(entry.name)
        if match:
            scripts[int(match.group(1))] = entry.read_text(encoding="utf-8")
    return scripts


def _is_disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(exc)


def _is_damage(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _CORRUPT_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


def _row_size(topic: str, payload: bytes) -> int:
    return len(payload) + len(topic.encode()) + OUTBOX_ROW_OVERHEAD_BYTES


class Outbox:
    """SQLite outbox + alarm log in one file (see the module docstring)."""

    def __init__(
        self, path: Path, max_bytes: int = OUTBOX_MAX_BYTES, home_id: str | None = None
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.home_id = home_id  # lets a rebuild queue again alerts whose message was lost
        self._lock = threading.RLock()
        self._rebuilt = False
        self._dropped_since_open = 0
        self._disk_full = False
        self._unsaved_drops = 0  # aggregates refused on a full disk, not yet in meta
        self._n = [0, 0]  # rows queued per priority
        self._bytes = 0
        self._journal = AlarmJournal(Path(f"{self.path}.alarm-log"))
        try:
            ensure_private_dir(self.path.parent)
            try:
                self._db = self._open()
            except _Damaged as exc:
                self._db = self._recover(str(exc))
            with self._lock:
                self._journal.sync(self._db)
        except OSError as exc:
            raise StorageError(f"outbox {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StorageError(f"outbox {self.path}: {exc}") from exc
        self._load_counters()
        self._reserve = Path(f"{self.path}.reserve")
        self._reserve_held = self._hold_reserve()

    # -- the space reserve -----------------------------------------------------------------------

    def _hold_reserve(self) -> bool:
        """Keep `OUTBOX_RESERVE_BYTES` allocated in a side file. On a full disk SQLite needs
        room in its WAL even to delete the aggregates that make room, so `put` frees this
        first. True if the reserve is held."""
        try:
            fd = os.open(self._reserve, os.O_RDWR | os.O_CREAT, STORAGE_FILE_MODE)
            try:
                if os.fstat(fd).st_size < OUTBOX_RESERVE_BYTES:
                    os.posix_fallocate(fd, 0, OUTBOX_RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                self._reserve.unlink()
            _LOGGER.debug("outbox %s: no space reserve held: %s", self.path, exc)
            return False
        return True

    def _shrink_wal(self) -> None:
        """Disk full: give the WAL's blocks back (checkpoint + truncate) and keep it small
        from now on; otherwise it grows into every byte that dropping aggregates frees."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute(f"PRAGMA wal_autocheckpoint={OUTBOX_FULL_DISK_WAL_PAGES:d}")
        except sqlite3.Error as exc:
            _LOGGER.debug("outbox %s: checkpoint on a full disk failed: %s", self.path, exc)

    def _release_reserve(self) -> bool:
        """Free the reserve (disk full); False if none was held."""
        if not self._reserve_held:
            return False
        self._reserve_held = False
        try:
            self._reserve.unlink()
        except OSError as exc:
            _LOGGER.error("outbox %s: cannot free the space reserve: %s", self.path, exc)
            return False
        _LOGGER.warning(
            "outbox %s: disk full: freed the %d-byte space reserve", self.path, OUTBOX_RESERVE_BYTES
        )
        return True

    # -- opening, migrations, recovery -------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        """Connect, check and migrate; _Damaged for a corrupt file, StorageError otherwise."""
        _private_file(self.path, create=True)
        try:
            db = sqlite3.connect(
                self.path,
                timeout=OUTBOX_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open: {exc}") from exc
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode != "wal":
                raise StorageError(f"{self.path}: cannot use WAL mode (got {mode!r})")
            db.execute("PRAGMA synchronous=FULL")
            db.execute(f"PRAGMA journal_size_limit={OUTBOX_WAL_LIMIT_BYTES:d}")
            result = [row[0] for row in db.execute("PRAGMA quick_check")]
            if result != ["ok"]:
                raise _Damaged("; ".join(str(r) for r in result[:3]))
            _migrate(db, self.path)
            # SQLite creates -wal and -shm with the main file's mode; older ones may be wider
            for suffix in ("-wal", "-shm"):
                side = Path(f"{self.path}{suffix}")
                if side.exists():
                    _private_file(side)
        except sqlite3.DatabaseError as exc:
            db.close()
            if _is_damage(exc):
                raise _Damaged(str(exc)) from exc
            raise StorageError(f"{self.path}: {exc}") from exc
        except BaseException:
            db.close()
            raise
        return db

    def _recover(self, reason: str) -> sqlite3.Connection:
        """Move the damaged file aside, salvage what reads back, rebuild; one ERROR line."""
        aside = aside_name(self.path)
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                os.replace(src, Path(f"{aside}{suffix}"))
        found = salvage(aside, self.home_id, self._journal.read())
        db = self._open()  # a new, empty file; a failure here is a StorageError
        try:
            restore(db, found)
        except sqlite3.Error as exc:
            _LOGGER.error("outbox %s: could not write the salvaged rows back: %s", self.path, exc)
        alerts = sum(1 for row in found.outbox.values() if row[1] == ALERT)
        _LOGGER.error(
            "outbox %s was damaged (%s): moved aside to %s and rebuilt; salvaged %d alerts, "
            "%d aggregates and %d alarm-log entries (%d undelivered alert messages rebuilt "
            "from the alarm log), %d unreadable rows lost",
            self.path,
            reason,
            aside.name,
            alerts,
            len(found.outbox) - alerts,
            len(found.log),
            found.requeued,
            found.dropped,
        )
        self._rebuilt = True
        return db

    def _load_counters(self) -> None:
        self._n = [0, 0]
        self._bytes = 0
        rows = self._db.execute(
            "SELECT priority, count(*), coalesce(sum(size), 0) FROM outbox GROUP BY priority"
        )
        for priority, count, size in rows:
            self._n[int(priority)] = int(count)
            self._bytes += int(size)

    # -- writing -----------------------------------------------------------------------------

    def put(
        self,
        alerts: Sequence[tuple[Alert, str]] = (),
        aggregates: Sequence[tuple[str, bytes]] = (),
        docs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[int]:
        """Commit alert states (+ their alarm-log rows) and aggregates in one transaction.

        `alerts` are (alert, topic) pairs, `aggregates` (topic, payload) pairs. `docs`
        (name -> JSON object, e.g. the alert book's state) are saved in the same
        transaction, replacing earlier versions; read them back with `get_doc`. Returns the
        seqs of the rows stored (alerts first, in the order given); aggregates dropped for
        the budget or a full disk have no seq. Raises StorageError if an alert cannot be
        stored even after every aggregate was dropped.
        """
        alert_rows = [(topic, contract.encode(a.to_wire()), a) for a, topic in alerts]
        agg_rows = [(topic, bytes(payload)) for topic, payload in aggregates]
        doc_rows = [
            (name, json.dumps(doc, separators=(",", ":"))) for name, doc in (docs or {}).items()
        ]
        if not alert_rows and not agg_rows and not doc_rows:
            return []
        with self._lock:
            while True:
                try:
                    return self._put_once(alert_rows, agg_rows, doc_rows)
                except sqlite3.Error as exc:
                    if not _is_disk_full(exc):
                        raise StorageError(f"outbox {self.path}: write failed: {exc}") from exc
                self._disk_full = True
                released = self._release_reserve()
                self._shrink_wal()  # needs the room the reserve just gave back
                need = sum(_row_size(t, p) for t, p, _ in alert_rows)
                need += sum(_row_size(t, p) for t, p in agg_rows)
                if self._free_space(max(need, OUTBOX_DISK_FULL_FREE_BYTES)) or released:
                    continue
                if agg_rows:
                    _LOGGER.warning(
                        "outbox %s: disk full and no older aggregate left to drop: "
                        "dropping %d new aggregates",
                        self.path,
                        len(agg_rows),
                    )
                    self._unsaved_drops += len(agg_rows)
                    self._dropped_since_open += len(agg_rows)
                    agg_rows = []
                    if alert_rows:
                        continue
                    return []
                raise StorageError(
                    f"outbox {self.path}: disk full, {len(alert_rows)} alert message(s) "
                    "could not be stored even with every aggregate dropped"
                )

    def _put_once(
        self,
        alert_rows: list[tuple[str, bytes, Alert]],
        agg_rows: list[tuple[str, bytes]],
        doc_rows: Sequence[tuple[str, str]],
    ) -> list[int]:
        db = self._db
        seqs: list[int] = []
        added = [0, 0]
        added_bytes = 0
        journal: list[dict[str, Any]] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO docs (name, body) VALUES (?, ?)", doc_rows)
            for topic, payload, alert in alert_rows:
                head = db.execute(
                    "INSERT OR IGNORE INTO alarm_log "
                    "(alert_id, type, severity, raised_at, room, device_id) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        alert.id,
                        str(alert.type),
                        str(alert.severity),
                        alert.raised_at,
                        alert.room,
                        alert.device_id,
                    ),
                )
                if head.rowcount == 1:
                    journal.append(log_line(alert))
                state_id = db.execute(
                    "INSERT INTO alarm_state (alert_id, state, at) VALUES (?, ?, ?)",
                    (alert.id, str(alert.state), alert.at),
                ).lastrowid
                journal.append(state_line(int(state_id or 0), alert.id, str(alert.state), alert.at))
                size = _row_size(topic, payload)
                cur = db.execute(
                    "INSERT INTO outbox (priority, topic, payload, size, state_id) "
                    "VALUES (0, ?, ?, ?, ?)",
                    (topic, payload, size, state_id),
                )
                seqs.append(int(cur.lastrowid or 0))
                added[ALERT] += 1
                added_bytes += size
            for topic, payload in agg_rows:
                size = _row_size(topic, payload)
                cur = db.execute(
                    "INSERT INTO outbox (priority, topic, payload, size) VALUES (1, ?, ?, ?)",
                    (topic, payload, size),
                )
                seqs.append(int(cur.lastrowid or 0))
                added[AGGREGATE] += 1
                added_bytes += size
            excess = self._bytes + added_bytes - self.max_bytes
            dropped, dropped_bytes, last = self._drop_in_txn(excess) if excess > 0 else (0, 0, 0)
            self._save_drops(dropped + self._unsaved_drops)
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._journal.append(journal)
        self._unsaved_drops = 0
        self._n[ALERT] += added[ALERT]
        self._n[AGGREGATE] += added[AGGREGATE] - dropped
        self._bytes += added_bytes - dropped_bytes
        if dropped:
            self._dropped_since_open += dropped
            _LOGGER.warning(
                "outbox %s over its %d-byte budget: dropped the %d oldest aggregates (%d bytes)",
                self.path,
                self.max_bytes,
                dropped,
                dropped_bytes,
            )
            n_alerts = len(alert_rows)
            seqs = seqs[:n_alerts] + [s for s in seqs[n_alerts:] if s > last]
        return seqs

    def _drop_in_txn(self, want_bytes: int) -> tuple[int, int, int]:
        """Delete the oldest aggregates worth >= want_bytes; (rows, bytes, last seq dropped)."""
        count = freed = last = 0
        for seq, size in self._db.execute(
            "SELECT seq, size FROM outbox WHERE priority = 1 ORDER BY seq"
        ):
            count, freed, last = count + 1, freed + int(size), int(seq)
            if freed >= want_bytes:
                break
        if count:
            self._db.execute("DELETE FROM outbox WHERE priority = 1 AND seq <= ?", (last,))
        return count, freed, last

    def _save_drops(self, count: int) -> None:
        if count:
            self._db.execute(
                "UPDATE meta SET value = value + ? WHERE key = 'dropped_aggregates'", (count,)
            )

    def _free_space(self, want_bytes: int) -> bool:
        """Disk full: drop the oldest aggregates in their own transaction; False if none."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            dropped, freed, _last = self._drop_in_txn(want_bytes)
            self._save_drops(dropped)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            _LOGGER.error("outbox %s: disk full and dropping aggregates failed: %s", self.path, exc)
            return False
        if dropped:
            self._n[AGGREGATE] -= dropped
            self._bytes -= freed
            self._dropped_since_open += dropped
            _LOGGER.warning(
                "outbox %s: disk full: dropped the %d oldest aggregates (%d bytes)",
                self.path,
                dropped,
                freed,
            )
        return dropped > 0

    def _rollback(self) -> None:
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    # -- draining ----------------------------------------------------------------------------

    def next_batch(self, limit: int, exclude: Collection[int] = ()) -> list[OutboxItem]:
        """Up to `limit` rows to send: alerts first (by seq), then aggregates (by seq).

        `exclude`: seqs already in flight (published, PUBACK not yet back).
        """
        if limit <= 0:
            return []
        skip = set(exclude)
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, priority FROM outbox ORDER BY priority, seq LIMIT ?",
                (limit + len(skip),),
            ).fetchall()
        items = [
            OutboxItem(int(seq), str(topic), bytes(payload), int(priority))
            for seq, topic, payload, priority in rows
            if seq not in skip
        ]
        return items[:limit]

    def confirm(
        self, entries: Iterable[tuple[str, str | None, str | None]], at: float
    ) -> list[int]:
        """A hub receipt at `at`: the hub stored these (alert id, state, severity) messages.

        Deletes the matching alert rows and sets their `delivered_at` in the alarm log (the
        delivery of an alert is its receipt, not a PUBACK); returns their seqs. A state or
        severity of None matches any (a receipt that lists only ids).
        """
        seqs: list[int] = []
        with self._lock:
            try:
                for alert_id, state, severity in entries:
                    rows = self._db.execute(
                        "SELECT seq, payload FROM outbox WHERE state_id IN"
                        " (SELECT id FROM alarm_state WHERE alert_id = ?)",
                        (alert_id,),
                    ).fetchall()
                    for seq, payload in rows:
                        try:
                            wire = json.loads(payload)
                        except ValueError:
                            wire = {}
                        if state is not None and wire.get("state") != state:
                            continue
                        if severity is not None and wire.get("severity") != severity:
                            continue
                        seqs.append(int(seq))
            except sqlite3.Error as exc:
                raise StorageError(f"outbox {self.path}: receipt failed: {exc}") from exc
            if seqs:
                self.ack_many(seqs, at)
        return seqs

    def ack(self, seq: int, at: float) -> None:
        """The hub broker acknowledged `seq` at `at`: delete it; log delivery of an alert."""
        self.ack_many((seq,), at)

    def ack_many(self, seqs: Iterable[int], at: float) -> None:
        """`ack` for several PUBACKs in one transaction (one disk sync for all of them)."""
        db = self._db
        with self._lock:
            removed = [0, 0]
            removed_bytes = 0
            delivered: list[int] = []
            try:
                db.execute("BEGIN IMMEDIATE")
                for seq in seqs:
                    row = db.execute(
                        "SELECT priority, size, state_id FROM outbox WHERE seq = ?", (seq,)
                    ).fetchone()
                    if row is None:
                        _LOGGER.debug("outbox: ack of seq %s, already gone", seq)
                        continue
                    priority, size, state_id = row
                    if state_id is not None:
                        marked = db.execute(
                            "UPDATE alarm_state SET delivered_at = ? "
                            "WHERE id = ? AND delivered_at IS NULL",
                            (at, state_id),
                        )
                        if marked.rowcount == 1:
                            delivered.append(int(state_id))
                        db.execute(
                            "UPDATE alarm_log SET delivered_at = ? WHERE delivered_at IS NULL "
                            "AND alert_id = (SELECT alert_id FROM alarm_state WHERE id = ?)",
                            (at, state_id),
                        )
                    db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                    removed[int(priority)] += 1
                    removed_bytes += int(size)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise StorageError(f"outbox {self.path}: ack failed: {exc}") from exc
            if delivered:
                self._journal.append([delivered_line(delivered, at)])
            self._n[ALERT] -= removed[ALERT]
            self._n[AGGREGATE] -= removed[AGGREGATE]
            self._bytes -= removed_bytes
            if not self._reserve_held and self._disk_full:
                self._reserve_held = self._hold_reserve()

    # -- reading -----------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """{"alerts", "aggregates", "bytes", "dropped_aggregates"} (drops: since the file began)."""
        with self._lock:
            row = self._db.execute(
                "SELECT value FROM meta WHERE key = 'dropped_aggregates'"
            ).fetchone()
            return {
                "alerts": self._n[ALERT],
                "aggregates": self._n[AGGREGATE],
                "bytes": self._bytes,
                "dropped_aggregates": int(row[0] if row else 0) + self._unsaved_drops,
            }

    def health(self) -> str:
        """`warning` once aggregates were dropped, the disk was full or the file was rebuilt
        since this process opened it; `ok` otherwise."""
        with self._lock:
            degraded = self._rebuilt or self._disk_full or self._dropped_since_open > 0
        return "warning" if degraded else "ok"

    def get_doc(self, name: str) -> dict[str, Any] | None:
        """The document last saved under `name` by `put(docs=...)`, or None."""
        with self._lock:
            row = self._db.execute("SELECT body FROM docs WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        try:
            doc = json.loads(row[0])
        except ValueError as exc:
            _LOGGER.error("outbox %s: stored document %s is unreadable: %s", self.path, name, exc)
            return None
        return doc if isinstance(doc, dict) else None

    def alarm_log(self) -> Iterator[dict[str, Any]]:
        """One dict per alert id, oldest first (see `read_alarm_log`)."""
        return read_alarm_log(self._db, self._lock)

    def close(self) -> None:
        """Checkpoint and close; the object cannot be used afterwards."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()


# -- helpers shared by Outbox and `veille log` --------------------------------------------------


def read_alarm_log(
    db: sqlite3.Connection, lock: threading.RLock | None = None
) -> Iterator[dict[str, Any]]:
    """{"id","type","raised_at","states":[{"state","at","delivered_at"}],"delivered_at"} per
    alert, in the order they were first logged; times are ISO UTC strings or None."""
    last = 0
    guard = lock or threading.RLock()
    while True:
        with guard:
            heads = db.execute(
                "SELECT rowid, alert_id, type, raised_at, delivered_at FROM alarm_log "
                "WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (last, _LOG_PAGE),
            ).fetchall()
            if not heads:
                return
            ids = [h[1] for h in heads]
            marks = ",".join("?" * len(ids))
            states: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
            for alert_id, state, at, delivered in db.execute(
                f"SELECT alert_id, state, at, delivered_at FROM alarm_state "
                f"WHERE alert_id IN ({marks}) ORDER BY id",
                ids,
            ):
                states[alert_id].append(
                    {"state": state, "at": iso_utc(at), "delivered_at": _iso_or_none(delivered)}
                )
        for _rowid, alert_id, kind, raised_at, delivered in heads:
            yield {
                "id": alert_id,
                "type": kind,
                "raised_at": iso_utc(raised_at),
                "states": states[alert_id],
                "delivered_at": _iso_or_none(delivered),
            }
        last = heads[-1][0]


def _iso_or_none(t: float | None) -> str | None:
    return None if t is None else iso_utc(float(t))


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to the newest schema; each step is one transaction with its version."""
    scripts = schema_scripts()
    newest = max(scripts)
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > newest:
        raise StorageError(
            f"{path}: schema version {version} is newer than this software ({newest})"
        )
    for target in range(version + 1, newest + 1):
        if target not in scripts:
            raise StorageError(f"{path}: no migration to schema version {target}")
        try:
            db.executescript(
                f"BEGIN IMMEDIATE;\n{scripts[target]}\nPRAGMA user_version = {target:d};\nCOMMIT;"
            )
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if version:
            _LOGGER.info("outbox %s: migrated schema to version %d", path, target)


def _private_file(path: Path, create: bool = False) -> None:
    """Make `path` readable by the service user alone (creating it empty if `create`).

    By path only, never through a descriptor kept or closed here: SQLite's locks are POSIX
    locks, owned by the process and dropped by *any* close() of the file in it. A dropped
    lock on `-shm` let another process (`veille log`) take the WAL index for abandoned and
    reset it under the gateway's memory map, which killed the gateway with SIGBUS.
    """
    if create:
        with contextlib.suppress(FileExistsError):  # a new file: nobody holds locks on it
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, STORAGE_FILE_MODE))
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, STORAGE_FILE_MODE)


def log_main(args: Any) -> int:
    """`veille log --storage DIR --json`: one JSON line per alert of the alarm log."""
    storage = Path(args.storage)
    path = storage / OUTBOX_FILE
    if not storage.is_dir():
        raise StorageError(f"{storage}: no such storage folder")
    if not path.is_file():
        raise StorageError(f"{path}: no outbox here (has the gateway run with this storage?)")
    try:
        db = sqlite3.connect(path, timeout=OUTBOX_BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot open: {exc}") from exc
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if not 1 <= version <= max(schema_scripts()):
            raise StorageError(f"{path}: not a Veille outbox (schema version {version})")
        out = sys.stdout
        for entry in read_alarm_log(db):
            out.write(json.dumps(entry, separators=(",", ":")) + "\n")
        out.flush()
    except sqlite3.Error as exc:
        raise StorageError(
            f"{path}: cannot read the alarm log ({exc}); the gateway repairs the file when it "
            "starts"
        ) from exc
    finally:
        db.close()
    return 0
