"""Checks of lab 06 (MAML for RL): the policy-gradient inner loss, the inner step, the
post-adaptation rollout.

Each ``check_*`` compares a student's function with the reference in ``metacourse.rl.maml_rl``
on small 2D-navigation problems (float64) and prints one verdict line such as
``lab06/inner_loss: 3/3 checks passed``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import assert_close, run_checks

__all__ = ["check_inner_loss", "check_inner_step", "check_post_rollout"]

_GOALS = np.array([[0.3, -0.2], [-0.1, 0.4], [0.45, 0.45]])


def _problem(seed: int = 0, episodes: int = 3, horizon: int = 8):
    """A float64 policy, env, and pre-update trajectories in three tasks."""
    import torch

    from ..functional import frozen_params
    from ..rl import maml_rl
    from ..rl.envs import BatchedNavigation2D

    torch.manual_seed(seed)
    policy = maml_rl.GaussianPolicy(2, 2, hidden=(16,), init_std=0.5).double()
    env = BatchedNavigation2D(_GOALS, dtype=torch.float64)
    theta = frozen_params(policy)
    generator = torch.Generator().manual_seed(seed)
    pre = maml_rl.rollout(policy, theta, env, episodes, generator, horizon=horizon)
    cfg = maml_rl.Config(inner_lr=0.3, episodes_per_task=episodes)
    return policy, env, pre, cfg


def _theta(policy, n_tasks: int | None):
    from ..functional import expand_over_tasks, params_of

    theta = {n: p.detach().clone().requires_grad_() for n, p in params_of(policy).items()}
    return theta, (theta if n_tasks is None else expand_over_tasks(theta, n_tasks))


def check_inner_loss(inner_loss: Callable) -> None:
    """``inner_loss(policy, params, trajectories, cfg)`` -> REINFORCE loss per task, shape (T,)."""
    from ..rl import maml_rl

    def matches(batched: bool, seed: int):
        policy, _, pre, cfg = _problem(seed)
        _, params = _theta(policy, 3 if batched else None)
        expected = maml_rl.inner_loss(policy, params, maml_rl.with_advantages(pre, cfg), cfg)
        assert_close(inner_loss(policy, params, pre, cfg), expected, atol=1e-8, rtol=1e-6,
                     what="inner_loss(...)" + (" with parameters batched over tasks" if batched else ""))

    def gradient_matches():
        policy, _, pre, cfg = _problem(2)
        theta, params = _theta(policy, 3)
        got = inner_loss(policy, params, pre, cfg)
        if not getattr(got, "requires_grad", False):
            raise AssertionError("the loss does not depend on params: compute log π with "
                                 "maml_rl.distribution(policy, params, trajectories.obs)")
        import torch

        mine = torch.autograd.grad(got.sum(), list(theta.values()))
        want = torch.autograd.grad(maml_rl.inner_loss(policy, params, pre, cfg).sum(), list(theta.values()))
        assert_close(dict(zip(theta, mine)), dict(zip(theta, want)), atol=1e-8, rtol=1e-6,
                     what="the gradient of your loss")

    run_checks("lab06/inner_loss", [("matches the reference, shared θ", lambda: matches(False, 0)),
                                    ("matches the reference, θ batched over tasks", lambda: matches(True, 1)),
                                    ("its gradient is the policy gradient", gradient_matches)])


def check_inner_step(inner_step: Callable) -> None:
    """``inner_step(policy, params, trajectories, cfg)`` -> φ = θ − α ∇L_T(θ), differentiable."""
    import torch

    from ..rl import maml_rl

    def matches():
        policy, _, pre, cfg = _problem(3)
        _, params = _theta(policy, 3)
        assert_close(inner_step(policy, params, pre, cfg), maml_rl.adapt(policy, params, pre, cfg),
                     atol=1e-8, rtol=1e-6, what="the adapted parameters φ")

    def second_order():
        policy, _, pre, cfg = _problem(4)
        theta, params = _theta(policy, 3)
        adapted = inner_step(policy, params, pre, cfg)
        if not all(getattr(p, "requires_grad", False) for p in adapted.values()):
            raise AssertionError("φ does not depend on θ: keep the graph of the inner step")
        probe = sum((p ** 2).sum() for p in adapted.values())
        mine = torch.autograd.grad(probe, list(theta.values()))
        reference = maml_rl.adapt(policy, params, pre, cfg)
        want = torch.autograd.grad(sum((p ** 2).sum() for p in reference.values()), list(theta.values()))
        assert_close(dict(zip(theta, mine)), dict(zip(theta, want)), atol=1e-7, rtol=1e-5,
                     what="d(Σ φ²)/dθ through your inner step (forgot create_graph=True?)")

    run_checks("lab06/inner_step", [("matches maml_rl.adapt", matches),
                                    ("differentiable to second order", second_order)])


def check_post_rollout(post_rollout: Callable) -> None:
    """``post_rollout(policy, adapted, env, n_episodes, generator)`` -> Trajectories of φ_T."""
    import torch

    from ..rl import maml_rl

    def matches(seed: int, horizon: int):
        policy, env, pre, cfg = _problem(seed)
        _, params = _theta(policy, 3)
        adapted = {n: p.detach() for n, p in maml_rl.adapt(policy, params, pre, cfg).items()}
        expected = maml_rl.rollout(policy, adapted, env, 4, torch.Generator().manual_seed(7), horizon=horizon)
        got = post_rollout(policy, adapted, env, 4, torch.Generator().manual_seed(7), horizon)
        for name in ("obs", "actions", "rewards", "dones"):
            assert_close(getattr(got, name), getattr(expected, name), atol=1e-9, rtol=1e-7,
                         what=f"trajectories.{name}")

    def each_task_its_own_policy():
        policy, env, pre, cfg = _problem(6)
        _, params = _theta(policy, 3)
        adapted = {n: p.detach().clone() for n, p in maml_rl.adapt(policy, params, pre, cfg).items()}
        adapted["mean.2.bias"][1] += torch.tensor([0.3, -0.3], dtype=torch.float64)
        got = post_rollout(policy, adapted, env, 2, torch.Generator().manual_seed(1), 5)
        expected = maml_rl.rollout(policy, adapted, env, 2, torch.Generator().manual_seed(1), horizon=5)
        assert_close(got.actions[1], expected.actions[1], atol=1e-9, rtol=1e-7,
                     what="the actions of task 1 (each task must use its own φ_T)")

    run_checks("lab06/post_rollout", [("matches maml_rl.rollout, 8 steps", lambda: matches(5, 8)),
                                      ("matches maml_rl.rollout, 100 steps", lambda: matches(8, 100)),
                                      ("task t acts with φ_t", each_task_its_own_policy)])
