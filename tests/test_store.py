"""The program store: a second process loads jaxnn's programs instead of compiling
them; a key changes with every part of a program's definition; only private,
MAC-checked entries of the user's own are ever loaded; eviction and concurrent
writers."""

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import _programs, _store

# One process: a fit, fit_many, a search, an estimator fit, predict and evaluate on
# host data (no eager helper), counting the XLA compilations jaxnn starts.
JOBS = """
import json, sys, jax, jax.monitoring, numpy as np
compiles = [0]
def count(event, duration, **kw):
    if event == "/jax/core/compile/backend_compile_duration":
        f = sys._getframe(1)
        while f is not None and "/jaxnn/" not in f.f_code.co_filename:
            f = f.f_back
        compiles[0] += f is not None
jax.monitoring.register_event_duration_secs_listener(count)
(jax.numpy.ones(3) + 1).block_until_ready()  # JAX's persistent cache in use from here on
import jaxnn
from jaxnn import _store
from jaxnn.sklearn import MLPClassifier
rs = np.random.default_rng(0)
x = rs.normal(size=(200, 3)).astype(np.float32); y = (x.sum(1, keepdims=True) > 0).astype(np.float32)
keys = [jax.random.key(i) for i in range(4)]
model = jaxnn.mlp([3, 8, 1], output_activation="sigmoid")
params = model.init(keys[0])
before = compiles[0]
fit = jaxnn.fit(model, params, x, y, loss="mse", key=keys[1], epochs=3, validation=0.25, metrics=["mae"],
                progress=False)
many = jaxnn.fit_many(model, None, x, y, loss="mse", key=keys[2], epochs=2, num_models=3, progress=False)
found = jaxnn.search(model, None, x, y, loss="mse", key=keys[3], num_configs=3, progress=False,
                     space={"learning_rate": jaxnn.space.loguniform(1e-3, 1.0)},
                     schedule=jaxnn.SuccessiveHalving(min_epochs=1, max_epochs=3, eta=3))
est = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(x, y[:, 0] > 0)
pred = jaxnn.predict(model, fit.params, x)
scores = jaxnn.evaluate(model, fit.params, x, y, loss="mse", metrics=["mae"])
trained = (fit.params, many.params, found.best_params, est.coefs_, pred)
digest = [float(np.asarray(a, np.float64).sum()) for a in jax.tree.leaves(trained)]
print(json.dumps({"compiles": compiles[0] - before, "hits": _store.counts.hits,
                  "misses": _store.counts.misses, "digest": digest, "scores": scores}))
"""


def _run(code: str, store, xla) -> dict:
    environ = {**os.environ, "JAXNN_PROGRAM_STORE": str(store), "JAXNN_COMPILATION_CACHE": str(xla)}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_second_process_loads_every_program_and_compiles_none(tmp_path):
    # JAX's persistent cache warm first: the store's programs are compiled anew, not
    # taken from it (an executable loaded from there does not serialize whole)
    off = _run(JOBS, "0", tmp_path / "xla")
    first = _run(JOBS, tmp_path / "store", tmp_path / "xla")
    second = _run(JOBS, tmp_path / "store", tmp_path / "xla")
    assert off["hits"] == off["misses"] == 0
    assert first["misses"] > 0 and first["hits"] == 0
    assert second["misses"] == 0 and second["hits"] == first["misses"]
    assert second["compiles"] == 0, second
    assert off["digest"] == first["digest"] == second["digest"]
    assert off["scores"] == first["scores"] == second["scores"]


def _store_at(tmp_path, limit=_store.MAX_BYTES) -> _store.Store:
    return _store.Store(tmp_path / "programs", limit)


def test_arrays_from_a_loaded_program_go_through_a_new_gradient_trace(tmp_path, monkeypatch):
    """Params from a loaded ``Model.init`` train in a fit whose program is new (a miss,
    traced over them). Under jax 0.12 a loaded executable's outputs carried an unequal
    copy of the ``AutoLayout`` singleton, and that trace failed."""
    monkeypatch.setenv("JAXNN_PROGRAM_STORE", str(tmp_path / "programs"))
    model = jaxnn.mlp([3, 4, 1])
    x, y = np.ones((8, 3), np.float32), np.ones((8, 1), np.float32)
    _programs.forget()  # what this process holds from earlier tests
    model.init(jax.random.key(0))  # compiled and stored
    _programs.forget()
    hits = _store.counts.hits
    params = model.init(jax.random.key(0))  # loaded
    assert _store.counts.hits == hits + 1
    result = jaxnn.fit(
        model,
        params,
        x,
        y,
        loss="mse",
        key=jax.random.key(1),
        batch_size=3,
        epochs=1,
        progress=False,
    )
    assert np.isfinite(result.history["loss"]).all()
    _programs.forget()


def test_the_store_is_made_private_and_round_trips(tmp_path):
    st = _store_at(tmp_path)
    assert os.stat(st.path).st_mode & 0o777 == 0o700
    assert os.stat(st.path / "secret").st_mode & 0o777 == 0o600
    st.put("ab12", b"program bytes")
    assert st.get("ab12") == b"program bytes"
    assert os.stat(st.path / "ab12.program").st_mode & 0o777 == 0o600
    assert st.get("cd34") is None


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_a_folder_others_can_write_is_refused(tmp_path, mode):
    folder = tmp_path / "programs"
    folder.mkdir(mode=0o700)
    folder.chmod(mode)
    with pytest.raises(_store.UntrustedStoreError, match="must not be writable by others"):
        _store.Store(folder)


def test_a_secret_others_can_read_is_refused(tmp_path):
    st = _store_at(tmp_path)
    (st.path / "secret").chmod(0o644)
    with pytest.raises(_store.UntrustedStoreError, match="secret"):
        _store.Store(st.path)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another user needs root")
def test_a_folder_of_another_user_is_refused_and_fit_runs_without_it(tmp_path, monkeypatch):
    folder = tmp_path / "programs"
    folder.mkdir(mode=0o700)
    os.chown(folder, 4321, -1)
    with pytest.raises(_store.UntrustedStoreError, match="belongs to another user"):
        _store.Store(folder)
    monkeypatch.setenv("JAXNN_PROGRAM_STORE", str(folder))
    monkeypatch.setattr(_programs, "_opened", {})
    with pytest.warns(RuntimeWarning, match="runs without its program store"):
        assert _programs.store() is None
    with pytest.raises(PermissionError):
        jaxnn.cache.store()


def _entry(st, key):
    return st.path / f"{key}.program"


def _never_loaded(monkeypatch):
    def refuse(payload):
        raise AssertionError("an entry that failed a check was loaded")

    monkeypatch.setattr(_programs, "_load", refuse)


@pytest.mark.parametrize("plant", ["forged", "truncated", "other-store", "mode", "link", "renamed"])
def test_a_planted_entry_is_never_loaded_and_is_dropped(tmp_path, plant):
    st = _store_at(tmp_path)
    st.put("aa", b"x" * 100)
    path = _entry(st, "aa")
    data = path.read_bytes()
    if plant == "forged":  # the bytes changed, the MAC kept
        path.write_bytes(data[:-1] + b"y")
    elif plant == "truncated":
        path.write_bytes(data[:-10])
    elif plant == "other-store":  # a whole entry, MAC'd under another store's secret
        other = _store.Store(tmp_path / "other")
        other.put("aa", b"z" * 100)
        path.write_bytes(_entry(other, "aa").read_bytes())
    elif plant == "mode":
        path.chmod(0o644)
    elif plant == "link":
        path.unlink()
        (tmp_path / "elsewhere").write_bytes(data)
        path.symlink_to(tmp_path / "elsewhere")
    elif plant == "renamed":  # a whole entry of this store, under another key
        path.rename(_entry(st, "bb"))
        path = _entry(st, "bb")
    before = _store.counts.dropped
    assert st.get("bb" if plant == "renamed" else "aa") is None
    assert not path.exists() and _store.counts.dropped == before + 1


def test_a_forged_entry_for_a_real_program_is_compiled_again_not_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXNN_PROGRAM_STORE", str(tmp_path / "programs"))
    program = _programs.jit("test.double", lambda scale, x: x * scale)
    x = jnp.arange(3.0)
    np.testing.assert_array_equal(program(2.0, x), [0, 2, 4])
    key = program.key(2.0, x)
    path = tmp_path / "programs" / f"{key}.program"
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    _never_loaded(monkeypatch)
    _programs.forget()
    misses = _store.counts.misses
    np.testing.assert_array_equal(program(2.0, x), [0, 2, 4])
    assert _store.counts.misses == misses + 1 and path.exists()  # compiled, stored again


def _fit_call(**changes):
    """fit's first program and its arguments for a small network, with one part changed."""
    from jaxnn import _driver, _setup
    from jaxnn.settings import Settings

    settings = dict(sizes=[3, 4, 1], activation="relu", loss="mse", optimizer="sgd", rows=64)
    settings.update(changes)
    model = jaxnn.mlp(settings["sizes"], settings["activation"])
    x = np.zeros((settings["rows"], 3), np.float32)
    y = np.zeros((settings["rows"], 1), np.float32)
    keys = dict(
        key=jax.random.key(1),
        progress=False,
        tuning=jaxnn.Tuning(compute_dtype=settings.get("dtype", "auto")),
    )
    fit = Settings(loss=settings["loss"], optimizer=settings["optimizer"], **keys)
    run = _setup.setup(model, model.init(jax.random.key(0)), x, y, fit)
    calls = []
    real = _programs.Program.executable

    def capture(self, *args):
        calls.append((self, args))
        return real(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_programs.Program, "executable", capture)
        _driver.train(run)
    return calls[0]


_real_config = _programs._config


def _config_with_rank():
    return {**_real_config(), "jax_numpy_rank_promotion": "warn"}


@pytest.mark.slow  # 12 s: one fit per key field; the quick tier keeps the module-key test
def test_every_part_of_a_definition_changes_the_key(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXNN_PROGRAM_STORE", str(tmp_path / "programs"))
    program, args = _fit_call()
    base = program.key(*args)
    again, again_args = _fit_call()
    assert base is not None and again.key(*again_args) == base  # the same definition
    changed = {
        name: (lambda p, a: p.key(*a))(*_fit_call(**change))
        for name, change in {
            "model size": dict(sizes=[3, 5, 1]),
            "activation": dict(activation="tanh"),
            "loss": dict(loss="mae"),
            "optimizer": dict(optimizer="adam"),
            "shape": dict(rows=65),
            "compute dtype": dict(dtype="bfloat16"),
        }.items()
    }
    for name, patch in {
        "jaxnn's source": lambda: monkeypatch.setattr(_programs, "_source", lambda: "edited"),
        "jax version": lambda: monkeypatch.setattr(jax, "__version__", "0.0.1"),
        "XLA flags": lambda: monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true"),
        "device count": lambda: monkeypatch.setattr(
            jax, "devices", lambda: jax.local_devices() * 2
        ),
        "rank promotion": lambda: monkeypatch.setattr(_programs, "_config", _config_with_rank),
    }.items():
        patch()
        changed[name] = program.key(*args)
        monkeypatch.undo()
    assert base not in changed.values(), [k for k, v in changed.items() if v == base]
    assert len(set(changed.values())) == len(changed)


def test_a_flax_module_is_keyed_by_its_source_and_fields_and_a_plain_function_only_by_a_given_key():
    nn = pytest.importorskip("flax.linen")

    class Net(nn.Module):
        width: int

        @nn.compact
        def __call__(self, x):
            return nn.Dense(self.width)(x)

    assert _programs.describe(Net(4).apply) == _programs.describe(Net(4).apply)
    assert _programs.describe(Net(4).apply) != _programs.describe(Net(5).apply)
    with pytest.raises(_programs.Unstorable):
        _programs.describe(lambda p, x: x @ p)
    mine = jaxnn.cache.program_key(lambda p, x: x @ p, "linear-v1")
    assert _programs.describe(mine) == "user:linear-v1"
    with pytest.raises(ValueError, match="non-empty string"):
        jaxnn.cache.program_key(mine, "")


def test_least_recently_used_entries_go_first(tmp_path):
    st = _store_at(tmp_path, limit=3 * 1100)
    for i, key in enumerate(["a1", "a2", "a3"]):
        st.put(key, bytes(1000))
        os.utime(_entry(st, key), (1000 + i, 1000 + i))
    assert st.get("a1") is not None  # now the most recent
    st.put("a4", bytes(1000))
    assert [st.get(k) is not None for k in ("a1", "a2", "a3", "a4")] == [True, False, True, True]
    assert st.size() <= st.limit


def _write_many(folder, payload, rounds):
    st = _store.Store(folder)
    for _ in range(rounds):
        st.put("shared", payload)


def test_two_writers_of_one_entry_leave_one_whole_entry(tmp_path):
    folder = tmp_path / "programs"
    _store.Store(folder)
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write_many, args=(folder, bytes([i]) * 200_000, 30)) for i in (1, 2)
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
        assert w.exitcode == 0
    assert _store.Store(folder).get("shared") in (bytes([1]) * 200_000, bytes([2]) * 200_000)
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_off_clear_and_the_report(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXNN_PROGRAM_STORE", "0")
    assert _programs.store() is None and jaxnn.cache.store() is None and jaxnn.cache.clear() == 0
    monkeypatch.setenv("JAXNN_PROGRAM_STORE", str(tmp_path / "programs"))
    program = _programs.jit("test.square", lambda _, x: x * x)
    program(None, jnp.ones(4))
    info = jaxnn.cache.store()
    assert info.entries == 1 and info.size > 0 and info.misses >= 1
    assert "1 programs" in str(jaxnn.doctor(verbose=False))
    assert jaxnn.cache.clear() == 1 and jaxnn.cache.store().entries == 0
    monkeypatch.setenv("JAXNN_PROGRAM_STORE_MB", "lots")
    with pytest.raises(ValueError, match="number of MiB"):
        jaxnn.cache.store()
