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


# --- learn2learn parity: after adapt, everything that reads the learner's weights sees φ ---------------------


class _TwoInputs(nn.Module):
    """forward(x, z, scale=...): several positional inputs and a keyword input."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))
        self.gate = nn.Linear(2, 1)

    def forward(self, x, z, scale=1.0):
        return scale * self.body(x) + self.gate(z)


def _inputs():
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(6, 3, generator=generator), torch.randn(6, 2, generator=generator),
            torch.randn(6, 1, generator=generator))


def _adapted_learner(wrapper_class, model, **clone_flags):
    """One inner step on a loss of ``learner(x, z, scale=2.0)``; returns the learner."""
    x, z, y = _inputs()
    learner = wrapper_class(model, lr=0.1).clone(**clone_flags)
    learner.adapt(((learner(x, z, scale=2.0) - y) ** 2).mean())
    return learner


def _manual_phi(model, lr=0.1):
    x, z, y = _inputs()
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(((model(x, z, scale=2.0) - y) ** 2).mean(), list(params.values()))
    return {name: p - lr * g for (name, p), g in zip(params.items(), grads)}


def test_after_adapt_module_submodules_parameters_and_state_dict_are_phi():
    model = _TwoInputs()
    phi = _manual_phi(model)
    learner = _adapted_learner(metacourse.MAML, model)
    x, z, _ = _inputs()
    for (name, p), (name_phi, p_phi) in zip(learner.module.named_parameters(), phi.items()):
        assert name == name_phi and torch.allclose(p, p_phi, atol=1e-7)
    assert [n for n, _ in learner.named_parameters()] == [f"module.{n}" for n in phi]
    assert all(torch.equal(a, b) for a, b in zip(learner.parameters(), learner.module.parameters()))
    expected = torch.func.functional_call(model, phi, (x, z), {"scale": 2.0})
    assert torch.allclose(learner(x, z, scale=2.0), expected, atol=1e-7)
    assert torch.allclose(learner.module(x, z, scale=2.0), expected, atol=1e-7)
    body = torch.func.functional_call(model.body, {k[5:]: v for k, v in phi.items() if k.startswith("body.")}, (x,))
    assert torch.allclose(learner.module.body(x), body, atol=1e-7)
    assert not torch.allclose(learner.module.body(x), model.body(x))  # θ is left as it was
    state = learner.module.state_dict()
    assert all(not t.requires_grad for t in state.values())
    fresh = _TwoInputs()
    fresh.load_state_dict(state)
    assert torch.allclose(fresh(x, z, scale=2.0), expected, atol=1e-7)
    assert set(learner.state_dict()) == {f"module.{n}" for n in phi}


def test_meta_gradient_still_reaches_theta_through_the_module():
    model = _TwoInputs()
    learner = _adapted_learner(metacourse.MAML, model)
    x, z, y = _inputs()
    ((learner.module.body(x) - y) ** 2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.body.parameters())
    assert all(p.is_leaf for p in model.parameters())  # the model's own parameters are untouched


def test_train_and_eval_switch_only_the_learner():
    model = nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5), nn.Linear(4, 1))
    maml_wrapper = metacourse.MAML(model, lr=0.1)
    first, second = maml_wrapper.clone(), maml_wrapper.clone()
    first.eval()
    assert model.training and all(m.training for m in model.modules())
    assert all(m.training for m in second.modules())
    assert not any(m.training for m in first.modules())
    assert all(m.training for m in maml_wrapper.clone().module.modules())  # later clones copy the model's mode
    model.eval()
    assert not any(m.training for m in maml_wrapper.clone().module.modules())
    assert all(m.training for m in second.modules())  # an existing clone keeps its own mode


@pytest.mark.parametrize("first_order", [False, True])
def test_clone_takes_first_order(first_order):
    model, tasks = MLP(1, (16,), 1).double(), _tasks(2)
    tasks = type(tasks)(*(getattr(tasks, n).double() for n in ("x_support", "y_support", "x_query", "y_query")))
    wrapper = metacourse.MAML(model, lr=0.1)
    model.zero_grad()
    for t in range(len(tasks)):
        learner = wrapper.clone(first_order=first_order)
        assert learner.first_order is first_order and not wrapper.first_order
        learner.adapt(mse_loss(learner(tasks.x_support[t]), tasks.y_support[t]))
        (mse_loss(learner(tasks.x_query[t]), tasks.y_query[t]) / len(tasks)).backward()
    cfg = maml.Config(inner_lr=0.1, inner_steps=1, first_order=first_order, backend="loop")
    reference = torch.autograd.grad(maml.meta_loss(model, params_of(model), tasks, cfg), list(model.parameters()))
    for p, g in zip(model.parameters(), reference):
        assert torch.allclose(p.grad, g, atol=1e-12)


def test_clone_flags_default_to_the_wrapper_and_can_be_overridden():
    wrapper = metacourse.MAML(MLP(), lr=0.1, first_order=True, allow_unused=True)
    learner = wrapper.clone()
    assert (learner.first_order, learner.allow_unused, learner.allow_nograd) == (True, True, False)
    learner = wrapper.clone(first_order=False, allow_unused=False, allow_nograd=True)
    assert (learner.first_order, learner.allow_unused, learner.allow_nograd) == (False, False, True)
    assert learner.lr == wrapper.lr


def test_allow_nograd_implies_allow_unused_and_leaves_frozen_layers():
    model = nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1), nn.Linear(1, 1))
    model[0].requires_grad_(False)  # frozen body (as in ANIL)
    wrapper = metacourse.MAML(model, lr=0.1, allow_nograd=True)
    assert wrapper.allow_unused
    learner = wrapper.clone()
    x = torch.randn(5, 2)
    learner.adapt(learner.module[1](learner.module[0](x)).pow(2).mean())  # layer 2 unused
    assert torch.equal(learner.module[0].weight, model[0].weight)
    assert torch.equal(learner.module[2].weight, model[2].weight)
    assert not torch.equal(learner.module[1].weight, model[1].weight)
    assert not metacourse.MAML(model, lr=0.1, allow_nograd=True, allow_unused=False).allow_unused


def test_frozen_or_unused_parameters_without_the_flags_say_the_fix():
    model = nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1))
    model[0].requires_grad_(False)
    learner = metacourse.MAML(model, lr=0.1).clone()
    with pytest.raises(RuntimeError, match="allow_nograd=True"):
        learner.adapt(learner(torch.randn(3, 2)).sum())
    learner = metacourse.MAML(model, lr=0.1).clone(allow_nograd=True, allow_unused=False)
    with pytest.raises(RuntimeError, match="allow_unused=True"):
        learner.adapt(learner.module[0](torch.randn(3, 2)).sum() * 0 + learner.module[1].bias.sum() * 0
                      + nn.Linear(1, 1)(torch.ones(1, 1)).sum())


def test_tied_weights_stay_tied_and_attributes_fall_through():
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Tanh(), nn.Linear(3, 3, bias=False))
    model[2].weight = model[0].weight
    learner = metacourse.MAML(model, lr=0.1).clone()
    assert learner.module[0].weight is learner.module[2].weight
    learner.adapt(learner(torch.randn(4, 3)).pow(2).sum())
    assert learner.module[0].weight is learner.module[2].weight
    assert len(list(learner.parameters())) == 1
    learner = metacourse.MAML(_TwoInputs(), lr=0.1).clone()
    assert learner.body is learner.module.body  # the wrapped model's attributes reach through, as in learn2learn
    with pytest.raises(AttributeError):
        _ = learner.no_such_attribute


def test_recurrent_layers_run_the_adapted_weights():
    model = nn.GRU(2, 3, batch_first=True)
    learner = metacourse.MAML(model, lr=0.5).clone()
    x = torch.randn(2, 4, 2)
    learner.adapt(learner(x)[0].pow(2).sum())
    phi = dict(learner.module.named_parameters())
    expected = torch.func.functional_call(model, phi, (x,))[0]
    assert torch.allclose(learner(x)[0], expected, atol=1e-6)
    assert not torch.allclose(learner(x)[0], model(x)[0])
    learner(x)[0].sum().backward()
    assert model.weight_ih_l0.grad is not None


def _l2l_maml():
    from learn2learn.algorithms import MAML as L2LMAML

    return L2LMAML


@pytest.mark.l2l
def test_module_parameters_state_dict_equal_learn2learn():
    model = _TwoInputs()
    ours, theirs = _adapted_learner(metacourse.MAML, model), _adapted_learner(_l2l_maml(), model)
    x, z, _ = _inputs()
    assert torch.allclose(ours.module(x, z, scale=2.0), theirs.module(x, z, scale=2.0), atol=1e-7)
    assert torch.allclose(ours.module.body(x), theirs.module.body(x), atol=1e-7)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, atol=1e-7)
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    assert all(torch.allclose(ours_state[k], theirs_state[k], atol=1e-7) for k in ours_state)


@pytest.mark.l2l
def test_train_and_eval_modes_equal_learn2learn():
    model = nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5), nn.Linear(4, 1))
    modes = []
    for wrapper_class in (metacourse.MAML, _l2l_maml()):
        model.train()
        wrapper = wrapper_class(model, lr=0.1)
        first, second = wrapper.clone(), wrapper.clone()
        first.eval()
        later = wrapper.clone()
        model.eval()
        modes.append([[m.training for m in module.modules()] for module in
                      (model, first.module, second.module, later.module, wrapper.clone().module)])
    assert modes[0] == modes[1]


@pytest.mark.l2l
@pytest.mark.parametrize("flags", [{"first_order": True}, {"first_order": False},
                                   {"allow_nograd": True}, {"allow_unused": True, "first_order": True}])
def test_clone_flags_and_meta_gradients_equal_learn2learn(flags):
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
    if flags.get("allow_nograd"):
        model[0].requires_grad_(False)
    x, y = torch.randn(10, 2), torch.randn(10, 1)
    grads = []
    for wrapper_class in (metacourse.MAML, _l2l_maml()):
        model.zero_grad()
        learner = wrapper_class(model, lr=0.3).clone(**flags)
        for _ in range(2):
            learner.adapt(((learner(x) - y) ** 2).mean())
        ((learner(x) - y) ** 2).mean().backward()
        grads.append([None if p.grad is None else p.grad.clone() for p in model.parameters()])
        assert (learner.first_order, learner.allow_unused, learner.allow_nograd) == (
            flags.get("first_order", False), flags.get("allow_unused", False),  # clone() passes the wrapper's
            flags.get("allow_nograd", False))                                    # allow_unused on as it is
    for a, b in zip(*grads):
        assert (a is None) == (b is None) and (a is None or torch.allclose(a, b, rtol=1e-5, atol=1e-7))


@pytest.mark.l2l
def test_several_inputs_and_allow_nograd_default_equal_learn2learn():
    model = _TwoInputs()
    outputs = []
    for wrapper_class in (metacourse.MAML, _l2l_maml()):
        wrapper = wrapper_class(model, lr=0.1, allow_nograd=True)
        assert wrapper.allow_unused
        outputs.append(_adapted_learner(wrapper_class, model)(*_inputs()[:2], scale=2.0))
    assert torch.allclose(outputs[0], outputs[1], atol=1e-7)
