"""Zigbee2MQTT adapter against a real Mosquitto: persistent session, QoS 1, manual acks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cloud_bridge.broker import BrokerUrl, backoff_delay, parse_broker_url
from cloud_bridge.errors import ConfigError
from edge.adapters.zigbee import LocalMessage, Zigbee2MqttAdapter
from edge.runtime.clock import FakeClock
from tests.support import Collector, Mosquitto, publish

ROOT = Path(__file__).resolve().parents[1]
READY_S = 10.0
FAST = lambda attempt: 0.05  # noqa: E731  reconnect quickly in tests


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 0.0, 0.5),
        (0, 1.0, 1.0),
        (1, 0.0, 1.0),
        (1, 1.0, 2.0),
        (3, 0.5, 6.0),
        (5, 1.0, 32.0),
        (6, 0.0, 30.0),  # capped at 60 s: [30, 60]
        (6, 1.0, 60.0),
        (50, 1.0, 60.0),
        (-1, 1.0, 1.0),
    ],
)
def test_backoff_delay(attempt: int, rand: float, expected: float) -> None:
    assert backoff_delay(attempt, rand=lambda: rand) == pytest.approx(expected)


def test_backoff_delay_is_jittered() -> None:
    delays = {backoff_delay(4) for _ in range(50)}
    assert len(delays) > 40
    assert all(8.0 <= d <= 16.0 for d in delays)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", BrokerUrl("127.0.0.1", 1883)),
        ("mqtt://localhost", BrokerUrl("localhost", 1883)),
        ("mqtts://broker.lan", BrokerUrl("broker.lan", 8883, tls=True)),
        (
            "mqtt://veille:s%40cret@10.0.0.2:1884",
            BrokerUrl("10.0.0.2", 1884, username="veille", password="s@cret"),
        ),
        ("mqtt://user@host", BrokerUrl("host", 1883, username="user")),
    ],
)
def test_parse_broker_url(url: str, expected: BrokerUrl) -> None:
    assert parse_broker_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://host", "mqtt://", "mqtt://host:notaport", "mqtt://host/path", "host:1883"]
)
def test_parse_broker_url_refuses(url: str) -> None:
    with pytest.raises(ConfigError, match="broker URL"):
        parse_broker_url(url)


async def _take(adapter: Zigbee2MqttAdapter, n: int, timeout_s: float = 5.0) -> list[LocalMessage]:
    out: list[LocalMessage] = []
    it = adapter.messages()
    for _ in range(n):
        out.append(await asyncio.wait_for(anext(it), timeout_s))
    return out


async def _nothing_more(adapter: Zigbee2MqttAdapter, wait_s: float = 0.7) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(adapter.messages()), wait_s)


def test_messages_published_while_down_arrive_after_restart(local_broker: Mosquitto) -> None:
    async def main() -> None:
        async with Zigbee2MqttAdapter(parse_broker_url(local_broker.url), "veille-h-0001") as z:
            await z.wait_ready(READY_S)  # creates the persistent session and subscription
        payloads = [json.dumps({"occupancy": True, "n": i}).encode() for i in range(3)]
        for p in payloads:  # the gateway is down: the broker queues for its session
            publish(local_broker.port, "zigbee2mqtt/hall_motion", p)
        clock = FakeClock(1234.5)
        url = parse_broker_url(local_broker.url)
        async with Zigbee2MqttAdapter(url, "veille-h-0001", clock=clock) as z:
            got = await _take(z, 3)
            assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == [
                ("zigbee2mqtt/hall_motion", p, 1, False) for p in payloads
            ]
            assert {m.received_at for m in got} == {1234.5}
            for m in got:
                m.ack()
            await z.wait_ready(READY_S)
        async with Zigbee2MqttAdapter(parse_broker_url(local_broker.url), "veille-h-0001") as z:
            await z.wait_ready(READY_S)
            await _nothing_more(z)  # acked: not delivered again

    asyncio.run(main())


def test_unacked_message_is_redelivered_after_clean_close(local_broker: Mosquitto) -> None:
    async def main() -> None:
        async with Zigbee2MqttAdapter(parse_broker_url(local_broker.url), "veille-h-0002") as z:
            await z.wait_ready(READY_S)
            publish(local_broker.port, "zigbee2mqtt/sos_button", b'{"action":"single"}')
            publish(local_broker.port, "zigbee2mqtt/front_door", b'{"contact":false}')
            first, second = await _take(z, 2)
            second.ack()  # the first is never acked: its effects were not durable
        async with Zigbee2MqttAdapter(parse_broker_url(local_broker.url), "veille-h-0002") as z:
            (again,) = await _take(z, 1)
            assert (again.topic, again.payload) == (first.topic, first.payload)
            again.ack()
            await _nothing_more(z)

    asyncio.run(main())


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from cloud_bridge.broker import parse_broker_url
    from edge.adapters.zigbee import Zigbee2MqttAdapter

    async def main():
        async with Zigbee2MqttAdapter(parse_broker_url(sys.argv[1]), "veille-h-0003") as z:
            await z.wait_ready(10)
            print("READY", flush=True)
            async for msg in z.messages():
                print("GOT", msg.topic, flush=True)   # never acked
                await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


def test_unacked_message_is_redelivered_after_a_crash(local_broker: Mosquitto) -> None:
    """The gateway process is killed (SIGKILL) holding an unacknowledged message."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, local_broker.url],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
        publish(local_broker.port, "zigbee2mqtt/hall_motion", b'{"occupancy":true}')
        assert child.stdout.readline().strip() == "GOT zigbee2mqtt/hall_motion"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)

    async def main() -> None:
        async with Zigbee2MqttAdapter(parse_broker_url(local_broker.url), "veille-h-0003") as z:
            (msg,) = await _take(z, 1, timeout_s=10.0)
            assert (msg.topic, msg.payload) == ("zigbee2mqtt/hall_motion", b'{"occupancy":true}')
            msg.ack()

    asyncio.run(main())


def test_reconnects_after_broker_restart(local_broker: Mosquitto) -> None:
    async def main() -> None:
        url = parse_broker_url(local_broker.url)
        async with Zigbee2MqttAdapter(url, "veille-h-0004", backoff=FAST) as z:
            await z.wait_ready(READY_S)
            await asyncio.to_thread(local_broker.restart)
            await asyncio.sleep(0.1)
            await z.wait_ready(READY_S)
            publish(local_broker.port, "zigbee2mqtt/kettle", b'{"power":1850}')
            (msg,) = await _take(z, 1)
            assert msg.payload == b'{"power":1850}'
            msg.ack()
            assert z.connects == 2

    asyncio.run(main())


def test_retained_bridge_devices_arrive_marked_retained(local_broker: Mosquitto) -> None:
    publish(local_broker.port, "zigbee2mqtt/bridge/devices", b"[]", retain=True)

    async def main() -> None:
        async with Zigbee2MqttAdapter(parse_broker_url(local_broker.url), "veille-h-0005") as z:
            (msg,) = await _take(z, 1)
            assert (msg.topic, msg.retain) == ("zigbee2mqtt/bridge/devices", True)
            msg.ack()

    asyncio.run(main())


def test_permit_join_request_reaches_zigbee2mqtt(local_broker: Mosquitto) -> None:
    bridge = Collector(local_broker.port, "zigbee2mqtt/bridge/request/#")
    try:

        async def main() -> None:
            async with Zigbee2MqttAdapter(parse_broker_url(local_broker.url), "veille-h-0006") as z:
                await z.wait_ready(READY_S)
                await z.permit_join(120)
                await z.permit_join(10_000)  # clamped to Zigbee's 254 s
                await z.permit_join(0)

        asyncio.run(main())
        got = [bridge.get() for _ in range(3)]
    finally:
        bridge.close()
    assert [(t, json.loads(p)) for t, p, _ in got] == [
        ("zigbee2mqtt/bridge/request/permit_join", {"time": 120}),
        ("zigbee2mqtt/bridge/request/permit_join", {"time": 254}),
        ("zigbee2mqtt/bridge/request/permit_join", {"time": 0}),
    ]


def test_unreachable_broker_is_retried_not_fatal(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "late")

    async def main() -> None:
        url = parse_broker_url(broker.url)
        async with Zigbee2MqttAdapter(url, "veille-h-0007", backoff=FAST) as z:
            await asyncio.sleep(0.3)  # a few refused attempts
            assert not z.ready.is_set()
            await asyncio.to_thread(broker.start)
            try:
                await z.wait_ready(READY_S)
            finally:
                await z.close()
                await asyncio.to_thread(broker.stop)

    asyncio.run(main())


def test_messages_the_broker_dropped_are_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Mosquitto drops what goes over its queue limit and tells only its own log and $SYS:
    the gateway reads the counter and says so in its log."""
    broker = Mosquitto(tmp_path / "tiny", extra_conf="max_queued_messages 5\nsys_interval 1\n")
    broker.start()
    try:

        async def main() -> None:
            async with Zigbee2MqttAdapter(parse_broker_url(broker.url), "veille-h-0008") as z:
                await z.wait_ready(READY_S)
            for i in range(12):  # the gateway is down: 5 are queued, 7 dropped
                publish(broker.port, "zigbee2mqtt/hall_motion", f'{{"n":{i}}}')
            async with Zigbee2MqttAdapter(parse_broker_url(broker.url), "veille-h-0008") as z:
                for msg in await _take(z, 5):
                    msg.ack()
                for _ in range(50):
                    if z.dropped:
                        break
                    await asyncio.sleep(0.1)
                assert z.dropped == 7

        asyncio.run(main())
    finally:
        broker.stop()
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "dropped" in r.message]
    assert errors, "no log line for the dropped messages"
    assert "7" in errors[0].message
