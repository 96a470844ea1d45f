"""`veille eval-inactivity --history H --monitor M [--until T] --json` (DESIGN.md section 4).

Learns the resident's routine from H (its events replayed through the production
`RoutineDetector`; nothing is printed for H), then replays M through the same detector on
event time, advancing time in `STEP_S` steps between events and on to `--until` (default:
the last event of M) as a silent home would, and prints one JSON line per alert raised.

Times are the files' `epoch_s` (the home's local clock read as if UTC), so the detector runs
with tz=UTC and `raised_at` is printed on that same basis with a `Z`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from edge.detect.routine import RoutineDetector
from edge.errors import VeilleError
from edge.events import Emission, Event, Finding, iso_utc, parse_iso_utc
from edge.home import Thresholds
from edge.replay import load_events, rooms_of

_LOGGER = logging.getLogger(__name__)

STEP_S = 60.0  # event-time step between checks, like the gateway's one-minute tick
CONTINUITY_S = 86400.0  # a monitor file starting within a day of the history continues it


def replay(
    detector: RoutineDetector,
    events: Sequence[Event],
    until: float,
    *,
    start: float | None = None,
    step_s: float = STEP_S,
    checkpoints: Iterable[float] = (),
    on_checkpoint: Callable[[float], None] | None = None,
) -> list[Emission]:
    """Feed `events` in order and advance time every `step_s` up to `until`.

    At each checkpoint time (ascending) `on_checkpoint(t)` is called once every event at or
    before `t` has been fed and time has been advanced to `t`.
    """
    out: list[Emission] = []
    marks = sorted(checkpoints)
    m = 0
    i = 0
    n = len(events)
    t = start if start is not None else (events[0].at if events else until)
    while True:
        target = min(t, until)
        while m < len(marks) and marks[m] <= target:
            mark = marks[m]
            while i < n and events[i].at <= mark:
                out.extend(detector.feed(events[i]))
                i += 1
            out.extend(detector.advance(mark))
            if on_checkpoint is not None:
                on_checkpoint(mark)
            m += 1
        while i < n and events[i].at <= target:
            out.extend(detector.feed(events[i]))
            i += 1
        out.extend(detector.advance(target))
        if target >= until:
            break
        t = target + step_s
    return out


def learn(events: Sequence[Event], thresholds: Thresholds | None = None) -> RoutineDetector:
    """A detector that has lived through `events` (its learned model included)."""
    th = thresholds or Thresholds()
    detector = RoutineDetector(rooms_of(events), dt.UTC, th)
    for ev in events:
        detector.feed(ev)
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


def evaluate(
    history: Sequence[Event], monitor: Sequence[Event], until: float | None = None
) -> list[Finding]:
    """The alerts the production detectors raise on `monitor` after learning `history`."""
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
    emissions = replay(detector, monitor, end, start=start)
    return [f for f in raised(emissions) if f.at >= first]


def main(args: argparse.Namespace) -> int:
    """CLI entry point: print one JSON line per alert raised on the monitor events."""
    history = load_events(Path(args.history))
    monitor = load_events(Path(args.monitor))
    until = None
    if getattr(args, "until", None):
        try:
            until = parse_iso_utc(args.until)
        except ValueError as exc:
            raise VeilleError(f"--until {args.until!r}: {exc}") from exc
    if not history:
        raise VeilleError(f"{args.history}: no usable events to learn from")
    if not monitor and until is None:
        raise VeilleError(f"{args.monitor}: no usable events and no --until")
    for finding in evaluate(history, monitor, until):
        line = {
            "type": str(finding.type),
            "raised_at": iso_utc(finding.at),
            "severity": str(finding.severity),
            "evidence": dict(finding.evidence),
        }
        sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0
