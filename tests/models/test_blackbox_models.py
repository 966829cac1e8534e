"""Black-box learners: permutation invariance (CNP), causality and label offset (sequence learners),
cached prediction = online prediction, LRUA writes, and the hypernetwork's generated weights."""

import pytest
import torch

from metacourse.functional import forward
from metacourse.models import MLP
from metacourse.models.blackbox import (
    CNP,
    MANN,
    SNAIL,
    CausalAttention,
    CausalDenseBlock,
    Embedded,
    FeedForward,
    LSTMLearner,
)
from metacourse.models.hypernet import HyperNetwork

SEQUENCE_LEARNERS = {
    "LSTM": lambda: LSTMLearner(3, 2, hidden=16),
    "MANN": lambda: MANN(3, 2, hidden=16, slots=8, slot_size=6, heads=2),
    "SNAIL": lambda: SNAIL(3, 2, max_len=8, channels=8, filters=4, key_dim=4, value_dim=4),
    "feed-forward": lambda: FeedForward(3, 2, hidden=16),
}
ALL_LEARNERS = {**SEQUENCE_LEARNERS, "CNP": lambda: CNP(3, 2, hidden=16, r_dim=8)}


def _data(tasks=2, points=7, x_dim=3, y_dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tasks, points, x_dim, generator=g), torch.randn(tasks, points, y_dim, generator=g)


def test_cnp_representation_and_predictions_ignore_the_order_of_the_support_set():
    model, (x, y) = CNP(3, 2, hidden=16, r_dim=8), _data()
    perm = torch.randperm(x.shape[1])
    r, r_perm = model(x, y, stage="adapt")["r"], model(x[:, perm], y[:, perm], stage="adapt")["r"]
    torch.testing.assert_close(r, r_perm)
    xq = torch.randn(2, 4, 3)
    torch.testing.assert_close(model({"r": r}, xq, stage="predict"), model({"r": r_perm}, xq, stage="predict"))


def test_cnp_representation_is_the_mean_of_the_encoded_pairs():
    model, (x, y) = CNP(3, 2, hidden=16, r_dim=8), _data()
    expected = model.encoder(torch.cat([x, y], -1)).mean(1)
    torch.testing.assert_close(model(x, y, stage="adapt")["r"], expected)


@pytest.mark.parametrize("name", sorted(ALL_LEARNERS))
def test_online_prediction_at_t_never_sees_later_inputs_nor_its_own_label(name):
    torch.manual_seed(0)
    model, (x, y) = ALL_LEARNERS[name](), _data()
    t = 3
    base, _ = model(x, y, stage="online")
    x2, y2 = x.clone(), y.clone()
    x2[:, t + 1:] += 5.0          # later inputs
    y2[:, t:] -= 3.0              # the label of position t and later ones
    changed, _ = model(x2, y2, stage="online")
    torch.testing.assert_close(changed[:, : t + 1], base[:, : t + 1])
    assert not torch.allclose(changed[:, t + 1], base[:, t + 1])   # y_t does reach position t + 1


@pytest.mark.parametrize("name", sorted(SEQUENCE_LEARNERS))
def test_label_offset_first_step_sees_no_label_and_step_t_sees_y_t_minus_1(name):
    torch.manual_seed(0)
    model, (x, y) = SEQUENCE_LEARNERS[name](), _data()
    base, _ = model(x, y, stage="online")
    only_first_label = y.clone()
    only_first_label[:, 0] += 2.0
    changed, _ = model(x, only_first_label, stage="online")
    torch.testing.assert_close(changed[:, 0], base[:, 0])            # position 1 gets y_0 = 0
    assert not torch.allclose(changed[:, 1], base[:, 1])               # position 2 gets y_1
    inputs = model.shifted_labels(y)
    torch.testing.assert_close(inputs[:, 0], torch.zeros_like(y[:, 0]))
    torch.testing.assert_close(inputs[:, 1:], y[:, :-1])


@pytest.mark.parametrize("name", sorted(ALL_LEARNERS))
def test_prediction_from_the_adapted_state_equals_the_online_prediction_after_the_support(name):
    torch.manual_seed(0)
    model, (x, y) = ALL_LEARNERS[name](), _data(points=6)
    xq = torch.randn(2, 3, 3)
    state = model(x, y, stage="adapt")
    predicted = model(state, xq, stage="predict")
    for q in range(3):  # each query as the next element of the sequence, one at a time
        online, _ = model(torch.cat([x, xq[:, q:q + 1]], 1), torch.cat([y, torch.zeros(2, 1, 2)], 1), stage="online")
        torch.testing.assert_close(predicted[:, q], online[:, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block", [CausalDenseBlock(5, 3, dilation=2), CausalAttention(5, 4, 4)])
def test_snail_blocks_are_causal(block):
    x = torch.randn(2, 6, 5, requires_grad=True)
    out = block(x)
    for t in range(6):
        (grad,) = torch.autograd.grad(out[:, t].sum(), x, retain_graph=True)
        assert grad[:, t + 1:].abs().max() == 0 if t < 5 else True
        assert grad[:, t].abs().max() > 0


def test_dilated_block_reads_exactly_t_and_t_minus_dilation():
    block, x = CausalDenseBlock(2, 3, dilation=3), torch.randn(1, 8, 2, requires_grad=True)
    (grad,) = torch.autograd.grad(block(x)[:, 6, 2:].sum(), x)     # the new features at t = 6
    assert set(torch.nonzero(grad.abs().sum(-1)[0]).flatten().tolist()) == {3, 6}


def test_lrua_writes_to_the_least_used_slots_when_the_gate_is_closed():
    torch.manual_seed(0)
    model = MANN(3, 2, hidden=8, slots=6, slot_size=4, heads=2)
    with torch.no_grad():
        model.interface.bias.view(2, 10)[:, 8] = -50.0               # σ ≈ 0: write to least used
    state = model.initial_state(1, torch.zeros(1))
    state["usage"] = torch.tensor([[5.0, 0.1, 3.0, 0.2, 4.0, 6.0]])
    state["memory"] = torch.randn(1, 6, 4)
    new = model.step(state, torch.randn(1, 32))
    changed = (new["memory"] - state["memory"]).abs().sum(-1)[0] > 1e-6
    assert changed.tolist() == [False, True, False, True, False, False]
    torch.testing.assert_close(new["read_w"].sum(-1), torch.ones(1, 2))


def test_hypernetwork_generates_the_target_weights_with_a_task_dimension():
    target = MLP(1, (40, 40), 1)
    shapes = {n: p.shape for n, p in target.named_parameters()}
    model = HyperNetwork(target, 1, 1, hidden=16, r_dim=8)
    phi = model(torch.randn(5, 10, 1), torch.randn(5, 10, 1), stage="adapt")
    assert {n: tuple(p.shape) for n, p in phi.items()} == {n: (5, *s) for n, s in shapes.items()}
    assert model.n_generated == 1761 and list(model.target.parameters()) == []


def test_hypernetwork_predictions_are_the_target_run_with_the_generated_weights():
    torch.manual_seed(0)
    model = HyperNetwork(MLP(1, (8, 8), 1), 1, 1, hidden=16, r_dim=8)
    x, y, xq = torch.randn(3, 5, 1), torch.randn(3, 5, 1), torch.randn(3, 4, 1)
    phi = model(x, y, stage="adapt")
    by_hand = torch.stack([forward(MLP(1, (8, 8), 1), {n: p[i] for n, p in phi.items()}, xq[i]) for i in range(3)])
    torch.testing.assert_close(model(phi, xq, stage="predict"), by_hand)
    with torch.no_grad():                                   # the target's own (buffer) weights are never used
        for buffer in model.target.buffers():
            buffer.add_(100.0)
    torch.testing.assert_close(model(phi, xq, stage="predict"), by_hand)
    doubled = {n: 2 * p for n, p in phi.items()}            # …the generated ones are
    assert not torch.allclose(model(doubled, xq, stage="predict"), by_hand)


def test_hypernetwork_starts_at_the_target_initialisation_and_can_share_layers():
    torch.manual_seed(0)
    target = MLP(1, (8, 8), 1)
    initial = {n: p.detach().clone() for n, p in target.named_parameters()}
    model = HyperNetwork(target, 1, 1, hidden=16, r_dim=8, generate=["4.weight", "4.bias"], init_scale=0.0)
    phi = model(torch.randn(2, 5, 1), torch.randn(2, 5, 1), stage="adapt")
    assert sorted(phi) == ["4.bias", "4.weight"]
    torch.testing.assert_close(phi["4.weight"][1], initial["4.weight"])
    assert sorted(n for n, _ in model.target.named_parameters()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    with pytest.raises(ValueError, match="generate"):
        HyperNetwork(MLP(1, (8,), 1), generate=["nope"])


def test_inputs_are_checked_with_the_fix_in_the_message():
    model = CNP(3, 2)
    with pytest.raises(ValueError, match="x_dim=4"):
        model(torch.randn(1, 5, 4), torch.randn(1, 5, 2), stage="adapt")
    with pytest.raises(ValueError, match="0..1"):
        model(torch.randn(1, 5, 3), torch.tensor([[0, 1, 2, 0, 1]]), stage="adapt")
    with pytest.raises(ValueError, match="objective='query'"):
        HyperNetwork(MLP(1, (8,), 1))(torch.randn(1, 5, 1), torch.randn(1, 5, 1), stage="online")
    with pytest.raises(ValueError, match="stage"):
        model(torch.randn(1, 5, 3), stage="train")


def test_integer_labels_are_one_hot_and_images_are_flattened():
    model = LSTMLearner(16, 3, hidden=8)
    x, y = torch.rand(2, 6, 1, 4, 4), torch.randint(0, 3, (2, 6))
    out, state = model(x, y, stage="online")
    assert out.shape == (2, 6, 3)
    torch.testing.assert_close(state["y_last"], torch.nn.functional.one_hot(y[:, -1], 3).float())


def _own_label_snail():
    return SNAIL(3, 2, max_len=8, channels=8, filters=4, key_dim=4, value_dim=4, label_input="own")


def test_snail_with_own_labels_reads_each_support_label_and_predicts_queries_independently():
    torch.manual_seed(0)
    model, (x, _) = _own_label_snail(), _data(points=5)
    y = torch.tensor([[0, 1, 0, 1, 1], [1, 0, 0, 1, 0]])
    xq = torch.randn(2, 4, 3)
    predicted = model(model(x, y, stage="adapt"), xq, stage="predict")
    flipped = y.clone()
    flipped[:, -1] = 1 - flipped[:, -1]            # the last support label reaches the queries directly
    assert not torch.allclose(model(model(x, flipped, stage="adapt"), xq, stage="predict"), predicted)
    alone = model(model(x, y, stage="adapt"), xq[:, 2:3], stage="predict")
    torch.testing.assert_close(alone[:, 0], predicted[:, 2])      # other queries do not matter
    with pytest.raises(ValueError, match="label_input='previous'"):
        model(x, y, stage="online")
    with pytest.raises(ValueError, match="label_input"):
        SNAIL(3, 2, label_input="next")


def test_embedded_learner_encodes_each_task_with_its_own_batch_statistics():
    from metacourse.models.conv4 import Conv4

    torch.manual_seed(0)
    learner = SNAIL(8, 5, max_len=6, channels=8, filters=4, key_dim=4, value_dim=4, label_input="own")
    model = Embedded(Conv4(None, hidden=8), learner)
    x, y, xq = torch.rand(3, 5, 1, 28, 28), torch.arange(5).repeat(3, 1), torch.rand(3, 10, 1, 28, 28)
    together = model(model(x, y, stage="adapt"), xq, stage="predict")
    first = model(model(x[:1], y[:1], stage="adapt"), xq[:1], stage="predict")
    assert together.shape == (3, 10, 5)
    torch.testing.assert_close(first[0], together[0], atol=1e-5, rtol=1e-5)   # task 0 ignores tasks 1, 2
    with pytest.raises(ValueError, match="x_dim=8"):
        Embedded(Conv4(None, hidden=8), CNP(64, 5))(x, y, stage="adapt")


def test_classifier_hypernetwork_generates_one_row_per_class_from_that_class_only():
    from metacourse.models.hypernet import ClassifierHyperNetwork

    torch.manual_seed(0)
    model = ClassifierHyperNetwork(3, 4, hidden=8, features=5)
    x, y = torch.randn(2, 8, 3), torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3], [3, 3, 2, 2, 1, 1, 0, 0]])
    phi = model(x, y, stage="adapt")
    assert phi["weight"].shape == (2, 4, 5) and phi["bias"].shape == (2, 4)
    generated = model.weight_generator(x)
    for k in range(4):                                     # row k: the mean over class k's examples
        torch.testing.assert_close(phi["weight"][0, k], generated[0, y[0] == k, :5].mean(0))
        torch.testing.assert_close(phi["bias"][1, k], generated[1, y[1] == k, 5].mean(0))
    order = torch.randperm(8)
    shuffled = model(x[:, order], y[:, order], stage="adapt")
    torch.testing.assert_close(shuffled["weight"], phi["weight"])
    xq = torch.randn(2, 6, 3)
    logits = model(phi, xq, stage="predict")
    torch.testing.assert_close(logits, model.query_features(xq) @ phi["weight"].transpose(1, 2) + phi["bias"][:, None])
    with pytest.raises(ValueError, match="integer class labels"):
        model(x, torch.randn(2, 8, 4), stage="adapt")
