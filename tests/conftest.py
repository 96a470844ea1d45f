from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import Postgres, running_postgres
from tests.support import Mosquitto, running_mosquitto

SHARED = Path(__file__).resolve().parents[2] / "shared"
FALLS_NPZ = SHARED / "data" / "falls" / "sisfall_dev_50hz.npz"
AMBIENT = SHARED / "data" / "ambient"


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


@pytest.fixture
def local_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """The home's Mosquitto, real, on a free loopback port."""
    with running_mosquitto(tmp_path / "local") as broker:
        yield broker


@pytest.fixture
def hub_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """The hub's Mosquitto (plain, loopback), real, on a free loopback port."""
    with running_mosquitto(tmp_path / "hub") as broker:
        yield broker


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """One throwaway PostgreSQL per test module."""
    with running_postgres() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new hub store, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.new_database()
