"""The dependency lock (requirements/, scripts/lock): complete, hashed, Pi-ready, installed.

The lock is the proof that two installs a week apart are the same program: every set pins
every package with its hashes, the Pi (aarch64, CPython 3.11) installs each from a locked
file, the .venv these tests run in holds exactly the locked versions, and `scripts/lock`
reproduces the committed lock from pyproject.toml and moves it forward when a dependency is
added, keeping every other pin.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lockfile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lockfile", ROOT / "scripts" / "lockfile.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["lockfile"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


lf = _lockfile()
SETS = ("build", *lf.SETS)


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(reqs: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    return {lf.normalize(Requirement(r).name) for r in reqs}


@pytest.mark.parametrize("name", SETS)
def test_every_pin_is_exact_and_hashed(name: str) -> None:
    pins = lf.read(name)
    assert pins, f"{name}.txt is empty"
    unhashed = [p.name for p in pins if not p.hashes]
    assert unhashed == []
    assert len({(p.name, p.marker) for p in pins}) == len(pins), "a package pinned twice"


def test_sets_share_one_resolution_and_hold_their_extras() -> None:
    locks = {n: lf.read(n) for n in lf.SETS}
    test = {(p.name, p.version) for p in locks["test"]}
    for name, pins in locks.items():
        for p in pins:  # the markers may differ: fewer packages need it in a smaller set
            assert (p.name, p.version) in test, f"{name}.txt: {p.name}=={p.version} not in test"
    project = _pyproject()
    extras = project["optional-dependencies"]
    gateway = {p.name for p in locks["gateway"]}
    assert _names(project["dependencies"]) <= gateway
    assert _names(extras["demo"]) <= {p.name for p in locks["demo"]}
    assert _names(extras["hub"]) <= {p.name for p in locks["hub"]}
    # the production gateway carries neither the demo broker nor training or test tools
    assert gateway.isdisjoint({"amqtt", "scikit-learn", "skl2onnx", "pytest", "psycopg", "uv"})


def test_every_locked_package_installs_on_the_pi_from_a_locked_file() -> None:
    locks = {n: lf.read(n) for n in SETS}
    manifest = lf.parse_manifest((ROOT / "requirements" / lf.MANIFEST).read_text())
    assert lf.check_manifest(locks, manifest) == []
    pi_binaries = [f for f in manifest if "aarch64" in f.filename]
    assert {"numpy", "onnxruntime", "cryptography"} <= {f.name for f in pi_binaries}


def test_the_pi_check_refuses_x86_wheels_unknown_hashes_and_missing_files() -> None:
    pins = lf.read("gateway")
    numpy = next(p for p in pins if p.name == "numpy" and p.applies(lf.PI_MARKERS))
    sha = sorted(numpy.hashes)[0]
    v = numpy.version
    x86 = lf.PiFile("numpy", v, f"numpy-{v}-cp311-cp311-manylinux_2_28_x86_64.whl", sha)
    cp312 = lf.PiFile("numpy", v, f"numpy-{v}-cp312-cp312-manylinux_2_28_aarch64.whl", sha)
    other = lf.PiFile("numpy", v, f"numpy-{v}-cp311-cp311-manylinux_2_28_aarch64.whl", "0" * 64)
    sdist = lf.PiFile("numpy", v, f"numpy-{v}.tar.gz", sha)
    only_numpy = {"gateway": [numpy]}
    for bad in (x86, cp312, other, sdist):
        assert len(lf.check_manifest(only_numpy, [bad])) == 1, bad.filename
    assert lf.check_manifest(only_numpy, []) != []
    good = lf.PiFile("numpy", v, f"numpy-{v}-cp311-cp311-manylinux_2_27_aarch64.whl", sha)
    assert lf.check_manifest(only_numpy, [good]) == []
    assert lf.wheel_fits_pi("cryptography-50.0.2-cp311-abi3-manylinux2014_aarch64.whl")
    assert lf.wheel_fits_pi("uv-0.13-py3-none-manylinux_2_17_aarch64.musllinux_1_1_aarch64.whl")
    assert lf.wheel_fits_pi("tinydb-4.9.0-py3-none-any.whl")
    assert not lf.wheel_fits_pi("x-1-cp312-abi3-manylinux2014_aarch64.whl")


def test_the_venv_holds_exactly_the_locked_versions() -> None:
    """What `scripts/setup --test` installed is the lock, no more, no less."""
    want: dict[str, str] = {}
    for name in ("build", "test"):
        want |= lf.installed_for(lf.read(name))
    have = {
        lf.normalize(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if lf.normalize(d.metadata["Name"]) != "veille"
    }
    wrong = {n: (have[n], v) for n, v in want.items() if n in have and have[n] != v}
    assert wrong == {}, "installed != locked (run scripts/setup --test)"
    assert sorted(set(want) - set(have)) == [], "locked but not installed"
    assert sorted(set(have) - set(want)) == [], "installed but not in the lock"


def _copy_project(dst: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    shutil.copytree(ROOT / "requirements", dst / "requirements")
    return dst


def _lock(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "lockfile.py"),
            "--root",
            str(root),
            "--no-pi-check",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _pins(root: Path, name: str) -> dict[tuple[str, str | None], str]:
    return {
        (p.name, p.marker): p.version
        for p in lf.parse((root / "requirements" / f"{name}.txt").read_text())
    }


def test_scripts_lock_reproduces_the_committed_lock(tmp_path: Path) -> None:
    """pyproject.toml and the lock agree: relocking changes no version (uses the index)."""
    root = _copy_project(tmp_path)
    run = _lock(root)
    assert run.returncode == 0, run.stderr
    for name in SETS:
        assert _pins(root, name) == _pins(ROOT, name), f"{name}.txt is stale: run scripts/lock"


def test_scripts_lock_adds_a_new_dependency_and_keeps_every_other_pin(tmp_path: Path) -> None:
    root = _copy_project(tmp_path)
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    assert '    "tinydb>=4.8",\n' in text
    pyproject.write_text(text.replace('    "tinydb>=4.8",\n', '    "tinydb>=4.8",\n    "toolz",\n'))
    run = _lock(root)
    assert run.returncode == 0, run.stderr
    for name in ("gateway", "demo", "hub", "test"):
        new = {p.name: p for p in lf.parse((root / "requirements" / f"{name}.txt").read_text())}
        assert "toolz" in new, name
        assert new["toolz"].hashes, name
        before = _pins(ROOT, name)
        after = _pins(root, name)
        assert {k: after.get(k) for k in before} == before, f"{name}.txt moved another pin"
