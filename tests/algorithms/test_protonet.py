"""Prototypical Networks against a hand computation, batched against per task, and a learning test."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metacourse.algorithms import protonet
from metacourse.functional import params_of
from metacourse.tasks.base import Task, stack_tasks
from metacourse.tasks.episodes import ArrayImages, sample_episodes


def _task(seed: int = 0) -> Task:
    g = torch.Generator().manual_seed(seed)
    x_support = torch.randn(6, 4, generator=g, dtype=torch.float64)
    x_query = torch.randn(5, 4, generator=g, dtype=torch.float64)
    return Task(x_support, torch.tensor([0, 1, 2, 0, 1, 2]), x_query, torch.tensor([2, 0, 1, 1, 0]))


def _by_hand(weight: np.ndarray, task: Task, distance: str) -> float:
    support = task.x_support.numpy() @ weight.T
    query = task.x_query.numpy() @ weight.T
    labels = task.y_support.numpy()
    centres = np.stack([support[labels == k].mean(0) for k in range(3)])
    total = 0.0
    for q, y in zip(query, task.y_query.numpy()):
        if distance == "euclidean":
            scores = np.array([-np.sum((q - c) ** 2) for c in centres])
        else:
            scores = np.array([q @ c / np.linalg.norm(q) / np.linalg.norm(c) for c in centres])
        total += -(scores[y] - np.log(np.exp(scores).sum()))
    return total / len(query)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_task_loss_equals_a_hand_computation(distance):
    model = nn.Linear(4, 3, bias=False).double()
    task = _task()
    loss = protonet.task_loss(model, params_of(model), task, protonet.Config(distance))
    expected = _by_hand(model.weight.detach().numpy(), task, distance)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_prototypes_are_class_means_whatever_the_order():
    embeddings = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [0.0, 0.0]])
    labels = torch.tensor([1, 0, 1, 0])
    expected = torch.tensor([[1.5, 1.0], [3.0, 2.0]])
    assert torch.allclose(protonet.prototypes(embeddings, labels), expected)


def test_euclidean_scores_are_a_linear_classifier():
    # −‖f − c_k‖² = 2 c_k·f − ‖c_k‖² − ‖f‖², and the last term is the same for every class
    query, centres = torch.randn(4, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    logits = protonet.class_logits(query, centres)
    linear = 2 * query @ centres.T - (centres**2).sum(-1)
    assert torch.allclose(torch.log_softmax(logits, -1), torch.log_softmax(linear, -1))


def test_batched_tasks_equal_one_task_at_a_time():
    model = nn.Sequential(nn.Linear(4, 3)).double()
    tasks = stack_tasks([_task(s) for s in range(3)])
    cfg = protonet.Config()
    batched = protonet.task_loss(model, params_of(model), tasks, cfg)
    single = torch.stack([protonet.task_loss(model, params_of(model), tasks[i], cfg)
                          for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-12)
    assert protonet.meta_loss(model, params_of(model), tasks, cfg).item() == pytest.approx(
        single.mean().item())


def test_meta_training_learns_an_embedding_for_noisy_clusters():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 1, 16)) * 0.6
    noise = rng.normal(size=(40, 10, 16))
    noise[..., :8] *= 4.0  # half the dimensions are loud noise the embedding must learn to ignore
    images = ArrayImages(torch.tensor(centres + noise, dtype=torch.float32))
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    cfg = protonet.Config()

    def held_out_accuracy() -> float:
        tasks = sample_episodes(images, 100, 5, 1, 5, np.random.default_rng(99))
        with torch.no_grad():
            logits = protonet.predict(model, params_of(model), tasks, cfg)
        return (logits.argmax(-1) == tasks.y_query).float().mean().item()

    before = held_out_accuracy()
    for _ in range(150):
        protonet.meta_step(model, optimizer, sample_episodes(images, 4, 5, 1, 5, rng), cfg)
    assert held_out_accuracy() > before + 0.15


def test_unknown_distance_is_rejected():
    with pytest.raises(ValueError, match="distance='manhattan'"):
        protonet.Config("manhattan")
