"""What the checks of a student's meta-loss share, whatever the learner (Labs 3 and 10).

- :func:`returned_tensor` — the student's function returned a tensor of the expected shape.
- :func:`loss_value` — its value on fixed tasks equals the reference's; a mismatch is first handed
  to the lab's catalogue of named mistakes, which :func:`name_the_mistake` looks the value up in.
- :func:`loss_gradient` — its gradient with respect to every weight equals the reference's.
- :func:`meta_train_with` — a short meta-training run driven by the student's loss alone (Adam,
  one outer step per meta-batch), for the "it learns" checks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..functional import outer_step, params_of
from ..tasks import TaskBatch
from ..train import TrainConfig, meta_train
from . import assert_close

__all__ = ["returned_tensor", "name_the_mistake", "loss_value", "loss_gradient", "meta_train_with"]

LossFn = Callable[[nn.Module, TaskBatch], Tensor]


def returned_tensor(value, what: str, shape: tuple[int, ...] | None = None) -> Tensor:
    """``value`` itself when it is a tensor of shape ``shape`` (any shape when ``None``)."""
    if not isinstance(value, Tensor):
        raise AssertionError(f"{what} should be a torch tensor, got {type(value).__name__}"
                             + ("; did you forget to `return` it?" if value is None else ""))
    if shape is not None and tuple(value.shape) != shape:
        raise AssertionError(f"{what} has shape {tuple(value.shape)}, expected {shape}")
    return value


def name_the_mistake(value: float, mistakes: Sequence[tuple[Tensor, str]], returned: str, *, atol: float,
                     rtol: float) -> None:
    """Fail naming the first of ``mistakes`` ((what it gives, what it is) pairs) whose value ``value`` equals,
    ``returned`` being the student's function; pass when it equals none."""
    for expected, message in mistakes:
        if abs(value - expected.item()) <= atol + rtol * abs(expected.item()):
            raise AssertionError(f"{returned} returned {value:.6g}, which is {message}")


def loss_value(loss_fn: LossFn, reference: LossFn, diagnose: Callable[[float, nn.Module, TaskBatch], None],
               model: nn.Module, tasks: TaskBatch, *, call: str, what: str, atol: float, rtol: float) -> None:
    """``loss_fn(model, tasks)`` (written ``call``) equals ``reference(model, tasks)``; when it does not,
    ``diagnose(value, model, tasks)`` may name the mistake before the comparison fails."""
    value = returned_tensor(loss_fn(model, tasks), call, ())
    want = reference(model, tasks)
    if abs(value.item() - want.item()) > atol + rtol * abs(want.item()):
        diagnose(value.item(), model, tasks)
    assert_close(value, want, atol=atol, rtol=rtol, what=what)


def loss_gradient(loss_fn: LossFn, reference: LossFn, model: nn.Module, tasks: TaskBatch, *, call: str,
                  name: str, every_weight: str, atol: float, rtol: float) -> None:
    """∇_θ ``loss_fn(model, tasks)`` equals ∇_θ ``reference(model, tasks)`` for every weight θ of ``model``;
    ``name`` is what the messages call the loss, ``every_weight`` how to make it depend on all the weights."""
    value = returned_tensor(loss_fn(model, tasks), call, ())
    if not value.requires_grad:
        raise AssertionError(f"{name} does not depend on the model's weights: compute it with the model, without "
                             "torch.no_grad() or .detach()")
    names, weights = list(params_of(model)), list(model.parameters())
    got = dict(zip(names, torch.autograd.grad(value, weights, allow_unused=True)))
    want = dict(zip(names, torch.autograd.grad(reference(model, tasks), weights)))
    missing = [weight for weight, g in got.items() if g is None]
    if missing:
        raise AssertionError(f"{name} does not depend on {missing}: {every_weight}")
    assert_close(got, want, atol=atol, rtol=rtol, what=f"the gradient of {name}")


def meta_train_with(loss_fn: LossFn, model: nn.Module, sampler: Callable, *, meta_steps: int,
                    meta_batch_size: int, seed: int, outer_lr: float = 3e-3) -> None:
    """Meta-train ``model`` in place for ``meta_steps`` outer steps of Adam (step size ``outer_lr``) on
    ``loss_fn(model, tasks)``, ``meta_batch_size`` tasks from ``sampler`` per step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=outer_lr)
    meta_train(lambda tasks: outer_step(model, optimizer, loss_fn(model, tasks)), sampler,
               TrainConfig(meta_steps=meta_steps, meta_batch_size=meta_batch_size, seed=seed, progress=False),
               state={})
