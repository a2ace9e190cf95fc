"""Run folders and checkpoint folders never lose, mix or misread a run: a run owns its
folder (run id, lock), resume keeps or refuses settings by a documented rule, every
check happens before training, and the command line fails like a command line."""

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import CompileCounter, assert_bitwise_equal, expect_rejected

import jaxnn
from jaxnn import _files, _saver, checkpoint, experiment

ROOT = Path(__file__).resolve().parents[1]
X, Y = jaxnn.make_regression(jax.random.key(0), n=64)
MODEL = jaxnn.mlp([3, 4, 1], output_activation="sigmoid")
PARAMS = MODEL.init(jax.random.key(1))


def train(epochs, folder=None, *, every=1, keep=3, overwrite=False, resume=None, **kw):
    kw = {"loss": "mse", "optimizer": jaxnn.optim.adam(0.01), "batch_size": 8, **kw}
    ck = None if folder is None else jaxnn.Checkpoints(folder, every, keep, overwrite=overwrite)
    return jaxnn.fit(
        MODEL,
        PARAMS,
        X,
        Y,
        key=jax.random.key(2),
        epochs=epochs,
        checkpoints=ck,
        resume=resume,
        progress=False,
        **kw,
    )


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.jaxnn"))}


def test_a_new_run_never_deletes_or_resumes_another_runs_checkpoints(tmp_path):
    train(10, tmp_path, every=2)
    before = files(tmp_path)
    expect_rejected(
        checkpoint.CheckpointError,
        "holds checkpoints this run must not mix with",
        train,
        4,
        tmp_path,
    )
    assert files(tmp_path) == before  # nothing deleted, nothing added
    mine = train(4, tmp_path, overwrite=True, optimizer=jaxnn.optim.adam(0.05))
    assert [checkpoint.read_metadata(p)["epoch"] for p in sorted(tmp_path.glob("*.jaxnn"))] == [
        2,
        3,
        4,
    ]
    again = train(
        4, resume=tmp_path, optimizer=jaxnn.optim.adam(0.05)
    )  # the folder now holds the second run only
    assert again.epochs_run == 4
    assert_bitwise_equal(again.params, mine.params)


def test_a_second_writer_gets_the_holders_pid_and_a_crash_releases_the_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from jaxnn import _files; from pathlib import Path; "
         "_files.lock_folder(Path(sys.argv[1])); print('locked', flush=True); time.sleep(600)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        expect_rejected(checkpoint.FolderInUseError, f"{tmp_path} is in use by another process \\(pid {holder.pid}\\)",
                        train, 2, tmp_path)  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert train(2, tmp_path).epochs_run == 2  # the kernel released the dead holder's lock


def test_clean_up_and_latest_go_by_the_recorded_epoch_not_the_name(tmp_path):
    state = {"w": np.zeros(3, np.float32)}
    saver = _saver.Saver(jaxnn.Checkpoints(tmp_path, 1, keep=2), 2_000_000, {}, "run1", (0, 0))
    with saver:
        for epoch in (999_998, 999_999, 1_000_000, 1_000_001):
            saver.after_chunk(state, epoch, {"loss": [0.0]}, False)
    kept = sorted(checkpoint.read_metadata(p)["epoch"] for p in tmp_path.glob("*.jaxnn"))
    assert kept == [1_000_000, 1_000_001]
    assert checkpoint.read_metadata(checkpoint.latest(tmp_path))["epoch"] == 1_000_001
    # names that sort the other way round do not fool latest()
    checkpoint.save(tmp_path / "a.jaxnn", state, metadata={"epoch": 5, "run_id": "run2"})
    with pytest.raises(checkpoint.CheckpointError, match="checkpoints of 2 runs"):
        checkpoint.latest(tmp_path)
    with pytest.raises(checkpoint.CheckpointError, match=r"a\.jaxnn \(run run2, epoch 5\)"):
        with _saver.Saver(
            jaxnn.Checkpoints(tmp_path, 1, keep=2), 2_000_000, {}, "run1", (1_000_001, 0)
        ):
            pass
    (tmp_path / "a.jaxnn").unlink()
    (tmp_path / "z.jaxnn").write_bytes(b"not a checkpoint")
    with pytest.raises(checkpoint.CheckpointError, match="z.jaxnn is not a jaxnn checkpoint"):
        checkpoint.latest(tmp_path)


def test_resume_takes_epochs_and_hyperparameters_from_the_call_and_refuses_what_defines_the_run(
    tmp_path,
):
    train(5, tmp_path, keep=5, validation=0.25, metrics=["rmse"])
    kw = {"validation": 0.25, "metrics": ["rmse"]}
    refused = [
        ({"epochs": 3}, "at epoch 5, past epochs=3"),
        ({"loss": "mae"}, "trained with loss 'mse', this call has 'mae'"),
        ({"optimizer": "adamw"}, "trained with optimizer 'adam', this call has 'adamw'"),
        ({"metrics": ["mae"]}, "trained with records"),
        ({"validation": None}, "trained with records"),
        ({"early_stopping": jaxnn.EarlyStopping(patience=2)}, "trained with early_stopping"),
    ]
    for change, match in refused:
        expect_rejected(
            ValueError, match, train, **{"epochs": 8, **kw, **change, "resume": tmp_path}
        )
    slow, fast = (
        train(8, resume=tmp_path, optimizer=jaxnn.optim.adam(lr), **kw) for lr in (0.01, 0.05)
    )
    assert slow.epochs_run == fast.epochs_run == 8
    assert not np.array_equal(
        jax.tree.leaves(slow.params)[0], jax.tree.leaves(fast.params)[0]
    )  # the call's rate
    assert_bitwise_equal(slow.params, train(8, **kw).params)
    # resuming an earlier epoch while later ones of the run exist would mix two continuations
    earlier = tmp_path / "epoch-0000000003.jaxnn"
    with pytest.raises(checkpoint.CheckpointError, match="this run's epoch 4, past epoch 3"):
        train(8, tmp_path, keep=5, resume=earlier, **kw)


@pytest.mark.parametrize("kind", ["file", "dangling link", "under a file"])
def test_an_unusable_checkpoint_folder_fails_before_anything_compiles(tmp_path, kind):
    (tmp_path / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    folder = {
        "file": tmp_path / "f",
        "dangling link": tmp_path / "link",
        "under a file": tmp_path / "f" / "sub",
    }[kind]
    expect_rejected(
        OSError,
        re.escape(str(folder.parent if kind == "under a file" else folder)),
        train,
        2,
        folder,
    )


# the command line -------------------------------------------------------------------

sys.path.insert(0, str(ROOT / "experiments"))
import classify_iris  # noqa: E402


def cli(*argv, code=0):
    """Runs the iris experiment's command line in this process; returns its stderr."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            experiment.main([*argv, "--no-progress"], classify_iris.CONFIG)
            got = 0
        except SystemExit as e:
            got = e.code
    assert got == code, err.getvalue()
    return err.getvalue()


def test_cli_run_folder_rules(tmp_path, capsys):
    run = tmp_path / "run"
    cli("--epochs", "2", "--checkpoint-every", "1", "--out", str(run))
    first = json.loads((run / "run.json").read_text())
    assert (
        checkpoint.read_metadata(checkpoint.latest(run / "checkpoints"))["run_id"]
        == first["run_id"]
    )
    assert "holds another run" in cli("--epochs", "1", "--out", str(run), code=2)
    for flags in (
        ["--seed", "3"],
        ["--hidden", "8"],
        ["--optimizer", "sgd"],
        ["--out", str(tmp_path / "x")],
    ):
        assert re.search(
            f"error: .*{flags[0]}.* cannot change", cli("--resume", str(run), *flags, code=2)
        ), flags
    cli("--resume", str(run), "--epochs", "4", "--learning-rate", "0.07")
    record = json.loads((run / "run.json").read_text())
    assert record["run_id"] == first["run_id"]
    assert record["resumes"] == [
        {"from_epoch": 2, "changed": {"epochs": [2, 4], "learning_rate": [0.05, 0.07]}}
    ]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["epochs_run"] == 4 and summary["epochs_trained_now"] == 2
    assert json.loads((run / "config.json").read_text())["epochs"] == 4
    cli(
        "--from-run", str(run), "--seed", "3", "--out", str(tmp_path / "copy")
    )  # flags apply to a rerun
    assert json.loads((tmp_path / "copy" / "config.json").read_text())["seed"] == 3
    cli("--epochs", "1", "--out", str(run), "--overwrite")
    assert json.loads((run / "run.json").read_text())["run_id"] != first["run_id"]
    assert [
        checkpoint.read_metadata(p)["epoch"] for p in (run / "checkpoints").glob("*.jaxnn")
    ] == [1]
    fd = _files.lock_folder(run)
    try:
        assert f"in use by another process (pid {os.getpid()})" in cli("--resume", str(run), code=2)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [("name", "../../evil", "plain name"), ("name", "/tmp/evil", "plain name"), ("name", 5, "must be a string"),
     ("hidden", "44", "must be a list"), ("seed", 2**64, r"seed must be in \[0, "), ("epochs", 2.5, "must be an int"),
     # fields that only fit can judge (against the data): checked before the folder is made all the same
     ("activation", "foo", "unknown activation"), ("task", "binary", "binary_cross_entropy|labels|targets"),
     ("loss", "binary_cross_entropy", r"targets in \[0, 1\]|expected targets of shape")],
)  # fmt: skip
def test_a_bad_config_json_is_an_error_before_anything_is_written(tmp_path, field, value, match):
    saved = tmp_path / "saved"
    saved.mkdir()
    config = {**json.loads(json.dumps(dataclasses.asdict(classify_iris.CONFIG))), field: value}
    (saved / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    assert re.search(
        f"error: .*({match})", cli("--from-run", str(saved), "--out", str(out), code=2)
    )
    assert (
        not out.exists()
        and not (tmp_path / "evil").exists()
        and sorted(os.listdir(tmp_path)) == ["saved"]
    )


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_refused_resume_writes_nothing(tmp_path):
    run = tmp_path / "run"
    cli("--epochs", "3", "--out", str(run))
    before = _snapshot(run)
    assert re.search(r"error: .*past epochs=1", cli("--resume", str(run), "--epochs", "1", code=2))
    assert _snapshot(run) == before  # config.json, run.json, environment.json untouched
    cli("--resume", str(run), "--epochs", "4")  # the plain resume still works, from epoch 3
    assert json.loads((run / "run.json").read_text())["resumes"] == [
        {"from_epoch": 3, "changed": {"epochs": [3, 4]}}
    ]


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--hidden", "2000000000"], "would have 4 x 2000000000 weights"),
        (["--learning-rate", "1e-50"], "underflows"),
    ],
)
def test_a_bad_flag_found_by_fit_leaves_no_folder(tmp_path, flags, match):
    out = tmp_path / "run"
    assert re.search(f"error: .*{match}", cli(*flags, "--out", str(out), code=2))
    assert not out.exists()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "deep", "huge"])
def test_unreadable_config_and_run_files_are_refused_not_hung_on(tmp_path, kind):
    saved = tmp_path / "saved"
    saved.mkdir()
    path = saved / "config.json"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    else:
        path.write_text(" " * (2 << 20))
    for argv in (
        ["--from-run", str(saved), "--out", str(tmp_path / "out")],
        ["--resume", str(saved)],
    ):
        err = cli(*argv, code=2)
        assert re.search(
            r"error: .*(not a regular file|more than the|nested too deeply|holds no run)", err
        ), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("dangling", [False, True], ids=["link-to-a-file", "dangling-link"])
def test_a_lock_file_that_is_a_link_is_refused_and_not_followed(tmp_path, dangling):
    target = tmp_path / "victim.txt"
    if not dangling:
        target.write_text("precious")
    for folder in (tmp_path / "ck", tmp_path / "run"):
        folder.mkdir()
        (folder / ".lock").symlink_to(target)
    with pytest.raises(OSError, match="is a symbolic link"):
        train(1, tmp_path / "ck")
    assert "is a symbolic link" in cli("--epochs", "1", "--out", str(tmp_path / "run"), code=2)
    assert target.exists() != dangling and (dangling or target.read_text() == "precious")


def test_run_folder_files_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        cli("--epochs", "1", "--out", str(tmp_path / "run"))
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert set(modes.values()) == {0o664}, modes


# interrupted for real ---------------------------------------------------------------

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def popen_as_in_a_terminal(args, **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` with SIGINT at its default, so the child's Python turns
    Ctrl-C into KeyboardInterrupt as it does in a terminal. A process started in the
    background (``cmd &``, a CI runner, so also pytest's workers) ignores SIGINT, its
    children inherit that, and a Ctrl-C sent to them would be ignored."""
    old = signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        return subprocess.Popen(args, **kwargs)
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_and_that_command_finishes_the_run_bitwise(tmp_path):
    script = str(ROOT / "experiments" / "seed_network.py")
    flags = ["--batch-size", "1", "--epochs", "300", "--checkpoint-every", "5", "--no-progress"]
    whole = tmp_path / "whole"
    subprocess.run(
        [sys.executable, script, *flags, "--out", str(whole)],
        check=True,
        env=ENV,
        capture_output=True,
    )
    run = tmp_path / "run"
    victim = popen_as_in_a_terminal(  # -X faulthandler: SIGABRT prints every thread's stack
        [sys.executable, "-X", "faulthandler", script, *flags, "--out", str(run)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list((run / "checkpoints").glob("*.jaxnn"))) < 2:
            time.sleep(0.02)
        victim.send_signal(signal.SIGINT)
        try:
            err = victim.communicate(timeout=180)[1].decode()
        except subprocess.TimeoutExpired:  # a hang: fail with where each thread was
            victim.send_signal(signal.SIGABRT)
            pytest.fail(
                "still running 180 s after Ctrl-C:\n" + victim.communicate(timeout=60)[1].decode()
            )
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.communicate()
    assert victim.returncode == 130 and "Traceback" not in err, err
    command = re.search(r"Continue with:\n  (python .*)", err).group(1)
    assert command == f"python {script} --resume {run}"
    done = subprocess.run(
        [sys.executable, *command.split()[1:]], env=ENV, capture_output=True, check=True
    )
    assert done.returncode == 0
    params = [
        checkpoint.load_params(r / "checkpoints", MODEL_4.init(jax.random.key(0)))
        for r in (run, whole)
    ]
    assert params[0][1]["epoch"] == params[1][1]["epoch"] == 300
    assert_bitwise_equal(params[0][0], params[1][0])


MODEL_4 = jaxnn.mlp([3, 4, 4, 1], output_activation="sigmoid")

CRASH_LOOP_RUN = """
import sys, jax, jaxnn
from pathlib import Path
folder = Path(sys.argv[1])
x, y = jaxnn.make_regression(jax.random.key(0), n=64)
model = jaxnn.mlp([3, 16, 16, 1], output_activation="sigmoid", norm="batch", dropout=0.2)
has = folder.is_dir() and any(folder.glob("*.jaxnn"))
r = jaxnn.fit(model, model.init(jax.random.key(1)), x, y, loss="mse", key=jax.random.key(2),
              optimizer=jaxnn.optim.adam(0.01), batch_size=4, epochs=int(sys.argv[2]), progress=False,
              checkpoints=jaxnn.Checkpoints(folder, every=1, keep=2), resume=folder if has else None)
"""


@pytest.mark.slow
def test_twenty_random_kills_and_interrupts_then_resume_equals_one_uninterrupted_run(tmp_path):
    epochs, rng = (
        600,
        random.Random(0),
    )  # 20 kills land within the first ~100 epochs (asserted below)
    env = {**ENV, "JAXNN_COMPILATION_CACHE": str(tmp_path / "xla")}  # restarts as quick as a user's
    other = tmp_path / "other"  # another run's folder beside it: never touched
    subprocess.run([sys.executable, "-c", CRASH_LOOP_RUN, str(other), "3"], env=env, check=True)
    untouched = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in other.iterdir()}
    whole, crashed = tmp_path / "whole", tmp_path / "crashed"
    subprocess.run(
        [sys.executable, "-c", CRASH_LOOP_RUN, str(whole), str(epochs)], env=env, check=True
    )
    newest = lambda: max(
        (int(p.stem.split("-")[1]) for p in crashed.glob("epoch-*.jaxnn")), default=0
    )
    for _ in range(20):
        target = newest() + rng.randint(
            1, 5
        )  # progress per process in epochs, whatever the machine's speed
        p = popen_as_in_a_terminal([sys.executable, "-c", CRASH_LOOP_RUN, str(crashed), str(epochs)], env=env,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        early = (
            rng.random() < 0.25
        )  # while starting, compiling or restoring; else while checkpointing
        deadline = time.time() + (rng.uniform(0.2, 2.5) if early else 120)
        while p.poll() is None and time.time() < deadline and newest() < target:
            time.sleep(0.002)
        if not early:  # just after a checkpoint, or while writing the next one
            time.sleep(rng.uniform(0, 0.01))
        # Ctrl-C once training runs (a SIGINT during Python's start-up can be swallowed by an import,
        # and one that lands in a finalizer is printed and ignored); a process still running 1 s
        # after its Ctrl-C gets SIGKILL, as a user's second signal, before it could finish the run
        p.send_signal(signal.SIGKILL if early else rng.choice([signal.SIGKILL, signal.SIGINT]))
        try:
            p.wait(timeout=1)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    kept = checkpoint.read_metadata(checkpoint.latest(crashed))["epoch"]
    assert 0 < kept < epochs, "the kills must land mid-run"
    subprocess.run(
        [sys.executable, "-c", CRASH_LOOP_RUN, str(crashed), str(epochs)], env=env, check=True
    )
    model = jaxnn.mlp([3, 16, 16, 1], output_activation="sigmoid", norm="batch", dropout=0.2)
    template = model.init(jax.random.key(0))["params"]
    a, meta = checkpoint.load_params(crashed, template)
    b, _ = checkpoint.load_params(whole, template)
    # the whole loop state (params, batch statistics, optimizer state, key) bitwise: one payload
    digests = {
        checkpoint.read_header(checkpoint.latest(f))["payload_sha256"] for f in (crashed, whole)
    }
    assert len(digests) == 1
    assert meta["epoch"] == epochs
    assert_bitwise_equal(a, b)
    assert len(list(crashed.glob("*.jaxnn"))) <= 2 and not list(crashed.glob(".*.tmp"))
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in other.iterdir()} == untouched


def test_numpy_scalars_are_numbers(tmp_path):
    for lr in (np.float32(0.01), np.float64(0.01), 1):
        assert train(1, optimizer=jaxnn.optim.adam(lr)).epochs_run == 1
    with CompileCounter() as c, pytest.raises(ValueError, match=r"got 1e\+300"):
        train(1, optimizer=jaxnn.optim.adam(1e300))
    assert c.count == 0
