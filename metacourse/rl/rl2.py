"""RL²: a recurrent policy whose hidden state *is* a learned reinforcement-learning algorithm.

Duan, Schulman, Chen, Bartlett, Sutskever, Abbeel, "RL²: Fast Reinforcement Learning via Slow
Reinforcement Learning", arXiv:1611.02779 (2016).

    (1) input          x_t = [onehot(s_t), onehot(a_{t−1}), r_{t−1}, d_{t−1}]    (zeros at t = 0)
    (2) policy         h_t = GRU_θ(x_t, h_{t−1}),   π_θ(· | x_≤t) = softmax(W_π h_t + b_π)
    (3) baseline       g_t = GRU_ψ([x_t, t/T], g_{t−1}),   V_ψ(x_≤t) = μ_G + σ_G (w_V · g_t + b_V)
                       (t/T only with ``trial_length``; μ_G, σ_G running target statistics, else 0, 1)
    (4) trial          h_{−1} = g_{−1} = 0 at the start of each trial of n episodes in one task
                       M ~ p(M); the states are NOT reset between the episodes of a trial
    (5) objective      max_θ E_{M ~ p(M)} E_π[ Σ_{t<T} γ^t r_t ],   T = n · H (a trial is one episode
                       of the meta-level POMDP: d_t enters the input, never cuts the return)
    (6) advantages     GAE(γ, λ) over the whole trial (``returns.gae``)
    (7) outer update   PPO (``ppo.update``) on minibatches of whole trials; mean over trials and steps

"Adaptation" (``adapt``) is running the GRU through a trial: the task-specific state φ is the
hidden state h_t, produced by the fixed meta-parameters θ from the experience so far.

| symbol | identifier |
|---|---|
| θ, ψ | ``RL2Policy.policy_rnn/policy_head``, ``RL2Policy.value_rnn/value_head`` |
| h_t (≈ φ, the adapted state) | the ``state`` returned by ``RL2Policy.step`` |
| n, H, T | ``cfg.episodes_per_trial``, ``env.horizon``, ``n · H`` |
| γ, λ | ``cfg.gamma``, ``cfg.gae_lambda`` |
| B (trials per update) | ``env.n_tasks`` (``TrainConfig.meta_batch_size``), one trial per task |
| the trials | a ``task_env.Rollout`` (index [task, trial, step]), from ``rollout.collect_trials`` |
| μ_G, σ_G | ``RL2Policy.return_mean``, ``RL2Policy.return_std`` (``cfg.return_stats_momentum``) |

Lecture: lectures/05_rl2.ipynb.
Differs from the paper's outer loop, "a first-order implementation of TRPO" (a KL-constrained
natural-gradient step per batch of ~250k steps), by using PPO's clipped surrogate with several
Adam epochs over much smaller batches, and separate gradient clipping for the two GRUs; and, as
options, by a baseline that also sees the elapsed fraction of the trial and predicts standardised
returns (the policy's inputs are the paper's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from ..utils import check_nonnegative, check_positive_int
from . import ppo
from .returns import gae
from .rollout import Encoder, collect_trials
from .task_env import Rollout, TaskEnv

__all__ = ["Config", "RL2Policy", "encode_inputs", "adapt", "meta_step", "evaluate"]


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of RL² trained with PPO."""

    episodes_per_trial: int = 10
    """n, episodes of one task per trial (the paper's n: 10, 100, 500 bandit pulls)."""
    hidden_size: int = 128
    """GRU units of the policy and of the value baseline. Authors' launchers: 128 (32–512 swept)."""
    gamma: float = 0.99
    """γ, the discount over the whole trial. Authors' launchers: 0.99."""
    gae_lambda: float = 0.3
    """λ of GAE. edlanglois/relearn: 0.3."""
    return_stats_momentum: float = 0.0
    """Step of the running mean and std of the value targets that the value head is scaled by
    (``RL2Policy.update_return_stats``); 0 keeps the raw scale (mean 0, std 1)."""
    ppo: ppo.Config = field(default_factory=lambda: ppo.Config(outer_lr=1e-3, entropy_coef=0.01))
    """The outer-loop optimiser's settings (``metacourse.rl.ppo.Config``)."""

    def __post_init__(self) -> None:
        check_positive_int("episodes_per_trial", self.episodes_per_trial)
        check_positive_int("hidden_size", self.hidden_size)
        for name in ("gamma", "gae_lambda", "return_stats_momentum"):
            if not 0.0 <= check_nonnegative(name, getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


def encode_inputs(states, prev_actions, prev_rewards, prev_dones, n_states: int, n_actions: int
                  ) -> Tensor:
    """(1) x_t as a float tensor (B, S + A + 2); a previous action of −1 (none yet) encodes as 0."""
    states, prev_actions = torch.as_tensor(states), torch.as_tensor(prev_actions)
    state_part = nn.functional.one_hot(states, n_states)
    action_part = nn.functional.one_hot(prev_actions.clamp_min(0), n_actions)
    action_part = action_part * (prev_actions >= 0).unsqueeze(-1)
    scalars = torch.stack([torch.as_tensor(prev_rewards), torch.as_tensor(prev_dones)], dim=-1)
    dtype = torch.get_default_dtype()
    return torch.cat([state_part.to(dtype), action_part.to(dtype), scalars.to(dtype)], dim=-1)


class RL2Policy(nn.Module):
    """(2)–(3) A GRU policy and a separate GRU value baseline over the inputs (1).

    With ``trial_length`` T, the baseline also sees the fraction of the trial elapsed, t / T (the
    policy never does): the value of a belief state depends on how many steps are left, which a
    GRU would otherwise have to count. A baseline may use any information that does not depend on
    the action taken, so this changes the advantage estimates (their variance, and with λ < 1 their
    bias), not what the policy sees.
    The value head predicts *standardised* returns, V = μ_G + σ_G · (w_V · g_t + b_V), with μ_G,
    σ_G running statistics of the value targets (``update_return_stats``): trial returns of
    ~100 would otherwise take a linear head on a bounded GRU state hundreds of updates to reach.
    """

    def __init__(self, n_states: int, n_actions: int, hidden_size: int = 128,
                 trial_length: int | None = None) -> None:
        super().__init__()
        self.n_states = check_positive_int("n_states", n_states)
        self.n_actions = check_positive_int("n_actions", n_actions)
        self.trial_length = None if trial_length is None else check_positive_int("trial_length",
                                                                                   trial_length)
        self.input_size = n_states + n_actions + 2
        self.policy_rnn = nn.GRU(self.input_size, hidden_size, batch_first=True)
        self.policy_head = nn.Linear(hidden_size, n_actions)
        self.value_rnn = nn.GRU(self.input_size + (trial_length is not None), hidden_size,
                                batch_first=True)
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.orthogonal_(self.policy_head.weight, gain=0.01)  # near-uniform first policy
        nn.init.zeros_(self.policy_head.bias)
        self.register_buffer("return_mean", torch.zeros(()))
        self.register_buffer("return_std", torch.ones(()))

    def initial_state(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
        """h_{−1}, g_{−1} (zeros) and the step count t = 0, at the start of every trial."""
        zeros = torch.zeros(1, batch_size, self.policy_rnn.hidden_size)
        return zeros, zeros.clone(), torch.zeros(batch_size, dtype=torch.long)

    def _value_inputs(self, inputs: Tensor, start: Tensor) -> Tensor:
        if self.trial_length is None:
            return inputs
        steps = start[:, None] + torch.arange(inputs.shape[1])
        elapsed = (steps.to(inputs.dtype) / self.trial_length).unsqueeze(-1)
        return torch.cat([inputs, elapsed], dim=-1)

    def forward(self, inputs: Tensor, state: tuple[Tensor, ...] | None = None
                ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Whole sequences: inputs (B, T, D) -> logits (B, T, A), values (B, T), final state."""
        state = state if state is not None else self.initial_state(inputs.shape[0])
        start = state[2] if len(state) > 2 else torch.zeros(inputs.shape[0], dtype=torch.long)
        policy_out, policy_state = self.policy_rnn(inputs, state[0])
        value_out, value_state = self.value_rnn(self._value_inputs(inputs, start), state[1])
        values = self.return_mean + self.return_std * self.value_head(value_out).squeeze(-1)
        return self.policy_head(policy_out), values, (policy_state, value_state,
                                                      start + inputs.shape[1])

    def step(self, inputs: Tensor, state: tuple[Tensor, ...]
             ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """One step: inputs (B, D) -> logits (B, A), values (B,), next state."""
        logits, values, state = self(inputs.unsqueeze(1), state)
        return logits.squeeze(1), values.squeeze(1), state

    def standardize(self, returns: Tensor) -> Tensor:
        """Value targets (or values) in the units the value head predicts."""
        return (returns - self.return_mean) / self.return_std

    @torch.no_grad()
    def update_return_stats(self, returns: Tensor, momentum: float) -> None:
        """Move μ_G, σ_G towards the mean and standard deviation of a batch of value targets
        (exponential moving average; ``momentum`` 0 keeps them at 0 and 1)."""
        if momentum <= 0.0:
            return
        self.return_mean.lerp_(returns.mean().to(self.return_mean.dtype), momentum)
        self.return_std.lerp_(returns.std().clamp_min(1e-3).to(self.return_std.dtype), momentum)

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """Policy and value parameters, whose gradient norms PPO clips separately."""
        return [[*self.policy_rnn.parameters(), *self.policy_head.parameters()],
                [*self.value_rnn.parameters(), *self.value_head.parameters()]]


def adapt(policy: RL2Policy, env: TaskEnv, cfg: Config, generator: torch.Generator, greedy: bool = False,
          encode: Encoder | None = None) -> Rollout:
    """(4) One trial of n episodes of ``env.horizon`` steps in every task of ``env``; the hidden
    state does the adapting.

    ``encode(states, prev_actions, prev_rewards, prev_dones)`` builds the inputs (1); by default
    ``encode_inputs`` with the policy's sizes (Lab 5 passes its own encoding here). ``generator``
    drives the env's draws and the sampled actions. Returns a ``Rollout`` of shape (T, 1, n · H).
    """
    if encode is None:
        encode = partial(encode_inputs, n_states=policy.n_states, n_actions=policy.n_actions)
    horizon = getattr(env, "horizon", None)
    if not isinstance(horizon, int | np.integer) or isinstance(horizon, bool) or horizon < 1:
        raise TypeError(f"{type(env).__name__} has horizon={horizon!r}; RL² needs the number of steps of one "
                        "episode as a positive int attribute env.horizon (1 for a bandit, e.g. "
                        "BatchedBernoulliBandit; H for a tabular MDP)")
    n_steps = cfg.episodes_per_trial * int(horizon)
    return collect_trials(policy, env, n_steps, encode, generator, greedy=greedy)


def _reevaluate(policy: RL2Policy, trials: Rollout, indices: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Log-probabilities, entropies and values of the current networks on some whole trials."""
    logits, values, _ = policy(trials.inputs[indices])
    distribution = torch.distributions.Categorical(logits=logits)
    return (distribution.log_prob(trials.actions[indices]), distribution.entropy(),
            policy.standardize(values))


def meta_step(policy: RL2Policy, optimizer: torch.optim.Optimizer, env: TaskEnv, cfg: Config,
              generator: torch.Generator, encode: Encoder | None = None) -> dict[str, float]:
    """(5)–(7) Collect one trial per task of ``env``, then one PPO update; returns metrics.

    ``encode``: as in :func:`adapt`. ``generator`` drives the env, draws the actions and shuffles
    PPO's minibatches of whole trials.
    """
    trials = adapt(policy, env, cfg, generator, encode=encode)[:, 0]  # one trial per task: [task, step]
    advantages, returns = gae(trials.rewards, trials.values, cfg.gamma, cfg.gae_lambda)
    returns = returns.to(trials.values.dtype)
    policy.update_return_stats(returns, cfg.return_stats_momentum)
    batch = {"old_log_probs": trials.log_probs, "advantages": advantages.to(trials.values.dtype),
             "returns": policy.standardize(returns)}
    stats = ppo.update(lambda indices: _reevaluate(policy, trials, indices), optimizer, batch,
                       cfg.ppo, parameter_groups=policy.parameter_groups(), generator=generator)
    return {"total_reward": float(trials.episode_returns.mean()), **stats}


def evaluate(policy: RL2Policy, env: TaskEnv, cfg: Config, generator: torch.Generator,
             greedy: bool = False) -> np.ndarray:
    """Total reward of one trial in each task of ``env``, shape (T,) (actions sampled with
    ``generator`` unless ``greedy``; the env's draws always come from it)."""
    was_training = policy.training
    policy.eval()
    try:
        trials = adapt(policy, env, cfg, generator, greedy=greedy)
        return trials.episode_returns[:, 0].cpu().numpy().astype(np.float64)
    finally:
        policy.train(was_training)
