"""The simulated home for `veille demo`: a resident's routine and what the sensors send."""

from edge.sim.devices import (
    DEMO_BINDKEY,
    BleOut,
    SimOut,
    WearableOut,
    Z2MOut,
    bridge_devices_payload,
    demo_profile,
)
from edge.sim.home import SCENARIOS, SimulatedHome, history_events, schedule_incidents

__all__ = [
    "DEMO_BINDKEY",
    "SCENARIOS",
    "BleOut",
    "SimOut",
    "SimulatedHome",
    "WearableOut",
    "Z2MOut",
    "bridge_devices_payload",
    "demo_profile",
    "history_events",
    "schedule_incidents",
]
