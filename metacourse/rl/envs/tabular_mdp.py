"""Random tabular MDPs, the second task family of RL² (Duan et al. 2016, §3.2).

A task is an MDP with |S| = 10 states and |A| = 5 actions: transition probabilities
P(·|s, a) ~ Dirichlet(1, ..., 1) (flat), mean rewards μ(s, a) ~ Normal(1, 1), and each reward
r ~ Normal(μ(s, a), 1). An episode lasts H = 10 steps and always starts in state 0; it
*terminates* after H steps (the finite horizon is part of the problem: nothing is earned after
it). A trial is n episodes of the same MDP.

- ``TabularMDPEnv``: Gymnasium 1.x environment (``metacourse/TabularMDP-v0``) with
  ``sample_tasks(n)``, ``set_task(task)``, ``get_task()``; a task is
  ``{"transitions": (S, A, S) array, "reward_means": (S, A) array}`` and stays set across resets.
- ``BatchedTabularMDP``: many MDPs stepped together in torch (the task-env contract of
  ``metacourse.rl.task_env``): an episode terminates after H steps and ``restart`` starts the
  next one. The classical baselines simulate the same MDPs in NumPy (``rl.classical.play_mdps``).
- ``solve_finite_horizon``: backward induction (finite-horizon value iteration) for batches of
  MDPs, used by the model-based baselines and to compute the optimal return of a task.
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

__all__ = ["TabularMDPEnv", "BatchedTabularMDP", "sample_mdps", "solve_finite_horizon"]


def sample_mdps(rng: np.random.Generator, n_tasks: int, n_states: int = 10, n_actions: int = 5
                ) -> tuple[np.ndarray, np.ndarray]:
    """``n_tasks`` MDPs from p(T): transitions ``(n, S, A, S)`` and reward means ``(n, S, A)``."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {rng!r}")
    for name, value in (("n_tasks", n_tasks), ("n_states", n_states), ("n_actions", n_actions)):
        check_positive_int(name, value)
    transitions = rng.dirichlet(np.ones(n_states), size=(n_tasks, n_states, n_actions))
    reward_means = rng.normal(1.0, 1.0, size=(n_tasks, n_states, n_actions))
    return transitions, reward_means


def solve_finite_horizon(transitions: np.ndarray, rewards: np.ndarray, horizon: int) -> np.ndarray:
    """Optimal action values of H-step episodes by backward induction.

    ``transitions`` ``(..., S, A, S)``, ``rewards`` ``(..., S, A)`` (expected rewards). Returns
    ``q`` of shape ``(H, ..., S, A)``: ``q[h]`` values actions taken after h steps, i.e.
    Q_h(s, a) = r(s, a) + Σ_s' P(s'|s, a) max_a' Q_{h+1}(s', a'), with Q_H = 0.
    """
    check_positive_int("horizon", horizon)
    q = np.empty((horizon, *rewards.shape))
    next_value = np.zeros(rewards.shape[:-1])
    for h in range(horizon - 1, -1, -1):
        q[h] = rewards + np.einsum("...sat,...t->...sa", transitions, next_value)
        next_value = q[h].max(axis=-1)
    return q


def _check_task(task: object, n_states: int, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(task, dict) or not {"transitions", "reward_means"} <= set(task):
        raise TypeError("a tabular MDP task is a dict with keys 'transitions' and 'reward_means'; "
                        "make one with env.sample_tasks(n)")
    transitions = np.asarray(task["transitions"], dtype=np.float64)
    reward_means = np.asarray(task["reward_means"], dtype=np.float64)
    if transitions.shape != (n_states, n_actions, n_states):
        raise ValueError(f"transitions must have shape {(n_states, n_actions, n_states)}, "
                         f"got {transitions.shape}")
    if reward_means.shape != (n_states, n_actions):
        raise ValueError(f"reward_means must have shape {(n_states, n_actions)}, got {reward_means.shape}")
    if np.any(transitions < 0) or not np.allclose(transitions.sum(-1), 1.0):
        raise ValueError("each transitions[s, a] must be a probability vector (>= 0, sums to 1)")
    return transitions, reward_means


class TabularMDPEnv(gym.Env):
    """A random tabular MDP as a Gymnasium environment; one episode is ``horizon`` steps.

    Observation: the state index (``Discrete(n_states)``), 0 after every reset. Action:
    ``Discrete(n_actions)``. Reward: Normal(μ(s, a), 1). ``terminated`` is True after ``horizon``
    steps. ``info["t"]`` is the step within the episode.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, n_states: int = 10, n_actions: int = 5, horizon: int = 10,
                 render_mode: str | None = None) -> None:
        self.n_states = check_positive_int("n_states", n_states)
        self.n_actions = check_positive_int("n_actions", n_actions)
        self.horizon = check_positive_int("horizon", horizon)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not supported; use 'ansi' or None")
        self.render_mode = render_mode
        self.observation_space = spaces.Discrete(self.n_states)
        self.action_space = spaces.Discrete(self.n_actions)
        self._task: tuple[np.ndarray, np.ndarray] | None = None
        self._state, self._t = 0, 0

    def sample_tasks(self, n: int) -> list[dict]:
        """``n`` MDPs drawn from p(T) with the environment's generator (seed it via reset)."""
        transitions, means = sample_mdps(self.np_random, n, self.n_states, self.n_actions)
        return [{"transitions": p, "reward_means": r} for p, r in zip(transitions, means)]

    def set_task(self, task: dict) -> None:
        """Make ``task`` the MDP of the following episodes."""
        self._task = _check_task(task, self.n_states, self.n_actions)

    def get_task(self) -> dict:
        """The current task (copies); a task is drawn at the first reset if none was set."""
        if self._task is None:
            raise ValueError("no task yet: call reset() (which draws one) or set_task(task) first")
        return {"transitions": self._task[0].copy(), "reward_means": self._task[1].copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        if self._task is None:
            self.set_task(self.sample_tasks(1)[0])
        self._state, self._t = 0, 0
        return np.int64(self._state), {"t": 0}

    def step(self, action):
        if self._task is None:
            raise ValueError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not one of the {self.n_actions} actions")
        transitions, means = self._task
        reward = float(self.np_random.normal(means[self._state, int(action)], 1.0))
        probabilities = transitions[self._state, int(action)]
        self._state = int(self.np_random.choice(self.n_states, p=probabilities))
        self._t += 1
        terminated = self._t >= self.horizon
        return np.int64(self._state), reward, terminated, False, {"t": self._t}

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        return f"t={self._t} state={self._state}"


class BatchedTabularMDP:
    """T tabular MDPs × E episodes stepped together in torch (the contract of
    ``metacourse.rl.task_env``).

    ``reset(E, generator)`` puts every episode in state 0; ``step(actions)`` draws each reward
    r ~ Normal(μ(s, a), 1) and each next state s' ~ P(·|s, a) with the generator and returns
    ``Step(next states, rewards, terminated, truncated)``: an episode *terminates* after
    ``horizon`` steps (the finite horizon is part of the task; ``truncated`` stays false), and
    ``restart(ended)`` starts it again in state 0. Observations are state indices (T, E).
    """

    def __init__(self, transitions: np.ndarray | Tensor, reward_means: np.ndarray | Tensor,
                 horizon: int = 10) -> None:
        transitions = torch.as_tensor(transitions, dtype=torch.float64)
        reward_means = torch.as_tensor(reward_means, dtype=torch.float64)
        if transitions.ndim != 4 or transitions.shape[:3] != reward_means.shape:
            raise ValueError(f"transitions (n, S, A, S) {tuple(transitions.shape)} and reward_means "
                             f"(n, S, A) {tuple(reward_means.shape)} do not match")
        self.transitions, self.reward_means = transitions, reward_means
        self.horizon = check_positive_int("horizon", horizon)
        self.n_tasks, self.n_states, self.n_actions = reward_means.shape
        self._cumulative = transitions.cumsum(-1)
        self._generator: torch.Generator | None = None
        self.states = torch.zeros(self.n_tasks, 0, dtype=torch.long)
        self.clock = EpisodeClock(tuple(self.states.shape), self.horizon, limit="terminates")

    @classmethod
    def sample(cls, n_tasks: int, rng: np.random.Generator, n_states: int = 10, n_actions: int = 5,
               horizon: int = 10) -> BatchedTabularMDP:
        """Draw ``n_tasks`` MDPs from p(T) with NumPy's ``rng`` (the baselines draw the same way)."""
        return cls(*sample_mdps(rng, n_tasks, n_states, n_actions), horizon)

    def reset(self, n_episodes: int, generator: torch.Generator) -> Tensor:
        check_positive_int("n_episodes", n_episodes)
        self._generator = check_generator(generator)
        self.states = torch.zeros(self.n_tasks, n_episodes, dtype=torch.long)
        self.clock = EpisodeClock(tuple(self.states.shape), self.horizon, limit="terminates")
        return self.states.clone()

    def step(self, actions: Tensor) -> Step:
        if self._generator is None:
            raise ValueError("call reset(n_episodes, generator) before step()")
        actions = torch.as_tensor(actions, dtype=torch.long)
        if actions.shape != self.states.shape or (actions.numel() and not 0 <= actions.min() <= actions.max()
                                                  < self.n_actions):
            raise ValueError(f"actions must have shape (n_tasks, n_episodes) = {tuple(self.states.shape)} with "
                             f"values in 0..{self.n_actions - 1}, got shape {tuple(actions.shape)}")
        task = torch.arange(self.n_tasks)[:, None]
        means = self.reward_means[task, self.states, actions]
        noise = torch.randn(means.shape, generator=self._generator, dtype=torch.float64)
        u = torch.rand(means.shape, generator=self._generator, dtype=torch.float64)
        cumulative = self._cumulative[task, self.states, actions]
        next_states = (cumulative < u[..., None]).sum(-1).clamp(max=self.n_states - 1)
        running = self.clock.running
        terminated, truncated = self.clock.tick(running)
        self.states = torch.where(running, next_states, self.states)
        rewards = torch.where(running, means + noise, 0.0).to(torch.get_default_dtype())
        return Step(self.states.clone(), rewards, terminated, truncated)

    def restart(self, ended: Tensor) -> Tensor:
        ended = self.clock.restart(torch.as_tensor(ended, dtype=torch.bool))
        self.states = torch.where(ended, 0, self.states)
        return self.states.clone()

    def optimal_episode_return(self) -> Tensor:
        """Expected return of an optimal H-step episode from state 0, per task (T,)."""
        q = solve_finite_horizon(self.transitions.numpy(), self.reward_means.numpy(), self.horizon)
        return torch.as_tensor(q[0][:, 0].max(axis=-1))
