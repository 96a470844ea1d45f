"""The care staff's console (`veille hub --http HOST:PORT`): inbox, acknowledge, resolve, homes.

Staff sign in with the password from `--staff-password-file` (lines `name:password`, or one
shared password and staff give their name), kept only as scrypt hashes in memory. The inbox
lists open alerts across homes, most severe first, with their evidence in plain words and
the home's recent context; acknowledging publishes `veille.ack/1` to the home's `ack` topic
(the home then shows "pris en charge" and sends the alert's new state back). Several
`veille hub` processes can serve the console on one store: the key that signs sessions is
random and kept in that store, with the open sessions (`cloud_bridge.console_sessions`), so
any process accepts a session and a logout ends it everywhere. A session remembers the
version of the password it was opened with; a new password ends it.

Every route needs a staff session except `/login`, `/health` and what makes the console an
installable web app (manifest, service worker, icons, offline page: `cloud_bridge.console_pwa`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from cloud_bridge.console_inbox import (
    CLOSED_SHOWN,
    CLOSED_STATES,
    FILTER_STATES,
    PENDING_S,
    Filters,
    LocalAction,
    LocalActions,
    MemoryActions,
    filter_words,
    inbox_order,
    parse_filters,
    shown_state,
)
from cloud_bridge.console_sessions import ConsoleState, open_console_state
from cloud_bridge.console_staff import (
    MaybeStaff,
    StaffSession,
    draft_of,
    forget_draft,
    keep_draft,
    staff,
    take_draft,
)
from cloud_bridge.contract import parse_iso_utc
from cloud_bridge.errors import VeilleError
from cloud_bridge.hub_store import HubStore
from cloud_bridge.pages import charts, i18n, web
from cloud_bridge.pages.auth import (
    SESSION_KEY_BYTES,
    LoginThrottle,
    MemorySessions,
    Session,
    SessionStore,
    Signer,
    client_key,
    safe_next,
)
from cloud_bridge.pages.http import HttpServer, parse_listen
from cloud_bridge.pages.web import lang_of, render, verify_csrf

_LOGGER = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
STAFF_SESSION_S = 12 * 3600.0
DAILY_SCHEMA = "veille.aggregate.daily/1"
WEEKS_DAYS = 8 * 7
CONTEXT_DAYS = 7
RECENT_SHOWN = 5  # the home's other alerts on an alert page
REFRESH_S = 5
SCRYPT_N = 2**14
NAME_MAX = 64
ACK_WORDS = {"acknowledged": "acknowledgement", "resolved": "resolution"}  # for error messages


class StaffPasswords:
    """Staff passwords as salted scrypt hashes: per name, or one shared by everyone."""

    def __init__(self, entries: dict[str, str], shared: str | None) -> None:
        self._users = {name: self._hash(pw) for name, pw in entries.items()}
        self._shared = self._hash(shared) if shared else None
        # kept only to make password versions (a scrypt each, made on first use)
        self._plain = dict(entries)
        self._plain_shared = shared
        self._versions: dict[str, str] = {}

    def version(self, name: str, key: bytes) -> str:
        """What changes when `name`'s password changes (salted with the console's key, slow
        to search like the hashes): stored with each session, never the password itself."""
        if name not in self._versions:
            password = self._plain.get(name, self._plain_shared)
            if password is None:
                return ""
            salt = hmac.new(key, f"staff-version\0{name}".encode(), hashlib.sha256).digest()
            self._versions[name] = hashlib.scrypt(
                password.encode(), salt=salt, n=SCRYPT_N, r=8, p=1, dklen=16
            ).hex()
        return self._versions[name]

    @staticmethod
    def _hash(password: str) -> tuple[bytes, bytes]:
        salt = os.urandom(16)
        return salt, hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=8, p=1)

    @staticmethod
    def _same(record: tuple[bytes, bytes], password: str) -> bool:
        salt, want = record
        got = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=8, p=1)
        return hmac.compare_digest(got, want)

    def personal(self, name: str) -> bool:
        """`name` signs in with a password of their own (not the shared one)."""
        return name in self._users

    def check(self, name: str, password: str) -> bool:
        if not name or not password:
            return False
        record = self._users.get(name)
        if record is not None:
            return self._same(record, password)
        return self._shared is not None and self._same(self._shared, password)

    @classmethod
    def load(cls, path: Path | None, password: str | None = None) -> StaffPasswords:
        """From `--staff-password-file` (`name:password` lines or one password) or a string."""
        entries: dict[str, str] = {}
        shared = password
        if path is not None:
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise VeilleError(f"cannot read the staff password file {path}: {exc}") from exc
            for raw in text.splitlines():
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                name, sep, pw = line.partition(":")
                if sep and name.strip() and pw:
                    entries[name.strip()] = pw
                else:
                    shared = line
        if not entries and not shared:
            raise VeilleError(
                "the care console refuses to start without staff credentials: "
                "give --staff-password-file (lines name:password, or one password)"
            )
        return cls(entries, shared)


class Receiver(Protocol):
    """What the console needs of the hub's receiver (`cloud_bridge.hub.HubReceiver`)."""

    store: HubStore

    def send_ack(self, alert_id: str, action: str, by: str = "", note: str = "") -> bool: ...

    def health(self) -> dict[str, Any]: ...


@dataclass
class Console:
    hub: Receiver
    passwords: StaffPasswords
    signer: Signer
    templates: Jinja2Templates
    key: bytes = b""
    sessions: SessionStore = field(default_factory=MemorySessions)
    tz: dt.tzinfo = field(default_factory=lambda: ZoneInfo("Europe/Paris"))
    clock: Callable[[], float] = time.time
    throttle: LoginThrottle = field(default_factory=lambda: LoginThrottle(time.monotonic))
    actions: LocalActions = field(default_factory=MemoryActions)
    directory: Any = None  # a directory.DirectoryStore, if the hub keeps one
    home_id: ClassVar[str] = ""  # the console serves many homes
    page_headers: ClassVar[Mapping[str, str]] = web.PAGE_HEADERS

    def credential(self, role: str, name: str) -> str:
        """The version of `name`'s staff password (sessions opened with another are refused)."""
        return self.passwords.version(name, self.key) if role == "staff" else ""


# --- views (pure) --------------------------------------------------------------------------
def _time(iso: str, tz: dt.tzinfo, lang: str, now: float) -> str:
    try:
        return i18n.clock_time(parse_iso_utc(iso), tz, now, lang)
    except ValueError:
        return iso


def room_words(room: str, lang: str) -> str:
    """A room as people say it: the home's own name, or a kind's key (`kitchen`) in words."""
    return i18n.room_name(room, room if room in i18n.ROOM_KIND_NAMES else None, lang)


def _age(iso: str, tz: dt.tzinfo, lang: str, now: float) -> str:
    try:
        return i18n.age(parse_iso_utc(iso), now, tz, lang)
    except ValueError:
        return iso


def alert_row(alert: dict[str, Any], tz: dt.tzinfo, lang: str, now: float) -> dict[str, Any]:
    evidence = {k: v for k, v in dict(alert.get("evidence") or {}).items() if k != "by"}
    return {
        "age": _age(alert["raised_at"], tz, lang, now),
        "pending": bool(alert.get("pending")),
        "closed": alert["state"] in CLOSED_STATES,
        "asks_outcome": alert["severity"] in ("critical", "high"),
        "id": alert["id"],
        "home_id": alert["home_id"],
        "type": alert["type"],
        "title": i18n.alert_name(alert["type"], lang),
        "severity": alert["severity"],
        "severity_words": i18n.severity_name(alert["severity"], lang),
        "state": alert["state"],
        "state_words": i18n.state_name(alert["state"], lang),
        "room": room_words(alert.get("room") or "", lang),
        "raised": _time(alert["raised_at"], tz, lang, now),
        "evidence": i18n.evidence_words(evidence, lang),
        "escalated": bool(alert.get("escalated")),
        "handled_by": alert.get("handled_by") or "",
        "note": alert.get("note") or "",
    }


def home_context(
    store: HubStore,
    home_id: str,
    statuses: dict[str, dict[str, Any]],
    lang: str,
    counts: Mapping[str, int] | None = None,
) -> str:
    """One line about the home: gateway online, last day's summary, recent alerts
    (`counts`: alerts per home, when the caller counted them for many homes at once)."""
    parts = []
    status = statuses.get(home_id)
    if status is not None:
        parts.append(i18n.t("online" if status.get("online") else "offline", lang))
    days = store.aggregates(home_id, DAILY_SCHEMA, limit=1)
    if days:
        last = days[-1]
        activity = charts.daily_activity(last)
        day = charts.short_day(str(last.get("date", "")))
        count = round(activity)
        text = i18n.tn("context_day", count, lang, day=day, n=i18n.number(count, lang, 0))
        if last.get("get_up"):
            text += i18n.t("context_get_up", lang, t=last["get_up"])
        parts.append(text)
    recent = counts.get(home_id, 0) if counts is not None else len(store.alerts(home_id=home_id))
    parts.append(i18n.tn("context_alerts", recent, lang, n=recent))
    return " · ".join(parts)


def resident_names(console: Console) -> dict[str, str]:
    """Home id -> the resident's name, for the homes the directory names."""
    if console.directory is None:
        return {}
    try:
        cards = console.directory.all()
    except ValueError:  # a stored card that no longer reads: the ids still show
        _LOGGER.exception("console: the home directory could not be read")
        return {}
    return {c.home_id: c.resident for c in cards if c.resident}


def with_actions(
    console: Console, alerts: list[dict[str, Any]], now: float
) -> list[dict[str, Any]]:
    """The alerts with the state to show: the staff's own action until the home confirms it
    (`console_inbox.shown_state`); an action the home confirmed is forgotten."""
    actions = console.actions.actions(now - PENDING_S)
    confirmed = []
    out = []
    for alert in alerts:
        action = actions.get(alert["id"])
        state, pending = shown_state(alert, action)
        if action is not None and not pending:
            confirmed.append(alert["id"])
        shown = {**alert, "state": state, "pending": pending}
        if pending and action is not None:
            shown["handled_by"] = action.by
        out.append(shown)
    if confirmed:
        console.actions.forget_actions(confirmed, now - PENDING_S)
    return out


def inbox_view(console: Console, lang: str, filters: Filters | None = None) -> dict[str, Any]:
    """The inbox: the alerts the filters keep, nobody's first (`inbox_order`), each with the
    resident's name, its age and the home's recent context; gateways offline; the homes."""
    filters = filters or Filters()
    store = console.hub.store
    now = console.clock()
    statuses = {s["home_id"]: s for s in store.statuses()}
    names = resident_names(console)
    listed = store.alerts(open_only=True, home_id=filters.home or None)
    if filters.state == "closed":
        closed = store.alerts(home_id=filters.home or None)
        listed += [a for a in closed if a["state"] in CLOSED_STATES][:CLOSED_SHOWN]
    shown = sorted(
        (a for a in with_actions(console, listed, now) if filters.keeps(a)), key=inbox_order
    )
    rows = []
    contexts: dict[str, str] = {}
    counts = Counter(a["home_id"] for a in store.alerts(home_id=filters.home or None))
    for alert in shown:
        row = alert_row(alert, console.tz, lang, now)
        home = alert["home_id"]
        if home not in contexts:
            contexts[home] = home_context(store, home, statuses, lang, counts)
        row["context"] = contexts[home]
        row["resident"] = names.get(home, "")
        rows.append(row)
    offline = [
        {
            "home_id": s["home_id"],
            "resident": names.get(s["home_id"], ""),
            "since": i18n.clock_time(float(s.get("received_at", now)), console.tz, now, lang),
        }
        for s in statuses.values()
        if not s.get("online")
    ]
    homes = sorted(set(statuses) | {a["home_id"] for a in listed} | set(names))
    return {
        "alerts": rows,
        "to_take": sum(1 for r in rows if r["state"] == "raised"),
        "offline": offline,
        "homes": homes,
        "home_names": [(h, names.get(h, "")) for h in homes],
        "types": [(k, i18n.alert_name(k, lang)) for k in i18n.ALERT_NAMES],
        "states": [(s, i18n.t(f"filter_{s}", lang)) for s in FILTER_STATES],
        "filters": filters,
        "filter_words": filter_words(filters, names, lang),
        "back": filters.path(),
    }


def alert_view(console: Console, alert: dict[str, Any], lang: str) -> dict[str, Any]:
    """One alert: its evidence one fact a line, the home's directory card, its recent
    context (gateway, last day, the home's other recent alerts)."""
    store = console.hub.store
    now = console.clock()
    (shown,) = with_actions(console, [alert], now)
    row = alert_row(shown, console.tz, lang, now)
    evidence = {k: v for k, v in dict(alert.get("evidence") or {}).items() if k != "by"}
    facts = [i18n.evidence_words({k: v}, lang) for k, v in evidence.items()]
    card: Mapping[str, Any] = {}
    if console.directory is not None:
        card = console.directory.notice(alert["home_id"])
    contacts = [
        {**c, "relation_words": i18n.relation_name(str(c.get("relation", "")), lang)}
        for c in card.get("contacts") or []
    ]
    statuses = {s["home_id"]: s for s in store.statuses()}
    others = [a for a in store.alerts(home_id=alert["home_id"]) if a["id"] != alert["id"]]
    return {
        "a": row,
        "facts": [f for f in facts if f],
        "card": card,
        "contacts": contacts,
        "resident": card.get("resident") or "",
        "context": home_context(store, alert["home_id"], statuses, lang),
        "recent": [alert_row(a, console.tz, lang, now) for a in others[:RECENT_SHOWN]],
        "has_directory": console.directory is not None,
    }


def home_view(console: Console, home_id: str, lang: str, big: bool = False) -> dict[str, Any]:
    store = console.hub.store
    now = console.clock()
    days = store.aggregates(home_id, DAILY_SCHEMA, limit=WEEKS_DAYS)
    plot = None
    if days:
        plot = Markup(  # noqa: S704 - built by charts with escaped labels
            charts.daily_bars(
                days,
                i18n.t("weeks_plot", lang),
                i18n.t("get_up_axis", lang),
                big=big,
                activity_label=i18n.t("activity_axis", lang),
            )
        )
    summaries = [
        {
            "date": charts.short_day(str(d.get("date", ""))),
            "activity": i18n.number(charts.daily_activity(d), lang, 0),
            "get_up": d.get("get_up") or "—",
            "bed_time": d.get("bed_time") or "—",
            "in_bed": d.get("time_in_bed_min"),
            "bathroom": d.get("night_bathroom_visits"),
            "out": d.get("time_out_min"),
        }
        for d in reversed(days[-14:])
    ]
    status = next((s for s in store.statuses() if s["home_id"] == home_id), None)
    history = [alert_row(a, console.tz, lang, now) for a in store.alerts(home_id=home_id)[:50]]
    return {
        "home": home_id,
        "plot": plot,
        "summaries": summaries,
        "status": status,
        "history": history,
    }


# --- app -------------------------------------------------------------------------------------
def create_console_app(
    hub: Receiver,
    *,
    staff_password_file: Path | None = None,
    staff_password: str | None = None,
    clock: Callable[[], float] | None = None,
    tz: dt.tzinfo | None = None,
    state: ConsoleState | None = None,
    links: Any = None,
    directory: Any = None,
    coordinators: frozenset[str] = frozenset(),
    outcomes: Any = None,
    push: Any = None,
) -> FastAPI:
    """The console app; refuses (VeilleError) to be built without staff credentials.

    `state` (a `console_sessions.ConsoleState`) holds the key and the sessions where several
    processes share them; without it they live in this process only. `links` (an
    `ack_links.LinkStore`) adds the one-click acknowledgement pages (`cloud_bridge.ack_page`);
    `directory` (a `directory.DirectoryStore`) adds the home directory's pages
    (`cloud_bridge.directory_page`), edited by the staff named in `coordinators`; `push` (a
    `console_pwa.Push`) lets staff subscribe their phones to the web push channel."""
    passwords = StaffPasswords.load(staff_password_file, staff_password)
    templates = Jinja2Templates(directory=[TEMPLATES, web.TEMPLATES_DIR])
    key = state.key() if state is not None else os.urandom(SESSION_KEY_BYTES)
    now = clock or time.time
    console = Console(
        hub,
        passwords,
        Signer(key),
        templates,
        key=key,
        sessions=state if state is not None else MemorySessions(),
        tz=tz or ZoneInfo("Europe/Paris"),
        clock=now,
        throttle=LoginThrottle(clock or time.monotonic),
        actions=state if state is not None else MemoryActions(),
        directory=directory,
    )
    app = FastAPI(
        title="Veille care console", version="1", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.console = console
    web.install(app, console, staff)
    from cloud_bridge.console_pwa import install_pwa  # manifest, service worker, push

    install_pwa(app, console, push)
    if links is not None:
        from cloud_bridge.ack_page import install_ack_links

        card = directory.notice if directory else None
        install_ack_links(app, console, links, card=card, row=alert_row)
    if directory is not None:
        from cloud_bridge.directory_page import install_directory

        install_directory(app, console, directory, coordinators)
    if outcomes is not None:  # closing asks for the outcome; the statistics page
        from cloud_bridge.outcome_page import install_outcomes

        install_outcomes(app, console, outcomes, card=directory.notice if directory else None)

    @app.get("/health", tags=["health"])
    def health() -> JSONResponse:
        """200 while the receiver is connected and its network thread runs, 503 otherwise."""
        state = hub.health()
        return JSONResponse(state, status_code=200 if state["ok"] else 503)

    @app.get("/login", response_model=None)
    def login_page(request: Request, next: str = "/", why: str = "") -> Response:
        context = {
            "next": safe_next(next),
            "error": "",
            "expired": why == "expired",
            "draft": draft_of(request) is not None,
        }
        return render(request, "console_login.html", context)

    @app.post("/login", response_model=None)
    def login(
        request: Request,
        name: Annotated[str, Form(min_length=1, max_length=NAME_MAX)],
        password: Annotated[str, Form(max_length=256)],
        next: Annotated[str, Form(max_length=512)] = "/",
    ) -> Response:
        """Check the staff password; set the session cookie or refuse."""
        form = {"next": safe_next(next)}
        refused = web.throttled_login(request, "console_login.html", form)
        if refused is not None:
            return refused
        name = name.strip()
        if not passwords.check(name, password):
            _LOGGER.warning("console: wrong staff password from %s", client_key(request))
            return web.wrong_login(request, "console_login.html", form)
        return web.signed_in(
            request,
            safe_next(next),
            role="staff",
            name=name,
            now=console.clock(),
            ttl_s=STAFF_SESSION_S,
        )

    links_shown = {"directory": directory is not None, "stats": outcomes is not None}

    @app.get("/", response_model=None)
    def inbox(request: Request, session: StaffSession) -> Response:
        """Alerts nobody has taken first, most severe first; filters; gateways offline."""
        view = inbox_view(console, lang_of(request), parse_filters(request.query_params))
        context = {"v": view, "refresh_s": REFRESH_S, "links": links_shown}
        return render(request, "inbox.html", context, session=session)

    @app.get("/inbox/partial", response_model=None)
    def inbox_partial(request: Request, session: StaffSession) -> Response:
        view = inbox_view(console, lang_of(request), parse_filters(request.query_params))
        return render(request, "inbox_body.html", {"v": view}, session=session)

    @app.get("/api/alerts")
    def alerts_json(request: Request, session: StaffSession) -> JSONResponse:
        """The inbox as JSON (with the same filters as the page)."""
        view = inbox_view(console, lang_of(request), parse_filters(request.query_params))
        return JSONResponse({k: view[k] for k in ("alerts", "offline", "homes")})

    @app.get("/alerts/{alert_id}", response_model=None)
    def alert_page(request: Request, session: StaffSession, alert_id: str) -> Response:
        """One alert: evidence in words, the home's card and recent context, the actions;
        the note kept through a new sign-in, if there is one."""
        alert = console.hub.store.alert(alert_id)
        if alert is None:
            raise HTTPException(404, "no such alert")
        view = alert_view(console, alert, lang_of(request))
        draft = take_draft(request, alert_id)
        context = {"v": view, "draft": draft, "back": f"/alerts/{alert_id}", "links": links_shown}
        page = render(request, "alert.html", context, session=session)
        return forget_draft(page) if draft is not None else page

    def answer(
        request: Request,
        session: Session,
        alert_id: str,
        csrf: str,
        *,
        action: str,
        note: str = "",
        back: str = "/",
    ) -> Response:
        """Send the staff's `veille.ack/1` for an alert to its home, remember it until the
        home confirms (the next page shows it at once), then back where the action was."""
        verify_csrf(request, csrf)
        if console.hub.store.alert(alert_id) is None:
            raise HTTPException(404, "no such alert")
        if not console.hub.send_ack(alert_id, action, by=session.name, note=note):
            raise HTTPException(503, f"the {ACK_WORDS[action]} could not be sent to the home")
        console.actions.record_action(LocalAction(alert_id, action, session.name, console.clock()))
        _LOGGER.info("console: %s %s alert %s", session.name, action, alert_id)
        return RedirectResponse(safe_next(back), status_code=303)

    @app.get("/alerts/{alert_id}/ack", response_model=None)
    @app.get("/alerts/{alert_id}/resolve", response_model=None)
    def action_get(request: Request, session: StaffSession, alert_id: str) -> Response:
        """An action's address opened as a page (a bookmark, an old sign-in): the alert."""
        return RedirectResponse(f"/alerts/{quote(alert_id, safe='')}", status_code=303)

    @app.post("/alerts/{alert_id}/ack", response_model=None)
    def acknowledge(
        request: Request,
        session: MaybeStaff,
        alert_id: str,
        *,
        csrf: Annotated[str, Form(max_length=128)] = "",
        back: Annotated[str, Form(max_length=512)] = "/",
    ) -> Response:
        """Take the alert in charge: `veille.ack/1` goes to the home."""
        if session is None:
            return keep_draft(request, alert_id, "acknowledged", csrf=csrf)
        return answer(request, session, alert_id, csrf, action="acknowledged", back=back)

    @app.post("/alerts/{alert_id}/resolve", response_model=None)
    def resolve(
        request: Request,
        session: MaybeStaff,
        alert_id: str,
        *,
        csrf: Annotated[str, Form(max_length=128)] = "",
        note: Annotated[str, Form(max_length=1000)] = "",
        back: Annotated[str, Form(max_length=512)] = "/",
    ) -> Response:
        """Close the alert with a note (a critical or high one: first its outcome)."""
        if session is None:
            return keep_draft(request, alert_id, "resolved", csrf=csrf, note=note.strip())
        alert = console.hub.store.alert(alert_id) if outcomes is not None else None
        if alert is not None and alert["severity"] in ("critical", "high"):
            verify_csrf(request, csrf)
            form: Response = app.state.close_form(request, session, alert, note=note.strip())
            return form
        return answer(
            request, session, alert_id, csrf, action="resolved", note=note.strip(), back=back
        )

    @app.get("/homes/{home_id}", response_model=None)
    def home(request: Request, session: StaffSession, home_id: str) -> Response:
        """One home: daily summaries over weeks, status, alert history."""
        view = home_view(console, home_id, lang_of(request), "big" in web.prefs_of(request))
        return render(request, "home.html", {"v": view}, session=session)

    return app


@dataclass
class ConsoleServer:
    url: str
    server: HttpServer
    state: ConsoleState | None = None  # where its key and sessions are, if it opened one
    links: Any = None  # the ack_links.LinkStore it opened, if any
    outcomes: Any = None  # the outcomes.OutcomeStore it opened, if any
    push: Any = None  # the push_subscriptions.PushSubscriptions it opened, if any

    async def stop(self) -> None:
        await self.server.stop()
        if self.push is not None:
            self.push.close()
        if self.state is not None:
            self.state.close()
        if self.links is not None:
            self.links.close()
        if self.outcomes is not None:
            self.outcomes.close()


async def start_console(
    hub: Receiver,
    listen: str,
    staff_password_file: Path | None,
    *,
    staff_password: str | None = None,
    store: str | None = None,
    directory: Any = None,
    coordinators: frozenset[str] = frozenset(),
    push_key: str = "",
) -> ConsoleServer:
    """Start the console on `listen` in this event loop; returns its URL and a stop handle.

    `store`: the hub's store spec, where the console keeps its key and sessions (None: this
    process only, as in the demo). `push_key`: the web push channel's VAPID public key, if
    the hub has one: staff phones subscribe with it, kept in `store`."""
    from cloud_bridge.ack_links import open_link_store
    from cloud_bridge.outcomes import open_outcomes

    state = open_console_state(store) if store is not None else None
    links = open_link_store(store) if store is not None else None
    outcomes = open_outcomes(store) if store is not None else None
    push = None
    if store is not None and push_key:
        from cloud_bridge.console_pwa import Push
        from cloud_bridge.push_subscriptions import open_push_subscriptions

        push = Push(open_push_subscriptions(store), push_key)
    app = create_console_app(
        hub,
        staff_password_file=staff_password_file,
        staff_password=staff_password,
        state=state,
        links=links,
        directory=directory,
        coordinators=coordinators,
        outcomes=outcomes,
        push=push,
    )
    try:
        server = HttpServer(app, *parse_listen(listen))
    except ValueError as exc:
        raise VeilleError(str(exc)) from exc
    url = await server.start()
    return ConsoleServer(url, server, state, links, outcomes, push.subscriptions if push else None)


async def serve_console(
    hub: Receiver,
    listen: str,
    staff_password_file: Path | None,
    *,
    staff_password: str | None = None,
) -> str:
    """Run the console until cancelled; prints its URL once it listens."""
    console = await start_console(hub, listen, staff_password_file, staff_password=staff_password)
    print(f"Care console: {console.url}/", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await console.stop()
    return console.url
