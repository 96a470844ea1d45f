"""The installer's wearer check: "portez le capteur, marchez quelques pas" turns green once the
gateway found the wearer's upright direction from the walk, whatever the device's orientation.

A real HomeCore with the shipped fall model, the real installer pages, wearable frame bytes
from a real SisFall walk handed in where the BLE adapter hands them."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from edge.events import Role, RoomKind
from edge.home import Device, HomeProfile, Room
from edge.runtime.core import HomeCore
from edge.sim.wearable import encode_frames
from edge.status.app import create_app
from edge.storage.registry import Registry
from models.runtime import FALL_MODEL_PATH, OnnxModel
from tests.conftest import FALLS_NPZ
from tests.test_status_auth import FAMILY_PIN, INSTALLER_CODE, csrf_of, login

UPSIDE_DOWN = np.diag([1, -1, -1])  # turned over on its belt clip: y and z reversed


def recording(activity: str, seconds: float | None = None) -> np.ndarray:
    """The first trial of an activity by SA05 (its first `seconds`)."""
    with np.load(FALLS_NPZ) as z:
        i = int(np.flatnonzero((z["activity"] == activity) & (z["subject"] == "SA05"))[0])
        t = np.asarray(z["acc_mg"][z["offsets"][i] : z["offsets"][i + 1]])
    return t if seconds is None else t[: int(seconds * 50)]


def walk(seconds: float = 20.0) -> np.ndarray:
    return recording("D01", seconds)


def one_wearable() -> HomeProfile:
    return HomeProfile(
        "h-wearer",
        rooms=(Room("salon", RoomKind.LIVING),),
        devices=(Device("belt", "wearable", "C0:11:22:33:44:55", "salon", Role.WEARABLE),),
    )


def feed(core: HomeCore, samples: np.ndarray, t0: float) -> None:
    for k, frame in enumerate(encode_frames(samples.astype(np.int16), per_frame=8)):
        core.wearable_frame("belt", frame, t0 + (k + 1) * 8 / 50)


@pytest.mark.parametrize(("turn", "degrees"), [(np.eye(3, dtype=int), (0, 30)),
                                               (UPSIDE_DOWN, (150, 180))])
def test_wearer_check_finds_upright_whatever_the_orientation(
        tmp_path: Path, turn: np.ndarray, degrees: tuple[int, int]) -> None:
    profile = one_wearable()
    registry = Registry(tmp_path / "storage")
    registry.save_profile(profile)
    registry.set_secret("installer", INSTALLER_CODE)
    registry.set_secret("family_pin", FAMILY_PIN)
    core = HomeCore(profile, routine=False, fall_model=OnnxModel(FALL_MODEL_PATH))
    core.state.ready = True
    client = TestClient(create_app(core.state, registry=registry, core=core),
                        base_url="http://testserver")
    assert login(client, INSTALLER_CODE) == 303
    # a walk before the test does not count for it
    feed(core, walk() @ turn.T, time.time() - 60.0)
    token = csrf_of(client, "/installer/walkthrough")
    assert client.post("/installer/walkthrough/start", data={"csrf": token},
                       follow_redirects=False).status_code == 303
    [step] = client.get("/installer/api/walkthrough").json()["steps"]
    assert (step["id"], step["done"], step["detail"]) == ("belt", False, "")
    assert step["prompt"] == "Portez le capteur, marchez quelques pas"
    now = time.time()
    # standing (or lying) still, or shaken in the hand, proves nothing about upright
    rng = np.random.default_rng(0)
    still = (np.array([0.0, -1000.0, 0.0]) @ turn.T) + rng.normal(0.0, 5.0, (500, 3))
    feed(core, still, now)
    shaken = still + rng.normal(0.0, 400.0, still.shape)
    feed(core, shaken, now + 10.0)
    assert client.get("/installer/api/walkthrough").json()["steps"][0]["done"] is False
    feed(core, walk() @ turn.T, now + 20.0)
    [step] = client.get("/installer/api/walkthrough").json()["steps"]
    assert step["done"] is True
    deg = int(step["detail"].split("tourné de ")[1].split("°")[0])
    assert degrees[0] <= deg <= degrees[1], step["detail"]
    page = client.get("/installer/walkthrough").text
    assert "verticale trouvée" in page
    report = client.get("/installer/report").text
    assert "belt" in report
    registry.close()


def test_learned_upright_kept_across_a_restart(caplog: pytest.LogCaptureFixture) -> None:
    """The gateway saves the wearer's upright direction with its learned state: after a
    restart, a fall from sitting with the device upside down is found before any new walk
    (a fresh gateway, knowing no wearer yet, misses it)."""
    model = OnnxModel(FALL_MODEL_PATH)
    core = HomeCore(one_wearable(), routine=False, fall_model=model)
    assert "wearers" not in core.docs()  # nothing learned yet, nothing saved
    feed(core, walk() @ UPSIDE_DOWN.T, 1000.0)
    docs = core.docs()
    up = np.asarray(docs["wearers"]["belt"]["up"])
    assert up[1] > 0.9  # upside down: the upright direction reads along +y

    fall = np.concatenate([recording("F13"), np.repeat(recording("F13")[-1:], 2000, axis=0)])
    turned_fall = fall.astype(np.int64) @ UPSIDE_DOWN.T

    def falls(c: HomeCore) -> list[object]:
        out = []
        for k, frame in enumerate(encode_frames(turned_fall.astype(np.int16), per_frame=8)):
            out += c.wearable_frame("belt", frame, 5000.0 + (k + 1) * 8 / 50).alerts
        return [a for a in out if getattr(a, "type", None) == "fall"]

    restarted = HomeCore(one_wearable(), routine=False, fall_model=model, docs=docs)
    detector = restarted.wearable_detector("belt")
    assert detector.upright.found
    assert np.allclose(detector.upright.up, up)
    assert falls(restarted)
    assert not falls(HomeCore(one_wearable(), routine=False, fall_model=model))
    # a damaged saved value is ignored with one log line, the detector starts as new
    bad = HomeCore(one_wearable(), routine=False, fall_model=model,
                   docs={"wearers": {"belt": {"up": [0, "x", None]}}})
    assert not bad.wearable_detector("belt").upright.found
    assert "saved wearer upright direction" in caplog.text
