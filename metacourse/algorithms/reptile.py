"""Reptile: train on a task for a few steps, then move the initialisation towards the result.

Nichol, Achiam, Schulman, "On First-Order Meta-Learning Algorithms", 2018 (arXiv:1803.02999);
setup of openai/supervised-reptile (inner Adam with β1 = 0, meta step size annealed 1 → 0).

    (1) inner loop      φ_0 = θ,  φ_{j+1} = φ_j − α · u(∇_φ L(f_φ_j; b_j))     j < inner_steps
                        b_j: mini-batches of ``inner_batch`` support images, reshuffled each pass;
                        u: Adam with β1 = 0 (u(g) = g / (√v̂ + ε)) or plain SGD (u(g) = g)
    (2) Reptile update  θ ← θ + ε (1/|B|) Σ_{T ∈ B} (φ_T − θ)                  mean over tasks
    (3) as a gradient   g_Reptile = θ − mean_T φ_T;  (2) is one SGD step of size ε on it
    (4) annealing       ε_t = ε_0 (1 − t / t_max)   (``LambdaLR`` in the experiment)

| symbol | identifier |
|---|---|
| θ | ``params`` |
| φ_T | ``adapted`` |
| α | ``cfg.inner_lr`` |
| ε | the outer optimizer's learning rate (``SGD(lr=1.0)`` with a linear schedule) |
| b_j | mini-batches of ``task.x_support, task.y_support`` |
| B | ``tasks`` (a ``TaskBatch``) |

Reptile never looks at a query set while training: a task is just data to fit. At test time the
same inner loop adapts θ to the support set and the adapted network labels the queries. The Adam
statistics start afresh on every task (supervised-reptile carries them over between tasks). The
tasks of a batch are adapted at once, one copy of θ each (``expand_over_tasks``, as MAML's vmap
backend), with the same mini-batch positions in every task.

Lecture: lectures/04_maml.ipynb.
Differs from first-order MAML by using the whole displacement φ − θ after several steps instead
of the query gradient at φ: no query set, no second derivatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..functional import LOSSES, Params, accuracy, expand_over_tasks, forward, frozen_params, params_of
from ..tasks.base import Task, TaskBatch, stack_tasks
from ..utils import check_nonnegative, check_positive_int

__all__ = ["Config", "adapt", "reptile_gradient", "meta_step", "evaluate"]


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of Reptile's inner loop (the meta step size lives in the optimizer)."""

    inner_lr: float = 1e-3
    """α, the inner step size. supervised-reptile Omniglot: 0.001 (5-way), 0.0005 (20-way)."""
    inner_steps: int = 5
    """Inner steps per task: 5 in training (5-way), 50 at test."""
    inner_batch: int = 10
    """Support images per inner step (capped at the support size): 10 (5-way), 20 (20-way)."""
    inner_optimizer: str = "adam"
    """``"adam"`` (β1 = 0, as supervised-reptile) or ``"sgd"``."""
    beta2: float = 0.999
    """Adam's β2."""
    eps: float = 1e-8
    """Adam's ε."""
    loss: str = "cross_entropy"
    """Task loss L: ``"cross_entropy"`` or ``"mse"``."""

    def __post_init__(self) -> None:
        check_nonnegative("inner_lr", self.inner_lr)
        check_positive_int("inner_steps", self.inner_steps)
        check_positive_int("inner_batch", self.inner_batch)
        if self.inner_optimizer not in ("adam", "sgd"):
            raise ValueError(f"inner_optimizer={self.inner_optimizer!r}: use 'adam' or 'sgd'")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is unknown; choose one of {sorted(LOSSES)}")


def _batches(n: int, size: int, steps: int, generator: torch.Generator | None) -> list[Tensor]:
    """Index mini-batches for ``steps`` steps: pass over a fresh permutation, reshuffle when done."""
    size, out, order = min(size, n), [], torch.empty(0, dtype=torch.long)
    while len(out) < steps:
        if len(order) < size:
            order = torch.randperm(n, generator=generator)
        out.append(order[:size])
        order = order[size:]
    return out


def _update(params: Params, grads: list[Tensor], second: dict[str, Tensor], t: int,
            cfg: Config) -> Params:
    """One step of eq. (1); updates Adam's second moments in place."""
    out = {}
    for (name, p), g in zip(params.items(), grads):
        if cfg.inner_optimizer == "sgd":
            out[name] = p - cfg.inner_lr * g
            continue
        second[name].mul_(cfg.beta2).addcmul_(g, g, value=1 - cfg.beta2)
        scale = (second[name] / (1 - cfg.beta2 ** t)).sqrt_().add_(cfg.eps)
        out[name] = p - cfg.inner_lr * g / scale
    return out


def adapt(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config,
          generator: torch.Generator | None = None) -> Params:
    """Eq. (1): ``inner_steps`` first-order steps on mini-batches of the support set; returns φ
    (detached). A ``TaskBatch`` takes ``params`` expanded over tasks and adapts every task at once,
    with the same mini-batch positions in every task."""
    batched = isinstance(task, TaskBatch)
    x, y = task.x_support, task.y_support
    adapted = {n: p.detach().clone().requires_grad_() for n, p in params.items()}
    second = {n: torch.zeros_like(p) for n, p in adapted.items()}
    n_support = x.shape[1 if batched else 0]
    for t, index in enumerate(_batches(n_support, cfg.inner_batch, cfg.inner_steps, generator), 1):
        xb, yb = (x[:, index], y[:, index]) if batched else (x[index], y[index])
        with torch.enable_grad():
            loss = LOSSES[cfg.loss](forward(model, adapted, xb, batched), yb).sum()
            grads = list(torch.autograd.grad(loss, list(adapted.values())))
        with torch.no_grad():
            adapted = _update(adapted, grads, second, t, cfg)
        adapted = {n: p.requires_grad_() for n, p in adapted.items()}
    return {n: p.detach() for n, p in adapted.items()}


def reptile_gradient(params: Params, adapted: Params) -> Params:
    """Eq. (3): θ − mean_T φ_T, the direction whose SGD step of size ε is Reptile's update (2).

    ``adapted`` holds one φ_T per task along a leading task dimension (``adapt`` on a batch)."""
    return {n: p.detach() - adapted[n].mean(0) for n, p in params.items()}


def meta_step(model: nn.Module, optimizer: torch.optim.Optimizer, tasks: TaskBatch,
              cfg: Config) -> dict[str, float]:
    """Eq. (2) as an optimizer step: adapt a copy of θ to every task of the batch (all at once),
    set θ.grad to eq. (3), and step."""
    tasks = stack_tasks(tasks)
    params = params_of(model)
    theta = {n: p.detach() for n, p in params.items()}
    adapted = adapt(model, expand_over_tasks(theta, len(tasks)), tasks, cfg)
    direction = reptile_gradient(params, adapted)
    optimizer.zero_grad(set_to_none=True)
    for name, p in params.items():
        p.grad = direction[name].clone()
    optimizer.step()
    norm = torch.sqrt(sum((d * d).sum() for d in direction.values()))
    return {"reptile_step_norm": norm.item()}


def evaluate(model: nn.Module, tasks: TaskBatch, cfg: Config, seed: int = 0) -> np.ndarray:
    """Per-task query accuracy after adapting θ to each support set with eq. (1); the mini-batch
    order comes from ``seed``, so the same model and tasks always give the same numbers."""
    tasks = stack_tasks(tasks)
    theta = frozen_params(model)
    generator = torch.Generator().manual_seed(seed)
    adapted = adapt(model, expand_over_tasks(theta, len(tasks)), tasks, cfg, generator)
    with torch.no_grad():
        logits = forward(model, adapted, tasks.x_query, batched=True)
    return accuracy(logits, tasks.y_query).cpu().numpy()
