"""Closing an alert with its outcome, and the statistics page, in the console.

Resolving a critical or high alert (`POST /alerts/{id}/resolve`) does not close it at once:
the console answers with the closing form (`close_form`), which asks what the alert turned
out to be (`outcomes.OUTCOMES`) and keeps the typed note; its confirmation
(`POST /alerts/{id}/close`) stores the outcome and then resolves as before (`veille.ack/1`
to the home). `GET /statistiques`: per home and per alert type, counts, share of false
alarms, time to acknowledge (median, 90th percentile), escalations reached.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from cloud_bridge.console_staff import StaffSession
from cloud_bridge.outcomes import (
    ASKS_OUTCOME,
    NOTE_MAX,
    OUTCOME_LABELS_FR,
    OUTCOMES,
    OutcomeStore,
    statistics,
)
from cloud_bridge.pages import i18n
from cloud_bridge.pages.web import Csrf, render, verify_csrf

_LOGGER = logging.getLogger(__name__)


def asks_outcome(alert: dict[str, Any]) -> bool:
    return alert.get("severity") in ASKS_OUTCOME


def close_form(
    request: Request,
    session: Any,
    alert: dict[str, Any],
    *,
    note: str = "",
    error: str = "",
    code: int = 200,
) -> Response:
    """The closing form: outcome, note, confirmation."""
    return render(
        request,
        "close.html",
        {
            "alert": alert,
            "title": i18n.alert_name(alert["type"], "fr"),
            "outcomes": [(o, OUTCOME_LABELS_FR[o]) for o in OUTCOMES],
            "required": asks_outcome(alert),
            "note": note,
            "error": error,
        },
        session=session,
        status_code=code,
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def install_outcomes(app: FastAPI, console: Any, outcomes: OutcomeStore, card: Any = None) -> None:
    """Add the closing form and the statistics page to the console app."""
    app.state.close_form = close_form

    @app.get("/alerts/{alert_id}/close", response_model=None)
    def close_page(request: Request, session: StaffSession, alert_id: str) -> Response:
        alert = console.hub.store.alert(alert_id)
        if alert is None:
            raise HTTPException(404, "no such alert")
        return close_form(request, session, alert)

    @app.post("/alerts/{alert_id}/close", response_model=None)
    def close(
        request: Request,
        session: StaffSession,
        alert_id: str,
        csrf: Csrf,
        *,
        outcome: Annotated[str, Form(max_length=32)] = "",
        note: Annotated[str, Form(max_length=NOTE_MAX)] = "",
    ) -> Response:
        """Keep the outcome, then resolve the alert as the console does."""
        verify_csrf(request, csrf)
        alert = console.hub.store.alert(alert_id)
        if alert is None:
            raise HTTPException(404, "no such alert")
        note = note.strip()
        if outcome not in OUTCOMES and (outcome or asks_outcome(alert)):
            error = "Dites ce que l'alerte s'est révélée être avant de la clôturer."
            return close_form(request, session, alert, note=note, error=error, code=422)
        if outcome:
            outcomes.put(alert_id, outcome, note, session.name, console.clock())
        if not console.hub.send_ack(alert_id, "resolved", by=session.name, note=note):
            raise HTTPException(503, "the resolution could not be sent to the home")
        _LOGGER.info("console: %s closed alert %s (%s)", session.name, alert_id, outcome or "-")
        return RedirectResponse("/", status_code=303)

    @app.get("/statistiques", response_model=None)
    def stats(request: Request, session: StaffSession) -> Response:
        """Per home and per alert type: what the alerts were and how fast they were taken."""
        from cloud_bridge.hub_log import records

        store = console.hub.store
        rows = records(store.alerts(), store.states(), None, outcomes.all(), store.notifications())
        homes = statistics(rows, "home_id")
        for row in homes:
            known = card(row["home_id"]) if card is not None else {}
            row["label"] = known.get("resident") or f"logement {row['home_id']}"
        kinds = statistics(rows, "type")
        for row in kinds:
            row["label"] = i18n.alert_name(row["type"], "fr")
        for row in homes + kinds:
            share = row["false_alarm_share"]
            row["share_words"] = "—" if share is None else f"{share:.0%}".replace("%", " %")
            row["median_words"] = _duration(row["ack_median_s"])
            row["p90_words"] = _duration(row["ack_p90_s"])
        return render(
            request,
            "stats.html",
            {"homes": homes, "kinds": kinds, "total": len(rows)},
            session=session,
        )
