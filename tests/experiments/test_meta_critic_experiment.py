import json

import numpy as np
import pytest
import torch

from metacourse import cli
from metacourse.experiments import meta_critic as experiment
from metacourse.reproduce import RunOptions

pytestmark = pytest.mark.usefixtures("one_thread")


def _critic_weights(critic):
    return {name: p.detach().clone() for name, p in critic.state_dict().items()}


@pytest.mark.parametrize("train, budget", [
    (experiment.train_sinusoid_critic, experiment.SinusoidCriticBudget(
        meta_steps=6, meta_batch_size=4, actor_lifetime=4, trace_points=(4, 8), critic_points=5)),
    (experiment.train_cartpole_critic, experiment.CartPoleCriticBudget(
        meta_steps=6, tasks_per_step=3, carts_per_task=2, steps_per_update=3, actor_lifetime=4)),
])
def test_an_interrupted_meta_training_resumes_to_the_same_critic(tmp_path, train, budget):
    """Algorithm 1 state (tasks, actors, their optimiser, carts) lives in the checkpoint: 4 steps,
    then 2 more from the checkpoint, equal 6 steps in one go (a new lifetime starts at step 4)."""
    straight = train(RunOptions(out_dir=str(tmp_path / "a"), progress=False), budget)[0]
    train(RunOptions(out_dir=str(tmp_path / "b"), progress=False), budget.replace(meta_steps=4))
    first = tmp_path / "b" / "checkpoints"
    (saved,) = first.glob("*-4.pt")
    saved.rename(saved.with_name(saved.name.replace("-4.pt", "-6.pt")))
    resumed = train(RunOptions(out_dir=str(tmp_path / "b"), progress=False), budget)[0]
    a, b = _critic_weights(straight), _critic_weights(resumed)
    assert all(torch.allclose(a[name], b[name]) for name in a)


def test_cartpole_fast_run_writes_a_result_with_the_comparison_and_the_codes(tmp_path, capsys):
    out = tmp_path / "cartpole.json"
    code = cli.main(["reproduce", "meta-critic-cartpole", "--fast", "--meta-steps", "4", "--no-progress",
                     "--out-dir", str(tmp_path), "--json", str(out)])
    assert code == 0 and "FAST mode" in capsys.readouterr().out
    result = json.loads(out.read_text())
    lengths = result["budget"]["held_out_lengths"]
    assert len(result["rows"]) == 2 * len(lengths)
    assert {row["method"] for row in result["rows"]} == {"meta-critic", result["measured"]["best_actor_critic"]}
    assert any("held-out poles" in note for note in result["notes"])
    details = json.loads(open(result["artifacts"]["details"]).read())
    assert len(details["embedding"]["pc"]) == len(details["embedding"]["lengths"])
    assert np.isfinite(details["embedding"]["r2_length_from_z"])
    assert all(open(result["artifacts"][name], "rb").read(4) == b"\x89PNG" for name in ("curves", "embedding"))


def test_a_misspelt_setting_fails_when_the_plan_is_made():
    with pytest.raises(TypeError, match="actor_lifetme"):
        experiment.SinusoidCriticBudget(actor_lifetme=4)
    with pytest.raises(TypeError, match="meta_step"):
        experiment.cartpole_budget(RunOptions(fast=True)).replace(meta_step=3)
    with pytest.raises(AttributeError):
        experiment.cartpole_budget(RunOptions(fast=True)).meta_steps = 3  # frozen


@pytest.mark.parametrize("trace, reads", [("labelled", "(x, ŷ, r, y)"), ("reward", "(x, ŷ, r)")])
def test_sinusoid_fast_run_names_its_trace_and_can_leave_maml_out(tmp_path, capsys, trace, reads):
    out = tmp_path / "sinusoid.json"
    code = cli.main(["reproduce", "meta-critic-sinusoid", "--fast", "--meta-steps", "3", "--trace", trace,
                     "--test-tasks", "4", "--maml-steps", "0", "--no-progress", "--out-dir", str(tmp_path),
                     "--json", str(out)])
    assert code == 0 and "FAST mode" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["budget"]["trace"] == trace and result["budget"]["test_tasks"] == 4
    assert {row["method"] for row in result["rows"]} == {
        "actor, plain MSE", "actor, meta-critic", "actor, meta-critic + unlabelled x", "predict 0 (no learning)"}
    assert all(row["ours"]["n"] == 4 for row in result["rows"])
    assert any(f"the TAEN reads {reads}" in note for note in result["notes"])
    assert any("left out" in note for note in result["notes"])
    (checkpoint,) = (tmp_path / "checkpoints").glob("meta-critic-sinusoid*-3.pt")
    assert ("labelled" in checkpoint.name) == (trace == "labelled")


def test_sinusoid_run_refuses_an_empty_test_set(tmp_path):
    with pytest.raises(ValueError, match="--test-tasks must be 1 or more"):
        experiment.run_sinusoid(RunOptions(fast=True, out_dir=str(tmp_path), extra={"test_tasks": 0}))
