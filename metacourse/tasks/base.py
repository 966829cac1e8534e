"""What a task is: a support set D^tr and a query set D^ts, alone or stacked in a batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

__all__ = ["Task", "TaskBatch", "stack_tasks"]

_SETS = ("x_support", "y_support", "x_query", "y_query")


def _check_pair(kind: str, x: Tensor, y: Tensor, lead: int) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"x_{kind} and y_{kind} must be torch tensors, got {type(x).__name__} "
                        f"and {type(y).__name__}; convert with torch.as_tensor(...)")
    if x.dim() < lead + 1 or y.dim() < lead + 1:
        raise ValueError(f"x_{kind} {tuple(x.shape)} / y_{kind} {tuple(y.shape)} need at least "
                         f"{lead + 1} dimension(s): {'(tasks, points, ...)' if lead else '(points, ...)'}")
    if x.shape[: lead + 1] != y.shape[: lead + 1]:
        raise ValueError(f"x_{kind} has shape {tuple(x.shape)} but y_{kind} has shape {tuple(y.shape)}: "
                         f"they must agree on the first {lead + 1} dimension(s) (one label per input)")


@dataclass
class Task:
    """One task T: inputs and targets of its support set (adapt on these) and query set (score here)."""

    x_support: Tensor
    y_support: Tensor
    x_query: Tensor
    y_query: Tensor
    info: dict = field(default_factory=dict)
    """Anything that describes the task (e.g. a sinusoid's amplitude and phase), for plots."""

    def __post_init__(self) -> None:
        _check_pair("support", self.x_support, self.y_support, lead=0)
        _check_pair("query", self.x_query, self.y_query, lead=0)

    def to(self, device: torch.device | str) -> Task:
        return Task(*(getattr(self, n).to(device) for n in _SETS), info=self.info)


@dataclass
class TaskBatch:
    """T tasks of equal shapes stacked along a leading task dimension.

    ``x_support`` has shape ``(T, n_support, ...)``, ``y_support`` ``(T, n_support, ...)``, and
    likewise for the query set. ``batch[i]`` is the i-th ``Task``.
    """

    x_support: Tensor
    y_support: Tensor
    x_query: Tensor
    y_query: Tensor
    info: dict = field(default_factory=dict)
    """Per-task descriptions, each value an array with one entry per task."""

    def __post_init__(self) -> None:
        _check_pair("support", self.x_support, self.y_support, lead=1)
        _check_pair("query", self.x_query, self.y_query, lead=1)
        if self.x_support.shape[0] != self.x_query.shape[0]:
            raise ValueError(f"support sets hold {self.x_support.shape[0]} tasks but query sets "
                             f"{self.x_query.shape[0]}; stack the same tasks in both")

    def __len__(self) -> int:
        return self.x_support.shape[0]

    def __getitem__(self, index: int) -> Task:
        info = {k: v[index] for k, v in self.info.items()}
        return Task(*(getattr(self, n)[index] for n in _SETS), info=info)

    def split(self, chunk_size: int) -> list[TaskBatch]:
        """Consecutive sub-batches of at most ``chunk_size`` tasks (to bound memory)."""
        out = []
        for start in range(0, len(self), chunk_size):
            part = slice(start, start + chunk_size)
            info = {k: v[part] for k, v in self.info.items()}
            out.append(TaskBatch(*(getattr(self, n)[part] for n in _SETS), info=info))
        return out

    def to(self, device: torch.device | str) -> TaskBatch:
        return TaskBatch(*(getattr(self, n).to(device) for n in _SETS), info=self.info)


def stack_tasks(tasks: Sequence[Task]) -> TaskBatch:
    """Stack a list of ``Task`` objects of equal shapes into a ``TaskBatch``."""
    if isinstance(tasks, TaskBatch):
        return tasks
    if isinstance(tasks, Task):
        tasks = [tasks]
    if not isinstance(tasks, Sequence) or not tasks or not all(isinstance(t, Task) for t in tasks):
        raise TypeError("expected a TaskBatch or a non-empty list of Task objects, got "
                        f"{type(tasks).__name__}; build tasks with a sampler such as "
                        "metacourse.tasks.SinusoidTasks().sample(...)")
    try:
        stacked = [torch.stack([getattr(t, n) for t in tasks]) for n in _SETS]
    except RuntimeError as error:
        raise ValueError(f"tasks of different shapes cannot be batched ({error}); give every task "
                         "the same number of support and query points") from None
    keys = set.intersection(*(set(t.info) for t in tasks))
    info = {k: [t.info[k] for t in tasks] for k in sorted(keys)}
    return TaskBatch(*stacked, info=info)


assert [f.name for f in fields(Task)][:4] == list(_SETS)
