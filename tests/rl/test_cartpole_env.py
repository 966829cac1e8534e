import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import metacourse.rl.envs  # noqa: F401  (registers the ids)
from metacourse.rl.envs import BatchedCartPole, PoleLengthCartPoleEnv, sample_pole_lengths


def test_passes_gymnasium_check_env_and_is_registered_with_a_200_step_limit():
    env = gym.make("metacourse/CartPolePoleLength-v0")
    assert env.spec.max_episode_steps == 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # inherited from Gymnasium's own CartPole, whose velocities are unbounded
        warnings.filterwarnings("ignore", message=".*Box observation space m.*infinity")
        check_env(env.unwrapped)


def test_task_api_round_trip_persists_across_resets_and_changes_the_pole():
    env = PoleLengthCartPoleEnv()
    env.reset(seed=0)
    assert env.get_task() == {"length": 0.5}  # Gymnasium's pole until a task is set
    tasks = env.sample_tasks(5)
    assert all(0.2 <= t["length"] <= 1.2 for t in tasks)
    env.set_task(tasks[2])
    env.reset(seed=3)
    env.reset()
    assert env.get_task() == tasks[2]
    assert env.polemass_length == pytest.approx(0.1 * tasks[2]["length"])
    env.reset(options={"task": {"length": 0.9}})
    assert env.get_task() == {"length": 0.9}


def test_bad_tasks_say_how_to_make_good_ones():
    env = PoleLengthCartPoleEnv()
    with pytest.raises(TypeError, match="key 'length'"):
        env.set_task({"means": [0.1]})
    with pytest.raises(ValueError, match="sample_tasks"):
        env.set_task({"length": -1.0})
    with pytest.raises(ValueError, match="low <= high"):
        sample_pole_lengths(np.random.default_rng(0), 3, (1.0, 0.5))


def test_batched_twin_follows_gymnasium_step_for_step():
    env = PoleLengthCartPoleEnv()
    env.reset(seed=0, options={"task": {"length": 0.8}})
    batched = BatchedCartPole([0.8], np.random.default_rng(0))
    batched.reset()
    batched.states[0] = env.state.copy()
    actions = np.random.default_rng(1).integers(2, size=100)
    for action in actions:
        observation, reward, terminated, _, _ = env.step(int(action))
        states, rewards, done, _ = batched.step([action])
        assert np.allclose(observation, states[0], atol=1e-6) and rewards[0] == reward == 1.0
        assert done[0] == terminated
        if terminated:
            break
    assert terminated  # random pushes drop the pole within 100 steps


def test_a_longer_pole_falls_more_slowly():
    lengths = np.array([0.25, 0.5, 1.0])
    batched = BatchedCartPole(lengths, np.random.default_rng(0))
    batched.reset()
    batched.states[:] = [0.0, 0.0, 0.1, 0.0]  # the same tilt for every pole
    batched.step(np.zeros(3, dtype=int))
    assert np.all(np.diff(batched.states[:, 3]) < 0)  # angular speed: short > medium > long


def test_time_limit_truncates_and_restart_starts_only_finished_carts():
    batched = BatchedCartPole([0.5, 0.5], np.random.default_rng(0), max_steps=3)
    batched.reset()
    for _ in range(3):
        _, _, terminated, truncated = batched.step(np.array([0, 1]))
    assert truncated.all() and not terminated.any()
    before = batched.states.copy()
    states = batched.restart(np.array([True, False]))
    assert np.all(np.abs(states[0]) <= 0.05) and np.allclose(states[1], before[1])
    assert list(batched.steps) == [0, 3]
