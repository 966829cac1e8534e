"""Matching Networks against a hand computation, and batched against per task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metacourse.algorithms import matching
from metacourse.functional import params_of
from metacourse.tasks.base import Task, stack_tasks


def _task(seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    return Task(torch.randn(6, 4, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1, 0]),
                torch.randn(4, 4, generator=g, dtype=torch.float64), torch.tensor([1, 0, 2, 2]))


def test_task_loss_equals_a_hand_computation():
    model = nn.Linear(4, 3).double()
    task, tau = _task(), 0.5
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    support = task.x_support.numpy() @ w.T + b
    query = task.x_query.numpy() @ w.T + b
    total = 0.0
    for q, y in zip(query, task.y_query.numpy()):
        cosines = np.array([q @ s / np.linalg.norm(q) / np.linalg.norm(s) for s in support])
        weights = np.exp(cosines / tau) / np.exp(cosines / tau).sum()
        total -= np.log(weights[task.y_support.numpy() == y].sum())
    loss = matching.task_loss(model, params_of(model), task, matching.Config(tau))
    assert loss.item() == pytest.approx(total / len(query), rel=1e-10)


def test_predictions_are_distributions_and_batching_changes_nothing():
    model = nn.Linear(4, 3).double()
    tasks = stack_tasks([_task(s) for s in range(3)])
    cfg = matching.Config()
    probabilities = matching.predict(model, params_of(model), tasks, cfg)
    assert probabilities.shape == (3, 4, 3)
    assert torch.allclose(probabilities.sum(-1), torch.ones(3, 4, dtype=torch.float64))
    single = torch.stack([matching.task_loss(model, params_of(model), tasks[i], cfg) for i in range(3)])
    assert torch.allclose(matching.task_loss(model, params_of(model), tasks, cfg), single)


def test_a_query_equal_to_a_support_example_is_labelled_like_it_when_attention_is_sharp():
    task = _task()
    task = Task(task.x_support, task.y_support, task.x_support.clone(), task.y_support.clone())
    model = nn.Identity()
    probabilities = matching.predict(model, {}, task, matching.Config(temperature=1e-3))
    assert torch.equal(probabilities.argmax(-1), task.y_support)


def test_meta_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8)).double()
    tasks = stack_tasks([_task(s) for s in range(4)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    cfg = matching.Config()
    first = matching.meta_step(model, optimizer, tasks, cfg)["meta_loss"]
    for _ in range(30):
        last = matching.meta_step(model, optimizer, tasks, cfg)["meta_loss"]
    assert last < first * 0.7


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature must be > 0"):
        matching.Config(0.0)
