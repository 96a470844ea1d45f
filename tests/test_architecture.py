"""The rules that keep the code simple, checked: pure core, one-way imports, strict tooling."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PURE = [
    ROOT / "edge" / "events.py",
    ROOT / "edge" / "alerts.py",
    ROOT / "edge" / "home.py",
    ROOT / "models" / "features.py",
    ROOT / "cloud_bridge" / "contract.py",
    *(
        ROOT / "cloud_bridge" / "notify" / f"{name}.py"
        for name in ("chain", "config", "contact_id", "dc09", "message")
    ),
    *sorted((ROOT / "edge" / "decode").glob("*.py")),
    *sorted((ROOT / "edge" / "detect").glob("*.py")),
]
# I/O and clocks: none of these may be imported by a pure module
IMPURE = {"asyncio", "paho", "bleak", "sqlite3", "socket", "threading", "subprocess", "time"}
IMPURE |= {"edge.clock", "edge.pipeline", "edge.gateway", "edge.outbox", "edge.registry"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_do_no_io_and_read_no_clock(path: Path) -> None:
    bad = {
        name
        for name in imported_modules(path)
        if any(name == m or name.startswith(m + ".") for m in IMPURE)
    }
    assert bad == set(), f"{path.name} imports {sorted(bad)}"


def test_only_the_cli_imports_the_pipeline_shell() -> None:
    users = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "edge").rglob("*.py")
        if "edge.pipeline" in imported_modules(p)
    }
    assert users <= {"edge/gateway.py", "edge/demo.py"}


def test_ruff_is_clean() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--quiet", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:]


def test_mypy_is_clean() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout[-3000:]


# --- what a home's gateway loads -------------------------------------------------------------
# Libraries a Zigbee-only home never needs: the fall model's runtime, BLE, the demo's broker,
# training. Their top-level module names.
NOT_FOR_ZIGBEE_ONLY = {"onnxruntime", "bthome_ble", "habluetooth", "bleak", "amqtt", "sklearn"}


def _imports_in(log: str) -> list[str]:
    """Module names from `python -X importtime` lines (`import time: self | cumul | name`)."""
    return [
        line.rsplit("|", 1)[1].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and line.count("|") == 2 and "[us]" not in line
    ]


@pytest.mark.broker
def test_a_zigbee_only_gateway_loads_no_ble_fall_or_demo_library_and_an_alert_imports_nothing(
    tmp_path: Path, local_broker: Any, hub_broker: Any
) -> None:
    """The real `veille run` of a Zigbee-only home, every import logged by Python itself."""
    from tests.gateway_proc import GatewayProc, sos_press
    from tests.support import Collector

    gw = GatewayProc(tmp_path, "h-zigbee", local_broker.port, hub_broker.port)
    gw.env = {"PYTHONPROFILEIMPORTTIME": "1"}
    gw.provision()
    hub = Collector(hub_broker.port, "veille/v1/h-zigbee/alert")
    gw.start()
    try:
        assert gw.health()[0] == 200
        log = tmp_path / f"gateway-{gw.starts}.log"
        before = log.stat().st_size
        sos_press(local_broker.port, 0)  # the first alert of this process
        topic, _payload, _ = hub.get(timeout=5)
        assert topic.endswith("/alert")
        during = log.read_bytes()[before:].decode(errors="replace")
    finally:
        assert gw.stop() == 0
        hub.close()
    imported = _imports_in(log.read_text(errors="replace"))
    assert "paho.mqtt.client" in imported  # the log is read right
    loaded = {name.split(".")[0] for name in imported}
    assert loaded & NOT_FOR_ZIGBEE_ONLY == set()
    assert _imports_in(during) == [], "the first alert waited for an import"
