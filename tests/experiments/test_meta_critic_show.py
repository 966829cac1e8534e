"""The tables and figures of Lecture 8, made from the stored meta-critic runs (nothing is trained)."""

import pytest

from metacourse import results
from metacourse.experiments import meta_critic as experiment

BUDGETS = (60, 1000, 3000, 20000)


def test_critic_budget_table_orders_the_budgets_and_prints_the_stored_means():
    runs = [results.load("meta-critic-sinusoid", variant="labelled", critic_steps=n) for n in reversed(BUDGETS)]
    lines = experiment.critic_budget_table(runs).splitlines()
    assert [line.split("|")[1].strip() for line in lines[2:10:2]] == [f"{n:,}" for n in BUDGETS]
    largest = runs[0].row("actor, meta-critic + unlabelled x", "mse_4shot").ours
    assert f"| {largest.mean:.2f} ± {largest.ci95:.2f} |" in lines[9]
    assert "(predict 0 (no learning))" in lines[11]


def test_critic_budget_table_without_runs_names_the_fix():
    with pytest.raises(ValueError, match="meta-critic-sinusoid"):
        experiment.critic_budget_table([])


def test_cartpole_table_and_figure():
    run = results.load("meta-critic-cartpole")
    lines = experiment.cartpole_table(run).splitlines()
    medians = {**run.plan, **run.measured}["median_interactions"]
    assert lines[2].startswith(f"| 0.25 | {medians['meta-critic'][0]:,.0f} |")
    assert "not reached" in lines[8]  # ℓ = 1.15: the actor-critic's median seed never got there
    figure = experiment.plot_cartpole_interactions(run)
    assert len(figure.axes) == 2 and figure.get_size_inches()[0] * 100 <= 1400
    from matplotlib import pyplot as plt
    plt.close(figure)


def test_codes_strip_and_loss_figures():
    from matplotlib import pyplot as plt

    run = results.load("meta-critic-cartpole")
    codes = experiment.plot_taen_codes(run)
    assert f"{run.extra('details')['embedding']['r2_length_from_z']:.2f}" in codes.axes[0].get_title()
    strip = experiment.plot_stored_strip(run.figure(), rows=2)
    width, _ = strip.get_size_inches() * strip.dpi
    assert len(strip.axes) == 2 and width <= 1400  # the stored strip is 2002 pixels wide
    budgets = [results.load("meta-critic-sinusoid", variant="labelled", critic_steps=n) for n in BUDGETS]
    loss = experiment.plot_critic_loss(budgets)
    assert len(loss.axes[0].lines) == len(BUDGETS)
    for figure in (codes, strip, loss):
        plt.close(figure)
