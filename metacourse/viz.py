"""Plots for lectures and experiments (matplotlib is imported here, never by the algorithms)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from .algorithms import maml
from .evaluate import summarize
from .functional import forward, params_of
from .tasks import SinusoidTasks, TaskBatch

__all__ = [
    "plot_adaptation_curves", "plot_sinusoid_fit", "fine_tuned_predictions", "sinusoid_summary", "close",
]


def close(figure: Figure) -> None:
    plt.close(figure)


def plot_adaptation_curves(curves: Mapping[str, Mapping[int, np.ndarray]], ax=None,
                           ylabel: str = "query MSE") -> plt.Axes:
    """Mean ± 95% CI of the query metric against the number of fine-tuning steps, per method."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    for method, curve in curves.items():
        steps = sorted(curve)
        summaries = [summarize(curve[s]) for s in steps]
        means = np.array([s.mean for s in summaries])
        ci = np.array([s.ci95 for s in summaries])
        ax.errorbar(steps, means, yerr=ci, marker="o", capsize=3, label=method)
    ax.set_xlabel("fine-tuning steps")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.legend()
    return ax


def fine_tuned_predictions(model: torch.nn.Module, task: TaskBatch, x: np.ndarray, inner_lr: float,
                           steps: int) -> np.ndarray:
    """Predictions on ``x`` of ``model`` fine-tuned for ``steps`` steps on the first task's support set."""
    cfg = maml.Config(inner_lr=inner_lr, inner_steps=max(steps, 1), first_order=True)
    params = {n: p.detach().requires_grad_() for n, p in params_of(model).items()}
    if steps > 0:
        with torch.enable_grad():
            params = maml.adapt(model, params, task[0], cfg)
    grid = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1)
    with torch.no_grad():
        return forward(model, params, grid).reshape(-1).numpy()


def plot_sinusoid_fit(models: Mapping[str, torch.nn.Module], task: TaskBatch, inner_lr: float,
                      steps: int = 10, ax=None) -> plt.Axes:
    """The true sinusoid, its K support points, and each model after ``steps`` fine-tuning steps."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    x = np.linspace(-5, 5, 200)
    info = task[0].info
    ax.plot(x, SinusoidTasks.curve(float(info["amplitude"]), float(info["phase"]), x),
            color="black", lw=2, label="true function")
    ax.scatter(task.x_support[0, :, 0], task.y_support[0, :, 0], color="black", zorder=5,
               label=f"K={task.x_support.shape[1]} support points")
    for method, model in models.items():
        ax.plot(x, fine_tuned_predictions(model, task, x, inner_lr, steps), "--",
                label=f"{method}, {steps} step{'' if steps == 1 else 's'}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=7)
    return ax


def sinusoid_summary(curves, models, task: TaskBatch, inner_lr: float) -> Figure:
    """Two panels: adaptation curves of every method, and one example fit."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    plot_adaptation_curves(curves, ax=left)
    left.set_title("5-shot MSE on 600 test tasks")
    plot_sinusoid_fit(models, task, inner_lr, steps=10, ax=right)
    right.set_title("one test task after 10 steps")
    figure.tight_layout()
    return figure

