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
- ``BatchedCartPole``: T poles × E carts stepped together in torch, for training; it speaks the
  task-env contract of ``metacourse.rl.task_env`` (``reset(E, generator)``, ``step``, ``restart``).
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from torch import Tensor

from ...utils import check_positive, check_positive_int
from ..task_env import Step, check_generator
from ._episodes import EpisodeClock

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
    """T poles × E carts each, stepped together in torch: the task env of ``rl.task_env``.

    Pole i has half-length ``lengths[i]``; ``reset(E, generator)`` puts E carts under every pole
    (observations (T, E, 4), states ~ U[−0.05, 0.05]⁴ drawn with ``generator``, which also draws
    every later ``restart``). ``step(actions)`` takes (T, E) pushes (0 left, 1 right) and returns
    ``Step(obs, rewards, terminated, truncated)`` with the *true* next states (no automatic
    restart, so a learner can bootstrap from them): terminated when the pole passes 12° or the
    cart leaves ±2.4, truncated at ``horizon`` steps. ``restart(ended)`` starts new episodes where
    ``ended``; an episode that ended and was not restarted earns 0 and stands still (padding).
    The dynamics run in float64 (Gymnasium's precision); observations are float32.
    """

    n_actions = 2
    state_size = 4

    def __init__(self, lengths, horizon: int = MAX_EPISODE_STEPS) -> None:
        lengths = torch.as_tensor(lengths, dtype=torch.float64)
        if lengths.ndim != 1 or lengths.numel() == 0 or not bool((lengths > 0).all()):
            raise ValueError(f"lengths must be a 1-D array of positive half-lengths, one per task, got {lengths!r}")
        self.lengths = lengths
        self.n_tasks = lengths.numel()
        self.horizon = check_positive_int("horizon", horizon)
        self.generator: torch.Generator | None = None
        self.clock: EpisodeClock | None = None

    def reset(self, n_episodes: int, generator: torch.Generator) -> Tensor:
        """(1) E fresh carts under every pole; ``generator`` draws their starts and every restart's."""
        check_generator(generator)
        shape = (self.n_tasks, check_positive_int("n_episodes", n_episodes))
        self.generator = generator
        self.states = torch.zeros(*shape, 4, dtype=torch.float64)
        self.clock = EpisodeClock(shape, self.horizon)
        return self.restart(torch.ones(shape, dtype=torch.bool))

    def restart(self, ended: Tensor) -> Tensor:
        """(3) New episodes (states ~ U[−0.05, 0.05]⁴) in the carts where ``ended``; every cart's obs."""
        if self.generator is None:
            raise RuntimeError("no carts yet: call env.reset(n_episodes, generator) first")
        ended = self.clock.restart(self._check(ended, torch.bool, "ended"))
        starts = torch.rand((int(ended.sum()), 4), generator=self.generator, dtype=torch.float64)
        self.states[ended] = 0.1 * starts - 0.05
        return self.states.float()

    def step(self, actions: Tensor) -> Step:
        """(2) Gymnasium's Euler step of every cart that is still running."""
        if self.generator is None:
            raise RuntimeError("no carts yet: call env.reset(n_episodes, generator) first")
        running = self.clock.running
        x, x_dot, theta, theta_dot = self.states.unbind(-1)
        force = torch.where(self._check(actions, torch.long, "actions") == 1, _FORCE, -_FORCE)
        cos, sin = torch.cos(theta), torch.sin(theta)
        lengths, total = self.lengths.unsqueeze(1), _MASS_CART + _MASS_POLE
        temp = (force + _MASS_POLE * lengths * theta_dot ** 2 * sin) / total
        theta_acc = (_GRAVITY * sin - cos * temp) / (lengths * (4.0 / 3.0 - _MASS_POLE * cos ** 2 / total))
        x_acc = temp - _MASS_POLE * lengths * theta_acc * cos / total
        moved = torch.stack([x + _TAU * x_dot, x_dot + _TAU * x_acc, theta + _TAU * theta_dot,
                             theta_dot + _TAU * theta_acc], dim=-1)
        self.states = torch.where(running.unsqueeze(-1), moved, self.states)
        fell = (self.states[..., 0].abs() > _X_LIMIT) | (self.states[..., 2].abs() > _THETA_LIMIT)
        terminated, truncated = self.clock.tick(running, fell)
        return Step(self.states.float(), running.to(torch.get_default_dtype()), terminated, truncated)

    def _check(self, value, dtype: torch.dtype, name: str) -> Tensor:
        value = torch.as_tensor(value)
        if tuple(value.shape) != tuple(self.clock.steps.shape):
            raise ValueError(f"{name} must have shape (tasks, carts) = {tuple(self.clock.steps.shape)}, "
                             f"got {tuple(value.shape)}")
        return value.to(dtype)
