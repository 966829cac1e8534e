"""Every shipped checkpoint reproduces, on test tasks from the shared data, the accuracy on its card."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

from metacourse import checkpoints

needs_data = pytest.mark.skipif(
    not any((Path(os.environ.get("METACOURSE_DATA", "/nonexistent")) / p).exists()
            for p in ("omniglot", "images_background.zip", "omniglot-py")),
    reason="the Omniglot data set is not in METACOURSE_DATA (CI: METACOURSE_DATA=../shared/data)")


@pytest.mark.parametrize("name", checkpoints.names())
def test_card_records_how_the_checkpoint_was_made(name):
    card = checkpoints.card(name)
    for key in ("command", "seed", "budget", "device", "train_seconds", "train_cpu_seconds",
                "eval_seconds", "test_accuracy", "check"):
        assert key in card, f"{name}.json lacks {key!r}"
    assert card["command"].startswith("metacourse reproduce omniglot") and not card["fast"]
    assert card["test_accuracy"]["n"] >= 600
    assert (checkpoints.FOLDER / f"{name}.pt").stat().st_size < 1_000_000


@needs_data
@pytest.mark.parametrize("name", checkpoints.names())
def test_checkpoint_reproduces_its_recorded_accuracy(name):
    start = time.perf_counter()
    trained = checkpoints.load(name)
    card, n_tasks = trained.card, trained.card["check"]["n_tasks"]
    accuracy = trained.accuracies(n_tasks).mean()
    assert time.perf_counter() - start < 60
    # the same tasks and weights: equal up to a few argmax flips from floating-point differences
    assert accuracy == pytest.approx(card["check"]["accuracy"], abs=0.5)
    # and the first tasks agree with the 600-task mean within sampling error
    full = card["test_accuracy"]
    std = full["ci95"] / 1.96 * math.sqrt(full["n"])
    assert abs(accuracy - full["mean"]) < 4 * std / math.sqrt(n_tasks) + 0.5


def test_unknown_name_lists_the_available_checkpoints():
    with pytest.raises(ValueError, match="no shipped checkpoint named 'maml-imagenet'"):
        checkpoints.load("maml-imagenet")
