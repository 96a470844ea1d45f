"""`python -m bench.compare BEFORE.json AFTER.json`: two benchmark reports side by side.

For moving the dependency lock forward (README, "Moving the lock"): run `python -m bench`
before `scripts/lock --upgrade`, keep `bench/reports/report.json`, run it again after, and
compare. Prints a markdown table, one row per figure: its value before and after, the target,
and the result after; figures present in one report only are shown with "—".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.__main__ import ROWS, Row


def _rows(report: dict[str, Any]) -> dict[tuple[str, str], Row]:
    out: dict[tuple[str, str], Row] = {}
    for name, res in report.get("results", {}).items():
        if name not in ROWS or "error" in res:
            continue
        try:
            rows = ROWS[name](res)
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue
        for row in rows:
            out[(name, row[0])] = row
    return out


def _versions(report: dict[str, Any]) -> str:
    m = report.get("machine", {})
    keys = ("python", "numpy", "onnxruntime", "paho_mqtt", "sqlite")
    return ", ".join(f"{k} {m.get(k)}" for k in keys)


def compare(before: dict[str, Any], after: dict[str, Any]) -> str:
    a, b = _rows(before), _rows(after)
    lines = [
        f"Before: {before.get('date')} ({_versions(before)})",
        f"After: {after.get('date')} ({_versions(after)})",
        "",
        "| benchmark | figure | before | after | target | result after |",
        "|---|---|---|---|---|---|",
    ]
    for key in [*a, *(k for k in b if k not in a)]:
        old, new = a.get(key), b.get(key)
        target = (new or old or ("", "", "", "—", ""))[3]
        lines.append(
            f"| {key[0]} | {key[1]} | {old[1] if old else '—'} | {new[1] if new else '—'} "
            f"| {target} | {new[4] if new else '—'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    sys.stdout.write(
        compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
