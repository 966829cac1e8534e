"""Lecture 4's Meta-SGD table reads the stored runs (fast: nothing is trained)."""

import pytest

from metacourse import results
from metacourse.experiments import meta_sgd


def test_meta_sgd_sits_beside_maml_after_one_step_on_both_families():
    table = meta_sgd.comparison_table().data
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:] if line.startswith("| ")]
    assert [(row[2].strip(), row[3].strip()) for row in rows] == [
        ("MAML", "5-shot, 1 step"), ("Meta-SGD", "5-shot, 1 step"),
        ("MAML", "5-shot, 1 step"), ("MAML", "20-shot, 1 step"),
        ("Meta-SGD", "5-shot, 1 step"), ("Meta-SGD", "20-shot, 1 step")]
    stored = results.load("meta-sgd", variant="metasgd")
    ours = stored.row("Meta-SGD", "mse_20shot_1step").ours
    assert f"{ours.mean:.3f} ± {ours.ci95:.3f}" in table
    assert "60,000 × 4" in table and "5,000 × 25" in table and "Meta-SGD Table 1" in table


def test_a_selection_that_names_no_stored_run_lists_what_exists():
    with pytest.raises(KeyError, match="stored runs"):
        meta_sgd.comparison_table({"variant": "metasgd", "meta_steps": 123})
