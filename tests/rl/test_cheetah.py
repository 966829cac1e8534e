import importlib.util
import json
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import metacourse.rl.envs  # noqa: F401  (registers the ids)
from metacourse import cli
from metacourse.experiments import maml_rl_cheetah as experiment
from metacourse.functional import params_of
from metacourse.reproduce import RunOptions
from metacourse.rl import maml_rl
from metacourse.rl.envs.cheetah import (
    CTRL_COST,
    BatchedCheetah,
    HalfCheetahDirEnv,
    HalfCheetahVelEnv,
    sample_directions,
)
from metacourse.rl.task_env import check_task_env

needs_mujoco = pytest.mark.skipif(importlib.util.find_spec("mujoco") is None,
                                  reason='MuJoCo not installed: pip install "metacourse[mujoco]" (in the dev extra)')
pytestmark = pytest.mark.usefixtures("one_thread")


@needs_mujoco
@pytest.mark.parametrize("env_id", ["metacourse/HalfCheetahDir-v0", "metacourse/HalfCheetahVel-v0"])
def test_passes_gymnasium_check_env_and_is_registered_with_a_200_step_limit(env_id):
    env = gym.make(env_id)
    assert env.spec.max_episode_steps == 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # HalfCheetah-v5's observations are unbounded, as Gymnasium declares them
        warnings.filterwarnings("ignore", message=".*Box observation space (minimum|maximum) value is")
        check_env(env.unwrapped)
    env.close()


@needs_mujoco
@pytest.mark.parametrize("env_class, key", [(HalfCheetahDirEnv, "direction"), (HalfCheetahVelEnv, "goal_velocity")])
def test_task_api_round_trip_and_seeded_reset(env_class, key):
    env, other = env_class(), env_class()
    obs, _ = env.reset(seed=3)
    other_obs, _ = other.reset(seed=3)
    assert obs.shape == (17,) and np.array_equal(obs, other_obs)
    assert env.get_task() == other.get_task()  # reset(seed) draws the same task
    env.reset(seed=5)
    tasks = env.sample_tasks(200)
    env.reset(seed=5)
    assert env.sample_tasks(200) == tasks  # seeded through reset(seed=...)
    values = np.array([task[key] for task in tasks])
    if key == "direction":
        assert set(values) == {-1.0, 1.0} and abs(values.mean()) < 0.2
    else:
        assert values.min() >= 0.0 and values.max() <= 2.0 and values.std() > 0.4
    env.set_task(tasks[7])
    env.reset()
    env.reset()
    assert env.get_task() == tasks[7]  # persists across resets
    env.reset(options={"task": {key: 1.0}})
    assert env.get_task() == {key: 1.0}


@needs_mujoco
def test_bad_tasks_say_what_to_do():
    env = HalfCheetahDirEnv()
    with pytest.raises(ValueError, match="no task yet"):
        env.get_task()
    with pytest.raises(TypeError, match="'direction'"):
        env.set_task({"goal_velocity": 1.0})
    with pytest.raises(ValueError, match="-1.0 .* or 1.0"):
        env.set_task({"direction": 0.5})
    with pytest.raises(ValueError, match="finite"):
        HalfCheetahVelEnv().set_task({"goal_velocity": float("nan")})
    with pytest.raises(TypeError, match="numpy Generator"):
        sample_directions(0, 3)
    with pytest.raises(ValueError, match="family"):
        BatchedCheetah("ant", [{"direction": 1.0}])


@needs_mujoco
def test_flipping_the_direction_flips_the_forward_reward_and_keeps_the_control_cost():
    actions = np.random.default_rng(0).uniform(-1.5, 1.5, size=(30, 6))  # some outside [-1, 1]
    runs = {}
    for direction in (1.0, -1.0):
        env = HalfCheetahDirEnv()
        env.reset(seed=1, options={"task": {"direction": direction}})
        runs[direction] = [env.step(action) for action in actions]
    for (obs_f, r_f, *_, info_f), (obs_b, r_b, *_, info_b), action in zip(runs[1.0], runs[-1.0], actions):
        assert np.array_equal(obs_f, obs_b)  # the task changes only the reward
        ctrl = CTRL_COST * np.sum(np.clip(action, -1, 1) ** 2)
        assert info_f["reward_forward"] == pytest.approx(info_f["x_velocity"])
        assert info_b["reward_forward"] == pytest.approx(-info_b["x_velocity"])
        assert r_f == pytest.approx(info_f["x_velocity"] - ctrl) and r_b == pytest.approx(-info_b["x_velocity"] - ctrl)


@needs_mujoco
def test_goal_velocity_reward_is_minus_the_distance_to_the_goal_velocity():
    env = HalfCheetahVelEnv()
    env.reset(seed=0, options={"task": {"goal_velocity": 1.5}})
    for action in np.random.default_rng(1).uniform(-1, 1, size=(10, 6)):
        _, reward, terminated, truncated, info = env.step(action)
        assert reward == pytest.approx(-abs(info["x_velocity"] - 1.5) - CTRL_COST * np.sum(action ** 2))
        assert not terminated and not truncated


@needs_mujoco
def test_batched_adapter_matches_the_single_envs_and_feeds_maml_rl_rollout():
    tasks = [{"direction": 1.0}, {"direction": -1.0}, {"direction": 1.0}]
    env = BatchedCheetah("dir", tasks, horizon=15)
    obs = env.reset(2, torch.Generator().manual_seed(0))
    assert obs.shape == (3, 2, 17) and obs.dtype == torch.float32
    actions = torch.randn(3, 2, 6, generator=torch.Generator().manual_seed(1))
    next_obs, rewards, terminated, truncated = env.step(actions)
    assert next_obs.shape == (3, 2, 17) and rewards.shape == (3, 2) and not (terminated | truncated).any()
    # the same seeds and actions in a single Gymnasium env give the same step
    seeds = torch.randint(0, 2**31 - 1, (3, 2), generator=torch.Generator().manual_seed(0))
    single = HalfCheetahDirEnv()
    single_obs, _ = single.reset(seed=int(seeds[1, 0]), options={"task": tasks[1]})
    assert torch.allclose(obs[1, 0], torch.as_tensor(single_obs, dtype=torch.float32))
    _, single_reward, *_ = single.step(actions[1, 0].double().numpy())
    assert rewards[1, 0].item() == pytest.approx(single_reward, rel=1e-5)
    with pytest.raises(ValueError, match=r"\(3, 2, 6\)"):
        env.step(torch.zeros(3, 2, 5))
    policy = maml_rl.GaussianPolicy(17, 6, (8,))
    env.set_tasks(tasks[:2])
    trajectories = maml_rl.rollout(policy, {n: p.detach() for n, p in params_of(policy).items()}, env, 4,
                                   torch.Generator().manual_seed(2))
    assert trajectories.obs.shape == (2, 4, 15, 17) and trajectories.rewards.shape == (2, 4, 15)
    assert trajectories.truncated[..., -1].all() and not trajectories.truncated[..., :-1].any()
    env.close()


@needs_mujoco
def test_batched_cheetah_keeps_the_task_env_contract():
    env = BatchedCheetah("vel", [{"goal_velocity": 0.5}, {"goal_velocity": 1.5}], horizon=2)
    check_task_env(env, lambda obs: torch.full((*obs.shape[:-1], 6), 0.3), n_episodes=2, n_steps=5)
    env.close()


def test_without_mujoco_making_an_env_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco", None)  # `import mujoco` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "metacourse\[mujoco\]"'):
        HalfCheetahDirEnv()
    with pytest.raises(ImportError, match=r'pip install "metacourse\[mujoco\]"'):
        gym.make("metacourse/HalfCheetahVel-v0")
    with pytest.raises(ImportError, match=r'pip install "metacourse\[mujoco\]"'):
        BatchedCheetah("vel", [{"goal_velocity": 1.0}]).reset(1, torch.Generator())


def test_importing_the_package_and_listing_experiments_needs_no_mujoco():
    code = ("import sys; sys.modules['mujoco'] = None\n"
            "import metacourse, metacourse.rl.envs, gymnasium\n"
            "from metacourse.reproduce import experiment_names\n"
            "assert 'maml-rl-cheetah-dir' in experiment_names()\n"
            "assert 'metacourse/HalfCheetahDir-v0' in gymnasium.registry\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_paper_row_is_table_5_and_budgets_are_stated():
    assert experiment.PAPER["dir"]["MAML"] == {0: -50.69, 1: 293.19, 2: 313.48, 3: 315.65}
    paper = experiment.budget(RunOptions(extra={"budget": "paper"}))
    assert (paper["meta_steps"], paper["meta_batch_size"], paper["episodes_per_task"], paper["horizon"]) \
        == (500, 40, 20, 200)
    assert paper.hidden == (100, 100) and paper["inner_lr"] == 0.1 and paper["max_kl"] == 0.01
    assert experiment.budget(RunOptions(fast=True))["horizon"] == 20


@needs_mujoco
def test_fast_run_prints_paper_beside_ours_and_resumes_from_its_checkpoint(tmp_path, capsys):
    out = tmp_path / "cheetah.json"
    args = ["reproduce", "maml-rl-cheetah-dir", "--fast", "--no-progress", "--out-dir", str(tmp_path),
            "--json", str(out)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "FAST mode" in printed and "293.19" in printed and "return_1step" in printed
    result = json.loads(out.read_text())
    rows = {(row["method"], row["metric"]): row for row in result["rows"]}
    assert rows[("MAML", "return_1step")]["paper"] == 293.19
    assert rows[("MAML", "return_3step")]["ours"]["n"] == 4
    assert rows[("MAML, backward tasks", "return_1step")]["ours"]["n"] == 2
    assert result["budget"]["meta_steps"] == 2 and result["measured"]["cpu_seconds"] > 0
    assert (tmp_path / "maml-rl-cheetah-dir-seed0.png").exists()
    assert cli.main(args) == 0  # the finished checkpoint: no training, the same policy and numbers
    again = {(row["method"], row["metric"]): row for row in json.loads(out.read_text())["rows"]}
    for key, row in rows.items():
        assert again[key]["ours"]["mean"] == pytest.approx(row["ours"]["mean"])


@needs_mujoco
def test_goal_velocity_experiment_runs_without_a_paper_table(tmp_path, capsys):
    assert cli.main(["reproduce", "maml-rl-cheetah-vel", "--fast", "--no-progress", "--out-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "Fig. 5 only" in printed and "FAST mode" in printed
