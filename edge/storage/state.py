"""What the home looks like right now, for the status pages and `/health`. In memory only.

Nothing here is a raw sensor stream: the last sign of activity and where, per-room activity
counts by hour for today, open alerts, device health, the hub link, recent daily summaries.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from edge.events import Aggregate, Alert, Event, EventKind, is_activity

RECENT_ALERTS = 50
DAILY_HISTORY = 30
BRIDGE_EVENTS = 50
# events that only say "I am alive": a walk-through step wants more than these
ALIVE_ONLY = frozenset({EventKind.HEARTBEAT, EventKind.LINKQUALITY, EventKind.BATTERY})


@dataclass
class UnknownDevice:
    source: str
    address: str
    count: int = 0
    last_seen: float = 0.0
    rssi: float | None = None


@dataclass
class HomeState:
    home_id: str
    tz: tzinfo
    ready: bool = False
    local_connected: bool = False
    hub_connected: bool = False
    hub_last_connected: float | None = None
    hub_refused: int = 0  # messages the hub broker refused (PUBACK failure): a config error
    time_synced: bool = True
    last_activity_at: float | None = None
    last_activity_room: str | None = None
    open_alerts: list[Alert] = field(default_factory=list)
    recent_alerts: deque[Alert] = field(default_factory=lambda: deque(maxlen=RECENT_ALERTS))
    devices: list[dict[str, Any]] = field(default_factory=list)
    unknown: dict[str, UnknownDevice] = field(default_factory=dict)
    today: str = ""
    today_rooms: dict[str, list[int]] = field(default_factory=dict)  # room -> 24 hourly counts
    daily: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=DAILY_HISTORY))
    outbox: dict[str, int] = field(default_factory=dict)
    storage_health: str = "ok"
    # per registered device: (time, kind) of its last event of any kind (walk-through test)
    device_last: dict[str, tuple[float, str]] = field(default_factory=dict)
    device_signal: dict[str, float] = field(default_factory=dict)  # last LQI / RSSI
    # last time each device reported more than being alive (the walk-through's tick)
    device_acted: dict[str, float] = field(default_factory=dict)
    # Zigbee2MQTT bridge, for the installer's pairing page
    bridge_online: bool | None = None
    bridge_devices: tuple[Any, ...] = ()  # edge.decode.zigbee2mqtt.BridgeDevice
    bridge_events: deque[tuple[float, Any]] = field(
        default_factory=lambda: deque(maxlen=BRIDGE_EVENTS)
    )  # (time, BridgeEvent)
    check_in: Any = None  # the open check-in (edge.events.CheckIn), asked, not yet over

    def note_event(self, event: Event) -> None:
        self.device_last[event.device_id] = (event.at, str(event.kind))
        if event.kind not in ALIVE_ONLY:
            self.device_acted[event.device_id] = event.at
        if event.kind is EventKind.LINKQUALITY and isinstance(event.value, int | float):
            self.device_signal[event.device_id] = float(event.value)
        if not is_activity(event) or event.room is None:
            return
        self.last_activity_at = event.at
        self.last_activity_room = event.room
        local = datetime.fromtimestamp(event.at, self.tz)
        day = local.date().isoformat()
        if day != self.today:
            self.today = day
            self.today_rooms = {}
        self.today_rooms.setdefault(event.room, [0] * 24)[local.hour] += 1

    def note_bridge(self, result: Any, at: float) -> None:
        """What a Zigbee2MQTT bridge message told (a `Z2mResult`): devices, joins, online."""
        if result.bridge_devices is not None:
            self.bridge_devices = tuple(result.bridge_devices)
        if result.bridge_event is not None:
            self.bridge_events.append((at, result.bridge_event))
        if result.bridge_online is not None:
            self.bridge_online = result.bridge_online

    def note_unknown(self, source: str, address: str, at: float, rssi: float | None = None) -> None:
        dev = self.unknown.setdefault(f"{source}:{address}", UnknownDevice(source, address))
        dev.count += 1
        dev.last_seen = at
        if rssi is not None:
            dev.rssi = rssi

    def note_check_in(self, check_in: Any) -> None:
        """A check-in asked or ended (`edge.events.CheckIn`): the page shows the open one."""
        self.check_in = check_in if check_in.action == "ask" else None

    def note_alerts(self, alerts: list[Alert], open_alerts: list[Alert]) -> None:
        self.recent_alerts.extend(alerts)
        self.open_alerts = open_alerts

    def note_daily(self, aggregate: Aggregate) -> None:
        self.daily.append(dict(aggregate.body))

    def health(self) -> str:
        """ok | warning | error: what `/health` and the status message report."""
        if not self.ready or self.hub_refused or self.storage_health == "error":
            return "error"
        if self.storage_health != "ok" or not self.time_synced or not self.hub_connected:
            return "warning"
        return "ok"

    def health_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "home_id": self.home_id,
            "health": self.health(),
            "local_broker": self.local_connected,
            "hub": self.hub_connected,
            "time_synced": self.time_synced,
            "outbox": dict(self.outbox),
            "unknown_devices": len(self.unknown),
            "open_alerts": len(self.open_alerts),
        }
