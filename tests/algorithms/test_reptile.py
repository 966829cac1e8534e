"""Reptile's update against its formula, its inner Adam against the update rule, and batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metacourse.algorithms import reptile
from metacourse.functional import expand_over_tasks, forward, params_of
from metacourse.models import MLP
from metacourse.tasks import SinusoidTasks
from metacourse.tasks.base import TaskBatch


def _tasks(n_tasks: int = 3, n_points: int = 4) -> TaskBatch:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n_tasks, n_points, 2, generator=g, dtype=torch.float64)
    y = torch.randn(n_tasks, n_points, 1, generator=g, dtype=torch.float64)
    return TaskBatch(x, y, x[:, :1], y[:, :1])


def _gradient_descent_by_hand(weight, bias, x, y, lr, steps):
    """k full-batch steps of GD on the MSE of a linear model, with the gradient written out."""
    for _ in range(steps):
        residual = x @ weight.T + bias - y                       # (n, 1)
        n = x.shape[0]
        weight = weight - lr * 2 * residual.T @ x / n
        bias = bias - lr * 2 * residual.sum(0) / n
    return weight, bias


def test_reptile_update_equals_its_formula():
    torch.manual_seed(0)
    model = nn.Linear(2, 1).double()
    theta_w, theta_b = model.weight.detach().clone(), model.bias.detach().clone()
    tasks, lr, steps, epsilon = _tasks(), 0.1, 3, 0.25
    cfg = reptile.Config(inner_lr=lr, inner_steps=steps, inner_batch=100, inner_optimizer="sgd",
                         loss="mse")
    phis = [_gradient_descent_by_hand(theta_w, theta_b, tasks.x_support[i], tasks.y_support[i],
                                      lr, steps) for i in range(3)]
    expected_w = theta_w + epsilon * (torch.stack([p[0] for p in phis]).mean(0) - theta_w)
    expected_b = theta_b + epsilon * (torch.stack([p[1] for p in phis]).mean(0) - theta_b)
    reptile.meta_step(model, torch.optim.SGD(model.parameters(), lr=epsilon), tasks, cfg)
    assert torch.allclose(model.weight, expected_w, atol=1e-12)
    assert torch.allclose(model.bias, expected_b, atol=1e-12)


def test_inner_adam_with_beta1_zero_follows_its_update_rule():
    torch.manual_seed(0)
    model = nn.Linear(2, 1).double()
    task = _tasks()[0]
    cfg = reptile.Config(inner_lr=0.01, inner_steps=2, inner_batch=100, loss="mse", beta2=0.9)
    theta = {n: p.detach().clone() for n, p in params_of(model).items()}
    v, phi = {n: torch.zeros_like(p) for n, p in theta.items()}, dict(theta)
    for t in (1, 2):
        w, b = phi["weight"].requires_grad_(), phi["bias"].requires_grad_()
        loss = ((task.x_support @ w.T + b - task.y_support) ** 2).mean()
        grads = dict(zip(("weight", "bias"), torch.autograd.grad(loss, (w, b))))
        for n, g in grads.items():
            v[n] = 0.9 * v[n] + 0.1 * g * g
            phi[n] = (phi[n] - 0.01 * g / ((v[n] / (1 - 0.9**t)).sqrt() + 1e-8)).detach()
    adapted = reptile.adapt(model, params_of(model), task, cfg)
    for n in phi:
        assert torch.allclose(adapted[n], phi[n], atol=1e-12)


def test_mini_batches_cover_the_support_set_before_repeating():
    batches = reptile._batches(10, 4, 5, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4, 4, 4, 4]
    assert len(set(torch.cat(batches[:2]).tolist())) == 8  # no repeats within a pass


def test_batched_adaptation_equals_one_task_at_a_time():
    torch.manual_seed(0)
    model = nn.Linear(2, 1).double()
    tasks = _tasks(n_points=6)
    cfg = reptile.Config(inner_lr=0.05, inner_steps=4, inner_batch=3, loss="mse")
    theta = {n: p.detach() for n, p in params_of(model).items()}
    batched = reptile.adapt(model, expand_over_tasks(theta, 3), tasks, cfg,
                            torch.Generator().manual_seed(5))
    for i in range(3):
        single = reptile.adapt(model, theta, tasks[i], cfg, torch.Generator().manual_seed(5))
        for n in theta:
            assert torch.allclose(batched[n][i], single[n], atol=1e-12)


def test_reptile_learns_a_better_initialisation_for_sinusoids():
    torch.manual_seed(0)
    model = MLP(1, (40, 40), 1)
    rng = np.random.default_rng(0)
    sampler = SinusoidTasks()
    cfg = reptile.Config(inner_lr=0.02, inner_steps=5, inner_batch=10, inner_optimizer="sgd",
                         loss="mse")
    test = sampler.sample(50, 10, 20, np.random.default_rng(99))

    def query_mse() -> float:
        theta = {n: p.detach() for n, p in params_of(model).items()}
        adapted = reptile.adapt(model, expand_over_tasks(theta, 50), test, cfg)
        with torch.no_grad():
            prediction = forward(model, adapted, test.x_query, batched=True)
        return ((prediction - test.y_query) ** 2).mean().item()

    before = query_mse()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(60):
        reptile.meta_step(model, optimizer, sampler.sample(5, 10, 1, rng), cfg)
    assert query_mse() < 0.8 * before


def test_config_rejects_unknown_optimizer():
    with pytest.raises(ValueError, match="inner_optimizer='rmsprop'"):
        reptile.Config(inner_optimizer="rmsprop")


def test_evaluation_is_deterministic_and_per_task():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    g = torch.Generator().manual_seed(0)
    x, xq = torch.randn(5, 9, 4, generator=g), torch.randn(5, 6, 4, generator=g)
    tasks = TaskBatch(x, torch.arange(3).repeat(3).expand(5, 9), xq, torch.arange(3).repeat(2).expand(5, 6))
    cfg = reptile.Config(inner_lr=0.05, inner_steps=7, inner_batch=4)
    first, second = reptile.evaluate(model, tasks, cfg), reptile.evaluate(model, tasks, cfg)
    assert first.shape == (5,) and np.array_equal(first, second)
