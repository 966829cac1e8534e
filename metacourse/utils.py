"""Small helpers every level of the library may use: FAST mode, seeding, device choice, errors."""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from .paths import check_writable

__all__ = [
    "DivergenceError",
    "fast_mode",
    "get_device",
    "seed_everything",
    "check_positive_int",
    "check_nonnegative",
    "check_device",
    "check_writable",
    "code_fingerprint",
    "GeneratorState",
]


class DivergenceError(FloatingPointError):
    """Raised when a loss becomes NaN or infinite during training."""


def fast_mode() -> bool:
    """True when the environment variable ``METACOURSE_FAST`` is set to a true value.

    FAST mode shrinks every budget so that notebooks and tests run in CI on two CPU cores.
    Numbers obtained in FAST mode are smoke tests, never reproductions.
    """
    value = os.environ.get("METACOURSE_FAST", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's ``random``, NumPy's global state and torch; return a fresh NumPy Generator.

    The library itself never uses global random state: pass the returned Generator explicitly.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    torch.manual_seed(int(seed))
    return np.random.default_rng(int(seed))


class GeneratorState:
    """A ``torch.Generator`` as checkpointable state (``state_dict`` / ``load_state_dict``), so that a
    resumed run draws the same random numbers as an uninterrupted one: put it in ``meta_train``'s
    state dict, e.g. ``{"policy": policy, "generator": GeneratorState(generator)}``."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def state_dict(self) -> dict:
        return {"state": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["state"])


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Pick a device: the one asked for (checked by :func:`check_device`), else CUDA, then Apple's
    MPS, then the CPU."""
    if device is not None and str(device) != "auto":
        return check_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def check_device(device: str | torch.device, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device`` if this machine has it; else a ValueError that names
    ``name`` (e.g. ``--device``), what this machine has, and the fix."""
    here = _devices_here()
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} {str(device)!r} is not a device; devices here: {here}") from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{name} {str(device)!r} was asked for but CUDA is not available here; "
                             f"devices here: {here}")
        if chosen.index is not None and chosen.index >= count:
            raise ValueError(f"{name} {str(device)!r}: this machine has {count} CUDA device(s); devices here: {here}")
    elif chosen.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{name} {str(device)!r} was asked for but Apple's MPS is not available here; "
                             f"devices here: {here}")
    elif chosen.type != "cpu":
        raise ValueError(f"{name} {str(device)!r}: the course runs on cpu, cuda or mps; devices here: {here}")
    return chosen


def _devices_here() -> str:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    return ", ".join(names)


def code_fingerprint(*modules: ModuleType) -> str:
    """A short hash of the source files of ``modules``: the code a trained checkpoint depends on.
    A checkpoint written by other code has another fingerprint and is never resumed from."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(module.__name__.encode())
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def check_positive_int(name: str, value: object, hint: str = "") -> int:
    """Return ``value`` if it is a positive integer, else raise a ValueError/TypeError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {value!r} ({type(value).__name__})")
    if value <= 0:
        fix = f"; {hint}" if hint else f"; use {name}=1 or more"
        raise ValueError(f"{name} must be a positive integer, got {value}{fix}")
    return int(value)


def check_nonnegative(name: str, value: object, hint: str = "") -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise with the fix."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if not np.isfinite(value) or value < 0:
        fix = f"; {hint}" if hint else ""
        raise ValueError(f"{name} must be a finite number >= 0, got {value}{fix}")
    return float(value)


def check_positive(name: str, value: object, hint: str = "") -> float:
    """Return ``value`` as a float if it is a finite number > 0, else raise with the fix."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})") from None
    if not np.isfinite(number) or number <= 0.0:
        fix = f"; {hint}" if hint else ""
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}{fix}")
    return number


class Clock:
    """Wall and CPU seconds since it was made, plus ``wall``/``cpu`` carried over from earlier
    sessions of a resumed run: ``clock.totals()`` → ``(wall, cpu)``."""

    def __init__(self, wall: float = 0.0, cpu: float = 0.0) -> None:
        self.wall0, self.cpu0 = wall, cpu
        self.started, self.cpu_started = time.perf_counter(), time.process_time()

    def wall(self) -> float:
        return self.wall0 + time.perf_counter() - self.started

    def cpu(self) -> float:
        return self.cpu0 + time.process_time() - self.cpu_started

    def totals(self) -> tuple[float, float]:
        return self.wall(), self.cpu()


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the body with ``n`` torch CPU threads (None or 0: leave the setting alone), then
    restore it. Small networks run fastest on one thread; on a shared CPU one also avoids
    contention."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
