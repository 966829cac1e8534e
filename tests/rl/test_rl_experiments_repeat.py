"""The meta-RL experiments draw every random number from seeded generators: run twice in FAST mode with the
same seed (in fresh output folders, so nothing is resumed), each writes the same JSON, times apart."""

from __future__ import annotations

import json
import re

import pytest

from metacourse import cli

pytestmark = pytest.mark.slow

EXPERIMENTS = {  # the smallest budgets that still run every random draw of each experiment
    "rl2-bandits": ["--method", "rl2", "--meta-steps", "2"],
    "meta-critic-sinusoid": ["--meta-steps", "10", "--maml-steps", "0", "--test-tasks", "4"],
    "meta-critic-cartpole": ["--meta-steps", "4"],
    "mbmpo-pendulum": ["--meta-steps", "1"],
    "maml-rl-navigation": ["--meta-steps", "1"],
}
TIMES = re.compile(r"wall|seconds|cpu|_time|elapsed|date|when", re.IGNORECASE)


def _without_times(value, folder: str):
    """``value`` with every key that names a time removed, numbers in notes about times blanked and the
    output folder's path replaced by a placeholder."""
    if isinstance(value, dict):
        return {k: _without_times(v, folder) for k, v in value.items() if not TIMES.search(k)}
    if isinstance(value, list):
        return [_without_times(v, folder) for v in value]
    if isinstance(value, str):
        value = value.replace(folder, "<out>")
        return re.sub(r"\d+(\.\d+)? ?(s|min|h)\b", "<time>", value) if TIMES.search(value) else value
    return value


def _run(name: str, extra: list[str], folder) -> dict:
    out = folder / "result.json"
    code = cli.main(["reproduce", name, "--fast", "--seed", "3", "--no-progress", "--out-dir", str(folder),
                     "--json", str(out), *extra])
    assert code == 0
    return _without_times(json.loads(out.read_text()), str(folder))


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_same_seed_same_result(name, tmp_path):
    first = _run(name, EXPERIMENTS[name], tmp_path / "first")
    second = _run(name, EXPERIMENTS[name], tmp_path / "second")
    assert first == second


def test_the_comparison_sees_a_different_number(tmp_path):
    result = {"rows": [{"ours": {"mean": 1.0}}], "train_wall_seconds": 3.0, "notes": ["took 4.2 s wall"]}
    other = {"rows": [{"ours": {"mean": 1.5}}], "train_wall_seconds": 9.0, "notes": ["took 7.0 s wall"]}
    assert _without_times(result, "x") != _without_times(other, "x")
    assert _without_times(result, "x")["notes"] == _without_times(other, "x")["notes"]
