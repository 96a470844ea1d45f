"""The reference hub receiver: shared subscription in, deduplicated store, receipts and acks out.

Several `veille hub` processes share the homes' traffic through the MQTT shared
subscription `$share/hub/...`: each message goes to one of them, and the store dedupes by
alert id whatever the broker redelivers. Statuses (retained, with the gateways' Last Will)
are read by every receiver.

Delivery is end to end: once an alert message is durably in the store, the receiver
publishes `veille.receipt/1` on the home's `receipt` topic; the gateway sends the alert
again until that receipt comes. The receiver keeps a persistent session (clean start off,
`SESSION_EXPIRY_S`), so the broker queues alerts for it while it restarts.

Group commit: paho's callback (the network thread) only checks a message and puts it on a
bounded queue; one store worker thread takes whatever is queued (`BATCH_MAX`), writes it
in ONE transaction (`HubStore.record_batch`, statuses coalesced per home), and only after
the commit sends the PUBACKs (paho's manual acks) and the receipts (`_stored`). A receiver
killed at any moment loses nothing: what it had not committed was not acknowledged, so the
broker delivers it again on the persistent session. A full queue blocks the network
thread, which holds back the PUBACKs and so slows the broker down: the back-pressure.

No input stops the receiver: every message is checked whole (`contract.validate_message`)
within a per-home budget of messages and bytes (`HomeBudget`) before anything is stored; a
bad one is logged, counted and dropped; the network thread never sees an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_bridge.broker import (
    BrokerUrl,
    Credentials,
    MqttLink,
    mqtt,  # paho's names, through the one MQTT runtime
    parse_broker_url,
)
from cloud_bridge.contract import (
    MAX_RECEIPT_IDS,
    ContractError,
    ack_topic,
    encode,
    iso_utc,
    parse_iso_utc,
    parse_topic,
    receipt_topic,
    validate_message,
)
from cloud_bridge.errors import VeilleError
from cloud_bridge.hub_store import Batch, HubStore
from cloud_bridge.stores import open_store

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
QUEUE_MAX = 2000  # checked messages waiting for the store worker; full, the network thread waits
BATCH_MAX = 500  # messages per transaction (the broker's max_inflight_messages caps it lower)
BATCH_LINGER_S = 0.002  # once a message is there, wait this long for more to share its commit
POLL_S = 0.2  # how often a waiting thread looks at the stop flag
STOP_TIMEOUT_S = 10.0  # a clean stop waits this long for the queue to be stored
# The store does not answer (PostgreSQL down, failing over): the batch is held, not
# acknowledged, and tried again 0.5 s later, doubling up to 10 s, until the store is back;
# meanwhile the full queue holds the network thread and the broker keeps the rest.
STORE_RETRY_S = 0.5
STORE_RETRY_MAX_S = 10.0
assert BATCH_MAX <= MAX_RECEIPT_IDS  # one receipt per home and batch holds every id


def iso_now() -> str:
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


@dataclass(frozen=True, slots=True)
class Inbound:
    """A checked message waiting for the store, and how to acknowledge it once stored."""

    leaf: str  # "alert", "aggregate/hourly", "status", ...
    payload: Mapping[str, Any]
    mid: int = 0
    qos: int = 0
    session: int = 0  # the link's connection when it came: a PUBACK goes only on that one


def make_batch(items: Sequence[Inbound], received_at: float) -> Batch:
    """The store's batch for these messages: alerts in order, aggregates, and only the last
    status of each home (a connect storm's statuses, and any repeat, cost one row each)."""
    statuses = {i.payload["home_id"]: i.payload for i in items if i.leaf == "status"}
    return Batch(
        alerts=[i.payload for i in items if i.leaf == "alert"],
        aggregates=[i.payload for i in items if i.leaf.startswith("aggregate/")],
        statuses=list(statuses.values()),
        received_at=received_at,
        size=len(items),
    )


def receipts_for(alerts: Sequence[Mapping[str, Any]], at: str) -> list[dict[str, Any]]:
    """One `veille.receipt/1` per home for the alert messages stored in one commit."""
    by_home: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        receipt = by_home.setdefault(
            alert["home_id"],
            {"schema": "veille.receipt/1", "home_id": alert["home_id"], "ids": [], "at": at,
             "alerts": []},
        )  # fmt: skip
        entry = {"id": alert["id"], "state": alert["state"], "severity": alert["severity"]}
        if alert["id"] not in receipt["ids"]:
            receipt["ids"].append(alert["id"])
        if entry not in receipt["alerts"]:
            receipt["alerts"].append(entry)
    return list(by_home.values())


def take_batch(
    inbox: queue.Queue[Inbound], max_n: int, linger_s: float, wait_s: float
) -> list[Inbound]:
    """Up to `max_n` queued messages: wait up to `wait_s` for the first, then take what
    came within `linger_s` (empty if nothing came).

    The linger is one sleep, then the queue is emptied without waiting: waiting on the queue
    for each next message would wake this thread once per message (a futex and a turn of
    the GIL each), which under load costs more than the sleep."""
    try:
        items = [inbox.get(timeout=wait_s)]
    except queue.Empty:
        return []
    if linger_s > 0 and inbox.qsize() < max_n - 1:
        time.sleep(linger_s)
    while len(items) < max_n:
        try:
            items.append(inbox.get_nowait())
        except queue.Empty:
            break
    return items


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
        self.batches = 0  # transactions committed
        self.store_up = True  # False while the store does not answer (batches held)
        self._logged: dict[str, list[float]] = {}  # home -> [window start, lines]
        self._bad_rows: set[str] = set()
        self._inbox: queue.Queue[Inbound] = queue.Queue(maxsize=QUEUE_MAX)
        self._stopping = threading.Event()
        self._session = 0  # connections made so far
        self.subscribed = threading.Event()  # the broker acknowledged our subscriptions
        self._worker = threading.Thread(target=self._work, name="hub-store", daemon=True)
        self.link = MqttLink(
            url,
            client_id or default_client_id(),
            credentials=credentials,
            clean_start=False,
            session_expiry_s=session_expiry_s,
            manual_ack=True,  # PUBACK once stored (`_ack`), not when paho hands it over
            on_connect=self._connected,
            on_disconnect=self.subscribed.clear,
            on_message=self._message,
            on_subscribe=self._subscribed,
            name="hub",
        )

    def start(self) -> None:
        self._worker.start()
        self.link.start()

    def stop(self) -> None:
        """Store what is queued (acknowledged while the link is still up), then leave."""
        self._stopping.set()
        if self._worker.is_alive():
            self._worker.join(STOP_TIMEOUT_S)
        self.link.stop()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """Connected and subscribed: before the SUBACK, a first session's messages would
        find no subscriber and the broker would drop them."""
        return self.subscribed.wait(timeout_s)

    def health(self) -> dict[str, Any]:
        """`ok` only while the link is up and both its network thread and the store worker
        run; the counters."""
        thread = self.link.thread
        running = bool(thread is not None and thread.is_alive())
        worker = self._worker.is_alive()
        connected = self.link.connected.is_set()
        subscribed = self.subscribed.is_set()
        return {
            "ok": running and worker and connected and subscribed and self.store_up,
            "store": self.store_up,
            "connected": connected,
            "subscribed": subscribed,
            "thread": running,
            "worker": worker,
            "queued": self._inbox.qsize(),
            "batches": self.batches,
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
        self._session += 1
        subs = list(SUBSCRIPTIONS)
        if self.link.url.version != 5:
            # MQTT 3.1.1 brokers (the demo's embedded one) have no shared subscriptions
            subs = [(t.removeprefix(f"$share/{SHARE_GROUP}/"), q) for t, q in subs]
        self.link.client.subscribe(subs)

    def _subscribed(self, reasons: list[Any]) -> None:
        """SUBACK: ready once the broker granted every topic filter."""
        if not any(reason.is_failure for reason in reasons):
            self.subscribed.set()
        else:  # e.g. the broker's ACL refused a filter: not ready, and say why once
            _LOGGER.error("hub: the broker %s refused a subscription", self.link.url)

    def _message(self, msg: mqtt.MQTTMessage) -> None:
        """Runs on the network thread; never raises (an exception would stop the thread).

        A valid message goes to the store worker, which acknowledges it once stored; any
        other is acknowledged at once (dropped: an alert without a receipt comes again)."""
        try:
            if self._handle(msg.topic, bytes(msg.payload), bool(msg.retain), msg.mid, msg.qos):
                return
        except Exception as exc:  # the receiver must outlive any message
            self.failed += 1
            self._log_once("?", "error", "hub: message on %r not handled: %r", msg.topic, exc)
        self.link.client.ack(msg.mid, msg.qos)

    def _handle(
        self, topic_name: str, raw: bytes, retained: bool, mid: int = 0, qos: int = 0
    ) -> bool:
        """Check one message and queue it for the store. False: dropped, acknowledge it now.
        True: the worker acknowledges it once stored (or, if it could not be queued because
        the receiver stops, nobody does and the broker delivers it again)."""
        try:
            home, leaf = parse_topic(topic_name)
        except ContractError as exc:
            self.rejected += 1
            self._log_once("?", "topic", "hub: rejected message on %r: %s", topic_name, exc)
            return False
        if not self.budget.take(home, len(raw), time.monotonic()):
            self.limited += 1
            self._log_once(home, "budget", "hub: home %s is over its message budget", home)
            return False
        if retained and leaf != "status":
            # only status is retained by the contract; a retained alert would replay forever
            self.rejected += 1
            self._log_once(home, "retain", "hub: retained message on %s dropped", topic_name)
            return False
        try:
            leaf, payload = validate_message(topic_name, raw)
        except ContractError as exc:
            self.rejected += 1
            self._log_once(home, "contract", "hub: rejected message on %s: %s", topic_name, exc)
            return False
        self._enqueue(Inbound(leaf, payload, mid, qos, self._session))
        return True

    def _enqueue(self, item: Inbound) -> None:
        """Wait for room in the queue (the back-pressure). Give up if the worker is gone or
        the receiver stops: unacknowledged, the message comes again."""
        while True:
            try:
                self._inbox.put(item, timeout=POLL_S)
                return
            except queue.Full:
                if self._stopping.is_set() or not self._worker.is_alive():
                    return

    # -- the store worker ------------------------------------------------------------------

    def _work(self) -> None:
        """The store worker: one transaction per batch, until stopped and the queue empty."""
        while not (self._stopping.is_set() and self._inbox.empty()):
            items = take_batch(self._inbox, BATCH_MAX, BATCH_LINGER_S, POLL_S)
            if not items:
                continue
            try:
                self._store(items)
            except Exception as exc:  # the worker must outlive any batch
                self.failed += len(items)
                _LOGGER.error("hub: batch of %d messages not handled: %r", len(items), exc)

    def _store(self, items: Sequence[Inbound]) -> None:
        """Commit the batch, then acknowledge it and send its receipts.

        If the commit fails and the store does not answer at all, the batch is held and
        tried again until it does (nothing acknowledged: a receiver stopped meanwhile
        leaves it to the broker). If the store answers, it refused something in the batch:
        each message is tried alone, so one it refuses does not hold back the rest."""
        delay = STORE_RETRY_S
        while True:
            batch = make_batch(items, time.time())
            try:
                new = self.store.record_batch(batch)
                break
            except Exception as exc:
                if self._store_answers():
                    self._refused(items, exc)
                    return
                if self.store_up:
                    _LOGGER.error(
                        "hub: the store does not answer (%r): messages held, not "
                        "acknowledged, until it does",
                        exc,
                    )
                    self.store_up = False
            if self._stopping.wait(delay):
                return  # unacknowledged: the broker delivers them again
            delay = min(delay * 2, STORE_RETRY_MAX_S)
        if not self.store_up:
            _LOGGER.warning("hub: the store answers again")
            self.store_up = True
        self.batches += 1
        self.received += len(items)
        self._ack(items)
        self._stored(list(zip(batch.alerts, new, strict=True)))

    def _store_answers(self) -> bool:
        try:
            self.store.state_count()
        except Exception:
            return False
        return True

    def _refused(self, items: Sequence[Inbound], exc: Exception) -> None:
        """The store answers but refused this batch: try each message alone; one refused
        alone is counted, logged and acknowledged (an alert without a receipt comes again;
        an aggregate is dropped)."""
        if len(items) > 1:
            _LOGGER.warning("hub: batch of %d not stored (%r); one at a time", len(items), exc)
            for item in items:
                self._store([item])
            return
        self.failed += 1
        home = str(items[0].payload.get("home_id", "?"))
        self._log_once(home, "store", "hub: %s of %s not stored: %r", items[0].leaf, home, exc)
        self._ack(items)

    def _ack(self, items: Sequence[Inbound]) -> None:
        """PUBACK each message, on the connection it came on (after a reconnect the broker
        delivers it again, and that copy is acknowledged)."""
        for item in items:
            if item.qos and item.session == self._session:
                self.link.client.ack(item.mid, item.qos)

    def _stored(self, alerts: Sequence[tuple[Mapping[str, Any], bool]]) -> None:
        """These alert messages are committed (each with: was its state new?): receipts to
        their homes, then `on_alert`. What follows a stored alert starts here."""
        if not alerts:
            return
        for receipt in receipts_for([a for a, _new in alerts], iso_now()):
            self._send_receipt(receipt)
        for payload, new in alerts:
            if self.on_alert is None:
                break
            try:
                self.on_alert(payload, new)
            except Exception:  # stored and receipted already: a hook never undoes that
                _LOGGER.exception("hub: on_alert failed for alert %s", payload["id"])

    def _send_receipt(self, receipt: Mapping[str, Any]) -> None:
        """`veille.receipt/1` (QoS 1, to its home only)."""
        home = receipt["home_id"]
        info = self.link.client.publish(receipt_topic(home), encode(receipt), qos=1)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.receipts += 1
        else:
            self.failed += 1
            self._log_once(home, "receipt", "hub: receipt not sent (rc=%s)", info.rc)

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
        """Alerts raised and not acknowledged within the delay: mark them escalated.

        The store returns only raised, unescalated alerts that may be due (a second of slack: a time
        without a fraction sorts after one with it), not every open alert: with thousands
        open, reading them all every `ESCALATION_CHECK_S` in each receiver cost more CPU
        than the messages did."""
        due = []
        for alert in self.store.escalation_candidates(iso_utc(now - self.escalate_after_s + 1)):
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
    notify = None
    if getattr(args, "notify", None):
        # lazy, as the notifier below: a hub without --notify loads no channel library
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
        from cloud_bridge.directory import load_directory  # lazy: as the store, below

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
    from cloud_bridge.notify.notifier import Notifier  # lazy: web push, SMTP, SIA clients

    ack_link = None
    if config.public_url:
        # lazy: their store connection (console_sessions) loads fastapi
        from cloud_bridge.ack_links import LinkSigner, link_maker, open_link_store
        from cloud_bridge.console_sessions import DEFAULT_STORE

        links = open_link_store(store or DEFAULT_STORE)
        try:
            signer = LinkSigner(links.key(), config.public_url, config.link_ttl_s)
        finally:
            links.close()
        ack_link = link_maker(signer, time.time)
    push = None
    if any(c.kind == "webpush" for c in config.channels.values()):
        # the subscriptions staff made in the console (lazy: as the links above)
        from cloud_bridge.console_sessions import DEFAULT_STORE
        from cloud_bridge.push_subscriptions import open_push_subscriptions

        push = open_push_subscriptions(store or DEFAULT_STORE)
    # the store keeps the chains and the log
    notifier = Notifier(config, hub.store, directory=directory, ack_link=ack_link, push=push)
    loop = asyncio.get_running_loop()
    printer = hub.on_alert

    def on_alert(payload: Mapping[str, Any], new: bool) -> None:
        if printer is not None:
            printer(payload, new)
        loop.call_soon_threadsafe(notifier.alert, dict(payload), time.time())

    def on_ack(alert_id: str, action: str) -> None:
        loop.call_soon_threadsafe(notifier.stopped, alert_id, action, time.time())

    hub.on_alert, hub.on_ack = on_alert, on_ack
    task = asyncio.create_task(notifier.run(), name="notifier")
    if push is not None:
        task.add_done_callback(lambda _: push.close())
    return task


def _push_key(config: Any) -> str:
    """The VAPID public key of the first web push channel in notify.toml ("" without one):
    the key staff phones subscribe with in the console."""
    if config is None:
        return ""
    from cloud_bridge.notify.config import WebpushChannel
    from cloud_bridge.notify.webpush import application_server_key

    for channel in config.channels.values():
        if isinstance(channel, WebpushChannel):
            return application_server_key(channel)
    return ""


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
    directory = None  # the home directory (never sent to a gateway), if anything reads it
    if http or notify is not None or cards:
        # lazy: its store connection (console_sessions) loads fastapi
        from cloud_bridge.directory import open_directory

        directory = open_directory(store)
        for card in cards or ():
            directory.put(card, "directory.toml", time.time())
        if cards:
            _LOGGER.info("hub: home directory loaded (%d homes)", len(cards))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    notifier = None
    if notify is not None:
        notifier = _start_notifier(hub, notify, store, directory.notice if directory else None)
    hub.start()
    console = None
    if http:
        # lazy: fastapi and uvicorn are loaded only when the console is served
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
                push_key=_push_key(notify),
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
        if directory is not None:
            directory.close()
    return 0
