"""A throwaway PostgreSQL (Debian's server) on a free loopback port, for tests and the bench.

`running_postgres()` makes a new cluster in a temporary folder (initdb), starts `postgres`
listening on 127.0.0.1 only (its unix socket stays in that folder), with trust auth for the
`postgres` role, and removes everything when it stops. As root, initdb refuses to run, so
the server runs as the `postgres` system user (the folder is handed to it first).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import free_port

PG_USER = "postgres"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
# Tests want speed: nothing of a throwaway cluster has to survive a power cut.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def pg_bindir() -> Path:
    """The newest Debian PostgreSQL's bin folder (`/usr/lib/postgresql/<v>/bin`)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise FileNotFoundError("no PostgreSQL server found (Debian package `postgresql`)")


@dataclass
class Postgres:
    """One running throwaway cluster; `dsn()` names a database on it."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)  # how to start the server again

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self, prefix: str = "t") -> str:
        """Create an empty database and return its DSN."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def log_text(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""


@dataclass(frozen=True)
class _RunAs:
    """Who runs initdb and postgres: the postgres user when we are root, else ourselves."""

    uid: int | None = None
    gid: int | None = None

    @classmethod
    def for_server(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls()
        entry = pwd.getpwnam(PG_USER)
        return cls(entry.pw_uid, entry.pw_gid)

    def give(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    @property
    def extra_groups(self) -> list[int] | None:
        return [] if self.uid is not None else None


def _wait_ready(pg: Postgres) -> None:
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT_S
    last: Exception | None = None
    while time.monotonic() < deadline:
        assert pg.proc is not None
        if pg.proc.poll() is not None:
            raise RuntimeError(f"postgres exited with {pg.proc.returncode}:\n{pg.log_text()}")
        try:
            with psycopg.connect(pg.dsn(), connect_timeout=2):
                return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.05)
    raise TimeoutError(f"postgres did not accept connections: {last}\n{pg.log_text()}")


def start_postgres(
    *, parent: Path | None = None, durable: bool = False, settings: dict[str, str] | None = None
) -> Postgres:
    """initdb + start; `durable=False` turns fsync off (tests), True keeps the defaults."""
    root = Path(tempfile.mkdtemp(prefix="veille-pg-", dir=parent))
    run_as = _RunAs.for_server()
    run_as.give(root)
    bindir = pg_bindir()
    data = root / "data"
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            PG_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        cwd=root,
        env=env,
        user=run_as.uid,
        group=run_as.gid,
        extra_groups=run_as.extra_groups,
    )
    pg = Postgres(root)
    conf = {
        "listen_addresses": "127.0.0.1",
        "port": str(pg.port),
        "unix_socket_directories": str(root),
        "max_connections": "200",
        **({} if durable else FAST_SETTINGS),
        **(settings or {}),
    }
    pg.args = [str(bindir / "postgres"), "-D", str(data)]
    for key, value in conf.items():
        pg.args += ["-c", f"{key}={value}"]
    try:
        _launch(pg)
    except BaseException:
        stop_postgres(pg)
        raise
    return pg


def _launch(pg: Postgres) -> None:
    """Start the server on its data folder and wait until it accepts connections."""
    run_as = _RunAs.for_server()
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    log = open(pg.root / "postgres.log", "ab")  # noqa: SIM115 (the server keeps writing to it)
    run_as.give(pg.root / "postgres.log")
    pg.proc = subprocess.Popen(
        pg.args,
        stdout=log,
        stderr=log,
        cwd=pg.root,
        env=env,
        user=run_as.uid,
        group=run_as.gid,
        extra_groups=run_as.extra_groups,
    )
    log.close()
    _wait_ready(pg)


def pause_postgres(pg: Postgres) -> None:
    """Fast shutdown, keeping the data: the database is down until `resume_postgres`."""
    assert pg.proc is not None
    pg.proc.send_signal(signal.SIGINT)
    pg.proc.wait(STOP_TIMEOUT_S)


def resume_postgres(pg: Postgres) -> None:
    _launch(pg)


def stop_postgres(pg: Postgres) -> None:
    """Fast shutdown (SIGINT: open sessions are ended), then remove the cluster's folder."""
    try:
        if pg.proc is not None and pg.proc.poll() is None:
            pg.proc.send_signal(signal.SIGINT)
            try:
                pg.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pg.proc.kill()
                pg.proc.wait()
    finally:
        pg.proc = None
        shutil.rmtree(pg.root, ignore_errors=True)


@contextlib.contextmanager
def running_postgres(
    *, parent: Path | None = None, durable: bool = False, settings: dict[str, str] | None = None
) -> Iterator[Postgres]:
    pg = start_postgres(parent=parent, durable=durable, settings=settings)
    try:
        yield pg
    finally:
        stop_postgres(pg)
