"""`veille eval-inactivity --history H --monitor M [--until T] [--unresponsive-from T] --json`.

Learns the resident's routine from H (its events replayed through the production
`RoutineDetector`; nothing is printed for H), then replays M through the same detector on
event time, advancing time in `STEP_S` steps between events and on to `--until` (default:
the last event of M) as a silent home would, and prints one JSON line per alert raised
(DESIGN.md section 4).

Where the detector asks the resident first (a check-in, local, never sent to the hub), one
line `{"type": "check_in", "raised_at", "answered", "evidence"}`. The simulated resident
answers every check-in `ANSWER_AFTER_S` later with a press of a `checkin_button`, except
those raised at or after `--unresponsive-from` (and, in H, answers them all).

Times are the files' `epoch_s` (the home's local clock read as if UTC), so the detector runs
with tz=UTC and `raised_at` is printed on that same basis with a `Z`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import json
import logging
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from cloud_bridge.contract import iso_utc, parse_iso_utc
from cloud_bridge.errors import VeilleError
from edge.commands.replay import load_events, rooms_of
from edge.detect.inactivity import RoutineDetector
from edge.events import CheckIn, Emission, Event, EventKind, Finding, Role
from edge.home import Thresholds

_LOGGER = logging.getLogger(__name__)

STEP_S = 60.0  # event-time step between checks (the gateway ticks every second, TICK_S)
CONTINUITY_S = 86400.0  # a monitor file starting within a day of the history continues it
ANSWER_AFTER_S = 30.0  # the simulated resident presses "ça va" this long after being asked
ANSWER_DEVICE = "checkin-button"

Answerer = Callable[[CheckIn], float | None]  # a check-in asked -> when it is answered


def answer_until(unresponsive_from: float = math.inf) -> Answerer:
    """A resident who answers every check-in asked before `unresponsive_from`."""

    def when(ask: CheckIn) -> float | None:
        return ask.at + ANSWER_AFTER_S if ask.at < unresponsive_from else None

    return when


def button_press(at: float) -> Event:
    """The simulated resident's answer: a press of the check-in button."""
    return Event(ANSWER_DEVICE, EventKind.ACTION, "single", at, "replay", role=Role.CHECKIN_BUTTON)


def replay(
    detector: RoutineDetector,
    events: Sequence[Event],
    until: float,
    *,
    start: float | None = None,
    step_s: float = STEP_S,
    checkpoints: Iterable[float] = (),
    on_checkpoint: Callable[[float], None] | None = None,
    answer: Answerer | None = None,
) -> list[Emission]:
    """Feed `events` in order and advance time every `step_s` up to `until`.

    At each checkpoint time (ascending) `on_checkpoint(t)` is called once every event at or
    before `t` has been fed and time has been advanced to `t`. With `answer`, each check-in
    the detector asks is answered by a button press at the time `answer` gives (None: never).
    """
    out: list[Emission] = []
    answers: list[float] = []
    marks = sorted(checkpoints)
    m = 0
    i = 0
    n = len(events)

    def take(emissions: list[Emission]) -> None:
        out.extend(emissions)
        if answer is None:
            return
        for e in emissions:
            if isinstance(e, CheckIn) and e.action == "ask":
                when = answer(e)
                if when is not None:
                    heapq.heappush(answers, when)

    def feed_to(limit: float) -> None:
        nonlocal i
        while True:
            t_ev = events[i].at if i < n else math.inf
            t_ans = answers[0] if answers else math.inf
            if min(t_ev, t_ans) > limit:
                return
            if t_ans < t_ev:
                heapq.heappop(answers)
                take(detector.feed(button_press(t_ans)))
            else:
                take(detector.feed(events[i]))
                i += 1

    t = start if start is not None else (events[0].at if events else until)
    while True:
        target = min(t, until)
        while m < len(marks) and marks[m] <= target:
            mark = marks[m]
            feed_to(mark)
            take(detector.advance(mark))
            if on_checkpoint is not None:
                on_checkpoint(mark)
            m += 1
        feed_to(target)
        take(detector.advance(target))
        if target >= until:
            break
        t = target + step_s
    return out


def learn(events: Sequence[Event], thresholds: Thresholds | None = None) -> RoutineDetector:
    """A detector that has lived through `events` (its learned model included), every
    check-in answered."""
    th = thresholds or Thresholds()
    detector = RoutineDetector(rooms_of(events), dt.UTC, th)
    if events:
        replay(detector, events, events[-1].at, answer=answer_until())
    return detector


def raised(emissions: Iterable[Emission]) -> list[Finding]:
    """First raise of each alert key, in order (escalations of an open alert are not new)."""
    seen: set[str] = set()
    out: list[Finding] = []
    for e in emissions:
        if isinstance(e, Finding) and e.action == "raise" and e.key not in seen:
            seen.add(e.key)
            out.append(e)
    return out


def check_ins(emissions: Iterable[Emission]) -> list[tuple[CheckIn, bool]]:
    """Every check-in asked, with whether it was answered."""
    asked: dict[str, CheckIn] = {}
    answered: dict[str, bool] = {}
    for e in emissions:
        if not isinstance(e, CheckIn):
            continue
        if e.action == "ask":
            asked[e.key] = e
        else:
            answered[e.key] = e.action == "answered"
    return [(ask, answered.get(key, False)) for key, ask in asked.items()]


def evaluate(
    history: Sequence[Event],
    monitor: Sequence[Event],
    until: float | None = None,
    unresponsive_from: float = math.inf,
) -> list[dict[str, Any]]:
    """The lines `veille eval-inactivity` prints: alerts raised and check-ins, in time order."""
    th = Thresholds()
    detector = learn(history, th)
    if not monitor and until is None:
        return []
    first = monitor[0].at if monitor else (until or 0.0)
    end = until if until is not None else monitor[-1].at
    last_h = history[-1].at if history else None
    if last_h is None or not 0 <= first - last_h <= CONTINUITY_S:
        # a different period: keep what was learned, not the moment the history ended in
        rooms = {**rooms_of(history), **rooms_of(monitor)}
        detector = RoutineDetector(rooms, dt.UTC, th, detector.model)
        start = first
    else:
        start = last_h
    emissions = replay(detector, monitor, end, start=start, answer=answer_until(unresponsive_from))
    lines: list[tuple[float, dict[str, Any]]] = []
    for f in raised(emissions):
        if f.at >= first:
            lines.append(
                (
                    f.at,
                    {
                        "type": str(f.type),
                        "raised_at": iso_utc(f.at),
                        "severity": str(f.severity),
                        "evidence": dict(f.evidence),
                    },
                )
            )
    for ask, ok in check_ins(emissions):
        if ask.at >= first:
            line = {
                "type": "check_in",
                "raised_at": iso_utc(ask.at),
                "answered": ok,
                "evidence": dict(ask.evidence),
            }
            lines.append((ask.at, line))
    lines.sort(key=lambda tl: tl[0])
    return [line for _, line in lines]


def _time_arg(name: str, text: str | None) -> float | None:
    if not text:
        return None
    try:
        return parse_iso_utc(text)
    except ValueError as exc:
        raise VeilleError(f"{name} {text!r}: {exc}") from exc


def main(args: argparse.Namespace) -> int:
    """CLI entry point: print one JSON line per alert raised and per check-in."""
    history = load_events(Path(args.history))
    monitor = load_events(Path(args.monitor))
    until = _time_arg("--until", getattr(args, "until", None))
    unresponsive = _time_arg("--unresponsive-from", getattr(args, "unresponsive_from", None))
    if not history:
        raise VeilleError(f"{args.history}: no usable events to learn from")
    if not monitor and until is None:
        raise VeilleError(f"{args.monitor}: no usable events and no --until")
    lines = evaluate(history, monitor, until, math.inf if unresponsive is None else unresponsive)
    for line in lines:
        sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0
