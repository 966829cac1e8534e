"""The linear feature baseline of rllab, fitted per task: a cheap value estimate V(s_t) for policy gradients.

Duan et al., "Benchmarking Deep RL for Continuous Control" (rllab, 2016); MAML-RL (Finn et al. 2017,
App. A.2) fits one separately for every sampled task at every iteration.

    (1) features      ψ(s_t, t) = [s_t, s_t², t/100, (t/100)², (t/100)³, 1]     (s_t clipped to ±10)
    (2) fit           w = argmin_w Σ_valid (ψ_tᵀ w − G_t)² + c ‖w‖²,   i.e.  (ΨᵀΨ + c I) w = Ψᵀ G
    (3) predict       V(s_t) = ψ_tᵀ w                                      (0 on padded steps)

If the solve is not finite, c is multiplied by 10 and the solve retried (as rllab does).

| symbol | identifier |
|---|---|
| s_t, G_t | ``obs``, ``returns`` (shape ``(..., E, H, obs_dim)`` / ``(..., E, H)``) |
| valid steps | ``mask`` (1 where the step happened) |
| c | ``reg_coeff`` |

Leading dimensions before (episodes, horizon) are separate tasks, each with its own w.

Lecture: lectures/06_maml_rl.ipynb.
Differs from a learned value network (RL², PPO) by being a closed-form least-squares fit, refitted
from scratch on each task's own trajectories.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["features", "fit", "fit_predict"]


def features(obs: Tensor, mask: Tensor) -> Tensor:
    """(1) ψ for every step, shape ``(..., E, H, 2·obs_dim + 4)``; padded steps are all zero."""
    horizon = obs.shape[-2]
    obs = obs.clamp(-10.0, 10.0)
    time = torch.arange(horizon, dtype=obs.dtype, device=obs.device) / 100.0
    time = time.expand(obs.shape[:-1]).unsqueeze(-1)
    psi = torch.cat([obs, obs ** 2, time, time ** 2, time ** 3, torch.ones_like(time)], dim=-1)
    return psi * mask.unsqueeze(-1).to(obs.dtype)


def fit(obs: Tensor, returns: Tensor, mask: Tensor, reg_coeff: float = 1e-5) -> Tensor:
    """(2) The weights w of each task, shape ``(..., n_features)`` (leading dims = tasks)."""
    psi = features(obs, mask).flatten(-3, -2)                    # (..., E·H, F)
    targets = (returns * mask.to(returns.dtype)).flatten(-2, -1).unsqueeze(-1)
    gram = psi.transpose(-1, -2) @ psi
    rhs = psi.transpose(-1, -2) @ targets
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    for _ in range(5):
        weights = torch.linalg.solve(gram + reg_coeff * eye, rhs).squeeze(-1)
        if torch.isfinite(weights).all():
            return weights
        reg_coeff *= 10.0
    raise ValueError("the linear baseline's least-squares fit is not finite even with "
                     f"reg_coeff={reg_coeff:g}; check the rewards for NaN or inf")


def fit_predict(obs: Tensor, returns: Tensor, mask: Tensor, reg_coeff: float = 1e-5) -> Tensor:
    """(2)–(3) Fit w on (obs, returns) and return V for every step, shape of ``returns``."""
    obs, returns = obs.detach(), returns.detach()
    weights = fit(obs, returns, mask, reg_coeff)
    psi = features(obs, mask)
    return (psi * weights.unsqueeze(-2).unsqueeze(-2)).sum(-1)
