"""The reference hub receiver: shared subscription in, deduplicated store, acks out.

Several `veille hub` processes share the homes' traffic through the MQTT shared
subscription `$share/hub/...`: each message goes to one of them, and the store dedupes by
alert id whatever the broker redelivers. Statuses (retained, with the gateways' Last Will)
are read by every receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from cloud_bridge.broker import BrokerUrl, Credentials, MqttLink, parse_broker_url
from cloud_bridge.contract import ContractError, ack_topic, encode, validate_message
from cloud_bridge.hub_store import HubStore, open_store

_LOGGER = logging.getLogger(__name__)

SHARE_GROUP = "hub"
SUBSCRIPTIONS = (
    (f"$share/{SHARE_GROUP}/veille/v1/+/alert", 1),
    (f"$share/{SHARE_GROUP}/veille/v1/+/aggregate/+", 1),
    ("veille/v1/+/status", 1),
)
ESCALATION_CHECK_S = 5.0


def iso_now() -> str:
    from edge.events import iso_utc

    return iso_utc(time.time())


class HubReceiver:
    """Receives alerts, aggregates and statuses; stores them; publishes acks."""

    def __init__(
        self,
        url: BrokerUrl,
        store: HubStore,
        *,
        credentials: Credentials | None = None,
        client_id: str | None = None,
        on_alert: Callable[[Mapping[str, Any], bool], None] | None = None,
        escalate_after_s: float = 600.0,
    ) -> None:
        self.store = store
        self.on_alert = on_alert
        self.escalate_after_s = escalate_after_s
        self.received = 0
        self.rejected = 0
        self.link = MqttLink(
            url,
            client_id or f"veille-hub-{int(time.time() * 1000) % 10**9}",
            credentials=credentials,
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

    def _connected(self) -> None:
        subs = list(SUBSCRIPTIONS)
        if self.link.url.version != 5:
            # MQTT 3.1.1 brokers (the demo's embedded one) have no shared subscriptions
            subs = [(t.removeprefix(f"$share/{SHARE_GROUP}/"), q) for t, q in subs]
        self.link.client.subscribe(subs)

    def _message(self, msg: mqtt.MQTTMessage) -> None:
        """Runs on the network thread; the store write happens before paho's PUBACK."""
        try:
            leaf, payload = validate_message(msg.topic, msg.payload)
        except ContractError as exc:
            self.rejected += 1
            _LOGGER.warning("hub: rejected message on %s: %s", msg.topic, exc)
            return
        self.received += 1
        now = time.time()
        if leaf == "alert":
            new = self.store.record_alert(payload, now)
            if self.on_alert is not None:
                self.on_alert(payload, new)
        elif leaf.startswith("aggregate/"):
            self.store.record_aggregate(payload)
        elif leaf == "status":
            self.store.record_status(payload, now)

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
        info = self.link.client.publish(ack_topic(alert["home_id"]), encode(payload), qos=1)
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def escalate_due(self, now: float) -> list[dict[str, Any]]:
        """Alerts raised and not acknowledged within the delay: mark them escalated."""
        from edge.events import parse_iso_utc

        due = []
        for alert in self.store.alerts(open_only=True):
            if alert["state"] != "raised" or alert["escalated"]:
                continue
            if now - parse_iso_utc(alert["raised_at"]) >= self.escalate_after_s:
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
        url, store, credentials=creds, on_alert=_print_alert, escalate_after_s=args.escalate_after
    )
    return asyncio.run(_serve(hub, args.http, args.staff_password_file, args.store))


async def _serve(
    hub: HubReceiver, http: str | None, staff_password_file: Path | None, store: str | None
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    hub.start()
    console = None
    if http:
        from cloud_bridge.console import start_console
        from cloud_bridge.console_sessions import DEFAULT_STORE

        try:
            console = await start_console(
                hub, http, staff_password_file, store=store or DEFAULT_STORE
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
        hub.store.close()
    return 0
