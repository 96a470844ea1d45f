"""The alert book: detectors' findings in, alert state messages with stable ids out.

Lifecycle: `raised` -> `cancelled` | `acknowledged` (from the hub's ack) -> `resolved`.
Each state change is a new message with the same `id`. A key that is open is not raised
again, unless at a higher severity: then the same id is sent again, `raised`, more severe.
Once its alert is cancelled or resolved the key is forgotten, so the next occurrence is a
new alert. Pure: the pipeline persists `state_dict()` so a restart does not re-raise.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from cloud_bridge.contract import SEVERITY_RANK, AlertState, AlertType, Severity, parse_iso_utc
from edge.events import Alert, Finding, new_alert_id

_LOGGER = logging.getLogger(__name__)

# which state may follow which (anything else is ignored with a log line)
TRANSITIONS: Mapping[AlertState, frozenset[AlertState]] = {
    AlertState.RAISED: frozenset(
        {AlertState.CANCELLED, AlertState.ACKNOWLEDGED, AlertState.RESOLVED}
    ),
    AlertState.ACKNOWLEDGED: frozenset({AlertState.RESOLVED}),
    AlertState.CANCELLED: frozenset(),
    AlertState.RESOLVED: frozenset(),
}
CLOSED = frozenset({AlertState.CANCELLED, AlertState.RESOLVED})


class AlertBook:
    """Open alerts by key; turns findings and hub acks into alert state messages."""

    def __init__(self, home_id: str, state: Mapping[str, Any] | None = None) -> None:
        self.home_id = home_id
        self._open: dict[str, Alert] = {}
        if state:
            for key, wire in state.get("open", {}).items():
                try:
                    self._open[key] = _from_wire(wire)
                except (KeyError, ValueError) as exc:
                    _LOGGER.error("alert book: dropping unreadable open alert %s: %s", key, exc)

    def apply(self, finding: Finding) -> list[Alert]:
        current = self._open.get(finding.key)
        if finding.action == "raise":
            if current is not None:
                return self._escalate(finding.key, current, finding)
            alert = Alert(
                id=new_alert_id(finding.at),
                home_id=self.home_id,
                type=finding.type,
                severity=finding.severity,
                state=AlertState.RAISED,
                at=finding.at,
                raised_at=finding.raised_at if finding.raised_at is not None else finding.at,
                room=finding.room,
                device_id=finding.device_id,
                evidence=dict(finding.evidence),
            )
            self._open[finding.key] = alert
            return [alert]
        target = AlertState.CANCELLED if finding.action == "cancel" else AlertState.RESOLVED
        if current is None:
            if finding.action == "cancel" and finding.raised_at is not None:
                # cancelled before it was ever sent (fall confirmation window): log it upstream
                began = finding.raised_at
                return [
                    Alert(
                        id=new_alert_id(began),
                        home_id=self.home_id,
                        type=finding.type,
                        severity=finding.severity,
                        state=AlertState.CANCELLED,
                        at=finding.at,
                        raised_at=began,
                        room=finding.room,
                        device_id=finding.device_id,
                        evidence=dict(finding.evidence),
                    )
                ]
            return []
        return self._move(finding.key, current, target, finding.at, finding.evidence)

    def _escalate(self, key: str, alert: Alert, finding: Finding) -> list[Alert]:
        """A repeat raise of an open key: sent again only if more severe (same id)."""
        if SEVERITY_RANK[finding.severity] >= SEVERITY_RANK[alert.severity]:
            return []
        worse = dataclasses.replace(
            alert,
            severity=finding.severity,
            at=max(finding.at, alert.at),
            evidence={**alert.evidence, **finding.evidence},
        )
        self._open[key] = worse
        return [worse]

    def on_ack(self, ack: Mapping[str, Any]) -> list[Alert]:
        """A validated `veille.ack/1` payload from the hub."""
        alert_id = ack.get("alert_id")
        for key, alert in self._open.items():
            if alert.id == alert_id:
                target = AlertState(ack["action"])
                extra = {"by": ack.get("by", "")} if ack.get("by") else {}
                return self._move(key, alert, target, parse_iso_utc(ack["at"]), extra)
        _LOGGER.info("ack for alert %s which is not open here; ignored", alert_id)
        return []

    def _move(
        self, key: str, alert: Alert, target: AlertState, at: float, evidence: Mapping[str, Any]
    ) -> list[Alert]:
        if target not in TRANSITIONS[alert.state]:
            _LOGGER.info(
                "alert %s: %s -> %s is not a transition; ignored", alert.id, alert.state, target
            )
            return []
        moved = alert.with_state(target, max(at, alert.at), **dict(evidence))
        if target in CLOSED:
            del self._open[key]
        else:
            self._open[key] = moved
        return [moved]

    def open_alerts(self) -> list[Alert]:
        """Open alerts, most severe first, then oldest first."""
        return sorted(self._open.values(), key=lambda a: (SEVERITY_RANK[a.severity], a.raised_at))

    def is_open(self, key: str) -> bool:
        return key in self._open

    def state_dict(self) -> dict[str, Any]:
        return {"open": {key: alert.to_wire() for key, alert in self._open.items()}}


def _from_wire(wire: Mapping[str, Any]) -> Alert:
    return Alert(
        id=wire["id"],
        home_id=wire["home_id"],
        type=AlertType(wire["type"]),
        severity=Severity(wire["severity"]),
        state=AlertState(wire["state"]),
        at=parse_iso_utc(wire["at"]),
        raised_at=parse_iso_utc(wire["raised_at"]),
        room=wire.get("room"),
        device_id=wire.get("device_id"),
        evidence=dict(wire.get("evidence", {})),
    )
