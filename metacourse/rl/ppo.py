"""Proximal policy optimisation: the clipped surrogate objective and its minibatch update.

Schulman, Wolski, Dhariwal, Radford, Klimov, "Proximal Policy Optimization Algorithms",
arXiv:1707.06347 (2017).

    (1) ratio           ρ_t(θ) = π_θ(a_t | h_t) / π_θ_old(a_t | h_t) = exp(log π_θ − log π_θ_old)
    (2) clipped loss    L^CLIP = −E_t[ min(ρ_t Â_t, clip(ρ_t, 1 − ε, 1 + ε) Â_t) ]
    (3) value loss      L^V = E_t[ (V_θ(h_t) − Ĝ_t)² ]
    (4) total           L = L^CLIP + c_V L^V − c_H E_t[ H(π_θ(· | h_t)) ]
    (5) update          ``epochs`` passes over the batch in ``minibatches`` shuffled parts, each an
                        Adam step (step size β) after clipping each parameter group's gradient norm

Â_t are advantages (GAE, ``returns.gae``), standardised per batch when ``normalize_advantages``.
The approximate KL divergence KL(π_old ‖ π) ≈ E[(ρ_t − 1) − log ρ_t] is logged (Schulman's "k3"
estimator: unbiased and never negative, unlike E[log π_old − log π], whose sample mean can be);
with ``target_kl`` the epochs stop early once it exceeds that value. Minibatches are shuffled
with an explicit ``torch.Generator`` (``update``'s ``generator``).

| symbol | identifier |
|---|---|
| ρ_t, ε | ``ratio``, ``cfg.clip_ratio`` |
| Â_t, Ĝ_t | ``advantages``, ``returns`` |
| c_V, c_H | ``cfg.value_coef``, ``cfg.entropy_coef`` |
| β | ``cfg.outer_lr`` (the optimizer's step size; the meta step size when PPO trains RL²) |

Lecture: lectures/05_rl2.ipynb.
Differs from TRPO (which RL² used) by replacing the KL trust-region constraint, solved with
conjugate gradients and a line search, with a clipped ratio and plain first-order minibatch steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..utils import check_nonnegative, check_positive_int

__all__ = ["Config", "clipped_surrogate", "value_loss", "masked_mean", "normalize", "ppo_loss",
           "update"]


@dataclass(frozen=True)
class Config:
    """PPO's hyper-parameters (defaults: the paper's Atari/MuJoCo values where they exist)."""

    clip_ratio: float = 0.2
    """ε, the clipping range of the probability ratio. Paper: 0.2."""
    value_coef: float = 0.5
    """c_V, weight of the value loss. Paper: 0.5 (1 when the value net is separate)."""
    entropy_coef: float = 0.01
    """c_H, weight of the entropy bonus. Paper: 0.01."""
    epochs: int = 4
    """Passes over each batch. Paper: 3–10."""
    minibatches: int = 4
    """Minibatches per pass (items, e.g. whole trials, are split evenly)."""
    outer_lr: float = 3e-4
    """β, Adam's step size. Paper: 3e-4 (MuJoCo), 2.5e-4 (Atari)."""
    max_grad_norm: float = 0.5
    """Clip each parameter group's gradient norm to this (0: no clipping)."""
    normalize_advantages: bool = True
    """Standardise Â over the batch (mean 0, std 1)."""
    target_kl: float | None = None
    """Stop after an epoch whose mean approximate KL exceeds this (None: never)."""

    def __post_init__(self) -> None:
        check_nonnegative("clip_ratio", self.clip_ratio)
        check_nonnegative("value_coef", self.value_coef)
        check_nonnegative("entropy_coef", self.entropy_coef)
        check_positive_int("epochs", self.epochs)
        check_positive_int("minibatches", self.minibatches)
        check_nonnegative("outer_lr", self.outer_lr)
        check_nonnegative("max_grad_norm", self.max_grad_norm)


def masked_mean(values: Tensor, mask: Tensor | None = None, dim: int | tuple[int, ...] | None = None,
                keepdim: bool = False) -> Tensor:
    """Mean over the entries where ``mask`` is true (all entries when ``mask`` is None): over
    every dimension, or over ``dim`` only (e.g. ``dim=(-2, -1)``: one mean per task)."""
    if mask is None:
        return values.mean() if dim is None else values.mean(dim, keepdim=keepdim)
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp_min(1.0)
    return (values * mask).sum(dim, keepdim=keepdim) / mask.sum(dim, keepdim=keepdim).clamp_min(1.0)


def normalize(advantages: Tensor, mask: Tensor | None = None, eps: float = 1e-8,
              dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Standardise advantages to mean 0 and standard deviation 1 (over ``mask``; over ``dim``
    only when given, e.g. per task)."""
    mean = masked_mean(advantages, mask, dim, keepdim=True)
    std = masked_mean((advantages - mean) ** 2, mask, dim, keepdim=True).sqrt()
    return (advantages - mean) / (std + eps)


def clipped_surrogate(log_probs: Tensor, old_log_probs: Tensor, advantages: Tensor,
                      clip_ratio: float, mask: Tensor | None = None
                      ) -> tuple[Tensor, dict[str, Tensor]]:
    """(1)–(2) The clipped surrogate loss (to minimise), with the approximate KL and clip fraction."""
    ratio = torch.exp(log_probs - old_log_probs)
    clipped = torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    loss = -masked_mean(torch.min(ratio * advantages, clipped * advantages), mask)
    with torch.no_grad():
        log_ratio = log_probs - old_log_probs
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)  # (ρ − 1) − log ρ ≥ 0
        clip_fraction = masked_mean(((ratio - 1.0).abs() > clip_ratio).float(), mask)
    return loss, {"approx_kl": approx_kl, "clip_fraction": clip_fraction}


def value_loss(values: Tensor, returns: Tensor, mask: Tensor | None = None) -> Tensor:
    """(3) Mean squared error between value predictions and targets."""
    return masked_mean((values - returns) ** 2, mask)


def ppo_loss(log_probs: Tensor, entropy: Tensor, values: Tensor, batch: Mapping[str, Tensor],
             cfg: Config) -> tuple[Tensor, dict[str, Tensor]]:
    """(4) The total loss of one minibatch; ``batch`` holds ``old_log_probs``, ``advantages``,
    ``returns`` and optionally ``mask`` (valid steps)."""
    mask = batch.get("mask")
    policy_loss, stats = clipped_surrogate(log_probs, batch["old_log_probs"], batch["advantages"],
                                           cfg.clip_ratio, mask)
    critic_loss = value_loss(values, batch["returns"], mask)
    entropy_mean = masked_mean(entropy, mask)
    loss = policy_loss + cfg.value_coef * critic_loss - cfg.entropy_coef * entropy_mean
    stats.update(policy_loss=policy_loss.detach(), value_loss=critic_loss.detach(),
                 entropy=entropy_mean.detach())
    return loss, stats


Evaluate = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]


def update(evaluate: Evaluate, optimizer: torch.optim.Optimizer, batch: Mapping[str, Tensor],
           cfg: Config, parameter_groups: Iterable[Iterable[Tensor]] | None = None, *,
           generator: torch.Generator) -> dict[str, float]:
    """(5) PPO epochs over a batch whose tensors share a leading item axis (steps or trials).

    ``evaluate(indices) -> (log_probs, entropy, values)`` recomputes the current policy on those
    items (shaped like ``batch["old_log_probs"][indices]``). Each group of ``parameter_groups``
    (default: the optimizer's groups) has its gradient norm clipped alone, so a value network's
    large gradients do not shrink the policy's. ``generator`` (required) shuffles the minibatches.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"ppo.update shuffles its minibatches with an explicit generator: pass "
                        f"generator=torch.Generator().manual_seed(seed), got {generator!r}")
    batch = dict(batch)
    if cfg.normalize_advantages:
        batch["advantages"] = normalize(batch["advantages"], batch.get("mask"))
    groups = [list(g) for g in parameter_groups] if parameter_groups is not None \
        else [g["params"] for g in optimizer.param_groups]
    n_items = batch["old_log_probs"].shape[0]
    totals: dict[str, float] = {}
    count = 0
    for _ in range(cfg.epochs):
        epoch_kl, epoch_count = 0.0, 0
        for indices in torch.randperm(n_items, generator=generator).chunk(min(cfg.minibatches, n_items)):
            log_probs, entropy, values = evaluate(indices)
            loss, stats = ppo_loss(log_probs, entropy, values,
                                   {k: v[indices] for k, v in batch.items()}, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for group in groups:
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(group, cfg.max_grad_norm)
            optimizer.step()
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + float(value)
            count, epoch_count = count + 1, epoch_count + 1
            epoch_kl += float(stats["approx_kl"])
        if cfg.target_kl is not None and epoch_kl / epoch_count > cfg.target_kl:
            break  # the last epoch moved the policy too far: stop early
    return {key: value / count for key, value in totals.items()}
