"""Test helpers: tolerances live here, nowhere else."""

import chex
import jax
import numpy as np

RTOL = 1e-5  # float32 arithmetic done in two different orders
ATOL = 1e-6
GRAD_TOL = 2e-2  # finite differences in float32 (check_grads' eps=1e-3)


def assert_close(actual, expected, *, rtol=RTOL, atol=ATOL):
    """Trees of arrays equal to float32 tolerance."""
    chex.assert_trees_all_close(actual, expected, rtol=rtol, atol=atol)


def assert_bitwise_equal(a, b):
    """Trees of arrays identical bit for bit."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
