"""Side-by-side speed benchmark: jaxnn.fit against its peers, in one process.

Work A is the seed's network (1000 x 3, 3-4-4-1 relu/relu/sigmoid, MSE, SGD lr 0.1,
3 epochs, no shuffling) at batch 1 and 100; work B is a 784-512-512-10 MLP, softmax
cross-entropy, batch 128, 200 steps of random data (see ../shared/PEERS.md). Peers
are written the way their tutorials write them. Prints samples/s and ratios to
jaxnn, with the jax version and device, and writes JSON.

    python benchmarks/benchmark.py --out benchmarks/results/results_cpu.json  # then benchmarks/report.py
    python benchmarks/benchmark.py --quick          # a smoke run (tests use it)
"""

import argparse
import os
import platform
import subprocess
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import write_json, write_text

import jaxnn

SEED_SIZES = [3, 4, 4, 1]


def best_times(fns: dict, repeats: int, passes: int = 2) -> dict:
    """Best wall time of each function. Each peer runs its repeats back to back (as a
    training loop calls the same code again and again, with warm caches: running
    another peer in between evicts a sub-millisecond peer's code and data and slows it
    2x), and the whole set is run ``passes`` times, so a slow spell of the machine
    does not decide a peer's number."""
    for fn in fns.values():
        fn()  # warm-up: compile
    times = {name: [] for name in fns}
    for _ in range(passes):
        for name, fn in fns.items():
            fn()
            for _ in range(max(1, repeats // passes)):
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
    return {name: min(ts) for name, ts in times.items()}


# ---- peers ---------------------------------------------------------------------


def flax_loop(x, y, sizes, loss, lr, bs, epochs, out_act):
    import flax.linen as nn
    from flax.training import train_state

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, h):
            for s in sizes[1:-1]:
                h = nn.relu(nn.Dense(s)(h))
            h = nn.Dense(sizes[-1])(h)
            return nn.sigmoid(h) if out_act == "sigmoid" else h

    m = MLP()

    @jax.jit
    def step(state, xb, yb):
        def loss_fn(p):
            return loss(state.apply_fn({"params": p}, xb), yb)

        loss_value, grads = jax.value_and_grad(loss_fn)(state.params)
        return state.apply_gradients(grads=grads), loss_value

    params = m.init(jax.random.key(0), x[:1])["params"]
    tx = optax.sgd(lr)

    def run():
        state = train_state.TrainState.create(apply_fn=m.apply, params=params, tx=tx)
        for _ in range(epochs):
            for i in range(0, len(x), bs):
                state, _ = step(state, x[i : i + bs], y[i : i + bs])
        jax.block_until_ready(state.params)

    return run


def flax_loop_regularized(x, y, sizes, loss, lr, bs, rate):
    """Flax's training loop for a network with batch norm and dropout (its examples'
    pattern: a TrainState with batch_stats, mutable=["batch_stats"], a dropout rng)."""
    from typing import Any

    import flax.linen as nn
    from flax.training import train_state

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, h, train: bool):
            for s in sizes[1:-1]:
                h = nn.BatchNorm(use_running_average=not train, momentum=0.9)(nn.Dense(s)(h))
                h = nn.Dropout(rate, deterministic=not train)(nn.relu(h))
            return nn.Dense(sizes[-1])(h)

    class State(train_state.TrainState):
        batch_stats: Any

    @jax.jit
    def step(state, xb, yb, key):
        def loss_fn(p):
            out, updates = state.apply_fn({"params": p, "batch_stats": state.batch_stats}, xb, train=True,
                                          rngs={"dropout": key}, mutable=["batch_stats"])  # fmt: skip
            return loss(out, yb), updates["batch_stats"]

        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        return state.apply_gradients(grads=grads).replace(batch_stats=stats)

    m = MLP()
    variables = m.init(jax.random.key(0), x[:1], train=False)
    root = jax.random.key(1)

    def run():
        state = State.create(apply_fn=m.apply, params=variables["params"], tx=optax.sgd(lr),
                             batch_stats=variables["batch_stats"])  # fmt: skip
        for i in range(0, len(x), bs):
            state = step(state, x[i : i + bs], y[i : i + bs], jax.random.fold_in(root, i))
        jax.block_until_ready(state.params)

    return run


def jax_loop(x, y, model, loss, lr, bs, epochs):
    tx = optax.sgd(lr)

    @jax.jit
    def step(params, opt_state, xb, yb):
        loss_value, grads = jax.value_and_grad(lambda p: loss(model.apply(p, xb), yb))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss_value

    init_params = model.init(jax.random.key(0))

    def run():
        params, opt_state = init_params, tx.init(init_params)
        for _ in range(epochs):
            for i in range(0, len(x), bs):
                params, opt_state, _ = step(params, opt_state, x[i : i + bs], y[i : i + bs])
        jax.block_until_ready(params)

    return run


def scan_reference(x, y, model, loss, lr, bs, epochs, unroll=1):
    tx = optax.sgd(lr)
    nb = len(x) // bs
    xb = jnp.asarray(x[: nb * bs]).reshape(nb, bs, -1)
    yb = jnp.asarray(y[: nb * bs]).reshape(nb, bs, *y.shape[1:])

    @jax.jit
    def train(params):
        def step(c, b):
            params, opt_state = c
            g = jax.grad(lambda p: loss(model.apply(p, b[0]), b[1]))(params)
            updates, opt_state = tx.update(g, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        def epoch(c, _):
            return jax.lax.scan(step, c, (xb, yb), unroll=unroll)[0], None

        return jax.lax.scan(epoch, (params, tx.init(params)), None, length=epochs)[0][0]

    params = model.init(jax.random.key(0))
    return lambda: jax.block_until_ready(train(params))


def torch_eager(x, y, sizes, lr, bs, epochs, out_act, classify):
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(sizes[-2], sizes[-1]))
    if out_act == "sigmoid":
        layers.append(torch.nn.Sigmoid())
    net = torch.nn.Sequential(*layers).to(dev)
    tx = torch.tensor(x, device=dev)
    ty = torch.tensor(y, device=dev).long() if classify else torch.tensor(y, device=dev)
    loss_fn = torch.nn.CrossEntropyLoss() if classify else torch.nn.MSELoss()
    opt = torch.optim.SGD(net.parameters(), lr=lr)

    def run():
        for _ in range(epochs):
            for i in range(0, len(x), bs):
                opt.zero_grad()
                loss_fn(net(tx[i : i + bs]), ty[i : i + bs]).backward()
                opt.step()
        if dev == "cuda":
            torch.cuda.synchronize()

    return run


def sklearn_mlp(x, y, lr, bs, epochs):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            MLPRegressor(
                hidden_layer_sizes=(4, 4),
                solver="sgd",
                batch_size=bs,
                learning_rate_init=lr,
                momentum=0,
                max_iter=epochs,
                shuffle=False,
                tol=0,
                n_iter_no_change=10**9,
                random_state=0,
            ).fit(x, y[:, 0])

    return run


def jaxnn_fit(model, x, y, loss, lr, bs, epochs, **kw):
    params = model.init(jax.random.key(0))

    def run():
        r = jaxnn.fit(
            model,
            params,
            x,
            y,
            loss=loss,
            optimizer=jaxnn.optim.sgd(lr),
            batch_size=bs,
            epochs=epochs,
            key=jax.random.key(1),
            progress=False,
            **kw,
        )
        jax.block_until_ready(r.params)

    return run


def _with_precision(precision: str, make, *args):
    """A peer traced (so compiled) under JAX's matmul ``precision``."""
    with jax.default_matmul_precision(precision):
        run = make(*args)
        run()  # traced and compiled here, inside the context
    return run


def optional(name, make):
    try:
        return make()
    except ImportError as e:
        print(f"  (skipping {name}: {e})")
        return None


# ---- works ---------------------------------------------------------------------


def work_a(bs: int, repeats: int, epochs: int = 3):
    x, y = jaxnn.make_regression(jax.random.key(0), n=1000)
    xv, yv = jaxnn.make_regression(jax.random.key(9), n=200)
    model = jaxnn.mlp(SEED_SIZES, output_activation="sigmoid")
    loss, lr = jaxnn.losses.mse, 0.1
    runs = {
        "jaxnn.fit": jaxnn_fit(model, x, y, "mse", lr, bs, epochs, shuffle=False),
        "jaxnn.fit (data already on device)": jaxnn_fit(
            model, jnp.asarray(x), jnp.asarray(y), "mse", lr, bs, epochs, shuffle=False
        ),
        "jaxnn.fit (shuffle + validation)": jaxnn_fit(
            model, x, y, "mse", lr, bs, epochs, shuffle=True, validation=(xv, yv)
        ),
        "jaxnn.fit (gather per epoch)": jaxnn_fit(
            model, x, y, "mse", lr, bs, epochs, shuffle=False, tuning=jaxnn.Tuning(gather="epoch")
        ),
        "scan (hand-written)": scan_reference(x, y, model, loss, lr, bs, epochs),
        "scan, unroll 4": scan_reference(x, y, model, loss, lr, bs, epochs, unroll=4),
        "jax loop": jax_loop(x, y, model, loss, lr, bs, epochs),
        "flax loop": flax_loop(x, y, SEED_SIZES, loss, lr, bs, epochs, "sigmoid"),
        "torch eager": optional(
            "torch", lambda: torch_eager(x, y, SEED_SIZES, lr, bs, epochs, "sigmoid", False)
        ),
        "sklearn": optional("sklearn", lambda: sklearn_mlp(x, y, lr, bs, epochs)),
    }
    return measure(runs, len(x) * epochs, repeats)


def work_b(repeats: int, steps: int = 200, bs: int = 128):
    sizes = [784, 512, 512, 10]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps * bs, 784), dtype=np.float32)
    y = rng.integers(0, 10, steps * bs).astype(np.int32)
    model = jaxnn.mlp(sizes)
    loss, lr = jaxnn.losses.softmax_cross_entropy, 0.01
    xd, yd = jnp.asarray(x), jnp.asarray(y)
    runs = {
        "jaxnn.fit": jaxnn_fit(model, x, y, "softmax_cross_entropy", lr, bs, 1, shuffle=False),
        "jaxnn.fit (data already on device)": jaxnn_fit(
            model, xd, yd, "softmax_cross_entropy", lr, bs, 1, shuffle=False
        ),
        "scan (hand-written)": scan_reference(x, y, model, loss, lr, bs, 1),
        "jaxnn.fit (device data, tensorfloat32)": jaxnn_fit(
            model,
            xd,
            yd,
            "softmax_cross_entropy",
            lr,
            bs,
            1,
            shuffle=False,
            tuning=jaxnn.Tuning(compute_dtype="tensorfloat32"),
        ),
        "scan (hand-written, tensorfloat32)": _with_precision(
            "tensorfloat32", scan_reference, x, y, model, loss, lr, bs, 1
        ),
        "jaxnn.fit (device data, bfloat16)": jaxnn_fit(
            model,
            xd,
            yd,
            "softmax_cross_entropy",
            lr,
            bs,
            1,
            shuffle=False,
            tuning=jaxnn.Tuning(compute_dtype="bfloat16"),
        ),
        "flax loop": flax_loop(x, y, sizes, loss, lr, bs, 1, None),
        "torch eager": optional("torch", lambda: torch_eager(x, y, sizes, lr, bs, 1, None, True)),
    }
    return measure(runs, len(x), repeats)


def work_b_regularized(repeats: int, steps: int = 200, bs: int = 128, rate: float = 0.2) -> dict:
    """Work B with dropout and batch norm in each hidden layer: what they cost per step
    in jaxnn.fit, beside Flax's loop doing the same (data on the device for both)."""
    sizes = [784, 512, 512, 10]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((steps * bs, 784), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, 10, steps * bs).astype(np.int32))
    fit = lambda **kw: jaxnn_fit(
        jaxnn.mlp(sizes, **kw), x, y, "softmax_cross_entropy", 0.01, bs, 1, shuffle=False
    )
    runs = {
        "jaxnn.fit, dropout + batch norm": fit(dropout=rate, norm="batch"),
        "jaxnn.fit, plain": fit(),
        "jaxnn.fit, dropout": fit(dropout=rate),
        "jaxnn.fit, batch norm": fit(norm="batch"),
        "flax loop, plain": flax_loop(
            x, y, sizes, jaxnn.losses.softmax_cross_entropy, 0.01, bs, 1, None
        ),
        "flax loop, dropout + batch norm": flax_loop_regularized(
            x, y, sizes, jaxnn.losses.softmax_cross_entropy, 0.01, bs, rate
        ),
    }
    return measure(runs, steps * bs, repeats)


def work_b_parts(repeats: int, steps: int = 200, bs: int = 128) -> dict:
    """Where a work-B fit's time goes (ms per call, data on the device): the whole
    call, its boundary checks, planning and lowering (``jaxnn.lower``), its compiled
    program alone, and the hand-written scan."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((steps * bs, 784), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, 10, steps * bs).astype(np.int32))
    model = jaxnn.mlp([784, 512, 512, 10])
    params = model.init(jax.random.key(0))
    kw = dict(
        loss="softmax_cross_entropy",
        optimizer=jaxnn.optim.sgd(0.01),
        batch_size=bs,
        epochs=1,
        key=jax.random.key(1),
        shuffle=False,
        progress=False,
    )

    program = jaxnn.lower(model, params, x, y, **kw)

    t = best_times({
        "jaxnn.fit": lambda: jax.block_until_ready(jaxnn.fit(model, params, x, y, **kw).params),
        "jaxnn.lower (checks, plan, lowering)": lambda: jaxnn.lower(model, params, x, y, **kw),
        "compiled program alone": program.run,
        "scan (hand-written)": scan_reference(np.asarray(x), np.asarray(y), model, jaxnn.losses.softmax_cross_entropy,
                                              0.01, bs, 1),
    }, repeats)  # fmt: skip
    return {k: v * 1e3 for k, v in t.items()}


def gather_sweep(repeats: int, steps: int = 200, bs: int = 128) -> dict:
    """Work B (device data) by ``Tuning.gather`` and ``Tuning.unroll``, beside the
    hand-written scan unrolled the same: where the step loop's cost shows (accelerators)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((steps * bs, 784), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, 10, steps * bs).astype(np.int32))
    model = jaxnn.mlp([784, 512, 512, 10])
    runs = {}
    for unroll in (1, 4, 8):
        for gather in ("step", "epoch"):
            runs[f"jaxnn.fit, gather {gather}, unroll {unroll}"] = jaxnn_fit(
                model,
                x,
                y,
                "softmax_cross_entropy",
                0.01,
                bs,
                1,
                tuning=jaxnn.Tuning(unroll=unroll, gather=gather),
            )
        runs[f"scan, unroll {unroll}"] = scan_reference(
            np.asarray(x),
            np.asarray(y),
            model,
            jaxnn.losses.softmax_cross_entropy,
            0.01,
            bs,
            1,
            unroll=unroll,
        )
    return measure(runs, steps * bs, repeats)


def many_models(count: int, timed_sequential: int) -> dict:
    """``count`` seed networks at batch size 1 (work A): one fit_many call against
    sequential fit calls (``timed_sequential`` of them timed, scaled to ``count``)."""
    from jaxnn import fit_many

    x, y = jaxnn.make_regression(jax.random.key(0), n=1000)
    model = jaxnn.mlp(SEED_SIZES, output_activation="sigmoid")
    kw = dict(loss="mse", batch_size=1, epochs=3, shuffle=False, progress=False)
    keys = jaxnn.rng.model_keys(jax.random.key(1), count)

    def many():
        r = fit_many(
            model,
            None,
            x,
            y,
            key=jax.random.key(1),
            num_models=count,
            optimizer=jaxnn.optim.sgd(0.1),
            **kw,
        )
        jax.block_until_ready(r.params)

    def sequential():
        for k in keys[:timed_sequential]:
            r = jaxnn.fit(
                model,
                model.init(jaxnn.rng.stream(k, "init")),
                x,
                y,
                key=k,
                optimizer=jaxnn.optim.sgd(0.1),
                **kw,
            )
        jax.block_until_ready(r.params)

    t = best_times({"many": many, "sequential": sequential}, 3)
    seq = t["sequential"] * count / timed_sequential
    return {
        "models": count,
        "fit_many_s": t["many"],
        "sequential_fit_s": seq,
        "speedup": seq / t["many"],
        "samples_per_s": count * 3 * len(x) / t["many"],
    }


def work_c(repeats: int, steps: int = 20, bs: int = 8192, width: int = 4096) -> dict:
    """4 layers of 4096 and a 10-way head, bfloat16 compute, batch 8192: TFLOP/s of
    jaxnn.fit (each gather mode), of a hand-written bf16 scan with float32 master
    params (what fit computes, without fit), of torch eager (autocast), and of one
    bf16 8192^3 matmul."""
    sizes = [width] * 5 + [10]
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    flops = 6 * n_params * bs * steps  # forward 2, backward 4 per weight and row
    rows = bs * min(4, steps)
    x = jax.random.normal(jax.random.key(0), (rows, width), jnp.float32)
    y = jax.random.randint(jax.random.key(1), (rows,), 0, 10)
    model = jaxnn.mlp(sizes)
    params = model.init(jax.random.key(2))
    loss = jaxnn.losses.softmax_cross_entropy
    epochs = steps * bs // rows
    bf16 = lambda t: jax.tree.map(lambda a: a.astype(jnp.bfloat16), t)

    def fit(**kw):
        def run():
            r = jaxnn.fit(
                model,
                params,
                x,
                y,
                loss="softmax_cross_entropy",
                optimizer=jaxnn.optim.sgd(0.01),
                batch_size=bs,
                epochs=epochs,
                key=jax.random.key(3),
                shuffle=False,
                tuning=jaxnn.Tuning(compute_dtype="bfloat16"),
                progress=False,
                **kw,
            )
            jax.block_until_ready(r.params)

        return run

    @jax.jit
    def scan(params):
        xb, yb = x.reshape(-1, bs, width), y.reshape(-1, bs)

        def step(p, b):
            f = lambda q: loss(
                model.apply(bf16(q), b[0].astype(jnp.bfloat16)).astype(jnp.float32), b[1]
            )
            return jax.tree.map(lambda a, g: a - 0.01 * g, p, jax.grad(f)(p)), None

        return jax.lax.scan(
            lambda p, _: (jax.lax.scan(step, p, (xb, yb))[0], None), params, None, length=epochs
        )[0]

    a = jax.random.normal(jax.random.key(4), (8192, 8192), jnp.bfloat16)
    b = jax.random.normal(jax.random.key(5), (8192, 8192), jnp.bfloat16)
    mm = jax.jit(lambda a, b: a @ b)

    runs = {
        "jaxnn.fit": fit(),
        "jaxnn.fit, gather epoch": fit(tuning=jaxnn.Tuning(gather="epoch")),
        "scan (hand-written, bf16)": lambda: jax.block_until_ready(scan(params)),
        "matmul": lambda: jax.block_until_ready([mm(a, b) for _ in range(10)]),
    }
    torch_run = optional(
        "torch", lambda: _torch_bf16(np.asarray(x), np.asarray(y), sizes, bs, steps)
    )
    if torch_run is not None:
        runs["torch eager"] = torch_run
    t = best_times(runs, repeats)
    out = {k: flops / v / 1e12 for k, v in t.items() if k != "matmul"}
    out["bf16 matmul 8192^3"] = 10 * 2 * 8192**3 / t["matmul"] / 1e12
    return out


def _torch_bf16(x, y, sizes, bs, steps):
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1], strict=True):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(sizes[-2], sizes[-1])).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    tx, ty = torch.tensor(x, device=dev), torch.tensor(y, device=dev).long()
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        for i in range(steps):
            j = (i * bs) % len(tx)
            opt.zero_grad()
            with torch.autocast(dev, dtype=torch.bfloat16):
                loss = loss_fn(net(tx[j : j + bs]), ty[j : j + bs])
            loss.backward()
            opt.step()
        if dev == "cuda":
            torch.cuda.synchronize()

    return run


def measure(runs: dict, samples: int, repeats: int) -> dict:
    times = best_times({k: v for k, v in runs.items() if v is not None}, repeats)
    return {name: samples / t for name, t in times.items()}


MEMORY_SCRIPT = """
import sys, numpy as np, jax, jaxnn
def rss(field):
    for line in open('/proc/self/status'):
        if line.startswith(field): return int(line.split()[1]) * 1024
n = int(sys.argv[1])
model = jaxnn.mlp([3, 4, 4, 1], output_activation='sigmoid')
params = model.init(jax.random.key(0))
jaxnn.fit(model, params, np.zeros((64, 3), np.float32), np.zeros((64, 1), np.float32), loss='mse',
          batch_size=64, key=jax.random.key(0), progress=False)  # warm the runtime up
before_data = rss('VmRSS')
rng = np.random.default_rng(0)
x = rng.standard_normal((n, 3), dtype=np.float32)
y = rng.random((n, 1), dtype=np.float32)
after_data = rss('VmRSS')
jaxnn.fit(model, params, x, y, loss='mse', batch_size=1000, epochs=1, key=jax.random.key(1), progress=False)
print(before_data, after_data, rss('VmHWM'), x.nbytes + y.nbytes)
"""


def memory(n: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(n)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")},
    )
    before, after, peak, nbytes = map(int, out.stdout.split())
    return {
        "records": n,
        "dataset_bytes": nbytes,
        "peak_above_baseline_x": (peak - before) / nbytes,
        "peak_above_data_x": (peak - after) / nbytes,
    }


def table(title: str, results: dict, ref_name: str = "jaxnn.fit") -> str:
    ref = results[ref_name]
    lines = [f"{title}", f"  {'peer':34s} {'samples/s':>12s} {'jaxnn.fit is':>14s}"]
    for name, v in sorted(results.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {name:34s} {v:12,.0f} {ref / v:13.2f}x")
    return "\n".join(lines)


def markdown(results: dict) -> str:
    """The results as markdown tables (docs/benchmarks.md is made by report.py)."""
    env = results["environment"]
    lines = [
        f"jax {env['jax']}, {env['backend']} ({env['device']} x{env['device_count']}), Python {env['python']}",
        "",
    ]
    for work in ("A, batch 1", "A, batch 100", "A, batch 100, 30 epochs", "B, batch 128", "B, dropout and batch norm",
                 "B, by gather and unroll"):  # fmt: skip
        if work in results:
            ref_name = next(
                n
                for n in ("jaxnn.fit", "jaxnn.fit, dropout + batch norm", "scan, unroll 1")
                if n in results[work]
            )
            ref = results[work][ref_name]
            lines += [
                f"Work {work}",
                "",
                f"| peer | samples/s | {ref_name} is |",
                "|---|---:|---:|",
            ]
            for name, v in sorted(results[work].items(), key=lambda kv: -kv[1]):
                lines.append(f"| {name} | {v:,.0f} | {ref / v:.2f}x |")
            lines.append("")
    if "many models" in results:
        m = results["many models"]
        lines += [
            f"Many models: {m['models']} seed networks at batch size 1 (work A): fit_many "
            f"{m['fit_many_s']:.3f} s, sequential fit (with init) {m['sequential_fit_s']:.2f} s: "
            f"**{m['speedup']:.0f}x**",
            "",
        ]
    if "B, where a fit's time goes (ms)" in results:
        parts = results["B, where a fit's time goes (ms)"]
        lines += ["Work B, where a fit's time goes (ms per call, data on the device): "
                  + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()), ""]  # fmt: skip
    if "C, bf16 TFLOP/s" in results:
        c = results["C, bf16 TFLOP/s"]
        lines += ["Work C (TFLOP/s): " + ", ".join(f"{k} {v:.0f}" for k, v in c.items()), ""]
    if "memory" in results:
        m = results["memory"]
        lines += [
            f"Memory: fit on {m['records']:,} x 3 float32 records peaks at "
            f"{m['peak_above_baseline_x']:.2f}x the dataset's bytes above the process's baseline before "
            f"the data existed ({m['peak_above_data_x']:.2f}x above it with the data loaded)",
            "",
        ]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    ap.add_argument("--quick", action="store_true", help="tiny repeats and sizes: a smoke run")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--memory-records", type=int, default=10_000_000)
    ap.add_argument("--markdown", help="also write the tables as markdown here")
    args = ap.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    # The peers in fit's default mode ("float32": true float32 matmuls, see
    # jaxnn.precision), not JAX's TF32 (GPU) or one-pass bf16 (TPU) default.
    jax.config.update("jax_default_matmul_precision", "float32")
    dev = jax.devices()[0]
    env = {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": dev.device_kind,
        "device_count": jax.device_count(),
        "python": platform.python_version(),
        "matmul precision": "float32 (peers and jaxnn.fit), except rows that name another mode",
    }
    print(f"jax {env['jax']} on {env['backend']} ({env['device']} x{env['device_count']})")
    results = {"environment": env}

    def record(name: str, value):  # saved as it comes: a run cut short keeps what it measured
        results[name] = value
        if args.out:
            write_json(args.out, results)
        if args.markdown:
            write_text(args.markdown, markdown(results))
        return value

    steps = 10 if args.quick else 200
    print(
        table(
            "Work B, 784-512-512-10, batch 128",
            record("B, batch 128", work_b(repeats, steps=steps)),
        )
    )
    parts = record("B, where a fit's time goes (ms)", work_b_parts(repeats, steps=steps))
    print(
        "Work B, where a fit's time goes (ms per call):",
        ", ".join(f"{k} {v:.2f}" for k, v in parts.items()),
    )
    print(table("Work A, batch 1 (seed network)", record("A, batch 1", work_a(1, repeats))))
    print(table("Work A, batch 100", record("A, batch 100", work_a(100, repeats))))
    if not args.quick:  # the same work, long enough that per-call costs stop mattering
        a30 = record("A, batch 100, 30 epochs", work_a(100, max(3, repeats // 4), epochs=30))
        print(table("Work A, batch 100, 30 epochs", a30))
    if jax.default_backend() != "cpu":  # work C is sized for an accelerator
        c = record("C, bf16 TFLOP/s", work_c(repeats))
        print(
            "Work C, 4 x 4096 + 10, bf16, batch 8192 (TFLOP/s): "
            + ", ".join(f"{k} {v:.0f}" for k, v in c.items())
            + f"; jaxnn.fit is {c['jaxnn.fit'] / c['bf16 matmul 8192^3']:.2f}x the matmul"
        )
    m = record("many models", many_models(8 if args.quick else 1024, 8 if args.quick else 64))
    print(
        f"Many models: {m['models']} seed networks at batch size 1, fit_many {m['fit_many_s']:.3f} s vs "
        f"sequential fit {m['sequential_fit_s']:.2f} s: {m['speedup']:.0f}x ({m['samples_per_s']:,.0f} samples/s)"
    )
    reg = record("B, dropout and batch norm", work_b_regularized(repeats, steps=steps))
    print(table("Work B with dropout 0.2 and batch norm", reg, "jaxnn.fit, dropout + batch norm"))
    if jax.default_backend() != "cpu":
        sweep = record("B, by gather and unroll", gather_sweep(repeats))
        print(table("Work B (device data) by gather and unroll", sweep, "scan, unroll 1"))
    if not args.quick and args.memory_records and jax.default_backend() == "cpu":
        m = record("memory", memory(args.memory_records))
        print(
            f"Memory: fit on {m['records']:,} x 3 records peaks at {m['peak_above_baseline_x']:.2f}x the "
            f"dataset's bytes above the baseline before the data ({m['peak_above_data_x']:.2f}x above it after)"
        )
    return results


if __name__ == "__main__":
    main()
