"""The care console's sessions: a random key kept in the hub's store (never derived from the
staff passwords), sessions that end on logout and on a password change, in every console
process that shares the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from cloud_bridge.console import create_console_app
from cloud_bridge.console_inbox import LocalAction
from cloud_bridge.console_sessions import open_console_state
from cloud_bridge.pages.auth import SESSION_COOKIE, Signer
from cloud_bridge.stores import open_store

STAFF = "alice"
PASSWORD = "soins-2024-nuit"


class Hub:
    """What the console needs of a receiver: its store (acks are not sent in these tests)."""

    def __init__(self, spec: str) -> None:
        self.store = open_store(spec)


def console(spec: str, password_file: Path) -> Any:
    return create_console_app(
        Hub(spec), staff_password_file=password_file, state=open_console_state(spec)
    )


def passwords(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "staff.txt"
    path.write_text(text)
    return path


def sign_in(app: Any, name: str = STAFF, password: str = PASSWORD) -> tuple[TestClient, str]:
    client = TestClient(app, base_url="http://testserver")
    r = client.post("/login", data={"name": name, "password": password}, follow_redirects=False)
    assert r.status_code == 303
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie
    return client, cookie


def opens(app: Any, cookie: str) -> bool:
    browser = TestClient(app, base_url="http://testserver")
    browser.cookies.set(SESSION_COOKIE, cookie)
    return browser.get("/api/alerts", follow_redirects=False).status_code == 200


def test_session_key_is_random_and_shared_through_the_store(spec: str, tmp_path: Path) -> None:
    pw = passwords(tmp_path, f"{STAFF}:{PASSWORD}\n")
    first = console(spec, pw)
    second = console(spec, pw)  # another `veille hub` process on the same store
    _client, cookie = sign_in(first)
    assert opens(second, cookie)
    # the key the console once derived from the password file forges nothing now
    material = f"{STAFF}:{PASSWORD}\n"
    old_key = hashlib.sha256(b"veille-console-session\0" + material.encode()).digest()
    forged = Signer(old_key).session_cookie("staff", STAFF, 4e9)
    assert not opens(first, forged)
    # another hub (another store) with the same password file does not accept the cookie
    other = console(f"sqlite:///{tmp_path / 'other.db'}", pw)
    assert not opens(other, cookie)


def test_logout_ends_the_session_in_every_process(spec: str, tmp_path: Path) -> None:
    pw = passwords(tmp_path, f"{STAFF}:{PASSWORD}\n")
    first, second = console(spec, pw), console(spec, pw)
    client, cookie = sign_in(first)
    assert opens(second, cookie)
    page = client.get("/")
    token = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert client.post("/logout", data={"csrf": token}, follow_redirects=False).status_code == 303
    assert not opens(first, cookie)
    assert not opens(second, cookie)
    assert not opens(console(spec, pw), cookie)  # nor after a restart


def test_a_password_change_ends_that_persons_sessions(spec: str, tmp_path: Path) -> None:
    pw = passwords(tmp_path, f"{STAFF}:{PASSWORD}\nbob:autre-mot-de-passe\n")
    app = console(spec, pw)
    _a, alice = sign_in(app)
    _b, bob = sign_in(app, "bob", "autre-mot-de-passe")
    assert opens(console(spec, pw), alice)  # a restart with the same file keeps sessions
    passwords(tmp_path, f"{STAFF}:nouveau-mot-2025\nbob:autre-mot-de-passe\n")
    restarted = console(spec, pw)
    assert not opens(restarted, alice)
    assert opens(restarted, bob)
    sign_in(restarted, STAFF, "nouveau-mot-2025")


def test_console_login_throttle_is_per_address_and_atomic(tmp_path: Path) -> None:
    import threading

    from cloud_bridge.pages.auth import FREE_FAILURES

    spec = f"sqlite:///{tmp_path / 'hub.db'}"
    app = console(spec, passwords(tmp_path, f"{STAFF}:{PASSWORD}\n"))
    codes: list[int] = []
    gate = threading.Barrier(20)

    def guess() -> None:
        client = TestClient(app, base_url="http://testserver", client=("10.0.0.66", 5000))
        gate.wait()
        r = client.post("/login", data={"name": STAFF, "password": "x"}, follow_redirects=False)
        codes.append(r.status_code)

    threads = [threading.Thread(target=guess) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [401] * FREE_FAILURES + [429] * (20 - FREE_FAILURES)
    nurse = TestClient(app, base_url="http://testserver", client=("10.0.0.7", 5000))
    r = nurse.post("/login", data={"name": STAFF, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303


def test_processes_starting_together_make_one_key(spec: str) -> None:
    """Several `veille hub` processes start at once on a new store: one table, one key."""
    import threading

    keys: list[bytes] = []
    gate = threading.Barrier(4)

    def start() -> None:
        gate.wait()
        state = open_console_state(spec)
        keys.append(state.key())
        state.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 4
    assert len(set(keys)) == 1
    assert len(keys[0]) == 32


def test_the_staff_actions_are_kept_in_the_store_until_confirmed(spec: str) -> None:
    """What one console process sent, every other one shows; forgotten once confirmed or old."""
    first, second = open_console_state(spec), open_console_state(spec)
    try:
        first.record_action(LocalAction("a1", "acknowledged", "alice", 100.0))
        first.record_action(LocalAction("a2", "acknowledged", "bob", 50.0))
        first.record_action(LocalAction("a1", "resolved", "alice", 110.0))  # the latest counts
        assert second.actions(60.0) == {"a1": LocalAction("a1", "resolved", "alice", 110.0)}
        second.forget_actions(["a1"], before=60.0)  # a1 confirmed; a2 too old
        assert first.actions(0.0) == {}
    finally:
        first.close()
        second.close()
