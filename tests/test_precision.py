"""The precision contract: "float32" is float32 in every compiled program."""

import re

import jax
import jax.numpy as jnp
import pytest
from helpers import assert_close

import jaxnn
from jaxnn import _precision, precision


def _fit_program(compute_dtype: str) -> str:
    """The StableHLO of the one-call program ``fit`` runs for the seed network."""
    model = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")
    x, y = jaxnn.make_regression(jax.random.key(0), n=64)
    program = jaxnn.lower(
        model, model.init(jax.random.key(1)), x, y, loss="mse", key=jax.random.key(2),
        optimizer=jaxnn.optim.sgd(0.1), batch_size=8, epochs=2, validation=(x[:16], y[:16]), devices=1,
        tuning=jaxnn.Tuning(compute_dtype=compute_dtype),
    )  # fmt: skip
    return program.lowered.as_text()


@pytest.mark.parametrize(
    ("mode", "want"), [("float32", "HIGHEST"), ("tensorfloat32", "HIGH"), ("bfloat16", "DEFAULT")]
)
def test_every_matmul_of_a_fit_has_the_modes_precision(mode, want):
    text = _fit_program(mode)
    dots = re.findall(r"stablehlo\.dot_general.*", text)
    assert len(dots) >= 6  # forward, backward and validation products
    for dot in dots:
        got = re.search(r"precision = \[(\w+), (\w+)\]", dot)
        assert got is not None and got.groups() == (want, want), dot


def test_float32_predictions_are_highest_precision_and_auto_is_float32_off_tpu():
    model = jaxnn.mlp([3, 4, 1])
    params = model.init(jax.random.key(0))
    jaxpr = str(
        jax.make_jaxpr(_precision.with_compute_dtype(model.apply, "float32"))(
            params, jnp.ones((2, 3))
        )
    )
    assert jaxpr.count("precision=(Precision.HIGHEST, Precision.HIGHEST)") == 2
    assert _precision.resolve_compute_dtype("auto") == "float32"  # the CPU: tests run there


def test_modes_give_float32_outputs_and_cast_only_inside():
    model = jaxnn.mlp([3, 4, 1])
    params = model.init(jax.random.key(0))
    x = jnp.linspace(-1, 1, 12).reshape(4, 3)
    exact = model.apply(params, x)
    for mode in precision.COMPUTE_DTYPES:
        out = _precision.with_compute_dtype(model.apply, mode)(params, x)
        assert out.dtype == jnp.float32
        assert_close(out, exact, rtol=2e-2, atol=2e-2)  # bf16/fp16 round to ~3 digits
    assert _precision.with_compute_dtype(model.apply, "float32") == _precision.with_compute_dtype(
        model.apply, "auto"
    )
    with pytest.raises(ValueError, match="compute_dtype must be 'auto' or one of"):
        _precision.with_compute_dtype(model.apply, "int8")


def test_evaluate_reproduces_the_validation_history_in_every_mode():
    model = jaxnn.mlp([3, 8, 1])
    params = model.init(jax.random.key(0))
    x, y = jaxnn.make_regression(jax.random.key(1), n=96)
    for mode in ("float32", "bfloat16"):
        r = jaxnn.fit(
            model,
            params,
            x[:64],
            y[:64],
            loss="mse",
            key=jax.random.key(2),
            epochs=2,
            batch_size=16,
            validation=(x[64:], y[64:]),
            tuning=jaxnn.Tuning(compute_dtype=mode),
            progress=False,
        )
        again = jaxnn.evaluate(model, r.params, x[64:], y[64:], loss="mse", compute_dtype=mode)
        assert again["loss"] == pytest.approx(float(r.history["val_loss"][-1]), rel=1e-6), mode


@pytest.mark.slow  # end to end; CI runs it
def test_float32_mode_follows_float64_sgd(tmp_path):
    """benchmarks/precision_check.py, end to end: the device check, here on the CPU."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "precision_check.py"
    spec = importlib.util.spec_from_file_location("precision_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(["--out", str(tmp_path / "p.json")])
    assert results["max |params - float64| (float32)"] <= 1e-5
    assert results["max |params - float64| (bfloat16)"] > 1e-4  # the check can tell modes apart
    assert json.loads((tmp_path / "p.json").read_text()) == results
