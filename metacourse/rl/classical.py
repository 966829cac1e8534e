"""Classical baselines of RL²'s tables: hand-designed bandit and tabular-MDP algorithms.

Duan et al. 2016 (arXiv:1611.02779), §3.1–3.2 compare RL² with these. Bandit agents keep Beta
posteriors Beta(α_i, β_i) = Beta(1 + successes_i, 1 + failures_i) (the true prior U[0, 1]);
MDP agents keep transition counts N(s, a, s'), visits n(s, a) and reward sums, and plan once
per episode by backward induction over the horizon H (``envs.solve_finite_horizon``).

    (1) UCB1        a_t = argmax_i μ̂_i + c √(2 ln t / T_i),   μ̂_i = α_i / T_i,  T_i = α_i + β_i
    (2) ε-greedy    a_t = argmax_i μ̂_i with prob. 1 − ε, else uniform (greedy: ε = 0)
    (3) TS          θ_i ~ Beta(α_i, β_i),  a_t = argmax_i θ_i
    (4) OTS         a_t = the arm that is argmax_i θ_i^(j) most often among N joint draws j
    (5) Gittins     ν(α, β) = the retirement reward λ at which retiring and pulling tie:
                    V_λ(α, β) = max(λ/(1−γ), p + γ[p V_λ(α+1, β) + (1−p) V_λ(α, β+1)]),  p = α/(α+β)
    (6) PSRL        M ~ posterior (Dirichlet(1 + N), Normal((1 + Σr)/(1 + n), 1/(1 + n))); act optimally in M
    (7) OPSRL       N posterior draws M_j; Q_h(s, a) = max_j [r_j(s, a) + P_j(·|s, a) · V_{h+1}]
    (8) UCRL2       Q_h(s, a) = r̂ + c b_r + max_{‖p − p̂‖₁ ≤ c d} p · V_{h+1}   (extended value iteration)
    (9) BEB         act optimally in the posterior-mean MDP with reward r̄(s, a) + β / (1 + n(s, a))
    (10) ε-greedy   act optimally in the estimated MDP, with prob. ε a uniform action (greedy: ε = 0)

| symbol | identifier |
|---|---|
| α_i − 1, β_i − 1 | ``successes``, ``failures`` (per arm) |
| c, ε, N, γ, β | ``UCB1.c``, ``EpsilonGreedy.epsilon``, ``n_samples``, ``Gittins.discount``, ``BEB.bonus`` |
| N(s, a, s'), n(s, a), Σr | ``TabularStats.counts``, ``.visits``, ``.reward_sums`` |

Gittins is exact for discounted infinite horizons; our trials have a fixed horizon n, so (5) is
an approximation whose discount γ is tuned per setting (the paper also took "the best-performing
approximation for each setup"). It is computed on a λ-grid with linear interpolation, on the
(α, β) lattice truncated ``extra_levels`` pulls beyond the horizon. Every hyper-parameter is
grid-searched per setting on validation instances (``grid_search``), as in the paper.

Lecture: lectures/05_rl2.ipynb.
Differs from RL² by being designed by hand: RL² learns the exploration strategy these encode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .envs.tabular_mdp import solve_finite_horizon

__all__ = ["argmax_random", "RandomBandit", "EpsilonGreedy", "UCB1", "ThompsonSampling",
           "OptimisticThompsonSampling", "Gittins", "gittins_index_table", "play_bandits",
           "TabularStats", "RandomMDP", "PSRL", "OPSRL", "UCRL2", "BEB", "EpsilonGreedyMDP",
           "play_mdps", "BANDIT_METHODS", "MDP_METHODS", "grid_search"]


def argmax_random(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Argmax over the last axis, ties broken uniformly at random (np.argmax takes the first)."""
    best = values >= values.max(axis=-1, keepdims=True) - 1e-12
    return np.argmax(best * rng.random(values.shape), axis=-1)


# ----------------------------------------------------------------------------------- bandits

@dataclass(frozen=True)
class RandomBandit:
    """Pull a uniformly random arm."""

    def choose(self, successes, failures, pulls_left, rng):
        return rng.integers(successes.shape[1], size=successes.shape[0])


@dataclass(frozen=True)
class EpsilonGreedy:
    """(2) ε-greedy on the posterior means μ̂ (the paper's Beta(1, 1) start); ε = 0 is greedy."""

    epsilon: float = 0.0
    """ε, probability of a uniform random arm (grid-searched per setting)."""
    tie_break: str = "random"
    """``"random"`` or ``"first"`` (np.argmax: the lowest-numbered arm wins ties)."""

    def choose(self, successes, failures, pulls_left, rng):
        means = (successes + 1) / (successes + failures + 2)
        arms = argmax_random(means, rng) if self.tie_break == "random" else means.argmax(-1)
        explore = rng.random(len(arms)) < self.epsilon
        return np.where(explore, rng.integers(means.shape[1], size=len(arms)), arms)


@dataclass(frozen=True)
class UCB1:
    """(1) UCB1 with Beta(1, 1) pseudo-counts (so T_i ≥ 2 and t = Σ_i T_i)."""

    c: float = 1.0
    """c, the exploration coefficient (grid-searched per setting)."""

    def index(self, successes: np.ndarray, failures: np.ndarray) -> np.ndarray:
        """μ̂_i + c √(2 ln t / T_i) for every arm (the quantity UCB1 maximises)."""
        pulls = successes + failures + 2
        t = pulls.sum(axis=-1, keepdims=True)
        return (successes + 1) / pulls + self.c * np.sqrt(2 * np.log(t) / pulls)

    def choose(self, successes, failures, pulls_left, rng):
        return argmax_random(self.index(successes, failures), rng)


@dataclass(frozen=True)
class ThompsonSampling:
    """(3) Thompson sampling from the Beta posteriors (the true prior)."""

    def choose(self, successes, failures, pulls_left, rng):
        return argmax_random(rng.beta(successes + 1, failures + 1), rng)


@dataclass(frozen=True)
class OptimisticThompsonSampling:
    """(4) OTS, read as "the arm that is the argmax most often among N joint posterior draws"."""

    n_samples: int = 5
    """N, the number of posterior draws (grid-searched per setting)."""

    def choose(self, successes, failures, pulls_left, rng):
        n_envs, n_arms = successes.shape
        draws = rng.beta(successes + 1, failures + 1, size=(self.n_samples, n_envs, n_arms))
        winners = argmax_random(draws, rng)                                  # (N, n_envs)
        votes = np.zeros((n_envs, n_arms))
        np.add.at(votes, (np.broadcast_to(np.arange(n_envs), winners.shape), winners), 1.0)
        return argmax_random(votes, rng)


@functools.lru_cache(maxsize=32)
def gittins_index_table(discount: float, levels: int, extra_levels: int = 400,
                        grid_size: int = 400) -> np.ndarray:
    """(5) Gittins indices ν(α, β) of Bernoulli arms for all α, β ≥ 1 with α + β ≤ ``levels``.

    Calibration on a λ-grid: for each λ, backward induction over the (α, β) lattice gives
    f_λ(α, β) = continue − retire, which decreases in λ; ν is its root, found by linear
    interpolation between grid points. The lattice is cut ``extra_levels`` beyond ``levels``,
    where an arm is valued as if nothing more would be learned, max(λ, p)/(1 − γ).
    Returns an array ``table[α, β]`` (NaN outside the computed triangle).
    """
    if not 0.0 < discount < 1.0:
        raise ValueError(f"discount must lie in (0, 1), got {discount}")
    lam = np.linspace(0.0, 1.0, grid_size)[:, None]
    retire = lam / (1.0 - discount)
    top = levels + extra_levels
    value = np.maximum(lam, np.arange(1, top) / top) / (1.0 - discount)   # α = 1 .. top − 1
    table = np.full((levels + 1, levels + 1), np.nan)
    for level in range(top - 1, 1, -1):
        alpha = np.arange(1, level)
        p = alpha / level
        cont = p * (1.0 + discount * value[:, 1:]) + (1.0 - p) * discount * value[:, :-1]
        value = np.maximum(cont, retire)
        if level <= levels:
            table[alpha, level - alpha] = _root_on_grid(lam[:, 0], cont - retire)
    return table


def _root_on_grid(lam: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Root in λ of each column of the decreasing function f (grid × states), interpolated."""
    above = np.clip((f > 0).sum(axis=0), 1, len(lam) - 1)    # f > 0 at grid points [0, above)
    columns = np.arange(f.shape[1])
    f_lo, f_hi = f[above - 1, columns], f[above, columns]
    fraction = np.where(f_lo > f_hi, f_lo / np.maximum(f_lo - f_hi, 1e-300), 0.0)
    return lam[above - 1] + (lam[above] - lam[above - 1]) * np.clip(fraction, 0.0, 1.0)


@dataclass(frozen=True)
class Gittins:
    """(5) Pull the arm with the highest Gittins index for discount γ (tuned per setting)."""

    discount: float = 0.95
    """γ of the index; a fixed-horizon trial of n pulls is approximated by tuning γ."""

    def choose(self, successes, failures, pulls_left, rng):
        levels = int(successes[0].sum() + failures[0].sum()) + pulls_left + 2
        table = gittins_index_table(self.discount, levels)
        alpha, beta = successes.astype(np.int64) + 1, failures.astype(np.int64) + 1
        return argmax_random(table[alpha, beta], rng)


def play_bandits(agent, means: np.ndarray, n_pulls: int, seed: int) -> np.ndarray:
    """Total reward of ``agent`` over ``n_pulls`` pulls of each bandit (rows of ``means``).

    Rewards come from common random numbers (the j-th uniform draw of a step decides arm j), so
    different agents on the same ``seed`` face the same luck: comparisons are less noisy.
    """
    reward_rng, agent_rng = np.random.default_rng([seed, 17]), np.random.default_rng([seed, 29])
    n_envs, n_arms = means.shape
    successes, failures = np.zeros((n_envs, n_arms)), np.zeros((n_envs, n_arms))
    totals, rows = np.zeros(n_envs), np.arange(n_envs)
    for t in range(n_pulls):
        arms = agent.choose(successes, failures, n_pulls - t, agent_rng)
        rewards = (reward_rng.random((n_envs, n_arms)) < means)[rows, arms].astype(np.float64)
        successes[rows, arms] += rewards
        failures[rows, arms] += 1.0 - rewards
        totals += rewards
    return totals


BANDIT_METHODS: dict[str, tuple[Callable, dict[str, tuple]]] = {
    # paper's column name: (agent class, grid of its hyper-parameters)
    "Random": (RandomBandit, {}),
    "Gittins": (Gittins, {"discount": (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998)}),
    "TS": (ThompsonSampling, {}),
    "OTS": (OptimisticThompsonSampling, {"n_samples": (2, 3, 5, 10, 20, 50)}),
    "UCB1": (UCB1, {"c": (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)}),
    "ε-Greedy": (EpsilonGreedy, {"epsilon": (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)}),
    "Greedy": (EpsilonGreedy, {}),
}


# ----------------------------------------------------------------------------- tabular MDPs

@dataclass
class TabularStats:
    """What an MDP agent has seen so far in one trial, per env: the sufficient statistics."""

    counts: np.ndarray
    """N(s, a, s'), shape (n_envs, S, A, S)."""
    reward_sums: np.ndarray
    """Σ r over visits of (s, a), shape (n_envs, S, A)."""

    @classmethod
    def empty(cls, n_envs: int, n_states: int, n_actions: int) -> TabularStats:
        return cls(np.zeros((n_envs, n_states, n_actions, n_states)),
                   np.zeros((n_envs, n_states, n_actions)))

    @property
    def visits(self) -> np.ndarray:
        return self.counts.sum(axis=-1)

    def update(self, states, actions, rewards, next_states) -> None:
        rows = np.arange(len(states))
        self.counts[rows, states, actions, next_states] += 1.0
        self.reward_sums[rows, states, actions] += rewards

    def posterior_mean(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means of P (Dirichlet(1 + N)) and of r̄ (prior Normal(1, 1), noise var 1)."""
        n_states = self.counts.shape[-1]
        transitions = (self.counts + 1.0) / (self.visits[..., None] + n_states)
        return transitions, (1.0 + self.reward_sums) / (1.0 + self.visits)

    def sample(self, rng: np.random.Generator, n_samples: int | None = None):
        """Posterior draws of (P, r̄); with ``n_samples`` a leading axis of that length."""
        shape = () if n_samples is None else (n_samples,)
        gammas = rng.gamma(self.counts + 1.0, size=shape + self.counts.shape)
        transitions = gammas / gammas.sum(axis=-1, keepdims=True)
        mean, visits = (1.0 + self.reward_sums) / (1.0 + self.visits), self.visits
        rewards = mean + rng.standard_normal(shape + mean.shape) / np.sqrt(1.0 + visits)
        return transitions, rewards


@dataclass(frozen=True)
class RandomMDP:
    """Uniformly random actions."""

    epsilon: float = 1.0

    def plan(self, stats, horizon, t, rng):
        return np.zeros((horizon, *stats.reward_sums.shape))


@dataclass(frozen=True)
class PSRL:
    """(6) Posterior sampling: one MDP drawn per episode, acted on optimally."""

    epsilon: float = 0.0

    def plan(self, stats, horizon, t, rng):
        return solve_finite_horizon(*stats.sample(rng), horizon)


@dataclass(frozen=True)
class OPSRL:
    """(7) Optimistic posterior sampling: the best of N draws in each Bellman backup."""

    n_samples: int = 5
    """N, posterior draws per episode (grid-searched)."""
    epsilon: float = 0.0

    def plan(self, stats, horizon, t, rng):
        transitions, rewards = stats.sample(rng, self.n_samples)
        q = np.empty((horizon, *rewards.shape[1:]))
        next_value = np.zeros(rewards.shape[1:-1])
        for h in range(horizon - 1, -1, -1):
            q[h] = (rewards + np.einsum("jbsat,bt->jbsa", transitions, next_value)).max(axis=0)
            next_value = q[h].max(axis=-1)
        return q


@dataclass(frozen=True)
class UCRL2:
    """(8) UCRL2's confidence sets (Jaksch et al. 2010), radii scaled by c, finite horizon."""

    scale: float = 1.0
    """c, multiplies both confidence radii (grid-searched; rewards here are not in [0, 1])."""
    delta: float = 0.1
    """δ, the confidence level of the radii."""
    epsilon: float = 0.0

    def plan(self, stats, horizon, t, rng):
        n_states, n_actions = stats.counts.shape[-2:]
        visits = np.maximum(stats.visits, 1.0)
        log_term = np.log(2.0 * n_states * n_actions * max(t, 1) / self.delta)
        radius = self.scale * np.sqrt(14.0 * n_states * log_term / visits)
        rewards = stats.reward_sums / visits + self.scale * np.sqrt(3.5 * log_term / visits)
        p_hat = np.where(stats.visits[..., None] > 0, stats.counts / visits[..., None],
                         1.0 / n_states)
        q = np.empty((horizon, *rewards.shape))
        next_value = np.zeros(rewards.shape[:-1])
        for h in range(horizon - 1, -1, -1):
            q[h] = rewards + _optimistic_expectation(p_hat, radius, next_value)
            next_value = q[h].max(axis=-1)
        return q


def _optimistic_expectation(p_hat: np.ndarray, radius: np.ndarray, value: np.ndarray) -> np.ndarray:
    """max p · V over ‖p − p̂‖₁ ≤ radius: move radius/2 of mass to the best state, from the worst."""
    order = np.argsort(-value, axis=-1)[:, None, None, :]                 # best first
    p = np.take_along_axis(p_hat, np.broadcast_to(order, p_hat.shape), axis=-1).copy()
    p[..., 0] = np.minimum(1.0, p[..., 0] + radius / 2.0)
    excess = p.sum(axis=-1, keepdims=True) - 1.0
    worse = np.cumsum(p[..., :0:-1], axis=-1)[..., ::-1] - p[..., 1:]      # mass below state j
    p[..., 1:] -= np.clip(excess - worse, 0.0, p[..., 1:])
    sorted_value = np.take_along_axis(value, order[:, 0, 0, :], axis=-1)
    return np.einsum("bsat,bt->bsa", p, sorted_value)


@dataclass(frozen=True)
class BEB:
    """(9) Bayesian exploration bonus (Kolter & Ng 2009) on the posterior-mean MDP.

    Transitions: the Dirichlet(1 + N) posterior mean. Rewards: ``"posterior"`` means under the
    true Normal(1, 1) prior, (1 + Σr)/(1 + n) (the default), or ``"empirical"`` means Σr/n with 0
    where unvisited, the reading that lands on the paper's BEB row at n = 10 and 25 (see the notes
    of ``metacourse reproduce rl2-mdp``).
    """

    bonus: float = 1.0
    """β, the bonus scale (grid-searched)."""
    epsilon: float = 0.0
    rewards: str = "posterior"
    """``"posterior"`` (the prior mean 1 where unvisited) or ``"empirical"`` (0 where unvisited)."""

    def __post_init__(self) -> None:
        if self.rewards not in ("posterior", "empirical"):
            raise ValueError(f"rewards must be 'posterior' or 'empirical', got {self.rewards!r}")

    def plan(self, stats, horizon, t, rng):
        transitions, rewards = stats.posterior_mean()
        if self.rewards == "empirical":
            rewards = stats.reward_sums / np.maximum(stats.visits, 1.0)
        return solve_finite_horizon(transitions, rewards + self.bonus / (1.0 + stats.visits), horizon)


@dataclass(frozen=True)
class EpsilonGreedyMDP:
    """(10) Optimal in the estimated MDP (updated once per episode), ε-random; ε = 0 is greedy.

    Transitions: the maximum-likelihood (= MAP under the flat Dirichlet) estimate N(s, a, ·)/n,
    uniform where (s, a) is unvisited. Rewards: ``"empirical"`` means Σr/n with 0 where unvisited
    (this reproduces the paper's greedy rows), or ``"posterior"`` means under the true Normal(1, 1)
    prior, (1 + Σr)/(1 + n): unvisited actions then look average, not bad, so greedy explores.
    """

    epsilon: float = 0.0
    """ε, probability of a uniform random action (grid-searched)."""
    rewards: str = "empirical"
    """``"empirical"`` (0 where unvisited) or ``"posterior"`` (the prior mean 1 where unvisited)."""

    def plan(self, stats, horizon, t, rng):
        n_states = stats.counts.shape[-1]
        visits = stats.visits[..., None]
        transitions = np.where(visits > 0, stats.counts / np.maximum(visits, 1.0), 1.0 / n_states)
        if self.rewards == "posterior":
            rewards = (1.0 + stats.reward_sums) / (1.0 + stats.visits)
        else:
            rewards = stats.reward_sums / np.maximum(stats.visits, 1.0)
        return solve_finite_horizon(transitions, rewards, horizon)


def play_mdps(agent, transitions: np.ndarray, reward_means: np.ndarray, n_episodes: int,
              horizon: int, seed: int) -> np.ndarray:
    """Total reward of ``agent`` over ``n_episodes`` episodes of each MDP (common random numbers).

    The agent plans at the start of each episode from the statistics of the trial so far
    (``agent.plan(stats, horizon, steps_so_far, rng) -> Q`` of shape (H, n_envs, S, A)), then acts
    greedily on Q (random among ties), or uniformly with probability ``agent.epsilon``. The MDPs
    are simulated here in NumPy (rewards and next states from their own generator).
    """
    env_rng, rng = np.random.default_rng([seed, 17]), np.random.default_rng([seed, 29])
    n_envs, n_states, n_actions = reward_means.shape
    cumulative = np.cumsum(transitions, axis=-1)
    stats = TabularStats.empty(n_envs, n_states, n_actions)
    totals, rows = np.zeros(n_envs), np.arange(n_envs)
    for episode in range(n_episodes):
        q = agent.plan(stats, horizon, episode * horizon, rng)
        states = np.zeros(n_envs, dtype=np.int64)  # every episode starts in state 0
        for h in range(horizon):
            actions = argmax_random(q[h][rows, states], rng)
            explore = rng.random(n_envs) < agent.epsilon
            actions = np.where(explore, rng.integers(n_actions, size=n_envs), actions)
            rewards = reward_means[rows, states, actions] + env_rng.standard_normal(n_envs)
            u = env_rng.random(n_envs)[:, None]
            next_states = np.minimum((cumulative[rows, states, actions] < u).sum(axis=1), n_states - 1)
            stats.update(states, actions, rewards, next_states)
            totals += rewards
            states = next_states
    return totals


MDP_METHODS: dict[str, tuple[Callable, dict[str, tuple]]] = {
    "Random": (RandomMDP, {}),
    "PSRL": (PSRL, {}),
    "OPSRL": (OPSRL, {"n_samples": (2, 5, 10, 20)}),
    "UCRL2": (UCRL2, {"scale": (0.01, 0.03, 0.1, 0.3, 1.0)}),
    "BEB": (BEB, {"bonus": (0.1, 0.3, 1.0, 3.0, 10.0)}),
    "ε-Greedy": (EpsilonGreedyMDP, {"epsilon": (0.0, 0.05, 0.1, 0.2, 0.3)}),
    "Greedy": (EpsilonGreedyMDP, {}),
}


def grid_search(make_agent: Callable, grid: dict[str, tuple], score: Callable[[object], float]
                ) -> tuple[dict, dict[tuple, float]]:
    """Best hyper-parameters of ``make_agent`` on ``grid`` by ``score(agent)`` (higher is better).

    Returns ``(best, scores)``: the chosen keyword arguments and the score of every grid point.
    """
    names = list(grid)
    points = [dict(zip(names, values)) for values in _product([grid[n] for n in names])]
    scores = {tuple(p.values()): float(score(make_agent(**p))) for p in points}
    best = max(points, key=lambda p: scores[tuple(p.values())])
    return best, scores


def _product(lists: list[tuple]) -> list[tuple]:
    combos: list[tuple] = [()]
    for values in lists:
        combos = [c + (v,) for c in combos for v in values]
    return combos
