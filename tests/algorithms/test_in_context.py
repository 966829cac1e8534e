"""In-context meta-training: the losses, the estimators it is compared with, and the task family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metacourse.algorithms import in_context
from metacourse.functional import params_of
from metacourse.models.transformer import InContextTransformer

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed=0, d=3):
    torch.manual_seed(seed)
    return InContextTransformer(d, d_model=16, layers=2, heads=2, max_points=12)


def test_linear_tasks_follow_the_model_and_the_shifts():
    tasks = in_context.LinearTasks(4).sample(3, 5, 2, np.random.default_rng(0))
    w = torch.as_tensor(tasks.info["w"], dtype=torch.float32).unsqueeze(-1)
    torch.testing.assert_close(tasks.y_support, tasks.x_support @ w)
    torch.testing.assert_close(tasks.y_query, tasks.x_query @ w)
    noisy = in_context.LinearTasks(4, noise=1.0).sample(3, 5, 2, np.random.default_rng(0))
    w = torch.as_tensor(noisy.info["w"], dtype=torch.float32).unsqueeze(-1)
    assert not torch.allclose(noisy.y_support, noisy.x_support @ w)       # noisy examples
    torch.testing.assert_close(noisy.y_query, noisy.x_query @ w)          # clean targets
    scaled = in_context.LinearTasks(4, x_scale=3.0).sample(400, 5, 2, np.random.default_rng(1))
    assert 2.5 < scaled.x_support.std().item() < 3.5
    with pytest.raises(ValueError, match="x_scale"):
        in_context.LinearTasks(4, x_scale=0.0)


def test_prefix_loss_is_the_mean_of_the_online_squared_errors():
    model, tasks = _model(), in_context.LinearTasks(3).sample(4, 5, 3, np.random.default_rng(2))
    params = params_of(model)
    prediction, target = in_context.online_predictions(model, params, tasks)
    assert prediction.shape == (4, 8, 1)
    loss = in_context.meta_loss(model, params, tasks, in_context.Config())
    torch.testing.assert_close(loss, ((prediction - target) ** 2).mean())
    query = in_context.task_loss(model, params, tasks, in_context.Config(objective="query"))
    torch.testing.assert_close(query, ((in_context.predict(model, params, tasks) - tasks.y_query) ** 2).mean((1, 2)))
    assert in_context.task_loss(model, params, tasks[0], in_context.Config()).dim() == 0


def test_meta_step_lowers_the_loss_on_a_fixed_batch():
    model, tasks = _model(1), in_context.LinearTasks(3).sample(16, 7, 1, np.random.default_rng(3))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = in_context.meta_step(model, optimizer, tasks, in_context.Config())["meta_loss"]
    for _ in range(30):
        last = in_context.meta_step(model, optimizer, tasks, in_context.Config())["meta_loss"]
    assert last < first


def test_least_squares_is_exact_from_d_examples_and_minimum_norm_below():
    tasks = in_context.LinearTasks(4).sample(5, 6, 3, np.random.default_rng(4))
    exact = in_context.least_squares(tasks.x_support, tasks.y_support, tasks.x_query)
    torch.testing.assert_close(exact, tasks.y_query, atol=1e-4, rtol=1e-4)
    x, y = tasks.x_support[:, :2].double(), tasks.y_support[:, :2].double()
    w = torch.linalg.pinv(x) @ y
    torch.testing.assert_close(in_context.least_squares(x, y, x), y)           # fits the examples
    torch.testing.assert_close(w, x.transpose(1, 2) @ torch.linalg.solve(x @ x.transpose(1, 2), y))  # min norm
    zero = in_context.least_squares(x[:, :0], y[:, :0], tasks.x_query)
    assert torch.all(zero == 0)


def test_ridge_averaging_and_neighbours():
    tasks = in_context.LinearTasks(2).sample(3, 50, 4, np.random.default_rng(5))
    x, y, q = tasks.x_support, tasks.y_support, tasks.x_query
    torch.testing.assert_close(in_context.ridge(x, y, q, lam=1e-9), in_context.least_squares(x, y, q),
                               atol=1e-4, rtol=0)
    assert in_context.averaging(x, y, q).shape == (3, 4, 1)
    assert torch.all(in_context.averaging(x[:, :0], y[:, :0], q) == 0)
    near = in_context.nearest_neighbours(x, y, x[:, :1], neighbours=1)
    torch.testing.assert_close(near, y[:, :1])
    assert in_context.nearest_neighbours(x[:, :2], y[:, :2], q).shape == (3, 4, 1)   # fewer examples than 3


def test_error_by_k_normalises_and_checks_k():
    tasks = in_context.LinearTasks(3).sample(20, 4, 5, np.random.default_rng(6))
    zero = lambda x, y, q: torch.zeros(*q.shape[:2], 1)  # noqa: E731
    errors = in_context.error_by_k(zero, tasks, [0, 4], normaliser=3.0)
    assert errors[0].shape == (20,)
    np.testing.assert_allclose(errors[4], (tasks.y_query ** 2).mean((1, 2)).numpy() / 3.0, rtol=1e-6)
    with pytest.raises(ValueError, match="must lie in 0..4"):
        in_context.error_by_k(zero, tasks, [5])
    predictor = in_context.in_context_predictor(_model())
    assert in_context.error_by_k(predictor, tasks, [2], 3.0)[2].shape == (20,)


def test_config_rejects_unknown_objectives():
    with pytest.raises(ValueError, match="choose one of"):
        in_context.Config(objective="online")
    with pytest.raises(ValueError, match="must be > 0"):
        in_context.Config(max_grad_norm=0.0)
