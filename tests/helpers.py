"""Test helpers: tolerances live here, nowhere else."""

import fcntl
import os
import shutil
import sys
from pathlib import Path

import chex
import jax
import numpy as np
import pytest
from hypothesis import settings

import jaxnn

RTOL = 1e-5  # float32 arithmetic done in two different orders
ATOL = 1e-6
GRAD_TOL = 2e-2  # finite differences in float32 (check_grads' eps=1e-3)


def examples(n: int) -> int:
    """A property test's example count: ``n``, or fewer where the profile draws fewer
    (the quick tier's)."""
    return min(n, settings.default.max_examples)


def assert_close(actual, expected, *, rtol=RTOL, atol=ATOL):
    """Trees of arrays equal to float32 tolerance."""
    chex.assert_trees_all_close(actual, expected, rtol=rtol, atol=atol)


def assert_bitwise_equal(a, b):
    """Trees of arrays identical bit for bit."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(_plain(x), _plain(y))


def _plain(a):
    if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(a))
    return np.asarray(a)


_COMPILES = [0]
_JAXNN = os.path.dirname(jaxnn.__file__) + os.sep


def _count_compiles(event, duration, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration" and _called_from_jaxnn():
        _COMPILES[0] += 1


def _called_from_jaxnn() -> bool:
    frame = sys._getframe(1)  # compiling is synchronous: the caller's frames are on this stack
    while frame is not None:
        if frame.f_code.co_filename.startswith(_JAXNN):
            return True
        frame = frame.f_back
    return False


jax.monitoring.register_event_duration_secs_listener(_count_compiles)


class CompileCounter:
    """Counts the XLA compilations jaxnn's code starts inside a ``with`` block. A
    program the test itself runs (``jax.random.key``, its own warm-up) is not the
    library's: it compiles again whenever conftest has cleared JAX's caches."""

    def __enter__(self):
        self.start = _COMPILES[0]
        return self

    def __exit__(self, *exc):
        self.count = _COMPILES[0] - self.start


def expect_rejected(error, match, fn, *args, watch=(), **kwargs):
    """``fn(*args, **kwargs)`` raises ``error`` with a message matching ``match``,
    having compiled nothing and created none of the paths in ``watch``."""
    with CompileCounter() as compiles, pytest.raises(error, match=match):
        fn(*args, **kwargs)
    assert compiles.count == 0, f"{compiles.count} XLA compilations before the error"
    for path in watch:
        assert not Path(path).exists(), f"a call that failed wrote {path}"


def made_once(tmp_path_factory, name: str, make) -> Path:
    """The folder ``make(folder)`` fills, made once per test run. Under pytest-xdist
    the first worker that asks makes it, under a lock, and the others wait for it and
    reuse it: a module fixture that builds the docs site (into the source tree's
    ``docs/generated``) or runs an 8-device subprocess runs neither twice nor twice at once."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name) / name
        make(folder)
        return folder
    root = (
        tmp_path_factory.getbasetemp().parent / name
    )  # the run's workers share getbasetemp().parent
    root.mkdir(exist_ok=True)
    folder = root / name
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (root / "done").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed try left
            make(folder)
            (root / "done").touch()
    return folder
