"""What each alert turned out to be, and the statistics the programme judges its alerts by.

Closing a critical or high alert in the console asks for its outcome (`OUTCOMES`) and a
note; they are kept in the hub's store (table `alert_outcomes`, one row per alert, SQLite
or PostgreSQL) by `OutcomeStore`. `per_alert` joins the hub's alerts, their states, the
notification log and the outcomes into one row per alert (what `veille hub-log --csv`
exports); `statistics` groups those rows per home and per alert type: counts, share of
false alarms, time to acknowledge (median, 90th percentile), escalations reached. Pure:
times are in the rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cloud_bridge.console_sessions import _Db
from cloud_bridge.contract import iso_utc, parse_iso_utc

OUTCOMES = ("real", "false_alarm", "test", "other")
OUTCOME_LABELS_FR = {
    "real": "Vraie chute / vraie urgence",
    "false_alarm": "Fausse alerte",
    "test": "Test",
    "other": "Autre",
}
ASKS_OUTCOME = frozenset({"critical", "high"})  # severities whose closing asks for it
NOTE_MAX = 1000
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS alert_outcomes (alert_id TEXT PRIMARY KEY, outcome TEXT NOT NULL,"
    " note TEXT NOT NULL, by_name TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
)


class OutcomeStore:
    """The outcomes in the hub's store."""

    def __init__(self, db: _Db) -> None:
        self._db = db
        db.create(SCHEMA)

    def put(self, alert_id: str, outcome: str, note: str, by: str, now: float) -> None:
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {list(OUTCOMES)}")
        self._db.rows(
            "INSERT INTO alert_outcomes (alert_id, outcome, note, by_name, at)"
            " VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (alert_id) DO UPDATE SET outcome = excluded.outcome,"
            " note = excluded.note, by_name = excluded.by_name, at = excluded.at",
            (alert_id, outcome, note[:NOTE_MAX], by, now),
        )

    def all(self) -> dict[str, dict[str, Any]]:
        rows = self._db.rows("SELECT alert_id, outcome, note, by_name, at FROM alert_outcomes")
        return {
            str(r[0]): {"outcome": r[1], "note": r[2], "by": r[3], "at": float(r[4])} for r in rows
        }

    def get(self, alert_id: str) -> dict[str, Any] | None:
        return self.all_of([alert_id]).get(alert_id)

    def all_of(self, alert_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for alert_id in alert_ids:
            rows = self._db.rows(
                "SELECT outcome, note, by_name, at FROM alert_outcomes WHERE alert_id = ?",
                (alert_id,),
            )
            if rows:
                outcome, note, by, at = rows[0]
                out[alert_id] = {"outcome": outcome, "note": note, "by": by, "at": float(at)}
        return out

    def close(self) -> None:
        self._db.close()


def open_outcomes(spec: str | None) -> OutcomeStore:
    """The outcomes on the store `spec`, as `veille hub --store` names it."""
    from cloud_bridge.console_sessions import open_on_store

    return open_on_store(spec, OutcomeStore, "the alert outcomes")


# --- pure -------------------------------------------------------------------------------------
def notified(entries: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per alert, the channels it went to and when (the sends that succeeded), in order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        if entry.get("ok"):
            out.setdefault(str(entry["alert_id"]), []).append(
                {
                    "channel": entry["channel"],
                    "step": entry.get("step"),
                    "at": iso_utc(float(entry["at"])),
                }
            )
    return out


def ack_delay_s(record: Mapping[str, Any]) -> float | None:
    """Seconds from raised to acknowledged (None if never acknowledged or unreadable)."""
    if not record.get("acknowledged_at"):
        return None
    try:
        delay = parse_iso_utc(str(record["acknowledged_at"])) - parse_iso_utc(
            str(record["raised_at"])
        )
    except ValueError:
        return None
    return max(0.0, delay)


def steps_reached(record: Mapping[str, Any]) -> int:
    """How many escalation steps the alert reached (the highest step sent, plus one)."""
    steps = [n["step"] for n in record.get("notified") or [] if isinstance(n.get("step"), int)]
    return max(steps) + 1 if steps else 0


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between the closest ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def statistics(records: Iterable[Mapping[str, Any]], by: str) -> list[dict[str, Any]]:
    """Rows per value of `by` (`home_id` or `type`), from `hub_log.records` rows."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(str(record[by]), []).append(record)
    out = []
    for key in sorted(groups):
        rows = groups[key]
        judged = [r for r in rows if r.get("outcome")]
        false = [r for r in judged if r["outcome"] == "false_alarm"]
        delays = [d for d in (ack_delay_s(r) for r in rows) if d is not None]
        reached = [steps_reached(r) for r in rows]
        out.append(
            {
                by: key,
                "count": len(rows),
                "with_outcome": len(judged),
                "real": sum(1 for r in judged if r["outcome"] == "real"),
                "false_alarm": len(false),
                "false_alarm_share": len(false) / len(judged) if judged else None,
                "acknowledged": len(delays),
                "ack_median_s": percentile(delays, 50),
                "ack_p90_s": percentile(delays, 90),
                "escalated": sum(1 for n in reached if n >= 2),  # beyond the first step
                "max_step": max(reached) if reached else 0,
            }
        )
    return out
