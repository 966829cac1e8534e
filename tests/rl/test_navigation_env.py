import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import metacourse.rl.envs  # noqa: F401  (registers the ids)
from metacourse.rl.envs import BatchedNavigation2D, Navigation2DEnv, sample_goals
from metacourse.rl.task_env import check_task_env, play


def test_passes_gymnasium_check_env_and_is_registered_with_a_100_step_limit():
    env = gym.make("metacourse/Navigation2D-v0")
    assert env.spec.max_episode_steps == 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_task_api_round_trip_and_seeded_reset():
    env = Navigation2DEnv()
    obs, _ = env.reset(seed=3)
    first_goal = env.get_task()["goal"]
    assert np.array_equal(obs, np.zeros(2, dtype=np.float32))
    other = Navigation2DEnv()
    other.reset(seed=3)
    assert np.array_equal(other.get_task()["goal"], first_goal)  # reset(seed) draws the same goal
    tasks = env.sample_tasks(50)
    goals = np.stack([t["goal"] for t in tasks])
    assert goals.shape == (50, 2) and goals.min() >= -0.5 and goals.max() <= 0.5
    env.set_task(tasks[4])
    env.reset()
    env.reset()
    assert np.array_equal(env.get_task()["goal"], tasks[4]["goal"])  # persists across resets
    env.reset(options={"task": {"goal": [0.3, -0.2]}})
    assert np.allclose(env.get_task()["goal"], [0.3, -0.2])


def test_bad_tasks_and_generators_say_what_to_do():
    env = Navigation2DEnv()
    with pytest.raises(ValueError, match="no task yet"):
        env.get_task()
    with pytest.raises(TypeError, match="key 'goal'"):
        env.set_task({"length": 1.0})
    with pytest.raises(ValueError, match="sample_tasks"):
        env.set_task({"goal": [1.0, 2.0, 3.0]})
    with pytest.raises(TypeError, match="numpy Generator"):
        sample_goals(0, 3)
    with pytest.raises(ValueError, match="n_tasks, 2"):
        BatchedNavigation2D(np.zeros((3, 3)))


def test_reward_is_minus_distance_actions_are_clipped_and_the_goal_ends_the_episode():
    env = Navigation2DEnv()
    env.reset(seed=0, options={"task": {"goal": [0.1, 0.0]}})
    obs, reward, terminated, truncated, info = env.step(np.array([0.5, -0.03]))  # x clipped to 0.1
    assert np.allclose(obs, [0.1, -0.03])
    assert reward == pytest.approx(-0.03) and info["distance"] == pytest.approx(0.03)
    assert not terminated and not truncated
    obs, reward, terminated, *_ = env.step(np.array([0.0, 0.025]))
    assert terminated and reward == pytest.approx(-0.005)


def test_batched_twin_matches_the_gymnasium_env_step_for_step():
    rng = np.random.default_rng(0)
    goals = np.array([[0.05, 0.05], [-0.4, 0.3], [0.2, -0.45]])
    batched = BatchedNavigation2D(goals, dtype=torch.float64)
    positions = batched.reset(2, torch.Generator())
    assert positions.shape == (3, 2, 2) and torch.all(positions == 0)
    singles = []
    for goal in goals:
        env = Navigation2DEnv()
        env.reset(seed=0, options={"task": {"goal": goal}})
        singles.append([env, Navigation2DEnv()])
        singles[-1][1].reset(seed=0, options={"task": {"goal": goal}})
    finished = np.zeros((3, 2), dtype=bool)
    for t in range(30):
        actions = rng.normal(0.0, 0.08, size=(3, 2, 2))
        if t < 2:
            actions[0, 0] = 0.025  # episode (0, 0) walks straight onto its goal
        positions, rewards, terminated, truncated = batched.step(torch.as_tensor(actions))
        assert not truncated.any()  # 30 steps are within the 100-step limit
        for i in range(3):
            for e in range(2):
                if finished[i, e]:
                    assert rewards[i, e] == 0 and not terminated[i, e]
                    continue
                obs, reward, single_terminated, *_ = singles[i][e].step(actions[i, e])
                assert np.allclose(positions[i, e].numpy(), obs, atol=1e-6)
                assert rewards[i, e].item() == pytest.approx(reward)
                assert bool(terminated[i, e]) == single_terminated
                finished[i, e] |= single_terminated
    assert finished[0, 0]


def test_batched_env_keeps_the_task_env_contract():
    check_task_env(BatchedNavigation2D([[0.05, 0.0], [0.3, -0.2]], horizon=3),
                   lambda obs: torch.full(obs.shape, 0.05), n_steps=7)


def test_truncated_at_the_horizon_then_padding_until_restart():
    env = BatchedNavigation2D([[0.4, 0.4]], horizon=3)
    record = play(env, lambda obs, last: torch.full(obs.shape, 0.1), 5, 2, torch.Generator())
    assert record.truncated[0, 0].tolist() == [False, False, True, False, False]
    assert not record.terminated.any()
    assert record.rewards[0, 0, 3:].eq(0).all() and torch.equal(record.obs[0, 0, 3], record.obs[0, 0, 4])
    assert record.mask[0, 0].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    restarted = play(env, lambda obs, last: torch.full(obs.shape, 0.1), 4, 1, torch.Generator(), restart=True)
    assert torch.equal(restarted.obs[0, 0, 3], torch.zeros(2))  # a new episode at the origin


def test_batched_env_says_to_reset_and_names_bad_restarts():
    env = BatchedNavigation2D([[0.1, 0.1]])
    with pytest.raises(RuntimeError, match="env.reset"):
        env.step(torch.zeros(1, 1, 2))
    env.reset(2)
    with pytest.raises(ValueError, match="bool tensor of shape"):
        env.restart(torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"actions must have shape \(1, 2, 2\)"):
        env.step(torch.zeros(1, 3, 2))
