"""CartPole with a sampled pole length: the RL task family of Meta-Critic Networks (Sung et al. 2017).

A task is the pole's half-length ℓ (Gymnasium's ``CartPoleEnv.length``, 0.5 by default); every
other constant is Gymnasium's. The dynamics are Gymnasium's equations (Barto, Sutton & Anderson
1983, Euler integration, τ = 0.02 s): a longer pole falls more slowly, so the same policy keeps
some poles up and drops others, and a learner must find out which pole it is balancing. Episodes
end when the pole tilts beyond 12° or the cart leaves ±2.4, and are truncated at 200 steps (as in
``CartPole-v0``, where "solved" means an average return of 195). Reward: +1 per step.

Two implementations of the same task family:

- ``PoleLengthCartPoleEnv``: a Gymnasium 1.x environment (registered as
  ``metacourse/CartPolePoleLength-v0``, 200-step limit) with the meta-RL task API
  ``sample_tasks(n)``, ``set_task(task)``, ``get_task()``; a task is ``{"length": float}`` and
  stays set across ``reset()`` calls. Seeding goes through ``reset(seed=...)``.
- ``BatchedCartPole``: many carts at once in NumPy (each with its own pole length), for training.
"""

from __future__ import annotations

import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from ...utils import check_positive, check_positive_int

__all__ = ["PoleLengthCartPoleEnv", "BatchedCartPole", "sample_pole_lengths", "LENGTH_RANGE",
           "MAX_EPISODE_STEPS"]

LENGTH_RANGE = (0.2, 1.2)
"""Range of the pole's half-length ℓ in metres (Gymnasium's default pole: 0.5)."""
DEFAULT_LENGTH = 0.5
"""The pole of a reset before any ``set_task``: Gymnasium's."""
MAX_EPISODE_STEPS = 200
"""Episode limit, as in CartPole-v0 (solved at an average return of 195)."""

_GRAVITY, _MASS_CART, _MASS_POLE, _FORCE, _TAU = 9.8, 1.0, 0.1, 10.0, 0.02
_THETA_LIMIT, _X_LIMIT = 12 * 2 * np.pi / 360, 2.4


def sample_pole_lengths(rng: np.random.Generator, n_tasks: int,
                        length_range: tuple[float, float] = LENGTH_RANGE) -> np.ndarray:
    """``n_tasks`` half-lengths ℓ ~ U[low, high], shape ``(n_tasks,)``."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {rng!r}")
    check_positive_int("n_tasks", n_tasks)
    return rng.uniform(*_check_range(length_range), size=n_tasks)


def _check_range(length_range) -> tuple[float, float]:
    low, high = (float(v) for v in length_range)
    if not 0.0 < low <= high:
        raise ValueError(f"length_range={length_range!r} must be (low, high) with 0 < low <= high")
    return low, high


class PoleLengthCartPoleEnv(CartPoleEnv):
    """Gymnasium's CartPole whose pole half-length is the task. Observation, actions and reward
    are Gymnasium's: (x, ẋ, θ, θ̇); push left (0) or right (1); +1 per step. No rendering: Gymnasium
    draws CartPole with pygame, which the course does not install."""

    metadata = {"render_modes": [], "render_fps": 50}

    def __init__(self, length_range: tuple[float, float] = LENGTH_RANGE) -> None:
        super().__init__()
        self.length_range = _check_range(length_range)
        self._task_set = False

    def sample_tasks(self, n: int) -> list[dict]:
        """``n`` tasks drawn from p(T) with the environment's generator (seed it via reset)."""
        return [{"length": float(v)} for v in sample_pole_lengths(self.np_random, n, self.length_range)]

    def set_task(self, task: dict) -> None:
        """Make ``task`` (a dict with ``"length"``, the pole's half-length) the following episodes' pole."""
        if not isinstance(task, dict) or "length" not in task:
            raise TypeError(f"a CartPole task is a dict with key 'length', got {task!r}")
        self.length = check_positive("a pole length (metres)", task["length"],
                                     "use env.sample_tasks(n) to make valid tasks")
        self.polemass_length = self.masspole * self.length
        self._task_set = True

    def get_task(self) -> dict:
        """The current task; Gymnasium's pole (ℓ = 0.5) from the first reset if none was set."""
        if not self._task_set:
            raise ValueError("no task yet: call reset() (which draws one) or set_task(task) first")
        return {"length": float(self.length)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if options and "task" in options:
            self.set_task(options["task"])
        if not self._task_set:  # a fixed default keeps reset(seed=s) reproducible
            self.set_task({"length": DEFAULT_LENGTH})
        rest = {key: value for key, value in (options or {}).items() if key != "task"}
        return super().reset(seed=seed, options=rest or None)


class BatchedCartPole:
    """``n_envs`` carts stepped together in NumPy, cart i with pole half-length ``lengths[i]``.

    Gymnasium's equations, vectorised. ``reset()`` starts every cart afresh; ``step(actions)``
    returns ``(next_states, rewards, terminated, truncated)`` with the *true* next states (no
    automatic reset, so a learner can bootstrap from them); then ``restart(done)`` starts new
    episodes where ``done`` and returns the states to act on.
    """

    n_actions = 2
    state_size = 4

    def __init__(self, lengths, rng: np.random.Generator, max_steps: int = MAX_EPISODE_STEPS) -> None:
        lengths = np.asarray(lengths, dtype=np.float64)
        if lengths.ndim != 1 or lengths.size == 0 or not np.all(lengths > 0):
            raise ValueError(f"lengths must be a 1-D array of positive half-lengths, got {lengths!r}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy Generator, got {rng!r}")
        self.lengths, self.rng = lengths, rng
        self.max_steps = check_positive_int("max_steps", max_steps)
        self.n_envs = lengths.size
        self.states = np.zeros((self.n_envs, 4))
        self.steps = np.zeros(self.n_envs, dtype=np.int64)

    def reset(self) -> np.ndarray:
        return self.restart(np.ones(self.n_envs, dtype=bool))

    def restart(self, done: np.ndarray) -> np.ndarray:
        """New episodes (states ~ U[−0.05, 0.05]⁴) in the carts where ``done``; all current states."""
        done = np.asarray(done, dtype=bool)
        self.states[done] = self.rng.uniform(-0.05, 0.05, size=(int(done.sum()), 4))
        self.steps[done] = 0
        return self.states.astype(np.float32)

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x, x_dot, theta, theta_dot = self.states.T
        force = np.where(np.asarray(actions) == 1, _FORCE, -_FORCE)
        cos, sin = np.cos(theta), np.sin(theta)
        total, polemass_length = _MASS_CART + _MASS_POLE, _MASS_POLE * self.lengths
        temp = (force + polemass_length * theta_dot ** 2 * sin) / total
        theta_acc = (_GRAVITY * sin - cos * temp) / (
            self.lengths * (4.0 / 3.0 - _MASS_POLE * cos ** 2 / total))
        x_acc = temp - polemass_length * theta_acc * cos / total
        self.states = np.stack([x + _TAU * x_dot, x_dot + _TAU * x_acc,
                                theta + _TAU * theta_dot, theta_dot + _TAU * theta_acc], axis=1)
        self.steps += 1
        terminated = (np.abs(self.states[:, 0]) > _X_LIMIT) | (np.abs(self.states[:, 2]) > _THETA_LIMIT)
        truncated = (self.steps >= self.max_steps) & ~terminated
        return self.states.astype(np.float32), np.ones(self.n_envs), terminated, truncated
