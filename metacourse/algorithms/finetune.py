"""Fine-tuning from θ: gradient descent on each task's support set, and the query metric after each step.

MAML's inner loop (``maml.adapt``, eq. 1 there) without the second-order graph, all tasks of a
chunk at once:

    (1) φ_0 = θ,   φ_{k+1} = φ_k − α ∇_φ L(f_φk; D^tr_T)
    (2) m_k(T) = L(f_φk; D^ts_T)   or the accuracy of f_φk on D^ts_T,   for each k in ``steps``

| symbol | identifier |
|---|---|
| θ, φ_k | the model's parameters, ``adapted`` |
| α | ``inner_lr`` (one per tensor: ``inner_lrs``, Meta-SGD) |
| k | ``steps`` |

MAML, Meta-SGD and the pretrained baselines are evaluated with it (``evaluate.adaptation_curve``
is this function); the fine-tuning baseline of few-shot classification
(``classifier_baselines.finetune_accuracy``) is one point of it.

Lecture: lectures/04_maml.ipynb.
Differs from ``maml.adapt`` by recording the query metric after every step and keeping no graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ..functional import LOSSES, accuracy, expand_over_tasks, forward, frozen_params
from ..tasks.base import TaskBatch, stack_tasks
from . import maml

__all__ = ["adaptation_curve"]


def _query_metric(model: nn.Module, params, tasks: TaskBatch, loss: str, metric: str) -> Tensor:
    prediction = forward(model, params, tasks.x_query, batched=True)
    if metric == "accuracy":
        return accuracy(prediction, tasks.y_query)
    return LOSSES[loss](prediction, tasks.y_query)


def adaptation_curve(model: nn.Module, tasks: TaskBatch, steps: Iterable[int], inner_lr: float,
                     loss: str = "mse", metric: str = "loss",
                     inner_lrs: Mapping[str, Tensor] | None = None,
                     chunk_size: int = 1000) -> dict[int, np.ndarray]:
    """Query loss (or accuracy) of each task after each number of fine-tuning steps in ``steps``.

    Fine-tuning is plain gradient descent on the support set (MAML's inner loop without the
    second-order graph), all tasks of a chunk at once. Returns ``{steps: per-task values}``.
    """
    if metric not in ("loss", "accuracy"):
        raise ValueError(f"metric={metric!r} is unknown; use 'loss' or 'accuracy'")
    wanted = sorted(set(int(s) for s in steps))
    if not wanted or wanted[0] < 0:
        raise ValueError(f"steps={list(steps)!r} must be non-negative step counts, e.g. (0, 1, 5, 10)")
    cfg = maml.Config(inner_lr=inner_lr, inner_steps=1, first_order=True, loss=loss, backend="vmap")
    theta = frozen_params(model)
    results: dict[int, list[np.ndarray]] = {s: [] for s in wanted}
    for chunk in stack_tasks(tasks).split(chunk_size):
        adapted = {n: p.requires_grad_() for n, p in expand_over_tasks(theta, len(chunk)).items()}
        for step in range(wanted[-1] + 1):
            if step in results:
                with torch.no_grad():
                    values = _query_metric(model, adapted, chunk, loss, metric)
                results[step].append(values.cpu().numpy())
            if step < wanted[-1]:
                with torch.enable_grad():
                    adapted = maml.adapt(model, adapted, chunk, cfg, inner_lrs)
                adapted = {n: p.detach().requires_grad_() for n, p in adapted.items()}
    return {s: np.concatenate(v) for s, v in results.items()}
