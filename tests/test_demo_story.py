"""`veille demo` tells its story: French lines on stdout, the first alert within a minute at
the default speed, warnings in a log file and not in the middle of the story."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

from tests.gateway_proc import VEILLE
from tests.support import free_port

FIRST_ALERT_S = 60.0  # real seconds, at the default speed (x60)
STORY = re.compile(
    r"^(Veille démo : |Page de la famille |Page de l'installateur |Console des soignants |"
    r"Journal technique : |  prévu : |  \(le début de matinée |\[centre\] |\[logement\] )"
)


def test_demo_first_alert_within_a_minute_in_plain_french(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [VEILLE, "demo", "--http", f"127.0.0.1:{free_port()}", "--storage", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while not any(text.startswith("[centre]") for _t, text in lines):
            assert proc.poll() is None, lines
            assert time.monotonic() < deadline, lines
            time.sleep(0.1)
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=30)
    reader.join(5)
    started = next(t for t, text in lines if text.startswith("Journal technique"))
    first_t, first = next((t, text) for t, text in lines if text.startswith("[centre]"))
    assert first_t - started < FIRST_ALERT_S, (first_t - started, lines)
    # one readable French line: the alert in words, never a Python dict or an English key
    assert "Appel à l'aide (bouton)" in first, first
    assert "{" not in first, first
    assert "'button'" not in first, first
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", first), first
    # the story only: no log line, no real-clock timestamp among the simulated ones
    assert [text for _t, text in lines if not STORY.match(text)] == []
    assert "WARNING" not in err, err
    assert "INFO" not in err, err
    log = tmp_path / "demo.log"
    assert log.exists()
    assert log.stat().st_size > 0
