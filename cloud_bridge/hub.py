"""The reference hub receiver: shared subscription in, deduplicated store, receipts and acks out.

Several `veille hub` processes share the homes' traffic through the MQTT shared
subscription `$share/hub/...`: each message goes to one of them, and the store dedupes by
alert id whatever the broker redelivers. Statuses (retained, with the gateways' Last Will)
are read by every receiver.

Delivery is end to end: once an alert message is durably in the store, the receiver
publishes `veille.receipt/1` on the home's `receipt` topic; the gateway sends the alert
again until that receipt comes. The receiver keeps a persistent session (clean start off,
`SESSION_EXPIRY_S`), so the broker queues alerts for it while it restarts.

No input stops the receiver: every message is checked whole (`contract.validate_message`)
within a per-home budget of messages and bytes (`HomeBudget`) before anything is stored; a
bad one is logged, counted and dropped; the network thread never sees an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from cloud_bridge.broker import BrokerUrl, Credentials, MqttLink, parse_broker_url
from cloud_bridge.contract import (
    ContractError,
    ack_topic,
    encode,
    parse_topic,
    receipt_topic,
    validate_message,
)
from cloud_bridge.hub_store import HubStore, open_store

_LOGGER = logging.getLogger(__name__)

SHARE_GROUP = "hub"
SUBSCRIPTIONS = (
    (f"$share/{SHARE_GROUP}/veille/v1/+/alert", 1),
    (f"$share/{SHARE_GROUP}/veille/v1/+/aggregate/+", 1),
    ("veille/v1/+/status", 1),
)
ESCALATION_CHECK_S = 5.0
SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker queues for a receiver away this long
# Per-home budget at the receiver: a burst of BUDGET_BURST messages (a week's backlog after
# an outage is ~200), then BUDGET_RATE_PER_S; bytes alike. Over budget, a message is dropped
# before it is parsed (an alert has no receipt, so its gateway sends it again later).
BUDGET_BURST = 2000
BUDGET_RATE_PER_S = 20.0
BUDGET_BURST_BYTES = 4 * 1024 * 1024
BUDGET_BYTES_PER_S = 64 * 1024
LOG_EVERY_S = 60.0
LOG_BURST = 20  # log lines per home and LOG_EVERY_S about bad messages; the rest are counted


def iso_now() -> str:
    from edge.events import iso_utc

    return iso_utc(time.time())


class HomeBudget:
    """Token buckets of messages and bytes per home (pure: time is an argument)."""

    def __init__(
        self,
        burst: float = BUDGET_BURST,
        rate_per_s: float = BUDGET_RATE_PER_S,
        burst_bytes: float = BUDGET_BURST_BYTES,
        bytes_per_s: float = BUDGET_BYTES_PER_S,
    ) -> None:
        self.burst, self.rate = burst, rate_per_s
        self.burst_bytes, self.bytes_rate = burst_bytes, bytes_per_s
        self._homes: dict[str, list[float]] = {}  # home -> [messages, bytes, last time]

    def take(self, home: str, size: int, now: float) -> bool:
        """Spend one message of `size` bytes for `home`; False if over its budget."""
        bucket = self._homes.get(home)
        if bucket is None:
            bucket = self._homes[home] = [self.burst, self.burst_bytes, now]
        elapsed = max(0.0, now - bucket[2])
        bucket[0] = min(self.burst, bucket[0] + elapsed * self.rate)
        bucket[1] = min(self.burst_bytes, bucket[1] + elapsed * self.bytes_rate)
        bucket[2] = now
        if bucket[0] < 1 or bucket[1] < size:
            return False
        bucket[0] -= 1
        bucket[1] -= size
        return True


class HubReceiver:
    """Receives alerts, aggregates and statuses; stores them; publishes receipts and acks."""

    def __init__(
        self,
        url: BrokerUrl,
        store: HubStore,
        *,
        credentials: Credentials | None = None,
        client_id: str | None = None,
        on_alert: Callable[[Mapping[str, Any], bool], None] | None = None,
        escalate_after_s: float = 600.0,
        budget: HomeBudget | None = None,
        session_expiry_s: int = SESSION_EXPIRY_S,
        on_ack: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.on_alert = on_alert
        self.on_ack = on_ack  # (alert_id, action) after an ack is sent: stops its chain
        self.escalate_after_s = escalate_after_s
        self.budget = budget or HomeBudget()
        self.received = 0
        self.rejected = 0  # not following the contract
        self.limited = 0  # over a home's budget
        self.failed = 0  # valid, but the store or the receipt failed (sent again by the home)
        self.receipts = 0
        self._logged: dict[str, list[float]] = {}  # home -> [window start, lines]
        self._bad_rows: set[str] = set()
        self.link = MqttLink(
            url,
            client_id or default_client_id(),
            credentials=credentials,
            clean_start=False,
            session_expiry_s=session_expiry_s,
            on_connect=self._connected,
            on_message=self._message,
            name="hub",
        )

    def start(self) -> None:
        self.link.start()

    def stop(self) -> None:
        self.link.stop()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        return self.link.connected.wait(timeout_s)

    def health(self) -> dict[str, Any]:
        """`ok` only while the link is up and its network thread runs; the counters."""
        thread = self.link.thread
        running = bool(thread is not None and thread.is_alive())
        connected = self.link.connected.is_set()
        return {
            "ok": running and connected,
            "connected": connected,
            "thread": running,
            "received": self.received,
            "rejected": self.rejected,
            "limited": self.limited,
            "failed": self.failed,
            "receipts": self.receipts,
        }

    def _log_once(self, home: str, kind: str, text: str, *args: Any) -> None:
        """One warning per bad message, up to LOG_BURST per home a minute (then one line
        saying the rest are only counted), so a flood cannot fill the log."""
        now = time.monotonic()
        window = self._logged.setdefault(home, [now, 0])
        if now - window[0] >= LOG_EVERY_S:
            window[0], window[1] = now, 0
        window[1] += 1
        if window[1] <= LOG_BURST:
            _LOGGER.warning(text, *args)
        elif window[1] == LOG_BURST + 1:
            _LOGGER.warning(
                "hub: more than %d bad messages from %s within %.0f s (%s): counted, not logged",
                LOG_BURST,
                home,
                LOG_EVERY_S,
                kind,
            )

    def _connected(self) -> None:
        subs = list(SUBSCRIPTIONS)
        if self.link.url.version != 5:
            # MQTT 3.1.1 brokers (the demo's embedded one) have no shared subscriptions
            subs = [(t.removeprefix(f"$share/{SHARE_GROUP}/"), q) for t, q in subs]
        self.link.client.subscribe(subs)

    def _message(self, msg: mqtt.MQTTMessage) -> None:
        """Runs on the network thread; never raises (an exception would stop the thread).

        The store write happens before paho's PUBACK, and the receipt after the write.
        """
        try:
            self._handle(msg.topic, bytes(msg.payload), bool(msg.retain))
        except Exception as exc:  # the receiver must outlive any message
            self.failed += 1
            self._log_once("?", "error", "hub: message on %r not handled: %r", msg.topic, exc)

    def _handle(self, topic_name: str, raw: bytes, retained: bool) -> None:
        try:
            home, leaf = parse_topic(topic_name)
        except ContractError as exc:
            self.rejected += 1
            self._log_once("?", "topic", "hub: rejected message on %r: %s", topic_name, exc)
            return
        if not self.budget.take(home, len(raw), time.monotonic()):
            self.limited += 1
            self._log_once(home, "budget", "hub: home %s is over its message budget", home)
            return
        if retained and leaf != "status":
            # only status is retained by the contract; a retained alert would replay forever
            self.rejected += 1
            self._log_once(home, "retain", "hub: retained message on %s dropped", topic_name)
            return
        try:
            leaf, payload = validate_message(topic_name, raw)
        except ContractError as exc:
            self.rejected += 1
            self._log_once(home, "contract", "hub: rejected message on %s: %s", topic_name, exc)
            return
        now = time.time()
        if leaf == "alert":
            try:
                new = self.store.record_alert(payload, now)
            except Exception as exc:  # no receipt: the gateway sends it again
                self.failed += 1
                self._log_once(home, "store", "hub: alert of %s not stored: %r", home, exc)
                return
            self.received += 1
            self._send_receipt(payload)
            if self.on_alert is not None:
                self.on_alert(payload, new)
            return
        self.received += 1
        if leaf.startswith("aggregate/"):
            self.store.record_aggregate(payload)
        elif leaf == "status":
            self.store.record_status(payload, now)

    def _send_receipt(self, alert: Mapping[str, Any]) -> None:
        """`veille.receipt/1` for one stored alert message (QoS 1, to its home only)."""
        receipt = {
            "schema": "veille.receipt/1",
            "home_id": alert["home_id"],
            "ids": [alert["id"]],
            "at": iso_now(),
            "alerts": [{"id": alert["id"], "state": alert["state"], "severity": alert["severity"]}],
        }
        info = self.link.client.publish(receipt_topic(alert["home_id"]), encode(receipt), qos=1)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.receipts += 1
        else:
            self.failed += 1
            self._log_once(alert["home_id"], "receipt", "hub: receipt not sent (rc=%s)", info.rc)

    def send_ack(self, alert_id: str, action: str, by: str = "", note: str = "") -> bool:
        """Publish `veille.ack/1` to the alert's home; False if the alert is unknown."""
        alert = self.store.alert(alert_id)
        if alert is None:
            return False
        payload = {
            "schema": "veille.ack/1",
            "home_id": alert["home_id"],
            "alert_id": alert_id,
            "action": action,
            "at": iso_now(),
            "by": by,
            "note": note,
        }
        self.store.mark(alert_id, handled_by=by, **({"note": note} if note else {}))
        if self.on_ack is not None:
            self.on_ack(alert_id, action)
        info = self.link.client.publish(ack_topic(alert["home_id"]), encode(payload), qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def escalate_due(self, now: float) -> list[dict[str, Any]]:
        """Alerts raised and not acknowledged within the delay: mark them escalated."""
        from edge.events import parse_iso_utc

        due = []
        for alert in self.store.alerts(open_only=True):
            if alert["state"] != "raised" or alert["escalated"]:
                continue
            try:
                raised = parse_iso_utc(str(alert["raised_at"]))
            except (ValueError, OverflowError):
                # a row stored before the contract checked dates: never a reason to stop
                if alert["id"] not in self._bad_rows:
                    self._bad_rows.add(alert["id"])
                    _LOGGER.error(
                        "hub: stored alert %s has an unreadable raised_at %r; not escalated",
                        alert["id"],
                        alert["raised_at"],
                    )
                continue
            if now - raised >= self.escalate_after_s:
                self.store.mark(alert["id"], escalated=1)
                _LOGGER.warning(
                    "hub: alert %s (%s, %s) not acknowledged in %.0f s: escalated",
                    alert["id"],
                    alert["type"],
                    alert["home_id"],
                    self.escalate_after_s,
                )
                due.append(alert)
        return due


def default_client_id() -> str:
    """`veille-hub-<host>`: stable across restarts, so the broker keeps the session.

    Two receivers on one machine need their own `--client-id` (over TLS the broker uses the
    certificate's name instead: `use_username_as_clientid`)."""
    return f"veille-hub-{socket.gethostname()}"[:64]


def _print_alert(payload: Mapping[str, Any], new: bool) -> None:
    if new:
        print(
            f"[hub] {payload['at']} {payload['home_id']} {payload['type']} "
            f"{payload['severity']} {payload['state']} id={payload['id']}",
            flush=True,
        )


def main(args: Any) -> int:
    """`veille hub --broker URL [--http HOST:PORT]`."""
    from edge.errors import VeilleError

    notify = None
    if getattr(args, "notify", None):
        from cloud_bridge.notify.config import NotifyConfigError, load_notify_config

        try:
            notify = load_notify_config(args.notify)
        except NotifyConfigError as exc:
            raise VeilleError(str(exc)) from exc
    try:
        url = parse_broker_url(args.broker)
        store = open_store(args.store)
    except ValueError as exc:
        raise VeilleError(str(exc)) from exc
    creds = Credentials(
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        username=args.username,
        password_file=args.password_file,
    )
    hub = HubReceiver(
        url,
        store,
        credentials=creds,
        client_id=args.client_id,
        on_alert=_print_alert,
        escalate_after_s=args.escalate_after,
    )
    cards = None
    if getattr(args, "directory", None):
        from cloud_bridge.directory import load_directory

        cards = load_directory(args.directory)  # checked before anything starts
    coordinators = frozenset(getattr(args, "coordinator", None) or ())
    return asyncio.run(
        _serve(
            hub,
            args.http,
            args.staff_password_file,
            args.store,
            notify,
            cards=cards,
            coordinators=coordinators,
        )
    )


def _start_notifier(
    hub: HubReceiver, config: Any, store: str | None = None, directory: Any = None
) -> asyncio.Task[None]:
    """Alerts and acks handed from paho's thread (and the console's) to the notifier's loop.

    With `[hub] public_url` every notification carries a signed acknowledgement link
    (`cloud_bridge.ack_links`), made with the key kept in the store `store`."""
    from cloud_bridge.notify.notifier import Notifier

    ack_link = None
    if config.public_url:
        from cloud_bridge.ack_links import LinkSigner, link_maker, open_link_store
        from cloud_bridge.console_sessions import DEFAULT_STORE

        links = open_link_store(store or DEFAULT_STORE)
        try:
            signer = LinkSigner(links.key(), config.public_url, config.link_ttl_s)
        finally:
            links.close()
        ack_link = link_maker(signer, time.time)
    # the store keeps the chains and the log
    notifier = Notifier(config, hub.store, directory=directory, ack_link=ack_link)
    loop = asyncio.get_running_loop()
    printer = hub.on_alert

    def on_alert(payload: Mapping[str, Any], new: bool) -> None:
        if printer is not None:
            printer(payload, new)
        loop.call_soon_threadsafe(notifier.alert, dict(payload), time.time())

    def on_ack(alert_id: str, action: str) -> None:
        loop.call_soon_threadsafe(notifier.stopped, alert_id, action, time.time())

    hub.on_alert, hub.on_ack = on_alert, on_ack
    return asyncio.create_task(notifier.run(), name="notifier")


async def _serve(
    hub: HubReceiver,
    http: str | None,
    staff_password_file: Path | None,
    store: str | None,
    notify: Any = None,
    *,
    cards: Any = None,
    coordinators: frozenset[str] = frozenset(),
) -> int:
    from cloud_bridge.directory import open_directory

    directory = open_directory(store)  # the home directory (never sent to a gateway)
    for card in cards or ():
        directory.put(card, "directory.toml", time.time())
    if cards:
        _LOGGER.info("hub: home directory loaded (%d homes)", len(cards))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    notifier = _start_notifier(hub, notify, store, directory.notice) if notify is not None else None
    hub.start()
    console = None
    if http:
        from cloud_bridge.console import start_console
        from cloud_bridge.console_sessions import DEFAULT_STORE

        try:
            console = await start_console(
                hub,
                http,
                staff_password_file,
                store=store or DEFAULT_STORE,
                directory=directory,
                coordinators=coordinators,
            )
        except BaseException:
            hub.stop()
            raise
        print(f"Care console: {console.url}/", flush=True)
    try:
        while not stop.is_set():
            hub.escalate_due(time.time())
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(ESCALATION_CHECK_S):
                    await stop.wait()
    finally:
        if console is not None:
            await console.stop()
        hub.stop()
        if notifier is not None:
            notifier.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await notifier
        hub.store.close()
        directory.close()
    return 0
