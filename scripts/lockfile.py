"""The dependency lock: `scripts/lock` regenerates it, the tests and `scripts/setup` read it.

`requirements/` holds one hashed, fully pinned requirements file per install set, all drawn
from one resolution so a package has the same version in every set:

    build.txt     pip and setuptools (the installer and the build backend)
    gateway.txt   `veille run` on a Pi: the project's dependencies, no extra
    demo.txt      + the `demo` extra (embedded brokers of `veille demo`)
    hub.txt       + the `hub` extra (PostgreSQL store)
    test.txt      + every extra and the test tools (CI, developers)
    aarch64.txt   for every package of test.txt and build.txt that Linux on Python 3.11
                  installs, the file pip picks for a Raspberry Pi (manylinux aarch64,
                  CPython 3.11) among the locked hashes: proof that the same lock installs on
                  the Pi from wheels

`scripts/lock` resolves test.txt first (universal: every platform's markers, Python >= 3.11),
keeping the versions already locked unless `--upgrade` or pyproject.toml asks for another,
then the smaller sets constrained to its versions, then asks pip which files it would install
on aarch64. Installs use `pip install --require-hashes`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
# set name -> extras of pyproject.toml it installs (test.txt, the superset, comes first)
SETS: Mapping[str, tuple[str, ...]] = {
    "test": ("test",),
    "gateway": (),
    "demo": ("demo",),
    "hub": ("hub",),
}
BUILD_IN = "build.in"  # the build set's input (pip, setuptools): not in pyproject
MANIFEST = "aarch64.txt"
PYTHON = "3.11"
# Packages published as source only and pure Python (no compiled code to need a wheel).
PURE_SDISTS = frozenset(
    {
        "pyric",  # via bluetooth-auto-recovery (bleak-retry-connector)
        "http-ece",  # via pywebpush (the hub's web push channel)
    }
)
# The Pi: Raspberry Pi OS bookworm, glibc 2.36, 64-bit.
AARCH64_PLATFORMS = ("manylinux2014_aarch64", *(f"manylinux_2_{n}_aarch64" for n in range(17, 37)))
PI_MARKERS = {
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": PYTHON,
    "python_full_version": f"{PYTHON}.2",
}
_REQ = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+?)\s*(?:;\s*(?P<marker>.*))?$"
)
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
_WHEEL_AARCH64 = re.compile(r"(manylinux[_0-9a-z]*|musllinux_\d+_\d+)_aarch64")


class LockError(Exception):
    """The lock cannot be built or does not hold what it must."""


@dataclass(frozen=True)
class Pin:
    """One locked requirement: name==version, an optional environment marker, its hashes."""

    name: str  # normalized (PEP 503)
    version: str
    marker: str | None
    hashes: frozenset[str]

    def applies(self, env: Mapping[str, str] | None = None) -> bool:
        """Whether an installer on `env` (default: this interpreter) installs it."""
        if not self.marker:
            return True
        from packaging.markers import Marker

        return Marker(self.marker).evaluate(dict(env) if env is not None else None)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(text: str) -> list[Pin]:
    """The pins of a hashed requirements file (as `uv pip compile --generate-hashes` writes)."""
    pins: list[Pin] = []
    logical = re.sub(r"\\\n", " ", text)
    for raw in logical.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        hashes = frozenset(_HASH.findall(line))
        spec = _HASH.sub("", line).strip()
        m = _REQ.match(spec)
        if m is None:
            raise LockError(f"not a pinned requirement: {raw.strip()[:120]}")
        marker = m["marker"].strip() if m["marker"] else None
        pins.append(Pin(normalize(m["name"]), m["version"], marker, hashes))
    return pins


def read(name: str, root: Path = ROOT) -> list[Pin]:
    return parse((root / "requirements" / f"{name}.txt").read_text(encoding="utf-8"))


def installed_for(pins: Iterable[Pin], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """name -> version of the pins an installer on `env` installs."""
    out: dict[str, str] = {}
    for pin in pins:
        if pin.applies(env):
            if pin.name in out and out[pin.name] != pin.version:
                raise LockError(f"{pin.name}: two versions for one environment")
            out[pin.name] = pin.version
    return out


def extraneous(set_name: str, root: Path = ROOT) -> list[str]:
    """Distributions installed in this interpreter that neither `set_name` nor build.txt
    locks (the project itself aside): what `scripts/setup --test` removes."""
    from importlib import metadata

    want = installed_for([*read("build", root), *read(set_name, root)])
    have = {normalize(d.metadata["Name"]) for d in metadata.distributions()}
    return sorted(have - set(want) - {"veille"})


# --- manifest of the Pi's files -------------------------------------------------------------
@dataclass(frozen=True)
class PiFile:
    name: str
    version: str
    filename: str
    sha256: str


def parse_manifest(text: str) -> list[PiFile]:
    out = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            spec, filename, sha = line.split()
            name, version = spec.split("==", 1)
            out.append(PiFile(normalize(name), version, filename, sha))
    return out


def wheel_fits_pi(filename: str) -> bool:
    """A wheel a CPython 3.11 on glibc/musl aarch64 can install (pure or built for it)."""
    if not filename.endswith(".whl"):
        return False
    parts = filename[: -len(".whl")].split("-")
    python, abi, platform = parts[-3], parts[-2], parts[-1]
    pythons = python.split(".")
    if abi == "none":
        py_ok = any(p in ("py3", "cp311", "py311") for p in pythons)
    elif abi == "abi3":
        py_ok = any(p.startswith("cp3") and int(p[3:]) <= 11 for p in pythons)
    else:
        py_ok = abi == "cp311" and "cp311" in pythons
    plat_ok = platform == "any" or bool(_WHEEL_AARCH64.search(platform))
    return py_ok and plat_ok


def check_manifest(locks: Mapping[str, Sequence[Pin]], manifest: Sequence[PiFile]) -> list[str]:
    """Problems: a package the Pi installs without a fitting locked file in the manifest."""
    problems = []
    by_pin = {(f.name, f.version): f for f in manifest}
    for set_name, pins in locks.items():
        for pin in pins:
            if not pin.applies(PI_MARKERS):
                continue
            where = f"{set_name}.txt: {pin.name}=={pin.version}"
            f = by_pin.get((pin.name, pin.version))
            if f is None:
                problems.append(f"{where}: no file for the Pi in {MANIFEST}")
            elif f.sha256 not in pin.hashes:
                problems.append(f"{where}: {f.filename} is not one of the locked hashes")
            elif not wheel_fits_pi(f.filename) and not (
                f.filename.endswith(".tar.gz") and pin.name in PURE_SDISTS
            ):
                problems.append(f"{where}: {f.filename} is not an aarch64 wheel for CPython 3.11")
    return problems


def pi_files(requirements: Sequence[Path], python: str = sys.executable) -> list[PiFile]:
    """Which locked file pip installs on the Pi for each requirement (resolves, downloads
    only metadata where the index serves it)."""
    platforms = [a for p in AARCH64_PLATFORMS for a in ("--platform", p)]
    out: list[PiFile] = []
    for req in requirements:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            cmd = [
                python, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps",
                "--target", str(Path(tmp) / "t"), "--report", str(report),
                *platforms, "--python-version", PYTHON, "--implementation", "cp",
                "--abi", "cp311", "--abi", "abi3", "--abi", "none", "--prefer-binary",
                "--require-hashes", "-r", str(req),
            ]  # fmt: skip
            run = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if run.returncode != 0:
                raise LockError(f"pip cannot install {req.name} for aarch64:\n{run.stderr[-2000:]}")
            for item in json.loads(report.read_text())["install"]:
                info = item["download_info"]
                sha = info.get("archive_info", {}).get("hashes", {}).get("sha256", "")
                name = normalize(item["metadata"]["name"])
                version = item["metadata"]["version"]
                out.append(PiFile(name, version, info["url"].rsplit("/", 1)[-1], sha))
    return sorted({(f.name, f.version): f for f in out}.values(), key=lambda f: f.name)


def manifest_text(files: Sequence[PiFile]) -> str:
    head = (
        "# Written by scripts/lock: the file pip installs on a Raspberry Pi (manylinux aarch64,\n"
        "# CPython 3.11) for every package of test.txt and build.txt, and its sha256 (one of\n"
        "# the locked hashes). tests/test_lock.py checks it against the lock.\n"
    )
    return head + "".join(f"{f.name}=={f.version} {f.filename} {f.sha256}\n" for f in files)


# --- resolving -------------------------------------------------------------------------------
def _uv() -> str:
    local = Path(sys.executable).with_name("uv")
    return str(local) if local.exists() else "uv"


def compile_set(
    name: str,
    extras: Sequence[str],
    *,
    root: Path,
    constraints: Path | None,
    upgrade: Sequence[str],
) -> None:
    out = root / "requirements" / f"{name}.txt"
    cmd = [_uv(), "pip", "compile", "--quiet", "--universal", "--python-version", PYTHON,
           "--generate-hashes", "--custom-compile-command", "scripts/lock",
           "-o", str(out)]  # fmt: skip
    if name == "build":
        cmd.append(str(root / "requirements" / BUILD_IN))
    else:
        cmd.append(str(root / "pyproject.toml"))
    for extra in extras:
        cmd += ["--extra", extra]
    if constraints is not None:
        cmd += ["--constraint", str(constraints)]
    for pkg in upgrade:
        cmd += ["--upgrade"] if pkg == ":all:" else ["--upgrade-package", pkg]
    env = {**os.environ, "UV_NO_PROGRESS": "1"}
    run = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False, env=env)
    if run.returncode != 0:
        raise LockError(f"uv pip compile {name}.txt failed:\n{run.stderr[-3000:]}")


def lock(root: Path = ROOT, upgrade: Sequence[str] = (), check_pi: bool = True) -> None:
    """Regenerate every set from pyproject.toml (and build.in), then the Pi's manifest."""
    req = root / "requirements"
    req.mkdir(exist_ok=True)
    compile_set("build", (), root=root, constraints=None, upgrade=upgrade)
    compile_set("test", SETS["test"], root=root, constraints=None, upgrade=upgrade)
    for name, extras in SETS.items():  # the smaller sets take test.txt's versions
        if name != "test":
            compile_set(
                name, extras, root=root, constraints=Path("requirements/test.txt"), upgrade=()
            )
    if check_pi:
        files = pi_files([req / "build.txt", req / "test.txt"])
        (req / MANIFEST).write_text(manifest_text(files))
        locks = {n: read(n, root) for n in ("build", *SETS)}
        problems = check_manifest(locks, parse_manifest((req / MANIFEST).read_text()))
        if problems:
            raise LockError("not installable on the Pi from the lock:\n" + "\n".join(problems))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/lock", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--upgrade",
        nargs="*",
        metavar="PACKAGE",
        help="move these packages (none named: all) to their newest allowed versions",
    )
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument(
        "--no-pi-check", action="store_true", help="skip the aarch64 check (offline tests)"
    )
    parser.add_argument("--extraneous", metavar="SET", help="print what SET does not lock, exit")
    args = parser.parse_args(argv)
    if args.extraneous:
        print("\n".join(extraneous(args.extraneous, args.root.resolve())))
        return 0
    upgrade: list[str] = []
    if args.upgrade is not None:
        upgrade = args.upgrade or [":all:"]
    try:
        lock(args.root.resolve(), upgrade, check_pi=not args.no_pi_check)
    except LockError as exc:
        print(f"scripts/lock: {exc}", file=sys.stderr)
        return 1
    print("scripts/lock: requirements/ is up to date; commit it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
