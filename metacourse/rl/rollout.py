"""Batched rollouts of recurrent policies: one trial per environment, all environments at once.

A *trial* is T = n · H steps in one task (n episodes of horizon H). At each step t the policy
sees an input x_t built by ``encode(states, previous_actions, previous_rewards, previous_dones)``
and its recurrent state h_{t−1}, and returns action logits, a value estimate and h_t:

    (1) x_t = encode(s_t, a_{t−1}, r_{t−1}, d_{t−1})           (a, r, d of the step before; 0 at t = 0)
    (2) logits_t, V_t, h_t = policy.step(x_t, h_{t−1}),        h_{−1} = policy.initial_state(B)
    (3) a_t ~ Categorical(softmax(logits_t))                    (argmax when ``greedy``)
    (4) s_{t+1}, r_t, d_t = env.step(a_t)                       (the env starts new episodes itself)

The recurrent state is carried across episode boundaries inside the trial and starts afresh for
every trial; that is the only memory the policy has of the task.

| symbol | identifier |
|---|---|
| s_t, a_t, r_t, d_t | ``Trials.states``, ``.actions``, ``.rewards``, ``.dones`` (shape (B, T)) |
| x_t | ``Trials.inputs`` (B, T, input size) |
| log π(a_t), V_t | ``Trials.log_probs``, ``Trials.values`` |

Environments follow the batched tabular interface of ``metacourse.rl.envs`` (``reset() ->
states``, ``step(actions) -> (states, rewards, dones)``, ``n_envs``, ``n_actions``).

Lecture: lectures/05_rl2.ipynb.
Differs from a feed-forward rollout by threading the policy's hidden state through every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

__all__ = ["Trials", "RecurrentPolicy", "BatchedEnv", "sample_actions", "collect_trials"]


class BatchedEnv(Protocol):
    n_envs: int
    n_actions: int

    def reset(self) -> np.ndarray: ...

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class RecurrentPolicy(Protocol):
    def initial_state(self, batch_size: int): ...

    def step(self, inputs: Tensor, state) -> tuple[Tensor, Tensor, object]: ...


Encoder = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], Tensor]


@dataclass
class Trials:
    """B trials of T steps, batch first (index [trial, step])."""

    inputs: Tensor
    states: Tensor
    actions: Tensor
    rewards: Tensor
    dones: Tensor
    log_probs: Tensor
    values: Tensor

    @property
    def total_reward(self) -> Tensor:
        """Undiscounted reward of each trial, shape (B,): the number RL²'s tables report."""
        return self.rewards.sum(dim=1)

    def __getitem__(self, index) -> Trials:
        return Trials(*(getattr(self, f.name)[index] for f in fields(self)))


def sample_actions(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One action index per row of ``probs`` (..., A), drawn with ``generator``: the same draw as
    ``Categorical(probs).sample()`` makes from torch's global generator."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, True, generator=generator).reshape(probs.shape[:-1])


def collect_trials(policy: RecurrentPolicy, env: BatchedEnv, n_steps: int, encode: Encoder,
                   greedy: bool = False, generator: torch.Generator | None = None) -> Trials:
    """Run one trial of ``n_steps`` in every env of ``env`` without gradients (eqs. 1–4); actions
    are drawn from π(·|h_t) with ``generator`` (torch's global generator if None)."""
    n_envs = env.n_envs
    states = env.reset()
    prev_actions = np.zeros(n_envs, dtype=np.int64)
    prev_rewards, prev_dones = np.zeros(n_envs), np.zeros(n_envs, dtype=bool)
    hidden = policy.initial_state(n_envs)
    record: dict[str, list] = {name: [] for name in
                               ("inputs", "states", "actions", "rewards", "dones", "log_probs", "values")}
    first = np.ones(n_envs, dtype=bool)  # no previous step yet: encode() gets zeros
    with torch.no_grad():
        for _ in range(n_steps):
            inputs = encode(states, np.where(first, -1, prev_actions), prev_rewards, prev_dones)
            logits, values, hidden = policy.step(inputs, hidden)
            distribution = torch.distributions.Categorical(logits=logits)
            actions = logits.argmax(-1) if greedy else sample_actions(distribution.probs, generator)
            next_states, rewards, dones = env.step(actions.cpu().numpy())
            for name, value in (("inputs", inputs), ("states", torch.as_tensor(states)),
                                ("actions", actions), ("rewards", torch.as_tensor(rewards)),
                                ("dones", torch.as_tensor(dones)),
                                ("log_probs", distribution.log_prob(actions)), ("values", values)):
                record[name].append(value)
            states, prev_actions, prev_rewards, prev_dones = next_states, actions.cpu().numpy(), rewards, dones
            first[:] = False
    stacked = {name: torch.stack(values, dim=1) for name, values in record.items()}
    stacked["rewards"] = stacked["rewards"].to(torch.get_default_dtype())
    return Trials(**stacked)
