"""The benchmarks' own helpers: the py-spy summary and the capacity figures of the hub ramp, and
the report comparison."""

from __future__ import annotations

import os
from pathlib import Path

from bench.__main__ import rows_hub_drain, rows_hub_ramp
from bench._common import drop_libraries_from_page_cache, rss_parts_mb
from bench.compare import compare
from bench.hub_drain import drain_figures
from bench.hub_ramp import marginal_cpu, profile_summary, where_it_stands

RAW = """\
MainThread (1);run (cloud_bridge/hub.py:10);write (cloud_bridge/hub_store_pg.py:88);\
execute (psycopg/cursor.py:7) 30
MainThread (1);run (cloud_bridge/hub.py:10);decode (cloud_bridge/contract.py:40) 10
paho (2);loop (paho/mqtt/client.py:1);_packet_read (paho/mqtt/client.py:2) 60
not a stack line
"""


def test_profile_summary_counts_self_and_inclusive_shares() -> None:
    s = profile_summary(RAW)
    assert s["samples"] == 100
    assert s["self_pct"][0] == ("_packet_read (client.py)", 60.0)
    assert ("execute (cursor.py)", 30.0) in s["self_pct"]
    incl = dict(s["inclusive_pct"])
    assert incl["run (hub.py)"] == 40.0
    assert incl["write (hub_store_pg.py)"] == 30.0
    assert profile_summary("")["self_pct"] == []


def _report(date: str, mb: float) -> dict:
    step = {"offered_per_s": 50.0, "seconds": 8.0, "stored_per_s": 49.0, "lost": 0,
            "put_per_s": 50.0, "alert_latency_ms": {"p50": 5.0, "p99": 20.0, "max": 30.0},
            "cpu_cores_busy": {"broker": 0.1}}  # fmt: skip
    return {
        "date": date,
        "machine": {"numpy": "2.4.6"},
        "results": {
            "drain": {
                "backlog": 100,
                "drain_s": mb,
                "drain_per_s": 10.0,
                "baseline_bare_paho_s": 1.0,
                "target_s": 30.0,
                "pass": True,
            },
            "hub_ramp": {
                "homes": 1000,
                "steps": [step],
                "stop_reason": "x",
                "max_stored_per_s_without_loss": 49.0,
                "at_offered_per_s": 50.0,
                "steady_alert_p99_ms": 20.0,
                "steady_offered_per_s": 50.0,
                "targets": {"stored_per_s": 2000.0, "alert_p99_ms_steady": 200.0},
                "pass": {"stored_per_s": False, "alert_p99_ms_steady": True},
            },
        },
    }


def test_compare_puts_each_figure_before_and_after() -> None:
    out = compare(_report("d1", 12.5), _report("d2", 9.0))
    drain = next(line for line in out.splitlines() if line.startswith("| drain |"))
    cells = [c.strip() for c in drain.split("|")]
    assert cells[3].startswith("12.5 s")
    assert cells[4].startswith("9.0 s")
    assert cells[6] == "pass"
    capacity = next(line for line in out.splitlines() if "hub capacity" in line)
    assert "**FAIL**" in capacity


def _step(rate: float, p99: float, lost: int = 0) -> dict:
    """A ramp step whose parts cost: broker 0.1 ms per message + 0.01 core idle, receivers
    0.5 ms + 0.05 core, PostgreSQL 0.2 ms, homes 1.2 ms + 0.2 core; 10 s windows."""
    n, window = int(rate * 8), 10.0
    per_msg = {"broker": 0.1, "receivers": 0.5, "postgres": 0.2, "gateways": 1.2}
    idle = {"broker": 0.01, "receivers": 0.05, "postgres": 0.0, "gateways": 0.2}
    cpu = {k: per_msg[k] * n / 1000 + idle[k] * window for k in per_msg}
    ms = {k: round(1000 * v / n, 3) for k, v in cpu.items()}
    ms["hub"] = round(ms["broker"] + ms["receivers"] + ms["postgres"], 3)
    ms["total"] = round(sum(cpu.values()) * 1000 / n, 3)
    return {"offered_per_s": rate, "seconds": 8.0, "stored_per_s": rate, "lost": lost,
            "put_per_s": rate, "alert_latency_ms": {"p50": 5.0, "p99": p99, "max": p99},
            "cpu_cores_busy": {}, "cpu_ms_per_message": ms, "cpu_s": cpu,
            "window_s": window, "stored": n, "load_average": [1.0, 1.0, 1.0]}  # fmt: skip


def test_marginal_cpu_separates_idle_from_per_message_cost() -> None:
    fit = marginal_cpu([_step(50, 20), _step(200, 30), _step(800, 90)])
    assert fit["receivers"] == {"ms_per_message": 0.5, "idle_cores": 0.05}
    assert fit["gateways"] == {"ms_per_message": 1.2, "idle_cores": 0.2}
    assert fit["hub"] == {"ms_per_message": 0.8}
    assert fit["total"] == {"ms_per_message": 2.0}
    assert marginal_cpu([_step(50, 20)]) == {}


def test_where_it_stands_takes_the_last_good_step_and_its_capacity() -> None:
    steps = [_step(50, 20), _step(200, 30), _step(800, 1500), _step(1600, 900, lost=3)]
    w = where_it_stands(steps, cores=2)
    assert w["last_good_offered_per_s"] == 200  # 800: p99 over 1 s; 1600: a loss
    hub_ms = 0.8 + (0.01 + 0.05) * 10 / 1600 * 1000  # the step's idle shared by its messages
    assert w["cpu_ms_per_message"]["hub"] == round(hub_ms, 3)
    assert w["hub_alone_capacity_per_s"] == round(2000 / round(hub_ms, 3))
    assert w["marginal_cpu"]["hub"]["ms_per_message"] == 0.8
    report = {"homes": 1000, "steps": steps, "stop_reason": "x", "where_it_stands": w,
              "max_stored_per_s_without_loss": 800.0, "at_offered_per_s": 800.0,
              "steady_alert_p99_ms": 20.0, "steady_offered_per_s": 50.0,
              "targets": {"stored_per_s": 2000.0, "alert_p99_ms_steady": 200.0},
              "pass": {"stored_per_s": False, "alert_p99_ms_steady": True}}  # fmt: skip
    row = next(r for r in rows_hub_ramp(report) if r[0].startswith("hub capacity implied"))
    assert row[1].startswith(f"{w['hub_alone_capacity_per_s']:,} msg/s")
    assert "hub 0.8, homes 1.2 ms per message" in row[2]
    assert row[4] == "**FAIL**"  # 2 cores / 1.175 ms: 1,702 msg/s
    assert "load average [1.0, 1.0, 1.0]" in rows_hub_ramp(report)[0][2]


def test_rss_parts_add_up_to_vmrss() -> None:
    parts = rss_parts_mb(os.getpid())
    assert parts["anon_mb"] > 0
    assert parts["file_mb"] > 0
    assert abs(parts["anon_mb"] + parts["file_mb"] + parts["shmem_mb"] - parts["rss_mb"]) <= 0.3


def test_drop_libraries_counts_shared_objects_only(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    lib = tmp_path / "pkg" / "_core.cpython-311-x86_64-linux-gnu.so"
    lib.write_bytes(b"\x7fELF" + bytes(8192))
    (tmp_path / "pkg" / "libz.so.1").write_bytes(b"z" * 100)
    (tmp_path / "pkg" / "libz.so").symlink_to("libz.so.1")
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    assert drop_libraries_from_page_cache(tmp_path) == 2  # the link's target once
    assert lib.read_bytes()[:4] == b"\x7fELF"  # dropped from the cache, not changed


def test_drain_figures_count_distinct_messages_from_the_resume() -> None:
    # a, b, (h, 1) put; a stored twice (a repeat, first commit counts), c never put
    stored = [("a", 101.0), ("a", 103.0), ("b", 102.0), (("h", 1), 104.0), ("c", 109.0)]
    cpu = {"broker": 0.5, "receivers": 1.0, "postgres": 0.5, "gateways": 2.0}
    f = drain_figures(
        sent={"a", "b", ("h", 1), "d"}, stored=stored, resume=100.0, cpu_s=cpu,
        window_s=5.0, resent=7,
    )  # fmt: skip
    assert (f["messages"], f["stored"], f["lost"], f["unexpected_in_store"]) == (4, 3, 1, 1)
    assert f["resume_to_last_commit_s"] == 4.0
    assert f["stored_per_s"] == 0.8  # 3 distinct messages in 4 s
    assert f["duplicates_sent"] == 7
    assert f["cpu_ms_per_message"]["hub"] == round(1000 * 2.0 / 3, 3)
    assert f["cpu_cores_busy"]["gateways"] == 0.4
    rows = rows_hub_drain({**f, "homes": 1000, "load_average": {"before": [0.1], "after": [2]}})
    assert rows[0][1].startswith("1 msg/s stored (distinct)")
    assert rows[0][4] == "**FAIL**"  # one lost, and far from 2,000 msg/s
