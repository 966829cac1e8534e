import pytest
import torch

from metacourse.checks import lab06
from metacourse.rl import maml_rl


def test_reference_functions_pass(capsys):
    lab06.check_inner_loss(lambda policy, params, traj, cfg: maml_rl.inner_loss(policy, params, traj, cfg))
    lab06.check_inner_step(maml_rl.adapt)
    lab06.check_post_rollout(lambda policy, adapted, env, n, gen, horizon=100:
                             maml_rl.rollout(policy, adapted, env, n, gen, horizon))
    assert capsys.readouterr().out.splitlines() == [
        "lab06/inner_loss: 3/3 checks passed", "lab06/inner_step: 2/2 checks passed",
        "lab06/post_rollout: 3/3 checks passed"]


def test_a_first_order_inner_step_is_caught(capsys):
    def no_graph(policy, params, trajectories, cfg):
        loss = maml_rl.inner_loss(policy, params, trajectories, cfg).sum()
        grads = torch.autograd.grad(loss, list(params.values()))  # create_graph forgotten
        return {n: p - cfg.inner_lr * g for (n, p), g in zip(params.items(), grads)}

    with pytest.raises(AssertionError, match="create_graph"):
        lab06.check_inner_step(no_graph)
    assert "lab06/inner_step: 1/2 checks passed" in capsys.readouterr().out


def test_rolling_out_theta_for_every_task_is_caught():
    def shared(policy, adapted, env, n, gen, horizon=100):
        first = {name: p[0] for name, p in adapted.items()}  # one policy for all tasks
        return maml_rl.rollout(policy, first, env, n, gen, horizon)

    with pytest.raises(AssertionError, match="its own"):
        lab06.check_post_rollout(shared)
