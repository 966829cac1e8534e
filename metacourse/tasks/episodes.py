"""N-way K-shot episodes: the few-shot classification task distribution over a labelled image set.

One episode (task) draws N classes without replacement, then K support and ``n_query`` query
images of each class, disjoint within the class. The drawn classes are relabelled 0..N-1 in the
order they were drawn, so a label means nothing across tasks — only within one. Support and query
are ordered class by class (label 0 first); every method in the course is invariant to the order.

Any object with ``n_classes``, ``n_per_class`` and ``get(classes, examples) -> Tensor`` is a
labelled image set (``OmniglotImages``, or ``ArrayImages`` over a plain array). All randomness
comes from the ``numpy.random.Generator`` passed in: the same seed gives the same episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..utils import check_positive_int
from .base import TaskBatch

__all__ = ["LabelledImages", "ArrayImages", "EpisodeSampler", "sample_episodes", "sample_batch"]


class LabelledImages(Protocol):
    """What the sampler needs from an image set."""

    @property
    def n_classes(self) -> int: ...

    @property
    def n_per_class(self) -> int: ...

    def get(self, classes: np.ndarray, examples: np.ndarray) -> torch.Tensor: ...


@dataclass
class ArrayImages:
    """A labelled image set from an array of shape ``(n_classes, n_per_class, ...)``."""

    images: np.ndarray | torch.Tensor

    @property
    def n_classes(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_per_class(self) -> int:
        return int(self.images.shape[1])

    def get(self, classes: np.ndarray, examples: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.images[np.asarray(classes), np.asarray(examples)])


def _check_rng(rng: object) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}; "
                        "pass rng=np.random.default_rng(seed)")


def _check_shape(dataset: LabelledImages, n_way: int, k_shot: int, n_query: int) -> None:
    check_positive_int("n_way", n_way)
    check_positive_int("k_shot", k_shot, "a task needs at least one support image per class")
    check_positive_int("n_query", n_query, "a task needs at least one query image per class")
    if n_way > dataset.n_classes:
        raise ValueError(f"n_way={n_way} but the split has only {dataset.n_classes} classes; "
                         "lower n_way or use a larger split (e.g. 'train' or 'background')")
    if k_shot + n_query > dataset.n_per_class:
        raise ValueError(f"k_shot + n_query = {k_shot} + {n_query} = {k_shot + n_query} but each "
                         f"class has only {dataset.n_per_class} images (Omniglot: 20 drawings); "
                         "lower k_shot or n_query")


def _draw_indices(n_tasks: int, n_classes: int, n_per_class: int, n_way: int, per_class: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Classes (tasks, n_way) without replacement and examples (tasks, n_way, per_class)."""
    classes = np.stack([rng.choice(n_classes, size=n_way, replace=False) for _ in range(n_tasks)])
    examples = rng.random((n_tasks, n_way, n_per_class)).argsort(axis=-1)[..., :per_class]
    return classes, examples


def sample_episodes(dataset: LabelledImages, n_tasks: int, n_way: int, k_shot: int, n_query: int,
                    rng: np.random.Generator, device: torch.device | str = "cpu") -> TaskBatch:
    """Draw ``n_tasks`` N-way K-shot episodes as a ``TaskBatch``.

    ``x_support``: ``(n_tasks, n_way * k_shot, *image_shape)``, ``y_support``: ``(n_tasks,
    n_way * k_shot)`` int64 labels in 0..n_way-1; likewise the query set with ``n_query``.
    ``info["classes"]`` holds the dataset's class of each label, ``(n_tasks, n_way)``.
    """
    check_positive_int("n_tasks", n_tasks)
    _check_shape(dataset, n_way, k_shot, n_query)
    _check_rng(rng)
    classes, examples = _draw_indices(n_tasks, dataset.n_classes, dataset.n_per_class, n_way,
                                      k_shot + n_query, rng)
    images = dataset.get(classes[:, :, None], examples)      # (T, N, K + Q, *shape)
    shape = tuple(images.shape[3:])
    labels = torch.arange(n_way).view(1, n_way, 1)
    x_support = images[:, :, :k_shot].reshape(n_tasks, n_way * k_shot, *shape)
    x_query = images[:, :, k_shot:].reshape(n_tasks, n_way * n_query, *shape)
    y_support = labels.expand(n_tasks, n_way, k_shot).reshape(n_tasks, -1)
    y_query = labels.expand(n_tasks, n_way, n_query).reshape(n_tasks, -1)
    batch = TaskBatch(x_support, y_support, x_query, y_query, info={"classes": classes})
    return batch.to(device) if str(device) != "cpu" else batch


@dataclass(frozen=True)
class EpisodeSampler:
    """``sampler(n_tasks, rng)`` → a batch of N-way K-shot episodes (the shape ``train.meta_train``
    expects). Checks the shape once, at construction."""

    dataset: LabelledImages
    n_way: int = 5
    k_shot: int = 1
    n_query: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        _check_shape(self.dataset, self.n_way, self.k_shot, self.n_query)

    def __call__(self, n_tasks: int, rng: np.random.Generator) -> TaskBatch:
        return sample_episodes(self.dataset, n_tasks, self.n_way, self.k_shot, self.n_query, rng,
                               self.device)

    sample = __call__


def sample_batch(dataset: LabelledImages, batch_size: int, rng: np.random.Generator,
                 device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Ordinary supervised mini-batch: ``batch_size`` random images and their dataset classes
    (for the pretraining of the fine-tuning and nearest-neighbour baselines)."""
    check_positive_int("batch_size", batch_size)
    _check_rng(rng)
    classes = rng.integers(dataset.n_classes, size=batch_size)
    examples = rng.integers(dataset.n_per_class, size=batch_size)
    x = dataset.get(classes, examples).to(device)
    return x, torch.as_tensor(classes, dtype=torch.int64, device=device)
