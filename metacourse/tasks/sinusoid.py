"""MAML's sinusoid regression tasks: y = A sin(x + φ), one (A, φ) per task.

Finn et al. (2017), §5.1: amplitude A ~ U[0.1, 5.0], phase φ ~ U[0, π], inputs x ~ U[-5, 5];
the loss is the mean squared error. K points form the support set, more points the query set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..utils import check_positive_int
from .base import TaskBatch

__all__ = ["SinusoidTasks"]


def _check_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if not low <= high:
        raise ValueError(f"{name}={value!r} must be (low, high) with low <= high")
    return low, high


def check_sample_request(n_tasks: int, k_shot: int, n_query: int, rng: np.random.Generator) -> None:
    """The arguments every sinusoid sampler takes, checked with errors that say the fix."""
    check_positive_int("n_tasks", n_tasks)
    check_positive_int("k_shot", k_shot, "a task needs at least one support point")
    check_positive_int("n_query", n_query, "a task needs at least one query point")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator, got {type(rng).__name__}; "
                        "pass rng=np.random.default_rng(seed)")


@dataclass(frozen=True)
class SinusoidTasks:
    """The task distribution p(T) of sinusoids; ``sample`` draws a batch of tasks."""

    amplitude: tuple[float, float] = (0.1, 5.0)
    """Range of the amplitude A."""
    phase: tuple[float, float] = (0.0, math.pi)
    """Range of the phase φ."""
    x_range: tuple[float, float] = (-5.0, 5.0)
    """Range of the inputs x."""

    def __post_init__(self) -> None:
        for name in ("amplitude", "phase", "x_range"):
            _check_range(name, getattr(self, name))

    def sample(self, n_tasks: int, k_shot: int, n_query: int, rng: np.random.Generator,
               device: torch.device | str = "cpu") -> TaskBatch:
        """Draw ``n_tasks`` sinusoids with ``k_shot`` support and ``n_query`` query points each."""
        check_sample_request(n_tasks, k_shot, n_query, rng)
        amplitude = rng.uniform(*self.amplitude, size=(n_tasks, 1, 1))
        phase = rng.uniform(*self.phase, size=(n_tasks, 1, 1))
        x = rng.uniform(*self.x_range, size=(n_tasks, k_shot + n_query, 1))
        y = amplitude * np.sin(x + phase)
        x_t = torch.as_tensor(x, dtype=torch.float32, device=device)
        y_t = torch.as_tensor(y, dtype=torch.float32, device=device)
        info = {"amplitude": amplitude.reshape(-1), "phase": phase.reshape(-1)}
        return TaskBatch(x_t[:, :k_shot], y_t[:, :k_shot], x_t[:, k_shot:], y_t[:, k_shot:], info=info)

    @staticmethod
    def curve(amplitude: float, phase: float, x: np.ndarray) -> np.ndarray:
        """The true function of a task, for plots: A sin(x + φ)."""
        return amplitude * np.sin(x + phase)
