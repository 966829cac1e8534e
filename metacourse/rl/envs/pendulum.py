"""Pendulum with a sampled mass and length: a cheap continuous-control task family (no MuJoCo).

A task is the pendulum's mass m and length ℓ; everything else is Gymnasium's ``Pendulum-v1``
(g = 10, Δt = 0.05 s, torque u ∈ [−2, 2], angular speed clipped to ±8, 200-step episodes):

    (1) θ̇_{t+1} = clip(θ̇_t + (3g / (2ℓ) sin θ_t + 3 / (m ℓ²) u_t) Δt, −8, 8)
    (2) θ_{t+1} = θ_t + θ̇_{t+1} Δt                                   (semi-implicit Euler)
    (3) r_t = −(norm(θ_t)² + 0.1 θ̇_t² + 0.001 u_t²)                  norm(θ) ∈ [−π, π), 0 = upright

The observation is (cos θ, sin θ, θ̇); a start is θ ~ U[−π, π], θ̇ ~ U[−1, 1]. Heavier and longer
pendulums need more swings to get up (the torque limit is the same), so one policy does well on
some tasks and badly on others. Task ranges: m ~ U[0.5, 1.5] kg and ℓ ~ U[0.5, 1.5] m, i.e.
0.5×–1.5× Gymnasium's m = ℓ = 1.

Three pieces, all the same equations:

- ``MassLengthPendulumEnv``: a Gymnasium 1.x environment (``metacourse/PendulumMassLength-v0``,
  200-step limit) with ``sample_tasks(n)``, ``set_task(task)``, ``get_task()``; a task is
  ``{"mass": float, "length": float}`` and stays set across resets. Seeding: ``reset(seed=...)``.
- ``BatchedPendulum``: T tasks × E episodes stepped together in torch, for fast real rollouts
  (task i is the pendulum ``masses[i]``, ``lengths[i]``): a task env of ``metacourse.rl.task_env``.
- ``pendulum_reward(observations, actions)``: (3) in torch from an observation, so a learned
  model's imagined rollouts can be scored (model-based RL assumes the reward is known).
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium.envs.classic_control.pendulum import PendulumEnv
from torch import Tensor

from ...utils import check_positive, check_positive_int
from ..task_env import Step, check_generator
from ._episodes import EpisodeClock, started

__all__ = ["MassLengthPendulumEnv", "BatchedPendulum", "pendulum_reward", "sample_pendulums",
           "MASS_RANGE", "LENGTH_RANGE", "MAX_EPISODE_STEPS", "MAX_TORQUE"]

MASS_RANGE = (0.5, 1.5)
"""Range of the mass m in kg (Gymnasium's pendulum: 1)."""
LENGTH_RANGE = (0.5, 1.5)
"""Range of the length ℓ in m (Gymnasium's pendulum: 1)."""
MAX_EPISODE_STEPS = 200
"""Episode limit, as Pendulum-v1."""
MAX_TORQUE, MAX_SPEED, GRAVITY, DT = 2.0, 8.0, 10.0, 0.05


def sample_pendulums(rng: np.random.Generator, n_tasks: int, mass_range=MASS_RANGE,
                     length_range=LENGTH_RANGE) -> tuple[np.ndarray, np.ndarray]:
    """``n_tasks`` masses and lengths drawn uniformly, each of shape ``(n_tasks,)``."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {rng!r}")
    check_positive_int("n_tasks", n_tasks)
    masses = rng.uniform(*_check_range("mass_range", mass_range), size=n_tasks)
    lengths = rng.uniform(*_check_range("length_range", length_range), size=n_tasks)
    return masses, lengths


def _check_range(name: str, values) -> tuple[float, float]:
    low, high = (float(v) for v in values)
    if not 0.0 < low <= high:
        raise ValueError(f"{name}={values!r} must be (low, high) with 0 < low <= high")
    return low, high


class MassLengthPendulumEnv(PendulumEnv):
    """Gymnasium's Pendulum whose mass and length are the task. No rendering: Gymnasium draws it
    with pygame, which the course does not install."""

    metadata = {"render_modes": [], "render_fps": 30}

    def __init__(self, mass_range=MASS_RANGE, length_range=LENGTH_RANGE) -> None:
        super().__init__()
        self.mass_range = _check_range("mass_range", mass_range)
        self.length_range = _check_range("length_range", length_range)
        self._task_set = False

    def sample_tasks(self, n: int) -> list[dict]:
        """``n`` tasks drawn from p(T) with the environment's generator (seed it via reset)."""
        masses, lengths = sample_pendulums(self.np_random, n, self.mass_range, self.length_range)
        return [{"mass": float(m), "length": float(ell)} for m, ell in zip(masses, lengths)]

    def set_task(self, task: dict) -> None:
        """Make ``task`` (a dict with ``"mass"`` and ``"length"``) the following episodes' pendulum."""
        if not isinstance(task, dict) or not {"mass", "length"} <= set(task):
            raise TypeError(f"a Pendulum task is a dict with keys 'mass' and 'length', got {task!r}")
        hint = "use env.sample_tasks(n) to make valid tasks"
        self.m = check_positive("a pendulum's mass", task["mass"], hint)
        self.l = check_positive("a pendulum's length", task["length"], hint)
        self._task_set = True

    def get_task(self) -> dict:
        """The current task; Gymnasium's pendulum (m = ℓ = 1) from the first reset if none was set."""
        if not self._task_set:
            raise ValueError("no task yet: call reset() (which sets m = ℓ = 1) or set_task(task) first")
        return {"mass": float(self.m), "length": float(self.l)}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if options and "task" in options:
            self.set_task(options["task"])
        if not self._task_set:  # a fixed default keeps reset(seed=s) reproducible
            self.set_task({"mass": 1.0, "length": 1.0})
        rest = {key: value for key, value in (options or {}).items() if key != "task"}
        return super().reset(seed=seed, options=rest or None)


def pendulum_reward(observations: Tensor, actions: Tensor) -> Tensor:
    """(3) The reward of acting ``actions`` (…, 1) in ``observations`` (…, 3) = (cos θ, sin θ, θ̇).
    atan2 gives the angle in (−π, π], whose square equals Gymnasium's normalised angle's."""
    theta = torch.atan2(observations[..., 1], observations[..., 0])
    torque = actions[..., 0].clamp(-MAX_TORQUE, MAX_TORQUE)
    return -(theta ** 2 + 0.1 * observations[..., 2] ** 2 + 0.001 * torque ** 2)


class BatchedPendulum:
    """T pendulums (one task each) × E episodes per task, stepped together in torch: a task env of
    ``metacourse.rl.task_env``.

    ``reset(n_episodes, generator)`` starts E episodes per task and returns observations of shape
    ``(T, E, 3)``; ``step(actions)`` takes torques ``(T, E, 1)`` (clipped to ±2) and returns
    ``Step(observations, rewards, terminated, truncated)``, the last three of shape ``(T, E)``. A
    pendulum never terminates; it is truncated after ``horizon`` = 200 steps, then stands still
    and earns 0 until ``restart(ended)`` draws it a new start (from the generator of ``reset``).
    The state is float64 (as Gymnasium's NumPy), observations float32. ``set_tasks`` swaps the pendulums.
    """

    obs_dim = 3
    act_dim = 1

    def __init__(self, masses, lengths, horizon: int = MAX_EPISODE_STEPS) -> None:
        self.set_tasks(masses, lengths)
        self.horizon = check_positive_int("horizon", horizon)
        self.state = torch.zeros(self.n_tasks, 1, 2, dtype=torch.float64)
        self.clock: EpisodeClock | None = None
        self.generator: torch.Generator | None = None

    def set_tasks(self, masses, lengths) -> None:
        """Task i becomes the pendulum of mass ``masses[i]`` and length ``lengths[i]``."""
        masses = torch.as_tensor(np.asarray(masses, dtype=np.float64))
        lengths = torch.as_tensor(np.asarray(lengths, dtype=np.float64))
        if masses.dim() != 1 or masses.shape != lengths.shape or masses.numel() == 0 \
                or not bool((masses > 0).all() and (lengths > 0).all()):
            raise ValueError("masses and lengths must be 1-D arrays of the same length with positive "
                             "entries; make them with sample_pendulums(rng, n)")
        self.masses, self.lengths, self.n_tasks = masses[:, None], lengths[:, None], masses.numel()

    def observe(self) -> Tensor:
        theta, speed = self.state.unbind(-1)
        return torch.stack([theta.cos(), theta.sin(), speed], dim=-1).float()

    def reset(self, n_episodes: int, generator: torch.Generator) -> Tensor:
        """E = ``n_episodes`` starts per task, θ ~ U[−π, π], θ̇ ~ U[−1, 1], drawn from ``generator``
        (which also draws the starts of every later ``restart``)."""
        check_generator(generator)
        shape = (self.n_tasks, check_positive_int("n_episodes", n_episodes))
        self.generator, self.clock = generator, EpisodeClock(shape, self.horizon)
        self.state = torch.zeros(*shape, 2, dtype=torch.float64)
        return self.restart(torch.ones(shape, dtype=torch.bool))

    def restart(self, ended: Tensor) -> Tensor:
        """New starts where ``ended`` (T, E); every episode's observation."""
        ended = started(self.clock).restart(ended)
        uniform = torch.rand(int(ended.sum()), 2, generator=self.generator, dtype=torch.float64)
        self.state[ended] = (uniform * 2 - 1) * torch.tensor([np.pi, 1.0], dtype=torch.float64)
        return self.observe()

    def step(self, actions: Tensor) -> Step:
        """(1)–(3) for every running pendulum."""
        clock = started(self.clock)
        torque = torch.as_tensor(actions).to(torch.float64)
        if torque.shape != (*self.state.shape[:2], 1):
            raise ValueError(f"actions must have shape {(*self.state.shape[:2], 1)} (tasks, episodes, 1), "
                             f"got {tuple(torque.shape)}")
        torque = torque[..., 0].clamp(-MAX_TORQUE, MAX_TORQUE)
        theta, speed = self.state.unbind(-1)
        normalised = (theta + np.pi) % (2 * np.pi) - np.pi
        running = clock.running
        rewards = torch.where(running, -(normalised ** 2 + 0.1 * speed ** 2 + 0.001 * torque ** 2), 0.0)
        speed = (speed + (3 * GRAVITY / (2 * self.lengths) * theta.sin()
                          + 3.0 / (self.masses * self.lengths ** 2) * torque) * DT).clamp(-MAX_SPEED, MAX_SPEED)
        moved = torch.stack([theta + speed * DT, speed], dim=-1)
        self.state = torch.where(running.unsqueeze(-1), moved, self.state)
        terminated, truncated = clock.tick(running, torch.zeros_like(running))
        return Step(self.observe(), rewards.float(), terminated, truncated)
