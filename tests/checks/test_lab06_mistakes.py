"""Lab 06's mistake catalogue: each typical wrong implementation of Exercises 6.1–6.3 fails its
check with a message that names the mistake and the fix; the reference passes."""

from __future__ import annotations

import pytest
import torch
from _catalogue import assert_named

from metacourse.checks import lab06
from metacourse.rl import maml_rl
from metacourse.rl.returns import discounted_returns
from metacourse.rl.task_env import Rollout

pytestmark = pytest.mark.usefixtures("one_thread")


def _log_probs(policy, params, traj):
    return maml_rl.distribution(policy, params, traj.obs).log_prob(traj.actions)


def _loss(weights_fn, reduce="valid", log_prob_reduce="sum"):
    """An inner loss built from the reference's pieces with one piece changed."""
    def inner_loss(policy, params, traj, cfg):
        log_prob = _log_probs(policy, params, traj)
        log_prob = log_prob.sum(-1) if log_prob_reduce == "sum" else log_prob.mean(-1)
        per_step = log_prob * weights_fn(traj, cfg)
        if reduce == "valid":
            return -(per_step * traj.mask).sum((-2, -1)) / traj.mask.sum((-2, -1))
        return reduce(per_step, traj)
    return inner_loss


def _advantages(traj, cfg):
    return maml_rl.advantages(traj, cfg)


def _lecture_by_hand(traj, cfg):  # what lecture 06 used to teach: every step, padding included
    from metacourse.rl import value_baseline

    returns = discounted_returns(traj.rewards, cfg.gamma)
    adv = returns - value_baseline.fit_predict(traj.obs, returns, traj.mask, cfg.baseline_reg)
    return (adv - adv.mean((1, 2), keepdim=True)) / (adv.std((1, 2), unbiased=False, keepdim=True) + 1e-8)


correct_loss = _loss(_advantages)

LOSS_MISTAKES = {
    "mean over all H steps": (_loss(_advantages, lambda s, t: -s.mean((-2, -1))),
                              r"mean over all E×H steps.*VALID steps.*mask\.sum"),
    "wrong sign": (_loss(_advantages, lambda s, t: (s * t.mask).sum((-2, -1)) / t.mask.sum((-2, -1))),
                   r"sign is wrong.*NEGATIVE"),
    "sum instead of mean": (_loss(_advantages, lambda s, t: -(s * t.mask).sum((-2, -1))),
                            r"SUM over the steps.*mean over the valid steps"),
    "log-prob averaged over coordinates": (_loss(_advantages, log_prob_reduce="mean"),
                                           r"averaged over the action's coordinates.*\.sum\(-1\)"),
    "raw returns, no baseline": (_loss(lambda t, c: discounted_returns(t.rewards, c.gamma, dones=t.terminated)),
                                 r"raw returns.*maml_rl\.advantages"),
    "undiscounted rewards-to-go": (_loss(lambda t, c: t.rewards.flip(-1).cumsum(-1).flip(-1)),
                                   r"undiscounted\) rewards-to-go.*maml_rl\.advantages"),
    "advantages not standardised": (
        _loss(lambda t, c: maml_rl.advantages(t, maml_rl.Config(**{**c.__dict__, "normalize_advantages": False}))),
        r"not standardised.*standardises them per task"),
    "lecture's old by-hand loss (every step)": (_loss(_lecture_by_hand, lambda s, t: -s.mean((-2, -1))),
                                                r"padding included.*mask is 1"),
    "one number for all tasks": (_loss(_advantages, lambda s, t: -(s * t.mask).sum() / t.mask.sum()),
                                 r"one loss per task, shape \(T,\)"),
    "per-episode REINFORCE (divided by E)": (
        _loss(_advantages, lambda s, t: -(s * t.mask).sum((-2, -1)) / t.mask.shape[-2]),
        r"averaged over the E episodes.*mean over the N valid STEPS"),
    "divided by every task's steps": (_loss(_advantages, lambda s, t: -(s * t.mask).sum((-2, -1)) / t.mask.sum()),
                                      r"valid steps of ALL tasks.*OWN valid steps"),
    "log π detached": (lambda policy, params, traj, cfg: correct_loss(
        policy, {n: p.detach() for n, p in params.items()}, traj, cfg), r"does not depend on params.*detach"),
    "π of the policy's own weights": (lambda policy, params, traj, cfg: correct_loss(
        policy, {n: p for n, p in policy.named_parameters()}, traj, cfg), r"does not depend on .*from `params`"),
}


def _adapt_without_cfg(policy, params, traj, cfg):
    from metacourse.algorithms import maml

    return maml.adapt(policy, params, traj, cfg, loss_fn=correct_loss)  # loss_fn gets no cfg


def _step(loss_reduce=torch.sum, lr=None, create_graph=True, in_place=False, detach=False):
    def inner_step(policy, params, traj, cfg):
        if detach:
            params = {n: p.detach().requires_grad_() for n, p in params.items()}
        loss = loss_reduce(correct_loss(policy, params, traj, cfg))
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        alpha = cfg.inner_lr if lr is None else lr(cfg)
        if in_place:
            for p, g in zip(params.values(), grads):
                p.sub_(alpha * g)
            return params
        return {n: p - alpha * g for (n, p), g in zip(params.items(), grads)}
    return inner_step


STEP_MISTAKES = {
    "create_graph forgotten": (_step(create_graph=False), r"create_graph=True"),
    "mean over tasks": (_step(loss_reduce=torch.mean), r"α/T.*AVERAGED.*Sum them"),
    "ascent": (_step(lr=lambda cfg: -cfg.inner_lr), r"UP the loss.*φ = θ − α ∇L"),
    "in-place update": (_step(in_place=True), r"in place.*build new"),
    "constant step size": (_step(lr=lambda cfg: 0.1), r"use cfg\.inner_lr"),
    "θ detached": (_step(detach=True), r"φ does not depend on θ"),
    "maml.adapt with a loss that needs cfg": (_adapt_without_cfg, r"three arguments.*partial\(my_inner_loss"),
}


def _rollout(noise="generator", record_next=False, advance=True, n_steps_arg=True, stack_dim=2, swap_flags=False,
             reset=True, clip=False, one_policy=False):
    def post_rollout(policy, adapted, env, n_episodes, generator, n_steps=100):
        params = {n: p[0] for n, p in adapted.items()} if one_policy else adapted
        record = {"obs": [], "actions": [], "rewards": [], "terminated": [], "truncated": []}
        with torch.no_grad():
            obs = env.reset(n_episodes, generator) if reset else env.positions.clone()
            for _ in range(n_steps if n_steps_arg else env.horizon):
                pi = maml_rl.distribution(policy, params, obs)
                dtype = torch.float32 if noise == "float32" else obs.dtype
                actions = pi.sample() if noise == "global" else \
                    pi.loc + pi.scale * torch.randn(pi.loc.shape, generator=generator, dtype=dtype)
                if clip:
                    actions = actions.clamp(-0.1, 0.1)
                step = env.step(actions)
                flags = (step.truncated, step.terminated) if swap_flags else (step.terminated, step.truncated)
                for name, value in zip(record, (step.obs if record_next else obs, actions, step.rewards, *flags)):
                    record[name].append(value)
                obs = step.obs if advance else obs
        stacked = {name: torch.stack(values, dim=stack_dim if name in ("obs", "actions") or stack_dim < 2 else 2)
                   for name, values in record.items()}
        return Rollout(**stacked)
    return post_rollout


ROLLOUT_MISTAKES = {
    "one φ for every task": (_rollout(one_policy=True), r"its own φ_T"),
    "pi.sample()": (_rollout(noise="global"), r"global random stream.*generator=generator"),
    "noise drawn in float32": (_rollout(noise="float32"), r"float32.*dtype=obs\.dtype"),
    "obs never advanced": (_rollout(advance=False), r"obs never changes.*obs = next_obs"),
    "records the next state": (_rollout(record_next=True), r"AFTER action t.*taken in"),
    "ignores n_steps": (_rollout(n_steps_arg=False), r"take `n_steps` steps"),
    "stacks on the wrong axis": (_rollout(stack_dim=0), r"stack the steps along dim=2"),
    "terminated and truncated swapped": (_rollout(swap_flags=True), r"swapped.*Step\(obs, rewards, terminated"),
    "no env.reset": (_rollout(reset=False), r"env\.reset\(n_episodes, generator\)"),
    "actions clipped": (_rollout(clip=True), r"clipped.*raw Gaussian"),
}


def test_the_check_problems_end_some_episodes_early():
    for seed in range(9):
        _, _, pre, _ = lab06._problem(seed)
        lengths = pre.mask.sum(-1)
        assert (lengths < 8).any() and (lengths == 8).any(), lengths


def test_reference_functions_pass(capsys):
    lab06.check_inner_loss(maml_rl.inner_loss)
    lab06.check_inner_loss(correct_loss)
    lab06.check_inner_step(maml_rl.adapt)
    lab06.check_inner_step(_step())
    lab06.check_post_rollout(lambda policy, adapted, env, n, gen, n_steps=100:
                             maml_rl.rollout(policy, adapted, env, n, gen, n_steps))
    lab06.check_post_rollout(_rollout())
    assert capsys.readouterr().out.splitlines() == [
        "lab06/inner_loss: 3/3 checks passed", "lab06/inner_loss: 3/3 checks passed",
        "lab06/inner_step: 2/2 checks passed", "lab06/inner_step: 2/2 checks passed",
        "lab06/post_rollout: 3/3 checks passed", "lab06/post_rollout: 3/3 checks passed"]


@pytest.mark.parametrize("name", LOSS_MISTAKES)
def test_inner_loss_mistake_is_named(name):
    assert_named(lab06.check_inner_loss, *LOSS_MISTAKES[name], regex=True)


@pytest.mark.parametrize("name", STEP_MISTAKES)
def test_inner_step_mistake_is_named(name):
    assert_named(lab06.check_inner_step, *STEP_MISTAKES[name], regex=True)


@pytest.mark.parametrize("name", ROLLOUT_MISTAKES)
def test_post_rollout_mistake_is_named(name):
    assert_named(lab06.check_post_rollout, *ROLLOUT_MISTAKES[name], regex=True)


def test_the_mean_over_all_steps_is_not_blamed_on_create_graph():
    with pytest.raises(AssertionError) as failure:
        lab06.check_inner_step(STEP_MISTAKES["mean over tasks"][0])
    assert "create_graph" not in str(failure.value)


def test_pi_sample_is_not_blamed_on_the_task_policies():
    with pytest.raises(AssertionError) as failure:
        lab06.check_post_rollout(ROLLOUT_MISTAKES["pi.sample()"][0])
    assert "own φ" not in str(failure.value)


def test_a_wrong_inner_loss_does_not_cost_the_inner_step(capsys):
    namespace = {"torch": torch, "my_inner_loss": LOSS_MISTAKES["wrong sign"][0]}
    exec("def inner_step(policy, params, trajectories, cfg):\n"
         "    loss = my_inner_loss(policy, params, trajectories, cfg).sum()\n"
         "    grads = torch.autograd.grad(loss, list(params.values()), create_graph=True)\n"
         "    return {n: p - cfg.inner_lr * g for (n, p), g in zip(params.items(), grads)}", namespace)
    lab06.check_inner_step(namespace["inner_step"])
    assert capsys.readouterr().out == "lab06/inner_step: 2/2 checks passed\n"
    assert namespace["my_inner_loss"] is LOSS_MISTAKES["wrong sign"][0]
