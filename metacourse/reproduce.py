"""The experiment registry: ``metacourse reproduce NAME`` runs one experiment and prints the
paper's numbers beside ours.

An experiment is a function ``run(options) -> Result`` in a module of ``metacourse.experiments``,
registered with ``@register("name", "one-line description")``. Every result holds rows of
(method, metric, the paper's number, our ``Summary``) plus the seed, device, budget and wall time,
prints as a table and saves as JSON (``Result.to_dict``).

What a run trains is decided by its plan (``metacourse.train.Plan``, re-exported here): its
checkpoints and exported models are named by the plan's digest, so runs with different options
never share them, and ``Result.training`` records, for every part trained, whether it trained
from scratch or resumed, and from which checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import math
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from .evaluate import Summary
from .results import rows_markdown
from .train import Plan
from .utils import torch_threads

__all__ = [
    "Argument", "Budget", "Plan", "RunOptions", "Row", "Result", "Experiment",
    "register", "get_experiment", "experiment_names", "with_defaults",
]


@dataclass(frozen=True)
class Budget(Mapping):
    """The base of an experiment's typed plan: its settings as frozen, typed fields.

    Each experiment declares one (``SinusoidBudget``, ``OmniglotBudget``, ...), as CleanRL's
    ``Args``: a misspelt setting fails when the plan is made, not after hours of training, and no
    output of the run is ever written into it (those go to ``Result.measured``). Settings a method
    does not use are ``None`` and left out of :meth:`to_dict`, the plan as results store it. It also
    reads as a read-only mapping of those settings (``plan["meta_steps"]``, ``dict(plan)``), as a
    stored plan does.
    """

    def __getitem__(self, key: str):
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def to_dict(self) -> dict:
        """The settings, without those that are None, in declaration order (JSON values)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return {key: value.to_dict() if isinstance(value, Budget) else value for key, value in values.items()}

    def replace(self, **changes) -> Budget:
        """A copy with ``changes`` (``TypeError`` for a setting the plan does not have)."""
        return dataclasses.replace(self, **changes)

    def only(self, keys) -> dict:
        """The settings named by ``keys``, e.g. those that decide a training run."""
        return {key: getattr(self, key) for key in keys}


@dataclass(frozen=True)
class RunOptions:
    """What the command line (or a notebook) asks of an experiment."""

    fast: bool = False
    """Tiny budget for smoke tests: its numbers are never a reproduction."""
    meta_steps: int | None = None
    """Override the experiment's default number of meta-training steps."""
    seed: int = 0
    device: str | None = None
    """``"cpu"``, ``"cuda"``, ... or None for the experiment's default."""
    out_dir: str = "runs"
    """Where checkpoints and plots go (checkpoints make an interrupted run resumable)."""
    progress: bool = True
    extra: dict = field(default_factory=dict)
    """Values of the experiment's own options (``Experiment.arguments``), e.g. ``{"arms": 5}``."""

    def __post_init__(self) -> None:
        if not isinstance(self.fast, bool):
            raise TypeError(f"RunOptions.fast must be True or False, got {self.fast!r}")
        if self.meta_steps is not None and (isinstance(self.meta_steps, bool) or not isinstance(self.meta_steps, int)
                                            or self.meta_steps <= 0):
            raise ValueError(f"RunOptions.meta_steps must be a positive integer or None (the experiment's "
                             f"default), got {self.meta_steps!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"RunOptions.seed must be a non-negative integer, got {self.seed!r}")
        if self.device is not None and str(self.device) != "auto":
            import torch

            try:
                torch.device(self.device)
            except (RuntimeError, TypeError, ValueError):
                raise ValueError(f"RunOptions.device {self.device!r} is not a device: use 'cpu', 'cuda', "
                                 "'cuda:N', 'mps' or None") from None
        if not isinstance(self.out_dir, (str, Path)) or not str(self.out_dir):
            raise TypeError(f"RunOptions.out_dir must be a folder name, got {self.out_dir!r}")
        if not isinstance(self.extra, dict):
            raise TypeError(f"RunOptions.extra must be a dict of the experiment's options, got "
                            f"{type(self.extra).__name__}")


@dataclass(frozen=True)
class Argument:
    """An option of one experiment on the command line, e.g. ``Argument("--arms", int, 5)``."""

    flag: str
    type: type = str
    default: object = None
    choices: tuple | None = None
    help: str = ""
    minimum: int | None = None
    """The smallest value allowed (counts: 1; "0 means the default" options: 0)."""

    @property
    def key(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass
class Row:
    """One line of a results table."""

    method: str
    metric: str
    paper: float | None
    ours: Summary

    def to_dict(self) -> dict:
        return {"method": self.method, "metric": self.metric, "paper": self.paper,
                "ours": self.ours.to_dict()}


@dataclass
class Result:
    """The outcome of one experiment run."""

    experiment: str
    seed: int
    device: str
    wall_seconds: float
    budget: dict
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    training: dict[str, dict] = field(default_factory=dict)
    """For each part trained: its plan's digest, its checkpoint, and the step it resumed from
    (0: trained from scratch) with the seconds trained earlier."""
    measured: dict = field(default_factory=dict)
    """What the run measured besides its rows: times, learning curves (never in ``budget``)."""

    def __post_init__(self) -> None:
        if isinstance(self.budget, Budget):
            self.budget = self.budget.to_dict()

    def to_dict(self) -> dict:
        return {"experiment": self.experiment, "seed": self.seed, "device": self.device,
                "wall_seconds": round(self.wall_seconds, 1), "budget": self.budget,
                "rows": [row.to_dict() for row in self.rows], "notes": self.notes,
                "artifacts": self.artifacts, "training": self.training,
                **({"measured": self.measured} if self.measured else {})}

    def save_json(self, path: str | Path) -> None:
        """Write :meth:`to_dict` as strict JSON: a non-finite number (a diverged task's mean) is
        written as ``null``, and the notes say what diverged."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(_finite_or_null(self.to_dict()), indent=2, allow_nan=False) + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        """A result read back from :meth:`save_json` (``null`` statistics come back as NaN)."""
        def number(value):
            return float("nan") if value is None else float(value)

        rows = [Row(r["method"], r["metric"], r["paper"],
                    Summary(number(r["ours"]["mean"]), number(r["ours"]["ci95"]),
                            number(r["ours"]["median"]), int(r["ours"]["n"])))
                for r in data["rows"]]
        return cls(data["experiment"], data["seed"], data["device"], data["wall_seconds"],
                   data["budget"], rows, list(data.get("notes", [])), dict(data.get("artifacts", {})),
                   dict(data.get("training", {})), dict(data.get("measured", {})))

    def markdown(self, digits: int = 3) -> str:
        """The results as a Markdown table (paper beside ours) with the run's budget, seed,
        device and wall time underneath, as the README and lectures show them."""
        lines = [rows_markdown(self.rows, digits)]
        budget = ", ".join(f"{k}={v}" for k, v in self.budget.items())
        lines += ["", f"Seed {self.seed}, device `{self.device}`, wall time {self.wall_seconds:.0f} s. "
                  f"Budget: {budget}."]
        lines += [f"- {note}" for note in self.notes]
        if any("FAST" in note for note in self.notes):
            lines.append("\n**A FAST run: a smoke test with a tiny budget, not a reproduction.**")
        return "\n".join(lines)

    def table(self) -> str:
        """The results as a plain-text table, paper beside ours."""
        budget = ", ".join(f"{k}={v}" for k, v in self.budget.items())
        lines = [f"{self.experiment}: seed {self.seed}, device {self.device}, "
                 f"wall {self.wall_seconds:.0f} s", f"budget: {budget}", ""]
        header = f"{'method':<22} {'metric':<24} {'paper':>7}   {'ours (mean ± 95% CI)':<22} {'median':>8} {'n':>5}"
        lines += [header, "-" * len(header)]
        for row in self.rows:
            paper = "—" if row.paper is None else f"{row.paper:.2f}"
            ours = f"{row.ours.mean:.3f} ± {row.ours.ci95:.3f}"
            lines.append(f"{row.method:<22} {row.metric:<24} {paper:>7}   {ours:<22} "
                         f"{row.ours.median:>8.3f} {row.ours.n:>5}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    run: Callable[[RunOptions], Result]
    arguments: tuple[Argument, ...] = ()


_REGISTRY: dict[str, Experiment] = {}


def register(name: str, description: str, arguments: tuple[Argument, ...] = (),
             threads: int | None = None) -> Callable[[Callable[[RunOptions], Result]], Callable]:
    """Decorator that adds an experiment function to the registry under ``name``.

    ``arguments`` declares the experiment's own command-line options; their values reach the
    function as ``options.extra[argument.key]`` (defaults filled in by ``with_defaults``).
    The registered function checks ``options.extra`` against ``arguments`` first (``with_defaults``).
    ``threads`` pins torch to that many CPU threads while the experiment runs (then restores
    the setting): the course's small networks run fastest on one, which also leaves the other
    core free on a shared CPU.
    """

    def add(run: Callable[[RunOptions], Result]) -> Callable[[RunOptions], Result]:
        inner = _pinned(run, threads) if threads else run

        @functools.wraps(run)
        def checked(options: RunOptions) -> Result:
            if isinstance(options, RunOptions):  # a bad option is refused before any work
                with_defaults(_REGISTRY[name], options.extra)
            return inner(options)

        _REGISTRY[name] = Experiment(name, description, checked, tuple(arguments))
        return checked

    return add


def _pinned(run: Callable[[RunOptions], Result], threads: int) -> Callable[[RunOptions], Result]:
    @functools.wraps(run)
    def pinned(options: RunOptions) -> Result:
        with torch_threads(threads):
            return run(options)

    return pinned


def _discover() -> None:
    from . import experiments

    for module in pkgutil.iter_modules(experiments.__path__):
        importlib.import_module(f"{experiments.__name__}.{module.name}")


def experiment_names() -> list[str]:
    """Names of all registered experiments."""
    _discover()
    return sorted(_REGISTRY)


def get_experiment(name: str) -> Experiment:
    """The experiment registered as ``name``; a ValueError lists the known names otherwise."""
    _discover()
    if name not in _REGISTRY:
        raise ValueError(f"no experiment named {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def with_defaults(experiment: Experiment, extra: dict | None = None) -> dict:
    """The experiment's options: its declared defaults, overridden by ``extra``; unknown keys raise."""
    known = {argument.key: argument for argument in experiment.arguments}
    unknown = set(extra or {}) - set(known)
    if unknown:
        flags = ", ".join(a.flag for a in experiment.arguments) or "none"
        raise ValueError(f"experiment {experiment.name!r} has no option(s) {sorted(unknown)}; "
                         f"its options: {flags}")
    values = {key: argument.default for key, argument in known.items()}
    values.update(extra or {})
    for key, value in values.items():
        argument = known[key]
        if value is not argument.default and argument.type in (int, float, str) and (
                isinstance(value, bool) or not isinstance(value, argument.type)):
            raise TypeError(f"{argument.flag} must be {argument.type.__name__}, got {value!r} "
                            f"({type(value).__name__})")
        if argument.choices is not None and value not in argument.choices:
            raise ValueError(f"{argument.flag} {value!r} is not allowed; choose one of {argument.choices}")
        if argument.minimum is not None and value < argument.minimum:
            raise ValueError(f"{argument.flag} must be {argument.minimum} or more, got {value}"
                             + (f" ({argument.help})" if argument.help else ""))
    return values


def _finite_or_null(value):
    """``value`` with every NaN or infinity replaced by None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value
