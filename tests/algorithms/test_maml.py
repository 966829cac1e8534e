"""MAML against closed forms (quadratic tasks), float64 finite differences, and itself (loop vs vmap)."""

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from metacourse.algorithms import maml
from metacourse.functional import params_of
from metacourse.models import MLP
from metacourse.tasks import SinusoidTasks, TaskBatch
from metacourse.tasks.base import Task
from metacourse.train import TrainConfig, meta_train


class Constant(nn.Module):
    """f_θ(x) = θ for every input: with the MSE over d = 2 outputs, L(θ; c) = ½‖θ − c‖²."""

    broadcasts_over_tasks = True

    def __init__(self, theta):
        super().__init__()
        self.theta = nn.Parameter(torch.as_tensor(theta, dtype=torch.float64))

    def forward(self, x):
        return self.theta.unsqueeze(-2).expand(*x.shape[:-1], self.theta.shape[-1])


def quadratic_tasks(c_support, c_query):
    c_support = torch.as_tensor(c_support, dtype=torch.float64)
    c_query = torch.as_tensor(c_query, dtype=torch.float64)
    x = torch.zeros(len(c_support), 1, 1, dtype=torch.float64)
    return TaskBatch(x, c_support.unsqueeze(1), x, c_query.unsqueeze(1))


@pytest.mark.parametrize("backend", ["loop", "vmap"])
@pytest.mark.parametrize("first_order", [False, True])
def test_one_step_meta_gradient_closed_form(backend, first_order):
    alpha = 0.3
    theta = torch.tensor([1.0, -2.0], dtype=torch.float64)
    c, c_prime = torch.tensor([[0.5, 0.5], [3.0, -1.0]]), torch.tensor([[2.0, 1.0], [-1.0, 0.0]])
    model = Constant(theta)
    cfg = maml.Config(inner_lr=alpha, first_order=first_order, backend=backend)
    maml.meta_loss(model, params_of(model), quadratic_tasks(c, c_prime), cfg).backward()
    phi = theta - alpha * (theta - c.double())                    # one inner step per task
    per_task = (phi - c_prime.double()) * (1.0 if first_order else 1.0 - alpha)
    assert torch.allclose(model.theta.grad, per_task.mean(0), atol=1e-12)


def test_two_step_meta_gradient_closed_form():
    # L(θ) = ½‖θ−c‖² has Hessian I: φ_2 − c = (1−α)²(θ − c), dφ_2/dθ = (1−α)² I.
    alpha, theta = 0.2, torch.tensor([1.0, 4.0], dtype=torch.float64)
    c, c_prime = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, -1.0]])
    model = Constant(theta)
    cfg = maml.Config(inner_lr=alpha, inner_steps=2)
    maml.meta_loss(model, params_of(model), quadratic_tasks(c, c_prime), cfg).backward()
    phi = c.double() + (1 - alpha) ** 2 * (theta - c.double())
    assert torch.allclose(model.theta.grad, ((1 - alpha) ** 2 * (phi - c_prime.double()))[0])


def _double_mlp():
    torch.manual_seed(0)
    return MLP(1, (16, 16), 1).double()


def _double_tasks(n_tasks=3):
    batch = SinusoidTasks().sample(n_tasks, 5, 6, np.random.default_rng(1))
    return TaskBatch(*(getattr(batch, n).double() for n in
                       ("x_support", "y_support", "x_query", "y_query")))


@pytest.mark.parametrize("meta_sgd", [False, True])
def test_meta_gradient_matches_float64_finite_differences(meta_sgd):
    model, tasks = _double_mlp(), _double_tasks()
    cfg = maml.Config(inner_lr=0.05, inner_steps=2, backend="loop")
    inner_lrs = maml.init_inner_lrs(params_of(model), cfg).double() if meta_sgd else None
    leaves = list(model.parameters()) + (list(inner_lrs.values()) if meta_sgd else [])
    directions = [torch.randn_like(p) for p in leaves]
    loss = maml.meta_loss(model, params_of(model), tasks, cfg, inner_lrs)
    analytic = sum((g * d).sum() for g, d in zip(torch.autograd.grad(loss, leaves), directions))
    eps, values = 1e-6, []
    for sign in (1, -1):
        with torch.no_grad():
            for p, d in zip(leaves, directions):
                p.add_(sign * eps * d)
        values.append(maml.meta_loss(model, params_of(model), tasks, cfg, inner_lrs).item())
        with torch.no_grad():
            for p, d in zip(leaves, directions):
                p.sub_(sign * eps * d)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(analytic.item() - numeric) < 1e-6 * max(1.0, abs(numeric))


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("inner_steps", [1, 3])
@pytest.mark.parametrize("meta_sgd", [False, True])
def test_loop_and_vmap_backends_agree(first_order, inner_steps, meta_sgd):
    model, tasks = _double_mlp(), _double_tasks(5)
    grads = {}
    for backend in ("loop", "vmap"):
        cfg = maml.Config(inner_lr=0.05, inner_steps=inner_steps, first_order=first_order,
                          backend=backend)
        torch.manual_seed(3)
        inner_lrs = maml.init_inner_lrs(params_of(model), cfg).double() if meta_sgd else None
        leaves = list(model.parameters()) + (list(inner_lrs.values()) if meta_sgd else [])
        loss = maml.meta_loss(model, params_of(model), tasks, cfg, inner_lrs)
        grads[backend] = torch.autograd.grad(loss, leaves)
    for g_loop, g_vmap in zip(grads["loop"], grads["vmap"]):
        assert torch.allclose(g_loop, g_vmap, atol=1e-12)


def test_vmap_backend_for_a_model_without_task_broadcasting():
    model = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    tasks = _double_tasks(4)
    losses = [maml.meta_loss(model, params_of(model), tasks, maml.Config(backend=b, inner_lr=0.1))
              for b in ("loop", "vmap")]
    grads = [torch.autograd.grad(loss, list(model.parameters())) for loss in losses]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-12)


def test_auto_backend_avoids_vmap_for_batchnorm():
    assert maml.choose_backend(MLP(), maml.Config()) == "vmap"
    with_bn = nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    assert maml.choose_backend(with_bn, maml.Config()) == "loop"


def test_meta_sgd_learns_step_sizes():
    model, tasks = _double_mlp(), _double_tasks()
    cfg = maml.Config(inner_lr=0.05)
    inner_lrs = maml.init_inner_lrs(params_of(model), cfg).double()
    maml.meta_loss(model, params_of(model), tasks, cfg, inner_lrs).backward()
    assert all(lr.grad is not None and lr.grad.abs().sum() > 0 for lr in inner_lrs.values())
    assert set(inner_lrs) == {n.replace(".", "/") for n in params_of(model)}


@pytest.mark.parametrize("kwargs, match", [
    ({"inner_steps": 0}, "inner_steps"), ({"inner_steps": -2}, "inner_steps"),
    ({"inner_lr": -0.1}, "inner_lr"), ({"backend": "gpu"}, "backend"), ({"loss": "l1"}, "loss"),
    ({"inner_steps": 1.5}, "inner_steps")])
def test_bad_config_names_the_fix(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        maml.Config(**kwargs)


def test_wrong_task_type_says_how_to_build_tasks():
    model = MLP()
    with pytest.raises(TypeError, match="TaskBatch"):
        maml.meta_loss(model, params_of(model), [torch.zeros(3)], maml.Config())


def test_maml_learns_sinusoids_in_seconds():
    torch.manual_seed(0)
    model = MLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = partial(maml.meta_step, model, optimizer, cfg=maml.Config())
    sampler = partial(SinusoidTasks().sample, k_shot=10, n_query=10)
    history = meta_train(step, sampler, TrainConfig(meta_steps=400, progress=False), state={})
    first, last = np.mean(history.metrics["meta_loss"][:50]), np.mean(history.metrics["meta_loss"][-50:])
    assert last < 0.75 * first


def test_adapt_functional_equals_adapt_and_first_order_drops_the_graph():
    torch.manual_seed(0)
    model = MLP(1, (8,), 1).double()
    task = SinusoidTasks().sample(1, 5, 5, np.random.default_rng(0))[0]
    task = Task(task.x_support.double(), task.y_support.double(), task.x_query.double(), task.y_query.double())
    for first_order in (False, True):
        cfg = maml.Config(inner_lr=0.05, inner_steps=2, first_order=first_order)
        theta = {n: p.detach().clone().requires_grad_() for n, p in params_of(model).items()}
        plain, functional = maml.adapt(model, theta, task, cfg), maml.adapt_functional(model, theta, task, cfg)
        for name in plain:
            assert torch.allclose(plain[name], functional[name], atol=1e-12)
        second = [torch.autograd.grad(adapted["2.weight"].sum(), theta["0.bias"], allow_unused=True)[0]
                  for adapted in (plain, functional)]
        if first_order:
            assert all(g is None or torch.count_nonzero(g) == 0 for g in second)
        else:
            assert torch.allclose(second[0], second[1], atol=1e-12) and torch.count_nonzero(second[0]) > 0


def test_the_broadcasting_protocol_needs_the_declaration_to_be_true():
    from metacourse.functional import BroadcastsOverTasks, broadcasts_over_tasks

    class Declines(Constant):
        broadcasts_over_tasks = False

    assert broadcasts_over_tasks(MLP(1, (4,), 1)) and isinstance(MLP(1, (4,), 1), BroadcastsOverTasks)
    assert broadcasts_over_tasks(Constant([0.0, 0.0]))
    assert not broadcasts_over_tasks(Declines([0.0, 0.0]))
    assert not broadcasts_over_tasks(nn.Linear(1, 1))  # no declaration: vmap does the batching
