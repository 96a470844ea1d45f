"""What the benchmarks share: real brokers, a provisioned home, `veille run`, /proc readings.

Brokers are real Mosquitto processes on free loopback ports (`tests.support.Mosquitto`), the
gateway is the real `veille run` (or, where a radio must be faked, the same `Gateway` object
in a child process: `bench._gateway_child`). Process figures come from `/proc/<pid>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.support import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[1]
VEILLE = str(Path(sys.executable).with_name("veille"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
HEALTH_POLL_S = 0.02
READY_TIMEOUT_S = 60.0


# ---- /proc readings ---------------------------------------------------------------------------
def rss_mb(pid: int) -> float:
    """Resident set size of `pid` in MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise ValueError(f"no VmRSS for pid {pid}")


def rss_parts_mb(pid: int) -> dict[str, float]:
    """VmRSS of `pid` and its parts in MiB: RssAnon (heap, Python objects: what the process
    holds), RssFile (mapped library pages: clean, the kernel can drop and read them again),
    RssShmem."""
    keys = {"VmRSS": "rss_mb", "RssAnon": "anon_mb", "RssFile": "file_mb", "RssShmem": "shmem_mb"}
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in keys:
            out[keys[key]] = round(int(line.split()[1]) / 1024.0, 1)
    return out


def cpu_s(pid: int) -> float:
    """utime + stime of `pid` in seconds (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_share(pids: Sequence[int], window_s: float) -> list[float]:
    """Percent of one core each pid used over the next `window_s` seconds (sleeps)."""
    c0 = [cpu_s(p) for p in pids]
    t0 = time.monotonic()
    time.sleep(window_s)
    dt = time.monotonic() - t0
    return [round(100.0 * (cpu_s(p) - c) / dt, 2) for p, c in zip(pids, c0, strict=True)]


def disk_bytes(db: Path) -> int:
    """Bytes of a SQLite file with its WAL and shared-memory files."""
    return sum(
        Path(f"{db}{s}").stat().st_size for s in ("", "-wal", "-shm") if Path(f"{db}{s}").exists()
    )


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def percentile(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(q / 100.0 * len(s) + 0.5) - 1))
    return float(s[k])


# ---- real brokers -----------------------------------------------------------------------------
@contextlib.contextmanager
def broker(workdir: Path) -> Iterator[Mosquitto]:
    """A real Mosquitto on a free loopback port, stopped on the way out."""
    b = Mosquitto(workdir).start()
    try:
        yield b
    finally:
        b.stop()


# ---- a provisioned home and `veille run` -------------------------------------------------------
def provision(storage: Path, profile: Any) -> None:
    """Save `profile` into a new registry at `storage`, with a family PIN."""
    from edge.storage.registry import Registry

    reg = Registry(storage)
    try:
        reg.save_profile(profile)
        reg.set_secret("family_pin", "4821")
        reg.set_secret("installer", "installateur-bench")
    finally:
        reg.close()


def write_gateway_toml(
    path: Path, home_id: str, *, local_port: int, hub_port: int, storage: Path, http_port: int
) -> Path:
    path.write_text(
        f'[home]\nid = "{home_id}"\n'
        f'[local]\nurl = "mqtt://127.0.0.1:{local_port}"\n'
        f'[hub]\nurl = "mqtt://127.0.0.1:{hub_port}"\n'
        f'[storage]\ndir = "{storage}"\n'
        f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
    )
    return path


def health(port: int) -> int:
    """HTTP status of GET /health (0: nothing answers yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (OSError, ValueError):
        return 0


def wait_health(proc: subprocess.Popen[bytes], port: int, t0: float) -> float:
    """Seconds from `t0` (monotonic) until /health answers 200; raises if the process dies."""
    deadline = t0 + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode} before it was ready")
        if health(port) == 200:
            return time.monotonic() - t0
        time.sleep(HEALTH_POLL_S)
    raise TimeoutError(f"gateway not ready in {READY_TIMEOUT_S} s")


def start_process(argv: Sequence[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
    out = open(log, "ab")  # noqa: SIM115  (kept by the child)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kw.pop("env", {})}
    return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, env=env, **kw)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def veille_run(config: Path, log: Path, veille: str = VEILLE) -> subprocess.Popen[bytes]:
    """Start the production gateway, `veille run --config FILE`."""
    return start_process([veille, "run", "--config", str(config)], log)


# ---- the production gateway's own environment ------------------------------------------------
GATEWAY_VENV = REPO / ".venv-gateway"


def gateway_python() -> Path:
    """The Python of a virtualenv holding only what a Pi installs: the locked production set
    (requirements/build.txt + gateway.txt, hash-checked) and the project. Built once, again
    when the lock changes. Footprints are measured there, not in the test tools' .venv."""
    locks = [REPO / "requirements" / n for n in ("build.txt", "gateway.txt")]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in locks)).hexdigest()[:16]
    python = GATEWAY_VENV / "bin" / "python"
    stamp = GATEWAY_VENV / ".lock-digest"
    if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return python
    shutil.rmtree(GATEWAY_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(GATEWAY_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for args in (
        *(["--require-hashes", "-r", str(lock)] for lock in locks),
        ["--no-deps", "--no-build-isolation", "-e", str(REPO)],
    ):
        out = subprocess.run([*pip, *args], capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"cannot build {GATEWAY_VENV.name}: {out.stderr[-2000:]}")
    stamp.write_text(digest + "\n")
    return python


def drop_libraries_from_page_cache(root: Path) -> int:
    """Write back and drop from the page cache every shared library under `root` (the
    gateway's virtualenv); returns how many files.

    Why: the mapped pages of a library count in a process's RSS, and how many depends on how
    the file came into the page cache. On this machine (Linux 6.18, ext4, which caches files
    in large folios since 6.16) a library that pip has just written stays cached as the large
    folios of that write, and a process that maps it counts whole folios: the full home's
    gateway measured right after `.venv-gateway` was built holds ~19 MB more RSS, all of it
    file-backed and clean, than the very same gateway once its libraries are read from disk,
    as after a boot (anonymous memory identical, 61.9 MB both ways). Dropping them first
    makes the footprint the gateway's after a boot, whatever happened to the files before.
    Only this environment's files, never the machine's whole cache (it is shared)."""
    count = 0
    for path in sorted(root.rglob("*.so*")):
        if not path.is_file() or path.is_symlink():
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        count += 1
    return count


# ---- the machine --------------------------------------------------------------------------------
def _first(path: str, key: str) -> str | None:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return None


def _version(module: str) -> str | None:
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(module)
    return None


def machine() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python and the versions of what the figures depend on."""
    import sqlite3

    mem_kb = _first("/proc/meminfo", "MemTotal")
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    mosq_version = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [mosq, "-h"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
        mosq_version = out.splitlines()[0].replace("mosquitto version", "").strip() or None
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory_mb": round(int(mem_kb.split()[0]) / 1024) if mem_kb else None,
        "os": f"{platform.system()} {platform.release()}",
        "distro": _os_release(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "onnxruntime": _version("onnxruntime"),
        "paho_mqtt": _version("paho-mqtt"),
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": mosq_version,
        "loadavg_at_start": list(os.getloadavg()),
    }


def _os_release() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return None


def free_ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)
