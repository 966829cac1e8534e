"""Meta-RL task families as Gymnasium 1.x environments (and batched torch twins, ``rl.task_env``).

Importing this package registers the environments under the ``metacourse/`` namespace::

    import gymnasium as gym
    import metacourse.rl.envs  # noqa: F401  (registers the ids)

    env = gym.make("metacourse/BernoulliBandit-v0", n_arms=10)
    vec = gym.make_vec("metacourse/TabularMDP-v0", num_envs=8, vectorization_mode="sync")
    vec.call("set_task", env.unwrapped.sample_tasks(1)[0])   # one task for every sub-env

``gym.make("metacourse.rl.envs:metacourse/BernoulliBandit-v0")`` imports and registers in one go.
"""

from __future__ import annotations

import gymnasium

from .bandit import BatchedBernoulliBandit, BernoulliBanditEnv, sample_arm_means
from .cartpole import BatchedCartPole, PoleLengthCartPoleEnv, sample_pole_lengths
from .cheetah import BatchedCheetah, HalfCheetahDirEnv, HalfCheetahVelEnv  # MuJoCo only when made
from .navigation import BatchedNavigation2D, Navigation2DEnv, sample_goals
from .pendulum import BatchedPendulum, MassLengthPendulumEnv, pendulum_reward, sample_pendulums
from .tabular_mdp import BatchedTabularMDP, TabularMDPEnv, sample_mdps, solve_finite_horizon

__all__ = ["BernoulliBanditEnv", "BatchedBernoulliBandit", "sample_arm_means", "TabularMDPEnv",
           "BatchedTabularMDP", "sample_mdps", "solve_finite_horizon", "PoleLengthCartPoleEnv",
           "BatchedCartPole", "sample_pole_lengths", "Navigation2DEnv", "BatchedNavigation2D",
           "sample_goals", "MassLengthPendulumEnv", "BatchedPendulum", "pendulum_reward",
           "sample_pendulums", "HalfCheetahDirEnv", "HalfCheetahVelEnv", "BatchedCheetah", "ENV_IDS"]

ENV_IDS = {
    "metacourse/BernoulliBandit-v0": "metacourse.rl.envs.bandit:BernoulliBanditEnv",
    "metacourse/TabularMDP-v0": "metacourse.rl.envs.tabular_mdp:TabularMDPEnv",
    "metacourse/CartPolePoleLength-v0": "metacourse.rl.envs.cartpole:PoleLengthCartPoleEnv",
    "metacourse/Navigation2D-v0": "metacourse.rl.envs.navigation:Navigation2DEnv",
    "metacourse/PendulumMassLength-v0": "metacourse.rl.envs.pendulum:MassLengthPendulumEnv",
    "metacourse/HalfCheetahDir-v0": "metacourse.rl.envs.cheetah:HalfCheetahDirEnv",  # needs MuJoCo
    "metacourse/HalfCheetahVel-v0": "metacourse.rl.envs.cheetah:HalfCheetahVelEnv",  # needs MuJoCo
}
_MAX_EPISODE_STEPS = {"metacourse/CartPolePoleLength-v0": 200, "metacourse/Navigation2D-v0": 100,
                      "metacourse/PendulumMassLength-v0": 200, "metacourse/HalfCheetahDir-v0": 200,
                      "metacourse/HalfCheetahVel-v0": 200}

for _id, _entry_point in ENV_IDS.items():
    if _id not in gymnasium.registry:  # importing twice (e.g. reloads) must not warn
        gymnasium.register(id=_id, entry_point=_entry_point,
                           max_episode_steps=_MAX_EPISODE_STEPS.get(_id))
