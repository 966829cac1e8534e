"""The meta-training loop: sample tasks, take a step, evaluate now and then, checkpoint, resume.

``meta_train`` works for any algorithm whose step is a function ``step(tasks) -> metrics``, e.g.
``functools.partial(maml.meta_step, model, optimizer, cfg=cfg)``. It owns the random stream that
draws the training tasks, so a run stopped and resumed from its checkpoint samples the same tasks
and ends with the same numbers (on CPU) as a run that was never interrupted.

A checkpoint belongs to one :class:`Plan`: everything that decides what the run trains (budget,
seed, FAST, device type) and a fingerprint of the code that trains it. The plan is stored in the
checkpoint and its digest is part of the file name (``Plan.checkpoint``), so a run with other
options never resumes from, nor overwrites, another plan's checkpoint; ``meta_train`` refuses a
file whose stored plan differs. While a run writes a checkpoint it holds a lock on it: a second
run of the same plan in the same folder is refused instead of training the same thing twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .tasks.base import TaskBatch
from .utils import DivergenceError, check_positive_int

__all__ = ["Plan", "TrainConfig", "History", "CheckpointError", "meta_train", "save_checkpoint",
           "load_checkpoint", "checkpoint_info", "save_atomically"]

Sampler = Callable[[int, np.random.Generator], TaskBatch]


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, another model's, another plan's, or being
    written by another run. The message names the file and the fix."""


@dataclass(frozen=True)
class Plan:
    """Everything that decides what one training run produces; two runs with equal plans train
    the same weights. ``Plan(experiment="sinusoid", part="MAML", seed=0, budget={...})``.

    ``budget`` holds the settings that change training (steps, batch sizes, step sizes, network
    options); ``evaluation`` those that only change how the trained model is measured (they name
    exported results, not training checkpoints). Both must be JSON values: a plan is stored in
    every checkpoint and card.
    """

    experiment: str
    """The registered experiment, e.g. ``"omniglot"``."""
    part: str
    """What is trained, e.g. ``"MAML"`` or ``"protonet-omniglot-5w1s"`` (an experiment may train several)."""
    seed: int
    budget: Mapping
    fast: bool = False
    """A FAST run (a smoke test): never mixed with a full run's checkpoint."""
    device: str = "cpu"
    """The device type that trains it (``cpu``, ``cuda``, ``mps``): numbers differ between them."""
    code: str = ""
    """``utils.code_fingerprint`` of the modules that train it."""
    evaluation: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"Plan.seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.fast, bool):
            raise TypeError(f"Plan.fast must be True or False, got {self.fast!r}")
        for name in ("budget", "evaluation"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"Plan.{name} must be a dict of settings, got {type(value).__name__}")
            try:  # stored as plain JSON values: tuples become lists, so a stored plan compares equal
                object.__setattr__(self, name, json.loads(json.dumps(dict(value), allow_nan=False)))
            except (TypeError, ValueError) as error:
                raise TypeError(f"Plan.{name} must hold JSON values (numbers, strings, lists): {error}") from None
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "device", str(self.device).split(":")[0])

    def to_dict(self, training: bool = False) -> dict:
        """The plan as JSON-ready values; ``training=True`` leaves out ``evaluation``."""
        data = asdict(self) | {"budget": dict(self.budget), "evaluation": dict(self.evaluation)}
        if training:
            del data["evaluation"]
        return data

    def digest(self, training: bool = True) -> str:
        """A short hash of the plan: of what trains (``training=True``) or of the whole plan."""
        text = json.dumps(self.to_dict(training), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def checkpoint(self, out_dir: str | os.PathLike, stem: str) -> Path:
        """Where this plan's training checkpoint lives: ``out_dir/checkpoints/STEM-DIGEST.pt``."""
        return Path(out_dir) / "checkpoints" / f"{stem}-{self.digest()}.pt"

    def differences(self, other: Mapping) -> list[str]:
        """What differs between this plan and ``other`` (a stored plan's dict), e.g.
        ``["budget.pooling: 'max' here, 'stride' there"]``."""
        mine, theirs = _flat(self.to_dict(training=True)), _flat(dict(other))
        theirs.pop("evaluation", None)
        theirs = {k: v for k, v in theirs.items() if not k.startswith("evaluation.")}
        return [f"{key}: {mine.get(key, '(unset)')!r} here, {theirs.get(key, '(unset)')!r} there"
                for key in sorted(set(mine) | set(theirs)) if mine.get(key) != theirs.get(key)]


def _flat(data: Mapping, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


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
    plan: Plan | None = None
    """The run's plan, stored in its checkpoints; a checkpoint of another plan is never resumed from."""

    def __post_init__(self) -> None:
        check_positive_int("meta_steps", self.meta_steps)
        check_positive_int("meta_batch_size", self.meta_batch_size)
        check_positive_int("checkpoint_every", self.checkpoint_every)
        if self.eval_every < 0:
            raise ValueError(f"eval_every must be >= 0 (0 disables evaluation), got {self.eval_every}")
        if self.plan is not None and not isinstance(self.plan, Plan):
            raise TypeError(f"plan must be a metacourse.train.Plan, got {type(self.plan).__name__}")


@dataclass
class History:
    """What happened during training: one entry per step, and one per evaluation."""

    steps: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    eval_steps: list[int] = field(default_factory=list)
    eval_metrics: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    """Wall-clock seconds of training so far, over every session of a resumed run."""
    resumed_from: int = 0
    """The step this session started from: 0 when it trained from scratch."""
    earlier_seconds: float = 0.0
    """Wall-clock seconds the earlier sessions trained (0 when trained from scratch)."""

    def origin(self, meta_steps: int) -> str:
        """How this session began, e.g. "resumed from step 200 of 300, trained earlier for 8 s"."""
        if not self.resumed_from:
            return "trained from scratch"
        if self.resumed_from >= meta_steps:
            return (f"reused a finished checkpoint ({meta_steps} of {meta_steps} steps), "
                    f"trained earlier for {self.earlier_seconds:.0f} s")
        return (f"resumed from step {self.resumed_from} of {meta_steps}, "
                f"trained earlier for {self.earlier_seconds:.0f} s")

    def log(self, step: int, metrics: Mapping[str, float], evaluation: bool = False) -> None:
        (self.eval_steps if evaluation else self.steps).append(step)
        store = self.eval_metrics if evaluation else self.metrics
        for key, value in metrics.items():
            store.setdefault(key, []).append(float(value))


def save_checkpoint(path: str | os.PathLike, step: int, rng: np.random.Generator, history: History,
                    state: Mapping[str, object], plan: Plan | None = None) -> None:
    """Write everything needed to resume, atomically (a crash never leaves half a file)."""
    payload = {
        "step": step,
        "rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": history.__dict__,
        "state": {name: obj.state_dict() for name, obj in state.items()},
        "plan": None if plan is None else plan.to_dict(training=True),
    }
    save_atomically(payload, path)


def save_atomically(payload: object, path: str | os.PathLike) -> None:
    """``torch.save`` to a temporary file of its own, then rename it over ``path``: an interrupted
    save never leaves half a checkpoint, and two processes saving at once never share a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: str | os.PathLike) -> dict:
    """A checkpoint's contents, or a CheckpointError that says what to do with the file."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a truncated or foreign file: say what to do
        raise CheckpointError(f"cannot read checkpoint {path} ({type(error).__name__}: {error}); "
                              "it is truncated or not a checkpoint: delete it to start afresh") from None
    if not isinstance(payload, dict) or not {"step", "state", "rng"} <= set(payload):
        raise CheckpointError(f"{path} is not a training checkpoint of metacourse.train (another program's "
                              "file?); delete or move it to start afresh")
    return payload


def checkpoint_info(path: str | os.PathLike) -> dict:
    """``{"step", "plan", "seconds"}`` of the checkpoint at ``path`` (``step`` 0 when there is none),
    read with the same checks as :func:`load_checkpoint`."""
    if not Path(path).exists():
        return {"step": 0, "plan": None, "seconds": 0.0}
    payload = _read(path)
    return {"step": int(payload["step"]), "plan": payload.get("plan"),
            "seconds": float(payload["history"].get("seconds", 0.0))}


def load_checkpoint(path: str | os.PathLike, rng: np.random.Generator,
                    state: Mapping[str, object], plan: Plan | None = None) -> tuple[int, History]:
    """Restore modules, optimizers and random streams from ``path``; return (step, history).

    With a ``plan``, the checkpoint must have been written under an equal plan: another plan's
    checkpoint (or one without a plan) raises a CheckpointError and loads nothing.
    """
    payload = _read(path)
    if plan is not None and payload.get("plan") != plan.to_dict(training=True):
        stored = payload.get("plan")
        why = ("it records no plan (an older checkpoint)" if stored is None
               else "its plan differs: " + "; ".join(plan.differences(stored)))
        raise CheckpointError(f"checkpoint {path} was not written by this plan ({why}); it is never "
                              "resumed from: delete it, or use another out_dir")
    missing = set(state) - set(payload["state"])
    if missing:
        raise CheckpointError(f"checkpoint {path} has no state for {sorted(missing)}; it belongs to "
                              "another experiment — use another checkpoint_path or delete the file")
    try:
        for name, obj in state.items():
            obj.load_state_dict(payload["state"][name])
    except (RuntimeError, KeyError, ValueError) as error:
        first = str(error).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {path} holds another model's {name} ({first}); "
                              "use another checkpoint_path or delete the file") from None
    rng.bit_generator.state = payload["rng"]
    torch.set_rng_state(payload["torch_rng"])
    known = History.__dataclass_fields__
    history = History(**{k: v for k, v in payload["history"].items() if k in known})
    step = int(payload["step"])
    history.resumed_from, history.earlier_seconds = step, history.seconds
    return step, history


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold ``PATH.lock`` while the body runs: a second run of the same checkpoint is refused. The
    operating system drops the lock when the process ends, however it ends."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; run as before
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise CheckpointError(
                f"another run ({holder}) is training into {path} right now; wait for it to finish (then "
                "run again to reuse its result) or use another out_dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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

    With ``cfg.checkpoint_path``, an existing checkpoint there is resumed from (it must hold
    ``cfg.plan``, else a ``CheckpointError``), and the returned history says how this call began
    (``history.origin(cfg.meta_steps)``: "trained from scratch", "resumed from step N of M, trained
    earlier for S s"). A second run training into the same path meanwhile is refused.
    """
    if cfg.checkpoint_path is None:
        return _train(step, sampler, cfg, state, evaluate)
    with _exclusive(Path(cfg.checkpoint_path)):
        return _train(step, sampler, cfg, state, evaluate)


def _train(step, sampler, cfg: TrainConfig, state, evaluate) -> History:
    rng = np.random.default_rng(cfg.seed)
    history, start = History(), 0
    if cfg.checkpoint_path and Path(cfg.checkpoint_path).exists():
        start, history = load_checkpoint(cfg.checkpoint_path, rng, state, plan=cfg.plan)
        if cfg.progress:
            print(f"{cfg.description}: {history.origin(cfg.meta_steps)} ({cfg.checkpoint_path})", file=sys.stderr)
    session = time.perf_counter()
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
            history.seconds = history.earlier_seconds + time.perf_counter() - session
            if cfg.checkpoint_path and (checkpoint_due or interrupt.requested):
                save_checkpoint(cfg.checkpoint_path, current, rng, history, state, cfg.plan)
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
