import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import metacourse.rl.envs  # noqa: F401  (registers the ids)
from metacourse.rl.envs import BatchedBernoulliBandit, BernoulliBanditEnv, sample_arm_means
from metacourse.rl.task_env import check_task_env, play


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


def test_batched_bandit_keeps_the_task_env_contract():
    env = BatchedBernoulliBandit.sample(4, 3, np.random.default_rng(0))
    check_task_env(env, lambda obs: (torch.arange(obs.numel()) % 3).reshape(obs.shape))
    assert env.n_tasks == 4 and env.horizon == 1 and env.n_actions == 3


def test_batched_bandit_matches_its_means():
    env = BatchedBernoulliBandit(np.array([[0.1, 0.9], [0.6, 0.3]]))
    arms = torch.tensor([[1] * 500, [0] * 500])
    rollout = play(env, lambda obs, last: arms, 10, 500, torch.Generator().manual_seed(0), restart=True)
    assert (rollout.obs == 0).all() and rollout.terminated.all() and not rollout.truncated.any()
    assert np.allclose(rollout.rewards.mean((1, 2)).numpy(), [0.9, 0.6], atol=0.02)
    assert env.expected_rewards(torch.tensor([[0], [1]])).flatten().tolist() == [0.1, 0.3]


def test_a_pulled_episode_that_is_not_restarted_is_padding():
    env = BatchedBernoulliBandit(np.ones((2, 3)))  # every pull pays 1
    env.reset(2, torch.Generator().manual_seed(0))
    first = env.step(torch.zeros(2, 2, dtype=torch.long))
    assert first.rewards.tolist() == [[1.0, 1.0]] * 2 and first.terminated.all()
    env.restart(torch.tensor([[True, False], [False, False]]))
    second = env.step(torch.zeros(2, 2, dtype=torch.long))
    assert second.rewards.tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert second.terminated.tolist() == [[True, False], [False, False]] and not second.truncated.any()


def test_batched_bandit_steps_like_the_gymnasium_env():
    """Step for step on tasks whose means are 0 or 1 (no luck involved): the same rewards and flags."""
    means = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    batched, singles = BatchedBernoulliBandit(means), [BernoulliBanditEnv(n_arms=3) for _ in means]
    obs = batched.reset(1, torch.Generator().manual_seed(0))
    for single, task in zip(singles, means):
        single.reset(seed=0, options={"task": {"means": task}})
    for arms in ([0, 0], [1, 2], [2, 1]):
        step = batched.step(torch.tensor(arms)[:, None])
        for i, single in enumerate(singles):
            single_obs, reward, terminated, truncated, _ = single.step(arms[i])
            assert (step.obs[i, 0], step.rewards[i, 0], step.terminated[i, 0], step.truncated[i, 0]) == \
                (single_obs, reward, terminated, truncated)
            single.reset()
        obs = batched.restart(step.terminated | step.truncated)
    assert (obs == 0).all()


def test_bad_batched_calls_say_what_to_do():
    env = BatchedBernoulliBandit(np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="call reset"):
        env.step(torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Generator"):
        env.reset(1, np.random.default_rng(0))
    env.reset(1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"shape \(n_tasks, n_episodes\) = \(2, 1\)"):
        env.step(torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="arms 0..2"):
        env.step(torch.full((2, 1), 3))
    with pytest.raises(ValueError, match=r"\(n_tasks, n_arms\)"):
        BatchedBernoulliBandit(np.full(3, 0.5))


def test_sampled_means_are_uniform():
    means = sample_arm_means(np.random.default_rng(0), 2000, 5)
    assert means.shape == (2000, 5) and 0 <= means.min() and means.max() <= 1
    assert abs(means.mean() - 0.5) < 0.01 and abs(means.var() - 1 / 12) < 0.005
    with pytest.raises(TypeError, match="default_rng"):
        sample_arm_means(0, 2, 2)
