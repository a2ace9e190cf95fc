"""JAX's persistent compilation cache, on by default (jaxnn.cache)."""

import os
import subprocess
import sys
import textwrap

import jax
import pytest

import jaxnn

FIT = textwrap.dedent("""
    import jax, jaxnn
    hits = []
    jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event) if "cache_hit" in event else None)
    x, y = jaxnn.make_regression(jax.random.key(0), n=64)
    m = jaxnn.mlp([3, 4, 1])
    jaxnn.fit(m, m.init(jax.random.key(1)), x, y, loss="mse", key=jax.random.key(2), epochs=3, progress=False)
    print(jaxnn.cache.folder(), len(hits))
""")


def run_fit(env_value: str) -> tuple[str, int]:
    env = {**os.environ, "JAXNN_COMPILATION_CACHE": env_value, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", FIT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    folder, hits = out.stdout.split()
    return folder, int(hits)


@pytest.mark.slow  # end to end; CI runs it
def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    folder, hits = run_fit(str(tmp_path))
    assert folder == str(tmp_path) and hits == 0
    assert any(tmp_path.iterdir()), "the first process wrote no compiled program"
    _, hits = run_fit(str(tmp_path))
    assert hits >= 1


def test_off_by_environment_and_default_folder_outside_the_project(tmp_path, monkeypatch):
    assert run_fit("0") == ("None", 0)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jaxnn.cache.default_folder() == tmp_path / "jaxnn" / "xla"


def test_configure_respects_an_existing_choice_and_the_functions_switch(tmp_path):
    session = jaxnn.cache.folder()  # the test session's own cache (conftest)
    jaxnn.cache.disable()
    try:
        assert jaxnn.cache.folder() is None
        assert jaxnn.cache.configure_from_environment({"JAXNN_COMPILATION_CACHE": "off"}) is None
        assert jaxnn.cache.configure_from_environment({"JAXNN_COMPILATION_CACHE": str(tmp_path)}) == str(tmp_path)
        assert jax.config.jax_persistent_cache_min_compile_time_secs == jaxnn.cache.MIN_COMPILE_SECONDS
        elsewhere = str(tmp_path / "mine")
        jax.config.update("jax_compilation_cache_dir", elsewhere)  # the user's own setting wins
        assert jaxnn.cache.configure_from_environment({}) == elsewhere
        assert jaxnn.doctor(verbose=False).compilation_cache == elsewhere
        jaxnn.cache.disable()
        assert jaxnn.cache.folder() is None
    finally:
        jaxnn.cache.enable(session)
    with pytest.raises(TypeError, match="path must be a folder path"):
        jaxnn.cache.enable(3)


def test_import_loads_no_optional_package():
    """``import jaxnn`` is part of every script's first-call latency: flax (a fifth of
    it), the TensorBoard writer, scikit-learn, Grain and matplotlib load when used."""
    optional = {"flax", "tensorboard", "sklearn", "grain", "matplotlib", "equinox", "torch", "tqdm"}
    code = f"import sys, jaxnn; print(*sorted(m for m in sys.modules if m.split('.')[0] in {optional!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == []
