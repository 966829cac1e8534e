"""MAML: learn an initialisation θ from which one or a few gradient steps solve a new task.

Finn, Abbeel, Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017 (arXiv:1703.03400); Meta-SGD: Li et al. 2017 (arXiv:1707.09835).

    (1) inner step      φ_0 = θ,   φ_{j+1} = φ_j − α ∇_φ L(f_φ_j; D^tr_T)        j < inner_steps
    (2) task loss       L_T(θ) = L(f_φ; D^ts_T)                                   φ = φ_inner_steps
    (3) meta-loss       L(θ) = (1/|B|) Σ_{T ∈ B} L_T(θ)                           mean over tasks
    (4) outer step      θ ← θ − β ∇_θ L(θ)         (Adam in practice)
    (5) meta-gradient   ∇_θ L_T = (Π_j (I − α ∇²L(φ_j))) ∇_φ L(f_φ; D^ts)        second order
    (6) first order     ∇_θ L_T ≈ ∇_φ L(f_φ; D^ts)         (drop the Hessians: FOMAML)
    (7) Meta-SGD        φ = θ − α ⊙ ∇_θ L(f_θ; D^tr),  α a learned tensor per parameter

| symbol | identifier |
|---|---|
| θ | ``params`` |
| φ | ``adapted`` |
| α | ``cfg.inner_lr`` (or ``inner_lrs``, Meta-SGD) |
| β | the outer optimizer's learning rate (``outer_lr`` in ``train.TrainConfig``) |
| D^tr_T, D^ts_T | ``task.x_support, task.y_support`` / ``task.x_query, task.y_query`` |
| B | ``tasks`` (a ``TaskBatch``) |

Backends compute (3) the same way: ``loop`` adapts one task at a time; ``vmap`` adapts them all
in one batched computation. For networks whose layers broadcast over a leading task dimension
(``MLP``) it gives every task its own view of θ (``expand_over_tasks``) — task t's loss depends
only on copy t, so one ``autograd.grad`` returns every task's gradient. For the others (``Conv4``)
it maps one task's whole inner loop over the tasks with ``torch.func.vmap``, its gradients taken
with ``torch.func.grad`` (``adapt_functional``): θ then enters every task unbatched, so
the first support pass is one large convolution over all tasks' images instead of T small ones.

Lecture: lectures/04_maml.ipynb.
Differs from plain fine-tuning by differentiating through the fine-tuning step itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from ..functional import LOSSES, Params, broadcasts_over_tasks, expand_over_tasks, forward, params_of, sgd_step
from ..tasks.base import Task, TaskBatch, stack_tasks
from ..utils import check_nonnegative, check_positive_int

__all__ = ["Config", "support_loss", "query_loss", "adapt", "adapt_functional", "task_loss", "meta_loss",
           "meta_step", "init_inner_lrs"]

BACKENDS = ("auto", "loop", "vmap")

LossFn = Callable[[nn.Module, Params, object], Tensor]
"""A loss ``loss_fn(model, params, task)``: a scalar, or one value per task."""


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of MAML, first-order MAML and Meta-SGD."""

    inner_lr: float = 0.01
    """α, the inner (adaptation) step size; Meta-SGD's initial value. Paper: 0.01 (sinusoid)."""
    inner_steps: int = 1
    """Number of inner gradient steps. Paper: 1 during meta-training on sinusoids."""
    first_order: bool = False
    """Drop the second-order terms of the meta-gradient (FOMAML, eq. 6)."""
    loss: str = "mse"
    """Task loss L: ``"mse"`` (regression) or ``"cross_entropy"`` (classification)."""
    backend: str = "auto"
    """``"loop"`` over tasks, ``"vmap"`` (all tasks batched), or ``"auto"`` (vmap unless the
    model holds ``nn.BatchNorm`` layers, whose batched second derivatives are not exact)."""
    task_chunk: int | None = None
    """``meta_step`` takes the meta-gradient this many tasks at a time, with a backward pass after
    each chunk: memory then holds one chunk's graph instead of the whole meta-batch's, and the
    gradient is the same (chunked vmap). None: all tasks at once."""

    def __post_init__(self) -> None:
        check_nonnegative("inner_lr", self.inner_lr, "the inner step size α must be >= 0")
        check_positive_int("inner_steps", self.inner_steps,
                           "MAML needs at least one inner step (use inner_steps=1)")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is unknown; choose one of {sorted(LOSSES)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r} is unknown; choose one of {BACKENDS}")
        if self.task_chunk is not None:
            check_positive_int("task_chunk", self.task_chunk,
                               "give the number of tasks per chunk, or None for the whole meta-batch")


def init_inner_lrs(params: Params, cfg: Config) -> nn.ParameterDict:
    """Meta-SGD's learned step sizes α: one tensor per parameter tensor, filled with ``cfg.inner_lr``."""
    return nn.ParameterDict({
        name.replace(".", "/"): nn.Parameter(torch.full_like(p.detach(), cfg.inner_lr))
        for name, p in params.items()
    })


def _step_sizes(cfg: Config, inner_lrs: Mapping[str, Tensor] | None) -> float | dict[str, Tensor]:
    if inner_lrs is None:
        return cfg.inner_lr
    return {name.replace("/", "."): lr for name, lr in inner_lrs.items()}


def support_loss(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config) -> Tensor:
    """L(f_params; D^tr): the loss on the support set, one value per task when ``task`` is a batch."""
    return LOSSES[cfg.loss](forward(model, params, task.x_support, batched=isinstance(task, TaskBatch)),
                            task.y_support)


def query_loss(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config) -> Tensor:
    """L(f_params; D^ts): the loss on the query set, one value per task when ``task`` is a batch."""
    return LOSSES[cfg.loss](forward(model, params, task.x_query, batched=isinstance(task, TaskBatch)),
                            task.y_query)


def adapt(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config,
          inner_lrs: Mapping[str, Tensor] | None = None, loss_fn: LossFn | None = None) -> Params:
    """Eq. (1): ``inner_steps`` steps of gradient descent on the support set; returns φ.

    ``task`` is one ``Task`` with ordinary ``params``, or a ``TaskBatch`` with ``params`` expanded
    over tasks (``expand_over_tasks``); summing the per-task losses then gives each task's copy
    of θ exactly its own gradient. ``create_graph`` keeps the step differentiable (second order).
    ``loss_fn(model, params, task)`` replaces the support loss, e.g. MAML-RL's policy-gradient
    loss on sampled trajectories (``metacourse.rl.maml_rl``).
    """
    loss_fn = loss_fn or partial(support_loss, cfg=cfg)
    adapted = params
    for _ in range(cfg.inner_steps):
        loss = loss_fn(model, adapted, task).sum()
        grads = torch.autograd.grad(loss, list(adapted.values()), create_graph=not cfg.first_order)
        adapted = sgd_step(adapted, grads, _step_sizes(cfg, inner_lrs))
    return adapted


def adapt_functional(model: nn.Module, params: Params, task: Task, cfg: Config,
                     inner_lrs: Mapping[str, Tensor] | None = None) -> Params:
    """Eq. (1) as ``adapt``, with ``torch.func.grad`` in place of ``torch.autograd.grad``: the same
    numbers, but usable inside ``torch.func.vmap`` (the ``vmap`` backend for networks that do not
    broadcast over tasks). The outer ``backward`` still sees through the steps, so the
    meta-gradient keeps its second-order terms unless ``cfg.first_order``."""
    def loss(adapted: Params) -> Tensor:
        return support_loss(model, adapted, task, cfg).sum()

    adapted = params
    for _ in range(cfg.inner_steps):
        by_name = grad(loss)(adapted)
        grads = [by_name[name].detach() if cfg.first_order else by_name[name] for name in adapted]
        adapted = sgd_step(adapted, grads, _step_sizes(cfg, inner_lrs))
    return adapted


def task_loss(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config,
              inner_lrs: Mapping[str, Tensor] | None = None, adapt_fn: Callable[..., Params] = adapt) -> Tensor:
    """Eq. (2): the query loss after adaptation, L(f_φ; D^ts) (one value per task if batched);
    ``adapt_fn`` is ``adapt`` or, inside ``vmap``, ``adapt_functional``."""
    return query_loss(model, adapt_fn(model, params, task, cfg, inner_lrs), task, cfg)


def choose_backend(model: nn.Module, cfg: Config) -> str:
    """The backend ``"auto"`` resolves to for this model."""
    if cfg.backend != "auto":
        return cfg.backend
    has_batchnorm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    return "loop" if has_batchnorm else "vmap"


def meta_loss(model: nn.Module, params: Params, tasks: TaskBatch, cfg: Config,
              inner_lrs: Mapping[str, Tensor] | None = None) -> Tensor:
    """Eq. (3): the mean over tasks of the post-adaptation query loss, differentiable in θ (and α)."""
    tasks = stack_tasks(tasks)
    if choose_backend(model, cfg) == "loop":
        losses = [task_loss(model, params, tasks[i], cfg, inner_lrs) for i in range(len(tasks))]
        return torch.stack(losses).mean()
    if broadcasts_over_tasks(model):  # batched matmuls on expanded views of θ
        return task_loss(model, expand_over_tasks(params, len(tasks)), tasks, cfg, inner_lrs).mean()

    def one_task(x_support: Tensor, y_support: Tensor, x_query: Tensor, y_query: Tensor) -> Tensor:
        return task_loss(model, params, Task(x_support, y_support, x_query, y_query), cfg, inner_lrs,
                         adapt_fn=adapt_functional)

    return vmap(one_task, randomness="different")(tasks.x_support, tasks.y_support, tasks.x_query,
                                                  tasks.y_query).mean()


def meta_step(model: nn.Module, optimizer: torch.optim.Optimizer, tasks: TaskBatch, cfg: Config,
              inner_lrs: Mapping[str, Tensor] | None = None) -> dict[str, float]:
    """Eq. (4): one outer update of θ (and of Meta-SGD's α when ``inner_lrs`` is given).

    With ``cfg.task_chunk`` the meta-gradient is accumulated chunk by chunk: chunk c adds
    ∇ (|c| / |B|) meta_loss(c), so the sum over chunks is ∇ of eq. (3) over the whole batch.
    """
    optimizer.zero_grad(set_to_none=True)
    tasks = stack_tasks(tasks)
    chunks = tasks.split(cfg.task_chunk) if cfg.task_chunk else [tasks]
    total = 0.0
    for chunk in chunks:
        loss = meta_loss(model, params_of(model), chunk, cfg, inner_lrs) * (len(chunk) / len(tasks))
        loss.backward()
        total += loss.item()
    optimizer.step()
    return {"meta_loss": total}
