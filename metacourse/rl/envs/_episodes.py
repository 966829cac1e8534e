"""The time limit and the end-of-episode bookkeeping that every batched task env of this package shares.

``rl.task_env``'s contract: an episode is *truncated* when it has run ``horizon`` steps without
terminating (a time limit imposed from outside the task), or *terminated* there when the horizon is
part of the task itself (a finite-horizon MDP, a bandit pull); an ended episode that is not
restarted is padding (reward 0, state unchanged, both flags false) until ``restart`` starts a new
one in its place.
"""

from __future__ import annotations

import torch
from torch import Tensor

LIMITS = ("truncates", "terminates")


class EpisodeClock:
    """Step counts and ended flags of T × E episodes that end after ``horizon`` steps at most.

    ``limit="truncates"``: the horizon is a time limit (Gymnasium's ``truncated``, the task could
    go on); ``"terminates"``: the horizon is part of the task (``terminated``: nothing comes after it).
    """

    def __init__(self, shape: tuple[int, int], horizon: int, device: str | torch.device = "cpu",
                 limit: str = "truncates") -> None:
        if limit not in LIMITS:
            raise ValueError(f"limit={limit!r}: choose one of {LIMITS}")
        self.horizon, self.limit = horizon, limit
        self.steps = torch.zeros(shape, dtype=torch.long, device=device)
        self.over = torch.zeros(shape, dtype=torch.bool, device=device)  # ended, not restarted: padding

    @property
    def running(self) -> Tensor:
        """True for the episodes a step moves (not padding), shape (T, E)."""
        return ~self.over

    def tick(self, running: Tensor, terminated: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Count one step of the ``running`` episodes, ``terminated`` where the task ended them
        (``None``: nowhere); returns the flags (terminated, truncated)."""
        terminated = running & (torch.zeros_like(running) if terminated is None else terminated)
        self.steps = self.steps + running.long()
        at_limit = running & ~terminated & (self.steps >= self.horizon)
        if self.limit == "terminates":
            terminated, truncated = terminated | at_limit, torch.zeros_like(at_limit)
        else:
            truncated = at_limit
        self.over = self.over | terminated | truncated
        return terminated, truncated

    def state_dict(self) -> dict[str, Tensor]:
        """Step counts and ended flags, for a checkpoint of a run stopped between two steps."""
        return {"steps": self.steps, "over": self.over}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.steps, self.over = state["steps"], state["over"]

    def restart(self, ended: Tensor) -> Tensor:
        """Start the clock again where ``ended`` (T, E) is true; returns ``ended`` as a bool tensor."""
        ended = torch.as_tensor(ended, device=self.steps.device)
        if ended.shape != self.steps.shape or ended.dtype != torch.bool:
            raise ValueError(f"ended must be a bool tensor of shape {tuple(self.steps.shape)} (tasks, episodes), "
                             f"got {ended.dtype} {tuple(ended.shape)}: pass step.terminated | step.truncated")
        self.steps = torch.where(ended, torch.zeros_like(self.steps), self.steps)
        self.over = self.over & ~ended
        return ended


def started(clock: EpisodeClock | None) -> EpisodeClock:
    """``clock`` if ``reset`` made one, else an error that says to call it."""
    if clock is None:
        raise RuntimeError("no episodes yet: call env.reset(n_episodes, generator) first")
    return clock
