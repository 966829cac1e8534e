"""Checks of lab 06 (MAML for RL): the policy-gradient inner loss, the inner step, the
post-adaptation rollout.

Each ``check_*`` compares a student's function with the reference in ``metacourse.rl.maml_rl``
on small 2D-navigation problems (float64) and prints one verdict line such as
``lab06/inner_loss: 3/3 checks passed``. In these problems an episode also ends when the agent
comes within 0.1 of its goal, so some episodes of every batch stop after 1–6 of their 8 steps and
the padding after them must be left out of every mean. When a result differs, the usual mistakes
(the mean over all H steps, the sign, a sum, a mean over tasks, the global random stream, …) are
recognised and named with their fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import torch

from ..functional import expand_over_tasks, frozen_params, params_of
from ..rl import maml_rl, task_env, value_baseline
from ..rl.envs import BatchedNavigation2D
from ..rl.returns import discounted_returns
from . import assert_close, run_checks
from .fallback import builds_on

__all__ = ["check_inner_loss", "check_inner_step", "check_post_rollout", "GoalRadiusNavigation"]


_GOALS = np.array([[0.12, -0.08], [-0.05, 0.15], [0.3, 0.25]])
_ATOL, _RTOL = 1e-8, 1e-6


class GoalRadiusNavigation(BatchedNavigation2D):
    """2D navigation whose episodes also end within ``radius`` (0.1) of the goal, so that in the
    checks' 8-step problems some episodes stop early: the padding after them is what a wrong mean
    would count."""

    radius = 0.1

    def reached(self, positions: torch.Tensor) -> torch.Tensor:
        near = (positions - self.goals.unsqueeze(1)).norm(dim=-1) < self.radius
        return super().reached(positions) | near


def _problem(seed: int = 0, episodes: int = 3, horizon: int = 8):
    """A float64 policy, env, and pre-update rollouts in three tasks, some episodes ending early."""
    torch.manual_seed(seed)
    policy = maml_rl.GaussianPolicy(2, 2, hidden=(16,), init_std=0.5).double()
    env = GoalRadiusNavigation(_GOALS, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    pre = maml_rl.rollout(policy, frozen_params(policy), env, episodes, generator, n_steps=horizon)
    lengths = pre.mask.sum(-1)
    if not (lengths < horizon).any() or not (lengths == horizon).any():  # pragma: no cover - fixed seeds
        raise RuntimeError(f"check problem {seed} has episodes of lengths {lengths.tolist()}: it must "
                           "mix episodes that end early with full ones")
    cfg = maml_rl.Config(inner_lr=0.25, episodes_per_task=episodes)
    return policy, env, pre, cfg


def _theta(policy, n_tasks: int | None):
    theta = {n: p.detach().clone().requires_grad_() for n, p in params_of(policy).items()}
    return theta, (theta if n_tasks is None else expand_over_tasks(theta, n_tasks))


# ---------------------------------------------------------------------------------------------
# Exercise 6.1: the inner loss


def _loss_mistakes(policy, params, pre, cfg):
    """(value, message) of the usual wrong inner losses, computed from the reference's pieces."""
    mask = pre.mask
    adv = maml_rl.advantages(pre, cfg)
    log_prob = maml_rl.distribution(policy, params, pre.obs).log_prob(pre.actions)
    per_step = log_prob.sum(-1) * adv
    valid = mask.sum((-2, -1))
    returns = discounted_returns(pre.rewards, cfg.gamma, dones=pre.terminated)
    raw = returns - value_baseline.fit_predict(pre.obs, returns, mask, cfg.baseline_reg)
    everywhere = (raw - raw.mean((-2, -1), keepdim=True)) / (raw.std((-2, -1), unbiased=False, keepdim=True) + 1e-8)
    unstandardised = maml_rl.advantages(pre, replace(cfg, normalize_advantages=False))
    return [
        (-per_step.mean((-2, -1)),
         "the mean over all E×H steps, padding included: the episodes that ended early count their "
         "padded steps. Divide the sum over the steps by the number of VALID steps, "
         "trajectories.mask.sum((-2, -1)), not by E·H"),
        (per_step.sum((-2, -1)) / valid,
         "+mean log π · Â: the sign is wrong. The loss is the NEGATIVE (a descent on it must raise "
         "the log-probability of actions with a positive advantage)"),
        (-per_step.sum((-2, -1)),
         "the SUM over the steps; the loss is the mean over the valid steps (divide by "
         "trajectories.mask.sum((-2, -1)))"),
        (-(log_prob.mean(-1) * adv).sum((-2, -1)) / valid,
         "the log-probability averaged over the action's coordinates; an action's log-probability "
         "is the SUM over its coordinates: .log_prob(actions).sum(-1)"),
        (-(log_prob.sum(-1) * returns * mask).sum((-2, -1)) / valid,
         "REINFORCE with the raw returns as weights; use the advantages Â = maml_rl.advantages"
         "(trajectories, cfg) (a baseline subtracted and standardised per task)"),
        (-(log_prob.sum(-1) * pre.rewards.flip(-1).cumsum(-1).flip(-1) * mask).sum((-2, -1)) / valid,
         "REINFORCE with the raw (undiscounted) rewards-to-go as weights; use the advantages "
         "Â = maml_rl.advantages(trajectories, cfg) (a baseline subtracted and standardised per task)"),
        (-(log_prob.sum(-1) * unstandardised).sum((-2, -1)) / valid,
         "computed with advantages that are not standardised; maml_rl.advantages(trajectories, cfg) "
         "standardises them per task when cfg.normalize_advantages"),
        (-(log_prob.sum(-1) * everywhere).mean((-2, -1)),
         "computed over every step, padding included: the advantages standardised and the loss "
         "averaged over all E×H steps. Only the steps where trajectories.mask is 1 happened"),
        (-(per_step * mask).sum((-2, -1)) / mask.shape[-2],
         "the sum over each episode's steps, averaged over the E episodes (REINFORCE's per-episode "
         "form); eq. (1) is the mean over the N valid STEPS: divide by trajectories.mask.sum((-2, -1))"),
        (-torch.stack([per_step[t].sum() / valid.sum() for t in range(len(valid))]),
         "divided by the valid steps of ALL tasks; each task's loss is the mean over its OWN valid "
         "steps: sum over dims (-2, -1) and divide by mask.sum((-2, -1))"),
    ]


def _inner_loss_value(inner_loss: Callable, batched: bool, seed: int) -> None:
    policy, _, pre, cfg = _problem(seed)
    _, params = _theta(policy, 3 if batched else None)
    expected = maml_rl.inner_loss(policy, params, maml_rl.with_advantages(pre, cfg), cfg)
    got = inner_loss(policy, params, pre, cfg)
    if isinstance(got, torch.Tensor) and got.dim() == 0:
        raise AssertionError("my_inner_loss returned one number; return one loss per task, shape (T,) "
                             "— average over each task's episodes and steps (dims -2, -1), not over tasks")
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and not torch.allclose(
            got.detach(), expected.detach(), atol=_ATOL, rtol=_RTOL):
        with torch.no_grad():
            for wrong, message in _loss_mistakes(policy, params, pre, cfg):
                if torch.allclose(got.detach(), wrong, atol=_ATOL, rtol=_RTOL):
                    raise AssertionError(f"my_inner_loss is {message}")
    assert_close(got, expected, atol=_ATOL, rtol=_RTOL,
                 what="inner_loss(...)" + (" with parameters batched over tasks" if batched else ""))


def _inner_loss_gradient(inner_loss: Callable) -> None:
    policy, _, pre, cfg = _problem(2)
    theta, params = _theta(policy, 3)
    got = inner_loss(policy, params, pre, cfg)
    if not getattr(got, "requires_grad", False):
        raise AssertionError("the loss does not depend on params: compute log π with "
                             "maml_rl.distribution(policy, params, trajectories.obs), without "
                             "torch.no_grad() or .detach()")
    mine = torch.autograd.grad(got.sum(), list(theta.values()), allow_unused=True)
    unused = [name for name, g in zip(theta, mine) if g is None]
    if unused:
        raise AssertionError(f"the loss does not depend on {unused}: compute π from `params` "
                             "(maml_rl.distribution(policy, params, obs)), not from the policy's own weights")
    reference = maml_rl.inner_loss(policy, params, pre, cfg)
    if got.shape != reference.shape or not torch.allclose(got.detach(), reference.detach(), atol=_ATOL, rtol=_RTOL):
        raise AssertionError("the loss itself differs from the reference (see the checks above): its gradient "
                             "can only match once the loss does")
    want = torch.autograd.grad(reference.sum(), list(theta.values()))
    assert_close(dict(zip(theta, mine)), dict(zip(theta, want)), atol=_ATOL, rtol=_RTOL,
                 what="the gradient of your loss")


def check_inner_loss(inner_loss: Callable) -> None:
    """``inner_loss(policy, params, trajectories, cfg)`` -> REINFORCE loss per task, shape (T,)."""
    run_checks("lab06/inner_loss", [
        ("matches the reference, shared θ", lambda: _inner_loss_value(inner_loss, False, 0)),
        ("matches the reference, θ batched over tasks", lambda: _inner_loss_value(inner_loss, True, 1)),
        ("its gradient is the policy gradient", lambda: _inner_loss_gradient(inner_loss))])


# ---------------------------------------------------------------------------------------------
# Exercise 6.2: the inner step


def _step_mistakes(policy, params, pre, cfg):
    """(φ, message): the usual wrong inner steps, built from the reference's gradient."""
    n_tasks = len(pre.rewards)
    loss = maml_rl.inner_loss(policy, params, maml_rl.with_advantages(pre, cfg), cfg).sum()
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    mistakes = [
        (cfg.inner_lr / n_tasks,
         f"a step of α/{n_tasks} = α/T: the T losses were AVERAGED before the gradient. Sum them "
         "(loss.sum()): each task's copy of θ then gets exactly its own gradient"),
        (-cfg.inner_lr, "θ + α ∇L: a step UP the loss. The inner step descends: φ = θ − α ∇L"),
        (0.1, f"a step of 0.1 where cfg.inner_lr is {cfg.inner_lr}: use cfg.inner_lr, not a constant"),
    ]
    return [({n: p - lr * grads[n] for n, p in params.items()}, message) for lr, message in mistakes] + [
        (maml_rl.adapt(policy, params, pre, replace(cfg, inner_steps=2)), "two inner steps; cfg.inner_steps is 1 here")]


def _inner_step_matches(inner_step: Callable) -> None:
    policy, _, pre, cfg = _problem(3)
    theta, params = _theta(policy, 3)
    before = {n: p.detach().clone() for n, p in params.items()}
    try:
        adapted = inner_step(policy, params, pre, cfg)
    except TypeError as error:
        if "cfg" not in str(error):
            raise
        raise AssertionError("maml.adapt calls loss_fn(model, params, batch), three arguments, but the inner "
                             "loss also needs cfg: pass loss_fn=functools.partial(my_inner_loss, cfg=cfg) "
                             f"(or a lambda) ({error})") from None
    except RuntimeError as error:
        if "in-place" in str(error) or "inplace" in str(error):
            raise AssertionError("the step was written in place into θ (p -= ..., p.sub_(...)): build new "
                                 "tensors, {name: p - cfg.inner_lr * g}, so that θ stays unchanged and the "
                                 f"graph stays intact ({error})") from None
        raise
    if not all(torch.equal(before[n], p.detach()) for n, p in params.items()):
        raise AssertionError("inner_step changed θ in place (p.data -= ..., or an in-place op under "
                             "torch.no_grad()): build new tensors, {name: p - cfg.inner_lr * g}")
    want = maml_rl.adapt(policy, params, pre, cfg)
    if isinstance(adapted, dict) and set(adapted) == set(want):
        differs = any(not torch.allclose(adapted[n].detach(), want[n].detach(), atol=_ATOL, rtol=_RTOL)
                      for n in want)
        for wrong, message in _step_mistakes(policy, params, pre, cfg) if differs else []:
            if all(torch.allclose(adapted[n].detach(), wrong[n].detach(), atol=_ATOL, rtol=_RTOL) for n in want):
                raise AssertionError(f"φ is {message}")
    assert_close(adapted, want, atol=_ATOL, rtol=_RTOL, what="the adapted parameters φ")


def _inner_step_second_order(inner_step: Callable) -> None:
    policy, _, pre, cfg = _problem(4)
    theta, params = _theta(policy, 3)
    adapted = inner_step(policy, params, pre, cfg)
    if not all(getattr(p, "requires_grad", False) for p in adapted.values()):
        raise AssertionError("φ does not depend on θ: keep the graph of the inner step (no .detach(), "
                             "no torch.no_grad(), no new leaf tensors)")
    reference = maml_rl.adapt(policy, params, pre, cfg)
    if set(adapted) != set(reference) or any(
            not torch.allclose(adapted[n].detach(), reference[n].detach(), atol=_ATOL, rtol=_RTOL) for n in reference):
        raise AssertionError("φ itself differs from maml_rl.adapt (see the check above): its derivative "
                             "can only match once φ does")
    probe = sum((p ** 2).sum() for p in adapted.values())
    mine = torch.autograd.grad(probe, list(theta.values()), allow_unused=True)
    if any(g is None for g in mine):
        raise AssertionError("φ does not depend on θ: keep the graph of the inner step (no .detach(), "
                             "no torch.no_grad(), no new leaf tensors)")
    want = torch.autograd.grad(sum((p ** 2).sum() for p in reference.values()), list(theta.values()))
    first_order = maml_rl.adapt(policy, params, pre, replace(cfg, first_order=True))
    first = torch.autograd.grad(sum((p ** 2).sum() for p in first_order.values()), list(theta.values()))
    if all(torch.allclose(m, f, atol=_ATOL, rtol=_RTOL) for m, f in zip(mine, first)):
        raise AssertionError("d(Σ φ²)/dθ is the first-order one: the inner gradient g is treated as a "
                             "constant — taken without create_graph=True, or detached afterwards (g.detach(), "
                             ".data) — so the meta-gradient cannot flow through the inner step")
    assert_close(dict(zip(theta, mine)), dict(zip(theta, want)), atol=1e-7, rtol=1e-5,
                 what="d(Σ φ²)/dθ through your inner step")


def check_inner_step(inner_step: Callable) -> None:
    """``inner_step(policy, params, trajectories, cfg)`` -> φ = θ − α ∇L_T(θ), differentiable."""
    with builds_on(inner_step, my_inner_loss=maml_rl.inner_loss):  # a bug of Exercise 6.1 is not counted here
        run_checks("lab06/inner_step", [("matches maml_rl.adapt", lambda: _inner_step_matches(inner_step)),
                                        ("differentiable to second order",
                                         lambda: _inner_step_second_order(inner_step))])


# ---------------------------------------------------------------------------------------------
# Exercise 6.3: the post-adaptation rollout


def _adapted(seed: int):
    policy, env, pre, cfg = _problem(seed)
    _, params = _theta(policy, 3)
    return policy, env, {n: p.detach() for n, p in maml_rl.adapt(policy, params, pre, cfg).items()}


def _call_rollout(post_rollout: Callable, policy, adapted, env, n: int, seed: int, n_steps: int):
    try:
        return post_rollout(policy, adapted, env, n, torch.Generator().manual_seed(seed), n_steps)
    except ValueError as error:
        if "actions must have shape" in str(error):
            raise AssertionError("the env still holds the episodes of its previous use: start with "
                                 f"obs = env.reset(n_episodes, generator) ({error})") from None
        raise


_FIELDS = ("obs", "actions", "rewards", "terminated", "truncated")


def _rollout_mistakes(got, expected, n_steps: int) -> None:
    if not all(isinstance(getattr(got, name, None), torch.Tensor) for name in _FIELDS):
        raise AssertionError("post_rollout must return task_env.Rollout(obs, actions, rewards, terminated, truncated)")
    shape, want = tuple(got.obs.shape), tuple(expected.obs.shape)
    if shape != want:
        if len(shape) == 4 and shape[:2] == want[:2] and shape[3] == want[3]:
            raise AssertionError(f"obs has {shape[2]} steps, expected {n_steps}: take `n_steps` steps "
                                 "(the argument), not env.horizon")
        if sorted(shape) == sorted(want):
            raise AssertionError(f"obs has shape {shape}, expected {want} (tasks, episodes, steps, 2): "
                                 "stack the steps along dim=2, just after the episode axis")
    if any(getattr(got, name).requires_grad for name in _FIELDS):
        raise AssertionError("the rollout carries gradients: sample inside `with torch.no_grad():` "
                             "(data from the environment is not differentiated)")
    if got.obs.shape == expected.obs.shape:
        if n_steps > 1 and torch.equal(got.obs, got.obs[:, :, :1].expand_as(got.obs)):
            raise AssertionError("obs never changes: after env.step, continue from the new state "
                                 "(obs = next_obs at the end of each step)")
        if torch.allclose(got.obs[:, :, :-1], expected.obs[:, :, 1:]):
            raise AssertionError("obs[..., t, :] is the state AFTER action t; record the observation "
                                 "the action was taken in (append obs before obs = next_obs)")
        if not torch.allclose(got.obs[:, :, 0], torch.zeros_like(got.obs[:, :, 0])):
            raise AssertionError("the first observation is not the start state: call "
                                 "obs = env.reset(n_episodes, generator) before the first step")
    if got.terminated.shape == expected.terminated.shape and not torch.equal(got.terminated, expected.terminated) \
            and torch.equal(got.terminated, expected.truncated) and torch.equal(got.truncated, expected.terminated):
        raise AssertionError("terminated and truncated are swapped: env.step returns Step(obs, rewards, "
                             "terminated, truncated), in that order")
    if got.actions.shape == expected.actions.shape and torch.allclose(got.actions, expected.actions.clamp(-0.1, 0.1)):
        raise AssertionError("the actions were clipped to ±0.1: record the raw Gaussian samples "
                             "(the env clips them itself, and log π is of the raw sample)")


def _rollout_matches(post_rollout: Callable, seed: int, n_steps: int) -> None:
    policy, env, adapted = _adapted(seed)
    expected = maml_rl.rollout(policy, adapted, env, 4, torch.Generator().manual_seed(7), n_steps=n_steps)
    got = _call_rollout(post_rollout, policy, adapted, env, 4, 7, n_steps)
    _rollout_mistakes(got, expected, n_steps)
    if not torch.allclose(got.actions, expected.actions):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(12345)
            again = _call_rollout(post_rollout, policy, adapted, env, 4, 7, n_steps)
        if not torch.equal(again.actions, got.actions):
            raise AssertionError("two calls with the same generator seed gave different actions: the "
                                 "noise comes from torch's global random stream (pi.sample() and "
                                 "torch.randn without generator= ignore `generator`). Draw it with "
                                 "torch.randn(pi.loc.shape, generator=generator, dtype=obs.dtype)")
    if got.actions.shape == expected.actions.shape and not torch.allclose(got.actions, expected.actions):
        generator = torch.Generator().manual_seed(7)

        def float32_noise(obs, last):
            pi = maml_rl.distribution(policy, adapted, obs)
            return pi.loc + pi.scale * torch.randn(pi.loc.shape, generator=generator)

        if torch.allclose(got.actions, task_env.play(env, float32_noise, n_steps, 4, generator).actions):
            raise AssertionError("the noise was drawn in float32 (torch.randn without dtype=): the generator "
                                 "then gives other numbers than the reference's float64 draws. Pass "
                                 "dtype=obs.dtype to torch.randn")
    for name in _FIELDS:
        assert_close(getattr(got, name), getattr(expected, name), atol=1e-9, rtol=1e-7,
                     what=f"rollout.{name}")


def _each_task_its_own_policy(post_rollout: Callable) -> None:
    policy, env, adapted = _adapted(6)
    adapted = {n: p.clone() for n, p in adapted.items()}
    adapted["mean.2.bias"][1] += torch.tensor([0.05, -0.05], dtype=torch.float64)
    adapted["log_std"][:] = -10.0  # near-deterministic: the actions show whose mean they follow
    got = post_rollout(policy, adapted, env, 2, torch.Generator().manual_seed(1), 5)
    expected = maml_rl.rollout(policy, adapted, env, 2, torch.Generator().manual_seed(1), n_steps=5)
    if not torch.allclose(got.obs[0], expected.obs[0], atol=1e-3, rtol=0):
        raise AssertionError("even task 0's states differ from the reference's (see the checks above); "
                             "this check can only tell once they match")
    assert_close(got.actions[1], expected.actions[1], atol=1e-3, rtol=0,
                 what="the actions of task 1 (each task must act with its own φ_T: pass the batched "
                      "`adapted` dict to maml_rl.distribution, not one task's or θ)")


def check_post_rollout(post_rollout: Callable) -> None:
    """``post_rollout(policy, adapted, env, n_episodes, generator, n_steps)`` -> the Rollout of φ_T."""
    run_checks("lab06/post_rollout", [
        ("matches maml_rl.rollout, 8 steps", lambda: _rollout_matches(post_rollout, 5, 8)),
        ("matches maml_rl.rollout, 30 steps", lambda: _rollout_matches(post_rollout, 8, 30)),
        ("task t acts with φ_t", lambda: _each_task_its_own_policy(post_rollout))])
