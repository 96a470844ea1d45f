"""The simulated home behind `veille demo`: what its sensors send, day after day.

`SimulatedHome(profile, start, seed, scenario, tz).until(t)` returns everything the home's
sensors send in (last t, t]: Zigbee2MQTT messages (`Z2MOut`), BTHome v2 advertisements
(`BleOut`) and what the wearable streams (`WearableOut`: a real trace of a kind, replayed by
the demo, or a heartbeat). Days are generated one at a time, in order, each from its own
seeded generator, so the output depends on the seed only, never on how `until` is called.

Scripted incidents (`incidents`, for the demo to print) happen at the first local time of
their hour at least `INCIDENT_LEAD_S` after start, so a two-day run sees them all:
night exit 02:30, SOS 10:30, the kitchen motion sensor going silent 11:00, an inactivity
spell from 13:30, a fall 16:30.

`history_events` gives a normal routine's past days as normalized Events, so the demo can
seed the learned routine without waiting a week. Pure: no I/O, no clock.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from edge.const import DAY_S
from edge.events import Event, EventKind, Role, RoomKind
from edge.home import Device, HomeProfile
from edge.sim.devices import (
    KETTLE_W,
    MAINS_V,
    BthomeEmu,
    Report,
    SimOut,
    WearableOut,
    Z2MOut,
    ZigbeeEmu,
)
from edge.sim.resident import (
    FALL_STILL_S,
    INACTIVITY_STILL_S,
    DayPlan,
    DayScript,
    Level,
    at_local,
    plan_day,
)

SCENARIOS = ("normal", "fall", "inactivity", "night_exit", "sos", "all")
INCIDENT_HOUR = {
    "night_exit": 2.5,
    "sos": 10.5,
    "sensor_silent": 11.0,
    "inactivity": 13.5,
    "fall": 16.5,
}
SCENARIO_INCIDENTS: dict[str, tuple[str, ...]] = {
    "normal": (),
    "fall": ("fall",),
    "inactivity": ("inactivity",),
    "night_exit": ("night_exit",),
    "sos": ("sos",),
    "all": ("night_exit", "sos", "sensor_silent", "fall"),
}
INCIDENT_LEAD_S = 3600.0  # no incident in the first hour: the pipeline settles first
WEARABLE_HEARTBEAT_S = 300.0
ADL_PER_ACTIVE_H = 4.0  # short daily-activity traces the wearable streams while moving about
ADL_TRACE_S = 20.0
FALL_TRACE_S = 15.0
ADL_QUIET_S = 120.0  # no daily-activity trace this close before a fall
MOTION_MEAN_GAP_S = {Level.ACTIVE: 40.0, Level.CALM: 600.0}  # beyond the PIR's blind minute
PIR_BLIND_S = 60.0
CHECKIN_ANSWER_AFTER_S = 40.0  # the resident reaches the "ça va" button


WALK_STEP_S = 10.0  # simulated seconds between two sensors of the walk-through
# the state key each role's device changes when it acts
WALK_KEYS: dict[Role, str] = {
    Role.MOTION: "occupancy",
    Role.PRESENCE: "presence",
    Role.DOOR_ENTRANCE: "contact",
    Role.DOOR_FRIDGE: "contact",
    Role.DOOR: "contact",
    Role.BED: "contact",
    Role.CHAIR: "contact",
    Role.WATER_LEAK: "water_leak",
    Role.TOILET_FLUSH: "contact",
}


def walk_changes(emu: ZigbeeEmu) -> list[tuple[float, dict[str, Any]]]:
    """What one device reports when the walk-through makes it act: (delay s, changes)."""
    role = emu.device.role
    if role in (Role.SOS_BUTTON, Role.CHECKIN_BUTTON):
        return [(0.0, {"action": "single"})]
    if role is Role.POWER:
        return [(0.0, {"power": 1800.0, "state": "ON"}), (30.0, {"power": 0.0, "state": "OFF"})]
    key = WALK_KEYS.get(role)
    if key is None:  # a siren or a light: it reports, that is all the test can see
        return [(0.0, {})]
    now = bool(emu.state.get(key, False))
    return [(0.0, {key: not now}), (5.0, {key: now})]


def schedule_incidents(start: float, scenario: str, tz: tzinfo) -> list[tuple[float, str]]:
    """`[(time, name)]` of the scenario's incidents, sorted by time."""
    out = [
        (_next_local(start + INCIDENT_LEAD_S, INCIDENT_HOUR[name], tz), name)
        for name in SCENARIO_INCIDENTS[scenario]
    ]
    return sorted(out)


def _next_local(after: float, hours: float, tz: tzinfo) -> float:
    """The first wall-clock `hours` of a local day at or after `after`."""
    day = datetime.fromtimestamp(after, tz).date()
    for k in range(3):
        t = at_local(day + timedelta(days=k), hours, tz)
        if t >= after:
            return t
    raise AssertionError("unreachable: a local hour comes back within two days")


@dataclass(slots=True)
class _World:
    """The home's devices and the generation of one day of what they send."""

    profile: HomeProfile
    seed: int
    t0: float
    tz: tzinfo
    wearable_worn: bool = True
    radio: bool = True  # BTHome advertisements and the wearable (history needs neither)
    motion: dict[RoomKind, ZigbeeEmu] = field(default_factory=dict)
    by_role: dict[Role, ZigbeeEmu] = field(default_factory=dict)
    bthome: list[BthomeEmu] = field(default_factory=list)
    wearable: Device | None = None
    next_heartbeat: float = 0.0
    showers: list[float] = field(default_factory=list)
    in_bed: bool = True  # days start at midnight, in bed
    energy_kwh: float = 0.0  # the kettle plug's energy meter

    def __post_init__(self) -> None:
        for dev in self.profile.devices:
            kind = self.profile.room_kind(dev.room)
            if dev.source == "zigbee2mqtt":
                emu = ZigbeeEmu(dev, self.seed, self.t0)
                if dev.role is Role.MOTION and kind is not None:
                    self.motion.setdefault(kind, emu)
                else:
                    self.by_role.setdefault(dev.role, emu)
            elif dev.source == "bthome":
                wet = kind is RoomKind.BATHROOM
                self.bthome.append(BthomeEmu(dev, self.seed, self.t0, wet))
            elif dev.role is Role.WEARABLE and self.wearable is None:
                self.wearable = dev
        self.next_heartbeat = self.t0 + random.Random(f"{self.seed}:hb").uniform(0, 60)

    def zigbee(self) -> list[ZigbeeEmu]:
        return [*self.motion.values(), *self.by_role.values()]

    def hour_of(self, t: float) -> float:
        local = datetime.fromtimestamp(t, self.tz)
        return local.hour + local.minute / 60.0

    def lux_of(self, t: float) -> float:
        hour = self.hour_of(t)
        if 8.0 <= hour < 20.0:
            return 120.0 + 280.0 * math.sin(math.pi * (hour - 8.0) / 12.0)
        return 30.0  # a lamp

    def day(
        self, day: date, script: DayScript, fall_at: float | None
    ) -> tuple[DayPlan, list[Report], list[SimOut]]:
        """Generate `day`: its plan, the Zigbee reports and the other outputs."""
        plan = plan_day(day, self.tz, random.Random(f"{self.seed}:{day.isoformat()}"), script)
        rng = random.Random(f"{self.seed}:{day.isoformat()}:sensors")
        if plan.shower_at is not None:
            self.showers = [*self.showers[-2:], plan.shower_at]
        changes: dict[int, list[tuple[float, dict[str, Any]]]] = {}

        def add(emu: ZigbeeEmu | None, at: float, change: dict[str, Any]) -> None:
            if emu is not None:
                changes.setdefault(id(emu), []).append((at, change))

        detections: dict[RoomKind, list[float]] = {}
        for seg in plan.segments:
            mean = MOTION_MEAN_GAP_S.get(seg.level)
            if mean is None or seg.room is None:
                continue
            t = seg.start + rng.uniform(1.0, 10.0)
            while t < seg.end:
                detections.setdefault(seg.room, []).append(t)
                t += PIR_BLIND_S + rng.expovariate(1.0 / mean)
        for kind, emu in self.motion.items():
            for at, change in emu.motion_changes(detections.get(kind, []), plan.end, self.lux_of):
                add(emu, at, change)

        bed = self.by_role.get(Role.BED)
        if bed is not None:
            for seg in plan.segments:
                if (seg.level is Level.BED) != self.in_bed:
                    self.in_bed = not self.in_bed
                    add(bed, seg.start, {"contact": self.in_bed})

        self._chores(plan, rng, add)
        reports: list[Report] = []
        for emu in self.zigbee():
            todo = sorted(changes.get(id(emu), []), key=lambda c: c[0])
            reports += emu.run(todo, plan.end)
        others: list[SimOut] = []
        if not self.radio:
            return plan, reports, others
        for ble in self.bthome:
            others += ble.advertisements(plan.end, self.hour_of, self.showers)
        others += self._wearable(plan, rng, fall_at)
        return plan, reports, others

    def _chores(
        self,
        plan: DayPlan,
        rng: random.Random,
        add: Callable[[ZigbeeEmu | None, float, dict[str, Any]], None],
    ) -> None:
        busy_until: dict[str, float] = {}
        for chore in sorted(plan.chores, key=lambda c: c.at):
            if chore.at < busy_until.get(chore.kind, -math.inf):
                continue  # the fridge is already open
            busy_until[chore.kind] = chore.at + chore.duration_s + 1.0
            if chore.kind in ("door_entrance", "door_fridge"):
                emu = self.by_role.get(Role(chore.kind))
                add(emu, chore.at, {"contact": False})
                add(emu, chore.at + chore.duration_s, {"contact": True})
            elif chore.kind == "kettle":
                plug = self.by_role.get(Role.POWER)
                if plug is None:
                    continue
                for offset in (1.0, 61.0):
                    watts = round(KETTLE_W + rng.uniform(-60, 60), 1)
                    add(
                        plug,
                        chore.at + offset,
                        {"power": watts, "current": round(watts / MAINS_V, 2)},
                    )
                self.energy_kwh += KETTLE_W * chore.duration_s / 3.6e6
                add(
                    plug,
                    chore.at + chore.duration_s,
                    {"power": 0.0, "current": 0.0, "energy": round(self.energy_kwh, 2)},
                )
            elif chore.kind == "sos":
                add(self.by_role.get(Role.SOS_BUTTON), chore.at, {"action": "single"})

    def _wearable(self, plan: DayPlan, rng: random.Random, fall_at: float | None) -> list[SimOut]:
        if self.wearable is None:
            return []
        out: list[SimOut] = []
        while self.next_heartbeat < plan.end:
            out.append(WearableOut(self.next_heartbeat, "heartbeat", 0.0))
            self.next_heartbeat += WEARABLE_HEARTBEAT_S
        if not self.wearable_worn:
            return out
        rate = ADL_PER_ACTIVE_H / 3600.0
        for seg in plan.segments:
            if seg.level is not Level.ACTIVE or not plan.wake_at <= seg.start < plan.bed_at:
                continue  # worn by day; at night it charges (and still reports)
            t = seg.start + rng.expovariate(rate)
            while t + ADL_TRACE_S < seg.end:
                quiet = fall_at is not None and fall_at - ADL_QUIET_S - ADL_TRACE_S <= t <= (
                    fall_at + FALL_STILL_S
                )
                if not quiet:
                    out.append(WearableOut(t, "adl", ADL_TRACE_S))
                t += ADL_TRACE_S + 60.0 + rng.expovariate(rate)
        if fall_at is not None and plan.start <= fall_at < plan.end:
            out.append(WearableOut(fall_at, "fall", FALL_TRACE_S))
        return out


class SimulatedHome:
    """A resident living in `profile`'s home from `start`, with the scenario's incidents."""

    def __init__(
        self, profile: HomeProfile, start: float, seed: int, scenario: str, tz: tzinfo
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}, expected one of {SCENARIOS}")
        self.profile = profile
        self.scenario = scenario
        self.incidents: list[tuple[float, str]] = schedule_incidents(start, scenario, tz)
        self._when = {name: t for t, name in self.incidents}
        self._tz = tz
        self._world = _World(profile, seed, start, tz, wearable_worn=scenario != "inactivity")
        kitchen_pir = self._world.motion.get(RoomKind.KITCHEN)
        self.silent_device_id: str | None = None
        if "sensor_silent" in self._when and kitchen_pir is not None:
            kitchen_pir.silent_from = self._when["sensor_silent"]
            self.silent_device_id = kitchen_pir.device.id
        self._last = start
        self._next_day = datetime.fromtimestamp(start, tz).date()
        self._generated_until = at_local(self._next_day, 0.0, tz)
        self._heap: list[tuple[float, int, SimOut]] = []
        self._seq = 0
        self.plans: list[DayPlan] = []  # the days generated so far, for the demo and tests

    def until(self, t: float) -> list[SimOut]:
        """Everything the sensors send in (last t, t], ordered by time."""
        while self._generated_until < t:
            self._generate_day()
        out: list[SimOut] = []
        while self._heap and self._heap[0][0] <= t:
            at, _, item = heapq.heappop(self._heap)
            if at > self._last:
                out.append(item)
        self._last = max(self._last, t)
        return out

    def can_answer(self, at: float) -> bool:
        """Whether the resident could press a button at `at` (not still after an incident)."""
        for name, still_s in (("inactivity", INACTIVITY_STILL_S), ("fall", FALL_STILL_S)):
            t = self._when.get(name)
            if t is not None and t <= at < t + still_s:
                return False
        return True

    def answer_check_in(self, asked_at: float) -> float | None:
        """The gateway asked: the resident presses "ça va" a little later, if able to."""
        emu = self._world.by_role.get(Role.CHECKIN_BUTTON)
        if emu is None or not self.can_answer(asked_at):
            return None
        at = asked_at + CHECKIN_ANSWER_AFTER_S
        body = {"action": "single", "linkquality": emu.lqi}
        if emu.model.battery:
            body["battery"] = round(emu.battery_pct(at))
        item = Z2MOut(at, emu.topic, json.dumps(body, separators=(",", ":")).encode())
        heapq.heappush(self._heap, (at, self._seq, item))
        self._seq += 1
        return at

    def walk_through(self, at: float) -> list[str]:
        """The installer started the walk-through: the resident (with the installer) makes
        each Zigbee sensor act once, a few seconds apart, from `at`; a silent sensor gets a
        new battery first. Returns what was done, in French, for the demo's story."""
        told: list[str] = []
        for k, emu in enumerate(self._world.zigbee()):
            if emu.silent_from != math.inf:
                emu.silent_from = math.inf
                told.append(f"pile changée : {emu.device.id}")
            when = at + WALK_STEP_S * (k + 1)
            for dt_s, change in walk_changes(emu):
                rep = emu.report(when + dt_s, change)
                if rep is not None:
                    heapq.heappush(self._heap, (rep.at, self._seq, rep.out))
                    self._seq += 1
        return told

    def _generate_day(self) -> None:
        day = self._next_day
        day_start = at_local(day, 0.0, self._tz)
        day_end = at_local(day + timedelta(days=1), 0.0, self._tz)

        def on_day(name: str) -> float | None:
            t = self._when.get(name)
            return t if t is not None and day_start <= t < day_end else None

        script = DayScript(
            night_exit=on_day("night_exit"),
            sos=on_day("sos"),
            fall=on_day("fall"),
            inactivity=on_day("inactivity"),
        )
        plan, reports, others = self._world.day(day, script, self._when.get("fall"))
        self.plans.append(plan)
        for item in [r.out for r in reports] + others:
            heapq.heappush(self._heap, (item.at, self._seq, item))
            self._seq += 1
        self._next_day = day + timedelta(days=1)
        self._generated_until = plan.end


def history_events(
    profile: HomeProfile, start: float, days: int, seed: int, tz: tzinfo
) -> list[Event]:
    """A normal routine's activity events for the `days` days before `start`, normalized."""
    first = start - days * DAY_S
    world = _World(profile, seed, first, tz, radio=False)
    day = datetime.fromtimestamp(first, tz).date()
    events: list[Event] = []
    while at_local(day, 0.0, tz) < start:
        _, reports, _ = world.day(day, DayScript(), None)
        for rep in reports:
            if first <= rep.at < start:
                events += _events(profile, rep)
        day += timedelta(days=1)
    events.sort(key=lambda e: e.at)
    return events


_FIELD_KIND = {
    "occupancy": EventKind.MOTION,
    "contact": EventKind.OPEN,
    "power": EventKind.POWER,
    "action": EventKind.ACTION,
}


def _events(profile: HomeProfile, rep: Report) -> list[Event]:
    """A report's reported changes as the events the gateway's decoder makes of them."""
    dev = rep.device
    out: list[Event] = []
    for name, value in rep.changes.items():
        kind = _FIELD_KIND.get(name)
        if kind is None:
            continue
        if kind is EventKind.OPEN and dev.role is Role.BED:
            kind = EventKind.PRESENCE  # the bed mat's contact is closed while lain on
        elif kind is EventKind.OPEN:
            value = not value  # noqa: PLW2901  (Zigbee2MQTT's contact true means closed)
        out.append(
            Event(
                dev.id, kind, value, rep.at, "sim", dev.room, profile.room_kind(dev.room), dev.role
            )
        )
    return out
