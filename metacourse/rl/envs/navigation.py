"""2D navigation: a point agent must walk to a goal it cannot see, the toy task family of MAML-RL.

Finn, Abbeel, Levine 2017, §5.3 and App. A.2; the official code ``cbfinn/maml_rl``,
``maml_examples/point_env_randgoal.py``. A task is a goal g ~ U[−0.5, 0.5]². Every episode starts
at the origin; the observation is the agent's position x_t ∈ R² (not the goal), the action a
velocity, clipped to [−0.1, 0.1] per coordinate:

    (1) x_{t+1} = x_t + clip(a_t, −0.1, 0.1),     x_0 = (0, 0)
    (2) r_t = −‖x_{t+1} − g‖₂                     (the official code; see the choice below)
    (3) the episode terminates when |x_{t+1} − g| < 0.01 in both coordinates, and is
        truncated after H = 100 steps.

**Reward: −distance, not −distance².** The paper's text says "negative squared distance"; the
official code, and the PyTorch port ``tristandeleu/pytorch-maml-rl``, use the Euclidean distance.
We follow the code because it is what produced Table 4: a policy that stands still at the origin
earns 100 · E‖g‖ ≈ −38.3 per episode with −distance (Table 4, 0 steps: −40.41) but only
100 · E‖g‖² ≈ −16.7 with −distance².

Two implementations of the same task family:

- ``Navigation2DEnv``: a Gymnasium 1.x environment (registered as ``metacourse/Navigation2D-v0``
  with a 100-step limit) with the meta-RL task API ``sample_tasks(n)``, ``set_task(task)``,
  ``get_task()``; a task is ``{"goal": array of 2 floats}`` and stays set across resets.
  Seeding goes through ``reset(seed=...)``.
- ``BatchedNavigation2D``: T tasks × E episodes stepped together in torch (float32 or float64),
  a task env of ``metacourse.rl.task_env``: terminated at the goal, truncated at H; an episode
  that ended stays where it is and earns 0 until it is restarted. This is where MAML-RL's speed
  comes from on a CPU.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from ...utils import check_positive_int
from ..task_env import Step
from ._episodes import EpisodeClock, started

__all__ = ["Navigation2DEnv", "BatchedNavigation2D", "sample_goals", "GOAL_LOW", "GOAL_HIGH",
           "MAX_ACTION", "HORIZON", "GOAL_TOLERANCE"]

GOAL_LOW, GOAL_HIGH = -0.5, 0.5
"""Goals are uniform in [GOAL_LOW, GOAL_HIGH]² (the official code's square)."""
MAX_ACTION = 0.1
"""Each coordinate of the velocity is clipped to [−MAX_ACTION, MAX_ACTION]."""
HORIZON = 100
"""H, the episode limit."""
GOAL_TOLERANCE = 0.01
"""The episode ends when the agent is within this distance of the goal in both coordinates."""


def sample_goals(rng: np.random.Generator, n_tasks: int) -> np.ndarray:
    """``n_tasks`` goals g ~ U[−0.5, 0.5]², shape ``(n_tasks, 2)``."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {rng!r}")
    check_positive_int("n_tasks", n_tasks)
    return rng.uniform(GOAL_LOW, GOAL_HIGH, size=(n_tasks, 2))


def _check_goal(goal: object) -> np.ndarray:
    array = np.asarray(goal, dtype=np.float64)
    if array.shape != (2,) or not np.all(np.isfinite(array)):
        raise ValueError(f"a navigation goal is 2 finite numbers, got {goal!r}; "
                         "use env.sample_tasks(n) to make valid tasks")
    return array


class Navigation2DEnv(gym.Env):
    """A point mass in the plane that must reach a hidden goal (eqs. 1–3).

    Observation: the position, ``Box(-10, 10, (2,))`` (as far as H = 100 steps can go). Action: a velocity in
    ``Box(-0.1, 0.1, (2,))`` (larger actions are clipped, as in the official code). Reward:
    −‖x − g‖. ``info["distance"]`` is that distance. Before any ``set_task``, the first
    ``reset`` draws a goal with the seeded generator.
    """

    metadata = {"render_modes": [], "render_fps": 10}

    def __init__(self) -> None:
        bound = HORIZON * MAX_ACTION  # the farthest 100 steps can go
        self.observation_space = spaces.Box(-bound, bound, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-MAX_ACTION, MAX_ACTION, shape=(2,), dtype=np.float32)
        self._goal: np.ndarray | None = None
        self._position = np.zeros(2)

    def sample_tasks(self, n: int) -> list[dict]:
        """``n`` tasks drawn from p(T) with the environment's generator (seed it via reset)."""
        return [{"goal": goal} for goal in sample_goals(self.np_random, n)]

    def set_task(self, task: dict) -> None:
        """Make ``task`` (a dict with ``"goal"``, 2 floats) the goal of the following episodes."""
        if not isinstance(task, dict) or "goal" not in task:
            raise TypeError(f"a navigation task is a dict with key 'goal', got {task!r}")
        self._goal = _check_goal(task["goal"])

    def get_task(self) -> dict:
        """The current task; raises until ``set_task`` or a first ``reset`` gave one."""
        if self._goal is None:
            raise ValueError("no task yet: call reset() (which draws one) or set_task(task) first")
        return {"goal": self._goal.copy()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and "task" in options:
            self.set_task(options["task"])
        if self._goal is None:
            self.set_task(self.sample_tasks(1)[0])
        self._position = np.zeros(2)
        return self._position.astype(np.float32), {}

    def step(self, action):
        velocity = np.clip(np.asarray(action, dtype=np.float64), -MAX_ACTION, MAX_ACTION)
        if velocity.shape != (2,):
            raise ValueError(f"an action is a velocity of 2 numbers, got shape {velocity.shape}")
        self._position = self._position + velocity
        offset = self._position - self._goal
        distance = float(np.sqrt(np.sum(offset ** 2)))
        terminated = bool(np.all(np.abs(offset) < GOAL_TOLERANCE))
        return self._position.astype(np.float32), -distance, terminated, False, {"distance": distance}


class BatchedNavigation2D:
    """T tasks (one goal each) × E episodes per task, stepped together in torch: a task env of
    ``metacourse.rl.task_env``.

    ``reset(n_episodes)`` returns positions of shape ``(T, E, 2)``, all at the origin (the start
    is deterministic: a ``generator`` is taken and not used); ``step(actions)`` takes velocities
    ``(T, E, 2)`` and returns ``Step(positions, rewards, terminated, truncated)``, the last three
    of shape ``(T, E)``: terminated at the goal (3), truncated after ``horizon`` steps. An episode
    that ended earns reward 0 and stays put afterwards, until ``restart(ended)`` sends it back to
    the origin.
    """

    obs_dim = 2
    act_dim = 2

    def __init__(self, goals, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                 horizon: int = HORIZON) -> None:
        goals = torch.as_tensor(np.asarray(goals, dtype=np.float64), dtype=dtype, device=device)
        if goals.dim() != 2 or goals.shape[1] != 2 or goals.shape[0] == 0:
            raise ValueError(f"goals must have shape (n_tasks, 2), got {tuple(goals.shape)}; "
                             "use sample_goals(rng, n_tasks)")
        self.goals = goals
        self.n_tasks = goals.shape[0]
        self.horizon = check_positive_int("horizon", horizon)
        self.positions = torch.zeros(self.n_tasks, 1, 2, dtype=dtype, device=device)
        self.clock: EpisodeClock | None = None

    def reset(self, n_episodes: int = 1, generator: torch.Generator | None = None) -> Tensor:
        """Start ``n_episodes`` episodes per task at the origin."""
        shape = (self.n_tasks, check_positive_int("n_episodes", n_episodes))
        self.positions = torch.zeros(*shape, 2, dtype=self.goals.dtype, device=self.goals.device)
        self.clock = EpisodeClock(shape, self.horizon, self.goals.device)
        return self.positions.clone()

    def restart(self, ended: Tensor) -> Tensor:
        """Send the episodes where ``ended`` back to the origin; every episode's position."""
        ended = started(self.clock).restart(ended)
        self.positions = torch.where(ended.unsqueeze(-1), torch.zeros_like(self.positions), self.positions)
        return self.positions.clone()

    def reached(self, positions: Tensor) -> Tensor:
        """(3) True where ``positions`` (T, E, 2) are within GOAL_TOLERANCE of the goal in both coordinates."""
        return ((positions - self.goals.unsqueeze(1)).abs() < GOAL_TOLERANCE).all(-1)

    def step(self, actions: Tensor) -> Step:
        """(1)–(3) for every running episode."""
        clock = started(self.clock)
        velocity = torch.as_tensor(actions, dtype=self.goals.dtype).clamp(-MAX_ACTION, MAX_ACTION)
        if velocity.shape != self.positions.shape:
            raise ValueError(f"actions must have shape {tuple(self.positions.shape)} (tasks, "
                             f"episodes, 2), got {tuple(velocity.shape)}")
        running = clock.running
        self.positions = torch.where(running.unsqueeze(-1), self.positions + velocity, self.positions)
        offset = self.positions - self.goals.unsqueeze(1)
        rewards = torch.where(running, -offset.pow(2).sum(-1).sqrt(), torch.zeros(()).to(offset))
        terminated, truncated = clock.tick(running, self.reached(self.positions))
        return Step(self.positions.clone(), rewards, terminated, truncated)
