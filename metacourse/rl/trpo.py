"""Trust-region policy optimisation (TRPO): a natural-gradient step kept inside a KL ball.

Schulman, Levine, Moritz, Jordan, Abbeel, "Trust Region Policy Optimization", ICML 2015
(arXiv:1502.05477). MAML-RL's outer step (Finn et al. 2017) and MB-MPO's meta-policy step.

    (1) problem        min_θ L(θ)   subject to   KL(π_θold ‖ π_θ) ≤ δ
    (2) linearise      g = ∇_θ L(θ_old),   F = ∇²_θ KL(π_θold ‖ π_θ) at θ_old (the Fisher matrix)
    (3) direction      s = F⁻¹ g, by conjugate gradient using only products F v = ∇_θ((∇_θ KL)ᵀ v)
    (4) step size      β = √(2δ / sᵀ F s)                   (the quadratic model's KL is then δ)
    (5) line search    θ = θ_old − ρ^j β s,  j = 0, 1, …: the first j whose loss decreased and
                       whose exact KL ≤ δ; if none does, θ stays θ_old

| symbol | identifier |
|---|---|
| L(θ), KL(θ) | ``loss_and_kl(params) -> (loss, kl)`` |
| δ | ``max_kl`` (0.01 in MAML-RL and MB-MPO) |
| F v | ``fisher_vector_product`` (damped: F v + ``damping`` · v) |
| ρ, j_max | ``backtrack_ratio`` (0.8), ``max_backtracks`` (15) |

Parameters are ``dict[str, Tensor]`` as everywhere in the library; ``flat``/``unflat`` convert.

Lecture: lectures/06_maml_rl.ipynb.
Differs from PPO (``ppo.py``) by enforcing the trust region exactly (second-order model + line
search) instead of clipping the probability ratio.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from ..functional import Params

__all__ = ["flat", "unflat", "conjugate_gradient", "fisher_vector_product", "line_search", "update"]

LossAndKL = Callable[[Params], tuple[Tensor, Tensor]]


def flat(tensors: Sequence[Tensor] | Mapping[str, Tensor]) -> Tensor:
    """All tensors concatenated into one vector (a dict's values in its order)."""
    values = tensors.values() if isinstance(tensors, Mapping) else tensors
    return torch.cat([t.reshape(-1) for t in values])


def unflat(vector: Tensor, like: Mapping[str, Tensor]) -> Params:
    """The inverse of ``flat``: a dict shaped like ``like`` whose entries are slices of ``vector``."""
    out, start = {}, 0
    for name, tensor in like.items():
        out[name] = vector[start:start + tensor.numel()].view_as(tensor)
        start += tensor.numel()
    if start != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries but the parameters have {start}")
    return out


def conjugate_gradient(matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10,
                       residual_tol: float = 1e-10) -> Tensor:
    """(3) Approximately solve A x = b for symmetric positive-definite A given only x ↦ A x.

    ``iters`` steps of the conjugate-gradient method from x = 0 (exact after dim(b) steps in
    exact arithmetic); stops early when the squared residual falls below ``residual_tol``.
    """
    x = torch.zeros_like(b)
    residual, direction = b.clone(), b.clone()
    rr = residual @ residual
    for _ in range(iters):
        if rr < residual_tol:
            break
        a_direction = matvec(direction)
        alpha = rr / (direction @ a_direction)
        x = x + alpha * direction
        residual = residual - alpha * a_direction
        rr_new = residual @ residual
        direction = residual + (rr_new / rr) * direction
        rr = rr_new
    return x


def fisher_vector_product(kl: Tensor, params: Params, damping: float = 1e-5) -> Callable[[Tensor], Tensor]:
    """(2)–(3) v ↦ F v + damping · v, F the Hessian of ``kl`` at ``params`` (double backprop).

    ``kl`` must have been computed from ``params`` with a graph; the first derivative is taken
    once (``create_graph=True``) and every product is one more backward pass through it.
    """
    names = list(params)
    grads = torch.autograd.grad(kl, [params[n] for n in names], create_graph=True)
    flat_grad = flat(grads)

    def product(vector: Tensor) -> Tensor:  # the one closure: it holds the graph of ∇KL
        hvp = torch.autograd.grad(flat_grad @ vector, [params[n] for n in names], retain_graph=True)
        return flat(hvp) + damping * vector

    return product


def line_search(loss_and_kl: LossAndKL, params: Params, full_step: Tensor, loss_before: float,
                max_kl: float, backtrack_ratio: float = 0.8, max_backtracks: int = 15
                ) -> tuple[Params, dict[str, float]]:
    """(5) Shrink ``full_step`` until the loss decreases and the KL is within ``max_kl``.

    Returns the accepted parameters (detached; ``params`` themselves if no step was accepted)
    and ``{"loss_after", "kl", "backtracks", "accepted"}``.
    """
    theta = flat({n: p.detach() for n, p in params.items()})
    for j in range(max_backtracks):
        candidate = {n: p.clone().requires_grad_() for n, p in
                     unflat(theta - backtrack_ratio ** j * full_step, params).items()}
        loss, kl = (float(value.detach()) for value in loss_and_kl(candidate))
        if loss < loss_before and kl <= max_kl:
            accepted = {n: p.detach() for n, p in candidate.items()}
            return accepted, {"loss_after": loss, "kl": kl, "backtracks": float(j), "accepted": 1.0}
    return ({n: p.detach() for n, p in params.items()},
            {"loss_after": loss_before, "kl": 0.0, "backtracks": float(max_backtracks), "accepted": 0.0})


def update(params: Params, loss_and_kl: LossAndKL, max_kl: float = 0.01, cg_iters: int = 10,
           cg_damping: float = 1e-5, backtrack_ratio: float = 0.8, max_backtracks: int = 15,
           fisher_kl: Callable[[Params], Tensor] | None = None) -> tuple[Params, dict[str, float]]:
    """One TRPO step, eqs. (1)–(5). ``params`` are leaves that require grad; ``loss_and_kl``
    recomputes (L, KL) from any parameter dict. Returns the new parameters (detached) and metrics
    ``loss_before``, ``loss_after``, ``kl``, ``backtracks``, ``accepted``, ``grad_norm``.

    ``fisher_kl``, if given, is a cheaper KL whose Hessian stands in for F in the direction (3)
    (e.g. MAML-RL's KL without the inner step's second derivatives); the line search (5) always
    checks the exact KL of ``loss_and_kl``, so the trust region holds either way.
    """
    loss, kl = loss_and_kl(params)
    names = list(params)
    gradient = flat(torch.autograd.grad(loss, [params[n] for n in names], retain_graph=True))
    fvp = fisher_vector_product(kl if fisher_kl is None else fisher_kl(params), params, cg_damping)
    direction = conjugate_gradient(fvp, gradient, cg_iters)
    curvature = float(direction @ fvp(direction))
    if not math.isfinite(curvature) or curvature <= 0.0:
        raise FloatingPointError(f"TRPO: sᵀFs = {curvature} is not positive; raise cg_damping "
                                 "(e.g. 1e-3) or check the policy for NaN parameters")
    full_step = math.sqrt(2.0 * max_kl / curvature) * direction
    new_params, info = line_search(loss_and_kl, params, full_step, float(loss.detach()), max_kl,
                                   backtrack_ratio, max_backtracks)
    return new_params, {"loss_before": float(loss.detach()), **info, "grad_norm": float(gradient.norm())}
