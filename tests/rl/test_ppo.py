import pytest
import torch

from metacourse.rl import ppo

pytestmark = pytest.mark.usefixtures("one_thread")


def test_clipped_surrogate_by_hand():
    ratio = torch.tensor([1.5, 0.5, 1.0])
    advantages = torch.tensor([1.0, -1.0, 2.0])
    loss, stats = ppo.clipped_surrogate(ratio.log(), torch.zeros(3), advantages, clip_ratio=0.2)
    # min(ρA, clip(ρ)A) = (min(1.5, 1.2), min(−0.5, −0.8), 2) = (1.2, −0.8, 2): mean 0.8
    assert loss.item() == pytest.approx(-0.8)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 3)
    # KL(π_old ‖ π) ≈ mean((ρ − 1) − log ρ), never negative
    assert stats["approx_kl"].item() == pytest.approx(((ratio - 1) - ratio.log()).mean().item())


def test_clipping_removes_the_gradient_only_on_the_optimistic_side():
    log_ratio = torch.tensor([1.5, 1.5, 0.5, 0.5]).log().requires_grad_()
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    loss, _ = ppo.clipped_surrogate(log_ratio, torch.zeros(4), advantages, clip_ratio=0.2)
    loss.backward()
    # ρ = 1.5 with A > 0 and ρ = 0.5 with A < 0 are clipped: no gradient; the others keep ρA's
    assert log_ratio.grad.tolist() == pytest.approx([0.0, 1.5 / 4, -0.5 / 4, 0.0])


def test_masked_mean_and_normalize():
    values = torch.tensor([1.0, 2.0, 3.0, 100.0])
    mask = torch.tensor([True, True, True, False])
    assert ppo.masked_mean(values, mask).item() == pytest.approx(2.0)
    normalized = ppo.normalize(values[:3])
    assert normalized.mean().abs() < 1e-6 and normalized.pow(2).mean().sqrt() == pytest.approx(1.0)


def test_update_moves_a_softmax_policy_towards_the_better_action():
    torch.manual_seed(0)
    logits = torch.zeros(3, requires_grad=True)
    value = torch.zeros(1, requires_grad=True)
    actions = torch.randint(0, 3, (600,))
    rewards = actions.float()  # action 2 pays most
    with torch.no_grad():
        old = torch.log_softmax(logits, -1)[actions]
    batch = {"old_log_probs": old, "advantages": rewards - rewards.mean(), "returns": rewards}

    def evaluate(indices):
        distribution = torch.distributions.Categorical(logits=logits.expand(len(indices), 3))
        return (distribution.log_prob(actions[indices]), distribution.entropy(),
                value.expand(len(indices)))

    optimizer = torch.optim.Adam([logits, value], lr=0.05)
    stats = ppo.update(evaluate, optimizer, batch, ppo.Config(epochs=3, minibatches=4),
                       parameter_groups=[[logits], [value]], generator=torch.Generator().manual_seed(0))
    probabilities = torch.softmax(logits, -1)
    assert probabilities[2] > 0.4 > probabilities[0]
    assert 0.0 < value.item() and {"policy_loss", "value_loss", "entropy", "approx_kl"} <= set(stats)


def test_config_validates():
    with pytest.raises(ValueError, match="epochs"):
        ppo.Config(epochs=0)
    with pytest.raises(ValueError, match="clip_ratio"):
        ppo.Config(clip_ratio=-0.1)


def test_target_kl_stops_the_epochs_early():
    logits = torch.zeros(2, requires_grad=True)
    actions = torch.tensor([0, 1] * 50)
    batch = {"old_log_probs": torch.full((100,), -0.6931), "returns": torch.zeros(100),
             "advantages": (actions == 0).float() * 2 - 1}
    calls = []

    def evaluate(indices):
        calls.append(len(indices))
        distribution = torch.distributions.Categorical(logits=logits.expand(len(indices), 2))
        return distribution.log_prob(actions[indices]), distribution.entropy(), torch.zeros(len(indices))

    optimizer = torch.optim.SGD([logits], lr=5.0)
    ppo.update(evaluate, optimizer, batch, ppo.Config(epochs=10, minibatches=2, target_kl=1e-4,
                                                      normalize_advantages=False),
               generator=torch.Generator().manual_seed(0))
    assert len(calls) < 20  # fewer than 10 epochs x 2 minibatches


def test_the_kl_estimate_is_never_negative_where_the_plain_one_is():
    log_ratio = torch.tensor([0.3, 0.2, -0.1])  # E[log π_old − log π] = −0.133 here: a negative "KL"
    _, stats = ppo.clipped_surrogate(log_ratio, torch.zeros(3), torch.ones(3), clip_ratio=0.2)
    assert -log_ratio.mean() < 0 < stats["approx_kl"].item()
    _, stats = ppo.clipped_surrogate(torch.zeros(3), torch.zeros(3), torch.ones(3), clip_ratio=0.2)
    assert stats["approx_kl"].item() == 0.0  # the same policy: no divergence


def _shuffled_orders(generator, global_seed):
    torch.manual_seed(global_seed)
    seen = []
    logits = torch.zeros(2, requires_grad=True)

    def evaluate(indices):
        seen.append(indices.tolist())
        distribution = torch.distributions.Categorical(logits=logits.expand(len(indices), 2))
        return distribution.log_prob(torch.zeros(len(indices), dtype=torch.long)), distribution.entropy(), \
            torch.zeros(len(indices))

    batch = {"old_log_probs": torch.full((8,), -0.693), "advantages": torch.ones(8), "returns": torch.zeros(8)}
    ppo.update(evaluate, torch.optim.SGD([logits], lr=0.0), batch, ppo.Config(epochs=2, minibatches=2),
               generator=generator)
    return seen


def test_minibatches_are_shuffled_with_the_given_generator():
    first = _shuffled_orders(torch.Generator().manual_seed(4), global_seed=1)
    assert first == _shuffled_orders(torch.Generator().manual_seed(4), global_seed=2)
    assert first != _shuffled_orders(torch.Generator().manual_seed(5), global_seed=1)


def test_update_without_a_generator_says_how_to_make_one():
    batch = {"old_log_probs": torch.zeros(4), "advantages": torch.ones(4), "returns": torch.zeros(4)}
    with pytest.raises(TypeError, match=r"generator=torch.Generator\(\).manual_seed\(seed\)"):
        ppo.update(lambda indices: None, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0), batch,
                   ppo.Config(), generator=None)
