"""The tables and figures of Lecture 6 and its appendix, made from the stored MAML-RL runs (nothing is trained)."""

import matplotlib
import pytest
import torch

from metacourse import results
from metacourse.experiments import maml_rl as experiment
from metacourse.experiments import maml_rl_cheetah as cheetah

matplotlib.use("Agg")


def test_stored_result_renders_the_paper_beside_ours():
    table = experiment.stored_result()._repr_markdown_()
    one_step = results.load("maml-rl-navigation").row("MAML", "return_1step")
    assert f"| MAML | `return_1step` | {one_step.paper:g} | {one_step.ours.mean:.3f} ± " in table
    assert "seed 0" in table and "cpu" in table


def test_stored_notes_and_figure():
    assert "meta-iterations" in experiment.stored_notes()
    figure = experiment.plot_stored_result()
    left, right = figure.axes
    assert len(left.lines) == 2 and len(right.lines) >= 1


def test_stored_policy_acts_on_a_position():
    policy = experiment.stored_policy()
    with torch.no_grad():
        action = policy(torch.zeros(1, 2))
    assert torch.is_tensor(action[0] if isinstance(action, tuple) else action)


def test_cheetah_tables_state_their_budget():
    short = cheetah.stored_table("dir").data
    longer = cheetah.stored_table("dir", meta_steps=300).data
    assert short.startswith("**HalfCheetah, forward/backward**: 100 meta-iterations")
    assert longer.startswith("**HalfCheetah, forward/backward**: 300 meta-iterations")
    assert "| MAML, backward tasks | `return_1step` |" in short
    assert cheetah.stored_table("vel").data.startswith("**HalfCheetah, goal velocity**")


def test_cheetah_unknown_family_names_the_choices():
    with pytest.raises(ValueError, match="choose one of dir, vel"):
        cheetah.stored_result("ant")


def test_cheetah_figure_is_the_stored_one():
    image = cheetah.plot_stored_curves()
    assert image.filename.endswith("maml-rl-cheetah-dir-300.png")
