"""The home directory in the console: staff read the cards, coordinators edit them.

`GET /annuaire` lists every home's card; `GET /homes/{home_id}/annuaire` shows one (with a
form for a coordinator); `POST /homes/{home_id}/annuaire` keeps a coordinator's edit
(CSRF-checked; anyone else gets 403). A coordinator is a staff member named by
`veille hub --coordinator NAME` who signs in with a password of their own (a `name:password`
line), never with the shared one: with a shared password the name is only typed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from cloud_bridge.console_staff import StaffSession
from cloud_bridge.contract import HOME_ID_RE
from cloud_bridge.directory import (
    CONTACTS_MAX,
    RELATION_LABELS_FR,
    RELATIONS,
    Contact,
    DirectoryError,
    DirectoryStore,
    HomeCard,
    parse_card,
)
from cloud_bridge.pages.web import render, verify_csrf

_LOGGER = logging.getLogger(__name__)

FIELDS = ("resident", "address", "phone", "access", "centre_account")
BLANK_CONTACT_ROWS = 2


def install_directory(
    app: FastAPI, console: Any, directory: DirectoryStore, coordinators: Collection[str]
) -> None:
    """Add the directory's pages to the console app."""

    def is_coordinator(name: str) -> bool:
        return name in coordinators and console.passwords.personal(name)

    def card_page(
        request: Request, session: Any, card: HomeCard, error: str = "", code: int = 200
    ) -> Response:
        rows = list(card.contacts)
        return render(
            request,
            "directory_card.html",
            {
                "card": card,
                "contacts": rows,
                "blank_rows": range(min(BLANK_CONTACT_ROWS, CONTACTS_MAX - len(rows))),
                "relations": [(r, RELATION_LABELS_FR[r]) for r in RELATIONS],
                "labels": RELATION_LABELS_FR,
                "can_edit": is_coordinator(session.name),
                "error": error,
            },
            session=session,
            status_code=code,
        )

    def checked_home(home_id: str) -> str:
        if not HOME_ID_RE.match(home_id):
            raise HTTPException(404, "no such home")
        return home_id

    @app.get("/annuaire", response_model=None)
    def directory_list(request: Request, session: StaffSession) -> Response:
        """Every home's card."""
        cards = {c.home_id: c for c in directory.all()}
        for status in console.hub.store.statuses():  # homes known to the hub, card or not
            cards.setdefault(status["home_id"], HomeCard(status["home_id"]))
        return render(
            request,
            "directory.html",
            {
                "cards": sorted(cards.values(), key=lambda c: c.home_id),
                "labels": RELATION_LABELS_FR,
            },
            session=session,
        )

    @app.get("/homes/{home_id}/annuaire", response_model=None)
    def directory_card(request: Request, session: StaffSession, home_id: str) -> Response:
        """One home's card; a form for a coordinator."""
        home_id = checked_home(home_id)
        return card_page(request, session, directory.get(home_id) or HomeCard(home_id))

    @app.post("/homes/{home_id}/annuaire", response_model=None)
    async def directory_edit(request: Request, session: StaffSession, home_id: str) -> Response:
        """A coordinator's edit of the card."""
        home_id = checked_home(home_id)
        form = await request.form()
        verify_csrf(request, str(form.get("csrf", "")))
        if not is_coordinator(session.name):
            _LOGGER.warning(
                "directory: %s may not edit %s (not a coordinator)", session.name, home_id
            )
            raise HTTPException(403, "only a coordinator edits the home directory")
        data: dict[str, Any] = {"home_id": home_id}
        for key in FIELDS:
            data[key] = str(form.get(key, ""))
        contacts = []
        columns = [form.getlist(f"contact_{k}") for k in ("name", "relation", "phone", "email")]
        for name, relation, phone, email in zip(*columns, strict=False):
            if str(name).strip():
                contacts.append(
                    {
                        "name": str(name),
                        "relation": str(relation),
                        "phone": str(phone),
                        "email": str(email),
                    }
                )
        data["contact"] = contacts
        try:
            card = parse_card(data, "card")
        except DirectoryError as exc:
            draft = HomeCard(
                home_id,
                resident=data["resident"],
                address=data["address"],
                phone=data["phone"],
                access=data["access"],
                centre_account=data["centre_account"],
                contacts=tuple(
                    Contact(c["name"], c["relation"], c["phone"], c["email"]) for c in contacts
                ),
            )
            return card_page(request, session, draft, error=str(exc), code=422)
        directory.put(card, session.name, console.clock())
        _LOGGER.info("directory: %s updated the card of %s", session.name, home_id)
        return RedirectResponse(f"/homes/{home_id}/annuaire", status_code=303)
