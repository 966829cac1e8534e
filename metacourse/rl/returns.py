"""Discounted returns and generalised advantage estimation (GAE), over a trailing time axis.

Schulman, Moritz, Levine, Jordan, Abbeel, "High-Dimensional Continuous Control Using Generalized
Advantage Estimation", ICLR 2016 (arXiv:1506.02438).

    (1) return          G_t = r_t + γ (1 − d_t) G_{t+1},            G_T = V_T (bootstrap; 0 at the end)
    (2) TD residual     δ_t = r_t + γ (1 − d_t) V_{t+1} − V_t,      V_T = ``last_value``
    (3) GAE             A_t = δ_t + γ λ (1 − d_t) A_{t+1},  i.e.  A_t = Σ_l (γλ)^l δ_{t+l}
    (4) value targets   Ĝ_t = A_t + V_t                              (λ-returns)

λ = 0 gives the one-step TD advantage δ_t, λ = 1 the Monte-Carlo advantage G_t − V_t.

| symbol | identifier |
|---|---|
| r_t, V_t, d_t | ``rewards``, ``values``, ``dones`` (1 where nothing follows step t: no bootstrapping past it) |
| γ, λ | ``gamma``, ``gae_lambda`` |
| V_T | ``last_value`` (value of the state after the last step; 0 when the trajectory ended) |
| A_t, Ĝ_t | ``advantages``, ``returns`` |

With a ``task_env.Rollout``, d_t is ``rollout.terminated``. A *truncated* episode still had a
future: bootstrap it (``last_value``, or γ V(s_{t+1}) folded into r_t) when the objective runs
past the time limit; an H-step objective (MAML-RL's) stops there, V_T = 0.

Arrays have time as their last axis: ``(T,)`` or ``(batch, T)``; torch tensors or NumPy arrays
(returned as tensors). No gradient flows through the results.

Lecture: lectures/05_rl2.ipynb.
Differs from the reward-to-go of vanilla policy gradient by subtracting a learned baseline and
trading bias for variance with λ.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["discounted_returns", "gae"]


def _prepare(rewards, dones, last_value) -> tuple[Tensor, Tensor, Tensor]:
    rewards = torch.as_tensor(rewards).detach()
    dtype = rewards.dtype if rewards.is_floating_point() else torch.get_default_dtype()
    rewards = rewards.to(dtype)
    if rewards.dim() == 0:
        raise ValueError("rewards must have a time axis: shape (T,) or (batch, T)")
    not_done = torch.ones_like(rewards) if dones is None else \
        1.0 - torch.as_tensor(dones, device=rewards.device).to(dtype)
    if not_done.shape != rewards.shape:
        raise ValueError(f"dones {tuple(not_done.shape)} must match rewards {tuple(rewards.shape)}")
    last = torch.zeros(rewards.shape[:-1], dtype=dtype, device=rewards.device) if last_value is None \
        else torch.as_tensor(last_value, device=rewards.device).to(dtype).expand(rewards.shape[:-1])
    return rewards, not_done, last


def _check_factor(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def discounted_returns(rewards, gamma: float, dones=None, last_value=None) -> Tensor:
    """(1) G_t for every t; ``last_value`` bootstraps after the last step (default 0)."""
    _check_factor("gamma", gamma)
    rewards, not_done, running = _prepare(rewards, dones, last_value)
    returns = torch.empty_like(rewards)
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * not_done[..., t] * running
        returns[..., t] = running
    return returns


def gae(rewards, values, gamma: float, gae_lambda: float, dones=None, last_value=None
        ) -> tuple[Tensor, Tensor]:
    """(2)–(4) GAE advantages A_t and λ-return value targets Ĝ_t = A_t + V_t."""
    _check_factor("gamma", gamma)
    _check_factor("gae_lambda", gae_lambda)
    rewards, not_done, next_value = _prepare(rewards, dones, last_value)
    values = torch.as_tensor(values, device=rewards.device).detach().to(rewards.dtype)
    if values.shape != rewards.shape:
        raise ValueError(f"values {tuple(values.shape)} must match rewards {tuple(rewards.shape)}: "
                         "one value estimate V_t per step")
    advantages = torch.empty_like(rewards)
    running = torch.zeros_like(next_value)
    for t in range(rewards.shape[-1] - 1, -1, -1):
        delta = rewards[..., t] + gamma * not_done[..., t] * next_value - values[..., t]
        running = delta + gamma * gae_lambda * not_done[..., t] * running
        advantages[..., t] = running
        next_value = values[..., t]
    return advantages, advantages + values
