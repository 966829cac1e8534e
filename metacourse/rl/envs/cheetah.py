"""HalfCheetah forward/backward and goal velocity: MAML-RL's locomotion task families (MuJoCo).

Finn, Abbeel, Levine 2017, §5.3, App. A.2 and Table 5; the official code ``cbfinn/maml_rl``
(``rllab/envs/mujoco/half_cheetah_env_rand*.py``). The robot is Gymnasium's ``HalfCheetah-v5``
(MuJoCo, Δt = 0.05 s per action, 17-D observation without the x position, 6 torques in [−1, 1]);
only the reward changes with the task. With v_t the forward velocity of the body during step t
and a_t the action clipped to [−1, 1]:

    (1) forward/backward   task d ∈ {−1, +1} (each with probability ½),  r_t = d · v_t − 0.05 ‖a_t‖²
    (2) goal velocity      task v* ~ U[0, 2] (m/s),                      r_t = −|v_t − v*| − 0.05 ‖a_t‖²
    (3) an episode never terminates; it is truncated after H = 200 steps (the paper's horizon).

The control cost 0.05 ‖a‖² is the official code's ``0.5 · 1e-1 · sum(a²)``. v_t is Gymnasium's
``x_velocity``, the root's displacement over the step divided by Δt (rllab read the torso's
centre-of-mass velocity at the end of the step; the PyTorch port ``tristandeleu/pytorch-maml-rl``
uses the same displacement as here). The PyTorch port truncates at 100 steps; we keep the paper's 200.

Two ways in:

- ``HalfCheetahDirEnv`` and ``HalfCheetahVelEnv``: Gymnasium 1.x environments (registered as
  ``metacourse/HalfCheetahDir-v0`` and ``metacourse/HalfCheetahVel-v0`` with a 200-step limit) with
  ``sample_tasks(n)``, ``set_task(task)``, ``get_task()``; a task is ``{"direction": ±1.0}`` or
  ``{"goal_velocity": float}`` and stays set across resets. Seeding: ``reset(seed=...)``.
- ``BatchedCheetah``: T tasks × E episodes behind the task-env contract of ``metacourse.rl.task_env``,
  stepping a list of those environments one by one (MuJoCo is not batched here) and returning torch
  tensors.

MuJoCo is an optional dependency (``pip install "metacourse[mujoco]"``); it is imported when the
first environment is made, so this module imports without it.
"""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from ...utils import check_positive_int
from ..task_env import Step, check_generator
from ._episodes import EpisodeClock, started

__all__ = ["HalfCheetahDirEnv", "HalfCheetahVelEnv", "BatchedCheetah", "TASK_FAMILIES",
           "make_half_cheetah", "sample_directions", "sample_goal_velocities", "HORIZON",
           "CTRL_COST", "GOAL_VELOCITY_RANGE", "MUJOCO_HINT"]

HORIZON = 200
"""H, the episode limit of the paper's locomotion tasks."""
CTRL_COST = 0.05
"""Weight of ‖a‖² in the reward (the official code's 0.5 · 0.1)."""
GOAL_VELOCITY_RANGE = (0.0, 2.0)
"""Goal velocities are uniform in this range (m/s), as the paper's half-cheetah."""
MUJOCO_HINT = 'the HalfCheetah tasks need MuJoCo: pip install "metacourse[mujoco]"'


def make_half_cheetah():
    """Gymnasium's ``HalfCheetah-v5`` environment (no time limit), importing MuJoCo now.

    Raises an ImportError that says how to install MuJoCo when it is missing.
    """
    try:
        import mujoco
        from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
    except (ImportError, gym.error.DependencyNotInstalled) as error:
        raise ImportError(f"{MUJOCO_HINT} (import failed: {error})") from error
    # Recent MuJoCo (3.17) calls the settotalmass of Gymnasium's half_cheetah.xml deprecated (it is
    # still applied: 14 kg), printing that and appending it to ./MUJOCO_LOG.TXT for every env made;
    # collect MuJoCo's warnings while loading instead, and pass on any other one.
    messages: list[str] = []
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(messages.append)
    try:
        env = HalfCheetahEnv()
    finally:
        mujoco.set_mju_user_warning(previous)
    for message in messages:
        if "settotalmass" not in message:
            warnings.warn(f"MuJoCo: {message}", stacklevel=2)
    return env


def sample_directions(rng: np.random.Generator, n_tasks: int) -> np.ndarray:
    """``n_tasks`` directions, −1 (backward) or +1 (forward) with probability ½ each."""
    _check_rng(rng)
    return rng.choice(np.array([-1.0, 1.0]), size=check_positive_int("n_tasks", n_tasks))


def sample_goal_velocities(rng: np.random.Generator, n_tasks: int) -> np.ndarray:
    """``n_tasks`` goal velocities v* ~ U[0, 2], shape ``(n_tasks,)``."""
    _check_rng(rng)
    return rng.uniform(*GOAL_VELOCITY_RANGE, size=check_positive_int("n_tasks", n_tasks))


def _check_rng(rng: object) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {rng!r}")


class _CheetahTaskEnv(gym.Env):
    """What both families share: a HalfCheetah-v5 inside, one task value, reward ``task_reward(v) − 0.05‖a‖²``.

    A subclass names its task key, its sampler and its forward reward.
    """

    metadata = {"render_modes": [], "render_fps": 20}
    task_key = ""

    def __init__(self) -> None:
        self._cheetah = make_half_cheetah()
        self.observation_space = self._cheetah.observation_space
        self.action_space = self._cheetah.action_space
        self._task_value: float | None = None

    @staticmethod
    def sample_values(rng: np.random.Generator, n: int) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def check_task(cls, task: object) -> float:
        """The task's value if ``task`` is a valid task of this family, else a TypeError/ValueError."""
        if not isinstance(task, dict) or cls.task_key not in task:
            raise TypeError(f"a {cls.__name__} task is a dict with key {cls.task_key!r}, got {task!r}; "
                            "use env.sample_tasks(n) to make valid tasks")
        value = float(task[cls.task_key])
        if not np.isfinite(value):
            raise ValueError(f"{cls.task_key} must be a finite number, got {task[cls.task_key]!r}")
        return value

    def task_reward(self, x_velocity: float) -> float:
        raise NotImplementedError

    def sample_tasks(self, n: int) -> list[dict]:
        """``n`` tasks drawn from p(T) with the environment's generator (seed it via reset)."""
        return [{self.task_key: float(value)} for value in self.sample_values(self.np_random, n)]

    def set_task(self, task: dict) -> None:
        """Make ``task`` the task of the following episodes."""
        self._task_value = self.check_task(task)

    def get_task(self) -> dict:
        """The current task; raises until ``set_task`` or a first ``reset`` gave one."""
        if self._task_value is None:
            raise ValueError("no task yet: call reset() (which draws one) or set_task(task) first")
        return {self.task_key: self._task_value}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        if self._task_value is None:
            self.set_task(self.sample_tasks(1)[0])
        return self._cheetah.reset(seed=seed)  # the start: Gymnasium's, with its small noise

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if action.shape != self.action_space.shape:
            raise ValueError(f"an action is {self.action_space.shape[0]} torques, got shape {action.shape}")
        obs, _, terminated, truncated, info = self._cheetah.step(action)
        forward = self.task_reward(float(info["x_velocity"]))
        ctrl = CTRL_COST * float(np.sum(action ** 2))
        info = {"x_velocity": float(info["x_velocity"]), "reward_forward": forward, "reward_ctrl": -ctrl}
        return obs, forward - ctrl, terminated, truncated, info

    def close(self) -> None:
        self._cheetah.close()


class HalfCheetahDirEnv(_CheetahTaskEnv):
    """Eq. (1): run forward (direction +1) or backward (−1) as fast as possible.

    The observation does not show the direction: only the rewards of a first batch of episodes do.
    """

    task_key = "direction"

    @staticmethod
    def sample_values(rng: np.random.Generator, n: int) -> np.ndarray:
        return sample_directions(rng, n)

    @classmethod
    def check_task(cls, task: object) -> float:
        value = super().check_task(task)
        if value not in (-1.0, 1.0):
            raise ValueError(f"direction must be -1.0 (backward) or 1.0 (forward), got {value!r}")
        return value

    def task_reward(self, x_velocity: float) -> float:
        return self._task_value * x_velocity


class HalfCheetahVelEnv(_CheetahTaskEnv):
    """Eq. (2): run at a goal velocity v* ~ U[0, 2] that the observation does not show."""

    task_key = "goal_velocity"

    @staticmethod
    def sample_values(rng: np.random.Generator, n: int) -> np.ndarray:
        return sample_goal_velocities(rng, n)

    def task_reward(self, x_velocity: float) -> float:
        return -abs(x_velocity - self._task_value)


TASK_FAMILIES = {"dir": HalfCheetahDirEnv, "vel": HalfCheetahVelEnv}
"""The cheetah task families by short name, as ``BatchedCheetah`` and the experiments take them."""


class BatchedCheetah:
    """T tasks × E episodes of one cheetah family: a task env of ``metacourse.rl.task_env``.

    ``reset(n_episodes, generator)`` starts E episodes per task (each environment seeded from
    ``generator``, which also seeds every later ``restart``) and returns observations of shape
    ``(T, E, 17)``; ``step(actions)`` takes ``(T, E, 6)`` and returns ``Step(observations, rewards,
    terminated, truncated)``, the last three ``(T, E)``. A cheetah never terminates (3); it is
    truncated after ``horizon`` steps (200 unless given), then stands still and earns 0 until it is
    restarted. Tensors are float32. The environments are made once and reused: ``set_tasks`` gives
    them new tasks, a larger E makes more.
    """

    obs_dim = 17
    act_dim = 6

    def __init__(self, family: str, tasks: list[dict], horizon: int = HORIZON) -> None:
        if family not in TASK_FAMILIES:
            raise ValueError(f"family must be one of {sorted(TASK_FAMILIES)}, got {family!r}")
        self.env_class = TASK_FAMILIES[family]
        self.horizon = check_positive_int("horizon", horizon)
        self.envs: list[list[_CheetahTaskEnv]] = []  # envs[task][episode]
        self.n_episodes = 0
        self.clock: EpisodeClock | None = None
        self.set_tasks(tasks)

    def set_tasks(self, tasks: list[dict]) -> None:
        """Task i of the batch becomes ``tasks[i]`` (from ``sample_tasks`` of the same family)."""
        if not isinstance(tasks, (list, tuple)) or not tasks:
            raise ValueError("tasks must be a non-empty list of task dicts; use env.sample_tasks(n)")
        for task in tasks:
            self.env_class.check_task(task)
        self.tasks, self.n_tasks = list(tasks), len(tasks)
        while len(self.envs) < self.n_tasks:
            self.envs.append([self.env_class() for _ in range(len(self.envs[0]) if self.envs else 0)])
        for row, task in zip(self.envs, self.tasks):
            for env in row:
                env.set_task(task)

    def reset(self, n_episodes: int, generator: torch.Generator) -> Tensor:
        """Start ``n_episodes`` episodes per task; their start noise is seeded from ``generator``."""
        check_generator(generator)
        self.n_episodes = check_positive_int("n_episodes", n_episodes)
        for task, row in zip(self.tasks, self.envs):
            while len(row) < n_episodes:
                row.append(self.env_class())
                row[-1].set_task(task)
        shape = (self.n_tasks, n_episodes)
        self.generator, self.clock = generator, EpisodeClock(shape, self.horizon)
        self.observations = np.zeros((*shape, self.obs_dim), dtype=np.float64)
        return self.restart(torch.ones(shape, dtype=torch.bool))

    def restart(self, ended: Tensor) -> Tensor:
        """New episodes, each from a seed drawn with the generator of ``reset``, where ``ended``."""
        ended = started(self.clock).restart(ended)
        seeds = torch.randint(0, 2**31 - 1, (int(ended.sum()),), generator=self.generator).tolist()
        for (task, episode), seed in zip(ended.nonzero().tolist(), seeds):
            self.observations[task, episode] = self.envs[task][episode].reset(seed=seed)[0]
        return torch.as_tensor(self.observations, dtype=torch.float32)

    def step(self, actions: Tensor) -> Step:
        clock = started(self.clock)
        shape = (self.n_tasks, self.n_episodes, self.act_dim)
        if tuple(actions.shape) != shape:
            raise ValueError(f"actions must have shape {shape} (tasks, episodes, 6), got "
                             f"{tuple(actions.shape)}; call reset(n_episodes, generator) first")
        actions = actions.detach().cpu().double().numpy()
        running = clock.running
        rewards = torch.zeros(shape[:2], dtype=torch.float32)
        for task, episode in running.nonzero().tolist():
            obs, reward = self.envs[task][episode].step(actions[task, episode])[:2]
            self.observations[task, episode], rewards[task, episode] = obs, reward
        terminated, truncated = clock.tick(running, torch.zeros_like(running))
        return Step(torch.as_tensor(self.observations, dtype=torch.float32), rewards, terminated, truncated)

    def close(self) -> None:
        for row in self.envs:
            for env in row:
                env.close()
