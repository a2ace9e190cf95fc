"""``python -m jaxnn doctor [--json]``: check the JAX installation (see ``jaxnn.doctor``)."""

import argparse
import dataclasses
import json
import sys

from jaxnn.doctor import doctor


def main(argv=None) -> int:
    # the help as plain text (no backticks)
    ap = argparse.ArgumentParser(prog="python -m jaxnn", description=__doc__.replace("`", ""))
    commands = ap.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "doctor", help="versions, backend and devices, and the fix for a CPU fallback"
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    args = ap.parse_args(argv)
    report = doctor(verbose=not args.json)
    if args.json:
        print(json.dumps({**dataclasses.asdict(report), "ok": report.ok}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
