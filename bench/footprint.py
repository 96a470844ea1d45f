"""Footprint of the gateway (issues 7, 16): `python -m bench.footprint [--quick]`.

Measured on the locked production set a Pi installs (`requirements/gateway.txt`, in its own
virtualenv `.venv-gateway`, built once by `bench._common.gateway_python`), for two homes:
the simulated home of `veille demo` (five rooms, ten Zigbee devices, two BTHome sensors, one
wearable) and the same home with its Zigbee devices alone. A simulator in this process
publishes its Zigbee2MQTT traffic on a real local Mosquitto and hands its BTHome
advertisements, plus **one wearable streaming real SisFall daily-activity trials at 50 Hz**
(frames of 8 samples, as the firmware sends), to the gateway at the bleak boundary
(`bench._gateway_child`: the `Gateway` of `veille run`, built from the same gateway.toml, BLE
scanning off, the radio read from a pipe).

0. Per-import RSS: a bare interpreter of that environment importing each library alone, and
   each home's set (baselines for the gateway figures).
1. Start-up: the real `veille run --config` subprocess, process start -> `/health` 200
   (subscribed and ready), 5 times, median; its RSS once ready with no traffic. First, once,
   its idle RSS with the page cache as found (how this benchmark measured before issue 16:
   right after `.venv-gateway` is built, ~19 MB of it are an artefact of the page cache,
   `bench._common.drop_libraries_from_page_cache`); then the environment's libraries are
   dropped from the page cache, and every later figure is the gateway's as after a boot.
   Each RSS comes with its parts (anonymous / file-backed, /proc/<pid>/status).
2. Steady state at real time for `STEADY_S` (600 s, the Zigbee-only home 300 s; 120 and 60 s
   with --quick): RSS from /proc/<pid>/status, CPU share of one core from /proc/<pid>/stat
   over the last `CPU_WINDOW_S`. Baseline in the same window: an idle paho subscriber on the
   same broker receiving the same Zigbee traffic (CPU, RSS).
3. A simulated week pushed through at `WEEK_SPEED` x with the hub broker down: RSS after it
   (no growth: compared with step 2), the outbox's size on disk (a week of backlog).
4. The hub broker back: time to drain that backlog through the real uplink; RSS and CPU again.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench._common import (
    GATEWAY_VENV,
    REPO,
    broker,
    cpu_share,
    disk_bytes,
    drop_libraries_from_page_cache,
    free_ports,
    gateway_python,
    median,
    provision,
    rss_mb,
    rss_parts_mb,
    start_process,
    stop_process,
    veille_run,
    wait_health,
    write_gateway_toml,
)
from bench._gateway_child import PiecewiseClock, record
from edge.events import Role

HOME = "bench-fp"
SEED = 1
STEADY_S = 600.0
STEADY_QUICK_S = 120.0
ZIGBEE_STEADY_S = 300.0  # the Zigbee-only home: half as long
ZIGBEE_STEADY_QUICK_S = 60.0
CPU_WINDOW_S = 60.0
CPU_WINDOW_QUICK_S = 30.0
AFTER_S = 60.0  # steady again after the week and the drain
AFTER_QUICK_S = 30.0
WEEK_S = 7 * 86400.0
WEEK_SPEED = 3600.0  # a simulated week in 168 s
STARTS = 5
DRIVE_STEP_S = 0.02
FS_HZ = 50
FRAME_SAMPLES = 8
TRACES = 6
DRAIN_TIMEOUT_S = 300.0
SIM_START = datetime(2024, 3, 4, 10, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
TARGETS = {"rss_zigbee_mb": 70.0, "rss_full_mb": 110.0, "cpu_pct": 2.0, "startup_s": 2.0}
# What each home's gateway loads (a Zigbee-only home: no numpy, onnxruntime, BLE)
ZIGBEE_LIBRARIES = ("paho.mqtt.client", "fastapi", "uvicorn", "tinydb", "sqlite3", "jinja2")
LIBRARIES = (*ZIGBEE_LIBRARIES, "numpy", "onnxruntime", "bthome_ble", "bleak")
# one library at a time, for the per-import table
EACH = ("numpy", "paho.mqtt.client", "tinydb", "jinja2", "fastapi", "uvicorn", "onnxruntime",
        "bthome_ble", "bleak", "cryptography.x509")  # fmt: skip
IDLE_SUBSCRIBER = """
import sys, time, paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
c.on_connect = lambda c, u, f, rc, p: c.subscribe("zigbee2mqtt/#", qos=1)
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_forever()
"""
VERSIONS = """
import json
from importlib import metadata
names = ("numpy", "onnxruntime", "fastapi", "pydantic", "uvicorn", "paho-mqtt", "bthome-ble")
print(json.dumps({n: metadata.version(n) for n in names}))
"""
RSS_AFTER_IMPORT = """
import importlib, sys
for m in sys.argv[1:]:
    importlib.import_module(m)
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        print(int(line.split()[1]) / 1024.0)
"""


class Driver:
    """The simulated home, moved on by the shared clock, writing to the broker and the pipe."""

    def __init__(self, profile: Any, clock: PiecewiseClock, pub: mqtt.Client, pipe: Any) -> None:
        from edge.sim import BleOut, SimulatedHome, Z2MOut
        from edge.sim.wearable import wearable_trace

        self._types = (Z2MOut, BleOut)
        self.sim = SimulatedHome(profile, SIM_START, SEED, "normal", ZoneInfo(profile.timezone))
        self.clock = clock
        self.pub = pub
        self.pipe = pipe
        self.lock = threading.Lock()
        self.trace = np.concatenate([wearable_trace("adl", SEED + k) for k in range(TRACES)])
        self.frames_sent = 0
        self.streams = any(d.role is Role.WEARABLE for d in profile.devices)
        self.w0 = time.monotonic()
        self.z2m = self.ble = 0
        self.stop = threading.Event()

    def send(self, kind: bytes, body: bytes) -> None:
        with self.lock:
            self.pipe.write(record(kind, body))
            self.pipe.flush()

    def set_clock(self, speed: float) -> None:
        """Change speed from now on, in this process and in the gateway."""
        mono = time.monotonic()
        start = self.clock.now()
        self.clock.set(start, mono, speed)
        self.send(b"C", json.dumps({"start": start, "mono": mono, "speed": speed}).encode())

    def step(self) -> None:
        z2m_out, ble_out = self._types
        for out in self.sim.until(self.clock.now()):
            if isinstance(out, z2m_out):
                self.pub.publish(out.topic, out.payload, qos=1)
                self.z2m += 1
            elif isinstance(out, ble_out):
                data = {k: bytes(v).hex() for k, v in out.service_data.items()}
                adv = {"address": out.address, "service_data": data, "rssi": out.rssi}
                self.send(b"B", json.dumps(adv).encode())
                self.ble += 1
        from edge.decode.wearable import encode_accel

        if not self.streams:
            return
        due = int((time.monotonic() - self.w0) * FS_HZ) // FRAME_SAMPLES
        n = self.trace.shape[0]
        while self.frames_sent < due:  # 50 Hz in real time, whatever the clock's speed
            i = (self.frames_sent * FRAME_SAMPLES) % (n - FRAME_SAMPLES)
            seq = self.frames_sent * FRAME_SAMPLES
            self.send(b"W", encode_accel(seq, self.trace[i : i + FRAME_SAMPLES]))
            self.frames_sent += 1

    def run(self) -> None:
        while not self.stop.is_set():
            self.step()
            time.sleep(DRIVE_STEP_S)


def _paho(port: int) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="z2m-bench", protocol=mqtt.MQTTv5)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _rss_importing(python: Path, modules: tuple[str, ...]) -> float:
    out = subprocess.run(
        [str(python), "-c", RSS_AFTER_IMPORT, *modules], capture_output=True, text=True, check=True
    )
    return round(float(out.stdout.strip()), 1)


def _imports(python: Path) -> dict[str, Any]:
    """RSS of a bare interpreter of the gateway's environment importing each library alone,
    and each home's set; start-up to exit of the full set (median of 3)."""
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        subprocess.run([str(python), "-c", f"import {', '.join(LIBRARIES)}"], check=True)
        times.append(time.monotonic() - t0)
    versions = subprocess.run(
        [str(python), "-c", VERSIONS], capture_output=True, text=True, check=True
    ).stdout
    return {
        "versions": json.loads(versions),
        "python_mb": _rss_importing(python, ()),
        "each_mb": {m: _rss_importing(python, (m,)) for m in EACH},
        "zigbee_set_mb": _rss_importing(python, ZIGBEE_LIBRARIES),
        "full_set_mb": _rss_importing(python, LIBRARIES),
        "full_set_import_s_median": round(median(times), 3),
        "zigbee_set": list(ZIGBEE_LIBRARIES),
        "full_set": list(LIBRARIES),
    }


def _idle_rss(config: Path, http_port: int, log: Path, veille: str) -> dict[str, float]:
    """RSS (and its parts) of `veille run` ready, 5 s after /health answered, no traffic."""
    proc = veille_run(config, log, veille)
    try:
        wait_health(proc, http_port, time.monotonic())
        time.sleep(5.0)
        return rss_parts_mb(proc.pid)
    finally:
        stop_process(proc)


def _startups(config: Path, http_port: int, work: Path, veille: str) -> dict[str, Any]:
    """Idle RSS with the page cache as found, then (libraries dropped from it) 5 timed
    starts; the last one's idle RSS."""
    as_found = _idle_rss(config, http_port, work / "start-as-found.log", veille)
    dropped = drop_libraries_from_page_cache(GATEWAY_VENV)
    times: list[float] = []
    rss_ready: dict[str, float] = {}
    for k in range(STARTS):
        t0 = time.monotonic()
        proc = veille_run(config, work / f"start-{k}.log", veille)
        try:
            times.append(wait_health(proc, http_port, t0))
            if k == STARTS - 1:
                time.sleep(5.0)
                rss_ready = rss_parts_mb(proc.pid)
        finally:
            stop_process(proc)
    return {
        "runs_s": [round(t, 3) for t in times],
        "median_s": round(median(times), 3),
        "veille_run_idle_rss_mb": rss_ready["rss_mb"],
        "veille_run_idle_rss_parts_mb": rss_ready,
        # the figure as this benchmark took it before issue 16 (page cache as found)
        "veille_run_idle_rss_as_found_mb": as_found,
        "libraries_dropped_from_page_cache": dropped,
    }


def _outbox_counts(port: int) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
        return dict(json.loads(r.read())["outbox"])


def _sample_rss(pid: int, seconds: float, every_s: float = 10.0) -> list[float]:
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(round(rss_mb(pid), 1))
        time.sleep(min(every_s, max(0.0, end - time.monotonic())))
    out.append(round(rss_mb(pid), 1))
    return out


def zigbee_only(profile: Any) -> Any:
    """The same home with its Zigbee devices alone (no BTHome sensor, no wearable)."""
    return dataclasses.replace(
        profile, devices=tuple(d for d in profile.devices if d.source == "zigbee2mqtt")
    )


def _home(profile: Any, python: Path, quick: bool, steady_s: float) -> dict[str, Any]:
    """One home's gateway through the four steps; figures in MiB, percent of one core, s."""
    from edge.sim import bridge_devices_payload

    window_s = CPU_WINDOW_QUICK_S if quick else CPU_WINDOW_S
    after_s = AFTER_QUICK_S if quick else AFTER_S
    veille = str(python.with_name("veille"))
    with tempfile.TemporaryDirectory(prefix="veille-bench-fp-") as tmp:
        work = Path(tmp)
        storage = work / "storage"
        provision(storage, profile)
        with broker(work / "local") as local, broker(work / "hub") as hub:
            (http_port,) = free_ports(1)
            config = write_gateway_toml(
                work / "gateway.toml",
                HOME,
                local_port=local.port,
                hub_port=hub.port,
                storage=storage,
                http_port=http_port,
            )
            pub = _paho(local.port)
            pub.publish("zigbee2mqtt/bridge/devices", bridge_devices_payload(profile), 1, True)
            pub.publish("zigbee2mqtt/bridge/state", b'{"state":"online"}', 1, True)
            startup = _startups(config, http_port, work, veille)

            clock = PiecewiseClock(SIM_START, time.monotonic(), 1.0)
            child = start_process(
                [str(python), "-m", "bench._gateway_child", str(config)],
                work / "child.log",
                stdin=subprocess.PIPE,
                cwd=REPO,
            )
            idle = start_process(
                [str(python), "-c", IDLE_SUBSCRIBER, str(local.port)], work / "idle.log"
            )
            assert child.stdin is not None
            driver = Driver(profile, clock, pub, child.stdin)
            driver.set_clock(1.0)
            wait_health(child, http_port, time.monotonic())
            driver.w0 = time.monotonic()
            thread = threading.Thread(target=driver.run, name="sim", daemon=True)
            thread.start()
            try:
                # 2. steady state at real time
                rss_steady = _sample_rss(child.pid, steady_s - window_s)
                cpu_child, cpu_idle = cpu_share([child.pid, idle.pid], window_s)
                parts_a = rss_parts_mb(child.pid)
                rss_a = parts_a["rss_mb"]
                rss_idle = rss_mb(idle.pid)
                msgs_a = {"z2m": driver.z2m, "ble": driver.ble, "frames": driver.frames_sent}
                # 3. a simulated week, hub down
                hub.stop()
                week_end = clock.now() + WEEK_S
                t_week = time.monotonic()
                driver.set_clock(WEEK_SPEED)
                rss_week_curve = []
                while clock.now() < week_end:
                    rss_week_curve.append(round(rss_mb(child.pid), 1))
                    time.sleep(min(10.0, max(0.05, (week_end - clock.now()) / WEEK_SPEED)))
                driver.set_clock(1.0)
                week_real_s = time.monotonic() - t_week
                time.sleep(3.0)  # the last ticks and commits
                parts_week = rss_parts_mb(child.pid)
                rss_week = parts_week["rss_mb"]
                backlog = _outbox_counts(http_port)
                backlog_disk = disk_bytes(storage / "outbox.db")
                # 4. the hub back: drain, then steady again
                t_drain = time.monotonic()
                hub.start()
                drained_s = None
                while time.monotonic() - t_drain < DRAIN_TIMEOUT_S:
                    c = _outbox_counts(http_port)
                    if c.get("alerts", 0) + c.get("aggregates", 0) == 0:
                        drained_s = time.monotonic() - t_drain
                        break
                    time.sleep(0.2)
                rss_after_curve = _sample_rss(child.pid, after_s - min(window_s, after_s / 2))
                cpu_after, cpu_idle_after = cpu_share(
                    [child.pid, idle.pid], min(window_s, after_s / 2)
                )
                parts_after = rss_parts_mb(child.pid)
                rss_after = parts_after["rss_mb"]
            finally:
                driver.stop.set()
                thread.join(5)
                with contextlib.suppress(OSError):
                    child.stdin.close()  # EOF: the child stops cleanly
                code = stop_process(child, 30)
                stop_process(idle)
                pub.loop_stop()
            child_log = (work / "child.log").read_text(errors="replace")
    growth = rss_week - rss_a
    return {
        "home": {
            "zigbee_devices": sum(1 for d in profile.devices if d.source == "zigbee2mqtt"),
            "bthome_sensors": sum(1 for d in profile.devices if d.source == "bthome"),
            "wearables_streaming_hz": FS_HZ if driver.streams else 0,
        },
        "startup": startup,
        "steady": {
            "seconds": steady_s,
            "cpu_window_s": window_s,
            "rss_mb": round(rss_a, 1),
            "rss_parts_mb": parts_a,
            "rss_curve_mb": rss_steady,
            "cpu_pct_one_core": cpu_child,
            "inputs": msgs_a,
        },
        "week": {
            "speed": WEEK_SPEED,
            "real_s": round(week_real_s, 1),
            "rss_mb": round(rss_week, 1),
            "rss_parts_mb": parts_week,
            "rss_curve_mb": rss_week_curve,
            "rss_growth_mb": round(growth, 1),
            "hub_down_backlog": backlog,
            "backlog_disk_bytes": backlog_disk,
            "drain_s": None if drained_s is None else round(drained_s, 2),
            "inputs_total": {"z2m": driver.z2m, "ble": driver.ble, "frames": driver.frames_sent},
        },
        "after_week": {
            "rss_mb": round(rss_after, 1),
            "rss_parts_mb": parts_after,
            "rss_curve_mb": rss_after_curve,
            "cpu_pct_one_core": cpu_after,
        },
        "baseline": {
            "idle_paho_subscriber_cpu_pct": cpu_idle,
            "idle_paho_subscriber_cpu_pct_after": cpu_idle_after,
            "idle_paho_subscriber_rss_mb": round(rss_idle, 1),
        },
        "child_exit_code": code,
        # a model that does not load leaves the gateway lighter: the figures would flatter it
        "fall_model_loaded": "fall detection disabled" not in child_log,
        "rss_max_mb": round(max(rss_a, rss_week, rss_after), 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    """A Zigbee-only home, then the full home (wearable at 50 Hz, BTHome, pages), both on
    the locked production set; the per-import table in the same environment."""
    from edge.sim import demo_profile

    python = gateway_python()
    full_profile = demo_profile(HOME)
    drop_libraries_from_page_cache(GATEWAY_VENV)  # as after a boot (see _startups)
    imports = _imports(python)
    zigbee = _home(
        zigbee_only(full_profile),
        python,
        quick,
        ZIGBEE_STEADY_QUICK_S if quick else ZIGBEE_STEADY_S,
    )
    full = _home(full_profile, python, quick, STEADY_QUICK_S if quick else STEADY_S)
    return {
        "quick": quick,
        "environment": "requirements/gateway.txt (the Pi's locked set), in .venv-gateway",
        "page_cache": "the environment's libraries dropped from it first, as after a boot",
        "zigbee_only": zigbee,
        "full": full,
        "imports": imports,
        "targets": TARGETS,
        "pass": {
            "rss_zigbee_mb": zigbee["rss_max_mb"] <= TARGETS["rss_zigbee_mb"],
            "rss_full_mb": full["rss_max_mb"] <= TARGETS["rss_full_mb"],
            "cpu_pct": full["steady"]["cpu_pct_one_core"] <= TARGETS["cpu_pct"],
            "startup_s": max(zigbee["startup"]["median_s"], full["startup"]["median_s"])
            <= TARGETS["startup_s"],
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 min steady state, not 10")
    args = parser.parse_args()
    json.dump(run(quick=args.quick), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
