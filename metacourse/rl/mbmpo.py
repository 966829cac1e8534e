"""MB-MPO: meta-learn a policy that adapts, in one policy-gradient step, to any model of a learned ensemble.

Clavera, Rothfuss, Schulman, Fujita, Asfour, Abbeel, "Model-Based Reinforcement Learning via
Meta-Policy Optimization", CoRL 2018 (arXiv:1809.05214), Algorithm 1.

    (1) model loss      min_φk  mean_{(s,a,s') ∈ D}  ‖ Δ̃(s, a) − f̂_φk(s̃, ã) ‖²,   Δ = s' − s
                        (tildes: inputs and targets standardised with D's mean and std)
    (2) imagination     ŝ_{t+1} = ŝ_t + f̂_φk(ŝ_t, a_t),   r_t = r(ŝ_t, a_t)   (the reward is known),
                        ŝ_0 drawn from the real episodes' first states
    (1h) with history   f̂_φk(s̃_t, ã_t, c̃_t),  c_t = (s_{t−1}, a_{t−1}, …, s_{t−h}, a_{t−h}): the last h
                        transitions let a model infer dynamics the state does not show (e.g. the
                        mass and length of a pendulum drawn from a family); imagined episodes then
                        start h steps into a real episode, with that episode's history
    (3) task k          J_k(θ) = E[Σ_t r_t] under π_θ in model k: each ensemble member is a task
    (4) meta-objective  max_θ (1/K) Σ_k J_k(θ'_k),   θ'_k = θ + α ∇_θ J_k(θ)  (MAML-RL, ``maml_rl``)
    (5) outer loop      repeat: collect real episodes with π_θ'_1..π_θ'_K → add them to D → refit
                        every model on all of D (validation split, early stopping) → ``meta_steps``
                        MAML-RL updates of θ on imagined trajectories (2) of every model

| symbol | identifier |
|---|---|
| f̂_φ1 … f̂_φK | ``DynamicsEnsemble`` (K = ``cfg.n_models``), ``ensemble.predict(obs, actions)`` |
| h, c_t | ``cfg.model_history``, ``context`` (most recent transition first) |
| (1) | ``model_loss`` (``squared_errors`` per model), minimised by ``fit_ensemble`` |
| D | ``RealData`` (every real transition; ``n_steps`` counts the real environment steps) |
| r(s, a) | ``reward_fn`` (e.g. ``envs.pendulum_reward``) |
| (2) | ``ImaginedEnv`` (a task env of ``rl.task_env``, task k = model k), ``imagine`` → ``Rollout`` |
| θ, θ'_k | ``policy`` / ``params``, ``adapted`` (batched over the K models) |
| α, δ (TRPO's trust region) | ``cfg.maml.inner_lr``, ``cfg.maml.max_kl`` |

Lecture: lectures/07_mbmpo.ipynb.
Differs from MAML-RL by its tasks: the models of a learned ensemble instead of real environments,
so the meta-policy costs imagined steps, and real steps are spent only on refitting the models.
The paper's models see (s, a) only (h = 0, the default); the history (1h) is this course's
addition for task families whose members differ in hidden parameters (lecture 07, §6c).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn
from torch.func import stack_module_state

from ..functional import Params, expand_over_tasks, forward, frozen_params, params_of
from ..models import MLP
from ..utils import check_nonnegative, check_positive_int
from . import maml_rl
from .envs._episodes import EpisodeClock, started
from .task_env import Rollout, Step, TaskEnv, check_generator, play

__all__ = ["Config", "DynamicsEnsemble", "RealData", "ImaginedEnv", "random_episodes", "history_context",
           "squared_errors", "model_loss", "fit_ensemble", "imagine", "adapt_to_models", "collect_real",
           "meta_policy_step", "iteration"]

RewardFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Config:
    """MB-MPO's hyper-parameters (defaults: the official run script, scaled to a CPU, docs/anchors.md §5)."""

    n_models: int = 5
    """K, dynamics models in the ensemble (= tasks of the meta-policy). Paper: 5."""
    model_hidden: tuple[int, ...] = (128, 128)
    """Hidden widths of each model's MLP. Paper: (512, 512)."""
    model_history: int = 0
    """h, previous transitions (s, a) each model also sees (1h). Paper: 0."""
    model_lr: float = 1e-3
    """Adam's step size for the models."""
    model_batch_size: int = 256
    """Minibatch of transitions per model step."""
    max_model_epochs: int = 50
    """Upper limit on passes over the data per refit. Paper: 500."""
    validation_fraction: float = 0.2
    """Share of each model's data held out for early stopping. Paper: 0.2."""
    patience: int = 5
    """Stop a refit when no model's validation loss improved for this many epochs."""
    imagined_episodes: int = 20
    """Imagined episodes per model, before and after adaptation. Official run script: 50."""
    real_episodes: int = 1
    """Real episodes collected with each adapted policy per iteration (K · this per iteration)."""
    meta_steps: int = 30
    """MAML-RL meta-steps on imagined data per iteration. Paper: 30."""
    maml: maml_rl.Config = field(default_factory=lambda: maml_rl.Config(inner_lr=0.001))
    """The meta-policy's MAML-RL settings (α, γ, δ, …). Paper: α = 0.001, δ = 0.01, γ = 0.99."""

    def __post_init__(self) -> None:
        for name in ("n_models", "model_batch_size", "max_model_epochs", "patience",
                     "imagined_episodes", "real_episodes", "meta_steps"):
            check_positive_int(name, getattr(self, name))
        if not isinstance(self.model_history, int) or self.model_history < 0:
            raise ValueError(f"model_history must be a non-negative int, got {self.model_history!r}")
        check_nonnegative("model_lr", self.model_lr)
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {self.validation_fraction}")


class DynamicsEnsemble(nn.Module):
    """K MLPs f̂_φk(s̃, ã) → Δ̃ held as one set of batched weights (leading dim K), so all K run in
    one batched matmul. Inputs and outputs are standardised with statistics of the real data
    (``set_normalizer``); ``predict`` works in real units: s' = s + Δ. With ``history`` h > 0
    every model also takes the context c of the last h transitions (1h)."""

    def __init__(self, obs_dim: int, act_dim: int, n_models: int = 5,
                 hidden: Sequence[int] = (128, 128), history: int = 0) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.n_models, self.history = obs_dim, act_dim, n_models, history
        self.context_dim = history * (obs_dim + act_dim)
        n_inputs = obs_dim + act_dim + self.context_dim
        template = MLP(n_inputs, tuple(hidden), obs_dim)  # drawn first, so the members' draws stay as they were
        stacked, _ = stack_module_state([MLP(n_inputs, tuple(hidden), obs_dim) for _ in range(n_models)])
        self.weights = nn.ParameterDict({name.replace(".", "/"): nn.Parameter(weight.detach())
                                         for name, weight in stacked.items()})
        # The architecture only, weightless ("meta" tensors) and not a submodule: no parameters of its own,
        # nothing in the state dict, nothing to move with .to(device).
        self._architecture = (template.to("meta"),)
        for name, size in (("in_mean", n_inputs), ("out_mean", obs_dim)):
            self.register_buffer(name, torch.zeros(size))
            self.register_buffer(name.replace("mean", "std"), torch.ones(size))

    def set_normalizer(self, inputs: Tensor, deltas: Tensor) -> None:
        """Standardise with the mean and std of (s, a) and Δ over the data (std floored at 1e-6)."""
        self.in_mean.copy_(inputs.mean(0)), self.in_std.copy_(inputs.std(0).clamp_min(1e-6))
        self.out_mean.copy_(deltas.mean(0)), self.out_std.copy_(deltas.std(0).clamp_min(1e-6))

    def normalized_forward(self, inputs: Tensor) -> Tensor:
        """f̂ on standardised (s, a) of shape (K, N, obs+act) → standardised Δ̃ (K, N, obs)."""
        params = {name.replace("/", "."): weight for name, weight in self.weights.items()}
        return forward(self._architecture[0], params, inputs, batched=True)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        for key in [k for k in state_dict if k.startswith(prefix + "template.")]:
            del state_dict[key]  # checkpoints written while the ensemble kept an unused template MLP
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def standardized_inputs(self, obs: Tensor, actions: Tensor, context: Tensor | None = None) -> Tensor:
        """(s̃, ã, c̃): the inputs of f̂ standardised; ``context`` (…, h·(obs+act)), None or empty when h = 0."""
        if (0 if context is None else context.shape[-1]) != self.context_dim:
            raise ValueError(f"this ensemble has history={self.history}: pass context (the last "
                             f"{self.history} transitions, {self.context_dim} numbers) exactly when history > 0")
        parts = [obs, actions] if context is None else [obs, actions, context]
        return (torch.cat(parts, -1) - self.in_mean) / self.in_std

    def predict(self, obs: Tensor, actions: Tensor, context: Tensor | None = None) -> Tensor:
        """s' = s + Δ for obs (K, N, obs_dim), actions (K, N, act_dim): model k moves row k."""
        inputs = self.standardized_inputs(obs, actions, context)
        return obs + self.normalized_forward(inputs) * self.out_std + self.out_mean


class RealData:
    """D: every real transition (s, a, s'), the episodes' first states, and the real step count.
    With ``history`` h > 0 each transition also keeps its context c_t (1h), only steps t ≥ h
    enter D, and the "first states" are the states at step h with their contexts."""

    def __init__(self, history: int = 0) -> None:
        self.history = history
        self.obs: list[Tensor] = []
        self.actions: list[Tensor] = []
        self.next_obs: list[Tensor] = []
        self.contexts: list[Tensor] = []
        self.starts: list[Tensor] = []
        self.start_contexts: list[Tensor] = []
        self.n_steps = 0

    def add(self, trajectories: Rollout, action_clip: float | None = None) -> None:
        """Add real episodes (T, E, H, …). All T·E·H steps count as real steps; H − 1 − h
        transitions per episode enter D (those whose next state is the next step's ``obs``)."""
        obs = trajectories.obs.reshape(-1, *trajectories.obs.shape[-2:])
        actions = trajectories.actions.reshape(-1, *trajectories.actions.shape[-2:])
        if action_clip is not None:
            actions = actions.clamp(-action_clip, action_clip)
        self.n_steps += int(trajectories.mask.sum())
        h = self.history
        self.obs.append(obs[:, h:-1].reshape(-1, obs.shape[-1]))
        self.actions.append(actions[:, h:-1].reshape(-1, actions.shape[-1]))
        self.next_obs.append(obs[:, h + 1:].reshape(-1, obs.shape[-1]))
        self.starts.append(obs[:, h])
        if h:
            context = history_context(obs, actions, h)  # (episodes, H − h, h·(obs+act))
            self.contexts.append(context[:, :-1].reshape(-1, context.shape[-1]))
            self.start_contexts.append(context[:, 0])

    def tensors(self) -> tuple[Tensor, Tensor, Tensor]:
        """All transitions as (obs, actions, next_obs), each (N, ·)."""
        if not self.obs:
            raise ValueError("no real data yet: add real episodes (collect_real) before fitting models")
        return torch.cat(self.obs), torch.cat(self.actions), torch.cat(self.next_obs)

    def context_tensor(self) -> Tensor | None:
        """Every transition's context c_t, (N, h·(obs+act)); None without history."""
        return torch.cat(self.contexts) if self.history else None

    def state_dict(self) -> dict:
        return {"obs": self.obs, "actions": self.actions, "next_obs": self.next_obs,
                "starts": self.starts, "n_steps": self.n_steps, "history": self.history,
                "contexts": self.contexts, "start_contexts": self.start_contexts}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def random_episodes(env: TaskEnv, n_episodes: int, action_bound: float,
                    generator: torch.Generator) -> Rollout:
    """``n_episodes`` real episodes per task of ``env`` with actions uniform in ±``action_bound``:
    data to fit and test dynamics models on before any policy exists (recorded as ``rollout``'s)."""
    def uniform(obs: Tensor, last: Step | None) -> Tensor:
        return (torch.rand(*obs.shape[:-1], env.act_dim, generator=generator) * 2 - 1) * action_bound

    return play(env, uniform, env.horizon, n_episodes, generator)


def history_context(obs: Tensor, actions: Tensor, history: int) -> Tensor:
    """c_t for t = h … H − 1 of episodes obs (…, H, obs_dim), actions (…, H, act_dim): the
    transitions (s_{t−1}, a_{t−1}), …, (s_{t−h}, a_{t−h}) side by side, most recent first;
    shape (…, H − h, h·(obs_dim + act_dim))."""
    pairs = torch.cat([obs, actions], -1)
    length = pairs.shape[-2]
    return torch.cat([pairs[..., history - j:length - j, :] for j in range(1, history + 1)], -1)


def _split(n: int, n_models: int, fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A different random train / validation split of the N transitions for every model, (K, ·)."""
    order = torch.stack([torch.randperm(n, generator=generator) for _ in range(n_models)])
    n_val = max(1, int(round(fraction * n)))
    return order[:, n_val:], order[:, :n_val]


def squared_errors(ensemble: DynamicsEnsemble, obs: Tensor, actions: Tensor, next_obs: Tensor,
                   context: Tensor | None = None) -> Tensor:
    """Every model's squared error on its standardised state change, shape (K, N, obs_dim);
    row k of the (K, N, ·) inputs is model k's data."""
    inputs = ensemble.standardized_inputs(obs, actions, context)
    targets = (next_obs - obs - ensemble.out_mean) / ensemble.out_std
    return (ensemble.normalized_forward(inputs) - targets) ** 2


def model_loss(ensemble: DynamicsEnsemble, obs: Tensor, actions: Tensor, next_obs: Tensor,
               context: Tensor | None = None) -> Tensor:
    """(1) The mean squared error of the standardised state change, averaged over models,
    transitions and dimensions (a sum over models would only rescale Adam's steps)."""
    return squared_errors(ensemble, obs, actions, next_obs, context).mean()


def fit_ensemble(ensemble: DynamicsEnsemble, data: RealData, cfg: Config,
                 generator: torch.Generator | None = None) -> dict[str, float]:
    """(1) Refit every model on all of D (warm start), each on its own split; early stopping on
    the validation MSE keeps every model's best weights. Returns the final validation MSEs."""
    if data.history != ensemble.history:
        raise ValueError(f"RealData(history={data.history}) cannot fit DynamicsEnsemble(history="
                         f"{ensemble.history}): make both with the same history (cfg.model_history)")
    obs, actions, next_obs = data.tensors()
    context = data.context_tensor()
    if context is None:  # h = 0: an empty context keeps one code path below
        context = obs.new_zeros(len(obs), 0)
    ensemble.set_normalizer(torch.cat([obs, actions, context], -1), next_obs - obs)
    train, val = _split(len(obs), cfg.n_models, cfg.validation_fraction, generator or torch.default_generator)
    optimizer = torch.optim.Adam(ensemble.weights.parameters(), lr=cfg.model_lr)
    best = torch.full((cfg.n_models,), float("inf"))
    best_weights = {n: w.detach().clone() for n, w in ensemble.weights.items()}
    stale, epochs = 0, 0
    while epochs < cfg.max_model_epochs:
        epochs += 1
        order = train[:, torch.randperm(train.shape[1], generator=generator)]
        for batch in order.split(cfg.model_batch_size, dim=1):
            loss = model_loss(ensemble, obs[batch], actions[batch], next_obs[batch], context[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_loss = squared_errors(ensemble, obs[val], actions[val], next_obs[val], context[val]).mean((1, 2))
            improved = val_loss < best - 1e-6
            for name, weight in ensemble.weights.items():
                best_weights[name][improved] = weight[improved]
            best = torch.where(improved, val_loss, best)
        stale = 0 if bool(improved.any()) else stale + 1
        if stale >= cfg.patience:
            break
    with torch.no_grad():
        for name, weight in ensemble.weights.items():
            weight.copy_(best_weights[name])
    return {"model_val_mse": float(best.mean()), "model_epochs": float(epochs),
            "transitions": float(len(obs))}


class ImaginedEnv:
    """The ensemble as a task env of ``rl.task_env``: task k is model k (2).

    ``reset(E, generator)`` draws E first states per model from the real episodes' first states
    (``restart`` draws its new ones with the same generator); ``step`` moves every state with its
    model and scores it with the known reward. With a history the first states come with their
    real contexts, and each step shifts (ŝ_t, a_t) into the context. A model may step far outside
    the data it was fitted on (and a poor one diverges), so imagined states are clipped to the
    range of the real states, widened by ``margin`` of that range on each side. Episodes never
    terminate; they are truncated after H = ``horizon`` steps. No real step is ever taken.
    """

    def __init__(self, ensemble: DynamicsEnsemble, data: RealData, reward_fn: RewardFn,
                 horizon: int, action_clip: float | None = None, margin: float = 0.1) -> None:
        obs = data.tensors()[0]
        span = obs.max(0).values - obs.min(0).values
        self.low, self.high = obs.min(0).values - margin * span, obs.max(0).values + margin * span
        self.ensemble, self.starts, self.reward_fn = ensemble, torch.cat(data.starts), reward_fn
        self.start_contexts = torch.cat(data.start_contexts) if data.history else None
        self.n_tasks, self.horizon = ensemble.n_models, check_positive_int("horizon", horizon)
        self.action_clip = action_clip
        self.clock: EpisodeClock | None = None

    def reset(self, n_episodes: int, generator: torch.Generator) -> Tensor:
        check_generator(generator)
        shape = (self.n_tasks, check_positive_int("n_episodes", n_episodes))
        self.generator, self.clock = generator, EpisodeClock(shape, self.horizon)
        self.obs = self.starts.new_zeros(*shape, self.starts.shape[-1])
        self.context = None if self.start_contexts is None else \
            self.start_contexts.new_zeros(*shape, self.start_contexts.shape[-1])
        return self.restart(torch.ones(shape, dtype=torch.bool))

    def restart(self, ended: Tensor) -> Tensor:
        """New first states (with their contexts) where ``ended`` (K, E); every episode's state."""
        ended = started(self.clock).restart(ended)
        index = torch.randint(len(self.starts), (int(ended.sum()),), generator=self.generator)
        self.obs = self.obs.clone()
        self.obs[ended] = self.starts[index]
        if self.context is not None:
            self.context[ended] = self.start_contexts[index]
        return self.obs

    def step(self, actions: Tensor) -> Step:
        clock = started(self.clock)
        if self.action_clip is not None:
            actions = actions.clamp(-self.action_clip, self.action_clip)
        running = clock.running
        with torch.no_grad():
            rewards = torch.where(running, self.reward_fn(self.obs, actions), 0.0)
            next_obs = torch.clamp(self.ensemble.predict(self.obs, actions, self.context), self.low, self.high)
            if self.context is not None:  # (ŝ_t, a_t) becomes the most recent transition
                newest = torch.cat([self.obs, actions], -1)
                shifted = torch.cat([newest, self.context[..., :-newest.shape[-1]]], -1)
                self.context = torch.where(running.unsqueeze(-1), shifted, self.context)
            self.obs = torch.where(running.unsqueeze(-1), next_obs, self.obs)
        terminated, truncated = clock.tick(running, torch.zeros_like(running))
        return Step(self.obs, rewards, terminated, truncated)


def imagine(policy: nn.Module, params: Params, env: ImaginedEnv, n_episodes: int,
            generator: torch.Generator | None = None) -> Rollout:
    """(2) ``n_episodes`` imagined episodes of π_params in every model: a Rollout (K, E, H, …)."""
    return maml_rl.rollout(policy, params, env, n_episodes, generator)


def adapt_to_models(policy: nn.Module, env: ImaginedEnv, cfg: Config,
                    generator: torch.Generator | None = None) -> Params:
    """θ'_k for every model k: one MAML-RL inner step on imagined episodes of π_θ (no meta-gradient)."""
    theta = {n: p.detach().requires_grad_() for n, p in params_of(policy).items()}
    pre = imagine(policy, theta, env, cfg.imagined_episodes, generator)
    step_cfg = replace(cfg.maml, first_order=True)
    with torch.enable_grad():
        adapted = maml_rl.adapt(policy, expand_over_tasks(theta, env.n_tasks), pre, step_cfg)
    return {n: p.detach() for n, p in adapted.items()}


def collect_real(policy: nn.Module, adapted: Params, real_env, data: RealData, cfg: Config,
                 generator: torch.Generator | None = None, action_clip: float | None = None
                 ) -> Rollout:
    """(5) Real episodes with π_θ'_k, model k's adapted policy in real task k (``real_env`` has K
    tasks), added to D. Returns them (their returns are what the agent really earned)."""
    trajectories = maml_rl.rollout(policy, adapted, real_env, cfg.real_episodes, generator)
    data.add(trajectories, action_clip)
    return trajectories


def meta_policy_step(policy: nn.Module, env: ImaginedEnv, cfg: Config,
                     generator: torch.Generator | None = None) -> dict[str, float]:
    """(4) One MAML-RL meta-step on imagined data: pre-update episodes in every model, then
    ``maml_rl.meta_step``, whose post-update episodes are imagined in the same models."""
    theta = frozen_params(policy)
    pre = imagine(policy, theta, env, cfg.imagined_episodes, generator)
    return maml_rl.meta_step(policy, pre, lambda adapted: imagine(policy, adapted, env,
                                                                  cfg.imagined_episodes, generator),
                             cfg.maml)


def iteration(policy: nn.Module, ensemble: DynamicsEnsemble, data: RealData, real_env,
              reward_fn: RewardFn, cfg: Config, generator: torch.Generator | None = None,
              action_clip: float | None = None) -> dict[str, float]:
    """(5) One outer iteration of Algorithm 1: real data with the adapted policies → refit the
    ensemble → ``cfg.meta_steps`` meta-policy steps on imagined data. Before the first
    iteration, fill D with some episodes (e.g. of the initial policy) so models can be fitted."""
    imagined = ImaginedEnv(ensemble, data, reward_fn, real_env.horizon, action_clip)
    adapted = adapt_to_models(policy, imagined, cfg, generator)
    real = collect_real(policy, adapted, real_env, data, cfg, generator, action_clip)
    metrics = {"real_return": float(real.episode_returns.mean()), "real_steps": float(data.n_steps)}
    metrics.update(fit_ensemble(ensemble, data, cfg, generator))
    imagined = ImaginedEnv(ensemble, data, reward_fn, real_env.horizon, action_clip)
    steps = [meta_policy_step(policy, imagined, cfg, generator) for _ in range(cfg.meta_steps)]
    for key in ("return_before", "return_after"):
        metrics[f"imagined_{key}"] = steps[-1][key]
    return metrics
