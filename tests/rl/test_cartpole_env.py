import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import metacourse.rl.envs  # noqa: F401  (registers the ids)
from metacourse.rl import task_env
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


def test_batched_cartpole_keeps_the_task_env_contract():
    lean_with_the_pole = lambda obs: (obs[..., 2] > 0).long()  # noqa: E731
    task_env.check_task_env(BatchedCartPole([0.3, 0.8, 1.1], horizon=4), lean_with_the_pole, n_episodes=2,
                            n_steps=9)


def test_batched_twin_follows_gymnasium_step_for_step():
    env = PoleLengthCartPoleEnv()
    env.reset(seed=0, options={"task": {"length": 0.8}})
    batched = BatchedCartPole([0.8])
    batched.reset(1, torch.Generator().manual_seed(0))
    batched.states[0, 0] = torch.as_tensor(env.state, dtype=torch.float64)
    actions = np.random.default_rng(1).integers(2, size=100)
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(int(action))
        step = batched.step(torch.tensor([[int(action)]]))
        assert np.allclose(observation, step.obs[0, 0].numpy(), atol=1e-6) and step.rewards[0, 0] == reward == 1.0
        assert bool(step.terminated[0, 0]) == terminated and not step.truncated[0, 0]
        if terminated:
            break
    assert terminated  # random pushes drop the pole within 100 steps
    after = batched.step(torch.tensor([[0]]))  # an ended cart that was not restarted is padding
    assert after.rewards[0, 0] == 0 and not (after.terminated | after.truncated).any()
    assert torch.equal(after.obs, step.obs)


def test_a_longer_pole_falls_more_slowly():
    batched = BatchedCartPole(torch.tensor([0.25, 0.5, 1.0]))
    batched.reset(1, torch.Generator().manual_seed(0))
    batched.states[:] = torch.tensor([0.0, 0.0, 0.1, 0.0], dtype=torch.float64)  # the same tilt for every pole
    batched.step(torch.zeros(3, 1, dtype=torch.long))
    assert (batched.states[:, 0, 3].diff() < 0).all()  # angular speed: short > medium > long


def test_time_limit_truncates_and_restart_starts_only_finished_carts_from_the_generator():
    batched = BatchedCartPole([0.5], horizon=3)
    first = batched.reset(2, torch.Generator().manual_seed(0))
    for _ in range(3):
        step = batched.step(torch.tensor([[0, 1]]))
    assert step.truncated.all() and not step.terminated.any()
    before = batched.states.clone()
    obs = batched.restart(torch.tensor([[True, False]]))
    assert (obs[0, 0].abs() <= 0.05).all() and torch.equal(batched.states[0, 1], before[0, 1])
    assert batched.clock.steps.tolist() == [[0, 3]]
    again = BatchedCartPole([0.5], horizon=3)
    assert torch.equal(again.reset(2, torch.Generator().manual_seed(0)), first)  # the generator draws the starts
    for _ in range(3):
        again.step(torch.tensor([[0, 1]]))
    assert torch.equal(again.restart(torch.tensor([[True, False]])), obs)  # and every restart's


def test_batched_cartpole_names_the_fix_for_bad_input():
    with pytest.raises(ValueError, match="positive half-lengths"):
        BatchedCartPole([0.5, -1.0])
    batched = BatchedCartPole([0.5, 1.0])
    with pytest.raises(RuntimeError, match=r"env.reset\(n_episodes, generator\)"):
        batched.step(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Generator"):
        batched.reset(3, np.random.default_rng(0))
    batched.reset(3, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"\(tasks, carts\) = \(2, 3\)"):
        batched.step(torch.zeros(6, dtype=torch.long))
