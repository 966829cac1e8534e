"""The two non-meta-learning baselines of MAML's MiniImagenet table: fine-tuning and nearest neighbour.

Ravi & Larochelle (ICLR 2017) and Finn et al. (2017), Table 1: a network is trained as an ordinary
classifier over all meta-training classes, then used on a new N-way K-shot task by

    (1) pretraining      θ* = argmin_θ  E_{(x, c)} −log softmax(W f_θ(x))_c      c: one of C classes
    (2) fine-tuning      head W_T = 0 (N outputs);  (θ, W_T) ← (θ, W_T) − α ∇ L(·; D^tr_T)   k steps
    (3) nearest neighbour  ŷ(x) = y_i*,  i* = argmax_i cos(f_θ*(x), f_θ*(x_i))   over D^tr_T
    (4) step-size choice α* = argmax_{α ∈ grid} mean accuracy on validation tasks (training classes)

| symbol | identifier |
|---|---|
| θ, W | the body (``Conv4.blocks``) and head (``Conv4.head``) of ``model`` |
| C | ``model.head.out_features`` (4 × 1,200 = 4,800 rotated training characters on Omniglot) |
| α, k | ``lr``, ``steps`` (``finetune_accuracy``) |
| D^tr_T | ``task.x_support, task.y_support`` |

Fine-tuning reuses the course's fine-tuning loop (``finetune.adaptation_curve``, MAML's inner step
without second-order terms).

Lecture: lectures/02_few_shot_classification.ipynb.
Differs from MAML and ProtoNets by never training on tasks: nothing asks θ to adapt fast.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from ..functional import cross_entropy_loss
from ..tasks.base import TaskBatch, stack_tasks
from .finetune import adaptation_curve
from .protonet import embed

__all__ = ["pretrain_step", "body", "with_new_head", "finetune_accuracy",
           "nearest_neighbour_accuracy", "choose_finetune_lr"]


def pretrain_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                  batch: tuple[Tensor, Tensor]) -> dict[str, float]:
    """Eq. (1): one optimizer step of ordinary classification on a batch ``(images, classes)``."""
    x, classes = batch
    optimizer.zero_grad(set_to_none=True)
    logits = model(x)
    loss = cross_entropy_loss(logits, classes)
    loss.backward()
    optimizer.step()
    return {"loss": loss.item(), "accuracy": (logits.argmax(-1) == classes).float().mean().item()}


def body(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without its classification head: it returns the features f_θ(x)."""
    features = copy.deepcopy(model)
    features.head = None
    return features


def with_new_head(model: nn.Module, n_way: int) -> nn.Module:
    """A copy of the body with a zero-initialised N-way head (eq. 2)."""
    network = body(model)
    width = next(m for m in reversed(list(network.modules())) if hasattr(m, "weight")).weight
    network.head = nn.Linear(width.shape[0], n_way).to(width.device)
    nn.init.zeros_(network.head.weight)
    nn.init.zeros_(network.head.bias)
    return network


def finetune_accuracy(model: nn.Module, tasks: TaskBatch, lr: float, steps: int,
                      chunk_size: int = 50) -> np.ndarray:
    """Eq. (2): per-task query accuracy after ``steps`` steps of fine-tuning body and new head."""
    tasks = stack_tasks(tasks)
    n_way = int(tasks.y_support.max().item()) + 1
    network = with_new_head(model, n_way)
    return adaptation_curve(network, tasks, (steps,), lr, loss="cross_entropy",
                            metric="accuracy", chunk_size=chunk_size)[steps]


def nearest_neighbour_accuracy(model: nn.Module, tasks: TaskBatch) -> np.ndarray:
    """Eq. (3): per-task query accuracy of 1-nearest-neighbour (cosine) in the feature space."""
    tasks = stack_tasks(tasks)
    network = body(model)
    params = dict(network.named_parameters())
    with torch.no_grad():
        support = nn.functional.normalize(embed(network, params, tasks.x_support, True), dim=-1)
        query = nn.functional.normalize(embed(network, params, tasks.x_query, True), dim=-1)
        nearest = (query @ support.transpose(-1, -2)).argmax(dim=-1)
        predicted = tasks.y_support.gather(-1, nearest)
    return (predicted == tasks.y_query).float().mean(-1).cpu().numpy()


def choose_finetune_lr(model: nn.Module, tasks: TaskBatch, grid: tuple[float, ...],
                       steps: int) -> float:
    """Eq. (4): the step size of ``grid`` with the best mean accuracy on ``tasks``."""
    scores = [finetune_accuracy(model, tasks, lr, steps).mean() for lr in grid]
    return float(grid[int(np.argmax(scores))])
