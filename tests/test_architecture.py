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
IMPURE |= {"edge.runtime", "edge.storage", "edge.commands"}  # the shell: clock, pipeline, files


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
        if "edge.runtime.pipeline" in imported_modules(p)
    }
    assert users <= {"edge/runtime/gateway.py", "edge/commands/demo.py"}


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


# --- the import graph -------------------------------------------------------------------------
PACKAGES = ("edge", "cloud_bridge", "models")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _project_files() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _all_imports(path: Path, module: str) -> set[str]:
    """Every module `path` imports, at the top or inside a function, relative ones resolved."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import mod`
    return names


def _graph() -> dict[str, set[str]]:
    """module -> the project's modules it imports (from any line of it)."""
    files = _project_files()
    return {
        module: {name for name in _all_imports(path, module) if name in files and name != module}
        for module, path in files.items()
    }


def test_cloud_bridge_never_imports_edge() -> None:
    """The hub side is the wire contract, the MQTT runtime, the PKI and the hub: `edge`
    (the gateway) may import it, never the reverse, not even lazily inside a function."""
    files = _project_files()
    bad = {
        module: sorted(n for n in _all_imports(path, module) if n.split(".")[0] == "edge")
        for module, path in files.items()
        if module.startswith("cloud_bridge")
    }
    assert {m: names for m, names in bad.items() if names} == {}


def test_the_wire_vocabulary_is_written_once() -> None:
    """The alert enums and the home id pattern live in cloud_bridge.contract only."""
    defined: dict[str, list[str]] = {}
    wanted = {"AlertType", "Severity", "AlertState", "HOME_ID_RE", "iso_utc", "parse_iso_utc"}
    for module, path in _project_files().items():
        for node in ast.parse(path.read_text()).body:
            names: list[str] = []
            if isinstance(node, ast.ClassDef | ast.FunctionDef):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            for name in set(names) & wanted:
                defined.setdefault(name, []).append(module)
    assert defined == {name: ["cloud_bridge.contract"] for name in wanted}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or through others (lazy imports count:
    a cycle hidden in a function is still a cycle in the design)."""
    assert _cycles(_graph()) == []


EDGE_ROOT_MAX_MODULES = 10


def test_the_root_of_edge_holds_few_modules() -> None:
    """The rest live in folders named for their job (storage, runtime, commands, ...)."""
    loose = sorted(p.name for p in (ROOT / "edge").glob("*.py") if p.name != "__init__.py")
    assert len(loose) <= EDGE_ROOT_MAX_MODULES, loose
    for folder in (p for p in (ROOT / "edge").iterdir() if p.is_dir() and any(p.glob("*.py"))):
        assert (folder / "__init__.py").is_file(), f"{folder.name} is not a package"


TIME_UNITS = {"MINUTE_S", "HOUR_S", "DAY_S"}


def test_minutes_hours_and_days_are_defined_once() -> None:
    """`MINUTE_S`, `HOUR_S`, `DAY_S` come from edge.const everywhere."""
    where = {
        str(p.relative_to(ROOT))
        for pkg in (*PACKAGES, "tests", "bench")
        for p in (ROOT / pkg).rglob("*.py")
        for node in ast.parse(p.read_text()).body
        if isinstance(node, ast.Assign)
        and {t.id for t in node.targets if isinstance(t, ast.Name)} & TIME_UNITS
    }
    assert where == {"edge/const.py"}


def test_only_the_mqtt_runtime_imports_paho() -> None:
    """Every link (uplink, hub receiver, Zigbee2MQTT adapter, demo) is a broker.MqttLink."""
    users = {
        module
        for module, path in _project_files().items()
        if any(n == "paho" or n.startswith("paho.") for n in _all_imports(path, module))
    }
    assert users == {"cloud_bridge.broker"}


def test_one_backoff_rule() -> None:
    """Reconnects and resends all draw their delay from broker.backoff_delay."""
    randoms = {
        module
        for module, path in _project_files().items()
        if module.startswith(("edge.adapters", "edge.runtime", "cloud_bridge"))
        and any(
            isinstance(node, ast.Attribute) and node.attr in {"uniform", "expovariate"}
            for node in ast.walk(ast.parse(path.read_text()))
        )
    }
    assert randoms == set()
