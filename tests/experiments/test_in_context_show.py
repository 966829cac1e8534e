"""Lecture 10's figures and tables, read from the stored icl runs: labels, tables at the telling values
of k, the check of the theory (and its failure on a run that breaks it), the gaps and the sinusoid table."""

import dataclasses
from types import SimpleNamespace

import matplotlib
import pytest

from metacourse import results
from metacourse.experiments import in_context

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def linear():
    return results.load("icl-linear")


def test_label_and_checkpoint_name_the_stored_run(linear):
    label = in_context.stored_label(linear)
    assert label.startswith(f"`icl-linear`: {linear.plan['meta_steps']:,} meta-steps") and "seed 0" in label
    path = in_context.checkpoint_of(linear, "runs", 0)
    assert path.name == f"icl-linear-d{linear.plan['x_dim']}-seed0-{linear.plan['meta_steps']}.pt"


def test_linear_table_holds_the_stored_numbers_at_the_telling_k(linear):
    table = in_context.linear_table(linear, "clean")
    d = linear.plan["x_dim"]
    ks = [int(line.split("|")[1]) for line in table.splitlines()[4:]]
    assert ks == sorted({0, 1, d - 1, d, d + 1, 2 * d, linear.plan["points"] - 1})
    row = linear.row("transformer", f"clean_k{2 * d}").ours
    assert f"| {2 * d} | {row.mean:.3f} ± {row.ci95:.3f} |" in table


def test_theory_check_passes_on_the_stored_run_and_fails_on_a_broken_one(linear):
    assert in_context.theory_check(linear).startswith("least squares, measured − eq. (6)")
    broken = [dataclasses.replace(row, ours=dataclasses.replace(row.ours, mean=row.ours.mean + 0.5))
              if row.method == "least squares" and row.metric == "clean_k2" else row for row in linear.rows]
    with pytest.raises(AssertionError, match="eq. \\(6\\)"):
        in_context.theory_check(SimpleNamespace(plan=linear.plan, rows=broken, seed=0, device="cpu"))


def test_gap_report_gives_one_verdict_per_condition(linear):
    lines = in_context.gap_report(linear).splitlines()
    assert len(lines) == len(in_context.SHIFTS) and all(" within 0.1" in line for line in lines)


def test_figure_and_sinusoid_table(linear):
    figure = in_context.stored_linear_figure(linear)
    assert len(figure.axes) == len(in_context.SHIFTS)
    table = in_context.stored_sinusoid_table()
    icl = results.load("icl-sinusoid").row("transformer (in context)", "mse_5shot").ours
    assert f"{icl.mean:.3f} ± {icl.ci95:.3f}" in table and "`blackbox-sinusoid`" in table
