"""Check-ins end to end: `veille demo --scenario inactivity` on two real Mosquittos.

The simulated resident sits still from 13:30. The gateway asks first: its prompt device (a
Zigbee siren) receives a `set` command on the local broker, with what the siren's exposes
offer; nobody answers, so the inactivity alert reaches the hub ten minutes later, saying the
check-in went unanswered, and the siren is told to stop. Check-ins never reach the hub.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cloud_bridge.contract import validate_message
from tests.gateway_proc import VEILLE
from tests.support import Collector, Mosquitto

pytestmark = pytest.mark.broker

ANSWER_MIN = 10  # Thresholds().checkin_answer_min


def test_demo_inactivity_asks_the_resident_then_alerts_when_nobody_answers(
    tmp_path: Path, local_broker: Mosquitto, hub_broker: Mosquitto
) -> None:
    siren = Collector(local_broker.port, "zigbee2mqtt/+/set")
    hub = Collector(hub_broker.port, "veille/#")
    proc = subprocess.run(
        [
            VEILLE,
            "demo",
            "--scenario",
            "inactivity",
            "--duration",
            "36000",  # 06:00 to 16:00
            "--speed",
            "1200",
            "--local",
            local_broker.url,
            "--hub",
            hub_broker.url,
            "--storage",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    sets = siren.drain(1.0)
    got = hub.drain(1.0)
    siren.close()
    hub.close()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # the siren's exposes offer `warning`: it was asked with it, then told to stop
    assert [t for t, _p, _r in sets] == ["zigbee2mqtt/siren/set"] * 2, sets
    ask, stop = (json.loads(p) for _t, p, _r in sets)
    assert ask["warning"]["mode"] == "emergency"
    assert ask["warning"]["level"] == "low"
    assert stop == {"warning": {"mode": "stop"}}
    alerts = []
    for topic, payload, _r in got:
        leaf, body = validate_message(topic, payload)
        assert b"check_in:" not in payload  # the check-in itself never goes upstream
        if leaf == "alert":
            alerts.append(body)
    raised = [a for a in alerts if a["state"] == "raised" and a["type"] == "inactivity"]
    assert raised, proc.stdout[-2000:]
    first = raised[0]["evidence"]
    assert first["check_in"] == "unanswered"
    # asked at the check-in limit, then the answer window ran out, then the next tick (the
    # demo ticks about every simulated minute; a loaded machine can make that a few)
    waited = first["inactive_min"] - first["check_in_limit_min"]
    assert ANSWER_MIN <= waited <= ANSWER_MIN + 5
    lines = proc.stdout.splitlines()
    asked = next(i for i, x in enumerate(lines) if "le carillon demande « ça va ? »" in x)
    alerted = next(
        i for i, x in enumerate(lines) if "[centre]" in x and "Inactivité inhabituelle" in x
    )
    assert asked < alerted
    assert "(personne ne répond)" in lines[asked]
    assert "{" not in lines[alerted]  # a sentence, not a Python dict
