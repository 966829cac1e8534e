"""Checks of lab 05 (bandits and RL²): UCB1, Thompson sampling, RL²'s inputs, a trial rollout.

Each ``check_*`` compares a student's function with the reference in ``metacourse.rl`` on random
inputs (numerically where the result is deterministic, statistically where it is random) and
prints one verdict line such as ``lab05/ucb1: 3/3 checks passed``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import assert_close, run_checks

__all__ = ["check_ucb1_index", "check_thompson", "check_encode", "check_rollout"]


def _counts(rng: np.random.Generator, n_envs: int, n_arms: int) -> tuple[np.ndarray, np.ndarray]:
    pulls = rng.integers(0, 30, size=(n_envs, n_arms)).astype(np.float64)
    successes = np.floor(pulls * rng.uniform(size=pulls.shape))
    return successes, pulls - successes


def check_ucb1_index(ucb1_index: Callable) -> None:
    """``ucb1_index(successes, failures, c)`` -> μ̂ + c √(2 ln t / T) per arm (Beta(1, 1) start)."""
    from ..rl.baselines import UCB1

    rng = np.random.default_rng(5)

    def matches(n_envs, n_arms, c):
        successes, failures = _counts(rng, n_envs, n_arms)
        assert_close(ucb1_index(successes.copy(), failures.copy(), c),
                     UCB1(c).index(successes, failures), atol=1e-9, rtol=1e-7,
                     what=f"ucb1_index(..., c={c}) on {n_envs} bandits with {n_arms} arms")

    def before_any_pull():
        zeros = np.zeros((1, 3))
        expected = 0.5 + np.sqrt(2 * np.log(6) / 2)
        assert_close(ucb1_index(zeros, zeros, 1.0), np.full((1, 3), expected), atol=1e-9,
                     rtol=0, what="the index before any pull (T_i = 2, t = 6)")

    run_checks("lab05/ucb1", [
        ("matches the reference, c = 1", lambda: matches(8, 5, 1.0)),
        ("matches the reference, c = 0.2, 50 arms", lambda: matches(4, 50, 0.2)),
        ("Beta(1, 1) pseudo-counts before any pull", before_any_pull)])


def check_thompson(thompson_choose: Callable) -> None:
    """``thompson_choose(successes, failures, rng)`` -> one arm per bandit, sampled by TS."""
    from ..rl.baselines import play_bandits

    def posterior_probability():
        # P(Beta(3, 1) > Beta(1, 2)) = 0.9: arm 0 should be chosen 90% of the time
        successes, failures = np.tile([[2.0, 0.0]], (20000, 1)), np.tile([[0.0, 1.0]], (20000, 1))
        arms = np.asarray(thompson_choose(successes, failures, np.random.default_rng(0)))
        assert arms.shape == (20000,), f"expected one arm per bandit, got shape {arms.shape}"
        share = float((arms == 0).mean())
        assert abs(share - 0.9) < 0.015, f"arm 0 chosen {share:.3f} of the time, expected 0.900"

    def plays_well():
        agent = type("Student", (), {"choose": lambda self, s, f, left, rng: thompson_choose(s, f, rng)})
        means = np.random.default_rng(1).uniform(size=(1000, 5))
        total = play_bandits(agent(), means, 10, seed=2).mean()
        assert 5.5 < total < 6.1, f"mean total reward {total:.3f} at n = 10, k = 5; TS earns ≈ 5.75"

    run_checks("lab05/thompson", [("chooses arms with their posterior probability of being best",
                                   posterior_probability),
                                  ("earns Thompson sampling's reward (paper: 5.7)", plays_well)])


def check_encode(encode: Callable) -> None:
    """``encode(states, prev_actions, prev_rewards, prev_dones, n_states, n_actions)`` -> x_t."""
    from ..rl.rl2 import encode_inputs

    rng = np.random.default_rng(3)

    def matches(n_states, n_actions, first):
        n = 16
        states = rng.integers(n_states, size=n)
        actions = np.full(n, -1) if first else rng.integers(n_actions, size=n)
        rewards, dones = rng.normal(size=n), rng.uniform(size=n) < 0.3
        expected = encode_inputs(states, actions, rewards, dones, n_states, n_actions)
        got = encode(states, actions, rewards, dones, n_states, n_actions)
        assert_close(got, expected, atol=1e-6, rtol=1e-6,
                     what=f"encode(...) with {n_states} states and {n_actions} actions")

    run_checks("lab05/encode", [("bandit inputs (one state)", lambda: matches(1, 5, False)),
                                ("tabular MDP inputs", lambda: matches(10, 5, False)),
                                ("first step of a trial (no previous action)",
                                 lambda: matches(10, 5, True))])


def check_rollout(rollout_trial: Callable) -> None:
    """``rollout_trial(policy, env, n_steps, encode, greedy)`` -> (actions, rewards), each (B, T)."""
    import torch

    from ..rl.envs import BatchedTabularMDP
    from ..rl.rl2 import RL2Policy, encode_inputs
    from ..rl.rollout import collect_trials

    def compare(horizon, episodes):
        torch.manual_seed(0)
        policy = RL2Policy(10, 5, 16)
        encode = lambda *a: encode_inputs(*a, n_states=10, n_actions=5)  # noqa: E731
        env = lambda: BatchedTabularMDP.sample(6, np.random.default_rng(1), horizon=horizon)  # noqa: E731
        expected = collect_trials(policy, env(), horizon * episodes, encode, greedy=True)
        actions, rewards = rollout_trial(policy, env(), horizon * episodes, encode, True)
        assert_close(actions, expected.actions, atol=0, rtol=0, what="actions")
        assert_close(rewards, expected.rewards, atol=1e-5, rtol=1e-5, what="rewards")

    run_checks("lab05/rollout", [
        ("one episode of 4 steps", lambda: compare(4, 1)),
        ("three episodes: the hidden state crosses episode boundaries", lambda: compare(3, 3))])
