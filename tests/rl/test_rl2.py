import numpy as np
import pytest
import torch

from metacourse.rl import ppo, rl2
from metacourse.rl.envs import BatchedBernoulliBandit, BatchedTabularMDP


@pytest.fixture(autouse=True)
def _one_thread():
    """Small GRUs run fastest on one thread (and do not spin on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_encode_inputs_layout():
    x = rl2.encode_inputs(np.array([2, 0]), np.array([-1, 1]), np.array([0.0, 1.5]),
                          np.array([False, True]), n_states=3, n_actions=2)
    assert x.shape == (2, 3 + 2 + 2) and x.dtype == torch.get_default_dtype()
    assert x[0].tolist() == [0, 0, 1, 0, 0, 0.0, 0]   # no previous action yet: zeros
    assert x[1].tolist() == [1, 0, 0, 0, 1, 1.5, 1]


def test_step_by_step_equals_whole_sequence():
    torch.manual_seed(0)
    policy = rl2.RL2Policy(n_states=3, n_actions=2, hidden_size=8)
    inputs = torch.randn(4, 6, policy.input_size)
    logits, values, final = policy(inputs)
    state = policy.initial_state(4)
    for t in range(6):
        step_logits, step_values, state = policy.step(inputs[:, t], state)
        assert torch.allclose(step_logits, logits[:, t], atol=1e-6)
        assert torch.allclose(step_values, values[:, t], atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(state, final))


def test_a_trial_spans_n_episodes_and_keeps_the_hidden_state_across_them():
    torch.manual_seed(0)
    cfg = rl2.Config(episodes_per_trial=3, hidden_size=8)
    policy = rl2.RL2Policy(10, 5, 8)
    env = BatchedTabularMDP.sample(5, np.random.default_rng(0), horizon=4)
    rollout = rl2.adapt(policy, env, cfg, torch.Generator().manual_seed(0))
    assert rollout.actions.shape == (5, 1, 12) and rollout.inputs.shape == (5, 1, 12, 17)
    trials = rollout[:, 0]                                     # one trial per task: [task, step]
    assert trials.terminated[0].tolist() == [False, False, False, True] * 3 and not trials.truncated.any()
    assert (trials.obs[:, [0, 4, 8]] == 0).all()              # every episode starts in state 0
    # the input after an episode end carries d = 1, and the previous reward
    assert (trials.inputs[:, 4, -1] == 1).all() and (trials.inputs[:, 5, -1] == 0).all()
    assert torch.allclose(trials.inputs[:, 4, -2], trials.rewards[:, 3])
    # recomputing the whole trial from a zero state gives the rollout's log-probabilities:
    # the hidden state ran through all 12 steps, across episode boundaries
    logits, values, _ = policy(trials.inputs)
    log_probs = torch.distributions.Categorical(logits=logits).log_prob(trials.actions)
    assert torch.allclose(log_probs, trials.log_probs, atol=1e-5)
    assert torch.allclose(values, trials.values, atol=1e-5)


def test_hidden_state_is_reset_between_trials():
    policy = rl2.RL2Policy(1, 3, 8)
    cfg = rl2.Config(episodes_per_trial=5, hidden_size=8)
    means = np.random.default_rng(0).uniform(size=(4, 3))
    first = rl2.adapt(policy, BatchedBernoulliBandit(means), cfg, torch.Generator().manual_seed(1), greedy=True)
    second = rl2.adapt(policy, BatchedBernoulliBandit(means), cfg, torch.Generator().manual_seed(1), greedy=True)
    assert torch.equal(first.actions, second.actions)  # nothing carried over from trial one


def test_config_validates():
    with pytest.raises(ValueError, match="gae_lambda"):
        rl2.Config(gae_lambda=1.5)
    with pytest.raises(ValueError, match="episodes_per_trial"):
        rl2.Config(episodes_per_trial=0)


def test_rl2_learns_to_beat_random_on_two_armed_bandits():
    torch.manual_seed(0)
    cfg = rl2.Config(episodes_per_trial=10, hidden_size=32,
                     ppo=ppo.Config(outer_lr=3e-3, entropy_coef=0.01))
    policy = rl2.RL2Policy(1, 2, cfg.hidden_size)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.ppo.outer_lr)
    rng, generator = np.random.default_rng(0), torch.Generator().manual_seed(0)
    test = BatchedBernoulliBandit(np.random.default_rng(1).uniform(size=(1000, 2)))
    before = rl2.evaluate(policy, test, cfg, torch.Generator().manual_seed(2))
    for _ in range(20):
        metrics = rl2.meta_step(policy, optimizer, BatchedBernoulliBandit.sample(128, 2, rng), cfg, generator)
    after = rl2.evaluate(policy, test, cfg, torch.Generator().manual_seed(2))
    # random play earns 5 on average; knowing the best arm earns 10 · E[max(μ1, μ2)] = 6.67
    assert abs(before.mean() - 5.0) < 0.25
    assert after.mean() > before.mean() + 0.4, (before.mean(), after.mean())
    assert np.isfinite(metrics["value_loss"])


def test_time_aware_baseline_counts_steps_across_calls():
    """With ``trial_length`` the baseline sees t / T; the state carries t between calls, so a
    trial run step by step gives the values of the whole-sequence pass (and the policy ignores t)."""
    torch.manual_seed(0)
    timed = rl2.RL2Policy(n_states=3, n_actions=2, hidden_size=8, trial_length=6)
    assert timed.value_rnn.input_size == timed.input_size + 1
    inputs = torch.randn(4, 6, timed.input_size)
    logits, values, final = timed(inputs)
    assert final[2].tolist() == [6, 6, 6, 6]
    state = timed.initial_state(4)
    for t in range(6):
        step_logits, step_values, state = timed.step(inputs[:, t], state)
        assert torch.allclose(step_values, values[:, t], atol=1e-6)
    first, rest = timed(inputs[:, :2]), None
    rest = timed(inputs[:, 2:], first[2])
    assert torch.allclose(torch.cat([first[1], rest[1]], dim=1), values, atol=1e-6)
    # the same inputs at a later time give other values but the same action probabilities
    late = (final[0] * 0, final[1] * 0, final[2] * 0 + 3)
    late_logits, late_values, _ = timed(inputs[:, :1], late)
    assert torch.allclose(late_logits[:, 0], logits[:, 0], atol=1e-6)
    assert not torch.allclose(late_values[:, 0], values[:, 0])


def test_value_head_predicts_standardised_returns():
    torch.manual_seed(0)
    policy = rl2.RL2Policy(1, 3, 8)
    inputs = torch.randn(2, 5, policy.input_size)
    _, raw, _ = policy(inputs)
    returns = torch.tensor([[90.0, 80.0], [100.0, 110.0]])
    policy.update_return_stats(returns, momentum=1.0)
    assert policy.return_mean.item() == pytest.approx(95.0)
    assert policy.return_std.item() == pytest.approx(returns.std().item())
    _, scaled, _ = policy(inputs)
    assert torch.allclose(scaled, 95.0 + returns.std() * raw, atol=1e-4)
    assert torch.allclose(policy.standardize(scaled), raw, atol=1e-5)
    policy.update_return_stats(returns * 0, momentum=0.0)  # momentum 0: statistics stay put
    assert policy.return_mean.item() == pytest.approx(95.0)


def test_actions_and_ppo_minibatches_come_from_the_given_generator():
    cfg = rl2.Config(episodes_per_trial=5, hidden_size=8)
    runs = []
    for global_seed in (1, 2):
        torch.manual_seed(0)
        policy = rl2.RL2Policy(1, 3, 8)
        optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
        env = BatchedBernoulliBandit.sample(16, 3, np.random.default_rng(0))
        torch.manual_seed(global_seed)  # the global generator plays no part
        metrics = rl2.meta_step(policy, optimizer, env, cfg, generator=torch.Generator().manual_seed(9))
        trials = rl2.adapt(policy, env, cfg, torch.Generator().manual_seed(10))
        runs.append((metrics, trials.actions))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])


def test_sampling_with_a_generator_draws_as_categorical_does():
    from metacourse.rl.rollout import sample_actions

    probs = torch.softmax(torch.randn(50, 4), -1)
    torch.manual_seed(3)
    expected = torch.distributions.Categorical(probs=probs).sample()
    assert torch.equal(sample_actions(probs, torch.Generator().manual_seed(3)), expected)


class _NoHorizon:
    n_tasks = 2


@pytest.mark.parametrize("horizon", [None, 0, 2.5, "3"])
def test_an_env_without_a_horizon_is_refused_with_the_fix(horizon):
    env = _NoHorizon()
    if horizon is not None:
        env.horizon = horizon
    with pytest.raises(TypeError, match="env.horizon"):
        rl2.adapt(rl2.RL2Policy(1, 2, 8), env, rl2.Config(episodes_per_trial=2, hidden_size=8),
                  torch.Generator().manual_seed(0))


def test_the_trial_rollout_records_what_play_records_and_the_inputs_of_the_step_before():
    torch.manual_seed(0)
    policy = rl2.RL2Policy(1, 3, 8)
    env = BatchedBernoulliBandit(np.random.default_rng(0).uniform(size=(6, 3)))
    rollout = rl2.adapt(policy, env, rl2.Config(episodes_per_trial=4, hidden_size=8), torch.Generator().manual_seed(1))
    assert rollout.terminated.all() and rollout.final_obs.shape == (6, 1)
    previous = rollout.inputs[:, 0, 1:]                   # x_t carries a_{t−1}, r_{t−1}, d_{t−1} = 1
    assert torch.equal(previous[..., 1:4].argmax(-1), rollout.actions[:, 0, :-1])
    assert torch.equal(previous[..., 4], rollout.rewards[:, 0, :-1]) and (previous[..., 5] == 1).all()
    assert (rollout.inputs[:, 0, 0, 1:] == 0).all()        # nothing before the first step


def test_adapt_needs_a_generator():
    env = BatchedBernoulliBandit(np.full((2, 2), 0.5))
    with pytest.raises(TypeError, match="torch.Generator"):
        rl2.adapt(rl2.RL2Policy(1, 2, 8), env, rl2.Config(episodes_per_trial=2, hidden_size=8), None)
