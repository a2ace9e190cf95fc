"""JAX's persistent compilation cache, on by default (jaxnn.cache)."""

import os
import subprocess
import sys
import textwrap
import zlib

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
    out = subprocess.run(
        [sys.executable, "-c", FIT], env=env, capture_output=True, text=True, timeout=300
    )
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


@pytest.mark.slow  # a subprocess fit; CI runs it
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
        assert jaxnn.cache.configure_from_environment(
            {"JAXNN_COMPILATION_CACHE": str(tmp_path)}
        ) == str(tmp_path)
        assert (
            jax.config.jax_persistent_cache_min_compile_time_secs == jaxnn.cache.MIN_COMPILE_SECONDS
        )
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


def _age(path, seconds=60):
    past = path.stat().st_mtime - seconds
    os.utime(path, (past, past))


def test_check_drops_truncated_entries_once_and_doctor_reports_them(tmp_path):
    """Issue 27.11: JAX never replaces a truncated entry (it warns and recompiles in
    every later process); jaxnn drops it, with its access-time file."""
    whole = zlib.compress(b"compiled program" * 100)
    (tmp_path / "good-cache").write_bytes(whole)
    (tmp_path / "cut-cache").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "cut-atime").write_bytes(b"12345678")
    (tmp_path / "empty-cache").write_bytes(b"")
    (tmp_path / "young-cache").write_bytes(b"being written")  # left for the next look
    for name in ("good-cache", "cut-cache", "empty-cache"):
        _age(tmp_path / name)
    found = jaxnn.cache.check(tmp_path)
    assert sorted(found.dropped) == ["cut-cache", "empty-cache"] and found.entries == 2
    assert not (tmp_path / "cut-atime").exists() and (tmp_path / "young-cache").exists()
    assert "dropped 2 truncated" in str(found)
    last_look = (tmp_path / ".jaxnn-checked").stat().st_mtime
    os.utime(tmp_path / "young-cache", (last_look, last_look))  # written while the last look ran
    (tmp_path / "old-cut-cache").write_bytes(whole[:10])
    _age(
        tmp_path / "old-cut-cache", 3600
    )  # older than the last look: enable() does not read it again
    assert jaxnn.cache.check(tmp_path, since_last=True).dropped == ("young-cache",)
    session = jaxnn.cache.folder()
    try:
        jaxnn.cache.enable(tmp_path)
        report = jaxnn.doctor(verbose=False)
        assert report.cache_check.dropped == ("old-cut-cache",) and report.cache_check.entries == 1
        assert f"{tmp_path}: 1 compiled programs" in str(report)
    finally:
        jaxnn.cache.enable(session)
    with pytest.raises(ValueError, match="the compilation cache is off"):
        jaxnn.cache.disable()
        try:
            jaxnn.cache.check()
        finally:
            jaxnn.cache.enable(session)


@pytest.mark.slow  # end to end; CI runs it
def test_a_truncated_entry_is_recompiled_once_then_loaded(tmp_path):
    run_fit(str(tmp_path))
    last_look = (tmp_path / ".jaxnn-checked").stat().st_mtime
    for entry in tmp_path.glob("*-cache"):
        entry.write_bytes(entry.read_bytes()[:7])  # a kill or a full disk during JAX's write
        os.utime(
            entry, (last_look, last_look)
        )  # written after that process's look (and 2 s before the next)
    env = {**os.environ, "JAXNN_COMPILATION_CACHE": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", FIT], env=env, capture_output=True, text=True, timeout=300
        )
        assert (
            out.returncode == 0 and "Error reading persistent compilation cache" not in out.stderr
        ), out.stderr
    assert int(out.stdout.split()[1]) >= 1  # the second process loads what the first rewrote
