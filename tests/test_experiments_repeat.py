"""Every experiment draws its random numbers from seeded generators: run twice in FAST mode with the same
seed (in fresh output folders, so nothing is resumed), each writes the same JSON, times apart.

``maml-cost`` is left out: it measures time and memory, which no seed fixes. The Omniglot experiments
need the zips in ``METACOURSE_DATA``; the cheetah needs MuJoCo."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from metacourse import cli

pytestmark = pytest.mark.slow

EXPERIMENTS = {  # the smallest budgets that still run every random draw of each experiment
    "rl2-bandits": ["--method", "rl2", "--meta-steps", "2"],
    "rl2-mdp": ["--method", "rl2", "--meta-steps", "2"],
    "meta-critic-sinusoid": ["--meta-steps", "10", "--maml-steps", "0", "--test-tasks", "4"],
    "meta-critic-cartpole": ["--meta-steps", "4"],
    "mbmpo-pendulum": ["--meta-steps", "1"],
    "maml-rl-navigation": ["--meta-steps", "1"],
    "maml-rl-cheetah-dir": ["--meta-steps", "1"],
    "maml-rl-cheetah-vel": ["--meta-steps", "1"],
    "sinusoid": ["--meta-steps", "3"],
    "meta-sgd": ["--meta-steps", "3"],
    "task-shift": ["--meta-steps", "3"],
    "meta-overfitting": ["--meta-steps", "3"],
    "blackbox-sinusoid": ["--meta-steps", "3"],
    "icl-sinusoid": ["--meta-steps", "3"],
    "icl-linear": ["--meta-steps", "3"],
    "omniglot": ["--method", "maml", "--meta-steps", "2"],
    "blackbox-omniglot": ["--meta-steps", "2"],
    "mann-omniglot": ["--meta-steps", "2"],
}
NEEDS_OMNIGLOT = {"omniglot", "blackbox-omniglot", "mann-omniglot"}
NEEDS_MUJOCO = {"maml-rl-cheetah-dir", "maml-rl-cheetah-vel"}
TIMES = re.compile(r"wall|seconds|cpu|_time|elapsed|date|when", re.IGNORECASE)


def _without_times(value, folder: str):
    """``value`` with every key that names a time removed, every duration and load average in a note
    blanked and the output folder's path replaced by a placeholder."""
    if isinstance(value, dict):
        return {k: _without_times(v, folder) for k, v in value.items() if not TIMES.search(k)}
    if isinstance(value, list):
        return [_without_times(v, folder) for v in value]
    if isinstance(value, str):
        value = value.replace(folder, "<out>")
        value = re.sub(r"load average[^;]*?(?=;|$)", "load average <load>", value)  # the machine's load, not the run's
        return re.sub(r"\d[\d,]*(\.\d+)? ?(s|min|h)\b", "<time>", value)  # a duration, wherever it is said
    return value


def _run(name: str, extra: list[str], folder) -> dict:
    out = folder / "result.json"
    code = cli.main(["reproduce", name, "--fast", "--seed", "3", "--no-progress", "--out-dir", str(folder),
                     "--json", str(out), *extra])
    assert code == 0
    return _without_times(json.loads(out.read_text()), str(folder))


def _skip_without_what_it_needs(name: str) -> None:
    data = Path(os.environ.get("METACOURSE_DATA") or "/nonexistent") / "omniglot" / "images_background.zip"
    if name in NEEDS_OMNIGLOT and not data.is_file():
        pytest.skip("the Omniglot zips are not in METACOURSE_DATA/omniglot (CI: ../shared/data)")
    if name in NEEDS_MUJOCO and importlib.util.find_spec("mujoco") is None:
        pytest.skip("MuJoCo is not installed")


def test_every_experiment_but_the_timing_one_is_repeated():
    from metacourse.reproduce import experiment_names

    assert set(experiment_names()) - set(EXPERIMENTS) == {"maml-cost"}
    assert set(EXPERIMENTS) <= set(experiment_names())


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_same_seed_same_result(name, tmp_path):
    _skip_without_what_it_needs(name)
    first = _run(name, EXPERIMENTS[name], tmp_path / "first")
    second = _run(name, EXPERIMENTS[name], tmp_path / "second")
    assert first == second


def test_the_comparison_sees_a_different_number(tmp_path):
    result = {"rows": [{"ours": {"mean": 1.0}}], "train_wall_seconds": 3.0, "notes": ["took 4.2 s wall"]}
    other = {"rows": [{"ours": {"mean": 1.5}}], "train_wall_seconds": 9.0, "notes": ["took 7.0 s wall"]}
    assert _without_times(result, "x") != _without_times(other, "x")
    assert _without_times(result, "x")["notes"] == _without_times(other, "x")["notes"]
