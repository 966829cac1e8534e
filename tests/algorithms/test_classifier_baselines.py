"""The fine-tuning and nearest-neighbour baselines on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from metacourse.algorithms import classifier_baselines as baselines
from metacourse.models.conv4 import Conv4
from metacourse.tasks.base import TaskBatch
from metacourse.tasks.episodes import ArrayImages, sample_batch, sample_episodes


class Features(nn.Module):
    """A body (flatten → linear) with a classification head, like Conv4's ``head``."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.body = nn.Linear(16, 8)
        self.head = nn.Linear(8, n_classes)

    def forward(self, x):
        features = self.body(x.flatten(1))
        return self.head(features) if self.head is not None else features


def _clusters(seed: int = 0) -> ArrayImages:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, 1, 16)) * 2
    return ArrayImages(torch.tensor(centres + 0.3 * rng.normal(size=(12, 10, 16)),
                                    dtype=torch.float32))


def test_pretraining_fits_the_training_classes():
    torch.manual_seed(0)
    data, rng = _clusters(), np.random.default_rng(0)
    model = Features(12)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = baselines.pretrain_step(model, optimizer, sample_batch(data, 64, rng))
    for _ in range(60):
        last = baselines.pretrain_step(model, optimizer, sample_batch(data, 64, rng))
    assert last["loss"] < 0.3 * first["loss"] and last["accuracy"] > 0.9


def test_nearest_neighbour_labels_a_copy_of_a_support_example_like_it():
    data = _clusters()
    tasks = sample_episodes(data, 4, 5, 2, 3, np.random.default_rng(1))
    copies = TaskBatch(tasks.x_support, tasks.y_support, tasks.x_support, tasks.y_support)
    model = Features(12)
    assert np.all(baselines.nearest_neighbour_accuracy(model, copies) == 1.0)
    assert baselines.nearest_neighbour_accuracy(model, tasks).shape == (4,)


def test_new_head_is_zero_and_the_body_is_copied():
    model = Conv4(4800, hidden=8)
    network = baselines.with_new_head(model, 5)
    assert network.head.out_features == 5 and torch.all(network.head.weight == 0)
    assert torch.equal(network.blocks[0].conv.weight, model.blocks[0].conv.weight)
    assert network.blocks[0].conv.weight is not model.blocks[0].conv.weight
    assert baselines.body(model)(torch.rand(3, 1, 28, 28)).shape == (3, 8)


def test_fine_tuning_learns_separable_tasks_and_the_step_size_is_chosen():
    torch.manual_seed(0)
    data = _clusters()
    tasks = sample_episodes(data, 6, 3, 3, 3, np.random.default_rng(2))
    model = Features(12)
    untrained = baselines.finetune_accuracy(model, tasks, lr=0.0, steps=5)
    assert np.allclose(untrained, 1 / 3)  # a zero head predicts class 0 for every query
    tuned = baselines.finetune_accuracy(model, tasks, lr=0.5, steps=20)
    assert tuned.mean() > 0.8
    assert baselines.choose_finetune_lr(model, tasks, (0.0, 0.5), 20) == 0.5
