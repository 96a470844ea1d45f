"""The notification shell: alerts in, the chain's due sends out through the channels.

`Notifier` holds the pure `Escalation` and does its I/O: it is told of alerts (`alert()`,
`acknowledged()`), and `tick(now)` claims the due sends, persists the chain's state
*before* sending (so a restarted hub never sends an attempt twice), sends each channel of
each step, reports failures back to the chain (retried later, to the failed channels only)
and logs every outcome. `run()` loops on `tick` and keeps every monitoring centre's link
test going. The store is anything with the three `ChainStore` methods: `FileChainStore`
here, the hub's SQLite/PostgreSQL stores later.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from cloud_bridge.notify import contact_id, mail, webpush
from cloud_bridge.notify.chain import RETRY_DELAYS_S, STOP_REASONS, ChainState, Escalation, Send
from cloud_bridge.notify.config import (
    CONTACTS,
    Channel,
    EmailChannel,
    NotifyConfig,
    SiaChannel,
    WebpushChannel,
)
from cloud_bridge.notify.errors import ChannelError
from cloud_bridge.notify.message import Notice
from cloud_bridge.notify.sia import SiaLink

_LOGGER = logging.getLogger(__name__)

MAX_SLEEP_S = 1.0  # `run` looks again at least this often (new alerts also wake it)
ALERT_FIELDS = ("id", "home_id", "type", "severity", "raised_at", "room")

Directory = Callable[[str], Mapping[str, Any]]  # home_id -> resident, address, contacts...
# (alert, recipient) -> the one-click acknowledgement URL for that recipient (a channel name)
AckLink = Callable[[Mapping[str, Any], str], str]


class ChainStore(Protocol):
    """Where the chain's state and the notification log are kept."""

    def load_chains(self) -> list[Mapping[str, Any]]:
        """Every record saved by `save_chain` (latest per alert)."""
        ...

    def save_chain(self, record: Mapping[str, Any]) -> None:
        """Keep `{"chain": ChainState.to_dict(), "alert": {...}}`, replacing the alert's."""
        ...

    def log_notification(self, entry: Mapping[str, Any]) -> None:
        """Append one channel outcome."""
        ...


class FileChainStore:
    """A JSON file, rewritten atomically (temp file, fsync, rename) at each change."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._data: dict[str, Any] = {"chains": {}, "log": []}
        if self.path.exists():
            self._data = json.loads(self.path.read_text(encoding="utf-8"))

    def load_chains(self) -> list[Mapping[str, Any]]:
        return list(self._data["chains"].values())

    def save_chain(self, record: Mapping[str, Any]) -> None:
        self._data["chains"][record["chain"]["alert_id"]] = dict(record)
        self._write()

    def log_notification(self, entry: Mapping[str, Any]) -> None:
        self._data["log"].append(dict(entry))
        self._write()

    def log(self) -> list[Mapping[str, Any]]:
        return list(self._data["log"])

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            json.dump(self._data, out, ensure_ascii=False)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(self.path)


class Notifier:
    """Alerts in; mails, pushes and Contact ID events out, as the chain says."""

    def __init__(
        self,
        config: NotifyConfig,
        store: ChainStore,
        *,
        directory: Directory | None = None,
        ack_link: AckLink | None = None,
        push: webpush.SubscriptionBook | None = None,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    ) -> None:
        self.config = config
        self.store = store
        self.directory = directory
        self.ack_link = ack_link
        self.push = push  # the subscriptions staff made in the console, beside the files'
        # a stopped chain needs nothing more: only the open ones are taken back
        records = [r for r in store.load_chains() if r["chain"].get("stopped") is None]
        self._alerts: dict[str, dict[str, Any]] = {
            r["chain"]["alert_id"]: dict(r["alert"]) for r in records
        }
        self.chain = Escalation(
            config.steps, [ChainState.from_dict(r["chain"]) for r in records], retry_delays_s
        )
        self._links: dict[tuple[str, str], SiaLink] = {}
        # alert -> the web push channels that reached a phone; told when the alert stops
        # (in memory: after a restart, the phones keep the alert's notification)
        self._pushed: dict[str, set[str]] = {}
        self._closing: list[tuple[str, str]] = []  # (alert_id, reason) to tell the phones
        self._wake: asyncio.Event | None = None  # made in `run`, on its event loop

    def alert(self, alert: Mapping[str, Any], now: float) -> None:
        """An alert payload (veille.alert/1) reached the hub: start, update or stop its chain."""
        alert_id, state = str(alert["id"]), alert["state"]
        if state == "raised":
            self._alerts[alert_id] = {k: alert.get(k) for k in ALERT_FIELDS}
            self.chain.raised(alert_id, alert["type"], alert["severity"], now)
        elif state in STOP_REASONS:
            if self.chain.stopped(alert_id, state, now) is None:
                return
            self._tell_phones(alert_id, state)
        else:
            return
        self._save(alert_id)
        if self._wake is not None:
            self._wake.set()

    def acknowledged(self, alert_id: str, now: float) -> None:
        """Someone took the alert (console or link): its chain stops."""
        self.stopped(alert_id, "acknowledged", now)

    def stopped(self, alert_id: str, reason: str, now: float) -> None:
        """Acknowledged or resolved at the hub: its chain stops."""
        if reason in STOP_REASONS and self.chain.stopped(alert_id, reason, now) is not None:
            self._save(alert_id)
            self._tell_phones(alert_id, reason)
            if self._wake is not None:
                self._wake.set()

    def _tell_phones(self, alert_id: str, reason: str) -> None:
        """The phones that were pushed the alert get, at the next tick, the push that
        replaces its notification (`webpush.closed_payload`)."""
        if alert_id in self._pushed:
            self._closing.append((alert_id, reason))

    async def _close_pushes(self, alert_id: str, reason: str) -> None:
        alert = self._alerts.get(alert_id, {})
        for name in sorted(self._pushed.pop(alert_id, ())):
            channel = self.config.channels[name]
            if not isinstance(channel, WebpushChannel):
                continue
            notice = self._notice(alert, Send(alert_id, 0, 0, ()), name)
            data = webpush.closed_payload(notice, reason)
            try:
                await webpush.send(channel, notice, book=self.push, data=data)
            except Exception as exc:  # only a courtesy to the phones: logged, never retried
                _LOGGER.warning(
                    "notify: alert %s: phones not told it is %s: %r", alert_id, reason, exc
                )

    def _save(self, alert_id: str) -> None:
        state = self.chain.state(alert_id)
        if state is not None:
            self.store.save_chain(
                {"chain": state.to_dict(), "alert": self._alerts.get(alert_id, {})}
            )

    async def tick(self, now: float) -> list[dict[str, Any]]:
        """Send what is due at `now`; the log entries of what was tried."""
        closing, self._closing = self._closing, []
        # beside the due sends, never before them (each catches its own errors)
        closes = asyncio.gather(*(self._close_pushes(a, r) for a, r in closing))
        sends = self.chain.due(now)
        for alert_id in dict.fromkeys(s.alert_id for s in sends):
            self._save(alert_id)  # claimed before sending: never twice
        outcomes = await asyncio.gather(*(self._send(send, now) for send in sends))
        entries: list[dict[str, Any]] = []
        for send, results in zip(sends, outcomes, strict=True):
            failed = [e["channel"] for e in results if not e["ok"] and not e.pop("final", False)]
            if failed:
                retry_at = self.chain.failed(send, now, failed)
                for entry in results:
                    entry["retry_at"] = retry_at if not entry["ok"] else None
                if retry_at is None:
                    _LOGGER.error(
                        "notify: alert %s step %d: gave up on %s",
                        send.alert_id,
                        send.step,
                        ", ".join(failed),
                    )
                self._save(send.alert_id)
            for entry in results:
                self.store.log_notification(entry)
            entries += results
        await closes
        return entries

    async def _send(self, send: Send, now: float) -> list[dict[str, Any]]:
        alert = self._alerts.get(send.alert_id, {})
        entries = []
        for name in send.channels:
            if name == CONTACTS:
                entries.append(await self._send_contacts(send, alert, now))
                continue
            channel = self.config.channels[name]
            notice = self._notice(alert, send, name)
            entry: dict[str, Any] = {
                "alert_id": send.alert_id,
                "step": send.step,
                "attempt": send.attempt,
                "retry": send.retry,
                "channel": name,
                "kind": channel.kind,
                "at": now,
                "ok": True,
                "error": None,
            }
            try:
                await self._dispatch(channel, notice, alert)
                if isinstance(channel, WebpushChannel):
                    self._pushed.setdefault(send.alert_id, set()).add(name)
            except ChannelError as exc:
                entry.update(ok=False, error=exc.reason)
                _LOGGER.warning(
                    "notify: alert %s step %d via %s failed: %s",
                    send.alert_id,
                    send.step,
                    name,
                    exc.reason,
                )
            except Exception as exc:  # a bad file, a bug: that send failed, the chain goes on
                entry.update(ok=False, error=repr(exc))
                _LOGGER.exception(
                    "notify: alert %s step %d via %s: unexpected error",
                    send.alert_id,
                    send.step,
                    name,
                )
            entries.append(entry)
        return entries

    async def _send_contacts(
        self, send: Send, alert: Mapping[str, Any], now: float
    ) -> dict[str, Any]:
        """A contacts step: one mail to the home's contacts of the step's relations that
        have an address, through the step's email channel (atomic: a retry mails them all
        again, never some twice and others not at all)."""
        step = self.config.steps[send.step]
        via = self.config.channels[step.contacts_via]
        home_id = str(alert.get("home_id") or "")
        card = self.directory(home_id) if self.directory and home_id else {}
        people = [c for c in card.get("contacts") or [] if c.get("relation") in step.contacts]
        emails = tuple(dict.fromkeys(str(c["email"]) for c in people if c.get("email")))
        entry: dict[str, Any] = {
            "alert_id": send.alert_id,
            "step": send.step,
            "attempt": send.attempt,
            "retry": send.retry,
            "channel": CONTACTS,
            "kind": "email",
            "at": now,
            "ok": True,
            "error": None,
        }
        if not emails or not isinstance(via, EmailChannel):
            relations = ", ".join(sorted(step.contacts))
            entry.update(ok=False, error=f"no {relations} contact with an email", final=True)
            _LOGGER.error(
                "notify: alert %s step %d: home %s has no %s contact with an email",
                send.alert_id,
                send.step,
                home_id or "?",
                relations,
            )
            return entry
        labels = dict.fromkeys(str(c.get("relation_fr") or c["relation"]) for c in people)
        notice = self._notice(alert, send, " / ".join(labels))
        try:
            await mail.send(dataclasses.replace(via, to=emails), notice)
        except ChannelError as exc:
            entry.update(ok=False, error=exc.reason)
            _LOGGER.warning(
                "notify: alert %s step %d to the contacts failed: %s",
                send.alert_id,
                send.step,
                exc.reason,
            )
        return entry

    def _notice(self, alert: Mapping[str, Any], send: Send, recipient: str) -> Notice:
        home_id = str(alert.get("home_id") or "")
        card = dict(self.directory(home_id)) if self.directory and home_id else {}
        return Notice(
            alert_id=send.alert_id,
            home_id=home_id,
            alert_type=str(alert.get("type") or ""),
            severity=str(alert.get("severity") or ""),
            raised_at=str(alert.get("raised_at") or ""),
            resident=card.get("resident", ""),
            address=card.get("address", ""),
            phone=card.get("phone", ""),
            access=card.get("access", ""),
            room=alert.get("room"),
            ack_url=self.ack_link(alert, recipient) if self.ack_link and alert else "",
            attempt=send.attempt,
        )

    def _link(self, channel: SiaChannel, account: str | None = None) -> SiaLink:
        key = (channel.name, (account or channel.account).upper())
        if key not in self._links:
            self._links[key] = SiaLink(channel, key[1])
        return self._links[key]

    async def _dispatch(self, channel: Channel, notice: Notice, alert: Mapping[str, Any]) -> None:
        if isinstance(channel, EmailChannel):
            await mail.send(channel, notice)
        elif isinstance(channel, SiaChannel):
            account = (
                self.directory(notice.home_id).get("centre_account")
                if self.directory and notice.home_id
                else None
            )
            link = self._link(channel, account or None)
            await link.send_event(contact_id.for_alert(notice.alert_type))
        elif isinstance(channel, WebpushChannel):
            await webpush.send(channel, notice, book=self.push)

    async def run(self, clock: Callable[[], float] = time.time) -> None:
        """Tick until cancelled; every centre's link test runs beside it."""
        supervision = [
            asyncio.create_task(self._link(c).supervise(), name=f"sia-supervision-{c.name}")
            for c in self.config.channels.values()
            if isinstance(c, SiaChannel) and c.supervision_s > 0
        ]
        wake = self._wake = asyncio.Event()
        try:
            while True:
                wake.clear()  # before the tick: an alert told during it wakes the next wait
                try:
                    await self.tick(clock())
                except Exception:  # the store down, a bug: logged, and the loop goes on
                    _LOGGER.exception("notify: tick failed; trying again")
                next_due = self.chain.next_due()
                delay = MAX_SLEEP_S if next_due is None else min(MAX_SLEEP_S, next_due - clock())
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), delay)
        finally:
            for task in supervision:
                task.cancel()
