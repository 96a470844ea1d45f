"""The alert book's lifecycle, as a table of findings and acks in, messages out."""

from __future__ import annotations

from cloud_bridge.contract import AlertState, AlertType, Severity, iso_utc
from edge.alerts import AlertBook
from edge.events import Finding


def sos(at: float, action: str = "raise") -> Finding:
    return Finding("sos:b1", AlertType.SOS, Severity.CRITICAL, at, action)  # type: ignore[arg-type]


def silence(at: float, severity: Severity) -> Finding:
    return Finding("inactivity", AlertType.INACTIVITY, severity, at, evidence={"min": at / 60})


def ack(alert_id: str, action: str, at: float) -> dict[str, str]:
    return {"alert_id": alert_id, "action": action, "at": iso_utc(at), "by": "ana"}


def test_raise_ack_resolve_keeps_one_id_and_forgets_the_key() -> None:
    book = AlertBook("h-001")
    [raised] = book.apply(sos(10))
    assert book.apply(sos(11)) == []  # open: a repeat press is no new alert
    [acked] = book.on_ack(ack(raised.id, "acknowledged", 20))
    [resolved] = book.on_ack(ack(raised.id, "resolved", 30))
    assert [m.state for m in (raised, acked, resolved)] == [
        AlertState.RAISED,
        AlertState.ACKNOWLEDGED,
        AlertState.RESOLVED,
    ]
    assert {m.id for m in (raised, acked, resolved)} == {raised.id}
    assert acked.evidence["by"] == "ana"
    [again] = book.apply(sos(40))  # resolved: the next press is a new alert
    assert again.id != raised.id


def test_transitions_that_do_not_exist_are_ignored() -> None:
    book = AlertBook("h-001")
    [raised] = book.apply(sos(10))
    book.on_ack(ack(raised.id, "resolved", 20))
    assert book.on_ack(ack(raised.id, "acknowledged", 30)) == []
    assert book.on_ack(ack("no-such-id", "acknowledged", 30)) == []
    assert book.apply(sos(40, "resolve")) == []  # nothing open under that key


def test_escalation_resends_the_same_id_only_when_more_severe() -> None:
    book = AlertBook("h-001")
    [first] = book.apply(silence(60, Severity.WARNING))
    assert book.apply(silence(90, Severity.WARNING)) == []
    [worse] = book.apply(silence(120, Severity.CRITICAL))
    assert (worse.id, worse.state, worse.severity) == (first.id, AlertState.RAISED, "critical")
    assert worse.raised_at == first.raised_at
    assert book.apply(silence(150, Severity.HIGH)) == []  # never downgraded


def test_cancel_before_sending_is_logged_as_one_cancelled_message() -> None:
    book = AlertBook("h-001")
    pending = Finding(
        "fall:w:100", AlertType.FALL, Severity.CRITICAL, 112, "cancel", raised_at=100.0
    )
    [msg] = book.apply(pending)
    assert (msg.state, msg.raised_at, msg.at) == (AlertState.CANCELLED, 100.0, 112)
    assert not book.is_open("fall:w:100")


def test_open_alerts_survive_a_restart_through_state_dict() -> None:
    book = AlertBook("h-001")
    [raised] = book.apply(sos(10))
    again = AlertBook("h-001", book.state_dict())
    assert again.apply(sos(20)) == []
    assert [a.id for a in again.open_alerts()] == [raised.id]


def test_times_sent_after_an_ntp_step_are_corrected_detectors_untouched() -> None:
    from edge.events import Aggregate
    from edge.runtime.core import Outputs
    from edge.runtime.pipeline import shifted

    [alert] = AlertBook("h-001").apply(sos(1000.0))
    hour = Aggregate("hourly", 3600.0, 7200.0, {})
    out = shifted(Outputs([alert], [hour]), 86400.0)
    assert (out.alerts[0].at, out.alerts[0].raised_at) == (87400.0, 87400.0)
    assert (out.aggregates[0].period_start, out.aggregates[0].period_end) == (90000.0, 93600.0)
    assert alert.at == 1000.0  # the book's own copy keeps the steady clock
