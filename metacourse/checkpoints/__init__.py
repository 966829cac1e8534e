"""Trained checkpoints shipped with the package, so a lecture can show a fully trained model in seconds.

Each checkpoint is ``NAME.pt`` (the network's weights and how to build it) with a card
``NAME.json`` beside it: the exact ``metacourse reproduce`` command that trained it, the seed,
budget, device, wall and CPU time, and the accuracy measured by evaluating the saved file on the
600 test tasks of ``experiments.omniglot`` (``card["test_accuracy"]``, in %). ::

    import metacourse
    trained = metacourse.pretrained("protonet-omniglot-5w1s")   # = checkpoints.load(...)
    trained.card["test_accuracy"]                                # {"mean": ..., "ci95": ..., ...}
    trained.evaluate(n_tasks=100)                                # re-measure on test tasks
    trained.model                                                # an ordinary nn.Module
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from ..evaluate import Summary, summarize

__all__ = ["Pretrained", "names", "card", "load"]

FOLDER = Path(__file__).resolve().parent


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
        from ..experiments import omniglot

        tasks = omniglot.test_tasks(self.plan, max(n_tasks, self.plan["test_tasks"]))
        return tasks.split(n_tasks)[0]

    def accuracies(self, n_tasks: int = 600) -> np.ndarray:
        """Per-task accuracy (%) on the first ``n_tasks`` test tasks, adapting as the method does."""
        from ..experiments import omniglot

        return 100 * omniglot.evaluate_model(self.plan, self.model, self.test_tasks(n_tasks))

    def evaluate(self, n_tasks: int = 600) -> Summary:
        """Mean ± 95% CI of the accuracy (%) on the first ``n_tasks`` test tasks."""
        return summarize(self.accuracies(n_tasks))


def load(name: str) -> Pretrained:
    """Load a shipped checkpoint, e.g. ``load("protonet-omniglot-5w1s")`` (CPU, evaluation mode)."""
    path = _check(name)
    from ..experiments import omniglot

    return Pretrained(name, omniglot.load_file(path), card(name))
