"""The tables and figures of Lecture 7, made from the stored MB-MPO runs (nothing is trained)."""

import pytest

from metacourse import results
from metacourse.experiments import mbmpo as experiment


@pytest.fixture(scope="module")
def standard():
    return results.runs("mbmpo-pendulum", variant="standard")


def test_seed_table_has_one_line_per_seed_with_the_stored_numbers(standard):
    table = experiment.seed_table(standard)
    lines = table.splitlines()
    assert len(lines) == 2 + len(standard) and table._repr_markdown_() == table
    first = standard[0]
    mean = first.row(experiment.MBMPO_LABEL, "final_return").ours.mean
    assert f"| {first.seed} | {mean:.1f} ± " in lines[2]
    assert f"{first.plan.get('target_return', first.measured.get('target_return')):.1f}" in lines[2]


def test_steps_and_ratios_agree_with_the_stored_ratio(standard):
    for run in standard:
        target = experiment.target_readings(run)["final (last 3)"]
        ratio = experiment.ratios(run, target)
        stored = {**run.plan, **run.measured}["step_ratio"]
        assert (ratio is None and stored is None) or ratio == pytest.approx(stored, abs=0.01)


def test_settings_table_counts_the_seeds_at_or_above_the_ratio(standard):
    table = experiment.settings_table({"standard": standard}, readings=("final (last 3)", "best 5 in a row"))
    hits = sum(1 for run in standard if (experiment.ratios(run, experiment.target_readings(run)["final (last 3)"])
                                         or 0) >= 10)
    assert f"| {hits} of {len(standard)} |" in table.splitlines()[2] and len(table.splitlines()) == 4


def test_level_table_and_figure(standard):
    table = experiment.level_table(standard, (-400, -150))
    assert table.splitlines()[2].startswith("| -400 |") and "seed 4" in table.splitlines()[0]
    figure = experiment.plot_curves({f"seed {run.seed}": run for run in standard[:2]}, columns=2)
    assert len(figure.axes) == 2
    from matplotlib import pyplot as plt
    plt.close(figure)


def test_no_runs_names_the_fix():
    with pytest.raises(ValueError, match="results.runs"):
        experiment.seed_table([])


def test_imagination_table_gives_the_gap_of_the_last_iteration(standard):
    lines = experiment.imagination_table(standard).splitlines()
    last = {**standard[0].plan, **standard[0].measured}["curves"]["MB-MPO"][-1]
    assert lines[2].startswith(f"| {standard[0].seed} | {last['imagined_return_before']:.1f} / "
                               f"{last['imagined_return_after']:.1f} | {last['return']:.1f} |")
    assert len(lines) == 2 + len(standard)
