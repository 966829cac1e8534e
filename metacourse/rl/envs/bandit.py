"""Bernoulli multi-armed bandits, the first task family of RL² (Duan et al. 2016, §3.1).

A task is a k-armed bandit whose arm i pays 1 with probability μ_i and 0 otherwise; the means
are drawn once per task, μ_i ~ U[0, 1]. An *episode* is one pull (the bandit is an MDP with a
single state and horizon 1), and a *trial* is n episodes of the same task: an agent that does
well over a trial must explore early and exploit late.

Two implementations of the same task family:

- ``BernoulliBanditEnv``: a Gymnasium 1.x environment (registered as
  ``metacourse/BernoulliBandit-v0``) with the meta-RL task API ``sample_tasks(n)``,
  ``set_task(task)``, ``get_task()``; a task stays set across ``reset()`` calls, so one trial is
  ``set_task`` followed by n resets. Seeding goes through ``reset(seed=...)``.
- ``BatchedBernoulliBandit``: many bandits at once in torch, for training RL² (the task-env
  contract of ``metacourse.rl.task_env``; thousands of times faster than stepping Gymnasium
  environments one by one). The classical baselines play their own NumPy bandits
  (``rl.classical.play_bandits``) on the same arm means.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from ...utils import check_positive_int
from ..task_env import Step, check_generator
from ._episodes import EpisodeClock

__all__ = ["BernoulliBanditEnv", "BatchedBernoulliBandit", "sample_arm_means"]


def sample_arm_means(rng: np.random.Generator, n_tasks: int, n_arms: int) -> np.ndarray:
    """Arm means of ``n_tasks`` bandits, shape ``(n_tasks, n_arms)``, each μ_i ~ U[0, 1]."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {rng!r}")
    check_positive_int("n_tasks", n_tasks)
    check_positive_int("n_arms", n_arms)
    return rng.uniform(0.0, 1.0, size=(n_tasks, n_arms))


def _check_means(means: object, n_arms: int) -> np.ndarray:
    array = np.asarray(means, dtype=np.float64)
    if array.shape != (n_arms,):
        raise ValueError(f"a task of this bandit needs {n_arms} arm means, got shape {array.shape}; "
                         "use env.sample_tasks(n) to make valid tasks")
    if not np.all((array >= 0) & (array <= 1)):
        raise ValueError(f"arm means must lie in [0, 1] (Bernoulli probabilities), got {array}")
    return array


class BernoulliBanditEnv(gym.Env):
    """A k-armed Bernoulli bandit as a Gymnasium environment; one episode is one pull.

    Observation: always 0 (``Discrete(1)``: a bandit has one state). Action: the arm. Reward: 1
    with probability μ_arm, else 0. Every step terminates the episode. ``info["regret"]`` is the
    expected regret max_i μ_i − μ_arm of the pull. A task is ``{"means": array of k floats}``.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, n_arms: int = 5, render_mode: str | None = None) -> None:
        self.n_arms = check_positive_int("n_arms", n_arms)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'ansi' or None")
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(1)
        self.action_space = spaces.Discrete(self.n_arms)
        self._means: np.ndarray | None = None
        self._last: tuple[int, float] | None = None

    def sample_tasks(self, n: int) -> list[dict]:
        """``n`` tasks drawn from p(T) with the environment's generator (seed it via reset)."""
        return [{"means": means} for means in sample_arm_means(self.np_random, n, self.n_arms)]

    def set_task(self, task: dict) -> None:
        """Make ``task`` (a dict with ``"means"``) the bandit of the following episodes."""
        if not isinstance(task, dict) or "means" not in task:
            raise TypeError(f"a bandit task is a dict with key 'means', got {task!r}")
        self._means = _check_means(task["means"], self.n_arms)

    def get_task(self) -> dict:
        """The current task (a copy); a task is drawn at the first reset if none was set."""
        if self._means is None:
            raise ValueError("no task yet: call reset() (which draws one) or set_task(task) first")
        return {"means": self._means.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        if self._means is None:
            self.set_task(self.sample_tasks(1)[0])
        self._last = None
        return np.int64(0), {}

    def step(self, action):
        if self._means is None:
            raise ValueError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not an arm of this {self.n_arms}-armed bandit")
        arm = int(action)
        reward = float(self.np_random.random() < self._means[arm])
        self._last = (arm, reward)
        info = {"regret": float(self._means.max() - self._means[arm])}
        return np.int64(0), reward, True, False, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        means = " ".join(f"{m:.2f}" for m in (self._means if self._means is not None else []))
        last = "" if self._last is None else f"  last pull: arm {self._last[0]} -> {self._last[1]:g}"
        return f"arm means [{means}]{last}"


class BatchedBernoulliBandit:
    """T Bernoulli bandits × E episodes stepped together in torch: the training engine of RL².

    Speaks the task-env contract of ``metacourse.rl.task_env``: ``reset(E, generator)`` returns
    the observations (T, E), always state 0 (``n_states = 1``); ``step(arms)`` with arms (T, E)
    returns ``Step(obs, rewards, terminated, truncated)``: reward 1 with probability μ_arm drawn
    with the generator, and every pull *terminates* its episode (``horizon = 1``); ``restart``
    starts new episodes (RL²'s trial is n of them in a row). An episode pulled and not restarted
    earns 0 afterwards (padding).
    """

    n_states = 1
    horizon = 1

    def __init__(self, means: np.ndarray | Tensor) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2 or means.shape[1] < 1:
            raise ValueError(f"means must have shape (n_tasks, n_arms), got {tuple(means.shape)}")
        self.means = means
        self.n_tasks, self.n_actions = means.shape
        self._generator: torch.Generator | None = None
        self.clock = EpisodeClock((self.n_tasks, 0), self.horizon, limit="terminates")

    @classmethod
    def sample(cls, n_tasks: int, n_arms: int, rng: np.random.Generator) -> BatchedBernoulliBandit:
        """Draw ``n_tasks`` tasks from p(T) with NumPy's ``rng`` (the baselines draw the same way)."""
        return cls(sample_arm_means(rng, n_tasks, n_arms))

    def _obs(self) -> Tensor:
        return torch.zeros(self.clock.steps.shape, dtype=torch.long)

    def reset(self, n_episodes: int, generator: torch.Generator) -> Tensor:
        check_positive_int("n_episodes", n_episodes)
        self._generator = check_generator(generator)
        self.clock = EpisodeClock((self.n_tasks, n_episodes), self.horizon, limit="terminates")
        return self._obs()

    def step(self, actions: Tensor) -> Step:
        if self._generator is None:
            raise ValueError("call reset(n_episodes, generator) before step()")
        actions = _check_arms(actions, self.clock.steps.shape, self.n_actions)
        chosen = self.means.gather(1, actions)
        pays = torch.rand(chosen.shape, generator=self._generator, dtype=torch.float64) < chosen
        running = self.clock.running
        rewards = (pays & running).to(torch.get_default_dtype())
        terminated, truncated = self.clock.tick(running)  # one pull is the whole episode
        return Step(self._obs(), rewards, terminated, truncated)

    def restart(self, ended: Tensor) -> Tensor:
        self.clock.restart(torch.as_tensor(ended, dtype=torch.bool))
        return self._obs()

    def expected_rewards(self, actions: Tensor) -> Tensor:
        """μ of each chosen arm, shape (T, E) (regret: ``means.max(1).values[:, None] − this``)."""
        return self.means.gather(1, torch.as_tensor(actions, dtype=torch.long))


def _check_arms(actions: Tensor, shape: torch.Size, n_arms: int) -> Tensor:
    actions = torch.as_tensor(actions, dtype=torch.long)
    if actions.shape != shape:
        raise ValueError(f"actions must have shape (n_tasks, n_episodes) = {tuple(shape)}, got {tuple(actions.shape)}")
    if actions.numel() and (actions.min() < 0 or actions.max() >= n_arms):
        raise ValueError(f"actions must be arms 0..{n_arms - 1}, got values in [{int(actions.min())}, "
                         f"{int(actions.max())}]")
    return actions
