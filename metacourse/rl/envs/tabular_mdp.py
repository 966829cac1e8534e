"""Random tabular MDPs, the second task family of RL² (Duan et al. 2016, §3.2).

A task is an MDP with |S| = 10 states and |A| = 5 actions: transition probabilities
P(·|s, a) ~ Dirichlet(1, ..., 1) (flat), mean rewards μ(s, a) ~ Normal(1, 1), and each reward
r ~ Normal(μ(s, a), 1). An episode lasts H = 10 steps and always starts in state 0; it
*terminates* after H steps (the finite horizon is part of the problem: nothing is earned after
it). A trial is n episodes of the same MDP.

- ``TabularMDPEnv``: Gymnasium 1.x environment (``metacourse/TabularMDP-v0``) with
  ``sample_tasks(n)``, ``set_task(task)``, ``get_task()``; a task is
  ``{"transitions": (S, A, S) array, "reward_means": (S, A) array}`` and stays set across resets.
- ``BatchedTabularMDP``: many MDPs stepped together in NumPy; a new episode starts by itself
  after H steps.
- ``solve_finite_horizon``: backward induction (finite-horizon value iteration) for batches of
  MDPs, used by the model-based baselines and to compute the optimal return of a task.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ...utils import check_positive_int

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
    """``n_envs`` tabular MDPs stepped together in NumPy.

    ``reset()`` puts every env in state 0 at step 0 and returns the states; ``step(actions)``
    returns ``(next_states, rewards, episode_done)``. When an episode ends (after ``horizon``
    steps) the returned state is already the first state of the next episode (state 0); the
    state the last action actually led to is in ``successor_states``.
    """

    def __init__(self, transitions: np.ndarray, reward_means: np.ndarray,
                 rng: np.random.Generator, horizon: int = 10) -> None:
        transitions = np.asarray(transitions, dtype=np.float64)
        reward_means = np.asarray(reward_means, dtype=np.float64)
        if transitions.ndim != 4 or transitions.shape[:3] != reward_means.shape:
            raise ValueError(f"transitions (n, S, A, S) {transitions.shape} and reward_means "
                             f"(n, S, A) {reward_means.shape} do not match")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator, got {rng!r}")
        self.transitions, self.reward_means, self.rng = transitions, reward_means, rng
        self.horizon = check_positive_int("horizon", horizon)
        self.n_envs, self.n_states, self.n_actions = reward_means.shape
        self._cumulative = np.cumsum(transitions, axis=-1)
        self._index = np.arange(self.n_envs)
        self.states = np.zeros(self.n_envs, dtype=np.int64)
        self.successor_states = self.states.copy()
        self.t = 0

    @classmethod
    def sample(cls, n_envs: int, rng: np.random.Generator, n_states: int = 10, n_actions: int = 5,
               horizon: int = 10) -> BatchedTabularMDP:
        """Draw ``n_envs`` MDPs from p(T); rewards and transitions then use the same ``rng``."""
        return cls(*sample_mdps(rng, n_envs, n_states, n_actions), rng, horizon)

    def reset(self) -> np.ndarray:
        self.states = np.zeros(self.n_envs, dtype=np.int64)
        self.t = 0
        return self.states.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        actions = np.asarray(actions)
        means = self.reward_means[self._index, self.states, actions]
        rewards = means + self.rng.standard_normal(self.n_envs)
        cumulative = self._cumulative[self._index, self.states, actions]
        u = self.rng.random(self.n_envs)[:, None]
        next_states = np.minimum((cumulative < u).sum(axis=1), self.n_states - 1)
        self.t += 1
        done = self.t >= self.horizon
        self.successor_states = next_states  # before the automatic reset: what models learn from
        self.states = np.zeros_like(next_states) if done else next_states
        self.t = 0 if done else self.t
        return self.states.copy(), rewards, np.full(self.n_envs, done)

    def optimal_episode_return(self) -> np.ndarray:
        """Expected return of an optimal H-step episode from state 0, per env."""
        q = solve_finite_horizon(self.transitions, self.reward_means, self.horizon)
        return q[0][:, 0].max(axis=-1)
