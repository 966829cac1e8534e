"""Matching Networks: label a query by attention over the labelled support examples.

Vinyals, Blundell, Lillicrap, Kavukcuoglu, Wierstra, "Matching Networks for One Shot Learning",
NIPS 2016 (arXiv:1606.04080). This is the version without full context embeddings (FCE): one
embedding f_θ = g_θ for query and support, as in the paper's Omniglot rows.

    (1) attention       a(x, x_i) = softmax_i( cos(f_θ(x), f_θ(x_i)) / τ )      over the support set
    (2) prediction      p_θ(y = k | x) = Σ_i a(x, x_i) [y_i = k]
    (3) task loss       L_T(θ) = −(1/|Q|) Σ_{(x, y) ∈ Q} log p_θ(y | x)
    (4) meta-loss       L(θ) = (1/|B|) Σ_{T ∈ B} L_T(θ)                          mean over tasks
    (5) outer step      θ ← θ − β ∇_θ L(θ)            (Adam)

| symbol | identifier |
|---|---|
| θ | ``params`` (the embedding network, shared with ProtoNets: ``protonet.embed``) |
| τ | ``cfg.temperature`` (1 in the paper; smaller values sharpen the attention) |
| a(x, x_i) | ``attention(...)`` |
| S, Q | ``task.x_support, task.y_support`` / ``task.x_query, task.y_query`` |

Lecture: lectures/02_few_shot_classification.ipynb.
Differs from ProtoNets by comparing a query with every support example (a soft nearest
neighbour, cosine similarity) instead of with one mean per class (Euclidean distance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import Params, accuracy, outer_step, params_of
from ..tasks.base import Task, TaskBatch, stack_tasks
from .protonet import embed, n_classes

__all__ = ["Config", "attention", "adapt", "predict", "task_loss", "meta_loss", "meta_step"]


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of Matching Networks (no FCE)."""

    temperature: float = 0.1
    """τ of eq. (1); the paper's softmax over raw cosines is τ = 1, which caps the confidence."""
    compile: bool = False
    """Run the embedding through ``torch.compile`` (as ``protonet.Config.compile``)."""

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def attention(query: Tensor, support: Tensor, temperature: float) -> Tensor:
    """Eq. (1): ``(..., m, d)`` queries and ``(..., n, d)`` support → ``(..., m, n)`` weights."""
    cosine = F.normalize(query, dim=-1) @ F.normalize(support, dim=-1).transpose(-1, -2)
    return torch.softmax(cosine / temperature, dim=-1)


def adapt(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config) -> tuple[Tensor, Tensor]:
    """What a task contributes: the support embeddings and their one-hot labels."""
    support = embed(model, params, task.x_support, isinstance(task, TaskBatch), cfg.compile)
    one_hot = F.one_hot(task.y_support, n_classes(task.y_support)).to(support.dtype)
    return support, one_hot


def predict(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config) -> Tensor:
    """Eq. (2): class probabilities of the query set, ``(m, N)`` or ``(T, m, N)``."""
    support, one_hot = adapt(model, params, task, cfg)
    query = embed(model, params, task.x_query, isinstance(task, TaskBatch), cfg.compile)
    return attention(query, support, cfg.temperature) @ one_hot


def task_loss(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config) -> Tensor:
    """Eq. (3): negative log-likelihood of the query labels (one value per task when batched)."""
    probabilities = predict(model, params, task, cfg)
    picked = probabilities.gather(-1, task.y_query.unsqueeze(-1)).squeeze(-1)
    return -picked.clamp_min(1e-12).log().mean(dim=-1)


def meta_loss(model: nn.Module, params: Params, tasks: TaskBatch, cfg: Config) -> Tensor:
    """Eq. (4): the mean over tasks."""
    return task_loss(model, params, stack_tasks(tasks), cfg).mean()


def meta_step(model: nn.Module, optimizer: torch.optim.Optimizer, tasks: TaskBatch,
              cfg: Config) -> dict[str, float]:
    """Eq. (5): one optimizer step on the meta-loss; also reports the query accuracy."""
    tasks = stack_tasks(tasks)
    probabilities = predict(model, params_of(model), tasks, cfg)
    picked = probabilities.gather(-1, tasks.y_query.unsqueeze(-1)).squeeze(-1)
    loss = -picked.clamp_min(1e-12).log().mean()
    return outer_step(model, optimizer, loss) | {"accuracy": accuracy(probabilities, tasks.y_query).mean().item()}
