"""What the benchmark scripts share: writing a result file whole or not at all (a
temporary file in the same folder, fsync, rename), so an interrupted run never leaves
a half-written ``results/*.json`` for the benchmarks page to read."""

import json
import os
import tempfile
from pathlib import Path


def write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


# benchmarks/latency.py's anatomy of a second: the stages of a job, in order
STAGES = ("import_", "helpers", "tracing", "lowering", "compile", "load", "run")


def anatomy_markdown(table: dict) -> str:
    head = (
        "| job | state | "
        + " | ".join(s.rstrip("_") for s in STAGES)
        + " | total | programs compiled |"
    )
    lines = [head, "|" + "---|" * (len(STAGES) + 4)]
    for job, states in table.items():
        for state, t in states.items():
            cells = " | ".join(f"{t[s]:.2f}" for s in STAGES)
            total = sum(t[s] for s in STAGES)
            lines.append(f"| {job} | {state} | {cells} | {total:.2f} | {t['compiles']:.0f} |")
    return "\n".join(lines)
