"""`veille` command line: parse arguments, hand over to the module that does the job.

Handlers are imported only for the command that runs, so `veille eval-fall` does not pay for
FastAPI and `veille log` does not pay for onnxruntime. Bad input: one line on stderr, exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from cloud_bridge.errors import VeilleError

_LOGGER = logging.getLogger("veille")

# command -> "module:function"; each function takes the parsed namespace and returns an exit code
HANDLERS = {
    "demo": "edge.commands.demo:main",
    "run": "edge.runtime.gateway:main",
    "provision": "edge.commands.provision:main",
    "hub": "cloud_bridge.hub:main",
    "log": "edge.storage.outbox:log_main",
    "hub-log": "cloud_bridge.hub_log:main",
    "eval-fall": "edge.commands.eval_fall:main",
    "eval-inactivity": "edge.commands.eval_inactivity:main",
    "pki": "cloud_bridge.pki:main",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="veille", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log lines")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="a simulated home through the real gateway pipeline")
    demo.add_argument("--local", help="the home's MQTT broker URL (default: embedded broker)")
    demo.add_argument("--hub", help="the hub's MQTT broker URL (default: embedded broker)")
    demo.add_argument(
        "--scenario",
        choices=["normal", "fall", "inactivity", "night_exit", "sos", "all"],
        default="all",
    )
    demo.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")
    demo.add_argument("--duration", type=float, help="simulated seconds, then exit 0")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--http", default="127.0.0.1:8080", help="HOST:PORT of the status page")
    demo.add_argument("--home-id", default="demo-home")
    demo.add_argument("--family-pin", default="1234")
    demo.add_argument("--storage", type=Path, help="state folder (default: a temporary one)")

    run = sub.add_parser("run", help="the production gateway")
    run.add_argument("--config", type=Path, required=True)

    prov = sub.add_parser("provision", help="installer workflow")
    prov.add_argument("action", help="import | show | checklist | set-pin | csr")
    prov.add_argument("args", nargs="*")
    prov.add_argument("--storage", type=Path, required=True)
    prov.add_argument("--config", type=Path, help="gateway.toml, for actions that need brokers")

    hub = sub.add_parser("hub", help="the reference hub receiver and care console")
    hub.add_argument("--broker", required=True, help="the hub broker URL")
    hub.add_argument("--http", help="HOST:PORT of the care console")
    hub.add_argument("--store", help="sqlite:///path or postgresql://... (default: ./hub.db)")
    hub.add_argument("--ca-file", type=Path)
    hub.add_argument("--cert-file", type=Path)
    hub.add_argument("--key-file", type=Path)
    hub.add_argument("--username")
    hub.add_argument("--password-file", type=Path)
    hub.add_argument(
        "--client-id", help="MQTT client id, stable across restarts (default: veille-hub-<host>)"
    )
    hub.add_argument("--escalate-after", type=float, default=600.0, help="seconds")
    hub.add_argument("--staff-password-file", type=Path)
    hub.add_argument(
        "--notify", type=Path, help="notify.toml: channels and escalation chain (DESIGN.md 8)"
    )
    hub.add_argument(
        "--directory", type=Path, help="directory.toml: the homes' residents and contacts"
    )
    hub.add_argument(
        "--coordinator",
        action="append",
        metavar="NAME",
        help="a staff name who may edit the home directory (repeatable)",
    )

    hub_log = sub.add_parser("hub-log", help="what the hub holds, one record per alert")
    hub_log.add_argument("--store", required=True, help="sqlite:///path or postgresql://...")
    hub_log.add_argument("--since", help="only alerts raised at or after this UTC time")
    fmt = hub_log.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--json", action="store_true", help="one JSON line per alert")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header line")

    log = sub.add_parser("log", help="the alarm log")
    log.add_argument("--storage", type=Path, required=True)
    log.add_argument("--json", action="store_true", required=True)

    ef = sub.add_parser("eval-fall", help="stream fall-data trials through the fall detector")
    ef.add_argument("data", type=Path)
    ef.add_argument("--json", action="store_true", required=True)

    ei = sub.add_parser("eval-inactivity", help="learn from H, replay M, print alerts")
    ei.add_argument("--history", type=Path, required=True)
    ei.add_argument("--monitor", type=Path, required=True)
    ei.add_argument("--until")
    ei.add_argument(
        "--unresponsive-from", help="the simulated resident answers no check-in from then"
    )
    ei.add_argument("--json", action="store_true", required=True)

    pki = sub.add_parser("pki", help="a test CA and certificates for tests and pilots")
    pki.add_argument("action", help="init-ca | issue | csr | sign-csr")
    pki.add_argument("args", nargs="*")
    pki.add_argument("--dir", type=Path, required=True)
    pki.add_argument("--force", action="store_true", help="sign-csr: replace a certificate")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # a fatal signal in a C library (SIGSEGV, SIGBUS) leaves every thread's Python stack in
    # the journal instead of a silent death (called in-process with no real stderr: none)
    with contextlib.suppress(ValueError, OSError, AttributeError):
        faulthandler.enable()
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    module_name, func_name = HANDLERS[args.command].split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except VeilleError as exc:
        print(f"veille {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
