"""Bad input is refused before any work, with a message that names the option and the fix.

Every command-line case runs ``metacourse.cli.main`` in this process and asserts the exit status
(2), that no traceback is printed, and that the one ``metacourse: error:`` line names the option.
Python API and environment cases assert the exception and that its message names the parameter.
A few cases run the command in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from metacourse import cli, reproduce
from metacourse.reproduce import Plan, Result, RunOptions, get_experiment, with_defaults
from metacourse.train import CheckpointError, TrainConfig, checkpoint_info, load_checkpoint
from metacourse.utils import check_writable, get_device, seed_everything

UNWRITABLE = "/proc/metacourse-cannot-write-here"
"""A folder no one can create, not even root."""


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    """Run the command in this process: (exit status, what it printed on stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's errors
        code = stop.code
    return code, capsys.readouterr().err


def _refused(argv: list[str], names: str, capsys) -> str:
    code, err = _cli(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("metacourse: error:")]
    assert len(lines) == 1, err
    assert names in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file.txt"
    path.write_text("not a folder")
    return path


# command line: (arguments, what the message must name); {file} is a plain file, {tmp} a fresh folder
CLI_CASES = [
    (["reproduce", "sinusoid", "--seed", "-1"], "--seed"),
    (["reproduce", "sinusoid", "--seed", "abc"], "--seed"),
    (["reproduce", "sinusoid", "--seed", "1e3"], "--seed"),
    (["reproduce", "sinusoid", "--meta-steps", "0"], "--meta-steps"),
    (["reproduce", "sinusoid", "--meta-steps", "-5"], "--meta-steps"),
    (["reproduce", "sinusoid", "--meta-steps", "1.5"], "--meta-steps"),
    (["reproduce", "sinusoid", "--device", "nonsense"], "--device"),
    (["reproduce", "sinusoid", "--device", "mps"], "--device"),
    (["reproduce", "sinusoid", "--device", "cuda:7"], "--device"),
    (["reproduce", "sinusoid", "--device", "tpu"], "--device"),
    (["reproduce", "sinusoid", "--json", "{tmp}"], "--json"),
    (["reproduce", "sinusoid", "--json", UNWRITABLE + "/result.json"], "--json"),
    (["reproduce", "sinusoid", "--json", "{file}/result.json"], "--json"),
    (["reproduce", "sinusoid", "--out-dir", "{file}"], "--out-dir"),
    (["reproduce", "sinusoid", "--out-dir", UNWRITABLE], "--out-dir"),
    (["reproduce"], "experiment"),
    (["reproduce", "no-such-experiment"], "no-such-experiment"),
    (["reproduce", "sinusoid", "--train-shots", "7"], "--train-shots"),
    (["reproduce", "sinusoid", "--bogus", "1"], "--bogus"),
    (["reproduce", "omniglot", "--method", "siamese"], "--method"),
    (["reproduce", "omniglot", "--ways", "10"], "--ways"),
    (["reproduce", "omniglot", "--shots", "2"], "--shots"),
    (["reproduce", "omniglot", "--threads", "-1"], "--threads"),
    (["reproduce", "omniglot", "--test-tasks", "0"], "--test-tasks"),
    (["reproduce", "omniglot", "--test-tasks", "-3"], "--test-tasks"),
    (["reproduce", "omniglot", "--train-ways", "-1"], "--train-ways"),
    (["reproduce", "omniglot", "--train-ways", "100000"], "--train-ways"),
    (["reproduce", "omniglot", "--train-ways", "1"], "--train-ways"),
    (["reproduce", "omniglot", "--method", "maml", "--train-ways", "20"], "--train-ways"),
    (["reproduce", "omniglot", "--method", "finetune", "--train-ways", "10"], "--train-ways"),
    (["reproduce", "omniglot", "--method", "maml", "--bf16", "1"], "--bf16"),
    (["reproduce", "omniglot", "--pooling", "avg"], "--pooling"),
    (["reproduce", "omniglot", "--network", "resnet"], "--network"),
    (["reproduce", "omniglot", "--backend", "jax"], "--backend"),
    (["reproduce", "omniglot", "--compile", "2"], "--compile"),
    (["reproduce", "omniglot", "--ways", "five"], "--ways"),
    (["reproduce", "rl2-bandits", "--arms", "7"], "--arms"),
    (["reproduce", "rl2-bandits", "--instances", "0"], "--instances"),
    (["reproduce", "rl2-mdp", "--episodes", "3"], "--episodes"),
    (["reproduce", "maml-rl-navigation", "--exact-fisher", "2"], "--exact-fisher"),
    (["reproduce", "mbmpo-pendulum", "--model-history", "-1"], "--model-history"),
    (["reproduce", "maml-cost", "--max-inner-steps", "0"], "--max-inner-steps"),
    (["results", "{tmp}/missing.json"], "missing.json"),
    (["results", "{file}"], "a-file.txt"),
    (["frobnicate"], "frobnicate"),
    (["list", "extra"], "extra"),
]


@pytest.mark.parametrize("argv, names", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_command_line_refuses_bad_input(argv, names, tmp_path, a_file, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written outside the test's folder
    argv = [a.format(tmp=tmp_path, file=a_file) for a in argv]
    _refused(argv, names, capsys)
    assert not (tmp_path / "runs" / "checkpoints").exists()  # refused before any training


def test_json_into_an_unwritable_place_fails_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    get_experiment("sinusoid")  # the registry is loaded once per process: not part of the check
    started = time.perf_counter()
    line = _refused(["reproduce", "sinusoid", "--json", UNWRITABLE + "/r.json", "--out-dir", str(tmp_path)],
                    "--json", capsys)
    assert time.perf_counter() - started < 2
    assert "cannot be written" in line and not (tmp_path / "checkpoints").exists()


def test_an_omniglot_run_without_the_data_names_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("METACOURSE_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("METACOURSE_DOWNLOAD", "0")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    _refused(["reproduce", "omniglot", "--fast", "--no-progress", "--out-dir", str(tmp_path)],
             "METACOURSE_DATA", capsys)


def _recording(monkeypatch, name: str) -> list[RunOptions]:
    """Replace experiment ``name`` by one that records the options it is run with."""
    experiment, seen = get_experiment(name), []

    def record(options):
        seen.append(options)
        return Result(name, options.seed, "cpu", 0.0, {"fast": options.fast}, [], ["recorded"])

    monkeypatch.setitem(reproduce._REGISTRY, name, replace(experiment, run=record))
    return seen


def test_metacourse_fast_is_honoured_and_said(tmp_path, capsys, monkeypatch):
    seen = _recording(monkeypatch, "sinusoid")
    monkeypatch.setenv("METACOURSE_FAST", "1")
    assert cli.main(["reproduce", "sinusoid", "--no-progress", "--out-dir", str(tmp_path)]) == 0
    assert "METACOURSE_FAST is set" in capsys.readouterr().err
    monkeypatch.setenv("METACOURSE_FAST", "0")
    assert cli.main(["reproduce", "sinusoid", "--no-progress", "--out-dir", str(tmp_path)]) == 0
    assert "METACOURSE_FAST" not in capsys.readouterr().err
    assert [options.fast for options in seen] == [True, False]


def test_a_device_the_experiment_did_not_use_is_said(tmp_path, capsys, monkeypatch):
    _recording(monkeypatch, "rl2-bandits")  # runs on the CPU whatever is asked
    monkeypatch.setattr("metacourse.utils.check_device", lambda device, name="device": torch.device("cpu"))
    assert cli.main(["reproduce", "rl2-bandits", "--device", "cuda", "--out-dir", str(tmp_path)]) == 0
    assert "--device cuda was not used: rl2-bandits ran on cpu" in capsys.readouterr().out


def test_help_of_an_experiment_shows_its_own_options(capsys):
    assert cli.main(["reproduce", "sinusoid", "--help"]) == 0
    printed = capsys.readouterr().out
    assert "--train-shots" in printed and "--seed" in printed and "--json" in printed


def test_a_bug_prints_its_traceback_and_says_it_is_one(capsys, monkeypatch):
    experiment = get_experiment("sinusoid")

    def broken(options):
        raise ZeroDivisionError("an internal mistake")

    monkeypatch.setitem(reproduce._REGISTRY, "sinusoid", replace(experiment, run=broken))
    code, err = _cli(["reproduce", "sinusoid", "--fast", "--no-progress"], capsys)
    assert code == 1
    assert "Traceback" in err and "ZeroDivisionError" in err and "is a bug in metacourse" in err


def test_an_expected_failure_is_one_line_in_a_subprocess(tmp_path):
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = ["reproduce", "sinusoid", "--json", UNWRITABLE + "/r.json"]
    done = subprocess.run([sys.executable, "-m", "metacourse.cli", *argv], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "--json" in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]  # one line
    assert done.stderr.startswith("metacourse: error:") and not (tmp_path / "runs" / "checkpoints").exists()


# ---------------------------------------------------------------- Python API

_PLAN = dict(experiment="sinusoid", part="MAML", seed=0, budget={"meta_steps": 3})

API_CASES = [
    (lambda: RunOptions(seed=-1), ValueError, "seed"),
    (lambda: RunOptions(seed=1.5), ValueError, "seed"),
    (lambda: RunOptions(meta_steps=0), ValueError, "meta_steps"),
    (lambda: RunOptions(meta_steps=True), ValueError, "meta_steps"),
    (lambda: RunOptions(fast="yes"), TypeError, "fast"),
    (lambda: RunOptions(device="nonsense"), ValueError, "device"),
    (lambda: RunOptions(extra=[("ways", 5)]), TypeError, "extra"),
    (lambda: RunOptions(out_dir=None), TypeError, "out_dir"),
    (lambda: RunOptions(sed=1), TypeError, "sed"),
    (lambda: Plan(**_PLAN, fats=True), TypeError, "fats"),
    (lambda: Plan(**_PLAN | {"seed": -1}), ValueError, "seed"),
    (lambda: Plan(**_PLAN | {"budget": {"lr": object()}}), TypeError, "budget"),
    (lambda: Plan(**_PLAN | {"budget": [1, 2]}), TypeError, "budget"),
    (lambda: Plan(**_PLAN | {"budget": {"lr": float("nan")}}), TypeError, "budget"),
    (lambda: Plan(**_PLAN, fast=1), TypeError, "fast"),
    (lambda: TrainConfig(meta_steps=0), ValueError, "meta_steps"),
    (lambda: TrainConfig(meta_batch_size=-2), ValueError, "meta_batch_size"),
    (lambda: TrainConfig(plan={"seed": 0}), TypeError, "plan"),
    (lambda: get_device("nonsense"), ValueError, "nonsense"),
    (lambda: get_device("mps"), ValueError, "MPS"),
    (lambda: get_device("cuda:3"), ValueError, "cuda:3"),
    (lambda: seed_everything(-1), ValueError, "seed"),
    (lambda: with_defaults(get_experiment("omniglot"), {"ways": "5"}), TypeError, "--ways"),
    (lambda: with_defaults(get_experiment("omniglot"), {"test_tasks": 0}), ValueError, "--test-tasks"),
    (lambda: with_defaults(get_experiment("omniglot"), {"threads": -1}), ValueError, "--threads"),
    (lambda: with_defaults(get_experiment("omniglot"), {"wayz": 5}), ValueError, "wayz"),
    (lambda: get_experiment("omniglot").run(RunOptions(extra={"threads": -1})), ValueError, "--threads"),
    (lambda: get_experiment("sinusoid").run(RunOptions(extra={"train_shots": 3})), ValueError, "--train-shots"),
    (lambda: get_experiment("nope"), ValueError, "known:"),
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the device cases assume a machine without CUDA")
@pytest.mark.parametrize("call, error, names", API_CASES, ids=[f"api-{i}" for i in range(len(API_CASES))])
def test_python_api_refuses_bad_input(call, error, names):
    with pytest.raises(error) as raised:
        call()
    assert names in str(raised.value)


def test_writable_check_names_the_option(tmp_path, a_file):
    with pytest.raises(ValueError, match="--json .* is a folder"):
        check_writable(tmp_path, "--json")
    with pytest.raises(ValueError, match="--out-dir .* is a file"):
        check_writable(a_file, "--out-dir", folder=True)
    assert check_writable(tmp_path / "new" / "r.json", "--json") == tmp_path / "new" / "r.json"


# ---------------------------------------------------------------- checkpoints

def _state():
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    return model, {"model": model}


@pytest.mark.parametrize("content, names", [
    (b"", "truncated"),
    (b"PK\x03\x04 half a zip", "truncated"),
    (None, "not a training checkpoint"),
], ids=["empty", "truncated", "foreign"])
def test_unusable_checkpoint_files_say_what_to_do(tmp_path, content, names):
    path = tmp_path / "ck.pt"
    if content is None:
        torch.save({"weights": [1, 2, 3]}, path)
    else:
        path.write_bytes(content)
    for read in (lambda: checkpoint_info(path), lambda: load_checkpoint(path, np.random.default_rng(0), _state()[1])):
        with pytest.raises(CheckpointError, match=names) as raised:
            read()
        assert "delete" in str(raised.value)


def test_a_truncated_real_checkpoint_is_refused_with_the_fix(tmp_path):
    from metacourse.train import History, save_checkpoint

    path = tmp_path / "ck.pt"
    save_checkpoint(path, 3, np.random.default_rng(0), History(), _state()[1])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="delete it"):
        checkpoint_info(path)


# ---------------------------------------------------------------- environments

def _envs():
    from metacourse.rl.envs import bandit, cartpole, navigation, pendulum

    return bandit, cartpole, navigation, pendulum


ENV_CASES = [
    (lambda b, c, n, p: b.sample_arm_means(0, 3, 5), TypeError, "rng"),
    (lambda b, c, n, p: b.sample_arm_means(np.random.default_rng(0), 0, 5), ValueError, "n_tasks"),
    (lambda b, c, n, p: b.sample_arm_means(np.random.default_rng(0), 3, -1), ValueError, "n_arms"),
    (lambda b, c, n, p: b.BernoulliBanditEnv(5).set_task({"means": [0.5] * 4}), ValueError, "5 arm means"),
    (lambda b, c, n, p: b.BernoulliBanditEnv(5).set_task({"means": [2.0] * 5}), ValueError, "[0, 1]"),
    (lambda b, c, n, p: b.BernoulliBanditEnv(5).set_task([0.5] * 5), TypeError, "means"),
    (lambda b, c, n, p: b.BernoulliBanditEnv(5, render_mode="human"), ValueError, "render_mode"),
    (lambda b, c, n, p: n.Navigation2DEnv().set_task({"goal": [float("nan"), 0.0]}), ValueError, "goal"),
    (lambda b, c, n, p: n.Navigation2DEnv().set_task({"target": [0.0, 0.0]}), TypeError, "goal"),
    (lambda b, c, n, p: c.PoleLengthCartPoleEnv(length_range=(1.0, 0.5)), ValueError, "length_range"),
    (lambda b, c, n, p: p.sample_pendulums(np.random.default_rng(0), 0), ValueError, "n_tasks"),
]


@pytest.mark.parametrize("call, error, names", ENV_CASES, ids=[f"env-{i}" for i in range(len(ENV_CASES))])
def test_environments_refuse_bad_input(call, error, names):
    pytest.importorskip("gymnasium")
    with pytest.raises(error) as raised:
        call(*_envs())
    assert names in str(raised.value)



def test_an_unwritable_json_is_refused_before_torch_is_imported():
    """The cheapest checks come first: a bad --json costs a fraction of a second, not an import of torch."""
    import subprocess
    import sys

    code = ("import sys\nfrom metacourse.cli import main\n"
            "code = main(['reproduce', 'sinusoid', '--json', '/proc/nowhere/r.json'])\n"
            "print(code, 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False"], done.stdout + done.stderr
    assert "--json '/proc/nowhere/r.json' cannot be written" in done.stderr
    assert "Traceback" not in done.stderr
