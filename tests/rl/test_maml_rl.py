from dataclasses import replace

import numpy as np
import pytest
import torch

from metacourse.algorithms import maml
from metacourse.functional import expand_over_tasks, params_of
from metacourse.rl import maml_rl, trpo, value_baseline
from metacourse.rl.envs import BatchedNavigation2D

GOALS = np.array([[0.3, -0.2], [-0.1, 0.4]])


def tiny_setup(dtype=torch.float64, episodes=3, horizon=6, seed=0):
    """A 2-task navigation problem small enough for float64 finite differences."""
    torch.manual_seed(seed)
    policy = maml_rl.GaussianPolicy(2, 2, hidden=(8,), init_std=0.5).to(dtype)
    env = BatchedNavigation2D(GOALS, dtype=dtype)
    generator = torch.Generator().manual_seed(seed)
    theta = {n: p.detach() for n, p in params_of(policy).items()}
    pre = maml_rl.rollout(policy, theta, env, episodes, generator, n_steps=horizon)
    cfg = maml_rl.Config(inner_lr=0.5, episodes_per_task=episodes)
    return policy, env, generator, pre, cfg


def test_rollout_shapes_mask_and_batched_params_match_shared_params():
    policy, env, generator, pre, cfg = tiny_setup(horizon=100, episodes=4)
    assert pre.obs.shape == (2, 4, 100, 2) and pre.actions.shape == (2, 4, 100, 2)
    assert pre.rewards.shape == pre.terminated.shape == pre.mask.shape == (2, 4, 100)
    assert torch.equal(pre.truncated[..., -1], ~pre.terminated.any(-1))  # the time limit ends the others
    assert torch.all(pre.obs[:, :, 0] == 0)  # every episode starts at the origin
    assert pre.episode_returns.shape == (2, 4)
    theta = params_of(policy)
    shared = maml_rl.distribution(policy, theta, pre.obs)
    batched = maml_rl.distribution(policy, expand_over_tasks(theta, 2), pre.obs)
    assert torch.allclose(shared.loc, batched.loc) and torch.allclose(shared.scale, batched.scale)
    with pytest.raises(ValueError, match="n_episodes"):
        maml_rl.rollout(policy, theta, env, 0, generator)
    with pytest.raises(ValueError, match="n_steps"):
        maml_rl.rollout(policy, theta, env, 2, generator, n_steps=-1)
    with pytest.raises(TypeError, match="torch.Generator"):
        maml_rl.rollout(policy, theta, env, 2, None)


def test_linear_baseline_fits_exactly_a_return_that_is_linear_in_its_features():
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(3, 4, 100, 2, generator=gen, dtype=torch.float64)
    mask = torch.ones(3, 4, 100, dtype=torch.float64)
    mask[:, 0, 70:] = 0.0  # a padded episode
    weights = torch.randn(3, 8, generator=gen, dtype=torch.float64)  # one w per task
    returns = (value_baseline.features(obs, mask) * weights[:, None, None]).sum(-1)
    values = value_baseline.fit_predict(obs, returns, mask, reg_coeff=1e-12)
    assert torch.allclose(values, returns, atol=1e-8)
    assert torch.allclose(value_baseline.fit(obs, returns, mask, 1e-12), weights, atol=1e-6)
    assert torch.all(values[:, 0, 70:] == 0)


def test_conjugate_gradient_solves_a_small_spd_system():
    gen = torch.Generator().manual_seed(1)
    m = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    x = trpo.conjugate_gradient(lambda v: a @ v, b, iters=20)
    assert torch.allclose(x, torch.linalg.solve(a, b), atol=1e-8)


def test_fisher_vector_product_is_the_hessian_of_the_kl():
    w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    h = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    kl = 0.5 * w @ h @ w + (w ** 3).sum()
    fvp = trpo.fisher_vector_product(kl, {"w": w}, damping=0.1)
    v = torch.tensor([1.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    expected = (h + torch.diag(6 * w.detach())) @ v + 0.1 * v
    assert torch.allclose(fvp(v), expected)


def test_adapt_is_maml_adapt_with_the_policy_gradient_loss():
    policy, env, generator, pre, cfg = tiny_setup()
    theta = expand_over_tasks({n: p.detach().requires_grad_() for n, p in params_of(policy).items()}, 2)
    adapted = maml_rl.adapt(policy, theta, pre, cfg)
    loss = maml_rl.inner_loss(policy, theta, maml_rl.with_advantages(pre, cfg), cfg)
    assert loss.shape == (2,)
    grads = torch.autograd.grad(loss.sum(), list(theta.values()))
    for (name, value), grad in zip(theta.items(), grads):
        assert torch.allclose(adapted[name], value - cfg.inner_lr * grad)
    adv = maml_rl.advantages(pre, cfg)  # normalised per task over valid steps
    assert torch.allclose((adv * pre.mask).sum((-2, -1)), torch.zeros(2, dtype=adv.dtype), atol=1e-9)


def test_meta_gradient_through_the_inner_step_matches_finite_differences():
    policy, env, generator, pre, cfg = tiny_setup()
    theta = {n: p.detach().clone().requires_grad_() for n, p in params_of(policy).items()}
    adapted = {n: p.detach() for n, p in maml_rl.adapt(
        policy, expand_over_tasks(theta, 2), pre, replace(cfg, first_order=True)).items()}
    post = maml_rl.with_advantages(maml_rl.rollout(policy, adapted, env, 3, generator, n_steps=6), cfg)
    old = maml_rl.distribution(policy, adapted, post.obs)

    def loss_at(params, config=cfg):
        return maml_rl.meta_loss(policy, params, maml_rl.with_advantages(pre, cfg), post, old, config)[0]

    direction = {n: torch.randn_like(p) for n, p in theta.items()}
    analytic = sum((g * direction[n]).sum() for n, g in
                   zip(theta, torch.autograd.grad(loss_at(theta), list(theta.values()))))
    eps = 1e-6
    plus = loss_at({n: (p + eps * direction[n]).detach().requires_grad_() for n, p in theta.items()})
    minus = loss_at({n: (p - eps * direction[n]).detach().requires_grad_() for n, p in theta.items()})
    numeric = ((plus - minus) / (2 * eps)).detach()
    assert float(analytic.detach()) == pytest.approx(float(numeric), rel=1e-5, abs=1e-9)
    first = replace(cfg, first_order=True)
    first_order = sum((g * direction[n]).sum() for n, g in
                      zip(theta, torch.autograd.grad(loss_at(theta, first), list(theta.values()))))
    assert abs(float(first_order.detach()) - float(numeric)) > 1e-4 * abs(float(numeric))  # Hessian terms matter


@pytest.mark.parametrize("exact_fisher", [True, False])
def test_trpo_meta_step_respects_the_kl_bound_and_updates_the_policy(exact_fisher):
    policy, env, generator, pre, cfg = tiny_setup(horizon=20, episodes=4)
    cfg = replace(cfg, max_kl=0.002, exact_fisher=exact_fisher, inner_lr=0.1)
    before = {n: p.detach().clone() for n, p in params_of(policy).items()}
    theta = {n: p.detach().requires_grad_() for n, p in before.items()}
    adapted = {n: p.detach() for n, p in maml_rl.adapt(
        policy, expand_over_tasks(theta, 2), pre, replace(cfg, first_order=True)).items()}
    samples = []

    def sample_post(adapted_params):
        samples.append(maml_rl.rollout(policy, adapted_params, env, 4, generator, n_steps=20))
        return samples[-1]

    metrics = maml_rl.meta_step(policy, pre, sample_post, cfg)
    assert metrics["accepted"] == 1.0 and 0.0 < metrics["kl"] <= cfg.max_kl
    assert metrics["loss_after"] < metrics["loss_before"]
    post = maml_rl.with_advantages(samples[0], cfg)
    old = maml_rl.distribution(policy, adapted, post.obs)
    after = {n: p.detach().requires_grad_() for n, p in params_of(policy).items()}
    _, kl = maml_rl.meta_loss(policy, after, maml_rl.with_advantages(pre, cfg), post, old, cfg)
    kl = float(kl.detach())
    assert kl == pytest.approx(metrics["kl"], rel=1e-6) and kl <= cfg.max_kl
    assert any(not torch.equal(before[n], p) for n, p in params_of(policy).items())


def test_evaluate_returns_one_value_per_task_and_step():
    policy, env, generator, pre, cfg = tiny_setup(dtype=torch.float32)
    curve = maml_rl.evaluate(policy, BatchedNavigation2D(GOALS), cfg, steps=2, n_episodes=3,
                             generator=generator)
    assert sorted(curve) == [0, 1, 2] and all(v.shape == (2,) for v in curve.values())
    assert all(np.all(v <= 0) for v in curve.values())  # rewards are minus distances
    with pytest.raises(ValueError, match="one per step"):
        maml_rl.evaluate(policy, env, cfg, steps=3, step_sizes=[0.1])


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="max_kl"):
        maml_rl.Config(max_kl=0.0)
    with pytest.raises(ValueError, match="gamma"):
        maml_rl.Config(gamma=1.5)


def test_maml_adapt_hook_with_the_mse_loss_equals_the_default():
    from metacourse.models import MLP
    from metacourse.tasks import SinusoidTasks

    torch.manual_seed(0)
    model = MLP(1, (10,), 1)
    task = SinusoidTasks().sample(1, 5, 5, np.random.default_rng(0))[0]
    cfg = maml.Config(inner_lr=0.01, inner_steps=2)
    theta = params_of(model)
    default = maml.adapt(model, theta, task, cfg)
    hooked = maml.adapt(model, theta, task, cfg, loss_fn=lambda m, p, t: maml.support_loss(m, p, t, cfg))
    assert all(torch.allclose(default[n], hooked[n]) for n in default)
