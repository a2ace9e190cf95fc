"""The benchmark scripts in ``benchmarks/``, run small: each still measures what it
claims (the peers side by side), and writes its results file."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from test_experiments import SCRIPTS

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(
        f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # end to end; CI runs it
def test_compare_sklearn_prints_one_table(tmp_path, capsys):
    module = load("compare_sklearn")
    rows = module.main(["--epochs-scale", "0.02", "--markdown", str(tmp_path / "t.md")])
    assert [r[0] for r in rows] == SCRIPTS[:-1]  # the MLP scripts (scikit-learn has no CNN)
    assert (tmp_path / "t.md").read_text().count("\n") == len(SCRIPTS) + 1


@pytest.mark.slow
def test_stream_memmap_writes_a_dataset_and_trains_from_it_and_from_memory(tmp_path):
    module = load("stream_memmap")
    out = tmp_path / "stream.json"
    results = module.main(["--gb", "0.004", "--compare", "--file", str(tmp_path / "x.npy"), "--no-progress",
                           "--out", str(out)])  # fmt: skip
    assert np.load(tmp_path / "x.npy", mmap_mode="r").shape == (1369, 784)
    assert (
        results["memmap"]["loss"] == results["memory"]["loss"]
    )  # bit for bit, from disk and from memory
    assert results["ratio"] > 0 and json.loads(out.read_text())["memmap"]["peak_rss_bytes"] > 0


@pytest.mark.slow
def test_benchmark_smoke(tmp_path, capsys):
    module = load("benchmark")
    results = module.main(["--quick", "--out", str(tmp_path / "b.json")])
    assert {"A, batch 1", "A, batch 100", "B, batch 128"} <= set(results)
    a1 = results["A, batch 1"]
    assert (
        a1["jaxnn.fit"] > 0 and a1["scan (hand-written)"] > 0 and a1["flax loop"] > 0
    )  # peers side by side
    assert json.loads((tmp_path / "b.json").read_text())["environment"]["jax"]


def test_the_benchmarks_page_is_generated_from_the_results_and_current():
    report = load("report")
    assert report.main(["--check"]) == 0, (
        "docs/benchmarks.md is out of date: run python benchmarks/report.py"
    )
    page = report.PAGE.read_text()
    assert (
        "round" not in page.lower() and "session" not in page.lower()
    )  # measurements and machines only
    assert "| met |" in page and "jaxnn.fit / flax loop" in page


def test_search_peers_marks_each_target_met_or_missed_and_says_why():
    module = load("search_peers")
    rows = {"scikit-learn": [(10.0, 0.90), (10.0, 0.92)], "jaxnn cold": [(4.0, 0.91, 3.0), (6.0, 0.91, 4.0)],
            "jaxnn cache": [(2.0, 0.91, 1.0), (2.0, 0.91, 1.0)], module.SECOND: [(0.9, 0.91, 0.2), (1.1, 0.91, 0.2)],
            "jaxnn warm": [(0.5, 0.91, 0.0), (0.5, 0.91, 0.0)],
            module.OPTUNA: [(30.0, 0.90), (30.0, 0.90)]}  # fmt: skip
    out = module.summarise("classification_20k", rows)
    cold, cache, optuna = out["targets"]
    assert (cold["time ratio"], cold["met"]) == (0.5, False) and "3.50 of its 5.00 s" in cold["why"]
    assert (cache["time ratio"], cache["met"], cache["why"]) == (0.1, True, "")
    assert optuna["met"] and optuna["time ratio"] == round(5 / 30, 3)
    rows[module.SECOND] = [
        (0.9, 0.89, 0.2),
        (1.1, 0.89, 0.2),
    ]  # 2 points below: fast enough, not accurate enough
    assert "0.5 points below" in module.summarise("classification_20k", rows)["targets"][1]["why"]
    rows["front door cold"] = [(3.0, 0.91, 2.5), (3.4, 0.91, 2.5)]  # 0.32x: within a third
    rows["front door second process"] = [(2.5, 0.91, 0.1), (2.5, 0.91, 0.1)]  # 0.25x: over a fifth
    door = {
        t["run"]: t
        for t in module.summarise("classification_20k", rows)["targets"]
        if "door" in t["run"]
    }
    assert door["front door cold"]["met"] and door["front door cold"]["time ratio"] == 0.32
    assert (
        not door["front door second process"]["met"]
        and "0.10 of its 2.50 s" in door["front door second process"]["why"]
    )


def test_search_gpu_turns_each_measure_into_a_target_met_or_missed():
    module = load("search_gpu")
    w = module.work(False)
    full = {"seconds": 2.048}  # 4,096 configurations: 2,000 a second
    sh = {"seconds": 12.0, "chunks": 7, "transfers": 7}
    opt = {"seconds": 40.0, "trials": 40}  # 1 s a trial, against 12 / 4096 s a configuration
    rows = {t["run"]: t for t in module.targets(w, full, sh, opt)}
    assert (
        rows["jaxnn full budget, warm"]["time ratio"] == 0.5
        and rows["jaxnn full budget, warm"]["met"]
    )
    assert (
        rows["jaxnn halving, cold"]["time ratio"] == 1.2 and not rows["jaxnn halving, cold"]["met"]
    )
    per_config = rows["jaxnn halving, cold (per configuration)"]
    assert per_config["time ratio"] == round(12 / 4096, 4) and per_config["met"]
    assert rows["jaxnn halving: transfers / chunks"]["met"]
    sh["transfers"] = 21  # three arrays a chunk
    assert not {t["run"]: t for t in module.targets(w, full, sh, opt)}[
        "jaxnn halving: transfers / chunks"
    ]["met"]
