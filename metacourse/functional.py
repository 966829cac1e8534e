"""Parameters as dictionaries: the functional core every algorithm is written in.

A network's weights are a ``dict[str, Tensor]`` (``params``), and ``forward(model, params, x)``
runs the ordinary ``nn.Module`` with those tensors substituted (``torch.func.functional_call``).
Adapting to a task then means building a new dictionary, never editing the module in place, so
gradients flow from the adapted weights back to the meta-parameters.

Task batching. A batch of T tasks can run as one computation: ``expand_over_tasks`` gives every
tensor of ``params`` a leading task dimension (a view, no copy), and ``forward(..., batched=True)``
maps the network over that dimension with ``torch.func.vmap``. Models whose layers already
broadcast over a leading dimension declare it (the ``BroadcastsOverTasks`` protocol: a class
attribute ``broadcasts_over_tasks = True``, e.g. ``metacourse.models.MLP``); they skip the vmap
wrapper and run the batched matmuls directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

Params = dict[str, Tensor]

__all__ = [
    "Params",
    "params_of",
    "frozen_params",
    "forward",
    "BroadcastsOverTasks",
    "broadcasts_over_tasks",
    "sgd_step",
    "outer_step",
    "expand_over_tasks",
    "mse_loss",
    "cross_entropy_loss",
    "accuracy",
    "LOSSES",
]


def params_of(model: nn.Module) -> Params:
    """The model's trainable parameters as a name → tensor dict (the tensors themselves, not copies)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def frozen_params(model: nn.Module) -> Params:
    """θ detached from the graph: the model's current weights for rollouts and evaluation,
    through which no gradient flows back to the model."""
    return {name: p.detach() for name, p in params_of(model).items()}


@runtime_checkable
class BroadcastsOverTasks(Protocol):
    """A model that runs a batch of tasks itself: called with weights that carry a leading task
    dimension and inputs (T, N, ...), its layers compute task t with weights t (batched matmuls),
    so ``forward(..., batched=True)`` needs no ``vmap``. A model declares it with the class
    attribute ``broadcasts_over_tasks = True``."""

    broadcasts_over_tasks: Literal[True]


def broadcasts_over_tasks(model: nn.Module) -> bool:
    """Whether ``model`` keeps the ``BroadcastsOverTasks`` protocol (declared, and declared True)."""
    return isinstance(model, BroadcastsOverTasks) and model.broadcasts_over_tasks is True


def _call(model: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    return functional_call(model, dict(params), (x,), strict=False)


def forward(model: nn.Module, params: Mapping[str, Tensor], x: Tensor, batched: bool = False) -> Tensor:
    """Run ``model`` on ``x`` with the weights in ``params``.

    With ``batched=True``, ``x`` and every tensor of ``params`` carry a leading task dimension and
    task t is computed with weights t.
    """
    if not batched or broadcasts_over_tasks(model):
        return _call(model, params, x)
    return vmap(_call, in_dims=(None, 0, 0), randomness="different")(model, dict(params), x)


def sgd_step(params: Params, grads: Sequence[Tensor], step_size: float | Mapping[str, Tensor]) -> Params:
    """One step of gradient descent on a parameter dict: θ_i − α_i g_i (α a float or one per tensor).

    A per-tensor ``step_size`` dict is Meta-SGD's learned step size; the update is out of place, so
    it stays differentiable with respect to both ``params`` and the step sizes.
    """
    names = list(params)
    if len(grads) != len(names):
        raise ValueError(f"got {len(grads)} gradients for {len(names)} parameters; pass one per parameter")
    if isinstance(step_size, Mapping):
        return {n: params[n] - step_size[n] * g for n, g in zip(names, grads)}
    return {n: params[n] - step_size * g for n, g in zip(names, grads)}


def outer_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss: Tensor,
               max_grad_norm: float | None = None) -> dict[str, float]:
    """The outer update θ ← θ − β ∇_θ L(θ) of a module's weights, given the meta-loss L computed from them.

    Clears the old gradients, backpropagates ``loss``, clips ‖∇_θ L‖ to ``max_grad_norm`` (``None`` does
    not clip) and takes one ``optimizer`` step; returns ``{"meta_loss": L}``.
    """
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    return {"meta_loss": loss.item()}


def expand_over_tasks(params: Params, n_tasks: int) -> Params:
    """Give each tensor a leading dimension of size ``n_tasks`` (views: one copy of θ per task)."""
    return {n: p.unsqueeze(0).expand(n_tasks, *p.shape) for n, p in params.items()}


def mse_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over the points of a task; leading task dimensions are kept.

    ``prediction`` and ``target`` have shape ``(..., n_points, out_features)``; the result has
    shape ``(...)`` (a scalar for a single task).
    """
    return ((prediction - target) ** 2).mean(dim=(-2, -1))


def cross_entropy_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy averaged over the points of a task; leading task dimensions are kept.

    ``logits``: ``(..., n_points, n_classes)``; ``labels``: ``(..., n_points)`` integer classes.
    """
    log_probs = torch.log_softmax(logits, dim=-1)
    return -log_probs.gather(-1, labels.unsqueeze(-1)).squeeze(-1).mean(dim=-1)


def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of points whose arg-max class is the label, per task."""
    return (logits.argmax(dim=-1) == labels).float().mean(dim=-1)


LOSSES = {"mse": mse_loss, "cross_entropy": cross_entropy_loss}
