import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import metacourse.rl.envs  # noqa: F401  (registers the ids)
from metacourse.rl.envs import BatchedNavigation2D, Navigation2DEnv, sample_goals


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
    positions = batched.reset(n_episodes=2)
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
        positions, rewards, dones = batched.step(torch.as_tensor(actions))
        for i in range(3):
            for e in range(2):
                if finished[i, e]:
                    assert rewards[i, e] == 0 and not dones[i, e]
                    continue
                obs, reward, terminated, *_ = singles[i][e].step(actions[i, e])
                assert np.allclose(positions[i, e].numpy(), obs, atol=1e-6)
                assert rewards[i, e].item() == pytest.approx(reward)
                assert bool(dones[i, e]) == terminated
                finished[i, e] |= terminated
    assert finished[0, 0]
