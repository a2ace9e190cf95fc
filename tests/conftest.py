"""Shared fixtures and test settings."""

import jax
import pytest
from hypothesis import settings

# jit compiles on first use: wall-clock deadlines would flag the compile, not the code.
settings.register_profile("jaxnn", deadline=None, max_examples=50)
settings.load_profile("jaxnn")


@pytest.fixture
def key():
    return jax.random.key(0)
