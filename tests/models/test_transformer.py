"""The in-context transformer: the prompt's tokens, positions and masks, and the two ways of reading it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metacourse.algorithms.in_context import LinearTasks
from metacourse.models.transformer import (
    InContextTransformer,
    causal_mask,
    encode_prompt,
    prompt_mask,
    sinusoidal_table,
    token_positions,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _tasks(k=4, m=3, d=3, n=2, seed=0):
    return LinearTasks(d).sample(n, k, m, np.random.default_rng(seed))


def test_tokens_interleave_x_and_y_with_a_flag_then_the_queries():
    t = _tasks()
    tokens = encode_prompt(t.x_support, t.y_support, t.x_query)
    assert tokens.shape == (2, 11, 5)
    torch.testing.assert_close(tokens[:, 0, :3], t.x_support[:, 0])
    assert torch.all(tokens[:, 0, 3:] == 0)
    torch.testing.assert_close(tokens[:, 1, 3], t.y_support[:, 0, 0])
    assert torch.all(tokens[:, 1, :3] == 0) and torch.all(tokens[:, 1::2, 4][:, :4] == 1)
    torch.testing.assert_close(tokens[:, 8:, :3], t.x_query)


def test_positions_give_every_query_the_slot_after_the_examples():
    assert token_positions(3, 2).tolist() == [0, 1, 2, 3, 4, 5, 6, 6]
    assert token_positions(0, 1).tolist() == [0]
    with pytest.raises(ValueError, match="must be >= 0"):
        token_positions(-1, 0)


def test_the_prompt_mask_hides_labels_and_other_queries():
    mask = prompt_mask(2, 3)
    assert mask.dtype == torch.bool and mask.shape == (7, 7)
    assert torch.equal(mask[:4, :4], causal_mask(4))
    assert not mask[0, 1] and not mask[2, 3]                    # x_i never sees y_i
    assert torch.equal(mask[4:, 4:], torch.eye(3, dtype=torch.bool))
    assert mask[4:, :4].all()


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_a_query_equals_the_online_prediction_at_its_place(positions):
    torch.manual_seed(0)
    model = InContextTransformer(3, d_model=16, layers=2, heads=2, max_points=8, positions=positions)
    t = _tasks(k=5, m=3)
    with torch.no_grad():
        queries = model(t.x_support, t.y_support, t.x_query)
        for q in range(3):
            x = torch.cat([t.x_support, t.x_query[:, q:q + 1]], 1)
            y = torch.cat([t.y_support, t.y_query[:, q:q + 1]], 1)
            torch.testing.assert_close(queries[:, q], model.online(x, y)[:, -1])


def test_online_predictions_never_see_their_own_label():
    torch.manual_seed(1)
    model = InContextTransformer(3, d_model=16, layers=2, heads=2, max_points=8)
    t = _tasks(k=6)
    with torch.no_grad():
        before = model.online(t.x_support, t.y_support)
        changed = t.y_support.clone()
        changed[:, 2] += 5.0
        after = model.online(t.x_support, changed)
    torch.testing.assert_close(after[:, :3], before[:, :3])
    assert not torch.allclose(after[:, 3:], before[:, 3:])


def test_attention_maps_are_returned_per_layer_and_respect_the_mask():
    model = InContextTransformer(3, d_model=16, layers=3, heads=4, max_points=8)
    t = _tasks(k=2, m=2)
    _, maps = model.query_outputs(t.x_support, t.y_support, t.x_query)
    assert len(maps) == 3 and maps[0].shape == (2, 4, 6, 6)
    assert torch.all(maps[-1][..., ~prompt_mask(2, 2)] == 0)
    torch.testing.assert_close(maps[-1].sum(-1), torch.ones(2, 4, 6))


def test_errors_name_the_fix():
    model = InContextTransformer(3, max_points=4)
    t = _tasks(k=5, m=1)
    with pytest.raises(ValueError, match="larger max_points"):
        model(t.x_support, t.y_support, t.x_query)
    with pytest.raises(ValueError, match="x_dim=3"):
        model(t.x_support[..., :2], t.y_support, t.x_query[..., :2])
    with pytest.raises(ValueError, match="add a task dimension"):
        encode_prompt(t.x_support[0], t.y_support[0])
    with pytest.raises(ValueError, match="positions='rotary' is unknown"):
        InContextTransformer(3, positions="rotary")
    with pytest.raises(ValueError, match="multiple of heads"):
        InContextTransformer(3, d_model=10, heads=4)


def test_sinusoidal_table_shape_and_first_row():
    table = sinusoidal_table(5, 8)
    assert table.shape == (5, 8)
    torch.testing.assert_close(table[0, 0::2], torch.zeros(4))
    torch.testing.assert_close(table[0, 1::2], torch.ones(4))


def test_float64_models_read_float32_tasks():
    model = InContextTransformer(3, d_model=16, layers=1, heads=2, max_points=8).double()
    t = _tasks()
    assert model(t.x_support, t.y_support, t.x_query).dtype == torch.float64
