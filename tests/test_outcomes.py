"""What each alert turned out to be, and the statistics: the pure figures on known rows,
the outcomes on SQLite and a real PostgreSQL, then the real `veille hub`: resolving a
critical alert asks for its outcome first (nothing goes to the home until confirmed), the
statistics page shows it, and `veille hub-log` exports it with the channels it went to."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from cloud_bridge.contract import ack_topic, alert_topic, encode, iso_utc
from cloud_bridge.outcomes import open_outcomes, percentile, statistics, steps_reached
from tests.gateway_proc import STAFF_PASSWORD, VEILLE, HubProc, hub_log
from tests.pg import Postgres, running_postgres
from tests.support import Collector, Mosquitto, free_port, publish
from tests.test_hub_log import FIELDS as CONTRACT_FIELDS
from tests.test_notify_hub import wait
from tests.test_notify_mail import Inbox


def record(
    n: int,
    home: str,
    kind: str,
    ack_s: float | None,
    outcome: str | None,
    *,
    steps: tuple[int, ...] = (0,),
) -> dict[str, Any]:
    raised = 1_780_000_000.0 + n * 1000
    return {
        "id": f"a-{n}",
        "home_id": home,
        "type": kind,
        "raised_at": iso_utc(raised),
        "acknowledged_at": iso_utc(raised + ack_s) if ack_s is not None else None,
        "outcome": outcome,
        "notified": [{"channel": "x", "step": s, "at": iso_utc(raised)} for s in steps],
    }


def test_percentiles_and_steps() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert percentile([float(x) for x in range(1, 11)], 90) == pytest.approx(9.1)
    assert steps_reached({"notified": []}) == 0
    assert steps_reached(record(1, "h", "fall", None, None, steps=(0, 1, 2))) == 3


def test_statistics_per_home_and_per_type() -> None:
    rows = [
        record(1, "h-0001", "fall", 60, "real", steps=(0, 1)),
        record(2, "h-0001", "fall", 120, "false_alarm"),
        record(3, "h-0001", "sos", 600, "false_alarm", steps=(0, 1, 2)),
        record(4, "h-0002", "fall", None, None, steps=(0, 1)),
        record(5, "h-0002", "fall", 30, "test"),
    ]
    homes = {r["home_id"]: r for r in statistics(rows, "home_id")}
    one = homes["h-0001"]
    assert (one["count"], one["real"], one["false_alarm"]) == (3, 1, 2)
    assert one["false_alarm_share"] == pytest.approx(2 / 3)
    assert one["ack_median_s"] == 120.0
    assert one["ack_p90_s"] == pytest.approx(504.0)  # 120 + 0.8 * 480
    assert (one["escalated"], one["max_step"]) == (2, 3)
    two = homes["h-0002"]
    assert (two["count"], two["with_outcome"], two["false_alarm_share"]) == (2, 1, 0.0)
    assert (two["acknowledged"], two["ack_median_s"]) == (1, 30.0)
    kinds = {r["type"]: r for r in statistics(rows, "type")}
    assert kinds["fall"]["count"] == 4
    assert kinds["fall"]["false_alarm_share"] == pytest.approx(1 / 3)
    assert kinds["sos"]["ack_p90_s"] == 600.0


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with running_postgres() as pg:
        yield pg


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_outcomes_are_kept_and_replaced(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        spec = f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        pg: Postgres = request.getfixturevalue("postgres")
        spec = pg.new_database()
    one = open_outcomes(spec)
    try:
        one.put("a-1", "false_alarm", "le chat", "alice", 1.0)
        one.put("a-1", "real", "chute confirmée", "bob", 2.0)
        with pytest.raises(ValueError, match="outcome"):
            one.put("a-2", "maybe", "", "alice", 3.0)
    finally:
        one.close()
    two = open_outcomes(spec)
    try:
        assert two.all() == {
            "a-1": {"outcome": "real", "note": "chute confirmée", "by": "bob", "at": 2.0}
        }
    finally:
        two.close()


# --- the real veille hub --------------------------------------------------------------------
def test_closing_a_critical_alert_asks_its_outcome_then_statistics_and_hub_log(
    tmp_path: Path, hub_broker: Mosquitto
) -> None:
    inbox = Inbox()
    smtp_port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    notify = tmp_path / "notify.toml"
    notify.write_text(
        f'[[channel]]\nname = "astreinte"\nkind = "email"\nsmtp = "smtp://127.0.0.1:{smtp_port}"\n'
        'from = "veille@hub.example.org"\nto = "astreinte@ssiad.example.org"\n'
        '[[escalation]]\nafter_s = 0\nchannels = ["astreinte"]\n'
    )
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = HubProc(tmp_path / "hub", hub_broker.url, store, extra_args=("--notify", str(notify)))
    home = None
    try:
        hub.start()
        home = Collector(hub_broker.port, ack_topic("h-0042"))
        raised = time.time() - 90
        payload = {
            "schema": "veille.alert/1",
            "id": "0190a000-0000-7000-8000-000000000077",
            "home_id": "h-0042",
            "type": "fall",
            "severity": "critical",
            "state": "raised",
            "at": iso_utc(raised),
            "raised_at": iso_utc(raised),
            "room": "salon",
            "device_id": None,
            "evidence": {},
        }
        publish(hub_broker.port, alert_topic("h-0042"), encode(payload))
        wait(lambda: inbox.mails, 5)
        # the home took the staff's ack 42 s after the alert was raised
        acked = {**payload, "state": "acknowledged", "at": iso_utc(raised + 42)}
        publish(hub_broker.port, alert_topic("h-0042"), encode(acked))
        with httpx.Client(base_url=hub.url, trust_env=False) as staff:
            staff.post("/login", data={"name": "alice", "password": STAFF_PASSWORD})
            csrf = re.search(r'name="csrf" value="([^"]+)"', staff.get("/").text)
            assert csrf is not None
            asked = staff.post(
                f"/alerts/{payload['id']}/resolve",
                data={"csrf": csrf[1], "note": "Le chat a fait tomber le pendentif"},
                follow_redirects=False,
            )
            assert asked.status_code == 200
            assert 'id="close-form"' in asked.text
            assert "Le chat a fait tomber le pendentif" in asked.text  # the note is kept
            assert "Fausse alerte" in asked.text
            assert home.drain(0.5) == []  # not resolved yet
            missing = staff.post(
                f"/alerts/{payload['id']}/close",
                data={"csrf": csrf[1], "note": "Le chat"},
                follow_redirects=False,
            )
            assert missing.status_code == 422
            assert 'id="close-error"' in missing.text
            assert home.drain(0.3) == []
            done = staff.post(
                f"/alerts/{payload['id']}/close",
                data={"csrf": csrf[1], "outcome": "false_alarm", "note": "Le chat"},
                follow_redirects=False,
            )
            assert done.status_code == 303
            _topic, raw, _ = home.get(5)
            assert (json.loads(raw)["action"], json.loads(raw)["note"]) == ("resolved", "Le chat")
            stats = staff.get("/statistiques")
            assert stats.status_code == 200
            homes = stats.text.split('id="stats-homes"')[1].split("</table>")[0]
            assert "logement h-0042" in homes
            cells = re.findall(r"<td>([^<]*)</td>", homes)
            assert cells[:4] == ["1", "0", "1", "100 %"]
            assert cells[4] == "42 s"
        [row] = hub_log(store)
        assert row["outcome"] == "false_alarm"
        assert [(n["channel"], n["step"]) for n in row["notified"]] == [("astreinte", 0)]
        assert set(row) == set(CONTRACT_FIELDS)  # --json keeps exactly DESIGN.md's fields
        table = subprocess.run(
            [VEILLE, "hub-log", "--store", store, "--csv"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        [line] = list(csv.DictReader(io.StringIO(table)))
        assert (line["outcome"], line["outcome_note"], line["ack_delay_s"]) == (
            "false_alarm",
            "Le chat",
            "42.0",
        )
        assert line["steps_reached"] == "1"
        assert json.loads(line["notified"])[0]["channel"] == "astreinte"
    finally:
        if home is not None:
            home.close()
        hub.stop()
        smtp.stop()
