"""Rule detectors: SOS button, sensor offline, low battery and room temperature.

Pure: events and the current time in, `Finding`s out; no I/O, no clock. Every finding carries
a stable key (`sos:{device}`, `offline:{device}`, `battery:{device}`,
`temperature:{room}:{cold|hot|extreme_heat}`), so the alert book raises one alert per open
condition and the next occurrence after a resolve is a new alert.

A device is offline when silent longer than `max(offline_floor_min, OFFLINE_FACTOR x usual)`,
its usual interval being learned from its own reports (`GapHistogram`), or a default per source
until `LEARN_MIN_S` of reporting was seen. A device not heard since start gets at least its
default limit, counted from start (the gateway may have just started).
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cloud_bridge.contract import AlertType, Severity
from edge.events import Event, EventKind, Finding, Role
from edge.home import Device, HomeProfile, Thresholds

_LOGGER = logging.getLogger(__name__)

STATE_VERSION = 1
OFFLINE_FACTOR = 3.0  # silent for this many usual intervals -> offline
GAP_QUANTILE = 0.9  # of the time spent silent
GAP_BINS_PER_OCTAVE = 4  # histogram resolution: bins 19 % wide
GAP_MAX_BIN = GAP_BINS_PER_OCTAVE * 18  # 2**18 s = 73 h
GAP_HALF_LIFE_S = 3 * 86400.0  # older silences weigh half after three days of reporting
LEARN_MIN_S = 6 * 3600.0  # observed reporting before the learned interval replaces the default
MIN_GAP_S = 1.0  # reports closer than this are one report (one payload -> several events)
DEFAULT_INTERVAL_S: Mapping[str, float] = {
    "zigbee2mqtt": 3600.0,  # battery Zigbee devices check in at least about hourly
    "bthome": 60.0,  # BTHome sensors advertise every minute or so
    "wearable": 1.0,  # a streaming wearable
}
FALLBACK_INTERVAL_S = 3600.0
BATTERY_HYSTERESIS_PCT = 10.0
TEMP_HYSTERESIS_C = 1.0
TEMP_EXTREME_C = 35.0
TEMP_COLD_SUSTAIN_S = 3600.0
TEMP_HOT_SUSTAIN_S = 1800.0
TEMP_READING_MAX_AGE_S = 3 * 3600.0  # older readings no longer speak for the room
TEMP_PLAUSIBLE_C = (-40.0, 85.0)
PROTECTIVE_ROLES = frozenset({Role.SOS_BUTTON, Role.WEARABLE})  # high severity: they guard
DEVICE_ALERTS: Mapping[str, AlertType] = {
    "sos": AlertType.SOS,
    "offline": AlertType.SENSOR_OFFLINE,
    "battery": AlertType.LOW_BATTERY,
    "water_leak": AlertType.WATER_LEAK,
}
Action = Literal["raise", "resolve"]


@dataclass(frozen=True, slots=True)
class TempRule:
    """One sustained room-temperature condition."""

    name: str
    side: Literal["below", "above"]
    threshold: Callable[[Thresholds], float]
    sustain_s: float
    severity: Severity


TEMP_RULES: tuple[TempRule, ...] = (
    TempRule("cold", "below", lambda t: t.temp_low_c, TEMP_COLD_SUSTAIN_S, Severity.WARNING),
    TempRule("hot", "above", lambda t: t.temp_high_c, TEMP_HOT_SUSTAIN_S, Severity.WARNING),
    TempRule("extreme_heat", "above", lambda t: TEMP_EXTREME_C, TEMP_HOT_SUSTAIN_S, Severity.HIGH),
)


class GapHistogram:
    """Time-weighted, decaying histogram of the silences between one device's reports.

    Bin i holds gaps in (2**((i-1)/4), 2**(i/4)] s; each gap adds its own length, so a burst of
    motion reports weighs little against the long heartbeat silences that set the limit (a
    count-based window would forget those after a busy hour). Each gap first decays older
    weight by its length (half-life `GAP_HALF_LIFE_S`), bounding memory without timestamps.
    Reports closer than `MIN_GAP_S` are one report; an outage is not learned.
    """

    def __init__(self, weights: Mapping[int, float] | None = None, observed_s: float = 0.0):
        self.weights: dict[int, float] = dict(weights or {})
        self.observed_s = observed_s  # total silence learned, not decayed
        self._cache: dict[float, float] = {}  # quantile -> value, until the next gap

    def add(self, gap_s: float) -> None:
        decay = 0.5 ** (gap_s / GAP_HALF_LIFE_S)
        self.weights = {i: w * decay for i, w in self.weights.items() if w * decay > 1e-3}
        i = min(GAP_MAX_BIN, max(0, math.ceil(GAP_BINS_PER_OCTAVE * math.log2(gap_s))))
        self.weights[i] = self.weights.get(i, 0.0) + gap_s
        self.observed_s += gap_s
        self._cache.clear()

    def quantile(self, q: float) -> float:
        """Upper edge of the bin where the time-weighted quantile `q` falls (0 when empty)."""
        if q not in self._cache:
            target, acc, self._cache[q] = q * sum(self.weights.values()), 0.0, 0.0
            for i in sorted(self.weights):
                acc += self.weights[i]
                if acc >= target:
                    self._cache[q] = float(2 ** (i / GAP_BINS_PER_OCTAVE))
                    break
        return self._cache[q]

    def to_dict(self) -> dict[str, Any]:
        weights = {str(i): round(w, 3) for i, w in sorted(self.weights.items())}
        return {"observed_s": round(self.observed_s, 1), "weights": weights}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GapHistogram:
        """Rebuild from `to_dict`; ValueError/TypeError/AttributeError on a bad document."""
        weights = {int(k): float(v) for k, v in data["weights"].items()}
        if not all(0 <= i <= GAP_MAX_BIN and w >= 0 for i, w in weights.items()):
            raise ValueError("gap histogram out of range")
        return cls(weights, float(data["observed_s"]))


@dataclass(slots=True)
class _DeviceState:
    device: Device
    gaps: GapHistogram = field(default_factory=GapHistogram)
    last_seen: float | None = None
    battery: float | None = None
    offline: bool = False  # an offline finding is open
    low_battery: bool = False  # a battery finding is open
    leaking: bool = False  # a water_leak finding is open


@dataclass(slots=True)
class _TempCondition:
    since: float | None = None  # when the room went beyond the threshold
    raised: bool = False


class RuleDetector:
    """SOS, sensor_offline, low_battery and temperature rules for one home."""

    def __init__(self, profile: HomeProfile, state: Mapping[str, Any] | None = None) -> None:
        self._th = profile.thresholds
        self._devices = {d.id: _DeviceState(d) for d in profile.devices}
        self._rooms = sorted({d.room for d in profile.devices if d.room})
        self._temps: dict[str, tuple[float, float]] = {}  # device -> (celsius, at)
        self._conds = {(r, rule.name): _TempCondition() for r in self._rooms for rule in TEMP_RULES}
        self._temp_rooms: list[str] = []  # rooms with a temperature reading: rules to update
        self._start: float | None = None
        self._now = -math.inf
        self._due = -math.inf  # no device can go offline before this time (a lower bound)
        self._unknown: set[str] = set()
        if state:
            self._restore(state)

    # ---- inputs ---------------------------------------------------------------------------

    def feed(self, event: Event) -> list[Finding]:
        """Take one event; returns findings due by its time and those it causes."""
        out = self.advance(event.at)
        st = self._devices.get(event.device_id)
        if st is None:
            if event.device_id not in self._unknown:
                self._unknown.add(event.device_id)
                _LOGGER.debug("rules: ignoring device %s, not in the profile", event.device_id)
            return out
        out += self._heard(st, event.at)
        if event.kind is EventKind.ACTION:
            out += self._sos(st, event)
        elif event.kind is EventKind.BATTERY:
            out += self._battery(st, event)
        elif event.kind is EventKind.TEMPERATURE:
            out += self._temperature(st, event)
        elif event.kind is EventKind.WATER_LEAK:
            out += self._water_leak(st, event)
        return out

    def advance(self, now: float) -> list[Finding]:
        """Let time run on to `now`: raise what became due (offline, sustained temperature)."""
        if self._start is None:
            self._start = now
        if now < self._now:
            return []  # late events do not move time back
        self._now = now
        out: list[Finding] = []
        if now >= self._due:  # some device may be due: look at each, keep the next deadline
            self._due = math.inf
            for st in self._devices.values():
                if st.offline:
                    continue
                deadline = self._deadline(st)
                if now >= deadline:
                    out.append(self._offline_finding(st, now))
                else:
                    self._due = min(self._due, deadline)
        for room in self._temp_rooms:  # a room never given a reading has nothing to update
            out += self._update_room(room, now)
        return out

    # ---- sos ------------------------------------------------------------------------------

    def _sos(self, st: _DeviceState, event: Event) -> list[Finding]:
        press = event.value
        if st.device.role is not Role.SOS_BUTTON or not isinstance(press, str) or not press:
            return []
        if press.endswith("release"):  # release, long_release: the end of a press already sent
            return []
        return [self._finding(st, "sos", "raise", event.at, {"button": press})]

    # ---- sensor offline -------------------------------------------------------------------

    def _heard(self, st: _DeviceState, at: float) -> list[Finding]:
        if st.last_seen is not None and at - st.last_seen < MIN_GAP_S:
            st.last_seen = max(st.last_seen, at)
            return []
        out: list[Finding] = []
        if st.offline:
            silent_s = at - (st.last_seen if st.last_seen is not None else at)
            st.offline = False
            out.append(self._finding(st, "offline", "resolve", at, {"silent_min": silent_s / 60}))
        elif st.last_seen is not None:
            st.gaps.add(at - st.last_seen)  # an outage's gap is not a usual silence
        st.last_seen = at
        self._due = min(self._due, self._deadline(st))  # a shorter learned interval: earlier
        return out

    def usual_interval_s(self, device_id: str) -> float:
        """The device's learned (or default) usual report interval, seconds."""
        return self._usual_s(self._devices[device_id])

    def _usual_s(self, st: _DeviceState) -> float:
        if st.gaps.observed_s < LEARN_MIN_S:
            return DEFAULT_INTERVAL_S.get(st.device.source, FALLBACK_INTERVAL_S)
        return st.gaps.quantile(GAP_QUANTILE)

    def _limit_s(self, st: _DeviceState) -> float:
        floor_s = self._th.offline_floor_min * 60
        limit = max(floor_s, OFFLINE_FACTOR * self._usual_s(st))
        if st.last_seen is None:  # never heard since start: give it at least the default
            default = DEFAULT_INTERVAL_S.get(st.device.source, FALLBACK_INTERVAL_S)
            limit = max(limit, floor_s, OFFLINE_FACTOR * default)
        return limit

    def _deadline(self, st: _DeviceState) -> float:
        ref = st.last_seen if st.last_seen is not None else self._start
        return (ref if ref is not None else math.inf) + self._limit_s(st)

    def _offline_finding(self, st: _DeviceState, now: float) -> Finding:
        st.offline = True
        limit_s = self._limit_s(st)
        evidence = {
            "silent_min": limit_s / 60,
            "usual_interval_min": self._usual_s(st) / 60,
            "learned": st.gaps.observed_s >= LEARN_MIN_S,
            "never_heard": st.last_seen is None,
        }
        return self._finding(st, "offline", "raise", min(now, self._deadline(st)), evidence)

    # ---- battery --------------------------------------------------------------------------

    def _water_leak(self, st: _DeviceState, event: Event) -> list[Finding]:
        """A leak sensor wet: an alert until it dries."""
        if not isinstance(event.value, bool) or event.value == st.leaking:
            return []
        st.leaking = event.value
        action: Action = "raise" if event.value else "resolve"
        return [self._finding(st, "water_leak", action, event.at, {"wet": event.value})]

    def _battery(self, st: _DeviceState, event: Event) -> list[Finding]:
        if isinstance(event.value, bool):  # `battery_low` from a sensor with no percentage
            return self._battery_flag(st, event)
        pct = _number(event.value)
        if pct is None or not 0 <= pct <= 100:
            _LOGGER.warning("rules: bad battery value %r from %s", event.value, event.device_id)
            return []
        st.battery = pct
        low = self._th.battery_low_pct
        evidence = {"battery_pct": pct, "threshold_pct": low}
        if not st.low_battery and pct < low:
            st.low_battery = True
            return [self._finding(st, "battery", "raise", event.at, evidence)]
        if st.low_battery and pct >= low + BATTERY_HYSTERESIS_PCT:
            st.low_battery = False
            return [self._finding(st, "battery", "resolve", event.at, evidence)]
        return []

    def _battery_flag(self, st: _DeviceState, event: Event) -> list[Finding]:
        if st.battery is not None:
            return []  # the device also tells its percentage: that one decides
        low = bool(event.value)
        if low == st.low_battery:
            return []
        st.low_battery = low
        action: Action = "raise" if low else "resolve"
        return [self._finding(st, "battery", action, event.at, {"battery_low": low})]

    def _finding(
        self, st: _DeviceState, what: str, action: Action, at: float, evidence: Mapping[str, Any]
    ) -> Finding:
        """A device finding keyed `{what}:{device}`; `what` is sos, offline or battery."""
        if what == "sos":
            severity = Severity.CRITICAL
        elif what == "water_leak":
            severity = Severity.HIGH
        else:
            protective = st.device.role in PROTECTIVE_ROLES
            severity = Severity.HIGH if protective else Severity.WARNING
        return Finding(
            key=f"{what}:{st.device.id}",
            type=DEVICE_ALERTS[what],
            severity=severity,
            at=at,
            action=action,
            room=st.device.room,
            device_id=st.device.id,
            evidence={k: round(v, 1) if isinstance(v, float) else v for k, v in evidence.items()},
        )

    # ---- temperature ----------------------------------------------------------------------

    def _temperature(self, st: _DeviceState, event: Event) -> list[Finding]:
        celsius = _number(event.value)
        low, high = TEMP_PLAUSIBLE_C
        if celsius is None or not low <= celsius <= high or st.device.room is None:
            _LOGGER.warning("rules: unusable temperature %r from %s", event.value, event.device_id)
            return []
        if st.device.id not in self._temps and st.device.room not in self._temp_rooms:
            self._temp_rooms = sorted([*self._temp_rooms, st.device.room])
        self._temps[st.device.id] = (celsius, event.at)
        return self._update_room(st.device.room, max(event.at, self._now))

    def room_temperature(self, room: str, now: float) -> float | None:
        """Median of the room's fresh temperature readings, or None."""
        fresh = [
            c
            for dev_id, (c, at) in self._temps.items()
            if self._devices[dev_id].device.room == room and now - at <= TEMP_READING_MAX_AGE_S
        ]
        return statistics.median(fresh) if fresh else None

    def _update_room(self, room: str, now: float) -> list[Finding]:
        median = self.room_temperature(room, now)
        out: list[Finding] = []
        for rule in TEMP_RULES:
            cond = self._conds[(room, rule.name)]
            if median is None:  # no fresh reading: an open condition stays, a pending one ends
                cond.since = cond.since if cond.raised else None
                continue
            threshold = rule.threshold(self._th)
            excess = (threshold - median) if rule.side == "below" else (median - threshold)
            evidence: dict[str, Any] = {"temperature_c": round(median, 1), "threshold_c": threshold}
            action: Action
            if cond.raised:
                if excess > -TEMP_HYSTERESIS_C:
                    continue
                cond.raised, cond.since, action, at = False, None, "resolve", now
            else:
                if excess <= 0:
                    cond.since = None
                    continue
                cond.since = now if cond.since is None else cond.since
                if now - cond.since < rule.sustain_s:
                    continue
                cond.raised, action, at = True, "raise", cond.since + rule.sustain_s
                evidence["for_min"] = round(rule.sustain_s / 60)
            key = f"temperature:{room}:{rule.name}"
            out.append(
                Finding(key, AlertType.TEMPERATURE, rule.severity, at, action, room, None, evidence)
            )
        return out

    # ---- status and persistence -----------------------------------------------------------

    def device_status(self, now: float) -> list[dict[str, Any]]:
        """One row per profile device, for the status pages."""
        return [
            {
                "id": st.device.id,
                "room": st.device.room,
                "role": str(st.device.role),
                "last_seen": st.last_seen,
                "battery": st.battery,
                "offline": st.offline or (self._start is not None and now >= self._deadline(st)),
                "low_battery": st.low_battery,
            }
            for st in self._devices.values()
        ]

    def health(self, now: float) -> dict[str, int]:
        rows = self.device_status(now)
        return {
            "devices": len(rows),
            "offline": sum(1 for r in rows if r["offline"]),
            "low_battery": sum(1 for r in rows if r["low_battery"]),
        }

    def state_dict(self) -> dict[str, Any]:
        """Learned intervals and open conditions, JSON-serialisable (times are not kept)."""
        return {
            "version": STATE_VERSION,
            "intervals": {d: st.gaps.to_dict() for d, st in self._devices.items()},
            "offline": sorted(d for d, st in self._devices.items() if st.offline),
            "low_battery": sorted(d for d, st in self._devices.items() if st.low_battery),
            "temperature": sorted([r, n] for (r, n), c in self._conds.items() if c.raised),
        }

    def _restore(self, state: Mapping[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            _LOGGER.error("rules: ignoring saved state of version %r", state.get("version"))
            return
        for dev_id, doc in dict(state.get("intervals", {})).items():
            st = self._devices.get(dev_id)
            if st is None:
                continue
            try:
                st.gaps = GapHistogram.from_dict(doc)
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                _LOGGER.error("rules: ignoring saved intervals of %s: %r", dev_id, exc)
        for flag in ("offline", "low_battery"):
            for dev_id in state.get(flag, []):
                if dev_id in self._devices:
                    setattr(self._devices[dev_id], flag, True)
        for pair in state.get("temperature", []):
            cond = self._conds.get(tuple(pair)) if isinstance(pair, list) else None
            if cond is not None:
                cond.raised = True


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
