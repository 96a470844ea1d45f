"""The hub load bench, scaled down: 30 homes, 2 `veille hub` receivers, one PostgreSQL store.

Everything `bench.hub_load` runs at 1,000 homes runs here too: the committed hub.conf and
hub.acl on a real Mosquitto with a test CA and one client certificate per home, the real
`Outbox` + `Uplink` of every simulated gateway (two worker processes), two real `veille hub`
processes behind the shared subscription, and a throwaway PostgreSQL as their shared store.
"""

from __future__ import annotations

import pytest

from bench.hub_load import run

pytestmark = pytest.mark.broker

HOMES = 30
ALERTS = 3
AGGREGATES = 10


def test_thirty_homes_two_receivers_nothing_lost_nothing_twice() -> None:
    r = run(
        HOMES,
        receivers=2,
        workers=2,
        alerts=ALERTS,
        aggregates=AGGREGATES,
        spread_s=2.0,
        durable=False,
    )
    print(
        f"hub scale: {r['messages']['total']} messages from {HOMES} homes, "
        f"{r['messages_per_s']} msg/s, alert p99 {r['alert_latency_ms']['p99']} ms, "
        f"per receiver {r['alerts_per_receiver']}, lost {r['lost']}, dup {r['duplicated']}, "
        f"sent twice then deduped {r['sent_twice_deduped']}"
    )
    assert r["messages"] == {
        "alerts": HOMES * ALERTS,
        "aggregates": HOMES * AGGREGATES,
        "total": HOMES * (ALERTS + AGGREGATES),
    }
    assert r["lost"] == {"alerts": 0, "aggregates": 0}
    assert r["duplicated"] == {"announced_twice": 0, "unexpected_in_store": 0}
    assert (r["lost_total"], r["duplicated_total"]) == (0, 0)
    # both receivers took a share, and between them announced every alert once
    assert len(r["alerts_per_receiver"]) == 2
    assert min(r["alerts_per_receiver"]) > 0
    assert sum(r["alerts_per_receiver"]) == HOMES * ALERTS
    # the gateways' own alarm logs agree: every alert was acknowledged by the hub broker
    assert r["alarm_log"] == {"alerts": HOMES * ALERTS, "undelivered": 0}
    assert r["refused_by_broker"] == 0
    assert r["sent_twice_deduped"] >= 0
    assert r["statuses_stored"] == HOMES
    assert r["alert_latency_ms"]["p99"] is not None
    assert 0 < r["alert_latency_ms"]["p50"] <= r["alert_latency_ms"]["p99"]
