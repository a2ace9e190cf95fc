"""Shared fixtures and test settings."""

import os

# No persistent compilation cache in tests: a program served from it is not compiled,
# and the tests that assert "nothing compiled" would pass without meaning it.
# tests/test_cache.py turns it on in subprocesses of its own.
os.environ["JAXNN_COMPILATION_CACHE"] = "0"

import jax
import pytest
from hypothesis import settings

# Like equinox's tests: an implicit rank promotion (a (n,) array meeting an (n, 1) one)
# is an error, so no silent broadcast hides in the library.
jax.config.update("jax_numpy_rank_promotion", "raise")

# jit compiles on first use: wall-clock deadlines would flag the compile, not the code.
settings.register_profile("jaxnn", deadline=None, max_examples=50)
settings.load_profile("jaxnn")


@pytest.fixture
def key():
    return jax.random.key(0)
