"""Package hygiene: what `import metacourse` loads, the command line, the experiment registry."""

import json
import subprocess
import sys

import pytest
import torch

from metacourse import cli
from metacourse.reproduce import (
    Argument,
    Experiment,
    experiment_names,
    get_experiment,
    register,
    with_defaults,
)


def test_import_is_light():
    code = ("import sys, metacourse; bad = [m for m in ('matplotlib', 'torchvision', 'learn2learn') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registry_knows_sinusoid_and_names_unknown_experiments():
    assert "sinusoid" in experiment_names()
    with pytest.raises(ValueError, match="known: .*sinusoid"):
        get_experiment("sinusiod")


def test_register_pins_threads_while_the_experiment_runs(monkeypatch):
    from metacourse import reproduce

    monkeypatch.setattr(reproduce, "_REGISTRY", {})
    seen = []
    run = register("probe-threads", "records its thread count", threads=1)(
        lambda options: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run(None)
        get_experiment("probe-threads").run(None)
        assert seen == [1, 1] and torch.get_num_threads() == 2  # pinned inside, restored after
    finally:
        torch.set_num_threads(before)


def test_experiment_options_defaults_and_errors():
    experiment = Experiment("x", "d", run=lambda options: None,
                            arguments=(Argument("--arms", int, 5, (5, 10)),))
    assert with_defaults(experiment, {}) == {"arms": 5}
    with pytest.raises(ValueError, match="choose one of"):
        with_defaults(experiment, {"arms": 7})
    with pytest.raises(ValueError, match="its options: --arms"):
        with_defaults(experiment, {"pulls": 10})


def test_reproduce_sinusoid_writes_the_json_schema(tmp_path, capsys):
    out = tmp_path / "result.json"
    code = cli.main(["reproduce", "sinusoid", "--fast", "--meta-steps", "20", "--no-progress",
                     "--out-dir", str(tmp_path), "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "MAML" in printed and "FAST mode" in printed
    result = json.loads(out.read_text())
    assert {"experiment", "seed", "device", "wall_seconds", "budget", "rows"} <= set(result)
    assert result["budget"]["meta_steps"] == 20
    metrics = {(r["method"], r["metric"]) for r in result["rows"]}
    assert ("MAML", "mse_5shot_10step") in metrics and ("pretrain on all tasks", "mse_5shot_1step") in metrics
    row = result["rows"][0]
    assert row["paper"] == 0.67 and {"mean", "ci95", "median", "n"} == set(row["ours"])
    assert (tmp_path / "sinusoid-seed0.png").exists()


def test_cli_errors_are_clear(capsys):
    assert cli.main(["reproduce", "no-such-experiment"]) == 2
    assert "known:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "sinusoid", "--meta-steps", "0"])
