"""Prototypical Networks: classify a query by its distance to the mean embedding of each class.

Snell, Swersky, Zemel, "Prototypical Networks for Few-shot Learning", NIPS 2017 (arXiv:1703.05175).

    (1) prototype       c_k = (1/|S_k|) Σ_{(x, y) ∈ S_k} f_θ(x)          S_k: support images of class k
    (2) class scores    p_θ(y = k | x) = softmax_k(−d(f_θ(x), c_k))       d: squared Euclidean
    (3) task loss       L_T(θ) = −(1/|Q|) Σ_{(x, y) ∈ Q} log p_θ(y | x)   Q: the query set D^ts_T
    (4) meta-loss       L(θ) = (1/|B|) Σ_{T ∈ B} L_T(θ)                   mean over tasks
    (5) outer step      θ ← θ − β ∇_θ L(θ)         (Adam, β = 1e-3 halved every 2,000 episodes)

With d the squared Euclidean distance, (2) is a linear classifier on f_θ(x) with weights 2 c_k and
biases −‖c_k‖² (paper eq. 8): "adapting" to a task is computing the prototypes, without gradients.

| symbol | identifier |
|---|---|
| θ | ``params`` (the embedding network f_θ, e.g. ``Conv4(None, pooling="max")``) |
| c_k | ``prototypes(...)[k]``, what ``adapt`` returns |
| d | ``cfg.distance`` |
| S, Q | ``task.x_support, task.y_support`` / ``task.x_query, task.y_query`` |
| B | ``tasks`` (a ``TaskBatch``; the paper trains on one episode per step) |

Support and query sets are embedded in separate forward passes, each batch-normalised with its
own statistics (``models.conv4.BatchNorm``), so the prototypes depend on the support set only.

Lecture: lectures/02_few_shot_classification.ipynb.
Differs from MAML by adapting with a closed-form average in embedding space instead of gradient
steps on the weights; differs from matching networks by averaging each class before comparing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..compiled import call_embedding
from ..functional import Params, accuracy, cross_entropy_loss, outer_step, params_of
from ..tasks.base import Task, TaskBatch, stack_tasks

__all__ = ["Config", "embed", "prototypes", "class_logits", "adapt", "task_loss", "meta_loss",
           "meta_step", "predict"]

DISTANCES = ("euclidean", "cosine")


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of Prototypical Networks."""

    distance: str = "euclidean"
    """d in eq. (2): ``"euclidean"`` (squared, the paper's choice) or ``"cosine"``."""
    compile: bool = False
    """Run f_θ through ``torch.compile`` (``metacourse.compiled``): the same numbers up to rounding,
    faster once each input shape has compiled (``benchmarks/protonet_compile.py``)."""

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise ValueError(f"distance={self.distance!r} is unknown; choose one of {DISTANCES}")


def embed(model: nn.Module, params: Params, x: Tensor, batched: bool = False,
          compiled: bool = False) -> Tensor:
    """f_θ(x): ``(n, ...)`` → ``(n, d)``; with ``batched``, ``(T, n, ...)`` → ``(T, n, d)``, one
    shared θ and each task normalised with its own batch statistics. ``compiled``: through
    ``torch.compile`` (``metacourse.compiled.call_embedding``)."""
    if compiled:
        return call_embedding(model, params, x, batched)
    if not batched:
        return functional_call(model, params, (x,))
    return vmap(lambda images: functional_call(model, params, (images,)), randomness="same")(x)


def n_classes(labels: Tensor) -> int:
    """N of an N-way task whose labels are 0..N-1."""
    return int(labels.max().item()) + 1


def prototypes(embeddings: Tensor, labels: Tensor, n_way: int | None = None) -> Tensor:
    """Eq. (1): the mean embedding of each class, ``(..., n, d)`` → ``(..., n_way, d)``."""
    n_way = n_way or n_classes(labels)
    one_hot = F.one_hot(labels, n_way).to(embeddings.dtype)            # (..., n, N)
    counts = one_hot.sum(dim=-2).clamp_min(1.0).unsqueeze(-1)          # (..., N, 1)
    return one_hot.transpose(-1, -2) @ embeddings / counts


def class_logits(query: Tensor, centres: Tensor, distance: str = "euclidean") -> Tensor:
    """Eq. (2) before the softmax: −d(f(x), c_k), ``(..., m, d)`` and ``(..., N, d)`` → ``(..., m, N)``."""
    if distance == "cosine":
        return F.normalize(query, dim=-1) @ F.normalize(centres, dim=-1).transpose(-1, -2)
    return -(query.unsqueeze(-2) - centres.unsqueeze(-3)).pow(2).sum(dim=-1)


def adapt(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config) -> Tensor:
    """The prototypes of the task's support set: ``(N, d)``, or ``(T, N, d)`` for a batch."""
    batched = isinstance(task, TaskBatch)
    support = embed(model, params, task.x_support, batched, cfg.compile)
    return prototypes(support, task.y_support)


def predict(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config) -> Tensor:
    """Logits of the query set, ``(m, N)`` or ``(T, m, N)``."""
    centres = adapt(model, params, task, cfg)
    query = embed(model, params, task.x_query, isinstance(task, TaskBatch), cfg.compile)
    return class_logits(query, centres, cfg.distance)


def task_loss(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config) -> Tensor:
    """Eq. (3): cross-entropy of the query set (one value per task when batched)."""
    return cross_entropy_loss(predict(model, params, task, cfg), task.y_query)


def meta_loss(model: nn.Module, params: Params, tasks: TaskBatch, cfg: Config) -> Tensor:
    """Eq. (4): the mean over tasks of the query cross-entropy."""
    return task_loss(model, params, stack_tasks(tasks), cfg).mean()


def meta_step(model: nn.Module, optimizer: torch.optim.Optimizer, tasks: TaskBatch,
              cfg: Config) -> dict[str, float]:
    """Eq. (5): one optimizer step on the meta-loss; also reports the query accuracy."""
    tasks = stack_tasks(tasks)
    logits = predict(model, params_of(model), tasks, cfg)
    loss = cross_entropy_loss(logits, tasks.y_query).mean()
    return outer_step(model, optimizer, loss) | {"accuracy": accuracy(logits, tasks.y_query).mean().item()}
