"""Evaluation on held-out tasks: adaptation curves and mean ± 95% confidence intervals.

Every number the course reports is a ``Summary`` over n test tasks: the mean, the half-width of
its 95% confidence interval (1.96 · std / √n, as MAML's official code computes it), the median
(robust to the rare task on which fine-tuning diverges) and n. ``adaptation_curve`` (query loss or
accuracy after each number of fine-tuning steps) lives in ``algorithms.finetune`` and is
re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from .algorithms.finetune import adaptation_curve
from .tasks.base import TaskBatch

__all__ = ["Summary", "summarize", "adaptation_curve", "embedding_accuracy"]


@dataclass(frozen=True)
class Summary:
    """Mean, 95% confidence half-width, median and count of a metric over test tasks."""

    mean: float
    ci95: float
    median: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.ci95:.3f} (median {self.median:.3f}, n={self.n})"

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(values: Iterable[float]) -> Summary:
    """Summarise per-task values; non-finite values (diverged fine-tuning) propagate to the mean."""
    array = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if array.size == 0:
        raise ValueError("cannot summarise an empty list of values; evaluate on at least one task")
    with np.errstate(invalid="ignore", over="ignore"):  # inf (a diverged task) gives mean inf, ci nan
        ci95 = 1.96 * array.std(ddof=1) / np.sqrt(array.size) if array.size > 1 else float("nan")
    return Summary(float(array.mean()), float(ci95), float(np.median(array)), int(array.size))


def embedding_accuracy(model: nn.Module, tasks: TaskBatch,
                       scores: Callable[[Tensor, Tensor, Tensor], Tensor],
                       transductive: bool = True) -> np.ndarray:
    """Per-task query accuracy of an embedding method (ProtoNets, matching networks), with or
    without transduction.

    Batch normalisation here uses the statistics of the batch it is given, so *what is in the
    batch* decides the protocol:

    - ``transductive=True``: the support set is embedded in one pass and all the task's queries in
      another (``protonet.predict``'s convention): each query's embedding depends on the other
      queries through their batch statistics.
    - ``transductive=False``: each query goes through the network in one batch with the support
      set and nothing else (Reptile's non-transductive evaluation): its prediction depends on the
      support set and itself only, as when a single new image arrives.

    ``scores(support, y_support, query)`` turns embeddings into class scores, e.g. for ProtoNets
    ``lambda s, y, q: protonet.class_logits(q, protonet.prototypes(s, y))``; shapes
    ``(b, n, d)``, ``(b, n)``, ``(b, m, d)`` → ``(b, m, N)``. Tasks are evaluated one at a time.
    """
    if not isinstance(tasks, TaskBatch):
        raise TypeError(f"tasks is a {type(tasks).__name__}; pass a TaskBatch (one task: stack_tasks([task]))")
    params = dict(model.named_parameters())

    def embed(images: Tensor) -> Tensor:  # (b, n, ...) → (b, n, d), each row normalised on its own
        return vmap(lambda x: functional_call(model, params, (x,)), randomness="same")(images)

    values = []
    with torch.no_grad():
        for task in tasks.split(1):
            x_support, y_support, x_query, y_query = (task.x_support, task.y_support, task.x_query,
                                                      task.y_query)
            if transductive:
                logits = scores(embed(x_support), y_support, embed(x_query))[0]
            else:
                m = x_query.shape[1]
                batches = torch.cat([x_support.expand(m, *x_support.shape[1:]),
                                     x_query.transpose(0, 1)], dim=1)         # (m, n + 1, ...)
                features = embed(batches)
                logits = scores(features[:, :-1], y_support.expand(m, -1), features[:, -1:])[:, 0]
            values.append((logits.argmax(-1) == y_query[0]).float().mean().item())
    return np.asarray(values)
