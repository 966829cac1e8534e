"""The meta-training loop: sample tasks, take a step, evaluate now and then, checkpoint, resume.

``meta_train`` works for any algorithm whose step is a function ``step(tasks) -> metrics``, e.g.
``functools.partial(maml.meta_step, model, optimizer, cfg=cfg)``. It owns the random stream that
draws the training tasks, so a run stopped and resumed from its checkpoint samples the same tasks
and ends with the same numbers (on CPU) as a run that was never interrupted.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .tasks.base import TaskBatch
from .utils import DivergenceError, check_positive_int

__all__ = ["TrainConfig", "History", "meta_train", "save_checkpoint", "load_checkpoint",
           "save_atomically"]

Sampler = Callable[[int, np.random.Generator], TaskBatch]


@dataclass(frozen=True)
class TrainConfig:
    """Budget and bookkeeping of one meta-training run."""

    meta_steps: int = 70_000
    """Number of outer updates (MAML's sinusoid run: 70,000)."""
    meta_batch_size: int = 25
    """Tasks per outer update, |B| (sinusoid: 25)."""
    seed: int = 0
    """Seed of the stream of training tasks."""
    eval_every: int = 0
    """Call ``evaluate`` every this many steps (0: never)."""
    checkpoint_path: str | None = None
    """Where to save checkpoints; an existing file there is resumed from."""
    checkpoint_every: int = 1000
    """Save a checkpoint every this many steps (and at the end, and on Ctrl-C)."""
    progress: bool = True
    """Show a tqdm progress bar."""
    description: str = "meta-training"
    """Label of the progress bar."""

    def __post_init__(self) -> None:
        check_positive_int("meta_steps", self.meta_steps)
        check_positive_int("meta_batch_size", self.meta_batch_size)
        check_positive_int("checkpoint_every", self.checkpoint_every)
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0 (0 disables evaluation), got {self.eval_every}")


@dataclass
class History:
    """What happened during training: one entry per step, and one per evaluation."""

    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    eval_steps: list[int] = field(default_factory=list)
    eval_metrics: dict[str, list[float]] = field(default_factory=dict)

    def log(self, step: int, metrics: Mapping[str, float], evaluation: bool = False) -> None:
        (self.eval_steps if evaluation else self.steps).append(step)
        store = self.eval_metrics if evaluation else self.metrics
        for key, value in metrics.items():
            store.setdefault(key, []).append(float(value))


def save_checkpoint(path: str | os.PathLike, step: int, rng: np.random.Generator, history: History,
                    state: Mapping[str, object]) -> None:
    """Write everything needed to resume, atomically (a crash never leaves half a file)."""
    payload = {
        "step": step,
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": history.__dict__,
        "state": {name: obj.state_dict() for name, obj in state.items()},
    }
    save_atomically(payload, path)


def save_atomically(payload: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file, then rename it over ``path``: an interrupted save
    never leaves half a checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, rng: np.random.Generator,
                    state: Mapping[str, object]) -> tuple[int, History]:
    """Restore modules, optimizers and random streams from ``path``; return (step, history)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file: say what to do
        raise ValueError(f"cannot read checkpoint {path} ({error}); delete it to start afresh") from None
    missing = set(state) - set(payload["state"])
    if missing:
        raise ValueError(f"checkpoint {path} has no state for {sorted(missing)}; it belongs to "
                         "another experiment — use another checkpoint_path or delete the file")
    for name, obj in state.items():
        obj.load_state_dict(payload["state"][name])
    rng.bit_generator.state = payload["rng"]
    torch.set_rng_state(payload["torch_rng"])
    return int(payload["step"]), History(**payload["history"])


def _check_finite(metrics: Mapping[str, float], step: int) -> None:
    for key, value in metrics.items():
        if not math.isfinite(value):
            raise DivergenceError(
                f"{key} became {value} at step {step}: training diverged. Try a smaller step size "
                "(outer_lr, or inner_lr for the inner loop), or gradient clipping.")


def meta_train(step: Callable[[TaskBatch], Mapping[str, float]], sampler: Sampler, cfg: TrainConfig,
               state: Mapping[str, object],
               evaluate: Callable[[], Mapping[str, float]] | None = None) -> History:
    """Run ``cfg.meta_steps`` outer updates; ``state`` names what a checkpoint saves (modules, optimizers).

    ``sampler(n_tasks, rng=rng)`` draws a task batch from the run's own random stream. A NaN or
    infinite metric stops training with a ``DivergenceError`` that names the step.
    """
    rng = np.random.default_rng(cfg.seed)
    history, start = History(), 0
    if cfg.checkpoint_path and Path(cfg.checkpoint_path).exists():
        start, history = load_checkpoint(cfg.checkpoint_path, rng, state)
    bar = tqdm(total=cfg.meta_steps, initial=start, desc=cfg.description, disable=not cfg.progress,
               mininterval=0.5)
    current = start
    with _DeferredInterrupt() as interrupt, bar:
        for current in range(start + 1, cfg.meta_steps + 1):
            metrics = step(sampler(cfg.meta_batch_size, rng=rng))
            _check_finite(metrics, current)
            history.log(current, metrics)
            if evaluate is not None and cfg.eval_every and current % cfg.eval_every == 0:
                history.log(current, evaluate(), evaluation=True)
            checkpoint_due = current % cfg.checkpoint_every == 0 or current == cfg.meta_steps
            if cfg.checkpoint_path and (checkpoint_due or interrupt.requested):
                save_checkpoint(cfg.checkpoint_path, current, rng, history, state)
            bar.update(1)
            if current % 50 == 0:
                bar.set_postfix({k: f"{v:.3f}" for k, v in metrics.items()}, refresh=False)
            if interrupt.requested:
                where = f"; saved to {cfg.checkpoint_path}, run again to resume" if cfg.checkpoint_path else ""
                raise KeyboardInterrupt(f"meta-training stopped after step {current}{where}")
    return history


class _DeferredInterrupt:
    """Turn Ctrl-C (or Jupyter's interrupt) into a request honoured between two steps.

    The step in flight finishes, a checkpoint is written, then ``KeyboardInterrupt`` is raised: an
    interrupted run loses nothing. A second Ctrl-C interrupts at once.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _DeferredInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
