"""The rules that keep the code simple, checked: pure core, one-way imports, strict tooling."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

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
