"""`veille hub-log`: what the hub holds, one record per alert (DESIGN.md section 4).

Fields: `id`, `home_id`, `type`, `severity`, `state`, `raised_at`, `received_at` (when the
hub first stored a state of it), `acknowledged_at`, `acknowledged_by`, `resolved_at`,
`outcome` (what the alert turned out to be, given when staff closed it: `real`,
`false_alarm`, `test`, `other`, or null) and `notified` (the channels it went to, with the
step and the time, from the notification log). `--csv` adds, per alert, what the
programme's statistics are made of: `outcome_note`, `ack_delay_s` (raised to acknowledged)
and `steps_reached` (escalation steps sent).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cloud_bridge.contract import iso_utc, parse_iso_utc
from cloud_bridge.errors import VeilleError
from cloud_bridge.outcomes import ack_delay_s, notified, open_outcomes, steps_reached
from cloud_bridge.stores import open_store

FIELDS = (
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
)
CSV_EXTRA = ("outcome_note", "ack_delay_s", "steps_reached")


def records(
    alerts: Iterable[Mapping[str, Any]],
    states: Iterable[Mapping[str, Any]],
    since: float | None = None,
    outcomes: Mapping[str, Mapping[str, Any]] | None = None,
    notifications: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """One record per alert, oldest raised first (pure); `since`: raised at or after it."""
    outcomes = outcomes or {}
    sent = notified(notifications)
    by_id: dict[str, list[Mapping[str, Any]]] = {}
    for row in states:
        by_id.setdefault(str(row["id"]), []).append(row)
    out = []
    for alert in alerts:
        raised_at = str(alert["raised_at"])
        if since is not None:
            try:
                if parse_iso_utc(raised_at) < since:
                    continue
            except ValueError:
                pass  # an unreadable stored date is listed, never hidden
        rows = by_id.get(str(alert["id"]), [])
        received = [float(r["received_at"]) for r in rows if r.get("received_at") is not None]

        def first_at(state: str, rows: list[Mapping[str, Any]] = rows) -> str | None:
            times = sorted(str(r["at"]) for r in rows if r["state"] == state)
            return times[0] if times else None

        acknowledged_at = first_at("acknowledged")
        out.append(
            {
                "id": alert["id"],
                "home_id": alert["home_id"],
                "type": alert["type"],
                "severity": alert["severity"],
                "state": alert["state"],
                "raised_at": raised_at,
                "received_at": iso_utc(min(received)) if received else None,
                "acknowledged_at": acknowledged_at,
                "acknowledged_by": alert.get("handled_by") or None,
                "resolved_at": first_at("resolved"),
                "outcome": (outcomes.get(str(alert["id"])) or {}).get("outcome"),
                "notified": sent.get(str(alert["id"]), []),
            }
        )
    out.sort(key=lambda r: (r["raised_at"], r["id"]))
    return out


def main(args: Any) -> int:
    """`veille hub-log --store SPEC [--since TIME] (--json|--csv)`."""
    spec = str(args.store)
    if spec.startswith("sqlite:///") and not Path(spec.removeprefix("sqlite:///")).is_file():
        raise VeilleError(f"{spec}: no hub store here")
    since = None
    if args.since is not None:
        try:
            since = parse_iso_utc(args.since)
        except ValueError as exc:
            raise VeilleError(f"--since {args.since!r}: not a time ({exc})") from exc
    try:
        store = open_store(spec)
    except Exception as exc:  # a bad spec, a server that is not there: one line, exit 1
        raise VeilleError(f"{spec}: cannot open the hub store: {exc}") from exc
    try:
        judged = open_outcomes(spec)
        try:
            outcomes = judged.all()
        finally:
            judged.close()
        rows = records(store.alerts(), store.states(), since, outcomes, store.notifications())
    finally:
        store.close()
    out = sys.stdout
    if args.csv:
        writer = csv.DictWriter(out, fieldnames=FIELDS + CSV_EXTRA, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            delay = ack_delay_s(row)
            writer.writerow(
                {
                    **row,
                    "notified": json.dumps(row["notified"], ensure_ascii=False),
                    "outcome_note": (outcomes.get(str(row["id"])) or {}).get("note", ""),
                    "ack_delay_s": "" if delay is None else f"{delay:.1f}",
                    "steps_reached": steps_reached(row),
                }
            )
    else:
        for row in rows:
            out.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")
    out.flush()
    return 0
