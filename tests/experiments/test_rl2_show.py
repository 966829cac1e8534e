"""The tables and figures of Lecture 5 and its appendix, made from the stored RL² runs (nothing is trained)."""

import matplotlib
import pytest

from metacourse import results
from metacourse.experiments import rl2 as experiment

matplotlib.use("Agg")


def test_bandit_table_has_every_setting_with_the_stored_numbers_beside_the_paper():
    table = experiment.bandit_table().data
    lines = [line for line in table.splitlines() if line.startswith("| n=")]
    assert len(lines) == len(experiment.BANDIT_SETTINGS)
    stored = results.load("rl2-bandits-k5-n100")
    gittins = stored.row("Gittins")
    assert f"**{gittins.ours.mean:.1f} ± {gittins.ours.ci95:.1f} ({gittins.paper})**" in lines[3]
    assert f"| {stored.plan['test_instances']} | 0 | cpu |" in lines[3]
    assert lines[1].count("—") == 1  # RL² was trained at n = 10 only for k = 5


def test_mdp_table_bolds_only_the_best_when_no_method_ties():
    table = experiment.mdp_table().data
    line = next(line for line in table.splitlines() if line.startswith("| n=10 |"))
    assert line.count("**") == 2 and "**156.8 ±" in line


def test_best_methods_reads_the_significance_note():
    stored = results.load("rl2-bandits-k5-n100")
    assert experiment.best_methods(stored) == {"Gittins", "OTS", "UCB1"}


def test_best_methods_of_a_run_without_the_note_is_empty():
    class Bare:
        notes = ["Random: no hyper-parameters; 0.0 s"]

    assert experiment.best_methods(Bare()) == set()


def test_rl2_runs_table_lists_both_seeds_of_every_setting():
    table = experiment.rl2_runs_table().data
    lines = table.splitlines()[2:]
    assert len(lines) == 2 * len(experiment.RL2_RUNS)
    seed1 = results.load("rl2-mdp-n10", seed=1).row("RL²").ours
    assert f"**{seed1.mean:.2f} ± {seed1.ci95:.2f}**" in lines[-1] and "BEB" in lines[-1]


def test_training_time_of_a_resumed_run_counts_every_session():
    stored = results.load("rl2-bandits-k5-n100")
    run = experiment.rl2_training(stored)
    assert run["wall"] == pytest.approx(stored.measured["rl2"]["train_wall_seconds_all_sessions"])
    assert run["wall"] > stored.wall_seconds  # the file's own session only resumed the run


def test_outside_tolerance_lists_cells_beyond_the_band_and_never_rl2():
    lines = experiment.outside_tolerance().splitlines()
    assert lines and all("RL²" not in line for line in lines)
    assert any(line.startswith("bandits n=100, k=10") and "OTS" in line for line in lines)


def test_baseline_notes_and_curves():
    notes = experiment.baseline_notes()
    assert "rl2-mdp-n10:" in notes and "best: BEB" in notes
    figure = experiment.plot_rl2_curves()
    assert len(figure.axes) == len(experiment.RL2_RUNS)
    assert all(len(axis.lines) >= 5 for axis in figure.axes)  # two seeds, the paper, a baseline, random
