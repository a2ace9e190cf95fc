"""Training on a dataset read from disk: writes a synthetic work-B dataset (784
features, 10 classes; 2 GB by default) to a .npy file in chunks, then trains the
benchmark's 784-512-512-10 network (batch 128, SGD) on it from a memmap with
``jaxnn.fit``, which reads the rows chunk by chunk while it trains.

    python benchmarks/stream_memmap.py --gb 2 --epochs 1
    python benchmarks/stream_memmap.py --gb 2 --compare --out stream.json

``--compare`` trains from the memmap and from memory, each in a fresh process, and
reports samples per second (of an epoch after the first, so compiling is excluded)
and the peak resident memory of each process (a memmap's pages count toward it, as in
a container's memory limit): docs/benchmarks.md's stream_cpu table.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import write_json

FEATURES, CLASSES, BATCH = 784, 10, 128


def write(path: Path, rows: int, progress: bool) -> None:
    """The dataset: standard normal inputs and labels from a fixed linear map, written
    in chunks of 64 MB (never whole in memory); skipped when ``path`` already holds it."""
    labels = path.with_suffix(".labels.npy")
    if path.exists() and labels.exists() and np.load(path, mmap_mode="r").shape == (rows, FEATURES):
        return
    from tqdm.auto import tqdm

    rng = np.random.default_rng(0)
    w = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32)
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, FEATURES))
    y = np.empty(rows, np.int32)
    step = (64 << 20) // (4 * FEATURES)
    for start in tqdm(
        range(0, rows, step), desc=f"writing {path.name}", unit="chunk", disable=not progress
    ):
        block = rng.standard_normal((min(step, rows - start), FEATURES), dtype=np.float32)
        x[start : start + len(block)] = block
        y[start : start + len(block)] = (block @ w).argmax(axis=1)
    x.flush()
    del x
    np.save(labels, y)


def train(path: Path, source: str, epochs: int, progress: bool) -> dict:
    """Trains from ``source`` ("memmap" or "memory"); returns its speed and peak memory."""
    import jax

    import jaxnn

    x = np.load(path, mmap_mode="r")
    if source == "memory":
        x = np.array(x)  # the whole file in memory
    y = np.load(path.with_suffix(".labels.npy"))
    model = jaxnn.mlp([FEATURES, 512, 512, CLASSES])
    kw = dict(
        loss="softmax_cross_entropy",
        key=jax.random.key(1),
        batch_size=BATCH,
        optimizer=jaxnn.optim.sgd(0.01),
        progress=progress,
    )
    first = jaxnn.fit(model, model.init(jax.random.key(0)), x, y, epochs=1, **kw)  # compiles
    start = time.perf_counter()
    result = jaxnn.fit(model, first.params, x, y, epochs=1 + epochs, resume=first, **kw)
    jax.block_until_ready(result.params)
    seconds = time.perf_counter() - start
    return {
        "source": source,
        "samples_per_s": len(y) * epochs / seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "file_bytes": path.stat().st_size,
        "loss": [float(v) for v in result.history["loss"]],
        "jax": jax.__version__,
        "device": jax.devices()[0].device_kind,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--gb", type=float, default=2.0, help="size of the dataset file (default 2)")
    ap.add_argument(
        "--epochs", type=int, default=1, help="epochs timed after the first (default 1)"
    )
    ap.add_argument(
        "--file", default="/tmp/jaxnn_stream/x.npy", help="where the dataset is written"
    )
    ap.add_argument("--compare", action="store_true", help="also train from memory; report both")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--train", choices=["memmap", "memory"], help=argparse.SUPPRESS
    )  # one child process
    args = ap.parse_args(argv)
    path = Path(args.file)
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.train:
        print(json.dumps(train(path, args.train, args.epochs, not args.no_progress)))
        return None
    rows = int(args.gb * 2**30) // (4 * FEATURES)
    write(path, rows, not args.no_progress)
    results = {}
    for source in ["memmap", "memory"] if args.compare else ["memmap"]:
        cmd = [
            sys.executable,
            __file__,
            "--train",
            source,
            "--file",
            str(path),
            "--epochs",
            str(args.epochs),
        ]
        cmd += ["--no-progress"] if args.no_progress else []
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
        results[source] = json.loads(out.strip().splitlines()[-1])
        r = results[source]
        print(f"{source}: {r['samples_per_s']:.0f} samples/s, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB "
              f"({r['peak_rss_bytes'] / r['file_bytes']:.2f}x the {r['file_bytes'] / 2**30:.2f} GiB file)")  # fmt: skip
    if args.compare:
        ratio = results["memmap"]["samples_per_s"] / results["memory"]["samples_per_s"]
        print(f"memmap / memory samples/s: {ratio:.2f}x")
        results["ratio"] = ratio
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
