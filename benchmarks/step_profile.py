"""Where fit's step loses to a hand-written scan (an accelerator diagnostic).

A ladder from the hand-written scan of work B (784-512-512-10, batch 128, 200 steps,
data on the device) to ``jaxnn.fit``, adding one of fit's features per rung, each
timed in one process; the compiled HLO and a profiler trace of the scan and of fit's
program; the cost of a host upload. Writes everything under ``--out``.

    python benchmarks/step_profile.py --out /tmp/profile
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import write_json

import jaxnn
from jaxnn import _optim, _precision
from jaxnn.options import TrainState


def best(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def ladder(x, y, unroll: int):
    """{rung: (jitted fn, args)}: each rung adds one of fit's features to the scan."""
    model = jaxnn.mlp([784, 512, 512, 10])
    params = model.init(jax.random.key(0))
    loss = jaxnn.losses.softmax_cross_entropy
    bs = 128
    nb = x.shape[0] // bs
    xb, yb = x.reshape(nb, bs, -1), y.reshape(nb, bs)
    idx = jnp.arange(nb * bs, dtype=jnp.int32).reshape(nb, bs)
    sgd = optax.sgd(0.01)

    def plain(value, gather):
        @jax.jit
        def train(params):
            def step(c, b):
                p, s = c
                xs, ys = (x[b], y[b]) if gather else b
                f = lambda q: loss(model.apply(q, xs), ys)
                if value:
                    lv, g = jax.value_and_grad(f)(p)
                else:
                    lv, g = None, jax.grad(f)(p)
                u, s = sgd.update(g, s, p)
                return (optax.apply_updates(p, u), s), lv

            return jax.lax.scan(
                step, (params, sgd.init(params)), idx if gather else (xb, yb), unroll=unroll
            )

        return train

    def jaxnn_step(compute: bool):
        apply = _precision.with_compute_dtype(model.apply, "float32") if compute else model.apply
        tx = _optim.transform("sgd")
        step_fn = jaxnn.make_train_step(apply, loss, tx)

        @jax.jit
        def train(params):
            opt = _optim.set_hyperparams(tx.init(params), {"learning_rate": 0.01})
            state = TrainState(params, opt, jnp.int32(0), jnp.int32(0), jax.random.key(0), None)

            def step(s, b):
                s, m = step_fn(s, (x[b], y[b]))
                return s, m["loss"]

            return jax.lax.scan(step, state, idx, unroll=unroll)

        return train

    def lr_state():
        tx = _optim.transform("sgd")

        @jax.jit
        def train(params):
            def step(c, b):
                p, s = c
                lv, g = jax.value_and_grad(lambda q: loss(model.apply(q, x[b]), y[b]))(p)
                u, s = tx.update(g, s, p)
                return (optax.apply_updates(p, u), s), lv

            opt = _optim.set_hyperparams(tx.init(params), {"learning_rate": 0.01})
            return jax.lax.scan(step, (params, opt), idx, unroll=unroll)

        return train

    rungs = {
        "0 scan (grad, pre-batched)": plain(False, False),
        "1 + loss values": plain(True, False),
        "2 + gather rows by index": plain(True, True),
        "3 + learning rate in state": lr_state(),
        "4 + TrainState (jaxnn.make_train_step)": jaxnn_step(False),
        "5 + float32 ComputeApply": jaxnn_step(True),
    }
    return rungs, model, params


def timed(rungs: dict, params) -> dict:
    return {k: (lambda f=f: jax.block_until_ready(f(params))) for k, f in rungs.items()}


def fit_runner(model, params, x, y, **kw):
    def run():
        r = jaxnn.fit(
            model,
            params,
            x,
            y,
            loss="softmax_cross_entropy",
            optimizer=jaxnn.optim.sgd(0.01),
            batch_size=128,
            epochs=1,
            key=jax.random.key(1),
            shuffle=False,
            progress=False,
            **kw,
        )
        jax.block_until_ready(r.params)

    return run


def fit_hlo(model, params, x, y, **kw) -> str:
    program = jaxnn.lower(
        model, params, x, y, loss="softmax_cross_entropy", key=jax.random.key(1), optimizer=jaxnn.optim.sgd(0.01),
        batch_size=128, epochs=1, shuffle=False, tuning=jaxnn.Tuning(**kw),
    )  # fmt: skip
    return program.lowered.compile().as_text()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--steps", type=int, default=200)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    jax.config.update("jax_default_matmul_precision", "float32")
    r = np.random.default_rng(0)
    xh = r.standard_normal((args.steps * 128, 784), dtype=np.float32)
    yh = r.integers(0, 10, args.steps * 128).astype(np.int32)
    x, y = jnp.asarray(xh), jnp.asarray(yh)
    samples = args.steps * 128
    out = {"jax": jax.__version__, "device": jax.devices()[0].device_kind}
    for unroll in (1, 8):
        rungs, model, params = ladder(x, y, unroll)
        runs = timed(rungs, params)
        runs["6 jaxnn.fit (device data)"] = fit_runner(
            model, params, x, y, tuning=jaxnn.Tuning(unroll=unroll)
        )
        runs["7 jaxnn.fit (host NumPy)"] = fit_runner(
            model, params, xh, yh, tuning=jaxnn.Tuning(unroll=unroll)
        )
        res = {k: samples / best(f, args.repeats) for k, f in runs.items()}
        out[f"unroll {unroll}"] = res
        print(f"unroll {unroll}")
        for k, v in res.items():
            print(
                f"  {k:42s} {v:12,.0f} samples/s  {v / res['0 scan (grad, pre-batched)']:.2f}x the scan"
            )
    rungs, model, params = ladder(x, y, 1)
    hlo = {"fit": fit_hlo(model, params, x, y, unroll=1)}
    for k in ("0 scan (grad, pre-batched)", "2 + gather rows by index", "5 + float32 ComputeApply"):
        hlo[k.split()[0]] = rungs[k].lower(params).compile().as_text()
    for k, text in hlo.items():
        with open(os.path.join(args.out, f"hlo_{k}.txt"), "w") as f:
            f.write(text)
    fit_run = fit_runner(model, params, x, y, tuning=jaxnn.Tuning(unroll=1))
    scan_run = timed(rungs, params)["0 scan (grad, pre-batched)"]
    fit_run(), scan_run()
    for name, fn in (("scan", scan_run), ("fit", fit_run)):
        try:
            with jax.profiler.trace(
                os.path.join(args.out, f"trace_{name}"), create_perfetto_trace=True
            ):
                fn()
        except Exception as e:  # a diagnostic: record it and go on
            out[f"trace {name} error"] = repr(e)
    # host upload
    t_finite = best(lambda: np.isfinite(xh).all(), 5)
    t_put = best(lambda: jax.device_put(xh).block_until_ready(), 5)
    out["host"] = {
        "isfinite all (ms)": t_finite * 1e3,
        f"device_put {xh.nbytes / 2**20:.0f} MiB (ms)": t_put * 1e3,
    }
    try:
        import xxhash

        out["host"]["xxh3_64 (ms)"] = (
            best(lambda: xxhash.xxh3_64_intdigest(memoryview(xh).cast("B")), 5) * 1e3
        )
    except ImportError as e:
        out["host"]["xxhash"] = repr(e)
    print(out["host"])
    write_json(os.path.join(args.out, "profile.json"), out)


if __name__ == "__main__":
    main()
