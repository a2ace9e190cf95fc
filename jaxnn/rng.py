"""The PRNG streams of a run: every random choice jaxnn makes, derived from one key.

A run has one root key. Each consumer takes its own stream, ``stream(key, name)`` =
``fold_in(key, STREAMS[name])``, and no stream feeds two consumers, so adding a new
source of randomness (dropout, say) never changes the numbers of another:

==================  ===  ===================================================
stream              id   consumer
==================  ===  ===================================================
``shuffle``         0    ``fit``'s data order: epoch ``e`` permutes with
                         ``shuffled_order(stream(key, "shuffle"), n, e)``
``init``            1    initial parameters (experiment runner, ``fit_many``)
``validation``      2    the rows ``validation=<fraction>`` holds out
``dataset``         3    synthetic data (``make_regression`` in the runner)
``test_split``      4    the train/test split of the experiment runner
``models``          5    ``fit_many``: ``split(stream(key, "models"), K)[i]`` is
                         model ``i``'s own root key
``dropout``         6    training-mode randomness (dropout): update ``s`` (the
                         step count before it, from 0) uses
                         ``fold_in(stream(key, "dropout"), s)``, whatever the
                         chunking, the devices or a resume
``search``          7    ``jaxnn.search``: configuration ``i``'s own root key
                         is ``fold_in(stream(key, "search"), i)``
``config``          8    a configuration's values: the ``j``-th name of the
                         space (sorted) draws from ``fold_in(stream(k,
                         "config"), j)`` of the configuration's key ``k``
``explore``         9    ``jaxnn.PBT``: the exploit after epoch ``e`` draws from
                         ``fold_in(stream(key, "explore"), e)``
==================  ===  ===================================================

This module only names streams; it draws nothing.
"""

import jax

STREAMS = {
    "shuffle": 0,
    "init": 1,
    "validation": 2,
    "dataset": 3,
    "test_split": 4,
    "models": 5,
    "dropout": 6,
    "search": 7,
    "config": 8,
    "explore": 9,
}


def stream(key: jax.Array, name: str) -> jax.Array:
    """The key of stream ``name`` (one of :data:`STREAMS`) of the run key ``key``.

    Example:
      >>> import jax
      >>> k = jax.random.key(0)
      >>> bool((jax.random.key_data(stream(k, "init")) != jax.random.key_data(stream(k, "shuffle"))).any())
      True
    """
    if name not in STREAMS:
        raise ValueError(f"unknown PRNG stream {name!r}; expected one of {list(STREAMS)}")
    return jax.random.fold_in(key, STREAMS[name])


def model_keys(key: jax.Array, k: int) -> jax.Array:
    """The root keys of ``fit_many``'s ``k`` models (shape ``(k,)``)."""
    return jax.random.split(stream(key, "models"), k)
