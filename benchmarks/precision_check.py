"""Does "float32" mean float32 on this backend? The seed network trained by
``jaxnn.fit`` in each compute mode against plain SGD in float64 (PyTorch, on the CPU)
(or NumPy, written out, without PyTorch) from the same initial parameters and the
same batches.

The seed's network (3-4-4-1, relu, relu, sigmoid), MSE, SGD with learning rate 0.1,
batch 32 (the last batch of each epoch has 8 rows), no shuffling, 20 epochs. Prints
the largest absolute difference of the final parameters from the float64 run; float32
rounding alone stays near 1e-6, TF32 near 1e-3.

    python benchmarks/precision_check.py [--out precision.json]
"""

import argparse

import jax
import numpy as np
from common import write_json

import jaxnn

SIZES, LR, BATCH, EPOCHS = [3, 4, 4, 1], 0.1, 32, 20


def float64_sgd_numpy(params, x, y) -> list:
    """The same SGD in float64 NumPy, the chain rule written out (no PyTorch needed)."""
    p = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in params]
    for _ in range(EPOCHS):
        for i in range(0, len(x), BATCH):
            acts, target = (
                [np.asarray(x[i : i + BATCH], np.float64)],
                np.asarray(y[i : i + BATCH], np.float64),
            )
            for j, layer in enumerate(p):
                z = acts[-1] @ layer["w"] + layer["b"]
                acts.append(1 / (1 + np.exp(-z)) if j == len(p) - 1 else np.maximum(z, 0))
            d = 2 * (acts[-1] - target) / target.size  # d(mean squared error)/d(output)
            for j in reversed(range(len(p))):
                dz = d * acts[-1] * (1 - acts[-1]) if j == len(p) - 1 else d * (acts[j + 1] > 0)
                d = dz @ p[j]["w"].T
                p[j]["w"] = p[j]["w"] - LR * acts[j].T @ dz
                p[j]["b"] = p[j]["b"] - LR * dz.sum(axis=0)
    return p


def float64_sgd(params, x, y) -> list:
    """PyTorch's autograd in float64 on the CPU, or the NumPy version without PyTorch."""
    try:
        import torch
    except ImportError:
        return float64_sgd_numpy(params, x, y)

    p = [
        {
            k: torch.tensor(np.asarray(v), dtype=torch.float64, requires_grad=True)
            for k, v in layer.items()
        }
        for layer in params
    ]
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    for _ in range(EPOCHS):
        for i in range(0, len(x), BATCH):
            a = xt[i : i + BATCH]
            for j, layer in enumerate(p):
                z = a @ layer["w"] + layer["b"]
                a = torch.sigmoid(z) if j == len(p) - 1 else torch.relu(z)
            loss = ((a - yt[i : i + BATCH]) ** 2).mean()
            grads = torch.autograd.grad(loss, [t for layer in p for t in layer.values()])
            with torch.no_grad():
                for t, g in zip([t for layer in p for t in layer.values()], grads, strict=True):
                    t -= LR * g
    return [{k: v.detach().numpy() for k, v in layer.items()} for layer in p]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args(argv)
    x, y = jaxnn.make_regression(jax.random.key(0), n=1000)
    x, y = np.asarray(x), np.asarray(y)
    model = jaxnn.mlp(SIZES, output_activation="sigmoid")
    params = model.init(jax.random.key(1))
    reference = float64_sgd(params, x, y)
    results = {
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": jax.devices()[0].device_kind,
    }
    for mode in jaxnn.precision.COMPUTE_DTYPES:
        r = jaxnn.fit(
            model,
            params,
            x,
            y,
            loss="mse",
            optimizer=jaxnn.optim.sgd(LR),
            batch_size=BATCH,
            epochs=EPOCHS,
            shuffle=False,
            key=jax.random.key(2),
            tuning=jaxnn.Tuning(compute_dtype=mode),
            progress=False,
            devices=1,
        )
        diff = max(float(np.abs(np.asarray(a, np.float64) - b).max()) for a, b in zip(
            jax.tree.leaves(r.params), jax.tree.leaves(reference), strict=True))  # fmt: skip
        results[f"max |params - float64| ({mode})"] = diff
        print(f"{mode:14s} max |params - float64 SGD| = {diff:.2e}")
    if args.out:
        write_json(args.out, results)
    return results


if __name__ == "__main__":
    main()
