import json
import os
import subprocess
import sys

import jax
import pytest

import jaxnn
from jaxnn.doctor import _diagnose, _visible_accelerators


def test_doctor_reports_versions_backend_and_devices(capsys):
    report = jaxnn.doctor(environ={})
    out = capsys.readouterr().out
    assert (
        report.versions["jax"] == jax.__version__ and report.versions["jaxnn"] == jaxnn.__version__
    )
    assert report.backend == jax.default_backend() and report.device_count == jax.device_count()
    assert report.process_count == 1 and report.ok and report.problems == ()
    assert f"backend  {report.backend}" in out and "OK: jaxnn will train on" in out


def test_doctor_detects_a_simulated_cpu_fallback_on_a_colab_tpu(capsys):
    if jax.default_backend() != "cpu":  # the simulation needs jax on the CPU
        return
    report = jaxnn.doctor(environ={"COLAB_TPU_ADDR": "10.0.0.2:8470", "PATH": ""})
    out = capsys.readouterr().out
    assert not report.ok and report.hardware == ("tpu",)
    assert "has a TPU but JAX runs on the CPU" in report.problems[0]
    assert "pip install -U 'jax[tpu]'" in report.fixes[0] and "Restart session" in report.fixes[0]
    assert "PROBLEM:" in out and "FIX: pip install -U 'jax[tpu]'" in out


def test_visible_accelerators_reads_device_files_and_environment(tmp_path):
    assert _visible_accelerators({"PATH": ""}, root=tmp_path) == ()
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "accel0").touch()
    (tmp_path / "dev" / "nvidia0").touch()
    assert _visible_accelerators({"PATH": ""}, root=tmp_path) == ("tpu", "gpu")
    assert _visible_accelerators(
        {"TPU_ACCELERATOR_TYPE": "v5litepod-1", "PATH": ""}, root=tmp_path / "x"
    ) == ("tpu",)


def test_diagnose_gpu_fallback_and_mismatched_jaxlib():
    versions = {"jax": "0.10.2", "jaxlib": "0.9.0", "optax": "0.2", "flax": None}
    problems, fixes = _diagnose(versions, "cpu", ("gpu",))
    assert len(problems) == len(fixes) == 3
    assert "jax[cuda12]" in fixes[0] and "different releases" in problems[1] and "flax" in fixes[2]
    assert _diagnose(versions | {"jaxlib": "0.10.2", "flax": "0.12"}, "gpu", ("gpu",)) == ((), ())


def test_python_m_jaxnn_doctor_json():
    out = subprocess.run(
        [sys.executable, "-m", "jaxnn", "doctor", "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    report = json.loads(out.stdout)
    assert (
        report["backend"] == jax.default_backend() and report["versions"]["jax"] == jax.__version__
    )
    assert out.returncode == (0 if report["ok"] else 1)


@pytest.mark.parametrize("platform", ["tpu", "cuda"])
def test_doctor_reports_a_backend_jax_cannot_start(platform):
    env = {**os.environ, "JAX_PLATFORMS": platform}
    out = subprocess.run(
        [sys.executable, "-m", "jaxnn", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    report = json.loads(out.stdout)  # a report, not a traceback
    assert out.returncode == 1 and not report["ok"] and report["backend"] == "none"
    assert "could not start a backend" in report["problems"][0]
    assert (
        f"JAX_PLATFORMS={platform}" in report["fixes"][0]
        and "unset JAX_PLATFORMS" in report["fixes"][0]
    )
