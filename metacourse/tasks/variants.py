"""Variants of the sinusoid task family for the open-problems experiments (Lecture 9).

``SinusoidPool``: a *finite* set of N sinusoids, drawn once from a ``SinusoidTasks`` family.
Sampling from the pool picks tasks among those N only (with replacement) and draws fresh inputs x
for each of them, so the meta-learner sees unlimited data points but only N distinct functions:
the number of meta-training tasks is the one thing that changes.

A shifted amplitude range needs no new class: ``SinusoidTasks(amplitude=(2.5, 5.0))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..utils import check_positive_int
from .base import TaskBatch
from .sinusoid import SinusoidTasks, check_sample_request

__all__ = ["SinusoidPool"]


class SinusoidPool:
    """N sinusoids drawn once from ``family`` with ``np.random.default_rng(seed)`` (an integer or a
    sequence of integers); ``sample`` reuses only these N tasks (the interface of
    ``SinusoidTasks.sample``).

    Pools with the same seed are nested: the first 5 tasks of a pool of 20 are the pool of 5.
    """

    def __init__(self, pool_size: int, family: SinusoidTasks | None = None, seed: int | Sequence[int] = 0):
        self.pool_size = check_positive_int(
            "pool_size", pool_size, "a pool needs at least one task; for unlimited tasks sample "
            "from SinusoidTasks() directly")
        self.family = SinusoidTasks() if family is None else family
        if not isinstance(self.family, SinusoidTasks):
            raise TypeError(f"family must be a SinusoidTasks, got {type(family).__name__}; "
                            "e.g. SinusoidPool(20, SinusoidTasks(amplitude=(0.1, 2.5)))")
        uniform = np.random.default_rng(seed).random((self.pool_size, 2))  # one row per task
        (a_low, a_high), (p_low, p_high) = self.family.amplitude, self.family.phase
        self.amplitudes = a_low + (a_high - a_low) * uniform[:, 0]
        self.phases = p_low + (p_high - p_low) * uniform[:, 1]

    def __len__(self) -> int:
        return self.pool_size

    def __repr__(self) -> str:
        return f"SinusoidPool(pool_size={self.pool_size}, family={self.family})"

    def sample(self, n_tasks: int, k_shot: int, n_query: int, rng: np.random.Generator,
               device: torch.device | str = "cpu") -> TaskBatch:
        """``n_tasks`` tasks picked from the pool (with replacement), each with fresh inputs:
        ``k_shot`` support and ``n_query`` query points. ``info["pool_index"]`` says which."""
        check_sample_request(n_tasks, k_shot, n_query, rng)
        index = rng.integers(self.pool_size, size=n_tasks)
        amplitude, phase = self.amplitudes[index, None, None], self.phases[index, None, None]
        x = rng.uniform(*self.family.x_range, size=(n_tasks, k_shot + n_query, 1))
        y = SinusoidTasks.curve(amplitude, phase, x)
        x_t = torch.as_tensor(x, dtype=torch.float32, device=device)
        y_t = torch.as_tensor(y, dtype=torch.float32, device=device)
        info = {"amplitude": amplitude.reshape(-1), "phase": phase.reshape(-1), "pool_index": index}
        return TaskBatch(x_t[:, :k_shot], y_t[:, :k_shot], x_t[:, k_shot:], y_t[:, k_shot:], info=info)
