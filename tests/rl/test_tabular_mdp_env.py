import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import metacourse.rl.envs  # noqa: F401  (registers the ids)
from metacourse.rl.envs import BatchedTabularMDP, TabularMDPEnv, sample_mdps, solve_finite_horizon
from metacourse.rl.task_env import check_task_env, play


def test_passes_gymnasium_check_env():
    for render_mode in (None, "ansi"):
        env = gym.make("metacourse/TabularMDP-v0", render_mode=render_mode)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            check_env(env.unwrapped)


def test_episode_terminates_after_the_horizon_from_state_zero():
    env = TabularMDPEnv(horizon=4)
    obs, info = env.reset(seed=0)
    assert obs == 0 and info["t"] == 0
    flags = [env.step(1)[2] for _ in range(4)]
    assert flags == [False, False, False, True]
    assert env.reset()[0] == 0


def test_sampled_tasks_follow_the_paper():
    transitions, means = sample_mdps(np.random.default_rng(0), 400)
    assert transitions.shape == (400, 10, 5, 10) and means.shape == (400, 10, 5)
    assert np.allclose(transitions.sum(-1), 1.0)
    # flat Dirichlet over 10 states: each probability has mean 1/10 and variance 9/1100
    assert abs(transitions.mean() - 0.1) < 1e-3 and abs(transitions.var() - 9 / 1100) < 5e-4
    assert abs(means.mean() - 1.0) < 0.02 and abs(means.std() - 1.0) < 0.02


def test_seeded_reset_reproduces_task_and_trajectory():
    def run():
        env = TabularMDPEnv()
        env.reset(seed=11)
        return env.get_task()["reward_means"], [env.step(k % 5)[:2] for k in range(10)]

    (means_a, traj_a), (means_b, traj_b) = run(), run()
    assert np.array_equal(means_a, means_b) and traj_a == traj_b


def test_rewards_and_transitions_follow_the_task():
    env = TabularMDPEnv(n_states=2, n_actions=1, horizon=1)
    task = {"transitions": np.array([[[0.3, 0.7]], [[1.0, 0.0]]]),
            "reward_means": np.array([[2.0], [0.0]])}
    env.reset(seed=0, options={"task": task})
    samples = []
    for _ in range(3000):
        env.reset()
        state, reward, *_ = env.step(0)
        samples.append((state, reward))
    states, rewards = np.array(samples).T
    assert abs(states.mean() - 0.7) < 0.03
    assert abs(rewards.mean() - 2.0) < 0.06 and abs(rewards.std() - 1.0) < 0.05


def test_bad_tasks_are_refused_with_the_fix():
    env = TabularMDPEnv(n_states=2, n_actions=2)
    with pytest.raises(TypeError, match="sample_tasks"):
        env.set_task({"transitions": np.ones((2, 2, 2))})
    with pytest.raises(ValueError, match="probability vector"):
        env.set_task({"transitions": np.ones((2, 2, 2)), "reward_means": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"shape \(2, 2, 2\)"):
        env.set_task({"transitions": np.ones((3, 2, 2)) / 2, "reward_means": np.zeros((2, 2))})


def test_vector_env_set_task_with_call():
    vec = gym.make_vec("metacourse/TabularMDP-v0", num_envs=2, vectorization_mode="sync")
    vec.reset(seed=0)
    task = TabularMDPEnv().sample_tasks(1)[0]
    vec.call("set_task", task)
    for got in vec.call("get_task"):
        assert np.array_equal(got["transitions"], task["transitions"])
    vec.close()


def test_value_iteration_on_a_two_state_chain():
    # state 0: action 0 stays (reward 1), action 1 moves to state 1 (reward 0);
    # state 1: both actions stay, reward 3. Over H steps from state 0 it pays to move at once:
    # V_H(0) = 3 (H − 1) for H >= 2, and V_1(0) = 1.
    transitions = np.zeros((2, 2, 2))
    transitions[0, 0, 0] = transitions[0, 1, 1] = transitions[1, :, 1] = 1.0
    rewards = np.array([[1.0, 0.0], [3.0, 3.0]])
    for horizon in (1, 2, 5):
        q = solve_finite_horizon(transitions, rewards, horizon)
        assert q.shape == (horizon, 2, 2)
        assert q[0, 0].max() == pytest.approx(1.0 if horizon == 1 else 3.0 * (horizon - 1))
        assert q[-1].tolist() == rewards.tolist()  # the last step is myopic


def test_value_iteration_matches_policy_evaluation_by_simulation():
    env = BatchedTabularMDP.sample(4000, np.random.default_rng(3), horizon=10)
    q = torch.as_tensor(solve_finite_horizon(env.transitions.numpy(), env.reward_means.numpy(), 10))
    tasks, steps = torch.arange(4000)[:, None], []

    def optimal(obs, last):  # the action of Q_h at step h
        steps.append(obs)
        return q[len(steps) - 1][tasks, obs].argmax(-1)

    rollout = play(env, optimal, 10, 1, torch.Generator().manual_seed(0))
    assert rollout.terminated[:, 0, -1].all() and not rollout.terminated[:, 0, :-1].any()
    total, expected = rollout.episode_returns[:, 0].double(), env.optimal_episode_return()
    assert abs(total.mean() - expected.mean()) < 3 * total.std() / np.sqrt(4000)


def test_batched_mdp_keeps_the_task_env_contract():
    env = BatchedTabularMDP.sample(3, np.random.default_rng(0), horizon=2)  # episodes end within 5 steps
    check_task_env(env, lambda obs: obs % 5)
    assert env.n_tasks == 3 and env.horizon == 2


def test_episodes_terminate_after_the_horizon_and_restart_in_state_zero():
    env = BatchedTabularMDP.sample(2, np.random.default_rng(1), horizon=3)
    rollout = play(env, lambda obs, last: torch.ones_like(obs), 7, 2, torch.Generator().manual_seed(0), restart=True)
    assert rollout.terminated[0, 0].tolist() == [False, False, True] * 2 + [False]
    assert not rollout.truncated.any() and (rollout.obs[..., [0, 3, 6]] == 0).all()
    padded = play(env, lambda obs, last: torch.ones_like(obs), 5, 2, torch.Generator().manual_seed(0))
    assert (padded.rewards[..., 3:] == 0).all() and (padded.mask[..., 3:] == 0).all()
    assert torch.equal(padded.rewards[..., :3], rollout.rewards[..., :3])  # the same draws until the end


def test_batched_mdp_steps_like_the_gymnasium_env():
    """Step for step on an MDP with deterministic transitions: the same states and flags, and
    rewards whose noise around μ(s, a) is standard normal in both."""
    transitions = np.zeros((1, 3, 2, 3))
    transitions[0, :, 0, :] = np.eye(3)[[1, 2, 0]]   # action 0: s -> s + 1 (mod 3)
    transitions[0, :, 1, 0] = 1.0                     # action 1: back to 0
    means = np.arange(6.0).reshape(1, 3, 2)
    batched = BatchedTabularMDP(transitions, means, horizon=4)
    single = TabularMDPEnv(n_states=3, n_actions=2, horizon=4)
    obs = batched.reset(1, torch.Generator().manual_seed(0))
    state, _ = single.reset(seed=0, options={"task": {"transitions": transitions[0], "reward_means": means[0]}})
    noise = []
    for action in [0, 0, 1, 0, 0, 0, 0, 1]:
        mean = means[0, state, action]
        step = batched.step(torch.tensor([[action]]))
        state, reward, terminated, truncated, _ = single.step(action)
        assert (int(step.obs), bool(step.terminated), bool(step.truncated)) == (state, terminated, truncated)
        noise += [float(step.rewards) - mean, reward - mean]
        obs = batched.restart(step.terminated)
        if terminated:
            state, _ = single.reset()
        assert int(obs) == state
    assert max(abs(n) for n in noise) < 5


def test_bad_batched_calls_say_what_to_do():
    env = BatchedTabularMDP.sample(2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="call reset"):
        env.step(torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Generator"):
        env.reset(1, 0)
    env.reset(1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="values in 0..4"):
        env.step(torch.full((2, 1), 5))
    with pytest.raises(ValueError, match="do not match"):
        BatchedTabularMDP(np.ones((2, 3, 5, 3)) / 3, np.zeros((2, 3, 4)))
