import json

import numpy as np
import pytest

from metacourse import cli
from metacourse.experiments import rl2 as experiment


def test_paper_tables_are_complete():
    assert set(experiment.PAPER_BANDITS) == {(n, k) for n in (10, 100, 500) for k in (5, 10, 50)}
    assert all(len(row) == 8 and "RL²" in row for row in experiment.PAPER_BANDITS.values())
    assert experiment.PAPER_BANDITS[(100, 5)]["UCB1"] == 78.0
    assert set(experiment.PAPER_MDPS) == {10, 25, 50, 75, 100}
    assert experiment.PAPER_MDPS[10]["RL²"] == 156.2


def test_student_t_tail_matches_tables():
    assert experiment.student_t_sf(2.228, 10) == pytest.approx(0.025, abs=2e-4)   # t_{.975, 10}
    assert experiment.student_t_sf(1.645, 1e6) == pytest.approx(0.05, abs=2e-4)   # normal limit
    assert experiment.student_t_sf(0.0, 7) == pytest.approx(0.5)
    assert experiment.student_t_sf(-2.228, 10) == pytest.approx(0.975, abs=2e-4)


def test_significance_marks_the_best_and_its_ties():
    noise = np.random.default_rng(0).normal(0.0, 1.0, 1000)
    values = {"b": noise + 0.98, "a": noise + 1.0, "c": noise}
    best, p_values = experiment.significance(values)
    assert best == "a" and p_values["b"] > 0.05 and p_values["c"] < 1e-10


def test_reproduce_bandits_fast_writes_paper_beside_ours(tmp_path, capsys):
    out = tmp_path / "bandits.json"
    code = cli.main(["reproduce", "rl2-bandits", "--fast", "--arms", "5", "--pulls", "10",
                     "--no-progress", "--out-dir", str(tmp_path), "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "FAST mode" in printed and "UCB1" in printed and "RL²" in printed
    result = json.loads(out.read_text())
    assert result["experiment"] == "rl2-bandits-k5-n10"
    methods = [row["method"] for row in result["rows"]]
    assert methods == ["Random", "Gittins", "TS", "OTS", "UCB1", "ε-Greedy", "Greedy", "RL²"]
    assert result["rows"][4]["paper"] == 6.7 and result["rows"][4]["ours"]["n"] == 100
    assert 4.0 < result["rows"][0]["ours"]["mean"] < 6.0
    assert "c" in result["measured"]["hyperparameters"]["UCB1"]
    assert result["budget"]["rl2"]["updates"] == 5
    curve = result["measured"]["rl2"]["learning_curve"]
    assert "learning_curve" not in result["budget"]["rl2"]  # settings only in the plan
    assert curve and {"update", "validation_total_reward", "wall_seconds"} <= set(curve[0])
    assert any("np.argmax tie-breaking" in note for note in result["notes"])
    assert any(note.startswith("best:") for note in result["notes"])
    assert len(list(tmp_path.glob("rl2-bandits-k5-n10-seed0-u5x32-*.curve.jsonl"))) == 1  # named by its plan


def test_reproduce_mdp_baselines_fast(tmp_path, capsys):
    out = tmp_path / "mdp.json"
    code = cli.main(["reproduce", "rl2-mdp", "--fast", "--episodes", "10", "--method", "baselines",
                     "--no-progress", "--out-dir", str(tmp_path), "--json", str(out)])
    assert code == 0
    rows = {row["method"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"Random", "PSRL", "OPSRL", "UCRL2", "BEB", "ε-Greedy", "Greedy"}
    assert rows["PSRL"]["paper"] == 138.1
    assert rows["PSRL"]["ours"]["mean"] > rows["Random"]["ours"]["mean"] + 20
    notes = json.loads(out.read_text())["notes"]
    assert any("posterior-mean rewards" in note for note in notes)
    assert any(note.startswith("BEB with empirical reward means") for note in notes)


def test_a_single_method_and_bad_options(tmp_path, capsys):
    code = cli.main(["reproduce", "rl2-bandits", "--fast", "--method", "ucb1", "--no-progress",
                     "--out-dir", str(tmp_path)])
    assert code == 0
    assert "UCB1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "rl2-bandits", "--arms", "7"])


def test_training_time_adds_every_session_of_a_resumed_run():
    point = lambda wall, cpu: {"wall_seconds": wall, "cpu_seconds": cpu}  # noqa: E731
    one_session = [point(10, 8), point(20, 16)]
    assert experiment.training_time(one_session, (21, 17)) == (21, 17)
    resumed = [point(10, 8), point(20, 16), point(5, 4), point(12, 9)]  # clocks restart at 5
    assert experiment.training_time(resumed, (13, 10)) == (33, 26)
    # a finished run resumed only to be evaluated: the last session trained for 0 s
    assert experiment.training_time(one_session, (0.0, 0.0)) == (20, 16)
    assert experiment.training_time([], (3.0, 2.0)) == (3.0, 2.0)
