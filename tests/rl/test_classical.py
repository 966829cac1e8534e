import math

import numpy as np
import pytest

from metacourse.rl import classical as B
from metacourse.rl.envs import sample_mdps


def test_argmax_random_breaks_ties_uniformly():
    rng = np.random.default_rng(0)
    values = np.tile([1.0, 3.0, 3.0, 0.0, 3.0], (6000, 1))
    picks = B.argmax_random(values, rng)
    assert set(picks) == {1, 2, 4}
    assert np.allclose(np.bincount(picks, minlength=5)[[1, 2, 4]] / 6000, 1 / 3, atol=0.03)


def test_ucb1_index_by_hand():
    # arm 0: 3 successes, 1 failure -> T = 6, mean 4/6; arm 1: 0/0 -> T = 2, mean 1/2; t = 8
    successes, failures = np.array([[3.0, 0.0]]), np.array([[1.0, 0.0]])
    for c, expected in ((0.0, 0), (1.0, 1)):
        # c = 1: 4/6 + sqrt(2 ln 8 / 6) = 1.627 < 1/2 + sqrt(2 ln 8 / 2) = 2.539
        arm = B.UCB1(c).choose(successes, failures, 5, np.random.default_rng(0))
        assert arm.tolist() == [expected]
    assert 4 / 6 + math.sqrt(2 * math.log(8) / 6) < 0.5 + math.sqrt(2 * math.log(8) / 2)


def test_thompson_sampling_picks_each_arm_with_its_posterior_probability():
    # P(Beta(3, 1) > Beta(1, 2)) = ∫ 3x² · (1 − (1 − x)²) dx over [0, 1] = 1 − 3/4 + 1/5 = 0.9 ... by hand:
    # CDF of Beta(1, 2) is 1 − (1 − x)², density of Beta(3, 1) is 3x²: ∫ 3x²(2x − x²) = 3/2 − 3/5 = 0.9
    successes, failures = np.tile([[2.0, 0.0]], (20000, 1)), np.tile([[0.0, 1.0]], (20000, 1))
    arms = B.ThompsonSampling().choose(successes, failures, 1, np.random.default_rng(1))
    assert abs((arms == 0).mean() - 0.9) < 0.01


def test_gittins_indices_match_published_tables():
    # Gittins, Glazebrook & Weber (2011), Table 8.x, Bernoulli arms with a Beta(a, b) posterior
    table = B.gittins_index_table(0.9, 10, extra_levels=150)  # 0.9^150 ≈ 1e-7: exact enough
    assert table[1, 1] == pytest.approx(0.7029, abs=5e-4)
    assert table[2, 1] == pytest.approx(0.8001, abs=5e-4)
    assert table[1, 2] == pytest.approx(0.5001, abs=5e-4)
    assert B.gittins_index_table(0.99, 10, extra_levels=600)[1, 1] == pytest.approx(0.8699, abs=5e-4)
    # more successes -> higher index; the index exceeds the posterior mean (value of information)
    assert table[3, 1] > table[2, 1] > table[1, 1]
    assert table[5, 5] > 0.5


@pytest.mark.parametrize("agent, low, high", [
    (B.RandomBandit(), 4.75, 5.25), (B.ThompsonSampling(), 5.4, 6.0), (B.UCB1(0.1), 6.3, 6.9),
    (B.EpsilonGreedy(0.0), 6.2, 6.9), (B.Gittins(0.8), 6.3, 6.9),
    (B.OptimisticThompsonSampling(20), 6.2, 6.9)])
def test_bandit_baselines_land_near_the_paper_at_n10_k5(agent, low, high):
    means = np.random.default_rng(0).uniform(size=(2000, 5))
    assert low < B.play_bandits(agent, means, 10, seed=0).mean() < high


def test_play_bandits_uses_common_random_numbers():
    means = np.random.default_rng(0).uniform(size=(50, 3))
    a = B.play_bandits(B.EpsilonGreedy(0.0), means, 20, seed=4)
    b = B.play_bandits(B.EpsilonGreedy(0.0), means, 20, seed=4)
    assert np.array_equal(a, b)


def _optimistic(p_hat, radius, value):
    return B._optimistic_expectation(np.asarray(p_hat, float)[None, None, None, :],
                                     np.array([[[radius]]]), np.asarray(value, float)[None, :])[0, 0, 0]


@pytest.mark.parametrize("radius, expected", [
    (0.0, 0.7),   # p̂ · V
    (0.4, 1.1),   # 0.2 moves from the worst state (V = 0) to the best (V = 2): p = (.3, .3, .4)
    (0.8, 1.5),   # p = (.1, .3, .6)
    (1.2, 1.8),   # the worst state empties, then the middle one gives: p = (0, .2, .8)
    (2.0, 2.0)])  # all mass on the best state
def test_ucrl2_inner_maximisation_by_hand(radius, expected):
    assert _optimistic([0.5, 0.3, 0.2], radius, [0.0, 1.0, 2.0]) == pytest.approx(expected)


def test_ucrl2_inner_maximisation_beats_every_feasible_point():
    steps = 300
    i, j = np.meshgrid(np.arange(steps + 1), np.arange(steps + 1), indexing="ij")
    grid = np.stack([i, j, steps - i - j], axis=-1).reshape(-1, 3) / steps
    grid = grid[grid[:, 2] >= 0]
    rng = np.random.default_rng(0)
    for _ in range(20):
        p_hat, value, radius = rng.dirichlet(np.ones(3)), rng.normal(size=3), rng.uniform(0, 1.5)
        feasible = grid[np.abs(grid - p_hat).sum(axis=1) <= radius]
        got = _optimistic(p_hat, radius, value)
        if len(feasible):
            assert got >= (feasible @ value).max() - 1e-9
        assert got <= p_hat @ value + radius / 2 * (value.max() - value.min()) + 1e-9


def test_posterior_statistics():
    stats = B.TabularStats.empty(1, 2, 1)
    for _ in range(3):
        stats.update(np.array([0]), np.array([0]), np.array([2.0]), np.array([1]))
    transitions, rewards = stats.posterior_mean()
    assert transitions[0, 0, 0].tolist() == [1 / 5, 4 / 5]     # Dirichlet(1 + counts)
    assert rewards[0, 0, 0] == pytest.approx((1 + 6) / 4)       # Normal(1, 1) prior, 3 rewards of 2
    assert rewards[0, 1, 0] == 1.0                               # unvisited: the prior mean
    draws, _ = stats.sample(np.random.default_rng(0), n_samples=4000)
    assert np.allclose(draws[:, 0, 0, 0].mean(0), [0.2, 0.8], atol=0.01)


def test_mdp_baselines_beat_random_and_random_earns_one_per_step():
    transitions, means = sample_mdps(np.random.default_rng(0), 200)
    play = lambda agent: B.play_mdps(agent, transitions, means, 10, 10, seed=1).mean()  # noqa: E731
    random = play(B.RandomMDP())
    assert abs(random - 100.0) < 5.0  # mean reward 1 per step, 100 steps
    for agent in (B.PSRL(), B.OPSRL(5), B.UCRL2(0.1), B.BEB(1.0), B.EpsilonGreedyMDP(0.1),
                  B.EpsilonGreedyMDP(0.0, rewards="posterior")):
        assert play(agent) > random + 25, agent
    # empirical reward means make unvisited actions look bad (0 < E[r] = 1): greedy explores less
    assert play(B.EpsilonGreedyMDP(0.0)) < play(B.EpsilonGreedyMDP(0.0, rewards="posterior"))


def test_beb_reward_estimates():
    stats = B.TabularStats.empty(1, 2, 2)
    stats.update(np.array([0]), np.array([0]), np.array([3.0]), np.array([1]))
    rng = np.random.default_rng(0)
    last = lambda agent: agent.plan(stats, 1, 0, rng)[-1, 0]  # noqa: E731  (one step: Q = r + bonus)
    # visited (0, 0): posterior (1 + 3) / 2 or empirical 3, bonus 1/2; unvisited: 1 or 0, bonus 1
    assert np.allclose(last(B.BEB(1.0)), [[2.0 + 0.5, 1.0 + 1.0], [2.0, 2.0]])
    assert np.allclose(last(B.BEB(1.0, rewards="empirical")), [[3.0 + 0.5, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="rewards"):
        B.BEB(1.0, rewards="mean")


def test_grid_search_returns_the_best_point_and_every_score():
    best, scores = B.grid_search(lambda a, b: (a, b), {"a": (1, 2), "b": (10, 0)},
                                 lambda agent: -abs(agent[0] - 2) - agent[1])
    assert best == {"a": 2, "b": 0} and len(scores) == 4 and scores[(2, 0)] == 0
