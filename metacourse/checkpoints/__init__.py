"""Trained checkpoints shipped with the package, so a lecture can show a fully trained model in seconds.

Each checkpoint is ``NAME.pt`` (the network's weights and how to build it) with a card
``NAME.json`` beside it: the exact ``metacourse reproduce`` command that trained it, the seed,
budget, device, wall and CPU time, and the accuracy measured by evaluating the saved file on the
600 test tasks of ``checkpoints.omniglot.test_tasks`` (``card["test_accuracy"]``, in %). ::

    import metacourse
    trained = metacourse.pretrained("protonet-omniglot-5w1s")   # = checkpoints.load(...)
    trained.card["test_accuracy"]                                # {"mean": ..., "ci95": ..., ...}
    trained.evaluate(n_tasks=100)                                # re-measure on test tasks
    trained.model                                                # an ordinary nn.Module

To ship a new one: train it with ``metacourse reproduce omniglot ...`` (which writes
``runs/NAME-seedS-DIGEST.pt`` and its card ``.json``, the digest naming the run's whole plan, so
that a run with other options never overwrites it), then copy both here, checked, as ``NAME.pt``
and ``NAME.json``, with ::

    python -m metacourse.checkpoints runs/protonet-omniglot-5w1s-seed0-1a2b3c4d5e.pt   # = checkpoints.ship(...)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from ..evaluate import Summary, summarize
from ..utils import torch_threads
from . import omniglot

__all__ = ["Pretrained", "names", "card", "load", "ship"]

FOLDER = Path(__file__).resolve().parent
MAX_BYTES = 1_000_000
"""Largest checkpoint file shipped inside the package."""
REQUIRED = ("command", "seed", "budget", "device", "train_seconds", "train_cpu_seconds",
            "eval_seconds", "test_accuracy", "check")
"""What a card must record (``tests/test_checkpoints.py`` checks every shipped one)."""


def names() -> list[str]:
    """Names of the shipped checkpoints (files ``NAME.pt`` with a card ``NAME.json``)."""
    return sorted(p.stem for p in FOLDER.glob("*.pt") if p.with_suffix(".json").exists())


def _check(name: str) -> Path:
    if name not in names():
        known = ", ".join(names()) or "none"
        raise ValueError(f"no shipped checkpoint named {name!r}; available: {known}. Train one "
                         "with `metacourse reproduce omniglot --method ... --ways ... --shots ...`")
    return FOLDER / f"{name}.pt"


def card(name: str) -> dict:
    """The card of checkpoint ``name``: command, seed, budget, device, times, accuracy."""
    return json.loads(_check(name).with_suffix(".json").read_text())


@dataclass
class Pretrained:
    """A trained network with its card; ``plan`` is the experiment's budget dict it was run with."""

    name: str
    model: nn.Module
    card: dict

    @property
    def plan(self) -> dict:
        return self.card["budget"]

    def test_tasks(self, n_tasks: int = 600):
        """The first ``n_tasks`` of the fixed test stream the card's accuracy was measured on."""
        tasks = omniglot.test_tasks(self.plan, max(n_tasks, self.plan["test_tasks"]))
        return tasks.split(n_tasks)[0]

    def accuracies(self, n_tasks: int = 600, threads: int = 1) -> np.ndarray:
        """Per-task accuracy (%) on the first ``n_tasks`` test tasks, adapting as the method does.

        ``threads``: torch CPU threads meanwhile (0: leave the setting alone). One is fastest for
        these small networks; on a busy machine two threads can take twenty times the CPU time.
        """
        with torch_threads(threads):
            return 100 * omniglot.evaluate_model(self.plan, self.model, self.test_tasks(n_tasks))

    def evaluate(self, n_tasks: int = 600, threads: int = 1) -> Summary:
        """Mean ± 95% CI of the accuracy (%) on the first ``n_tasks`` test tasks."""
        return summarize(self.accuracies(n_tasks, threads))


def load(name: str) -> Pretrained:
    """Load a shipped checkpoint, e.g. ``load("protonet-omniglot-5w1s")`` (CPU, evaluation mode)."""
    path = _check(name)
    return Pretrained(name, omniglot.load_file(path), card(name))


def ship(path: str | Path, folder: str | Path = FOLDER) -> Path:
    """Copy a checkpoint written by ``metacourse reproduce omniglot`` (``NAME-seedS-DIGEST.pt`` and its
    card beside it) into the package as ``NAME.pt`` and ``NAME.json``, after checking that it may be
    shipped: a full run (not FAST), evaluated on at least 600 test tasks, under 1 MB. Returns the
    shipped ``.pt`` path."""
    path = Path(path)
    card_path = path.with_suffix(".json")
    if path.suffix != ".pt" or not path.exists() or not card_path.exists():
        raise FileNotFoundError(
            f"{path} with its card {card_path.name} not found: pass the .pt file that `metacourse "
            "reproduce omniglot` wrote (in --out-dir, default runs/) once it finished")
    data = json.loads(card_path.read_text())
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ValueError(f"{card_path} lacks {missing}: it was not written by a finished "
                         "`metacourse reproduce omniglot` run; run the command again to finish it")
    if data.get("fast"):
        raise ValueError(f"{card_path} comes from a FAST run (a smoke test, not a reproduction): "
                         "train without --fast before shipping")
    if data["test_accuracy"]["n"] < 600:
        raise ValueError(f"{card_path} was evaluated on {data['test_accuracy']['n']} test tasks; "
                         "shipped checkpoints are evaluated on 600 (use --test-tasks 600)")
    if path.stat().st_size >= MAX_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size:,} bytes; shipped checkpoints must be "
                         f"under {MAX_BYTES:,} (use a smaller network, or publish it elsewhere)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{data['name']}.pt"
    shutil.copyfile(path, target)
    shutil.copyfile(card_path, target.with_suffix(".json"))
    return target
