"""Every experiment script runs from its command line and leaves a complete run folder."""

import dataclasses
import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxnn import checkpoint, experiment

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["seed_network", "classify_breast_cancer", "classify_iris", "classify_digits", "regress_diabetes",
           "classify_digits_cnn"]  # fmt: skip


def load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"experiments_{name}", ROOT / "experiments" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(name: str, argv: list[str]):
    module = load(name)
    if hasattr(module, "main"):
        return module.main(argv)
    return experiment.main(argv, module.CONFIG, module.__doc__)


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        run_script(name, ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--optimizer",
        "--hidden",
        "--seed",
        "--out",
        "--resume",
        "--checkpoint-every",
        "--from-run",
    ):
        assert flag in out


def test_a_bad_flag_prints_its_error_line_alone_and_help_is_plain_text(capsys):
    with pytest.raises(SystemExit) as e:
        run_script("classify_iris", ["--hidden", "4,x"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{Path(sys.argv[0]).name}: error: argument --hidden: expected sizes like 4,4, got '4,x'"
    ]
    with pytest.raises(SystemExit):
        run_script("classify_iris", ["--help"])
    assert "`" not in capsys.readouterr().out


EXPECTED = {"config.json", "run.json", "metrics.csv", "summary.json", "environment.json", "loss.png", "checkpoints",
            "tensorboard"}  # fmt: skip


@pytest.mark.parametrize(
    "name",
    [n if n == "classify_iris" else pytest.param(n, marks=pytest.mark.slow) for n in SCRIPTS[1:]],
)  # one script in the quick tier; the runner's own tests cover the rest
def test_tiny_run_leaves_a_complete_run_folder(name, tmp_path, capsys):
    result = run_script(name, ["--epochs", "2", "--out", str(tmp_path), "--no-progress"])
    files = {p.name for p in tmp_path.iterdir()}
    assert EXPECTED <= files
    if result.config.task != "regression":
        assert "confusion.png" in files
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["epochs_run"] == 2 and summary["samples_per_s"] > 0
    assert (
        len((tmp_path / "metrics.csv").read_text().splitlines()) == 3
    )  # header + one row per epoch
    env = json.loads((tmp_path / "environment.json").read_text())
    assert {"jax", "jaxlib", "optax", "flax", "backend", "device_kind", "device_count"} <= set(env)
    assert checkpoint.read_metadata(checkpoint.latest(tmp_path / "checkpoints"))["epoch"] == 2
    assert [step for step, _ in jaxnn.logs.read_scalars(tmp_path / "tensorboard")["loss"]] == [1, 2]
    assert "run folder" in capsys.readouterr().out


def test_seed_network_runs_both_batch_sizes_and_beats_the_line(tmp_path, capsys):
    results = run_script("seed_network", ["--out", str(tmp_path), "--no-progress"])
    assert [r.config.batch_size for r in results] == [1, 100]
    out = capsys.readouterr().out
    linear = float(out.split("least-squares line")[1].split()[0])
    for r in results:
        assert r.summary["test_loss"] < 0.7 * linear
    assert (tmp_path / "loss.png").exists() and (tmp_path / "batch-1" / "config.json").exists()


class _Stopped(Exception):
    """Raised by a stand-in for fit or search, once it has seen its arguments."""


def script_configs(name: str):
    module = load(name)
    return [module.BATCH_1, module.BATCH_100] if name == "seed_network" else [module.CONFIG]


@pytest.mark.parametrize("name", SCRIPTS)
def test_no_script_chooses_on_its_test_rows(name, tmp_path, monkeypatch):
    """Early stopping, the best checkpoint and --search's ranking see the validation
    rows, a part of the training split: never a test row."""
    from jaxnn.experiment import _run, _searching

    seen = []

    def stand_in(model, variables, x, y, **keywords):
        seen.append((x, keywords["validation"]))
        raise _Stopped

    monkeypatch.setattr(_run, "fit", stand_in)
    monkeypatch.setattr(_searching, "search", stand_in)
    flags = [[], ["--search", "3"]] if name != "classify_digits_cnn" else [[]]
    for i, config in enumerate(script_configs(name)):
        split = experiment.load_split(config)
        rows = split.rows
        assert not set(rows["val"]) & set(rows["test"]) and not set(rows["train"]) & set(
            rows["test"]
        )
        assert not set(rows["train"]) & set(rows["val"])
        assert sum(map(len, rows.values())) == len(set(np.concatenate(list(rows.values()))))
        assert len(rows["val"]) == round(
            config.validation_fraction * (len(rows["train"]) + len(rows["val"]))
        )
        for j, extra in enumerate(flags):
            seen.clear()
            argv = [
                "--batch-size",
                str(config.batch_size),
                *extra,
                "--out",
                str(tmp_path / f"{i}{j}"),
            ]
            with pytest.raises(_Stopped):
                run_script(name, argv)
            x, validation = seen[-1]
            np.testing.assert_array_equal(x, split.x_train)
            np.testing.assert_array_equal(validation[0], split.x_val)
            np.testing.assert_array_equal(validation[1], split.y_val)


@pytest.mark.parametrize(
    "name",
    [n if n == "seed_network" else pytest.param(n, marks=pytest.mark.slow) for n in SCRIPTS],
)
def test_every_script_that_offers_search_searches(name, tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_script(name, ["--help"])
    offered = "--search" in capsys.readouterr().out
    argv = ["--search", "3", "--epochs", "2", "--out", str(tmp_path), "--no-progress"]
    if not offered:  # refused as any unknown flag is, before anything is written
        with pytest.raises(SystemExit) as exit_:
            run_script(name, argv)
        assert (
            exit_.value.code == 2 and "unrecognized arguments: --search" in capsys.readouterr().err
        )
        assert not tmp_path.joinpath("config.json").exists()
        return
    [result] = run_script(name, argv) if name == "seed_network" else [run_script(name, argv)]
    assert {"trials.csv", "search.json", "search.png"} <= {p.name for p in tmp_path.iterdir()}
    assert len((tmp_path / "trials.csv").read_text().splitlines()) == 1 + 3
    found = json.loads((tmp_path / "search.json").read_text())
    assert result.config.learning_rate == pytest.approx(found["best_config"]["learning_rate"])


def test_config_json_names_the_search_only_when_it_differs_from_the_default(tmp_path):
    config = load("classify_iris").CONFIG
    assert "search_space" not in json.loads(config.to_json())
    narrowed = dataclasses.replace(config, search_space={"learning_rate": ["uniform", 0.01, 0.1]})
    assert json.loads(narrowed.to_json())["search_space"] == narrowed.search_space
    for c in (config, narrowed):
        assert experiment.ExperimentConfig.from_json(c.to_json()) == c


def test_from_run_reproduces_a_run(tmp_path):
    first = run_script(
        "classify_iris",
        ["--epochs", "3", "--seed", "4", "--out", str(tmp_path / "a"), "--no-progress"],
    )
    again = run_script(
        "classify_iris",
        ["--from-run", str(tmp_path / "a"), "--out", str(tmp_path / "b"), "--no-progress"],
    )
    assert again.config == first.config
    assert again.summary["test_loss"] == first.summary["test_loss"]


def test_resume_continues_a_finished_config(tmp_path):
    run_script(
        "regress_diabetes",
        ["--epochs", "3", "--checkpoint-every", "1", "--out", str(tmp_path), "--no-progress"],
    )
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["epochs"] == 3 and cfg["checkpoint_every"] == 1
    again = run_script("regress_diabetes", ["--resume", str(tmp_path), "--no-progress"])
    assert again.fit.epochs_run == 3  # nothing left to do; the history came from the checkpoint


def test_bad_command_lines(tmp_path, capsys):
    for argv, match in [
        (["--hidden", "4,x"], "expected sizes like 4,4"),
        (["--from-run", str(tmp_path / "nothing")], "holds no run: cannot read config.json"),
        (["--learning-rate", "-1"], "learning_rate must be a finite number > 0"),
        (["--seed", "99999999999999999999"], r"seed must be in \[0, 9223372036854775807\]"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            run_script("classify_iris", [*argv, "--out", str(tmp_path / "run")])
        assert exit_.value.code == 2 and re.search(f"error: .*{match}", capsys.readouterr().err), (
            argv
        )
        assert not (tmp_path / "run").exists()


# bad inputs ---------------------------------------------------------------------------

import hypothesis.strategies as st  # noqa: E402
from bad_inputs import bad_input_test, case, huge_ints  # noqa: E402

# experiment command lines -------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).parents[1] / "experiments"))
import contextlib  # noqa: E402
import io  # noqa: E402

import classify_iris  # noqa: E402

import jaxnn  # noqa: E402


def cli(argv, tmp):
    """Runs the iris experiment's command line; returns (exit code, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        experiment.main([*argv, "--out", str(tmp / "run"), "--no-progress"], classify_iris.CONFIG)
    assert not (tmp / "run").exists(), "a failed command line left a run folder"
    return exit_.value.code, err.getvalue()


def expect_cli(argv, tmp, match):
    code, err = cli(argv, tmp)
    message = code if isinstance(code, str) else err
    assert code == 2 and re.search(match, message), (argv, code, err)


@case("cli", "rank")
def _(data, tmp):
    for sizes in ("", ",", "4,,4", "[4]"):
        expect_cli(["--hidden", sizes], tmp, "expected sizes like 4,4")


@case("cli", "dtype")
def _(data, tmp):
    for flag in ("--epochs", "--batch-size", "--seed"):
        expect_cli(
            [flag, data.draw(st.sampled_from(["x", "1.5", "1e3", "ten"]))], tmp, "invalid int value"
        )


@case("cli", "overflow")
def _(data, tmp):
    expect_cli(
        ["--epochs", str(data.draw(huge_ints))], tmp, r"error: epochs must be in \[1, 2147483647\]"
    )


@case("cli", "batch_size")
def _(data, tmp):
    size = data.draw(st.one_of(st.integers(-5, 0), st.integers(97, 10**6)))
    expect_cli(
        ["--batch-size", str(size)],
        tmp,
        r"error: batch_size( must be >= 1|=\d+ is more than the 96 training)",
    )


@case("cli", "learning_rate")
def _(data, tmp):
    for lr in ("-0.1", "0", "nan", "inf", "-inf"):
        expect_cli(
            [f"--learning-rate={lr}"], tmp, "error: learning_rate must be a finite number > 0"
        )


@case("cli", "name")
def _(data, tmp):
    name = data.draw(
        st.text("abcxyz", min_size=1, max_size=6).filter(lambda s: s not in jaxnn.optim.OPTIMIZERS)
    )
    expect_cli(["--optimizer", name], tmp, "invalid choice")


test_bad_input_gets_a_clear_error = bad_input_test("cli")


def test_confusion_figure_counts_true_against_predicted_and_refuses_what_is_not_a_class():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pred = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.0, 0.1, 0.9]])
    fig = experiment.confusion_figure(np.array([0, 1, 2, 2]), pred, ["a", "b", "c"])
    counts = fig.axes[0].images[0].get_array()
    assert np.asarray(counts).tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    plt.close(fig)
    with pytest.raises(ValueError, match="one prediction per label"):
        experiment.confusion_figure(np.array([0, 1]), pred, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"classes in \[0, 3\)"):
        experiment.confusion_figure(np.array([0, 1, 2, 5]), pred, ["a", "b", "c"])
