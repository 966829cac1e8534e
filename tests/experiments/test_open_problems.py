"""The open-problems experiments (Lecture 9): the finite task pool, the memory counter, the input
checks, and FAST runs of the three registered experiments through the command line."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metacourse.algorithms import maml
from metacourse.cli import main
from metacourse.experiments.open_problems import graph_bytes, parse_pool_sizes, parse_range
from metacourse.functional import params_of
from metacourse.models import MLP
from metacourse.tasks import SinusoidTasks
from metacourse.tasks.variants import SinusoidPool


def test_pool_reuses_only_its_tasks_with_fresh_inputs():
    pool = SinusoidPool(7, seed=3)
    batch = pool.sample(500, k_shot=4, n_query=6, rng=np.random.default_rng(0))
    assert batch.x_support.shape == (500, 4, 1) and batch.y_query.shape == (500, 6, 1)
    drawn = set(zip(batch.info["amplitude"].round(12), batch.info["phase"].round(12)))
    assert drawn == set(zip(pool.amplitudes.round(12), pool.phases.round(12)))  # all 7, nothing else
    index = batch.info["pool_index"]
    assert np.array_equal(batch.info["amplitude"], pool.amplitudes[index])
    expected = pool.amplitudes[index[0]] * np.sin(batch.x_query[0].numpy() + pool.phases[index[0]])
    assert np.allclose(batch.y_query[0].numpy(), expected, atol=1e-5)
    first, again = np.flatnonzero(index == index[0])[:2]  # the same task drawn twice: new inputs
    assert not torch.equal(batch.x_support[first], batch.x_support[again])


def test_pools_are_nested_and_respect_the_family():
    small, large = SinusoidPool(5, seed=[1, 5]), SinusoidPool(20, seed=[1, 5])
    assert np.array_equal(small.amplitudes, large.amplitudes[:5]) and len(large) == 20
    assert np.array_equal(small.phases, large.phases[:5])
    assert not np.array_equal(SinusoidPool(5, seed=2).amplitudes, small.amplitudes)
    shifted = SinusoidPool(50, SinusoidTasks(amplitude=(2.5, 5.0)), seed=0)
    assert shifted.amplitudes.min() >= 2.5 and shifted.amplitudes.max() <= 5.0


@pytest.mark.parametrize("make, error, fix", [
    (lambda: SinusoidPool(0), ValueError, "SinusoidTasks"),
    (lambda: SinusoidPool(5, family="sinusoid"), TypeError, "SinusoidPool(20, SinusoidTasks"),
    (lambda: SinusoidPool(5).sample(2, 3, 3, rng=0), TypeError, "default_rng"),
    (lambda: parse_pool_sizes("5,abc"), ValueError, "5,20,100,1000,unlimited"),
    (lambda: parse_pool_sizes("0"), ValueError, "positive integers"),
    (lambda: parse_range("--train-amplitude", "2.5"), ValueError, "--train-amplitude 0.1,2.5"),
    (lambda: parse_range("--test-amplitude", "5,1"), ValueError, "low < high"),
])
def test_bad_input_names_the_fix(make, error, fix):
    with pytest.raises(error, match=fix.replace("(", r"\(")):
        make()


def test_parsers_accept_good_input():
    assert parse_pool_sizes("5, 20,unlimited") == [5, 20, None]
    assert parse_range("--train-amplitude", "0.1,2.5") == (0.1, 2.5)


def test_second_order_graph_grows_with_inner_steps_first_order_does_not():
    torch.manual_seed(0)
    model = MLP(1, (8, 8), 1)
    tasks = SinusoidTasks().sample(3, 5, 5, np.random.default_rng(0))
    held = {(first_order, steps): graph_bytes(maml.meta_loss(
                model, params_of(model), tasks, maml.Config(inner_steps=steps, first_order=first_order)))
            for first_order in (False, True) for steps in (1, 2, 3)}
    assert held[(False, 1)] < held[(False, 2)] < held[(False, 3)]
    assert held[(True, 1)] == held[(True, 2)] == held[(True, 3)] < held[(False, 1)]
    growth = held[(False, 2)] - held[(False, 1)]
    assert held[(False, 3)] - held[(False, 2)] == growth  # linear in the number of inner steps


def _run(tmp_path: Path, name: str, *flags: str) -> dict:
    out = tmp_path / f"{name}.json"
    assert main(["reproduce", name, "--fast", "--no-progress", "--out-dir", str(tmp_path),
                 "--json", str(out), *flags]) == 0
    result = json.loads(out.read_text())
    assert result["experiment"] == name and any("FAST mode" in note for note in result["notes"])
    assert Path(result["artifacts"]["plot"]).is_file()
    for row in result["rows"]:
        assert set(row) == {"method", "metric", "paper", "ours"}
    return result


def test_fast_meta_overfitting(tmp_path):
    result = _run(tmp_path, "meta-overfitting", "--meta-steps", "3", "--pool-sizes", "5,unlimited")
    metrics = {(row["method"], row["metric"]) for row in result["rows"]}
    methods = ("MAML (1 step)", "MAML (10 steps)", "CNP")
    assert metrics == {(m, f"{split}_mse_{n}tasks") for m in methods
                       for split in ("train", "test") for n in ("5", "unlimited")}
    assert all(row["ours"]["n"] == 50 for row in result["rows"])


def test_fast_task_shift(tmp_path):
    result = _run(tmp_path, "task-shift", "--meta-steps", "3", "--train-amplitude", "0.1,1",
                  "--test-amplitude", "3,4")
    metrics = {row["metric"] for row in result["rows"]}
    assert metrics == {f"mse_train{a}_test{b}" for a in ("0.1-1", "3-4", "0.1-5") for b in ("0.1-1", "3-4")}
    assert result["budget"]["amplitude_shifted"] == [3.0, 4.0]


def test_fast_maml_cost(tmp_path):
    result = _run(tmp_path, "maml-cost", "--models", "mlp", "--max-inner-steps", "2")
    rows = {(row["method"], row["metric"]): row["ours"] for row in result["rows"]}
    assert len(rows) == 2 * 2 * 4  # orders × inner steps × (CPU time, wall time, peak, graph)
    second, first = rows[("mlp second order", "graph_MiB_2inner")], rows[("mlp first order", "graph_MiB_2inner")]
    assert second["mean"] > first["mean"]
    assert rows[("mlp first order", "ms_per_step_1inner")]["n"] == 3
    assert rows[("mlp first order", "cpu_ms_per_step_1inner")]["mean"] > 0


@pytest.mark.parametrize("name, flags, fix", [
    ("task-shift", ["--train-amplitude", "5,1"], "--train-amplitude 0.1,2.5"),
    ("meta-overfitting", ["--pool-sizes", "five"], "unlimited"),
    ("maml-cost", ["--models", "resnet"], "mlp,conv4"),
])
def test_command_line_errors_name_the_fix(tmp_path, capsys, name, flags, fix):
    assert main(["reproduce", name, "--fast", "--no-progress", "--out-dir", str(tmp_path), *flags]) == 2
    assert fix in capsys.readouterr().err
