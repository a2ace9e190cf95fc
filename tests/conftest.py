"""Shared fixtures and test settings."""

import atexit
import ctypes
import gc
import os
import shutil
import tempfile

# One persistent compilation cache and one program store for the whole test session:
# every xdist worker and every subprocess a test starts (the CLI, the experiments, the
# docs build) shares the programs any of them compiled, as one user's processes do.
# The session that made the folders deletes them. A program served from the cache still counts as compiled for
# tests.helpers.CompileCounter (JAX reports its backend compile event for a cache hit
# too), so "nothing compiled before the error" keeps its meaning.
if "PYTEST_XDIST_WORKER" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="jaxnn-tests-xla-")
    os.environ["JAXNN_COMPILATION_CACHE"] = _cache
    _store = tempfile.mkdtemp(prefix="jaxnn-tests-programs-")
    os.environ["JAXNN_PROGRAM_STORE"] = _store
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    atexit.register(shutil.rmtree, _store, ignore_errors=True)

import jax
import pytest
from hypothesis import settings

import jaxnn._programs

# Like equinox's tests: an implicit rank promotion (a (n,) array meeting an (n, 1) one)
# is an error, so no silent broadcast hides in the library.
jax.config.update("jax_numpy_rank_promotion", "raise")

# jit compiles on first use: wall-clock deadlines would flag the compile, not the code.
# Property tests draw 50 examples in the whole suite (CI's run) and 5 in the quick tier
# (-m "not slow"), where each new shape's compile is most of their time; a test's own
# count is capped by the profile (tests.helpers.examples). HYPOTHESIS_PROFILE picks one.
settings.register_profile("jaxnn", deadline=None, max_examples=50)
settings.register_profile("quick", deadline=None, max_examples=5)


def pytest_configure(config):
    quick = (config.getoption("markexpr", "") or "").replace(" ", "") == "notslow"
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("quick" if quick else "jaxnn"))


# A test process keeps every program it compiled (JAX's in-memory caches), about 1 MB
# each on a CPU; over the suite a worker grew past 4 GB. Past this size, between two
# tests, the caches are cleared (a program needed again is loaded from the session's
# persistent cache, not compiled) and freed memory goes back to the OS.
_MAX_RSS_BYTES = 1024 * 2**20
_libc = ctypes.CDLL(None) if os.name == "posix" else None


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: no bound
        return 0


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    if _rss_bytes() > _MAX_RSS_BYTES:
        jax.clear_caches()
        jaxnn._programs.forget()
        gc.collect()
        if hasattr(_libc, "malloc_trim"):  # glibc: return freed heap pages
            _libc.malloc_trim(0)


@pytest.fixture
def key():
    return jax.random.key(0)
