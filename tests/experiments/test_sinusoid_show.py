"""Lecture 4's sinusoid table and fine-tuning plot (fast: stored results and an untrained network)."""

import numpy as np
import pytest
import torch
from matplotlib import pyplot as plt

from metacourse import results
from metacourse.evaluate import Summary
from metacourse.experiments import sinusoid
from metacourse.models import MLP
from metacourse.reproduce import RunOptions


def test_steps_table_puts_the_paper_above_ours_for_each_step_count():
    stored = results.load("sinusoid")
    table = sinusoid.steps_markdown(stored)
    lines = table.splitlines()
    assert lines[0] == "| 5-shot MSE after | 1 step | 5 steps | 10 steps |"
    assert [line.split("|")[1].strip() for line in lines[2:7]] == [
        "MAML, paper", "MAML, ours", "first-order MAML, ours", "pretrain on all tasks, paper",
        "pretrain on all tasks, ours"]
    maml = stored.row("MAML", "mse_5shot_1step").ours
    assert f"{maml.mean:.3f} ± {maml.ci95:.3f} ({maml.median:.3f})" in lines[3]
    assert "70,000 meta-steps" in table and "8.2 min" in table and "FAST" not in table


def test_a_diverged_mean_is_named_and_the_median_kept():
    assert sinusoid.summary_text(Summary(float("nan"), float("nan"), 0.129, 600)) == "diverged on some task (0.129)"
    assert sinusoid.summary_text(Summary(None, None, 0.5, 3)) == "diverged on some task (0.500)"
    assert "diverged on some task (0.129)" in sinusoid.steps_table(variant="train10").data


@pytest.fixture
def task():
    plan = sinusoid.budget(RunOptions(fast=True))
    return sinusoid.test_tasks(plan, 0, 1, torch.device("cpu"))


def test_a_small_step_stays_in_view_and_the_legend_counts_steps(task):
    torch.manual_seed(0)
    ax = sinusoid.plot_fine_tuning({"MAML": MLP(1, (40, 40), 1)}, task, inner_lr=0.01, steps=1)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "MAML, 1 step" in labels and not any("steps" in label and "1 steps" in label for label in labels)
    assert ax.get_ylim() == (-7.0, 7.0)
    plt.close(ax.figure)


def test_an_overshooting_step_leaves_the_plot_with_a_note_and_does_not_vanish(task):
    torch.manual_seed(0)
    ax = sinusoid.plot_fine_tuning({"MAML": MLP(1, (40, 40), 1)}, task, inner_lr=1.0, steps=10)
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any("off the plot" in label for label in labels), labels
    assert any("the last step wholly in view" in label for label in labels), labels
    drawn = [line for line in ax.get_lines() if line.get_label().startswith("MAML")]
    assert drawn and all(np.all(np.isfinite(line.get_ydata())) for line in drawn)
    assert any("overshoots" in text.get_text() for text in ax.texts)
    plt.close(ax.figure)


def test_the_path_stops_at_the_first_non_finite_step(task):
    torch.manual_seed(0)
    path = sinusoid.fine_tuning_path(MLP(1, (40, 40), 1), task, np.linspace(-5, 5, 7), inner_lr=10.0, steps=10)
    assert 1 <= len(path) < 11 and all(np.all(np.isfinite(p)) for p in path)
