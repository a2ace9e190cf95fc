"""One settings value for fit, fit_many, lower, check_fit and search: its defaults are
fit's own, it checks what needs no data when it is made, and a dry run checks the rest."""

import inspect

import jax
import pytest
from helpers import expect_rejected

import jaxnn
from jaxnn.settings import Settings


def _defaults(fn) -> dict:
    return {
        n: p.default
        for n, p in inspect.signature(fn).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }


@pytest.mark.parametrize("entry", [jaxnn.fit, jaxnn.fit_many], ids=["fit", "fit_many"])
def test_the_entry_points_spell_settings_defaults_and_nothing_else(entry):
    fields = {n: p.default for n, p in inspect.signature(Settings).parameters.items()}
    shared = {n: d for n, d in _defaults(entry).items() if n in fields}
    assert shared == fields  # every keyword of Settings, with the same default
    assert set(_defaults(entry)) - set(fields) == (
        {"num_models", "dropout"} if entry is jaxnn.fit_many else set()
    )


BAD = [
    (dict(shuffle="no"), TypeError, "shuffle must be True or False, got 'no'"),
    (dict(progress="no"), TypeError, "progress must be True or False"),
    (dict(epochs=0), ValueError, "epochs must be in"),
    (dict(batch_size=2.5), TypeError, "batch_size must be an int"),
    (dict(metrics="accuracy"), TypeError, "metrics must be a list"),
    (dict(metrics=["acuracy"]), ValueError, "unknown metric 'acuracy'"),
    (dict(loss="msee"), ValueError, "msee"),
    (dict(key=0), TypeError, "key must be a PRNG key"),
    (dict(tuning={"unroll": 2}), TypeError, "tuning must be a jaxnn.Tuning"),
    (dict(optimizer="sgdd"), ValueError, "sgdd"),
]


@pytest.mark.parametrize(("changes", "error", "match"), BAD, ids=[m for _, _, m in BAD])
def test_a_bad_setting_is_refused_when_the_value_is_made(changes, error, match):
    keywords = {"loss": "mse", "key": jax.random.key(0), **changes}
    expect_rejected(error, match, lambda: Settings(**keywords))


def test_check_fit_checks_what_needs_the_data_and_writes_nothing(tmp_path):
    model = jaxnn.mlp([3, 4, 1])
    x, y = jaxnn.make_regression(jax.random.key(0), n=32)
    params = model.init(jax.random.key(1))
    folder = tmp_path / "ckpt"
    common = dict(loss="mse", key=jax.random.key(2), checkpoints=jaxnn.Checkpoints(folder))
    check = lambda **kw: jaxnn.check_fit(model, params, x, y, **common, **kw)
    expect_rejected(
        ValueError, r"batch_size must be in \[1, 32\]", check, batch_size=64, watch=(folder,)
    )
    missing = tmp_path / "none"
    expect_rejected(
        jaxnn.checkpoint.CheckpointError, "no checkpoint at", check, resume=missing, watch=(folder,)
    )
    assert check() is None
    assert not folder.exists()
