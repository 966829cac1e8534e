import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import metacourse.rl.envs  # noqa: F401  (registers the ids)
from metacourse.rl.envs import BatchedPendulum, MassLengthPendulumEnv, pendulum_reward, sample_pendulums
from metacourse.rl.task_env import check_task_env, play

pytestmark = pytest.mark.usefixtures("one_thread")


def test_passes_gymnasium_check_env_and_is_registered_with_a_200_step_limit():
    env = gym.make("metacourse/PendulumMassLength-v0")
    assert env.spec.max_episode_steps == 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Gymnasium's own Pendulum keeps its torque range [-2, 2]; the checker only recommends [-1, 1]
        warnings.filterwarnings("ignore", message=".*symmetric and normalized space")
        check_env(env.unwrapped)


def test_task_api_round_trip_persists_across_resets_and_changes_the_dynamics():
    env = MassLengthPendulumEnv()
    env.reset(seed=0)
    assert env.get_task() == {"mass": 1.0, "length": 1.0}  # Gymnasium's pendulum until a task is set
    tasks = env.sample_tasks(20)
    assert all(0.5 <= t["mass"] <= 1.5 and 0.5 <= t["length"] <= 1.5 for t in tasks)
    env.set_task(tasks[3])
    env.reset(seed=3)
    env.reset()
    assert env.get_task() == tasks[3]
    env.reset(options={"task": {"mass": 0.7, "length": 1.2}})
    assert (env.m, env.l) == (0.7, 1.2)
    first = env.reset(seed=5)[0]
    assert np.array_equal(first, env.reset(seed=5)[0])  # seeded through reset


def test_bad_tasks_say_how_to_make_good_ones():
    env = MassLengthPendulumEnv()
    with pytest.raises(TypeError, match="'mass' and 'length'"):
        env.set_task({"length": 1.0})
    with pytest.raises(ValueError, match="sample_tasks"):
        env.set_task({"mass": -1.0, "length": 1.0})
    with pytest.raises(ValueError, match="low <= high"):
        sample_pendulums(np.random.default_rng(0), 3, (1.5, 0.5))
    with pytest.raises(ValueError, match="sample_pendulums"):
        BatchedPendulum([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="tasks, episodes, 1"):
        batched = BatchedPendulum([1.0], [1.0])
        batched.reset(3, torch.Generator())
        batched.step(torch.zeros(3, 1))
    with pytest.raises(TypeError, match="torch.Generator"):
        BatchedPendulum([1.0], [1.0]).reset(3, None)


def test_batched_torch_dynamics_equal_the_gymnasium_step_for_sampled_tasks():
    masses, lengths = sample_pendulums(np.random.default_rng(0), 4)
    envs = [MassLengthPendulumEnv() for _ in range(4)]
    batched = BatchedPendulum(masses, lengths)
    assert batched.reset(2, torch.Generator().manual_seed(0)).shape == (4, 2, 3)
    for i, env in enumerate(envs):
        env.reset(seed=i, options={"task": {"mass": masses[i], "length": lengths[i]}})
        batched.state[i, 1] = torch.as_tensor(env.state)
    actions = np.random.default_rng(1).uniform(-3, 3, size=(200, 4, 2, 1)).astype(np.float32)
    for t, action in enumerate(actions):
        observations, rewards, terminated, truncated = batched.step(torch.as_tensor(action))
        for i, env in enumerate(envs):
            observation, reward, _, _, _ = env.step(action[i, 1])
            # libm's and torch's sin differ in the last bit, and the pendulum amplifies it
            assert np.allclose(env.state, batched.state[i, 1].numpy(), rtol=1e-4, atol=1e-4)
            assert np.allclose(observation, observations[i, 1].numpy(), atol=1e-4)
            assert reward == pytest.approx(float(rewards[i, 1]), abs=1e-4)
        assert not terminated.any() and bool(truncated.all()) == (t == 199)  # the 200-step limit


def test_batched_env_keeps_the_task_env_contract_and_restarts_from_the_generator():
    env = BatchedPendulum([1.0, 0.6], [1.0, 1.4], horizon=2)
    check_task_env(env, lambda obs: torch.ones(*obs.shape[:-1], 1), n_steps=6)
    record = play(env, lambda obs, last: torch.ones(*obs.shape[:-1], 1), 3, 2, torch.Generator().manual_seed(0))
    assert record.truncated[..., 1].all() and record.rewards[..., 2].eq(0).all()  # padding after H = 2
    assert torch.equal(record.obs[..., 2, :], record.next_obs[..., 1, :])
    restarted = play(env, lambda obs, last: torch.ones(*obs.shape[:-1], 1), 3, 2, torch.Generator().manual_seed(0),
                     restart=True)
    assert torch.equal(restarted.obs[..., :2, :], record.obs[..., :2, :])
    assert not torch.equal(restarted.obs[..., 2, :], record.next_obs[..., 1, :])  # a new start, drawn


def test_torch_reward_of_an_observation_equals_gymnasiums():
    env = MassLengthPendulumEnv()
    observation, _ = env.reset(seed=2)
    for action in np.linspace(-3, 3, 7):
        expected = env.step(np.array([action], dtype=np.float32))[1]
        got = pendulum_reward(torch.as_tensor(observation), torch.tensor([action], dtype=torch.float32))
        assert float(got) == pytest.approx(expected, abs=1e-4)
        observation = env._get_obs()
