"""One interface for every reinforcement-learning environment of the course, and one record of play.

A *task environment* steps T tasks × E episodes of each task together, in torch. Every env of
``metacourse.rl.envs`` (bandits, tabular MDPs, CartPole, 2D navigation, pendulum, cheetah) and
MB-MPO's imagined env speak it; RL², MAML-RL, MB-MPO and the meta-critic consume it.

    (1) obs = env.reset(E, generator)                  obs (T, E, *obs_shape); the generator drives
                                                       every random draw of the env until the next reset
    (2) obs', r, terminated, truncated = env.step(a)   a (T, E, *act_shape); r (T, E) float;
                                                       terminated, truncated (T, E) bool
    (3) obs = env.restart(ended)                       new episodes where ``ended`` (T, E) is true,
                                                       the others go on; returns every episode's obs

``terminated`` and ``truncated`` mean what they mean in Gymnasium: an episode *terminated* when
the task itself ended it (the pole fell, the goal was reached, the bandit was pulled, the H steps
of a finite-horizon MDP are over) — nothing follows, so a value target does not bootstrap; it was
*truncated* when the time limit ``env.horizon`` cut it short — the state still had a future. An
ended episode that is not restarted stays ended: later steps earn reward 0, leave the observation
as it was and report both flags false (padding, masked by ``Rollout.mask``).

| symbol | identifier |
|---|---|
| T, E, H | ``env.n_tasks``, episodes per task, ``env.horizon`` (steps of the time limit) |
| s_t, a_t, r_t | ``Rollout.obs``, ``.actions``, ``.rewards`` (index [task, episode, time]) |
| terminated / truncated at t | ``Rollout.terminated``, ``Rollout.truncated`` (bool) |

``play`` is the one loop: it steps an env with any rule ``act(obs, last)`` and records a
``Rollout``. With ``restart=True`` ended episodes start again at once, so one row of the
episode axis may hold several episodes in a row (a stream; RL²'s trials, the meta-critic's carts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..utils import check_positive_int

__all__ = ["Step", "TaskEnv", "Rollout", "Actor", "play", "check_task_env", "check_generator"]


class Step(NamedTuple):
    """What ``env.step`` returns (eq. 2); unpacks like Gymnasium's step without ``info``."""

    obs: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor


@runtime_checkable
class TaskEnv(Protocol):
    """T tasks × E episodes stepped together (eqs. 1–3)."""

    n_tasks: int
    horizon: int

    def reset(self, n_episodes: int, generator: torch.Generator) -> Tensor: ...

    def step(self, actions: Tensor) -> Step: ...

    def restart(self, ended: Tensor) -> Tensor: ...


@dataclass
class Rollout:
    """Steps of E episodes (or streams) in each of T tasks, index [task, episode, time].

    The five first fields are filled by ``play``; the others by the algorithm that needs them
    (a recurrent policy's ``inputs``, ``log_probs`` and ``values`` at collection time, the
    ``advantages`` of a policy gradient). ``final_obs`` (T, E, *obs_shape) is where the next call
    of ``play`` goes on from (``play(..., obs=rollout.final_obs)``).
    """

    obs: Tensor
    actions: Tensor
    rewards: Tensor
    terminated: Tensor
    truncated: Tensor
    next_obs: Tensor | None = None
    final_obs: Tensor | None = None
    inputs: Tensor | None = None
    log_probs: Tensor | None = None
    values: Tensor | None = None
    advantages: Tensor | None = None

    @property
    def ended(self) -> Tensor:
        """True at the last step of every episode, whichever flag ended it."""
        return self.terminated | self.truncated

    @property
    def mask(self) -> Tensor:
        """1.0 on the steps that happened, 0.0 on the padding after an episode ended (without
        restarts; with them every step happened)."""
        ended = self.ended.to(self.rewards.dtype)
        return 1.0 - (ended.cumsum(-1) - ended).clamp(max=1.0)

    @property
    def episode_returns(self) -> Tensor:
        """Undiscounted reward of every row of the episode axis, shape (T, E)."""
        return self.rewards.sum(-1)

    @property
    def n_steps(self) -> int:
        return self.rewards.shape[-1]

    def with_fields(self, **values: Tensor) -> Rollout:
        """The same rollout with some fields set (e.g. ``advantages``)."""
        return replace(self, **values)

    def __getitem__(self, index) -> Rollout:
        """Index the leading (task, episode) dimensions of every field at once."""
        return Rollout(*(None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                         for f in fields(self)))


Actor = Callable[[Tensor, Step | None], "Tensor | tuple[Tensor, dict[str, Tensor]]"]
"""A rule ``act(obs, last)``: ``last`` is the previous step (None at the first); it returns the
actions, or the actions and per-step tensors to record (any of ``inputs``, ``log_probs``,
``values``)."""


def play(env: TaskEnv, act: Actor, n_steps: int, n_episodes: int = 1, generator: torch.Generator | None = None,
         obs: Tensor | None = None, restart: bool = False) -> Rollout:
    """Step ``env`` ``n_steps`` times with ``act`` and record everything (no gradients).

    Starts ``n_episodes`` episodes per task with ``env.reset(n_episodes, generator)``, or goes on
    from ``obs`` (a previous rollout's ``final_obs``; then ``generator`` is not used). With
    ``restart`` every ended episode is restarted at once (``env.restart``); without, it is padded.
    """
    check_positive_int("n_steps", n_steps)
    if obs is None:
        if generator is None:
            raise TypeError("play needs a torch.Generator to start episodes: pass generator=torch.Generator()"
                            ".manual_seed(seed), or obs= to go on from a rollout's final_obs")
        obs = env.reset(check_positive_int("n_episodes", n_episodes), generator)
    record: dict[str, list[Tensor]] = {}
    last: Step | None = None
    with torch.no_grad():
        for _ in range(n_steps):
            chosen = act(obs, last)
            actions, extras = chosen if isinstance(chosen, tuple) else (chosen, {})
            last = env.step(actions)
            row = {"obs": obs, "actions": actions, "rewards": last.rewards, "terminated": last.terminated,
                   "truncated": last.truncated, "next_obs": last.obs, **extras}
            for name, value in row.items():
                record.setdefault(name, []).append(value)
            obs = env.restart(last.terminated | last.truncated) if restart else last.obs
    stacked = {name: torch.stack(values, dim=2) for name, values in record.items()}
    return Rollout(**stacked, final_obs=obs)


def check_generator(generator: object) -> torch.Generator:
    """``generator`` if it is a ``torch.Generator`` (what ``env.reset`` needs); else an error with the fix."""
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"an env draws its random numbers from a torch.Generator: pass "
                        f"torch.Generator().manual_seed(seed), got {generator!r}")
    return generator


def check_task_env(env: TaskEnv, actions: Callable[[Tensor], Tensor], n_episodes: int = 3, n_steps: int = 5,
                   seed: int = 0) -> None:
    """Assert that ``env`` keeps the contract of this module (for tests of every env).

    ``actions(obs)`` must return valid actions. Checks the shapes and dtypes of (1)–(3), that the
    same generator seed gives the same episodes, and that ``restart`` leaves running episodes alone.
    """
    runs = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(seed)
        runs.append(play(env, lambda obs, last: actions(obs), n_steps, n_episodes, generator, restart=True))
    first, again = runs
    lead = (env.n_tasks, n_episodes)
    assert first.obs.shape[:3] == (*lead, n_steps), f"obs has shape {tuple(first.obs.shape)}, want {lead} + time"
    for name in ("rewards", "terminated", "truncated"):
        value = getattr(first, name)
        assert value.shape == (*lead, n_steps), f"{name} has shape {tuple(value.shape)}, want {(*lead, n_steps)}"
    assert first.terminated.dtype == torch.bool and first.truncated.dtype == torch.bool, "flags must be bool"
    assert first.rewards.is_floating_point(), "rewards must be floating point"
    for f in ("obs", "actions", "rewards", "terminated", "truncated"):
        assert torch.equal(getattr(first, f), getattr(again, f)), f"the same generator seed gave different {f}"
    obs = env.reset(n_episodes, torch.Generator().manual_seed(seed))
    step = env.step(actions(obs))
    keep = torch.zeros(lead, dtype=torch.bool)
    keep[0, 0] = True
    restarted = env.restart(~keep)
    assert torch.equal(restarted[0, 0], step.obs[0, 0]), "restart changed an episode that had not ended"
