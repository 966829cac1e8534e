import json

import pytest

from metacourse import cli
from metacourse.experiments import maml_rl as experiment
from metacourse.reproduce import RunOptions


def test_paper_row_is_table_4():
    assert experiment.PAPER["MAML"] == {0: -40.41, 1: -11.68, 2: -3.33, 3: -3.23}
    assert experiment.budget(RunOptions())["meta_batch_size"] == 20
    assert experiment.budget(RunOptions())["episodes_per_task"] == 20


def test_fast_run_prints_paper_beside_ours_and_resumes_from_its_checkpoint(tmp_path, capsys):
    out = tmp_path / "navigation.json"
    args = ["reproduce", "maml-rl-navigation", "--fast", "--no-progress", "--out-dir", str(tmp_path),
            "--json", str(out)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "FAST mode" in printed and "-40.41" in printed and "return_1step" in printed
    result = json.loads(out.read_text())
    rows = {(row["method"], row["metric"]): row for row in result["rows"]}
    assert rows[("MAML", "return_1step")]["paper"] == -11.68
    assert rows[("MAML", "return_3step")]["ours"]["n"] == 8
    assert rows[("random init", "return_0step")]["paper"] is None
    assert result["budget"]["meta_steps"] == 3 and result["measured"]["train_cpu_seconds"] >= 0
    assert result["measured"]["cpu_seconds"] > 0 and result["wall_seconds"] > 0
    assert result["budget"]["env_steps"] == 3 * 4 * 4 * 100 * 2 and "train_cpu_seconds" not in result["budget"]
    curve = json.loads((tmp_path / "maml-rl-navigation-seed0.curve.json").read_text())
    assert len(curve["return_after"]) == 3
    assert (tmp_path / "maml-rl-navigation-seed0.png").exists()
    # a second run finds the finished checkpoint: no training, the same trained policy
    assert cli.main(args) == 0
    again = {(row["method"], row["metric"]): row for row in json.loads(out.read_text())["rows"]}
    for key, row in rows.items():
        assert again[key]["ours"]["mean"] == pytest.approx(row["ours"]["mean"])
    assert len(json.loads((tmp_path / "maml-rl-navigation-seed0.curve.json").read_text())["return_after"]) == 3


def test_bad_option_is_refused():
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "maml-rl-navigation", "--exact-fisher", "2"])
