"""The hub broker's security, against a real Mosquitto running the committed hub.conf + hub.acl.

The broker is started with the test CA's files on a free loopback port (the committed config
is rendered, only port and paths change). Every "nothing arrives" check is closed by a marker
message that is allowed and sent after the forbidden ones over the same broker: once the
marker is in, anything the broker had let through would already be there.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from cloud_bridge import pki
from cloud_bridge.broker import Credentials, parse_broker_url
from cloud_bridge.contract import alert_topic
from cloud_bridge.hub import HubReceiver
from cloud_bridge.hub_store import SqliteHubStore
from cloud_bridge.uplink import Uplink
from edge.storage.outbox import Outbox
from tests.support import HUB_ACL, HUB_CONF, TlsHub, make_hub_pki, tls_client
from tests.test_uplink import alert as sos

pytestmark = pytest.mark.broker

HOME_A, HOME_B = "home-a", "home-b"
RECEIVERS = ("hub-receiver-1", "hub-receiver-7")  # -7 exists only through render_hub_acl
UNLISTED_RECEIVER = "hub-receiver-9"  # a valid certificate, but no block in the ACL
WAIT_S = 5.0
NOT_AUTHORIZED = 0x87


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_hub_pki(
        tmp_path_factory.mktemp("pki"),
        homes=(HOME_A, HOME_B),
        receivers=(*RECEIVERS, UNLISTED_RECEIVER),
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, tls_dir: Path) -> Iterator[TlsHub]:
    broker = TlsHub(tmp_path_factory.mktemp("hub"), tls_dir=tls_dir, receivers=RECEIVERS)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


class Peer:
    """A connected TLS client: its subscriptions granted, messages and PUBACK codes queued."""

    def __init__(
        self, hub: TlsHub, name: str, *subscriptions: str, client_id: str | None = None
    ) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.pubacks: dict[int, ReasonCode] = {}
        self._acked: queue.Queue[int] = queue.Queue()
        self._ready: queue.Queue[str] = queue.Queue()
        self.disconnected: queue.Queue[ReasonCode] = queue.Queue()
        client_id = client_id or f"{name}-{uuid.uuid4().hex[:8]}"
        self.client = tls_client(hub.tls_dir, name, client_id=client_id)
        self.client.on_disconnect = lambda _c, _u, _f, rc, _p: self.disconnected.put(rc)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._ready.put("subscribed")
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.on_publish = self._on_publish
        self._subscriptions = subscriptions
        self.client.connect("127.0.0.1", hub.port)
        self.client.loop_start()
        assert self._ready.get(timeout=WAIT_S) == "subscribed"

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        if rc.is_failure:
            self._ready.put(f"refused {rc}")
        elif self._subscriptions:
            client.subscribe([(t, 1) for t in self._subscriptions])
        else:
            self._ready.put("subscribed")

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        self.pubacks[mid] = rc
        self._acked.put(mid)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> ReasonCode:
        """Publish at QoS 1 and return the broker's PUBACK reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(WAIT_S)
        return self.pubacks[info.mid]

    def until(self, marker: bytes) -> list[tuple[str, bytes]]:
        """Every message received up to and including the one whose payload is `marker`."""
        got = []
        while True:
            topic, payload = self.messages.get(timeout=WAIT_S)
            got.append((topic, payload))
            if payload == marker:
                return got

    def drain(self, quiet_s: float = 0.3) -> list[tuple[str, bytes]]:
        """What else arrives until nothing has come for `quiet_s`."""
        got = []
        with contextlib.suppress(queue.Empty):
            while True:
                got.append(self.messages.get(timeout=quiet_s))
        return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def peers(hub: TlsHub, *specs: tuple[str, tuple[str, ...]]) -> Iterator[list[Peer]]:
    opened: list[Peer] = []
    try:
        for name, subs in specs:
            opened.append(Peer(hub, name, *subs))
        yield opened
    finally:
        for peer in opened:
            peer.close()


def marker() -> bytes:
    return f"marker-{uuid.uuid4().hex}".encode()


def connect_outcome(client: mqtt.Client, port: int) -> str:
    """'connected' if the broker accepted the client, else what went wrong."""
    outcome: queue.Queue[str] = queue.Queue()
    client.on_connect = lambda _c, _u, _f, rc, _p: outcome.put(
        f"refused: {rc}" if rc.is_failure else "connected"
    )
    client.on_disconnect = lambda _c, _u, _f, rc, _p: outcome.put(f"disconnected: {rc}")
    try:
        client.connect("127.0.0.1", port)
    except (ssl.SSLError, OSError) as exc:
        return f"failed: {exc}"
    client.loop_start()
    try:
        return outcome.get(timeout=WAIT_S)
    except queue.Empty:
        return "no answer"
    finally:
        client.disconnect()
        client.loop_stop()


def test_receivers_read_every_home_through_the_shared_subscription(hub: TlsHub) -> None:
    share = (
        "$share/hub/veille/v1/+/alert",
        "$share/hub/veille/v1/+/aggregate/#",
        "$share/hub/veille/v1/+/status",
    )
    with peers(hub, (RECEIVERS[0], share), (RECEIVERS[1], share)) as (r1, r7):
        with peers(hub, (HOME_A, ()), (HOME_B, ())) as (home_a, home_b):
            sent = []
            for i in range(10):
                for home in (home_a, home_b):
                    home_id = HOME_A if home is home_a else HOME_B
                    for leaf in ("alert", "aggregate/hourly", "status"):
                        topic, payload = f"veille/v1/{home_id}/{leaf}", f"{leaf}-{i}".encode()
                        assert home.publish(topic, payload).value == 0, topic
                        sent.append((topic, payload))
        received: dict[str, list[tuple[str, bytes]]] = {RECEIVERS[0]: [], RECEIVERS[1]: []}
        deadline = time.monotonic() + WAIT_S
        while sum(map(len, received.values())) < len(sent) and time.monotonic() < deadline:
            for name, receiver in ((RECEIVERS[0], r1), (RECEIVERS[1], r7)):
                with contextlib.suppress(queue.Empty):
                    received[name].append(receiver.messages.get(timeout=0.05))
        extra = r1.drain() + r7.drain()
    assert sorted(received[RECEIVERS[0]] + received[RECEIVERS[1]]) == sorted(sent)
    assert extra == [], "no message is delivered twice within the share group"
    assert all(received.values()), "both receivers of the group take a share of the load"


def test_receiver_acks_reach_their_home_only(hub: TlsHub) -> None:
    end_b, end_a = marker(), marker()
    ack_subs = ("veille/v1/home-b/ack", "veille/v1/+/ack", "veille/v1/#", "#")
    with peers(
        hub,
        (HOME_A, ("veille/v1/home-a/ack", *ack_subs)),
        (HOME_B, ("veille/v1/home-b/ack",)),
        (RECEIVERS[0], ()),
    ) as (home_a, home_b, receiver):
        assert receiver.publish("veille/v1/home-b/ack", b"ack-for-b").value == 0
        assert receiver.publish("veille/v1/home-b/ack", end_b).value == 0
        assert receiver.publish("veille/v1/home-a/ack", end_a).value == 0
        assert home_b.until(end_b) == [
            ("veille/v1/home-b/ack", b"ack-for-b"),
            ("veille/v1/home-b/ack", end_b),
        ]
        seen_by_a = home_a.until(end_a)
    # home A subscribed to its ack through several filters: it may get its own ack more than
    # once, and nothing of home B's
    assert {topic for topic, _ in seen_by_a} == {"veille/v1/home-a/ack"}
    assert {payload for _, payload in seen_by_a} == {end_a}


def test_a_home_cannot_publish_as_another_home(hub: TlsHub) -> None:
    end = marker()
    forbidden = [
        "veille/v1/home-b/alert",
        "veille/v1/home-b/aggregate/hourly",
        "veille/v1/home-b/status",
        "veille/v1/home-b/ack",
        "veille/v1/home-a/ack",  # a home cannot forge its own acknowledgements
        "veille/v1/home-a/raw",  # nor publish anything outside the contract
        "veille/v1/home-a-annex/alert",  # a home whose id starts with ours
        "other/topic",
    ]
    with peers(hub, (RECEIVERS[0], ("veille/v1/#",)), (HOME_B, ("veille/v1/home-b/ack",))) as (
        spy,
        home_b,
    ):
        with peers(hub, (HOME_A, ())) as (home_a,):
            codes = {topic: home_a.publish(topic, b"forged").value for topic in forbidden}
            assert home_a.publish("veille/v1/home-a/alert", end).value == 0
        assert spy.until(end) == [("veille/v1/home-a/alert", end)]
        assert home_b.messages.empty()
    # each forbidden message reached the broker, which answered "not authorized" and dropped it
    assert codes == dict.fromkeys(codes, NOT_AUTHORIZED)


def test_a_home_cannot_read_another_home(hub: TlsHub) -> None:
    end = marker()
    greedy = ("veille/v1/#", "veille/v1/home-b/alert", "$share/hub/veille/v1/+/alert", "#")
    with peers(hub, (HOME_A, greedy)) as (home_a,), peers(hub, (HOME_B, ())) as (home_b,):
        for leaf in ("alert", "aggregate/daily", "status"):
            assert home_b.publish(f"veille/v1/home-b/{leaf}", b"private").value == 0
        with peers(hub, (RECEIVERS[0], ())) as (receiver,):
            assert receiver.publish("veille/v1/home-a/ack", end).value == 0
        seen = home_a.until(end)
    assert {payload for _, payload in seen} == {end}


def test_a_home_cannot_take_over_another_homes_session(hub: TlsHub) -> None:
    """The broker uses the certificate's name as client id: asking for home B's client id
    does not disconnect home B."""
    end = marker()
    gateway_id = "veille-gw-home-b"
    with contextlib.closing(Peer(hub, HOME_B, "veille/v1/home-b/ack", client_id=gateway_id)) as b:
        with contextlib.closing(Peer(hub, HOME_A, client_id=gateway_id)):
            with peers(hub, (RECEIVERS[0], ())) as (receiver,):
                assert receiver.publish("veille/v1/home-b/ack", end).value == 0
            assert b.until(end) == [("veille/v1/home-b/ack", end)]
        assert b.disconnected.empty()


def test_a_receiver_missing_from_the_acl_reads_nothing(hub: TlsHub) -> None:
    end = marker()
    with peers(hub, (UNLISTED_RECEIVER, ("$share/hub/veille/v1/+/alert", "veille/v1/#"))) as (
        unlisted,
    ):
        with peers(hub, (HOME_A, ("veille/v1/home-a/ack",))) as (home_a,):
            assert home_a.publish("veille/v1/home-a/alert", b"alert").value == 0
            assert unlisted.publish("veille/v1/home-a/ack", b"ack").value == NOT_AUTHORIZED
            with peers(hub, (RECEIVERS[0], ())) as (receiver,):
                assert receiver.publish("veille/v1/home-a/ack", end).value == 0
            assert home_a.until(end) == [("veille/v1/home-a/ack", end)]
        assert unlisted.messages.empty()


def broker_log_after(hub: TlsHub, offset: int, needle: str) -> str:
    """The broker's log lines written after `offset`, once one of them contains `needle`."""
    deadline = time.monotonic() + WAIT_S
    while True:
        with (hub.workdir / "mosquitto.log").open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def refused_with(hub: TlsHub, client: mqtt.Client, reason: str) -> tuple[str, str]:
    """Try to connect; return the client's outcome and the broker's log lines about it."""
    offset = (hub.workdir / "mosquitto.log").stat().st_size
    outcome = connect_outcome(client, hub.port)
    return outcome, broker_log_after(hub, offset, reason)


def test_only_certificates_of_the_hub_ca_connect(hub: TlsHub, tmp_path: Path) -> None:
    assert connect_outcome(tls_client(hub.tls_dir, HOME_A), hub.port) == "connected"

    reason = "peer did not return a certificate"
    outcome, log = refused_with(hub, tls_client(hub.tls_dir, None), reason)
    assert outcome != "connected"
    assert reason in log

    other_ca = tmp_path / "other-ca"
    pki.init_ca(other_ca)
    pki.issue(other_ca, HOME_A, "client")  # same name, signed by a CA the hub does not trust
    rogue = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    rogue.tls_set(
        str(hub.tls_dir / "ca.pem"), str(other_ca / "home-a.pem"), str(other_ca / "home-a.key")
    )
    reason = "certificate verify failed"
    outcome, log = refused_with(hub, rogue, reason)
    assert outcome != "connected"
    assert reason in log

    plain = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    reason = "wrong version number"  # plain MQTT bytes where a TLS handshake must start
    outcome, log = refused_with(hub, plain, reason)
    assert outcome != "connected"
    assert reason in log


def test_no_plain_listener_and_no_anonymous_access() -> None:
    conf = [line.split() for line in HUB_CONF.read_text().splitlines()]
    directives = [words for words in conf if words and not words[0].startswith("#")]
    settings = {words[0]: words[1:] for words in directives}
    assert [w for w in directives if w[0] == "listener"] == [["listener", "8883"]]
    assert settings["require_certificate"] == ["true"]
    assert settings["use_identity_as_username"] == ["true"]
    assert settings["use_username_as_clientid"] == ["true"]
    assert settings["allow_anonymous"] == ["false"]
    assert "password_file" not in settings
    assert "psk_hint" not in settings


def test_render_hub_acl_makes_one_block_per_receiver() -> None:
    text = pki.render_hub_acl(HUB_ACL.read_text(), ("hub-receiver-a", "hub-receiver-b"))
    assert text.count("user hub-receiver-") == 2
    assert "user hub-receiver-1\n" not in text
    block = text.split("user hub-receiver-b\n", 1)[1].split("\n#", 1)[0].strip().splitlines()
    assert block == [
        "topic read veille/v1/+/alert",
        "topic read veille/v1/+/aggregate/+",
        "topic read veille/v1/+/status",
        "topic write veille/v1/+/ack",
        "topic write veille/v1/+/receipt",
    ]
    assert text.count("\npattern ") == 6
    with pytest.raises(pki.VeilleError, match="hub receiver name"):
        pki.render_hub_acl(HUB_ACL.read_text(), ("home-a",))


def test_only_receivers_publish_receipts(hub: TlsHub) -> None:
    """A home can neither forge a receipt for itself (that would mark an alert the hub never
    stored as delivered) nor for another home; a receiver's receipt reaches its home only."""
    end = marker()
    with peers(
        hub, (HOME_A, ("veille/v1/home-a/receipt",)), (HOME_B, ("veille/v1/+/receipt",))
    ) as (home_a, home_b):
        assert home_a.publish("veille/v1/home-a/receipt", b"forged").value == NOT_AUTHORIZED
        assert home_b.publish("veille/v1/home-a/receipt", b"forged").value == NOT_AUTHORIZED
        with peers(hub, (RECEIVERS[0], ())) as (receiver,):
            assert receiver.publish("veille/v1/home-a/receipt", end).value == 0
        assert home_a.until(end) == [("veille/v1/home-a/receipt", end)]
        assert home_b.drain() == []


def test_a_home_writes_only_the_exact_contract_topics(hub: TlsHub) -> None:
    """No `aggregate/#` wildcard: only hourly and daily, nothing below them."""
    end = marker()
    with peers(hub, (RECEIVERS[0], ("veille/v1/#",))) as (spy,):
        with peers(hub, (HOME_A, ())) as (home_a,):
            codes = {
                leaf: home_a.publish(f"veille/v1/home-a/{leaf}", b"x").value
                for leaf in ("aggregate/weekly", "aggregate/hourly/x", "aggregate", "receipt")
            }
            for leaf in ("aggregate/hourly", "aggregate/daily", "alert"):
                assert home_a.publish(f"veille/v1/home-a/{leaf}", b"ok").value == 0, leaf
            assert home_a.publish("veille/v1/home-a/status", end, retain=True).value == 0
        got = spy.until(end)
    assert codes == dict.fromkeys(codes, NOT_AUTHORIZED)
    assert [t for t, _p in got] == [
        "veille/v1/home-a/aggregate/hourly",
        "veille/v1/home-a/aggregate/daily",
        "veille/v1/home-a/alert",
        "veille/v1/home-a/status",
    ]


def test_a_home_in_the_shared_group_takes_no_alert_away(hub: TlsHub, tmp_path: Path) -> None:
    """Home B's certificate joins the receivers' shared group. Mosquitto's acl_file cannot
    refuse the subscription and hands it every other alert, which it may not read: dropped.
    With receipts, every alert of home A still ends in the real receiver's store (its uplink
    sends again what got no receipt), and home B reads none of them."""
    share = "$share/hub/veille/v1/+/alert"
    n_alerts = 8
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.put(alerts=[(sos(HOME_A, i), alert_topic(HOME_A)) for i in range(n_alerts)])
    tls = hub.tls_dir
    store = SqliteHubStore(tmp_path / "hub.db")
    receiver = HubReceiver(
        parse_broker_url(hub.url),
        store,
        credentials=Credentials(
            tls / "ca.pem", tls / f"{RECEIVERS[0]}.pem", tls / f"{RECEIVERS[0]}.key"
        ),
    )
    receiver.start()
    assert receiver.wait_connected()
    uplink = Uplink(
        parse_broker_url(hub.url),
        HOME_A,
        outbox,
        now=time.time,
        credentials=Credentials(tls / "ca.pem", tls / f"{HOME_A}.pem", tls / f"{HOME_A}.key"),
        resend_base_s=0.5,
        resend_max_s=2.0,
    )

    async def run() -> None:
        task = asyncio.create_task(uplink.run())
        deadline = time.monotonic() + 60
        while outbox.counts()["alerts"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    time.sleep(1.0)  # the receiver's shared subscription is in place
    with peers(hub, (HOME_B, (share, f"$share/hub/veille/v1/{HOME_A}/alert"))) as (intruder,):
        asyncio.run(run())
        stolen = intruder.drain()
    receiver.stop()
    stored = {a["id"] for a in store.alerts()}
    store.close()
    print(
        f"\nforeign client in the shared group: {n_alerts} alerts, {uplink.resent} resent, "
        f"{len(stored)} stored, {n_alerts - len(stored)} lost"
    )
    assert stored == {sos(HOME_A, i).id for i in range(n_alerts)}
    assert uplink.resent > 0, "the intruder was handed some alerts"
    assert all(e["delivered_at"] is not None for e in outbox.alarm_log())
    assert stolen == []
