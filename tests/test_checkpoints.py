"""Every shipped checkpoint reproduces, on test tasks from the shared data, the accuracy on its card."""

from __future__ import annotations

import json
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
    for key in checkpoints.REQUIRED:
        assert key in card, f"{name}.json lacks {key!r}"
    assert card["command"].startswith("metacourse reproduce omniglot") and not card["fast"]
    assert card["test_accuracy"]["n"] >= 600
    # on a shared machine wall time depends on the other jobs; CPU time, where recorded, does not
    seconds = card.get("eval_cpu_seconds") or card["eval_seconds"]
    assert seconds < 60, f"{name}: evaluating on 600 test tasks took {seconds} s, over a minute"
    assert (checkpoints.FOLDER / f"{name}.pt").stat().st_size < checkpoints.MAX_BYTES


@needs_data
@pytest.mark.parametrize("name", checkpoints.names())
def test_checkpoint_reproduces_its_recorded_accuracy(name):
    start = time.process_time()  # CPU time: wall time on a shared machine depends on the others
    trained = checkpoints.load(name)
    card, n_tasks = trained.card, trained.card["check"]["n_tasks"]
    accuracy = trained.accuracies(n_tasks).mean()
    assert time.process_time() - start < 60
    # the same tasks and weights: equal up to a few argmax flips from floating-point differences
    assert accuracy == pytest.approx(card["check"]["accuracy"], abs=0.5)
    # and the first tasks agree with the 600-task mean within sampling error
    full = card["test_accuracy"]
    std = full["ci95"] / 1.96 * math.sqrt(full["n"])
    assert abs(accuracy - full["mean"]) < 4 * std / math.sqrt(n_tasks) + 0.5


def test_unknown_name_lists_the_available_checkpoints():
    with pytest.raises(ValueError, match="no shipped checkpoint named 'maml-imagenet'"):
        checkpoints.load("maml-imagenet")


def _fake_run(folder: Path, **card) -> Path:
    path = folder / "toy-omniglot-5w1s.pt"
    path.write_bytes(b"weights")
    fields = {key: 0 for key in checkpoints.REQUIRED} | {
        "name": "toy-omniglot-5w1s", "fast": False, "test_accuracy": {"n": 600}}
    path.with_suffix(".json").write_text(json.dumps(fields | card))
    return path


def test_ship_copies_a_finished_run_with_its_card(tmp_path):
    shipped = checkpoints.ship(_fake_run(tmp_path), folder=tmp_path / "package")
    assert shipped == tmp_path / "package" / "toy-omniglot-5w1s.pt"
    assert shipped.with_suffix(".json").exists()


@pytest.mark.parametrize("card, message", [
    ({"fast": True}, "FAST run"),
    ({"test_accuracy": {"n": 10}}, "evaluated on 10 test tasks"),
    ({"check": "dropped"}, "lacks"),
])
def test_ship_refuses_what_is_not_a_full_run(tmp_path, card, message):
    path = _fake_run(tmp_path, **card)
    if card.get("check") == "dropped":
        data = json.loads(path.with_suffix(".json").read_text())
        path.with_suffix(".json").write_text(json.dumps({k: v for k, v in data.items() if k != "check"}))
    with pytest.raises(ValueError, match=message):
        checkpoints.ship(path, folder=tmp_path / "package")
    assert not (tmp_path / "package").exists()


def test_ship_names_the_file_it_needs(tmp_path):
    with pytest.raises(FileNotFoundError, match="reproduce omniglot"):
        checkpoints.ship(tmp_path / "missing.pt", folder=tmp_path / "package")
