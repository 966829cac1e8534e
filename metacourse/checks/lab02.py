"""Public checks of Lab 2, episodes and Prototypical Networks (``labs/lab02_episodes_protonets.ipynb``).

- :func:`check_sample_episode` — ``my_sample_episode(dataset, n_way, k_shot, n_query, rng)`` returning
  a ``Task``: shapes, labels 0..N-1 with K (resp. n_query) of each, every label one class of the
  dataset, support and query disjoint, reproducible from the seed, different across seeds, and
  covering all classes (behavioural checks on a data set whose "images" say where they come from).
- :func:`check_prototypes` — ``my_prototypes(embeddings, labels, n_way)``, eq. (1), against
  ``protonet.prototypes``, with the labels in any order.
- :func:`check_protonet_loss` — ``my_protonet_loss(model, params, task)``, eqs. (1)–(3): value and
  gradient against ``protonet.task_loss``; a missing square, a wrong sign of the distance, and
  scoring the support set instead of the query set are diagnosed.
- :func:`check_protonet_learns` — ``my_meta_step(model, optimizer, tasks)``: a few hundred steps
  on noisy synthetic clusters must raise the held-out 5-way 1-shot accuracy well above chance.

Numeric checks run in float64 on fixed seeds (a correct implementation agrees to ~1e-10).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..algorithms import protonet
from ..functional import cross_entropy_loss, params_of
from ..tasks.base import Task
from ..tasks.episodes import ArrayImages, sample_episodes
from . import assert_close, run_checks

__all__ = ["check_sample_episode", "check_prototypes", "check_protonet_loss",
           "check_protonet_learns", "id_images", "cluster_images"]

_ATOL, _RTOL = 1e-9, 1e-7


def id_images(n_classes: int = 30, n_per_class: int = 8) -> ArrayImages:
    """A data set whose image (c, i) is the number 100·c + i: every sample says where it came from."""
    ids = np.arange(n_classes)[:, None] * 100 + np.arange(n_per_class)[None, :]
    return ArrayImages(ids)


def cluster_images(seed: int = 0, n_classes: int = 40) -> ArrayImages:
    """Noisy Gaussian clusters in 16-d, half the dimensions loud noise a metric must learn to ignore."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, 1, 16)) * 0.6
    noise = rng.normal(size=(n_classes, 10, 16))
    noise[..., :8] *= 4.0
    return ArrayImages(torch.tensor(centres + noise, dtype=torch.float32))


# ---------------------------------------------------------------------------------------------
# Exercise 2.1: the episode sampler


def _episode(sample: Callable, dataset, n_way, k_shot, n_query, seed) -> Task:
    task = sample(dataset, n_way, k_shot, n_query, np.random.default_rng(seed))
    if not isinstance(task, Task):
        raise AssertionError(f"my_sample_episode should return a Task, got {type(task).__name__}"
                             + ("; did you forget to `return` it?" if task is None else ""))
    return task


def _shapes_and_labels(sample, dataset) -> None:
    task = _episode(sample, dataset, 5, 2, 3, 0)
    shapes = tuple(tuple(t.shape) for t in (task.x_support, task.y_support, task.x_query,
                                            task.y_query))
    if shapes != ((10,), (10,), (15,), (15,)):
        raise AssertionError(f"5-way 2-shot with 3 queries needs 10 support and 15 query "
                             f"examples; got shapes {shapes}")
    for name, labels, count in (("y_support", task.y_support, 2), ("y_query", task.y_query, 3)):
        if sorted(labels.tolist()) != sorted(list(range(5)) * count):
            raise AssertionError(f"{name} should hold each label 0..4 exactly {count} times (labels "
                                 f"are relabelled within the task), got {labels.tolist()}")


def _one_class_per_label_and_disjoint(sample, dataset) -> None:
    for seed in range(5):
        task = _episode(sample, dataset, 4, 3, 2, seed)
        classes = {}
        for x, y in ((task.x_support, task.y_support), (task.x_query, task.y_query)):
            for image, label in zip(x.tolist(), y.tolist()):
                classes.setdefault(label, set()).add(int(image) // 100)
        if any(len(c) != 1 for c in classes.values()) or len(set().union(*classes.values())) != 4:
            raise AssertionError("each label must name one class of the data set, and different "
                                 f"labels different classes; label → classes seen: {classes}")
        support, query = set(task.x_support.tolist()), set(task.x_query.tolist())
        if len(support) != 12 or len(query) != 8 or support & query:
            raise AssertionError("support and query images must be different drawings (sample "
                                 "k_shot + n_query drawings per class without replacement, then "
                                 "split them)")


def _seeded(sample, dataset) -> None:
    a, b = (_episode(sample, dataset, 5, 1, 2, 7) for _ in range(2))
    if not (torch.equal(a.x_support, b.x_support) and torch.equal(a.x_query, b.x_query)):
        raise AssertionError("the same seed gave different episodes: draw every random number "
                             "from the rng argument (never np.random.* or random.*)")
    others = [_episode(sample, dataset, 5, 1, 2, s).x_support for s in range(8, 12)]
    if all(torch.equal(a.x_support, o) for o in others):
        raise AssertionError("different seeds gave the same episode: use the rng argument")


def _covers_everything(sample, dataset) -> None:
    seen = torch.cat([torch.cat([t.x_support, t.x_query]) for t in
                      (_episode(sample, dataset, 5, 1, 1, s) for s in range(300))])
    classes, drawings = set((seen // 100).tolist()), set((seen % 100).tolist())
    if len(classes) != dataset.n_classes or len(drawings) != dataset.n_per_class:
        raise AssertionError(f"300 episodes used {len(classes)}/{dataset.n_classes} classes and "
                             f"{len(drawings)}/{dataset.n_per_class} drawings: sample over all")


def check_sample_episode(sample: Callable, *, label: str = "lab02/sample_episode") -> None:
    """Exercise 2.1: behavioural checks of ``my_sample_episode`` on :func:`id_images`."""
    __tracebackhide__ = True
    dataset = id_images()
    run_checks(label, [
        ("shapes, and labels 0..N-1 with K (query: n_query) of each",
         lambda: _shapes_and_labels(sample, dataset)),
        ("one class per label; support and query disjoint",
         lambda: _one_class_per_label_and_disjoint(sample, dataset)),
        ("reproducible from the seed, different across seeds", lambda: _seeded(sample, dataset)),
        ("every class and drawing can be drawn", lambda: _covers_everything(sample, dataset)),
    ])


# ---------------------------------------------------------------------------------------------
# Exercise 2.2 and 2.3: prototypes and the prototypical loss


def _random_task(seed: int, n_way: int = 4, k_shot: int = 3, n_query: int = 2) -> Task:
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_way * k_shot, generator=g)
    y_support = torch.arange(n_way).repeat_interleave(k_shot)[order]
    return Task(torch.randn(n_way * k_shot, 6, generator=g, dtype=torch.float64), y_support,
                torch.randn(n_way * n_query, 6, generator=g, dtype=torch.float64),
                torch.arange(n_way).repeat(n_query))


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 5)).double()


def check_prototypes(my_prototypes: Callable, *, seed: int = 0,
                     label: str = "lab02/prototypes") -> None:
    """Exercise 2.2: eq. (1) against ``protonet.prototypes`` (shuffled labels, 1 and 3 shots)."""
    __tracebackhide__ = True

    def compare(k_shot: int) -> None:
        task = _random_task(seed + k_shot, k_shot=k_shot)
        got = my_prototypes(task.x_support, task.y_support, 4)
        assert_close(got, protonet.prototypes(task.x_support, task.y_support, 4), atol=_ATOL,
                     rtol=_RTOL, what=f"prototypes of a 4-way {k_shot}-shot support set")

    run_checks(label, [("1-shot: the prototypes are the support embeddings", lambda: compare(1)),
                       ("3-shot, labels in random order: class means", lambda: compare(3))])


def _loss_value(my_loss, model, task) -> None:
    params = params_of(model)
    got = my_loss(model, params, task)
    if not isinstance(got, Tensor) or got.dim() != 0:
        raise AssertionError("my_protonet_loss should return a scalar tensor (the mean over the "
                             f"queries), got {got if not isinstance(got, Tensor) else got.shape}")
    want = protonet.task_loss(model, params, task, protonet.Config())
    if not np.isclose(got.item(), want.item(), rtol=1e-7):
        _diagnose(got.item(), model, params, task)
    assert_close(got, want, atol=_ATOL, rtol=_RTOL, what="prototypical loss")


def _diagnose(got: float, model, params, task) -> None:
    support, query = model(task.x_support), model(task.x_query)
    centres = protonet.prototypes(support, task.y_support)
    distances = (query.unsqueeze(-2) - centres).pow(2).sum(-1)
    wrong = {"the distance is not squared (use ‖f(x) − c_k‖², eq. 2)": -distances.sqrt(),
             "the logits are +distance; they must be −distance (near = likely)": distances}
    for message, logits in wrong.items():
        if np.isclose(got, cross_entropy_loss(logits, task.y_query).item(), rtol=1e-7):
            raise AssertionError(message)
    on_support = protonet.class_logits(support, centres)
    if np.isclose(got, cross_entropy_loss(on_support, task.y_support).item(), rtol=1e-7):
        raise AssertionError("the loss is computed on the support set; score the QUERY set (eq. 3)")


def _loss_gradient(my_loss, model, task) -> None:
    params = params_of(model)
    got = torch.autograd.grad(my_loss(model, params, task), list(params.values()))
    want = torch.autograd.grad(protonet.task_loss(model, params, task, protonet.Config()),
                               list(params.values()))
    assert_close(dict(zip(params, got)), dict(zip(params, want)), atol=_ATOL, rtol=_RTOL,
                 what="gradient of the prototypical loss with respect to θ")


def check_protonet_loss(my_loss: Callable, *, seed: int = 0,
                        label: str = "lab02/protonet_loss") -> None:
    """Exercise 2.3: value and gradient against ``protonet.task_loss`` on random tasks."""
    __tracebackhide__ = True
    model = _model(seed)
    run_checks(label, [
        ("value, 4-way 1-shot", lambda: _loss_value(my_loss, model, _random_task(seed, k_shot=1))),
        ("value, 4-way 3-shot", lambda: _loss_value(my_loss, model, _random_task(seed + 1))),
        ("gradient with respect to θ", lambda: _loss_gradient(my_loss, model, _random_task(seed + 2))),
    ])


# ---------------------------------------------------------------------------------------------
# Exercise 2.4: training with it


def _held_out_accuracy(model: nn.Module, data: ArrayImages) -> float:
    tasks = sample_episodes(data, 200, 5, 1, 5, np.random.default_rng(2024))
    with torch.no_grad():
        logits = protonet.predict(model, params_of(model), tasks, protonet.Config())
    return (logits.argmax(-1) == tasks.y_query).float().mean().item()


def check_protonet_learns(my_meta_step: Callable, *, steps: int = 200, seed: int = 0,
                          label: str = "lab02/learns") -> None:
    """Exercise 2.4: ``steps`` of ``my_meta_step`` on noisy clusters lift 5-way 1-shot accuracy."""
    __tracebackhide__ = True
    data = cluster_images(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    before = _held_out_accuracy(model, data)
    rng = np.random.default_rng(seed)

    def learns() -> None:
        for _ in range(steps):
            my_meta_step(model, optimizer, sample_episodes(data, 4, 5, 1, 5, rng))
        after = _held_out_accuracy(model, data)
        if after < before + 0.15:
            raise AssertionError(f"held-out accuracy went from {before:.2f} to {after:.2f} after "
                                 f"{steps} steps; expected a gain of at least 0.15")

    run_checks(label, [(f"{steps} meta-steps raise held-out 5-way 1-shot accuracy", learns)])
