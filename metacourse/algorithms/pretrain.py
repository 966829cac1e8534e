"""The "pretrain on all tasks, then fine-tune" baseline of MAML's Table 2.

Finn et al. (2017), §5.1 and App. C: one network is trained to fit the data of all tasks at once
(ordinary supervised learning on the pooled points), then fine-tuned on a new task's K points with
gradient descent, its step size chosen automatically on held-out tasks.

    (1) pretraining loss   L(θ) = (1/|B|) Σ_{T ∈ B} L(f_θ; D^tr_T ∪ D^ts_T)     no adaptation inside
    (2) fine-tuning        φ = θ − α ∇_θ L(f_θ; D^tr_T)   repeated k times   (MAML's eq. 1)
    (3) step-size choice   α* = argmin_{α ∈ grid} mean_T L(f_φ(α); D^ts_T)   on validation tasks

| symbol | identifier |
|---|---|
| θ | ``params`` |
| α, grid | ``inner_lr``, ``cfg.inner_lr_grid`` |
| k | ``inner_steps`` |

Lecture: lectures/04_maml.ipynb.
Differs from MAML by training θ without the inner step, so nothing asks θ to be easy to fine-tune.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..functional import LOSSES, Params, expand_over_tasks, forward, params_of
from ..tasks.base import TaskBatch, stack_tasks
from . import maml

__all__ = ["Config", "pretrain_loss", "pretrain_step", "choose_inner_lr"]


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of the pretraining baseline."""

    loss: str = "mse"
    """Loss on the pooled points: ``"mse"`` or ``"cross_entropy"``."""
    inner_lr_grid: tuple[float, ...] = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1)
    """Candidate fine-tuning step sizes α for the automatic choice (eq. 3); 0 means no fine-tuning."""

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is unknown; choose one of {sorted(LOSSES)}")
        if not self.inner_lr_grid or min(self.inner_lr_grid) < 0:
            raise ValueError("inner_lr_grid must be a non-empty tuple of step sizes >= 0")


def pretrain_loss(model: nn.Module, params: Params, tasks: TaskBatch, cfg: Config) -> Tensor:
    """Eq. (1): the loss of f_θ on all points of all tasks, support and query alike, no adaptation."""
    tasks = stack_tasks(tasks)
    x = torch.cat([tasks.x_support, tasks.x_query], dim=1)
    y = torch.cat([tasks.y_support, tasks.y_query], dim=1)
    batched_params = expand_over_tasks(params, len(tasks))
    return LOSSES[cfg.loss](forward(model, batched_params, x, batched=True), y).mean()


def pretrain_step(model: nn.Module, optimizer: torch.optim.Optimizer, tasks: TaskBatch,
                  cfg: Config) -> dict[str, float]:
    """One optimizer step on eq. (1)."""
    optimizer.zero_grad(set_to_none=True)
    loss = pretrain_loss(model, params_of(model), tasks, cfg)
    loss.backward()
    optimizer.step()
    return {"pretrain_loss": loss.item()}


def choose_inner_lr(model: nn.Module, tasks: TaskBatch, cfg: Config, inner_steps: int) -> float:
    """Eq. (3): the grid step size with the lowest mean query loss after ``inner_steps`` steps."""
    params = {n: p.detach().requires_grad_() for n, p in params_of(model).items()}
    tasks = stack_tasks(tasks)
    scores = []
    for inner_lr in cfg.inner_lr_grid:
        fine_tune = maml.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=True,
                                loss=cfg.loss, backend="vmap")
        with torch.enable_grad():
            loss = maml.task_loss(model, expand_over_tasks(params, len(tasks)), tasks, fine_tune)
        value = loss.mean().item()
        scores.append(value if np.isfinite(value) else np.inf)
    return float(cfg.inner_lr_grid[int(np.argmin(scores))])

