"""Black-box meta-learning: adaptation is a forward pass of a network that reads the support set.

Hypernetworks (Ha et al. 2016), memory-augmented networks (Santoro et al., ICML 2016,
arXiv:1605.06065), conditional neural processes (Garnelo et al., ICML 2018, arXiv:1807.01613),
SNAIL (Mishra et al., ICLR 2018, arXiv:1707.03141): the learner A_θ is itself a network.

    (1) adapt        φ_T = A_θ(D^tr_T)                  a vector, generated weights, a memory state…
    (2) predict      ŷ = f_θ(x; φ_T)                     every query point from φ_T alone
    (3) task loss    L_T(θ) = L(f_θ(·; φ_T); D^ts_T)                          objective "query"
    (3') online      L_T(θ) = (1/n) Σ_t L(f_θ(x_t; φ_{<t}), y_t)              objective "online"
                     t runs over D^tr ⊕ D^ts; φ_{<t} = A_θ((x_1, y_1) … (x_{t−1}, y_{t−1}))
    (4) meta-loss    L(θ) = (1/|B|) Σ_{T ∈ B} L_T(θ)                           mean over tasks
    (5) outer step   θ ← θ − β ∇_θ L(θ)        (Adam; optionally ‖∇_θ L‖ clipped)

| symbol | identifier |
|---|---|
| θ | ``params`` (all weights of the learner: encoder, memory controller, decoder…) |
| φ_T | ``adapted``, a ``dict[str, Tensor]`` with a leading task dimension |
| A_θ, f_θ | ``model(..., stage="adapt")``, ``model(..., stage="predict")`` (``metacourse.models.blackbox``) |
| β | the outer optimizer's learning rate (``outer_lr`` in ``train.TrainConfig``) |
| D^tr_T, D^ts_T | ``task.x_support, task.y_support`` / ``task.x_query, task.y_query`` |
| B | ``tasks`` (a ``TaskBatch``; a single ``Task`` is a batch of one) |

Lecture: lectures/03_blackbox.ipynb.
Differs from MAML by replacing the inner gradient descent (1) with a learned function: adaptation
costs one forward pass and no second derivatives, but nothing makes it improve with more data or
on tasks outside p(T) the way a gradient step keeps descending the task's own loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..functional import LOSSES, Params, accuracy, outer_step, params_of
from ..tasks.base import Task, TaskBatch, stack_tasks

__all__ = ["Config", "adapt", "predict", "online_predictions", "task_loss", "meta_loss", "meta_step",
           "task_scores"]

OBJECTIVES = ("query", "online")


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of black-box meta-training."""

    loss: str = "mse"
    """Task loss L: ``"mse"`` (regression) or ``"cross_entropy"`` (classification)."""
    objective: str = "query"
    """``"query"``: loss on D^ts after reading D^tr (eq. 3, as MAML). ``"online"``: loss on every
    point of D^tr ⊕ D^ts, each predicted before its label is seen (eq. 3', Santoro et al.)."""
    max_grad_norm: float | None = None
    """Clip the meta-gradient to this norm (recurrent learners); ``None`` does not clip."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is unknown; choose one of {sorted(LOSSES)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r} is unknown; choose one of {OBJECTIVES}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm} must be > 0, or None for no clipping")


def _batch(task: Task | TaskBatch) -> TaskBatch:
    """A ``TaskBatch`` as it is; a single ``Task`` as a batch of one."""
    if isinstance(task, Task):
        return TaskBatch(task.x_support[None], task.y_support[None], task.x_query[None], task.y_query[None])
    return stack_tasks(task)


def _call(model: nn.Module, params: Mapping[str, Tensor], stage: str, *inputs):
    return functional_call(model, dict(params), inputs, {"stage": stage}, strict=False)


def adapt(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config) -> Params:
    """Eq. (1): read the support set once; returns φ, one entry per task along the first dimension."""
    batch = _batch(task)
    return _call(model, params, "adapt", batch.x_support, batch.y_support)


def predict(model: nn.Module, params: Params, adapted: Params, x_query: Tensor) -> Tensor:
    """Eq. (2): predictions ``(tasks, points, out)`` for ``x_query`` ``(tasks, points, ...)``."""
    return _call(model, params, "predict", adapted, x_query)


def online_predictions(model: nn.Module, params: Params, task: Task | TaskBatch) -> tuple[Tensor, Tensor]:
    """Eq. (3'): predictions at every position of D^tr ⊕ D^ts, each made before its label is seen;
    returns (predictions, targets)."""
    batch = _batch(task)
    x = torch.cat([batch.x_support, batch.x_query], dim=1)
    y = torch.cat([batch.y_support, batch.y_query], dim=1)
    return _call(model, params, "online", x, y)[0], y


def task_loss(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config) -> Tensor:
    """Eq. (3) or (3'): one loss per task (a scalar for a single ``Task``)."""
    batch = _batch(task)
    if cfg.objective == "online":
        prediction, target = online_predictions(model, params, batch)
    else:
        prediction = predict(model, params, adapt(model, params, batch, cfg), batch.x_query)
        target = batch.y_query
    losses = LOSSES[cfg.loss](prediction, target)
    return losses[0] if isinstance(task, Task) else losses


def meta_loss(model: nn.Module, params: Params, tasks: TaskBatch, cfg: Config) -> Tensor:
    """Eq. (4): the mean over tasks of the task loss, differentiable in θ."""
    return task_loss(model, params, stack_tasks(tasks), cfg).mean()


def meta_step(model: nn.Module, optimizer: torch.optim.Optimizer, tasks: TaskBatch, cfg: Config) -> dict[str, float]:
    """Eq. (5): one outer update of all the learner's weights."""
    return outer_step(model, optimizer, meta_loss(model, params_of(model), tasks, cfg), cfg.max_grad_norm)


def task_scores(model: nn.Module, tasks: TaskBatch, cfg: Config, metric: str = "loss",
                chunk_size: int = 200) -> np.ndarray:
    """Per-task query loss (or accuracy) after adaptation, without gradients, ``chunk_size`` tasks at a time."""
    if metric not in ("loss", "accuracy"):
        raise ValueError(f"metric={metric!r} is unknown; use 'loss' or 'accuracy'")
    params, scores = params_of(model), []
    with torch.no_grad():
        for chunk in stack_tasks(tasks).split(chunk_size):
            prediction = predict(model, params, adapt(model, params, chunk, cfg), chunk.x_query)
            score = accuracy if metric == "accuracy" else LOSSES[cfg.loss]
            scores.append(score(prediction, chunk.y_query).cpu().numpy())
    return np.concatenate(scores)
