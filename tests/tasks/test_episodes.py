"""The N-way K-shot episode sampler: labels, disjointness, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metacourse.tasks.episodes import ArrayImages, EpisodeSampler, sample_batch, sample_episodes

# image (c, i) is the number 100 c + i, so every sampled "image" says where it came from
IDS = ArrayImages(np.arange(30)[:, None] * 100 + np.arange(8)[None, :])


def test_shapes_and_labels_remapped_to_0_n_minus_1():
    tasks = sample_episodes(IDS, 7, 5, 2, 3, np.random.default_rng(0))
    assert tasks.x_support.shape == (7, 10) and tasks.x_query.shape == (7, 15)
    assert tasks.y_support.dtype == torch.int64
    for t in range(7):
        assert sorted(tasks.y_support[t].tolist()) == sorted(list(range(5)) * 2)
        assert sorted(tasks.y_query[t].tolist()) == sorted(list(range(5)) * 3)


def test_labels_name_the_drawn_classes_and_support_query_are_disjoint():
    tasks = sample_episodes(IDS, 20, 4, 3, 4, np.random.default_rng(1))
    classes = tasks.info["classes"]
    for t in range(20):
        assert len(set(classes[t])) == 4
        for x, y in ((tasks.x_support[t], tasks.y_support[t]), (tasks.x_query[t], tasks.y_query[t])):
            assert torch.equal(x // 100, torch.as_tensor(classes[t])[y])
        support, query = set(tasks.x_support[t].tolist()), set(tasks.x_query[t].tolist())
        assert len(support) == 12 and len(query) == 16 and not support & query


def test_same_seed_same_episodes_other_seed_other_episodes():
    a = sample_episodes(IDS, 3, 5, 1, 2, np.random.default_rng(7))
    b = sample_episodes(IDS, 3, 5, 1, 2, np.random.default_rng(7))
    c = sample_episodes(IDS, 3, 5, 1, 2, np.random.default_rng(8))
    assert torch.equal(a.x_support, b.x_support) and torch.equal(a.x_query, b.x_query)
    assert not torch.equal(a.x_support, c.x_support)


def test_every_class_and_drawing_gets_sampled():
    tasks = sample_episodes(IDS, 400, 5, 1, 1, np.random.default_rng(2))
    seen = torch.cat([tasks.x_support.flatten(), tasks.x_query.flatten()])
    assert set((seen // 100).tolist()) == set(range(30))
    assert set((seen % 100).tolist()) == set(range(8))


def test_sampler_object_matches_the_function_and_meta_train_signature():
    sampler = EpisodeSampler(IDS, n_way=3, k_shot=2, n_query=1)
    a = sampler(4, rng=np.random.default_rng(3))
    b = sample_episodes(IDS, 4, 3, 2, 1, np.random.default_rng(3))
    assert torch.equal(a.x_support, b.x_support) and len(a) == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"n_way": 31, "k_shot": 1, "n_query": 1}, "n_way=31 but the split has only 30 classes"),
    ({"n_way": 5, "k_shot": 5, "n_query": 4}, r"k_shot \+ n_query = 5 \+ 4 = 9 but each class"),
    ({"n_way": 5, "k_shot": 0, "n_query": 1}, "k_shot must be a positive integer"),
])
def test_impossible_shapes_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_episodes(IDS, 1, rng=np.random.default_rng(0), **kwargs)
    with pytest.raises(ValueError, match=message):
        EpisodeSampler(IDS, **kwargs)


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match="default_rng"):
        sample_episodes(IDS, 1, 2, 1, 1, rng=0)


def test_supervised_batches_carry_dataset_classes():
    x, y = sample_batch(IDS, 64, np.random.default_rng(4))
    assert x.shape == (64,) and torch.equal(x // 100, y)
