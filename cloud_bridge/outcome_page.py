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

from cloud_bridge.console_inbox import LocalAction
from cloud_bridge.console_staff import (
    MaybeStaff,
    StaffSession,
    forget_draft,
    keep_draft,
    take_draft,
)
from cloud_bridge.outcomes import (
    ASKS_OUTCOME,
    NOTE_MAX,
    OUTCOME_LABELS_FR,
    OUTCOMES,
    OutcomeStore,
    statistics,
)
from cloud_bridge.pages import i18n
from cloud_bridge.pages.web import render, verify_csrf

_LOGGER = logging.getLogger(__name__)


def asks_outcome(alert: dict[str, Any]) -> bool:
    return alert.get("severity") in ASKS_OUTCOME


def close_form(
    request: Request,
    session: Any,
    alert: dict[str, Any],
    *,
    note: str = "",
    outcome: str = "",
    error: str = "",
    code: int = 200,
    kept: bool = False,
) -> Response:
    """The closing form: outcome, note, confirmation (`kept`: the note came through a new
    sign-in)."""
    return render(
        request,
        "close.html",
        {
            "alert": alert,
            "title": i18n.alert_name(alert["type"], "fr"),
            "outcomes": [(o, OUTCOME_LABELS_FR[o]) for o in OUTCOMES],
            "required": asks_outcome(alert),
            "note": note,
            "chosen": outcome,
            "kept": kept,
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
        draft = take_draft(request, alert_id)
        if draft is None:
            return close_form(request, session, alert)
        page = close_form(
            request, session, alert, note=draft["note"], outcome=draft["outcome"], kept=True
        )
        return forget_draft(page)

    @app.post("/alerts/{alert_id}/close", response_model=None)
    def close(
        request: Request,
        session: MaybeStaff,
        alert_id: str,
        *,
        csrf: Annotated[str, Form(max_length=128)] = "",
        outcome: Annotated[str, Form(max_length=32)] = "",
        note: Annotated[str, Form(max_length=NOTE_MAX)] = "",
    ) -> Response:
        """Keep the outcome, then resolve the alert as the console does."""
        if session is None:  # the session ended while the form was open: keep what was typed
            return keep_draft(
                request, alert_id, "close", csrf=csrf, note=note.strip(), outcome=outcome
            )
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
        console.actions.record_action(
            LocalAction(alert_id, "resolved", session.name, console.clock())
        )
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
