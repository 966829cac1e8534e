import json

import numpy as np
import pytest

from metacourse import cli
from metacourse.experiments import mbmpo as experiment
from metacourse.reproduce import RunOptions

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_plan(iterations: int) -> experiment.PendulumBudget:
    return experiment.budget(RunOptions(fast=True)).replace(
        mbmpo_iterations=iterations, meta_steps_per_iteration=1, imagined_episodes=2, max_model_epochs=2,
        test_tasks=2, policy_hidden=(8,), model_hidden=(16,))


def test_an_interrupted_mbmpo_run_resumes_to_the_same_curve(tmp_path):
    """Policy, ensemble, real data and both random streams live in the checkpoint: 1 iteration,
    then 1 more from the checkpoint (a longer budget continues a run), equal 2 iterations in one go."""
    straight = experiment.train_mbmpo(RunOptions(out_dir=str(tmp_path / "a"), progress=False), tiny_plan(2))
    experiment.train_mbmpo(RunOptions(out_dir=str(tmp_path / "b"), progress=False), tiny_plan(1))
    (saved,) = (tmp_path / "b" / "checkpoints").glob("*mbmpo-seed0-*.pt")
    resumed = experiment.train_mbmpo(RunOptions(out_dir=str(tmp_path / "b"), progress=False), tiny_plan(2))
    assert [p["real_steps"] for p in straight["curve"]] == [1000, 2000, 3000]
    assert resumed["curve"] == straight["curve"]
    assert resumed["real_steps"] == straight["real_steps"] == 3000
    assert resumed["resumed"] and not straight["resumed"] and saved.exists()


def test_steps_to_reach_takes_the_first_evaluation_at_or_above_the_target():
    curve = [{"real_steps": 10, "return": -900.0}, {"real_steps": 20, "return": -300.0},
             {"real_steps": 30, "return": -200.0}]
    assert experiment.steps_to_reach(curve, -300.0) == 20
    assert experiment.steps_to_reach(curve, -100.0) is None


def test_fast_run_returns_rows_for_every_method_and_a_plot(tmp_path, capsys):
    out = tmp_path / "mbmpo.json"
    code = cli.main(["reproduce", "mbmpo-pendulum", "--fast", "--no-progress", "--out-dir", str(tmp_path),
                     "--json", str(out)])
    assert code == 0 and "FAST mode" in capsys.readouterr().out
    result = json.loads(out.read_text())
    metrics = {(row["method"].split()[0], row["metric"]) for row in result["rows"]}
    for method in ("MB-MPO", "PPO", "MAML-RL"):
        assert {(method, "final_return"), (method, "real_steps_to_target"), (method, "real_steps_total")} <= metrics
    budget, measured = result["budget"], result["measured"]
    assert measured["curves"]["MB-MPO"][-1]["real_steps"] == 5 * 200 * (1 + budget["mbmpo_iterations"])
    assert measured["steps_to_target"]["PPO"] is not None  # PPO reaches its own final return
    assert set(measured["method_cpu_seconds"]) == {"MB-MPO", "PPO", "MAML-RL"} and measured["cpu_seconds"] > 0
    assert "curves" not in budget  # the plan holds settings only
    assert open(result["artifacts"]["plot"], "rb").read(4) == b"\x89PNG"


def test_model_history_trains_mbmpo_anew_but_reuses_the_baselines_checkpoint(tmp_path):
    """--model-history changes MB-MPO's models only: PPO's checkpoint (same seed and setting) is
    shared, MB-MPO gets its own, and the plot is named after the history."""
    args = ["reproduce", "mbmpo-pendulum", "--fast", "--no-progress", "--methods", "mbmpo+ppo",
            "--out-dir", str(tmp_path)]
    assert cli.main([*args, "--json", str(tmp_path / "h0.json")]) == 0
    assert cli.main([*args, "--model-history", "2", "--json", str(tmp_path / "h2.json")]) == 0
    checkpoints = {path.name.split("-seed0-")[0] for path in (tmp_path / "checkpoints").glob("*.pt")}
    assert sorted(checkpoints) == ["mbmpo-pendulum-mbmpo", "mbmpo-pendulum-ppo"]
    assert len(list((tmp_path / "checkpoints").glob("*mbmpo-seed0-*.pt"))) == 2
    assert len(list((tmp_path / "checkpoints").glob("*ppo-seed0-*.pt"))) == 1
    result = json.loads((tmp_path / "h2.json").read_text())
    assert result["budget"]["model_history"] == 2
    assert result["artifacts"]["plot"].endswith("mbmpo-pendulum-h2-seed0.png")
    h0 = json.loads((tmp_path / "h0.json").read_text())["measured"]["curves"]
    h2 = result["measured"]["curves"]
    assert h2["PPO"] == h0["PPO"] and h2["MB-MPO"] != h0["MB-MPO"]


@pytest.mark.parametrize("setting, low, high", [("family", 0.5, 1.5), ("narrow", 0.8, 1.2), ("standard", 1.0, 1.0)])
def test_each_pendulum_setting_draws_from_its_range_and_advances_the_rng_alike(setting, low, high):
    """--pendulums picks the range of mass and length; every setting consumes the same random
    numbers, so the rest of a run (action noise, later draws) does not depend on the setting."""
    plan = experiment.budget(RunOptions(fast=True)).replace(pendulums=setting)
    rng = np.random.default_rng(0)
    env = experiment.draw_pendulums(plan, rng, 200)
    for values in (env.masses, env.lengths):
        assert low <= float(values.min()) and float(values.max()) <= high
        assert float(values.max() - values.min()) >= (0.9 * (high - low))  # the whole range is used
    assert rng.random() == pytest.approx(_after_draws(200))


def _after_draws(n: int) -> float:
    rng = np.random.default_rng(0)
    rng.uniform(size=2 * n)
    return rng.random()


def test_an_unknown_pendulum_setting_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "mbmpo-pendulum", "--fast", "--pendulums", "wide"])
    assert "narrow" in capsys.readouterr().err
