import pytest
import torch
from torch import nn

from metacourse.functional import (
    accuracy,
    cross_entropy_loss,
    expand_over_tasks,
    forward,
    frozen_params,
    mse_loss,
    params_of,
    sgd_step,
)
from metacourse.models import MLP


def test_sgd_step_matches_formula_and_is_out_of_place():
    params = {"w": torch.tensor([1.0, 2.0], requires_grad=True)}
    grads = [torch.tensor([0.5, -1.0])]
    new = sgd_step(params, grads, 0.1)
    assert torch.allclose(new["w"], torch.tensor([0.95, 2.1]))
    assert torch.equal(params["w"].detach(), torch.tensor([1.0, 2.0]))
    per_tensor = sgd_step(params, grads, {"w": torch.tensor([1.0, 0.0])})
    assert torch.allclose(per_tensor["w"], torch.tensor([0.5, 2.0]))


def test_sgd_step_rejects_wrong_number_of_gradients():
    with pytest.raises(ValueError, match="one per parameter"):
        sgd_step({"a": torch.zeros(1), "b": torch.zeros(1)}, [torch.zeros(1)], 0.1)


@pytest.mark.parametrize("model", [MLP(3, (8, 8), 2), nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))])
def test_batched_forward_equals_one_task_at_a_time(model):
    n_tasks = 4
    params = {n: p + 0.1 * torch.randn(n_tasks, *p.shape) for n, p in params_of(model).items()}
    x = torch.randn(n_tasks, 5, 3)
    batched = forward(model, params, x, batched=True)
    for t in range(n_tasks):
        single = forward(model, {n: p[t] for n, p in params.items()}, x[t])
        assert torch.allclose(batched[t], single, atol=1e-6)


def test_expand_over_tasks_is_a_view():
    params = {"w": torch.randn(3, 2)}
    expanded = expand_over_tasks(params, 5)
    assert expanded["w"].shape == (5, 3, 2)
    assert expanded["w"].data_ptr() == params["w"].data_ptr()


def test_losses_keep_task_dimensions():
    prediction, target = torch.randn(4, 6, 1), torch.randn(4, 6, 1)
    per_task = mse_loss(prediction, target)
    assert per_task.shape == (4,)
    assert torch.allclose(per_task[2], ((prediction[2] - target[2]) ** 2).mean())
    logits, labels = torch.randn(4, 6, 5), torch.randint(0, 5, (4, 6))
    expected = torch.nn.functional.cross_entropy(logits[1], labels[1])
    assert torch.allclose(cross_entropy_loss(logits, labels)[1], expected)
    assert accuracy(logits, labels).shape == (4,)


def test_frozen_params_are_the_weights_without_the_graph():
    model = torch.nn.Linear(3, 2)
    frozen = frozen_params(model)
    assert list(frozen) == ["weight", "bias"]
    assert all(not t.requires_grad and torch.equal(t, p) for t, p in zip(frozen.values(), model.parameters()))
