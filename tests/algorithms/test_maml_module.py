"""metacourse.MAML (the learn2learn-style front end) against maml.py and against learn2learn 0.2.0."""

import numpy as np
import pytest
import torch
from torch import nn

import metacourse
from metacourse.algorithms import maml
from metacourse.functional import mse_loss, params_of
from metacourse.models import MLP
from metacourse.tasks import SinusoidTasks


def _tasks(n=4):
    return SinusoidTasks().sample(n, 5, 5, np.random.default_rng(0))


def _front_end_grads(model, tasks, lr, first_order, steps):
    wrapper = metacourse.MAML(model, lr=lr, first_order=first_order)
    model.zero_grad()
    for t in range(len(tasks)):
        learner = wrapper.clone()
        for _ in range(steps):
            learner.adapt(mse_loss(learner(tasks.x_support[t]), tasks.y_support[t]))
        (mse_loss(learner(tasks.x_query[t]), tasks.y_query[t]) / len(tasks)).backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 2])
def test_front_end_equals_functional_maml(first_order, steps):
    model, tasks = MLP(1, (16, 16), 1).double(), _tasks()
    tasks = type(tasks)(*(getattr(tasks, n).double() for n in ("x_support", "y_support", "x_query", "y_query")))
    ours = _front_end_grads(model, tasks, 0.1, first_order, steps)
    cfg = maml.Config(inner_lr=0.1, inner_steps=steps, first_order=first_order, backend="loop")
    reference = torch.autograd.grad(maml.meta_loss(model, params_of(model), tasks, cfg),
                                    list(model.parameters()))
    for a, b in zip(ours, reference):
        assert torch.allclose(a, b, atol=1e-12)


def test_unused_parameter_error_says_the_fix():
    model = nn.Sequential(nn.Linear(1, 4), nn.Linear(4, 1))
    learner = metacourse.MAML(model, lr=0.1).clone()
    loss = model[0](torch.ones(2, 1)).sum() * 0 + learner.module[0].weight.sum()
    with pytest.raises(RuntimeError, match="allow_unused=True"):
        learner.adapt(loss)
    learner = metacourse.MAML(model, lr=0.1, allow_unused=True).clone()
    learner.adapt(learner.adapted_params["0.weight"].sum())  # bias and layer 2 unused: left as they are
    assert torch.equal(learner.adapted_params["1.bias"], model[1].bias)


def test_bad_arguments():
    with pytest.raises(TypeError, match="nn.Module"):
        metacourse.MAML("model", lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        metacourse.MAML(MLP(), lr=-1.0)


@pytest.mark.l2l
@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradients_equal_learn2learn(first_order):
    from learn2learn.algorithms import MAML as L2LMAML

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1))
    tasks = _tasks(5)
    ours = _front_end_grads(model, tasks, 0.01, first_order, 2)
    theirs_wrapper = L2LMAML(model, lr=0.01, first_order=first_order)
    model.zero_grad()
    for t in range(len(tasks)):
        learner = theirs_wrapper.clone()
        for _ in range(2):
            learner.adapt(mse_loss(learner(tasks.x_support[t]), tasks.y_support[t]))
        (mse_loss(learner(tasks.x_query[t]), tasks.y_query[t]) / len(tasks)).backward()
    theirs = [p.grad.clone() for p in model.parameters()]
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-7)
