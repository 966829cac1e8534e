"""MAML for reinforcement learning: learn a policy θ from which one policy-gradient step solves a new task.

Finn, Abbeel, Levine, ICML 2017 (arXiv:1703.03400), §3.2 (Algorithm 3), §5.3, App. A.2.

    (1) inner loss      L_T(θ) = −(1/N) Σ_{valid t} log π_θ(a_t | s_t) Â_t,   (s, a) ~ π_θ in T (K episodes)
    (2) advantages      Â_t = GAE(γ, λ) with a linear feature baseline fitted per task, normalised
    (3) inner step      φ_T = θ − α ∇_θ L_T(θ)                 (``maml.adapt`` with the loss (1))
    (4) meta-objective  L(θ) = mean_T −(1/N') Σ_t [π_φ_T(θ)(a_t|s_t) / π_φ_T(θold)(a_t|s_t)] Â'_t,
                        (s, a) ~ π_φ_T(θold): fresh trajectories of the *adapted* policy
    (5) trust region    mean_T KL(π_φ_T(θold) ‖ π_φ_T(θ)) ≤ δ on those same states
    (6) outer step      TRPO on (4)–(5) (``rl.trpo.update``): conjugate gradient on Fisher-vector
                        products and a line search; every derivative goes through (3) (second order)

| symbol | identifier |
|---|---|
| θ, φ_T | ``params``, ``adapted`` (dicts; a leading task dim when batched over tasks) |
| α, K | ``cfg.inner_lr``, ``cfg.episodes_per_task`` |
| γ, λ, δ | ``cfg.gamma``, ``cfg.gae_lambda``, ``cfg.max_kl`` |
| trajectories of θ / of φ_T | ``pre`` / ``post`` (``task_env.Rollout``, index [task, episode, time]) |
| valid steps, episode ends | ``.mask``; ``.terminated`` (no bootstrapping past it) / ``.truncated`` at H |

Interface (what MB-MPO imports): ``Config``; ``GaussianPolicy(obs_dim, act_dim, hidden)``;
``rollout(policy, params, env, n_episodes, generator)`` in any task env of ``rl.task_env``
(``reset(n_episodes, generator)``, ``step(actions) -> Step(obs, rewards, terminated,
truncated)``), by ``task_env.play`` beneath it; ``advantages``; ``inner_loss``; ``adapt``;
``meta_loss``; ``meta_step(policy, pre, sample_post, cfg)`` where ``sample_post(adapted)`` rolls
the adapted policies out in the same tasks; ``evaluate`` (returns after 0, 1, 2, … steps).
The reusable pieces live one level down: ``rl.value_baseline``, ``rl.trpo``.

Lecture: lectures/06_maml_rl.ipynb.
Differs from supervised MAML by its loss (a policy gradient on sampled trajectories) and by its
outer data, which must be sampled from the adapted policy; TRPO replaces Adam.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Normal

from ..algorithms import maml
from ..functional import Params, expand_over_tasks, forward, frozen_params, params_of
from ..models import MLP
from ..utils import check_nonnegative, check_positive_int
from . import ppo, trpo, value_baseline
from .returns import discounted_returns, gae
from .task_env import Rollout, Step, TaskEnv, play

__all__ = ["Config", "GaussianPolicy", "distribution", "rollout", "advantages", "inner_loss", "adapt",
           "meta_loss", "meta_step", "evaluate"]


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of MAML-RL (defaults: the paper's 2D navigation, App. A.2)."""

    inner_lr: float = 0.1
    """α, the inner policy-gradient step size. Paper: 0.1 (official point code: 0.5)."""
    inner_steps: int = 1
    """Inner steps during meta-training, each on the same K episodes. Paper: 1."""
    first_order: bool = False
    """Drop the second-order terms of the meta-gradient (and of the Fisher products)."""
    episodes_per_task: int = 20
    """K, trajectories sampled per task for the inner step (and for the outer step). Paper: 20."""
    gamma: float = 0.99
    """γ, the discount of the returns the baseline is fitted to."""
    gae_lambda: float = 1.0
    """λ of GAE; 1.0 gives Â_t = G_t − V(s_t) (rllab's, and the PyTorch port's, default)."""
    normalize_advantages: bool = True
    """Standardise Â per task over its valid steps (rllab's ``center_adv``)."""
    baseline_reg: float = 1e-5
    """Ridge coefficient of the linear feature baseline."""
    max_kl: float = 0.01
    """δ, TRPO's trust region on the mean KL of the adapted policies. Paper: 0.01."""
    exact_fisher: bool = True
    """Fisher-vector products through the inner step (exact, as the PyTorch port). False: the
    Fisher of the adapted policies alone (dφ/dθ ≈ I), ~3.5× cheaper (measured on 1 CPU thread at
    20 tasks × 20 trajectories: 2.4 s against 8.4 s per meta-iteration); the meta-gradient stays
    second order and the line search still enforces the exact KL ≤ δ."""
    cg_iters: int = 10
    """Conjugate-gradient iterations per outer step."""
    cg_damping: float = 1e-5
    """Damping added to the Fisher-vector products."""
    ls_backtrack_ratio: float = 0.8
    """ρ, the line search's shrink factor."""
    ls_max_steps: int = 15
    """Line-search trials before the step is rejected."""

    def __post_init__(self) -> None:
        check_nonnegative("inner_lr", self.inner_lr, "the inner step size α must be >= 0")
        check_positive_int("inner_steps", self.inner_steps)
        check_positive_int("episodes_per_task", self.episodes_per_task)
        for name in ("gamma", "gae_lambda", "ls_backtrack_ratio"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not self.max_kl > 0:
            raise ValueError(f"max_kl must be > 0 (the paper uses 0.01), got {self.max_kl}")


class GaussianPolicy(nn.Module):
    """π_θ(a | s) = N(μ_θ(s), diag σ²): an MLP mean (ReLU, 2×100 as the paper) and a learned,
    state-independent log σ (initialised to log ``init_std``; rllab and the PyTorch port use 1).

    ``forward(obs)`` returns ``(mean, log_std)``; use ``distribution(policy, params, obs)`` to get
    a ``torch.distributions.Normal`` for any parameter dict, batched over tasks or not.
    """

    broadcasts_over_tasks = True

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (100, 100),
                 init_std: float = 1.0) -> None:
        super().__init__()
        self.mean = MLP(obs_dim, tuple(hidden), act_dim)
        self.log_std = nn.Parameter(torch.full((check_positive_int("act_dim", act_dim),),
                                               float(np.log(init_std))))
        self.obs_dim, self.act_dim = obs_dim, act_dim

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        return self.mean(obs), self.log_std.clamp(min=-10.0)


def distribution(policy: nn.Module, params: Params, obs: Tensor) -> Normal:
    """π_params(· | obs) for obs of shape (..., obs_dim); ``params`` may carry a leading task
    dimension T (then obs is (T, ..., obs_dim) and task t uses weights t)."""
    batched = params["log_std"].dim() > 1
    lead = obs.shape[:-1]
    flat_obs = obs.reshape(lead[0], -1, obs.shape[-1]) if batched else obs.reshape(-1, obs.shape[-1])
    mean, log_std = forward(policy, params, flat_obs)
    if batched:
        log_std = log_std.reshape(log_std.shape[0], *([1] * (len(lead) - 1)), -1)
    return Normal(mean.reshape(*lead, -1), log_std.exp())


def rollout(policy: nn.Module, params: Params, env: TaskEnv, n_episodes: int,
            generator: torch.Generator | None, n_steps: int | None = None) -> Rollout:
    """Sample ``n_episodes`` episodes per task of ``env`` with π_params for ``n_steps`` steps (the
    env's horizon H if None), no gradients, by ``task_env.play``.

    ``params`` is θ (shared by every task) or a dict batched over the env's T tasks (each task
    its own φ_T). ``generator`` starts the episodes and draws the action noise.
    """
    def sample(obs: Tensor, last: Step | None) -> Tensor:
        policy_now = distribution(policy, params, obs)
        noise = torch.randn(policy_now.loc.shape, generator=generator, dtype=obs.dtype)
        return policy_now.loc + policy_now.scale * noise.to(obs.device)

    return play(env, sample, n_steps or env.horizon, n_episodes, generator)


def advantages(trajectories: Rollout, cfg: Config) -> Tensor:
    """Eq. (2): GAE advantages from a per-task linear feature baseline, shape (T, E, H)."""
    mask = trajectories.mask
    returns = discounted_returns(trajectories.rewards, cfg.gamma, dones=trajectories.terminated)
    values = value_baseline.fit_predict(trajectories.obs, returns, mask, cfg.baseline_reg)
    adv, _ = gae(trajectories.rewards, values, cfg.gamma, cfg.gae_lambda, dones=trajectories.terminated)
    if cfg.normalize_advantages:  # per task: each task's advantages to mean 0, std 1
        adv = ppo.normalize(adv, mask, dim=(-2, -1))
    return adv * mask


def with_advantages(trajectories: Rollout, cfg: Config) -> Rollout:
    """The same trajectories with ``advantages`` filled in (computed once, reused by every step)."""
    if trajectories.advantages is not None:
        return trajectories
    return trajectories.with_fields(advantages=advantages(trajectories, cfg))


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over each task's valid steps: shape (T,) (or a scalar for one task)."""
    return ppo.masked_mean(values, mask, dim=(-2, -1))


def inner_loss(policy: nn.Module, params: Params, trajectories: Rollout, cfg: Config) -> Tensor:
    """Eq. (1): the REINFORCE loss of each task, −mean_t log π_params(a_t|s_t) Â_t, shape (T,)."""
    adv = trajectories.advantages if trajectories.advantages is not None else advantages(trajectories, cfg)
    log_probs = distribution(policy, params, trajectories.obs).log_prob(trajectories.actions).sum(-1)
    return -_masked_mean(log_probs * adv, trajectories.mask)


def adapt(policy: nn.Module, params: Params, trajectories: Rollout, cfg: Config) -> Params:
    """Eq. (3): φ = θ − α ∇_θ L_T(θ) (``cfg.inner_steps`` times), by MAML's own ``adapt`` with the
    policy-gradient loss. ``params`` batched over tasks (``expand_over_tasks``) adapts every task
    of ``trajectories`` at once; differentiable in θ unless ``cfg.first_order``."""
    trajectories = with_advantages(trajectories, cfg)
    return maml.adapt(policy, params, trajectories, cfg, loss_fn=partial(inner_loss, cfg=cfg))


def meta_loss(policy: nn.Module, params: Params, pre: Rollout, post: Rollout,
              old: Normal, cfg: Config) -> tuple[Tensor, Tensor]:
    """Eqs. (4)–(5) at θ = ``params`` (not expanded): adapt on ``pre``, then the importance-weighted
    surrogate on ``post`` against ``old`` = π_φ(θold) on post.obs, and the mean KL(old ‖ new).
    Both are means over tasks."""
    n_tasks = pre.rewards.shape[0]
    adapted = adapt(policy, expand_over_tasks(params, n_tasks), pre, cfg)
    new = distribution(policy, adapted, post.obs)
    ratio = (new.log_prob(post.actions).sum(-1) - old.log_prob(post.actions).sum(-1)).exp()
    mask = post.mask
    surrogate = -_masked_mean(ratio * post.advantages, mask).mean()
    kl = _masked_mean(torch.distributions.kl_divergence(old, new).sum(-1), mask).mean()
    return surrogate, kl


def meta_step(policy: nn.Module, pre: Rollout, sample_post: Callable[[Params], Rollout],
              cfg: Config) -> dict[str, float]:
    """One outer update (eq. 6) in place on ``policy``.

    ``pre``: trajectories of π_θ in T tasks, shape (T, K, H, …). ``sample_post(adapted)`` must
    return trajectories of the adapted policies (a dict batched over the same T tasks) in the same
    tasks — the outer step needs data from φ, not θ. Returns the mean returns before and after
    adaptation and TRPO's metrics.
    """
    theta = {n: p.detach().requires_grad_() for n, p in params_of(policy).items()}
    pre = with_advantages(pre, cfg)
    sampling_cfg = replace(cfg, first_order=True)  # the sampling policy needs no meta-gradient
    adapted = adapt(policy, expand_over_tasks(theta, pre.rewards.shape[0]), pre, sampling_cfg)
    adapted = {n: p.detach() for n, p in adapted.items()}
    post = with_advantages(sample_post(adapted), cfg)
    with torch.no_grad():
        old = distribution(policy, adapted, post.obs)
    fisher_kl = None if cfg.exact_fisher or cfg.first_order else \
        (lambda params: meta_loss(policy, params, pre, post, old, sampling_cfg)[1])
    new_theta, info = trpo.update(theta, partial(meta_loss, policy, pre=pre, post=post, old=old, cfg=cfg),
                                  cfg.max_kl, cfg.cg_iters, cfg.cg_damping, cfg.ls_backtrack_ratio,
                                  cfg.ls_max_steps, fisher_kl)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            parameter.copy_(new_theta[name])
    return {"return_before": float(pre.episode_returns.mean()),
            "return_after": float(post.episode_returns.mean()), **info}


def evaluate(policy: nn.Module, env: TaskEnv, cfg: Config, steps: int = 3, n_episodes: int = 40,
             step_sizes: Sequence[float] | None = None, generator: torch.Generator | None = None
             ) -> dict[int, np.ndarray]:
    """Mean return per task after 0, 1, …, ``steps`` inner steps, each step on ``n_episodes``
    fresh episodes of the current policy (the paper: 40, α = 0.1 then 0.05). ``step_sizes[j]``
    is step j+1's α (default: ``cfg.inner_lr``, then half of it). Returns {j: array (T,)}."""
    step_sizes = list(step_sizes) if step_sizes is not None else \
        [cfg.inner_lr] + [cfg.inner_lr / 2] * max(0, steps - 1)
    if len(step_sizes) < steps:
        raise ValueError(f"step_sizes has {len(step_sizes)} values for steps={steps}; give one per step")
    theta = frozen_params(policy)
    params = {n: p.clone().requires_grad_() for n, p in expand_over_tasks(theta, env.n_tasks).items()}
    results = {}
    for step in range(steps + 1):
        trajectories = rollout(policy, params, env, n_episodes, generator)
        results[step] = trajectories.episode_returns.mean(-1).cpu().numpy()
        if step < steps:
            step_cfg = replace(cfg, inner_lr=step_sizes[step], inner_steps=1, first_order=True)
            with torch.enable_grad():
                params = adapt(policy, params, trajectories, step_cfg)
            params = {n: p.detach().requires_grad_() for n, p in params.items()}
    return results
