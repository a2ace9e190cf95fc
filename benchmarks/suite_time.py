"""How long the test tiers take from a fresh clone: wall and CPU seconds, against the
promise CONTRIBUTING.md states (quick tier <= 3 min; whole suite <= 10 min and
<= 1,000 CPU-seconds on 2 cores). Not a timed test: run it alone, on a quiet machine.

    python benchmarks/suite_time.py             # both tiers, in this environment
    python benchmarks/suite_time.py --quick     # the quick tier only

The clone is made from this checkout's committed HEAD, so uncommitted changes are not
measured; the interpreter is this one (its installed packages, as CI's fresh venv has).
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIERS = {"quick": (["-m", "not slow"], 180, None), "whole": ([], 600, 1000)}


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(clone: Path, args: list[str]) -> dict:
    start_wall, start_cpu = time.perf_counter(), child_cpu()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=clone,
        capture_output=True,
        text=True,
    )
    wall, cpu = time.perf_counter() - start_wall, child_cpu() - start_cpu
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "exit": done.returncode,
        "last": done.stdout.strip().splitlines()[-1:],
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the quick tier only")
    args = ap.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="jaxnn-suite-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        for tier, (flags, wall_max, cpu_max) in TIERS.items():
            if args.quick and tier != "quick":
                continue
            rows[tier] = {**measure(clone, flags), "wall_max_s": wall_max, "cpu_max_s": cpu_max}
    print(f"{'tier':<7}{'wall':>9}{'promise':>9}{'CPU-s':>9}{'promise':>9}  result")
    for tier, r in rows.items():
        cpu_max = f"{r['cpu_max_s']}" if r["cpu_max_s"] else "-"
        print(
            f"{tier:<7}{r['wall_s']:8.0f}s{r['wall_max_s']:8d}s{r['cpu_s']:9.0f}{cpu_max:>9}  "
            f"{' '.join(r['last'])} (exit {r['exit']})"
        )
    machine = f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    flat = {"machine": machine}
    for tier, r in rows.items():
        flat[f"{tier} tier: wall s (promise {r['wall_max_s']})"] = round(r["wall_s"])
        flat[f"{tier} tier: CPU s" + (f" (promise {r['cpu_max_s']})" if r["cpu_max_s"] else "")] = (
            round(r["cpu_s"])
        )
        flat[f"{tier} tier: result"] = " ".join(r["last"])
    out = ROOT / "benchmarks" / "results" / "suite_time_cpu.json"
    out.write_text(json.dumps(flat, indent=2) + "\n")
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
