"""Outbox benchmark: `python -m bench.outbox` prints one JSON object (also `run() -> dict`).

Measured on a real file in a temporary folder on the project's filesystem:

- durable append rate (`put`, `synchronous=FULL`, one fsync per commit) with an empty outbox
  and with a 100,000-message backlog, one message per transaction and in batches of
  `BATCH` messages per transaction (as the pipeline does when several come at once);
- drain rate: `next_batch(100)` then `ack` per message, and `ack_many` per batch;
- on-disk size of the 100,000-message backlog;
- baselines in the same run: a plain append-only file with an fsync per write (what a
  durable write costs on this disk), and SQLite with `synchronous=OFF` (not durable: the
  upper bound).

One message per transaction costs one fsync, so its rate is the disk's fsync rate (compare
with the plain-file baseline) and swings with other load on the disk; the pipeline commits
all outputs of an input batch in one `put`, which is the batched figure.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cloud_bridge.contract import AlertState, AlertType, Severity, aggregate_topic, alert_topic
from edge.events import Alert, new_alert_id
from edge.storage.outbox import Outbox

HOME = "bench-home"
BACKLOG_MESSAGES = 100_000
SINGLE_PUTS = 1_000  # one message per transaction
BATCH = 20  # messages per transaction in the batched runs
BATCHED_PUTS = 100  # transactions of BATCH messages
DRAIN_MESSAGES = 5_000
PAYLOAD_PAD = "x" * 300  # an hourly aggregate is a few hundred bytes


def _alert(i: int) -> Alert:
    t = 1.7e9 + i
    return Alert(
        new_alert_id(t),
        HOME,
        AlertType.INACTIVITY,
        Severity.HIGH,
        AlertState.RAISED,
        t,
        t,
        "living",
        None,
        {"inactive_min": 212, "usual_max_min": 95},
    )


def _aggregate(i: int) -> tuple[str, bytes]:
    body = {"schema": "veille.aggregate.hourly/1", "home_id": HOME, "n": i, "pad": PAYLOAD_PAD}
    return aggregate_topic(HOME, "hourly"), json.dumps(body).encode()


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def _appends(box: Outbox, start: int) -> dict[str, float]:
    """Single-message and batched durable puts; alternate alerts and aggregates."""
    topic = alert_topic(HOME)
    t0 = time.perf_counter()
    for i in range(start, start + SINGLE_PUTS):
        if i % 2:
            box.put(alerts=[(_alert(i), topic)])
        else:
            box.put(aggregates=[_aggregate(i)])
    single = time.perf_counter() - t0
    t0 = time.perf_counter()
    for b in range(BATCHED_PUTS):
        base = start + SINGLE_PUTS + b * BATCH
        box.put(
            alerts=[(_alert(base), topic)],
            aggregates=[_aggregate(base + k) for k in range(1, BATCH)],
        )
    batched = time.perf_counter() - t0
    return {
        "single_per_s": _rate(SINGLE_PUTS, single),
        "single_ms_per_put": round(1000 * single / SINGLE_PUTS, 3),
        "batched_messages_per_s": _rate(BATCHED_PUTS * BATCH, batched),
        "batched_ms_per_put": round(1000 * batched / BATCHED_PUTS, 3),
    }


def _fill(box: Outbox, count: int) -> float:
    t0 = time.perf_counter()
    topic = alert_topic(HOME)
    for base in range(0, count, 1000):
        n = min(1000, count - base)
        alerts = [(_alert(base + k), topic) for k in range(0, n, 50)]
        aggs = [_aggregate(base + k) for k in range(n - len(alerts))]
        box.put(alerts=alerts, aggregates=aggs)
    return time.perf_counter() - t0


def _drain(box: Outbox, count: int, *, many: bool) -> float:
    done = 0
    t0 = time.perf_counter()
    while done < count:
        items = box.next_batch(100)
        if not items:
            break
        if many:
            box.ack_many([it.seq for it in items], time.time())
        else:
            for it in items:
                box.ack(it.seq, time.time())
        done += len(items)
    return _rate(done, time.perf_counter() - t0)


def _disk_bytes(path: Path) -> int:
    return sum(
        Path(f"{path}{s}").stat().st_size for s in ("", "-wal") if Path(f"{path}{s}").exists()
    )


def _baseline_file(folder: Path) -> float:
    """Append 1 line + fsync per message to a plain file: the disk's durable-write rate."""
    line = json.dumps(_aggregate(0)[1].decode()).encode() + b"\n"
    fd = os.open(folder / "plain.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        t0 = time.perf_counter()
        for _ in range(SINGLE_PUTS):
            os.write(fd, line)
            os.fsync(fd)
        return _rate(SINGLE_PUTS, time.perf_counter() - t0)
    finally:
        os.close(fd)


def _baseline_sqlite_off(folder: Path) -> float:
    """The same rows into SQLite WAL with synchronous=OFF: fast, not durable."""
    db = sqlite3.connect(folder / "off.db", isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, topic TEXT, payload BLOB)")
        topic, payload = _aggregate(0)
        t0 = time.perf_counter()
        for _ in range(SINGLE_PUTS):
            db.execute("BEGIN")
            db.execute("INSERT INTO t (topic, payload) VALUES (?, ?)", (topic, payload))
            db.execute("COMMIT")
        return _rate(SINGLE_PUTS, time.perf_counter() - t0)
    finally:
        db.close()


def run() -> dict[str, Any]:
    """Run every measurement once; returns the figures (rates in messages per second)."""
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as tmp:
        folder = Path(tmp)
        empty_box = Outbox(folder / "empty" / "outbox.db", max_bytes=1 << 40)
        empty = _appends(empty_box, 0)
        empty_box.close()

        box = Outbox(folder / "backlog" / "outbox.db", max_bytes=1 << 40)
        fill_s = _fill(box, BACKLOG_MESSAGES)
        counts = box.counts()
        size = _disk_bytes(box.path)
        backlog = _appends(box, BACKLOG_MESSAGES)
        drain_single = _drain(box, DRAIN_MESSAGES, many=False)
        drain_many = _drain(box, DRAIN_MESSAGES, many=True)
        box.close()
        t0 = time.perf_counter()
        reopened = Outbox(folder / "backlog" / "outbox.db", max_bytes=1 << 40)
        reopen_s = time.perf_counter() - t0
        reopened.close()

        return {
            "append_empty": empty,
            "append_backlog_100k": backlog,
            "backlog": {
                "messages": counts["alerts"] + counts["aggregates"],
                "alerts": counts["alerts"],
                "fill_messages_per_s": _rate(BACKLOG_MESSAGES, fill_s),
                "disk_bytes": size,
                "bytes_per_message": round(size / BACKLOG_MESSAGES, 1),
                "reopen_s": round(reopen_s, 3),
            },
            "drain_ack_each_per_s": drain_single,
            "drain_ack_many_per_s": drain_many,
            "baseline_plain_file_fsync_per_s": _baseline_file(folder),
            "baseline_sqlite_sync_off_per_s": _baseline_sqlite_off(folder),
            "batch": BATCH,
            "sqlite": sqlite3.sqlite_version,
        }


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=2)
    sys.stdout.write("\n")
