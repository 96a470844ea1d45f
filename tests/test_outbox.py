"""The durable outbox and its alarm log, on real SQLite files."""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cloud_bridge import contract
from cloud_bridge.contract import AlertState, AlertType, Severity
from cloud_bridge.errors import StorageError
from edge.events import Alert
from edge.storage.outbox import Outbox, OutboxItem

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors" / "db"
VEILLE = ROOT / ".venv" / "bin" / "veille"
HOME = "h-0001"
ALERT_TOPIC = f"veille/v1/{HOME}/alert"
HOURLY_TOPIC = f"veille/v1/{HOME}/aggregate/hourly"
T0 = 1_700_000_000.0


def alert(n: int, state: AlertState = AlertState.RAISED, at: float | None = None) -> Alert:
    raised = T0 + n
    return Alert(
        id=f"018bcfe5-6800-7000-8000-{n:012d}",
        home_id=HOME,
        type=AlertType.FALL if n % 2 else AlertType.INACTIVITY,
        severity=Severity.CRITICAL,
        state=state,
        at=raised if at is None else at,
        raised_at=raised,
        room="bedroom",
        device_id="wear-1",
        evidence={"peak_g": 3.4},
    )


def aggregate(n: int, pad: int = 0) -> tuple[str, bytes]:
    return HOURLY_TOPIC, json.dumps({"n": n, "pad": "x" * pad}).encode()


@pytest.fixture
def box(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "state" / "outbox.db")


def test_alerts_drain_before_aggregates_each_by_seq(box: Outbox) -> None:
    first = box.put(aggregates=[aggregate(1), aggregate(2)])
    second = box.put(alerts=[(alert(1), ALERT_TOPIC)], aggregates=[aggregate(3)])
    third = box.put(alerts=[(alert(2), ALERT_TOPIC), (alert(3), ALERT_TOPIC)])
    assert first == [1, 2]
    assert second == [3, 4]
    assert third == [5, 6]

    batch = box.next_batch(10)
    assert [(i.seq, i.priority) for i in batch] == [(3, 0), (5, 0), (6, 0), (1, 1), (2, 1), (4, 1)]
    assert batch[0] == OutboxItem(3, ALERT_TOPIC, contract.encode(alert(1).to_wire()), 0)
    contract.validate_alert(contract.decode(batch[0].payload))
    assert batch[3].topic == HOURLY_TOPIC
    assert batch[3].payload == aggregate(1)[1]

    assert [i.seq for i in box.next_batch(2)] == [3, 5]
    assert [i.seq for i in box.next_batch(3, exclude={3, 5, 1})] == [6, 2, 4]
    assert box.next_batch(0) == []
    assert box.counts() == {
        "alerts": 3,
        "aggregates": 3,
        "bytes": sum(len(i.payload) + len(i.topic) + 48 for i in batch),
        "dropped_aggregates": 0,
    }
    assert box.health() == "ok"


def test_ack_deletes_the_row_and_logs_delivery_of_alerts(
    box: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    a1 = alert(1)
    seqs = box.put(alerts=[(a1, ALERT_TOPIC)], aggregates=[aggregate(1)])
    box.put(alerts=[(a1.with_state(AlertState.CANCELLED, T0 + 30), ALERT_TOPIC)])
    box.put(alerts=[(alert(2), ALERT_TOPIC)])
    assert [e["delivered_at"] for e in box.alarm_log()] == [None, None]

    box.ack(3, T0 + 31.5)  # the cancel is acknowledged first (e.g. after a reconnect)
    box.ack(seqs[0], T0 + 32.0)
    box.ack(seqs[1], T0 + 33.0)
    box.ack(seqs[1], T0 + 34.0)  # a duplicate PUBACK: nothing left to delete
    box.ack(999, T0 + 35.0)
    assert [i.seq for i in box.next_batch(10)] == [4]
    assert box.counts()["alerts"] == 1
    assert box.counts()["aggregates"] == 0
    assert list(box.alarm_log()) == [
        {
            "id": a1.id,
            "type": "fall",
            "raised_at": "2023-11-14T22:13:21.000Z",
            "states": [
                {
                    "state": "raised",
                    "at": "2023-11-14T22:13:21.000Z",
                    "delivered_at": "2023-11-14T22:13:52.000Z",
                },
                {
                    "state": "cancelled",
                    "at": "2023-11-14T22:13:50.000Z",
                    "delivered_at": "2023-11-14T22:13:51.500Z",
                },
            ],
            "delivered_at": "2023-11-14T22:13:51.500Z",  # the first PUBACK of this alert
        },
        {
            "id": alert(2).id,
            "type": "inactivity",
            "raised_at": "2023-11-14T22:13:22.000Z",
            "states": [{"state": "raised", "at": "2023-11-14T22:13:22.000Z", "delivered_at": None}],
            "delivered_at": None,
        },
    ]


def test_ack_many_is_one_transaction_for_several_pubacks(box: Outbox) -> None:
    seqs = box.put(
        alerts=[(alert(1), ALERT_TOPIC), (alert(2), ALERT_TOPIC)],
        aggregates=[aggregate(1), aggregate(2)],
    )
    box.ack_many(seqs[:3], T0 + 5)
    assert [i.seq for i in box.next_batch(10)] == [seqs[3]]
    assert [e["delivered_at"] for e in box.alarm_log()] == ["2023-11-14T22:13:25.000Z"] * 2


def test_a_failed_put_stores_neither_the_alert_nor_its_alarm_log_row(box: Outbox) -> None:
    big = dataclasses.replace(alert(1), evidence={"note": "x" * 6000})
    # No page left: the alarm-log rows fit in existing pages, the payload's overflow pages
    # do not, so the insert fails half-way through the transaction.
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageError, match="disk full"):
        box.put(alerts=[(big, ALERT_TOPIC)])
    assert list(box.alarm_log()) == []
    assert box.next_batch(10) == []
    assert box.counts()["alerts"] == 0
    box._db.execute("PRAGMA max_page_count = 1000000")
    box.put(alerts=[(alert(2), ALERT_TOPIC)])
    assert [e["id"] for e in box.alarm_log()] == [alert(2).id]


def test_the_alarm_log_is_append_only(box: Outbox) -> None:
    box.put(alerts=[(alert(1), ALERT_TOPIC)])
    box.ack(1, T0 + 2)
    db = sqlite3.connect(box.path)
    try:
        for sql in (
            "DELETE FROM alarm_log",
            "DELETE FROM alarm_state",
            "UPDATE alarm_state SET state = 'resolved'",
            "UPDATE alarm_log SET delivered_at = 0",
            "UPDATE alarm_state SET delivered_at = 0",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(sql)
    finally:
        db.close()
    assert len(list(box.alarm_log())) == 1


def test_budget_drops_the_oldest_aggregates_never_alerts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "outbox.db", max_bytes=3_000)
    row = len(aggregate(0, pad=100)[1]) + len(HOURLY_TOPIC) + 48
    for n in range(12):
        box.put(alerts=[(alert(n), ALERT_TOPIC)] if n % 4 == 0 else [])
        box.put(aggregates=[aggregate(n, pad=100)])
    counts = box.counts()
    assert counts["alerts"] == 3  # every alert is still queued
    assert counts["bytes"] <= 3_000
    queued = box.next_batch(100)
    aggs = [json.loads(i.payload)["n"] for i in queued if i.priority == 1]
    assert aggs == list(range(12 - len(aggs), 12))  # the newest ones are kept, in order
    assert counts["dropped_aggregates"] == 12 - len(aggs) > 0
    assert counts["bytes"] == sum(len(i.payload) + len(i.topic) + 48 for i in queued)
    assert len(aggs) >= (3_000 - sum(len(i.payload) + 70 for i in queued[:3])) // row - 1
    assert box.health() == "warning"
    assert "over its 3000-byte budget" in caplog.text

    # alerts alone past the budget: they stay, every aggregate goes
    box.put(alerts=[(alert(100 + n), ALERT_TOPIC) for n in range(20)])
    assert box.counts()["alerts"] == 23
    assert box.counts()["aggregates"] == 0
    box.close()
    reopened = Outbox(tmp_path / "outbox.db", max_bytes=3_000)
    assert reopened.counts()["dropped_aggregates"] == 12  # the counter outlives a restart
    assert reopened.health() == "ok"


def test_disk_full_drops_aggregates_keeps_alerts_then_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = Outbox(tmp_path / "outbox.db", max_bytes=1 << 30)
    # A filesystem that fills up: SQLite's own page limit gives the same SQLITE_FULL error.
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count = {pages + 200}")
    n = 0
    while box.counts()["dropped_aggregates"] == 0:
        box.put(aggregates=[aggregate(n, pad=2000)])
        n += 1
    assert box.health() == "warning"
    assert "disk full" in caplog.text
    stored = box.counts()["aggregates"]
    assert stored > 5

    kept = 0
    refused: StorageError | None = None
    for k in range(10_000):
        try:
            box.put(alerts=[(alert(k), ALERT_TOPIC)], aggregates=[aggregate(k, pad=2000)])
        except StorageError as exc:
            refused = exc
            break
        kept += 1
    assert refused is not None
    assert "disk full" in str(refused)
    assert box.counts()["alerts"] == kept > stored  # room was made for alerts only
    assert box.counts()["aggregates"] == 0
    assert [e["id"] for e in box.alarm_log()] == [alert(k).id for k in range(kept)]


def test_docs_are_committed_with_the_alerts_or_not_at_all(tmp_path: Path) -> None:
    """The alert book saved with its alert rows: a failed put leaves the old version."""
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    box.put(alerts=[(alert(1), ALERT_TOPIC)], docs={"alert_book": {"open": {"k1": 1}}})
    big = dataclasses.replace(alert(2), evidence={"note": "x" * 6000})
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageError, match="disk full"):
        box.put(alerts=[(big, ALERT_TOPIC)], docs={"alert_book": {"open": {"k2": 2}}})
    assert box.get_doc("alert_book") == {"open": {"k1": 1}}
    box.close()
    assert Outbox(path).get_doc("alert_book") == {"open": {"k1": 1}}


def test_reopen_after_close_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path)
    box.put(alerts=[(alert(1), ALERT_TOPIC)], aggregates=[aggregate(1)])
    box.put(alerts=[(alert(2), ALERT_TOPIC)])
    box.ack(3, T0 + 9)
    before = (box.next_batch(10), box.counts(), list(box.alarm_log()))
    box.close()
    again = Outbox(path)
    assert (again.next_batch(10), again.counts(), list(again.alarm_log())) == before
    again.ack_many([1, 2], T0 + 10)
    assert again.put(aggregates=[aggregate(3)]) == [4]  # seqs are never reused
    again.close()


def test_storage_is_private_to_the_service_user(tmp_path: Path) -> None:
    folder = tmp_path / "storage"
    box = Outbox(folder / "outbox.db")
    box.put(alerts=[(alert(1), ALERT_TOPIC)])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("outbox.db", "outbox.db-wal", "outbox.db-shm"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    box.close()


def test_drain_and_budget_walk_the_index_so_writes_do_not_grow_with_backlog(box: Outbox) -> None:
    plans = [
        box._db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
        for sql in (
            "SELECT seq, topic, payload, priority FROM outbox ORDER BY priority, seq LIMIT 5",
            "SELECT seq, size FROM outbox WHERE priority = 1 ORDER BY seq",
        )
    ]
    for plan in plans:
        text = " ".join(str(step[-1]) for step in plan)
        assert "outbox_drain" in text, text
        assert "TEMP B-TREE" not in text, text


def _write_rows(path: Path, alerts: int, aggregates: int) -> None:
    box = Outbox(path, max_bytes=1 << 30)
    for n in range(alerts):
        box.put(alerts=[(alert(n), ALERT_TOPIC)])
    box.put(aggregates=[aggregate(n, pad=500) for n in range(aggregates)])
    box.close()


def test_truncated_file_is_moved_aside_salvaged_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.db"
    _write_rows(path, alerts=30, aggregates=400)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size // 2)

    box = Outbox(path)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "damaged" in errors[0].getMessage()
    assert "outbox.db.corrupt-1" in errors[0].getMessage()
    assert (tmp_path / "outbox.db.corrupt-1").stat().st_size == size // 2
    assert box.health() == "warning"
    counts = box.counts()
    assert counts["alerts"] == 30  # alerts were written first: their pages survived
    assert 0 < counts["aggregates"] < 400
    log = list(box.alarm_log())
    assert [e["id"] for e in log] == [alert(n).id for n in range(30)]
    queued = box.next_batch(30)
    assert [contract.decode(i.payload)["id"] for i in queued] == [alert(n).id for n in range(30)]
    assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    box.put(alerts=[(alert(99), ALERT_TOPIC)])
    box.close()

    caplog.clear()
    again = Outbox(path)  # no crash loop: the rebuilt file opens cleanly
    assert again.health() == "ok"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert again.counts()["alerts"] == 31
    assert not (tmp_path / "outbox.db.corrupt-2").exists()


def test_garbage_file_is_replaced_by_a_fresh_outbox(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not an SQLite file\n" * 200)
    box = Outbox(path)
    assert "damaged" in caplog.text
    assert "corrupt-1" in caplog.text
    assert box.counts() == {"alerts": 0, "aggregates": 0, "bytes": 0, "dropped_aggregates": 0}
    assert box.health() == "warning"
    assert box.put(alerts=[(alert(1), ALERT_TOPIC)]) == [1]


def test_corrupt_page_in_the_middle_keeps_what_reads_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.db"
    _write_rows(path, alerts=5, aggregates=300)
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    data[middle : middle + 3 * page] = bytes(range(256)) * (3 * page // 256)
    path.write_bytes(bytes(data))
    box = Outbox(path)
    assert "damaged" in caplog.text
    assert box.counts()["alerts"] == 5
    assert 0 < box.counts()["aggregates"] < 300
    assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_recorded_v1_file_opens_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    db = sqlite3.connect(path)
    db.executescript((VECTORS / "outbox_v1.sql").read_text())
    db.close()
    box = Outbox(path)
    assert box.health() == "ok"
    # migrated to the newest schema (v2 adds the docs table, v3 an index for receipts), its
    # rows untouched
    assert box._db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert box.get_doc("alert_book") is None
    batch = box.next_batch(10)
    assert [(i.seq, i.priority, i.topic) for i in batch] == [
        (4, 0, ALERT_TOPIC),
        (5, 1, f"veille/v1/{HOME}/aggregate/daily"),
    ]
    assert contract.decode(batch[0].payload)["type"] == "inactivity"
    log = list(box.alarm_log())
    assert [(e["type"], e["delivered_at"]) for e in log] == [
        ("fall", "2023-11-14T22:13:21.500Z"),
        ("inactivity", None),
    ]
    assert [s["state"] for s in log[0]["states"]] == ["raised", "cancelled"]
    assert box.put(aggregates=[aggregate(1)]) == [6]
    box.ack(4, T0 + 700)
    assert list(box.alarm_log())[1]["delivered_at"] == "2023-11-14T22:25:00.000Z"


def test_a_newer_schema_is_refused_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StorageError, match="newer"):
        Outbox(path)
    assert not (tmp_path / "outbox.db.corrupt-1").exists()


def test_veille_log_prints_one_json_line_per_alert(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    box.put(alerts=[(alert(1), ALERT_TOPIC), (alert(2), ALERT_TOPIC)])
    box.ack(1, T0 + 3)
    expected = list(box.alarm_log())
    box.close()
    done = subprocess.run(
        [VEILLE, "log", "--storage", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [json.loads(line) for line in lines] == expected
    assert list(json.loads(lines[0])) == ["id", "type", "raised_at", "states", "delivered_at"]
    assert expected[0]["delivered_at"] == "2023-11-14T22:13:23.000Z"


@pytest.mark.parametrize("content", [None, b"garbage, not a database" * 100])
def test_veille_log_on_missing_or_bad_storage_says_so_in_one_line(
    tmp_path: Path, content: bytes | None
) -> None:
    if content is not None:
        (tmp_path / "outbox.db").write_bytes(content)
    done = subprocess.run(
        [VEILLE, "log", "--storage", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("veille log: ")
    assert "outbox.db" in done.stderr


def test_a_clobbered_header_loses_no_alarm_log_entry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The first page of the file overwritten (SQLite cannot read a single row of it): the
    alarm log is rebuilt whole from its journal kept beside the file, with the receipts it
    had, and the alerts still waiting for theirs are queued again."""
    path = tmp_path / "outbox.db"
    box = Outbox(path, home_id=HOME)
    seqs = [box.put(alerts=[(alert(n), ALERT_TOPIC)])[0] for n in range(5)]
    box.confirm([(alert(1).id, "raised", None), (alert(3).id, None, None)], T0 + 50)
    box.put(aggregates=[aggregate(n) for n in range(20)])
    before = list(box.alarm_log())
    box.close()
    with path.open("r+b") as f:
        f.write(b"\0" * 4096)

    again = Outbox(path, home_id=HOME)
    assert "damaged" in caplog.text
    after = list(again.alarm_log())
    assert after == before
    assert [e["delivered_at"] is not None for e in after] == [False, True, False, True, False]
    queued = [contract.decode(i.payload)["id"] for i in again.next_batch(10)]
    assert queued == [alert(n).id for n in (0, 2, 4)]
    assert len(seqs) == 5
    again.close()
    caplog.clear()
    third = Outbox(path, home_id=HOME)  # and it stays whole across later opens
    assert list(third.alarm_log()) == before
    assert "damaged" not in caplog.text


# SQLite shares the WAL index (outbox.db-shm) between processes through POSIX locks; every
# connection holds a read lock on its byte 128. A process that finds that lock free takes the
# index for abandoned and resets it, under a live writer's memory map (SIGBUS). POSIX locks
# belong to the process and die with *any* close() of the file in it, so an Outbox must never
# open and close a descriptor of its own on -shm or -wal.
_DMS_PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 128)
except OSError:
    print("held")
else:
    print("free")
"""

_WRITER = """
import sys
from pathlib import Path
from edge.storage.outbox import Outbox
from tests.test_outbox import ALERT_TOPIC, HOME, T0, alert
box = Outbox(Path(sys.argv[1]), home_id=HOME)
for n in range(int(sys.argv[2])):
    box.put(alerts=[(alert(n), ALERT_TOPIC)])
    box.confirm([(alert(n).id, None, None)], T0 + n)
box.close()
"""


def _veille_log(storage: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VEILLE, "log", "--storage", str(storage), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_an_open_outbox_keeps_sqlite_shared_memory_lock_for_other_processes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    _write_rows(path, alerts=3, aggregates=3)
    box = Outbox(path, home_id=HOME)  # opened with -wal and -shm already there
    box.put(alerts=[(alert(9), ALERT_TOPIC)])
    probe = subprocess.run(
        [sys.executable, "-c", _DMS_PROBE, f"{path}-shm"],
        capture_output=True,
        text=True,
        check=False,
    )
    box.close()
    assert probe.stdout.strip() == "held", probe.stderr


def test_the_gateway_survives_veille_log_reading_while_it_writes(tmp_path: Path) -> None:
    """`veille log` run by an installer while the gateway stores alerts and receipts: the
    writer does not die (it did, of SIGBUS, in every run) and no delivery is lost."""
    storage = tmp_path / "storage"
    Outbox(storage / "outbox.db", home_id=HOME).close()
    n = 400
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(storage / "outbox.db"), str(n)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
    )
    reads = 0
    while writer.poll() is None:
        out = _veille_log(storage)
        assert out.returncode == 0, out.stderr
        reads += 1
    _out, err = writer.communicate()
    assert writer.returncode == 0, err.decode()
    log = [json.loads(line) for line in _veille_log(storage).stdout.splitlines()]
    assert reads >= 2
    assert len(log) == n
    assert all(e["delivered_at"] is not None for e in log)
