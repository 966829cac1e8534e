import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metacourse.rl.envs  # noqa: F401  (registers the ids)
from metacourse.rl.envs import BatchedBernoulliBandit, BernoulliBanditEnv, sample_arm_means


def test_passes_gymnasium_check_env():
    for render_mode in (None, "ansi"):
        env = gym.make("metacourse/BernoulliBandit-v0", n_arms=4, render_mode=render_mode)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no warning from the checker either
            check_env(env.unwrapped)


def test_one_pull_per_episode_and_regret():
    env = BernoulliBanditEnv(n_arms=3)
    obs, info = env.reset(seed=0, options={"task": {"means": [0.2, 0.9, 0.5]}})
    assert obs == 0 and env.observation_space.contains(obs)
    obs, reward, terminated, truncated, info = env.step(0)
    assert terminated and not truncated and reward in (0.0, 1.0)
    assert info["regret"] == pytest.approx(0.7)


def test_reset_seed_makes_tasks_and_rewards_reproducible():
    def run(seed):
        env = BernoulliBanditEnv(n_arms=5)
        env.reset(seed=seed)
        rewards = [env.step(i % 5)[1] for i in range(50)]
        return env.get_task()["means"], rewards

    means_a, rewards_a = run(3)
    means_b, rewards_b = run(3)
    assert np.array_equal(means_a, means_b) and rewards_a == rewards_b
    assert not np.array_equal(run(4)[0], means_a)


def test_task_api_round_trip_and_persists_across_resets():
    env = BernoulliBanditEnv(n_arms=2)
    env.reset(seed=0)
    tasks = env.sample_tasks(3)
    assert len(tasks) == 3 and all(t["means"].shape == (2,) for t in tasks)
    env.set_task(tasks[1])
    env.reset()
    env.reset(seed=5)
    assert np.array_equal(env.get_task()["means"], tasks[1]["means"])
    got = env.get_task()
    got["means"][:] = 0  # a copy: editing it changes nothing
    assert np.array_equal(env.get_task()["means"], tasks[1]["means"])


def test_reward_frequencies_match_the_means():
    env = BernoulliBanditEnv(n_arms=2)
    env.reset(seed=1, options={"task": {"means": [0.25, 0.8]}})
    pulls = np.array([[env.step(arm)[1] for arm in (0, 1)] for _ in range(4000)])
    assert np.allclose(pulls.mean(axis=0), [0.25, 0.8], atol=0.03)


def test_bad_tasks_and_actions_say_what_to_do():
    env = BernoulliBanditEnv(n_arms=3)
    with pytest.raises(ValueError, match="call reset"):
        env.get_task()
    with pytest.raises(ValueError, match="3 arm means"):
        env.set_task({"means": [0.5, 0.5]})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        env.set_task({"means": [0.5, 1.5, 0.1]})
    with pytest.raises(TypeError, match="'means'"):
        env.set_task([0.1, 0.2, 0.3])
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not an arm"):
        env.step(3)


def test_vector_env_broadcasts_a_task_with_call():
    vec = gym.make_vec("metacourse/BernoulliBandit-v0", num_envs=3, vectorization_mode="sync",
                       n_arms=4)
    vec.reset(seed=0)
    task = {"means": np.array([0.0, 0.0, 1.0, 0.0])}
    vec.call("set_task", task)
    assert all(np.array_equal(t["means"], task["means"]) for t in vec.call("get_task"))
    _, rewards, terminated, _, _ = vec.step(np.array([2, 2, 0]))
    assert rewards.tolist() == [1.0, 1.0, 0.0] and terminated.all()
    vec.close()


def test_batched_bandit_matches_its_means():
    rng = np.random.default_rng(0)
    means = np.array([[0.1, 0.9], [0.6, 0.3]])
    env = BatchedBernoulliBandit(means, rng)
    assert env.reset().tolist() == [0, 0]
    totals = np.zeros(2)
    for _ in range(5000):
        states, rewards, done = env.step(np.array([1, 0]))
        totals += rewards
        assert done.all() and (states == 0).all()
    assert np.allclose(totals / 5000, [0.9, 0.6], atol=0.02)
    assert env.expected_rewards(np.array([0, 1])).tolist() == [0.1, 0.3]


def test_sampled_means_are_uniform():
    means = sample_arm_means(np.random.default_rng(0), 2000, 5)
    assert means.shape == (2000, 5) and 0 <= means.min() and means.max() <= 1
    assert abs(means.mean() - 0.5) < 0.01 and abs(means.var() - 1 / 12) < 0.005
    with pytest.raises(TypeError, match="default_rng"):
        sample_arm_means(0, 2, 2)
