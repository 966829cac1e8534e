"""RL²'s trials: a recurrent policy played through n episodes of every task, on ``task_env.play``.

A *trial* is n · H steps in one task (n episodes of horizon H). At each step t the policy sees an
input x_t built by ``encode(states, previous_actions, previous_rewards, previous_dones)`` and its
recurrent state h_{t−1}, and returns action logits, a value estimate and h_t:

    (1) x_t = encode(s_t, a_{t−1}, r_{t−1}, d_{t−1})      (a_{−1} = −1: none yet; r_{−1} = 0, d_{−1} = false)
    (2) logits_t, V_t, h_t = policy.step(x_t, h_{t−1}),   h_{−1} = policy.initial_state(T · E)
    (3) a_t ~ Categorical(softmax(logits_t))               (drawn with the generator; argmax when ``greedy``)
    (4) s_{t+1}, r_t, terminated_t, truncated_t = env.step(a_t),   d_t = terminated_t or truncated_t

``play(..., restart=True)`` starts a new episode wherever one ended, while the recurrent state
goes on: it is carried across episode boundaries inside the trial and starts afresh for every
trial; that is the only memory the policy has of the task.

| symbol | identifier |
|---|---|
| s_t, a_t, r_t, d_t | ``Rollout.obs``, ``.actions``, ``.rewards``, ``.ended`` (index [task, trial, step]) |
| x_t | ``Rollout.inputs`` (T, E, n · H, input size) |
| log π(a_t), V_t | ``Rollout.log_probs``, ``Rollout.values`` |
| T, E | ``env.n_tasks``, trials per task (``n_trials``) |

Environments speak the contract of ``metacourse.rl.task_env`` (``BatchedBernoulliBandit``,
``BatchedTabularMDP``).

Lecture: lectures/05_rl2.ipynb.
Differs from a feed-forward rollout by threading the policy's hidden state through every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from .task_env import Rollout, Step, TaskEnv, play

__all__ = ["RecurrentPolicy", "Encoder", "sample_actions", "collect_trials"]


class RecurrentPolicy(Protocol):
    def initial_state(self, batch_size: int): ...

    def step(self, inputs: Tensor, state) -> tuple[Tensor, Tensor, object]: ...


Encoder = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def sample_actions(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One action index per row of ``probs`` (..., A), drawn with ``generator``: the same draw as
    ``Categorical(probs).sample()`` makes from torch's global generator."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, True, generator=generator).reshape(probs.shape[:-1])


class _RecurrentActor:
    """``act(obs, last)`` for ``play``: (1)–(3), keeping h_t and a_{t−1} between calls."""

    def __init__(self, policy: RecurrentPolicy, encode: Encoder, generator: torch.Generator, greedy: bool) -> None:
        self.policy, self.encode, self.generator, self.greedy = policy, encode, generator, greedy
        self.hidden, self.previous_actions = None, None

    def __call__(self, obs: Tensor, last: Step | None) -> tuple[Tensor, dict[str, Tensor]]:
        lead, states = obs.shape[:2], obs.reshape(-1)
        if last is None:  # the first step of the trial: a fresh state, no previous step
            self.hidden = self.policy.initial_state(states.shape[0])
            previous = (torch.full_like(states, -1), torch.zeros(states.shape),
                        torch.zeros(states.shape, dtype=torch.bool))
        else:
            previous = (self.previous_actions, last.rewards.reshape(-1), (last.terminated | last.truncated).reshape(-1))
        inputs = self.encode(states, *previous)
        logits, values, self.hidden = self.policy.step(inputs, self.hidden)
        distribution = torch.distributions.Categorical(logits=logits)
        actions = logits.argmax(-1) if self.greedy else sample_actions(distribution.probs, self.generator)
        self.previous_actions = actions
        return actions.reshape(lead), {"inputs": inputs.reshape(*lead, -1),
                                       "log_probs": distribution.log_prob(actions).reshape(lead),
                                       "values": values.reshape(lead)}


def collect_trials(policy: RecurrentPolicy, env: TaskEnv, n_steps: int, encode: Encoder,
                   generator: torch.Generator, greedy: bool = False, n_trials: int = 1) -> Rollout:
    """``n_trials`` trials of ``n_steps`` in every task of ``env`` without gradients (eqs. 1–4).

    ``generator`` starts the episodes and drives the env's draws and the sampled actions.
    Returns a ``Rollout`` with ``inputs``, ``log_probs`` and ``values``, shape (T, n_trials, n_steps).
    """
    actor = _RecurrentActor(policy, encode, generator, greedy)
    return play(env, actor, n_steps, n_trials, generator, restart=True)
