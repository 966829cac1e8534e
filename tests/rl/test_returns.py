import numpy as np
import pytest
import torch

from metacourse.rl.returns import discounted_returns, gae


def test_discounted_returns_by_hand():
    assert discounted_returns([1.0, 2.0, 3.0], 0.5).tolist() == [2.75, 3.5, 3.0]
    # an episode ends after step 1: nothing flows back across it
    assert discounted_returns([1.0, 2.0, 3.0], 0.5, dones=[0, 1, 0]).tolist() == [2.0, 2.0, 3.0]
    # bootstrapping from V_T = 4 after the last step
    assert discounted_returns([1.0, 2.0, 3.0], 0.5, last_value=4.0).tolist() == [3.25, 4.5, 5.0]


def test_returns_work_on_batches_and_tensors():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
    got = discounted_returns(rewards, 0.5)
    assert got.shape == (2, 3) and got.dtype == torch.float32
    assert got[1].tolist() == [0.25, 0.5, 1.0]
    assert discounted_returns(np.array([1, 1]), 1.0).tolist() == [2.0, 1.0]  # integers are fine


def test_gae_by_hand():
    # δ = (1 + .9·1 − .5, 0 + .9·1.5 − 1, 2 − 1.5) = (1.4, .35, .5); A_t = δ_t + .72 A_{t+1}
    advantages, returns = gae([1.0, 0.0, 2.0], [0.5, 1.0, 1.5], gamma=0.9, gae_lambda=0.8)
    assert advantages.tolist() == pytest.approx([1.4 + 0.72 * 0.71, 0.35 + 0.72 * 0.5, 0.5])
    assert returns.tolist() == pytest.approx([1.9112 + 0.5, 0.71 + 1.0, 2.0])


def test_gae_limits_are_td_and_monte_carlo():
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(4, 7, generator=generator, dtype=torch.float64)
    values = torch.randn(4, 7, generator=generator, dtype=torch.float64)
    dones = torch.zeros(4, 7)
    dones[:, 3] = 1
    one, _ = gae(rewards, values, 0.9, 1.0, dones=dones, last_value=0.3)
    expected = discounted_returns(rewards, 0.9, dones=dones, last_value=0.3) - values
    assert torch.allclose(one, expected)
    zero, _ = gae(rewards, values, 0.9, 0.0, dones=dones, last_value=0.3)
    next_values = torch.cat([values[:, 1:], torch.full((4, 1), 0.3, dtype=torch.float64)], 1)
    assert torch.allclose(zero, rewards + 0.9 * (1 - dones) * next_values - values)


def test_no_gradient_flows_through_targets():
    values = torch.ones(3, requires_grad=True)
    advantages, returns = gae(torch.ones(3), values, 0.9, 0.9)
    assert not advantages.requires_grad and not returns.requires_grad


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns([1.0], 1.5)
    with pytest.raises(ValueError, match="gae_lambda"):
        gae([1.0], [1.0], 0.9, -0.1)
    with pytest.raises(ValueError, match="one value estimate"):
        gae([1.0, 2.0], [1.0], 0.9, 0.9)
    with pytest.raises(ValueError, match="dones"):
        discounted_returns([1.0, 2.0], 0.9, dones=[0])
