"""Lecture 9's tables, read from the stored runs: every line names its run, the numbers are the stored
ones, problems without an RL² run say so, and the profiler's native log lines stay off stderr."""

from types import SimpleNamespace

import pytest
import torch

from metacourse import results
from metacourse.evaluate import Summary
from metacourse.experiments import open_problems
from metacourse.reproduce import Row


def test_run_label_names_the_run_budget_seed_device_and_training_time():
    label = open_problems.run_label(results.load("rl2-bandits-k5-n10"))
    assert label.startswith("`rl2-bandits-k5-n10`: 5,120,000 environment steps, seed 0, cpu, training 8 min wall")
    sinusoid = open_problems.run_label(results.load("sinusoid"))
    assert "70,000 meta-steps (meta-batch 25)" in sinusoid and "when the file was written" in sinusoid


def test_run_label_of_a_run_without_stored_training_time_or_budget():
    stored = SimpleNamespace(name="x", plan={}, measured={"rl2": {"train_wall_seconds": 0.0}}, seed=3, device="",
                             wall_seconds=30.0)
    assert open_problems.run_label(stored) == ("`x`: a timing run, no training, seed 3, device not stored, "
                                               "30 s wall when the file was written")


def test_family_tables_quote_the_stored_numbers():
    sinusoid = open_problems.families_sinusoid()
    cnp = results.load("blackbox-sinusoid").row("CNP", "mse_5shot").ours
    line = next(line for line in sinusoid.splitlines() if line.startswith("| CNP |"))
    assert f"{cnp.mean:.3f} ± {cnp.ci95:.3f}" in line and "`blackbox-sinusoid`" in line
    assert "| — |" in next(line for line in sinusoid.splitlines() if "pretrain" in line)  # no 10-shot row stored
    omniglot = open_problems.families_omniglot()
    proto = results.load("omniglot", method="protonet", shots=1).row("Prototypical Networks").ours
    assert f"| Prototypical Networks | metric | {proto.mean:.2f} ± {proto.ci95:.2f} |" in omniglot
    memory = open_problems.families_memory()
    assert memory.count("`blackbox-mann-omniglot`") == 3


def test_meta_rl_table_has_every_rl2_seed_and_says_where_rl2_was_not_trained():
    table = open_problems.families_meta_rl()
    assert table.count("| Bernoulli bandit, 5 arms, 10 pulls |") == len(results.runs("rl2-bandits-k5-n10"))
    assert "6.687 ± 0.144" in table and "not trained" not in table
    everything = open_problems.families_meta_rl(open_problems.meta_rl_problems())
    assert "| Bernoulli bandit, 50 arms, 500 pulls |" in everything and "not trained | — |" in everything
    assert open_problems.meta_rl_problems()[0] == "rl2-bandits-k5-n10"


def test_stored_tables_of_the_three_experiments():
    cost = open_problems.stored_cost()
    assert cost.count("| MLP 1-40-40-1 |") == 5 and cost.endswith("2 min wall when the file was written")
    assert "graph MiB" in open_problems.stored_cost(full=True)
    assert "| CNP | [2.5-5] |" in open_problems.stored_shift()
    assert "seed 1" in open_problems.stored_overfitting(seed=1)
    assert open_problems.stored_notes("task-shift").startswith("* ")


def test_a_table_reports_a_diverged_mean_and_a_missing_metric():
    run = SimpleNamespace(name="r", plan={"meta_steps": 10}, measured={}, seed=0, device="cpu", wall_seconds=1.0,
                          rows=[Row("MAML", "a", None, Summary(float("nan"), float("nan"), 0.1, 5))])
    table = open_problems._family_table(["a", "b"], [("MAML", run, "MAML", ("a", "b"))])
    assert "| MAML | optimisation | diverged | — |" in table


def test_stored_result_that_does_not_exist_names_the_stored_runs():
    with pytest.raises(KeyError, match="stored runs"):
        results.load("meta-overfitting", seed=7)


def test_peak_bytes_writes_nothing_to_stderr(capfd):
    peak = open_problems.peak_bytes(lambda: torch.ones(10_000).sum())
    captured = capfd.readouterr()
    assert peak >= 40_000 and captured.err == ""
