"""`veille hub-log --store SPEC [--since TIME] (--json|--csv)` as DESIGN.md section 4 says,
on SQLite and PostgreSQL, run as an operator runs it; and the receipt's precise match."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any

from cloud_bridge.contract import AlertState
from cloud_bridge.stores import open_store
from edge.storage.outbox import Outbox
from tests.gateway_proc import VEILLE
from tests.test_outbox import ALERT_TOPIC, T0
from tests.test_outbox import alert as outbox_alert

FIELDS = [
    "id",
    "home_id",
    "type",
    "severity",
    "state",
    "raised_at",
    "received_at",
    "acknowledged_at",
    "acknowledged_by",
    "resolved_at",
    "outcome",
    "notified",
]


def alert(n: int, state: str = "raised", at: str | None = None) -> dict[str, Any]:
    raised = f"2026-03-0{n}T10:00:00.000Z"
    return {
        "schema": "veille.alert/1",
        "id": f"0190a000-0000-7000-8000-{n:012d}",
        "home_id": "h-log-1",
        "type": "fall",
        "severity": "critical",
        "state": state,
        "at": at or raised,
        "raised_at": raised,
        "room": "bedroom",
        "device_id": "wearable-1",
        "evidence": {"score": 0.97},
    }


def hub_log(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VEILLE, "hub-log", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_hub_log_json_and_csv_hold_every_alert_with_the_design_fields(spec: str) -> None:
    store = open_store(spec)
    store.record_alert(alert(1), 1_772_359_200.0)
    store.record_alert(alert(1, "acknowledged", "2026-03-01T10:05:00.000Z"), 1_772_359_500.0)
    store.record_alert(alert(1, "resolved", "2026-03-01T10:30:00.000Z"), 1_772_361_000.0)
    store.mark(alert(1)["id"], handled_by="alice")
    store.record_alert(alert(2), 1_772_445_600.0)
    store.close()

    out = hub_log("--store", spec, "--json")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [list(r) for r in rows] == [FIELDS, FIELDS]
    assert rows[0] == {
        "id": alert(1)["id"],
        "home_id": "h-log-1",
        "type": "fall",
        "severity": "critical",
        "state": "resolved",
        "raised_at": "2026-03-01T10:00:00.000Z",
        "received_at": "2026-03-01T10:00:00.000Z",
        "acknowledged_at": "2026-03-01T10:05:00.000Z",
        "acknowledged_by": "alice",
        "resolved_at": "2026-03-01T10:30:00.000Z",
        "outcome": None,
        "notified": [],
    }
    assert rows[1]["state"] == "raised"
    assert rows[1]["acknowledged_at"] is None

    since = hub_log("--store", spec, "--since", "2026-03-02T00:00:00Z", "--json")
    assert [json.loads(line)["id"] for line in since.stdout.splitlines()] == [alert(2)["id"]]

    table = hub_log("--store", spec, "--csv")
    assert table.returncode == 0, table.stderr
    read = list(csv.DictReader(io.StringIO(table.stdout)))
    # the contract's fields first, then the statistics' own per alert
    assert list(read[0]) == [*FIELDS, "outcome_note", "ack_delay_s", "steps_reached"]
    assert [r["id"] for r in read] == [r["id"] for r in rows]
    assert read[0]["notified"] == "[]"


def test_hub_log_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    for args in (
        ["--store", f"sqlite:///{tmp_path / 'none.db'}", "--json"],
        ["--store", "mysql://x", "--json"],
        ["--store", f"sqlite:///{tmp_path / 'none.db'}", "--since", "yesterday", "--json"],
    ):
        out = hub_log(*args)
        assert out.returncode == 1, args
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "Traceback" not in out.stderr
    assert hub_log("--store", "sqlite:///x.db").returncode == 2  # --json or --csv: required


def test_a_receipt_for_one_state_never_confirms_another(tmp_path: Path) -> None:
    """`raised` and `resolved` of one alert both queued; a receipt for `raised` deletes only
    that row, so the `resolved` on its way is sent until its own receipt comes."""
    box = Outbox(tmp_path / "outbox.db")
    raised = outbox_alert(1)
    resolved = outbox_alert(1, AlertState.RESOLVED, at=T0 + 60)
    seqs = box.put(alerts=[(raised, ALERT_TOPIC), (resolved, ALERT_TOPIC)])
    assert box.confirm([(raised.id, "raised", str(raised.severity))], T0 + 61) == [seqs[0]]
    assert [i.seq for i in box.next_batch(10)] == [seqs[1]]
    states = next(iter(box.alarm_log()))["states"]
    assert [s["delivered_at"] is not None for s in states] == [True, False]
    assert box.confirm([(raised.id, "resolved", "info")], T0 + 62) == []  # wrong severity
    assert box.confirm([(raised.id, "resolved", None)], T0 + 63) == [seqs[1]]
    assert box.counts()["alerts"] == 0
