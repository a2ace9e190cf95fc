"""``jaxnn.doctor()``: what JAX is running on, and the fix when it is not what the
machine has.

The common Colab failure: the runtime has a TPU or GPU, a ``pip install`` replaced
Colab's jax with a CPU-only build, and everything silently runs on the CPU. The
doctor compares the hardware the machine shows (device files, Colab's and the TPU
VM's environment variables) with the backend JAX actually uses, and prints the fix.
Also ``python -m jaxnn doctor`` (``--json`` for the report as JSON).
"""

import dataclasses
import importlib.metadata
import os
import shutil
from pathlib import Path

import jax

from jaxnn import cache

_TPU_ENV = ("COLAB_TPU_ADDR", "TPU_NAME", "TPU_ACCELERATOR_TYPE", "TPU_WORKER_HOSTNAMES")
_FIXES = {
    "tpu": "pip install -U 'jax[tpu]'",
    "gpu": "pip install -U 'jax[cuda12]'",
}


@dataclasses.dataclass(frozen=True)
class Report:
    """What ``doctor`` found.

    Attributes:
      versions: installed versions of jax, jaxlib, optax, flax, chex and jaxnn
        (``None`` when missing).
      backend: the platform JAX runs on (``"cpu"``, ``"gpu"``, ``"tpu"``).
      device_kind: the first device's kind (e.g. ``"TPU v5 lite"``).
      device_count: devices over every process; ``local_device_count`` this one's.
      process_count: JAX processes (hosts) in the run.
      hardware: accelerators the machine shows, whatever JAX uses (``"tpu"``, ``"gpu"``).
      problems: sentences about what is wrong (empty when all is well).
      fixes: one command or step per problem.
      compilation_cache: the persistent compilation cache's folder, or ``None`` (off).
      cache_check: what :func:`jaxnn.cache.check` found there (``None`` when off):
        the entries, their size and the truncated ones it dropped.
      program_store: what :func:`jaxnn.cache.store` says (``None`` when off): its
        programs, their size, and what this process loaded from it.
    """

    versions: dict
    backend: str
    device_kind: str
    device_count: int
    local_device_count: int
    process_count: int
    hardware: tuple
    problems: tuple
    fixes: tuple
    compilation_cache: str | None = None
    cache_check: cache.Check | None = None
    program_store: cache.StoreInfo | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [
            f"{name:<8} {version or 'not installed'}" for name, version in self.versions.items()
        ]
        lines += [
            f"backend  {self.backend} ({self.device_kind})",
            f"devices  {self.device_count} ({self.local_device_count} local), processes {self.process_count}",
            f"hardware {', '.join(self.hardware) or 'no accelerator found'}",
            f"cache    {self.cache_check or self.compilation_cache or 'off'} (JAXNN_COMPILATION_CACHE=0 turns it off)",
            f"programs {self.program_store or 'off'} (JAXNN_PROGRAM_STORE=0 turns it off)",
        ]
        if self.ok:
            lines.append(
                f"OK: jaxnn will train on {self.local_device_count} {self.backend} device(s)."
            )
        for problem, fix in zip(self.problems, self.fixes, strict=True):
            lines += [f"PROBLEM: {problem}", f"FIX: {fix}"]
        return "\n".join(lines)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _visible_accelerators(environ=None, root: str = "/") -> tuple[str, ...]:
    """Accelerators the machine shows, independent of JAX: a TPU (``/dev/accel*``,
    ``/dev/vfio`` on TPU VMs, or the TPU environment variables Colab and Cloud TPU
    set) and an NVIDIA GPU (``/dev/nvidia0`` or ``nvidia-smi``)."""
    environ = os.environ if environ is None else environ
    dev = Path(root) / "dev"
    found = []
    if any(environ.get(v) for v in _TPU_ENV) or any(dev.glob("accel*")):
        found.append("tpu")
    if (
        (dev / "nvidia0").exists()
        or environ.get("COLAB_GPU")
        or shutil.which("nvidia-smi", path=environ.get("PATH"))
    ):
        found.append("gpu")
    return tuple(found)


def _diagnose(versions: dict, backend: str, hardware: tuple) -> tuple[tuple, tuple]:
    """``(problems, fixes)`` for this software and hardware."""
    problems, fixes = [], []
    for accel in hardware:
        if backend == "cpu":
            problems.append(
                f"this machine has a {accel.upper()} but JAX runs on the CPU: usually a pip step replaced "
                f"jax with a CPU-only build (or no {accel.upper()} build is installed)"
            )
            fixes.append(
                f"{_FIXES[accel]}, then restart the runtime (Colab: Runtime > Restart session); install "
                "jaxnn with `pip install --no-deps ...` so it never replaces jax"
            )
    jax_v, jaxlib_v = versions.get("jax"), versions.get("jaxlib")
    if jax_v and jaxlib_v and jax_v.split(".")[:2] != jaxlib_v.split(".")[:2]:
        problems.append(f"jax {jax_v} and jaxlib {jaxlib_v} are from different releases")
        fixes.append("pip install -U jax jaxlib (or the jax[...] extra for your accelerator)")
    for name in ("optax", "flax"):
        if versions.get(name) is None:
            problems.append(f"{name} is not installed; jaxnn needs it")
            fixes.append(f"pip install {name}")
    return tuple(problems), tuple(fixes)


def _backend_failure(error: str, platforms: str) -> tuple[tuple, tuple]:
    """``(problems, fixes)`` when JAX cannot start the backend it was asked for."""
    first = error.strip().splitlines()[0]
    problem = f"JAX could not start a backend: {first}"
    if platforms:
        wanted = [p.strip() for p in platforms.split(",") if p.strip()]
        named = next(
            (_FIXES[p] for p in ("tpu", "gpu") if p in wanted or (p == "gpu" and "cuda" in wanted)),
            None,
        )
        fix = f"JAX_PLATFORMS={platforms} asks for a backend this installation lacks: unset JAX_PLATFORMS"
        fix += f", or install it: {named}" if named else ""
    else:
        fix = "reinstall jax and jaxlib from one release: pip install -U jax jaxlib"
    return (problem,), (fix,)


def doctor(*, verbose: bool = True, environ=None) -> Report:
    """Checks the JAX installation against the machine; prints and returns a :class:`Report`.

    Args:
      verbose: print the report.
      environ: the environment variables to read (default ``os.environ``).

    Example:
      >>> report = doctor(verbose=False)
      >>> report.device_count >= 1 and report.versions["jaxnn"] is not None
      True
    """
    from jaxnn import __version__  # also right when jaxnn runs from a source folder, not installed

    versions = {name: _version(name) for name in ("jax", "jaxlib", "optax", "flax", "chex")}
    versions["jaxnn"] = __version__
    hardware = _visible_accelerators(environ)
    try:
        backend = jax.default_backend()
        devices = (
            jax.devices()[0].device_kind,
            jax.device_count(),
            jax.local_device_count(),
            jax.process_count(),
        )
        problems, fixes = _diagnose(versions, backend, hardware)
    except Exception as e:  # JAX cannot start a backend: that is the diagnosis, not a crash
        backend, devices = "none", ("no device", 0, 0, 0)
        problems, fixes = _backend_failure(
            str(e) or type(e).__name__, (environ or os.environ).get("JAX_PLATFORMS", "")
        )
    cache_check = None
    if cache.folder() is not None:
        try:
            cache_check = cache.check()
        except OSError as e:
            problems += (
                f"the compilation cache folder {cache.folder()} cannot be read: {e.strerror}",
            )
            fixes += ("fix its permissions, or set JAXNN_COMPILATION_CACHE to another folder",)
    if cache_check is not None and cache_check.undeletable:
        problems += (
            f"{len(cache_check.undeletable)} truncated compiled programs in {cache_check.folder} cannot be "
            "deleted: every process recompiles them",
        )
        fixes += (f"delete them (or the folder): {', '.join(cache_check.undeletable[:3])}",)
    program_store = None
    try:
        program_store = cache.store()
    except OSError as e:
        problems += (f"the program store is refused: {e}",)
        fixes += (
            "remove the folder (jaxnn makes a private one again), or set JAXNN_PROGRAM_STORE=0",
        )
    report = Report(
        versions=versions,
        backend=backend,
        device_kind=devices[0],
        device_count=devices[1],
        local_device_count=devices[2],
        process_count=devices[3],
        hardware=hardware,
        problems=problems,
        fixes=fixes,
        compilation_cache=cache.folder(),
        cache_check=cache_check,
        program_store=program_store,
    )
    if verbose:
        print(report)
    return report
