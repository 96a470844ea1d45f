"""The page a notification's link opens: one button, and only its POST acknowledges.

`GET /lien/{token}` never acts (mail scanners and link previews follow links): it checks the
token (signature, expiry, not used yet) and shows the alert with one button.
`POST /lien/{token}` uses the token (once: `LinkStore.use` is atomic), then acknowledges
exactly as the console does (`HubReceiver.send_ack`: the chain stops and `veille.ack/1`
goes down to the home), and shows the home's card and the alert's evidence in plain words.
No staff session is needed: the signed token is the authority, for one alert, once. The page
speaks the visitor's language as the console's pages do (`?lang=`, the cookie, then the
phone's Accept-Language; French by default).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from cloud_bridge.ack_links import PATH, LinkRefused, LinkSigner, LinkStore
from cloud_bridge.pages import i18n
from cloud_bridge.pages.web import lang_of, render

_LOGGER = logging.getLogger(__name__)

TAKEN_STATES = frozenset({"acknowledged", "resolved", "cancelled"})
CLOSED_STATES = frozenset({"resolved", "cancelled"})
# a link page must not leak its token to another site, nor be kept by a shared browser
LINK_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

Card = Callable[[str], Mapping[str, Any]]  # home_id -> the directory card ({} if none)


def install_ack_links(
    app: FastAPI,
    console: Any,
    links: LinkStore,
    *,
    card: Card | None = None,
    row: Callable[..., dict[str, Any]],
) -> LinkSigner:
    """Add the link routes to the console app; the signer checks with the store's key.
    `row` is the console's `alert_row` (the alert in plain words)."""
    signer = LinkSigner(links.key())

    def page(
        request: Request,
        *,
        alert: Mapping[str, Any] | None,
        status: str,
        message: str = "",  # an i18n key
        code: int = 200,
        token: str = "",
        reveal: bool = False,
    ) -> Response:
        lang = lang_of(request)
        words = None
        home: Mapping[str, Any] = {}
        contacts: list[dict[str, Any]] = []
        if alert is not None:
            words = row(dict(alert), console.tz, lang, console.clock())
            home = card(str(alert["home_id"])) if card is not None else {}
            contacts = [
                {**c, "relation_words": i18n.relation_name(str(c.get("relation", "")), lang)}
                for c in home.get("contacts") or []
            ]
        response = render(
            request,
            "ack_link.html",
            {
                "status": status,
                "message": i18n.t(message, lang) if message else "",
                "a": words,
                "card": home,
                "contacts": contacts,
                "action": f"{PATH}/{token}" if token else "",
                "reveal": reveal,  # the card (access notes) only after the button
            },
            status_code=code,
        )
        response.headers.update(LINK_HEADERS)
        return response

    def taken(alert: Mapping[str, Any]) -> bool:
        return alert["state"] in TAKEN_STATES or bool(alert.get("handled_by"))

    def claim_of(request: Request, token: str) -> tuple[Any, Response | None]:
        try:
            claim = signer.check(token, console.clock())
        except LinkRefused as exc:
            _LOGGER.warning("ack link refused from %s: %s", request.client, exc)
            message = f"link_{exc.reason}"
            return None, page(request, alert=None, status="refused", message=message, code=403)
        alert = console.hub.store.alert(claim.alert_id)
        if alert is None:
            message = "link_unknown"
            return None, page(request, alert=None, status="refused", message=message, code=404)
        return (claim, alert), None

    @app.get(PATH + "/{token}", response_model=None)
    def link_page(request: Request, token: str) -> Response:
        """The alert and one button; nothing is done."""
        found, refused = claim_of(request, token)
        if refused is not None:
            return refused
        claim, alert = found
        if links.used(claim):
            message = "link_used"
            return page(request, alert=alert, status="used", message=message, code=410)
        if taken(alert):
            status = "closed" if alert["state"] in CLOSED_STATES else "taken"
            return page(request, alert=alert, status=status)
        return page(request, alert=alert, status="ask", token=token)

    @app.post(PATH + "/{token}", response_model=None)
    def link_ack(request: Request, token: str) -> Response:
        """Use the token once and acknowledge, as the console does."""
        found, refused = claim_of(request, token)
        if refused is not None:
            return refused
        claim, alert = found
        if not links.use(claim, console.clock()):
            message = "link_used"
            return page(request, alert=alert, status="used", message=message, code=410)
        if taken(alert):
            status = "closed" if alert["state"] in CLOSED_STATES else "taken"
            return page(request, alert=alert, status=status, reveal=True)
        by = f"{claim.recipient} (lien)"
        if not console.hub.send_ack(claim.alert_id, "acknowledged", by=by):
            message = "link_failed"
            return page(request, alert=alert, status="failed", message=message, code=503)
        _LOGGER.info("ack link: %s acknowledged alert %s", by, claim.alert_id)
        now_alert = console.hub.store.alert(claim.alert_id)
        return page(request, alert=now_alert, status="done", reveal=True)

    return signer
