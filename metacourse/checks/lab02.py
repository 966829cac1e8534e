"""Public checks of Lab 2, episodes and Prototypical Networks (``labs/lab02_episodes_protonets.ipynb``).

- :func:`check_sample_episode` — ``my_sample_episode(dataset, n_way, k_shot, n_query, rng)`` returning
  a ``Task``: shapes, labels 0..N-1 with K (resp. n_query) of each, every label one class of the
  dataset, support and query disjoint, reproducible from the seed, different across seeds, and
  covering all classes (behavioural checks on a data set whose "images" say where they come from).
  Data sets with exactly ``n_way`` classes and exactly ``k_shot + n_query`` drawings make draws
  with replacement collide, so they are named; so are labels that do not follow the images
  (``repeat`` for ``repeat_interleave``) and a query set drawn apart from the support set.
- :func:`check_prototypes` — ``my_prototypes(embeddings, labels, n_way)``, eq. (1), against
  ``protonet.prototypes``, with the labels in any order; a sum instead of a mean and labels
  assumed grouped by class are named.
- :func:`check_protonet_loss` — ``my_protonet_loss(model, params, task)``, eqs. (1)–(3): value and
  gradient against ``protonet.task_loss``; a missing square, a wrong sign of the distance,
  scoring the support set instead of the query set, a sum over the queries, probabilities fed to
  the cross-entropy and detached prototypes are diagnosed.
- :func:`check_meta_step` — ``my_meta_step(model, optimizer, tasks)``, eq. (4): one SGD step from
  stale gradients must move θ like ``protonet.meta_step`` and return ``{"meta_loss": float}``; a
  missing ``zero_grad``, ``step`` or ``backward``, a sum over tasks, one task only and a tensor
  returned are named.
- :func:`check_protonet_learns` — ``my_meta_step(model, optimizer, tasks)``: a few hundred steps
  on noisy synthetic clusters must raise the held-out 5-way 1-shot accuracy well above chance.
- :func:`cdist_protonet_loss` — Lab 2's planted bug: a short loss with one mistake to find.

Numeric checks run in float64 on fixed seeds (a correct implementation agrees to ~1e-10).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..algorithms import protonet
from ..functional import cross_entropy_loss, forward, params_of
from ..tasks.base import Task, stack_tasks
from ..tasks.episodes import ArrayImages, sample_episodes
from . import assert_close, run_checks
from .lab04 import _close  # the same float64 tolerances (1e-9, 1e-7)

__all__ = ["check_sample_episode", "check_prototypes", "check_protonet_loss", "check_meta_step",
           "check_protonet_learns", "id_images", "cluster_images", "cdist_protonet_loss"]

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
        _one_class_per_label(classes)
        _distinct_classes(classes)
        _distinct_drawings(task)


def _one_class_per_label(classes: dict) -> None:
    if any(len(c) != 1 for c in classes.values()):
        raise AssertionError(
            "each label must name one class of the data set, but some label holds images of "
            f"several classes (label → classes seen: {classes}): the labels must follow the "
            "images. If you shuffle or reorder images, reorder their labels the same way; for "
            "images grouped class by class, labels.repeat_interleave(k_shot), not "
            "labels.repeat(k_shot)")


def _distinct_classes(classes: dict) -> None:
    drawn = [next(iter(c)) for c in classes.values()]
    if len(set(drawn)) != len(drawn):
        raise AssertionError(
            f"two labels got the same class (label → class: {classes}): the classes were drawn "
            "WITH replacement; draw n_way different classes, rng.choice(dataset.n_classes, n_way, "
            "replace=False)")


def _distinct_drawings(task: Task) -> None:
    support, query = task.x_support.tolist(), task.x_query.tolist()
    if len(set(support)) != len(support) or len(set(query)) != len(query):
        raise AssertionError(
            "the same drawing appears twice in the support (or the query) set: the drawings were "
            "drawn WITH replacement; take k_shot + n_query different drawings of each class, e.g. "
            "rng.permutation(dataset.n_per_class)[:k_shot + n_query], then split them")
    if set(support) & set(query):
        raise AssertionError(
            "a query image is also a support image: the query set leaks the support set (it must "
            "test drawings the prototypes have not seen). Draw k_shot + n_query different "
            "drawings of each class at once, then split them, first k_shot → support")


def _without_replacement(sample) -> None:
    """Data sets where any draw with replacement collides: n_way of exactly n_way classes, and
    k_shot + n_query of exactly that many drawings."""
    for seed in range(20):
        task = _episode(sample, id_images(5, 8), 5, 1, 1, seed)
        classes = {}
        for image, label in zip(torch.cat([task.x_support, task.x_query]).tolist(),
                                torch.cat([task.y_support, task.y_query]).tolist()):
            classes.setdefault(label, set()).add(int(image) // 100)
        _one_class_per_label(classes)
        _distinct_classes(classes)
        _distinct_drawings(_episode(sample, id_images(12, 4), 3, 2, 2, seed))


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
        ("n_way different classes and k_shot + n_query different drawings, even when that is "
         "all there is", lambda: _without_replacement(sample)),
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
        try:
            got = my_prototypes(task.x_support, task.y_support, 4)
        except RuntimeError as error:
            if "scalar type" not in str(error) and "dtype" not in str(error):
                raise
            raise AssertionError(
                f"RuntimeError: {error}. The embeddings here are float64: a tensor you create "
                "must take their dtype (torch.zeros(..., dtype=embeddings.dtype), or "
                "torch.zeros_like)") from None
        want = protonet.prototypes(task.x_support, task.y_support, 4)
        if isinstance(got, Tensor) and got.shape == want.shape and not _close(got, want):
            _diagnose_prototypes(got, task, k_shot)
        if isinstance(got, Tensor) and tuple(got.shape) == (4, k_shot):
            raise AssertionError(f"prototypes have shape {tuple(got.shape)}: the mean was taken "
                                 "over the embedding dimension; average over the examples of "
                                 "each class, .mean(dim=0) of embeddings[labels == k]")
        assert_close(got, want, atol=_ATOL, rtol=_RTOL,
                     what=f"prototypes of a 4-way {k_shot}-shot support set")

    run_checks(label, [("1-shot: the prototypes are the support embeddings", lambda: compare(1)),
                       ("3-shot, labels in random order: class means", lambda: compare(3))])


def _diagnose_prototypes(got: Tensor, task: Task, k_shot: int) -> None:
    x, y = task.x_support, task.y_support
    sums = torch.stack([x[y == k].sum(dim=0) for k in range(4)])
    grouped = x.reshape(4, k_shot, -1).mean(dim=1)      # as if the labels were 0,0,0,1,1,1,...
    tiled = x.reshape(k_shot, 4, -1).mean(dim=0)        # as if the labels were 0,1,2,3,0,1,...
    if _close(got, sums):
        raise AssertionError(f"your prototypes are {k_shot} times too large: the SUM of each "
                             "class's embeddings; eq. (1) is the mean, .mean(dim=0)")
    if _close(got, grouped) or _close(got, tiled):
        raise AssertionError("your prototypes assume the support set is sorted by label (a "
                             "reshape); the labels come in any order: average the rows of each "
                             "class, embeddings[labels == k].mean(dim=0)")


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
    logits = -distances
    wrong = {
        "the distance is not squared: the logits are −‖f(x) − c_k‖², eq. (2) (torch.cdist "
        "gives ‖f(x) − c_k‖ without the square)": (-distances.sqrt(), task.y_query, "mean"),
        "the logits are +distance; they must be −distance (near = likely)":
            (distances, task.y_query, "mean"),
        "the loss is computed on the support set; score the QUERY set (eq. 3)":
            (protonet.class_logits(support, centres), task.y_support, "mean"),
        f"the loss is the SUM over the {len(task.y_query)} queries; eq. (3) averages them "
        "(cross_entropy_loss already returns the mean)": (logits, task.y_query, "sum"),
        "cross_entropy_loss got probabilities: it takes the logits −‖f(x) − c_k‖² themselves "
        "(it applies the log-softmax)": (logits.softmax(-1), task.y_query, "mean"),
        "the log-softmax is missing: nll_loss takes LOG-probabilities; use "
        "cross_entropy_loss(logits, labels), which applies the log-softmax (eq. 2)":
            (logits, task.y_query, "nll"),
    }
    for message, (scores, labels, reduction) in wrong.items():
        if reduction == "nll":
            value = nn.functional.nll_loss(scores, labels).item()
        else:
            value = nn.functional.cross_entropy(scores, labels, reduction=reduction).item()
        if np.isclose(got, value, rtol=1e-7):
            raise AssertionError(message)


def _loss_gradient(my_loss, model, task) -> None:
    params = params_of(model)
    got = torch.autograd.grad(my_loss(model, params, task), list(params.values()))
    want = torch.autograd.grad(protonet.task_loss(model, params, task, protonet.Config()),
                               list(params.values()))
    got, want = dict(zip(params, got)), dict(zip(params, want))
    if not _close(got, want):
        support, query = model(task.x_support), model(task.x_query)
        centres = protonet.prototypes(support, task.y_support).detach()
        detached = torch.autograd.grad(
            cross_entropy_loss(protonet.class_logits(query, centres), task.y_query),
            list(params.values()))
        if _close(got, dict(zip(params, detached))):
            raise AssertionError("the gradient does not flow through the prototypes (detached, or "
                                 "computed under torch.no_grad()): the support embeddings must "
                                 "be trained too, so keep c_k in the graph")
    assert_close(got, want, atol=_ATOL, rtol=_RTOL,
                 what="gradient of the prototypical loss with respect to θ")


def cdist_protonet_loss(model: nn.Module, params, task: Task) -> Tensor:
    """Lab 2's planted bug: a prototypical loss written with ``torch.cdist``. One line is wrong."""
    support = forward(model, params, task.x_support)
    query = forward(model, params, task.x_query)
    n_way = int(task.y_support.max()) + 1
    centres = torch.stack([support[task.y_support == k].mean(dim=0) for k in range(n_way)])
    logits = -torch.cdist(query, centres)
    return cross_entropy_loss(logits, task.y_query)


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
# Exercise 2.4: the meta-step, and training with it

_STALE = 1.0  # a stale gradient planted on every parameter before my_meta_step runs
_LR = 0.1


def _step_problem(seed: int):
    """A float64 model whose parameters carry a stale gradient, its SGD optimizer, 3 tasks."""
    model = _model(seed)
    for p in model.parameters():
        p.grad = torch.full_like(p, _STALE)  # a step that forgets zero_grad() shows it
    tasks = stack_tasks([_random_task(seed + i, k_shot=2) for i in range(3)])
    return model, torch.optim.SGD(model.parameters(), lr=_LR), tasks


def _sgd(theta: dict, loss: Tensor, scale: float = 1.0) -> dict:
    grads = torch.autograd.grad(loss, list(theta.values()), retain_graph=True)
    return {n: t.detach() - _LR * scale * g for (n, t), g in zip(theta.items(), grads)}


def _task_mistakes(n_tasks: int) -> dict[str, Callable[[Tensor], Tensor]]:
    """The usual wrong reductions of the per-task losses, each with its message."""
    return {f"the SUM of the {n_tasks} task losses (or a backward() per task, whose gradients "
            "add up in .grad); eq. (4) is their mean: backward the mean once": lambda t: t.sum(),
            "the loss of the first task only: average my_protonet_loss over every task of the "
            "batch, tasks[i] for i in range(len(tasks))": lambda t: t[0]}


def _meta_step_returns(my_meta_step, seed: int) -> None:
    model, optimizer, tasks = _step_problem(seed)
    with torch.no_grad():
        losses = protonet.task_loss(model, params_of(model), tasks, protonet.Config())
    metrics = my_meta_step(model, optimizer, tasks)
    if isinstance(metrics, Tensor):
        raise AssertionError(
            "my_meta_step returned a tensor: return a dict with a float, {'meta_loss': "
            "loss.item()} (the training cell plots these numbers, and a tensor would also keep "
            "the whole graph alive)")
    if not isinstance(metrics, dict) or "meta_loss" not in metrics:
        raise AssertionError("my_meta_step should return {'meta_loss': loss.item()}, got "
                             f"{metrics!r}" + ("; did you forget to `return` it?"
                                               if metrics is None else ""))
    if not isinstance(metrics["meta_loss"], float):
        raise AssertionError(f"metrics['meta_loss'] should be a Python float (loss.item()), got "
                             f"{type(metrics['meta_loss']).__name__}")
    got = metrics["meta_loss"]
    for message, value in _task_mistakes(len(tasks)).items():
        if np.isclose(got, value(losses).item(), rtol=1e-7, atol=0):
            raise AssertionError(f"the returned meta_loss is {message}")
    assert_close(got, losses.mean().item(), atol=_ATOL, rtol=_RTOL,
                 what="the returned meta_loss (the mean query loss over the tasks, before the "
                      "update)")


def _meta_step_update(my_meta_step, seed: int) -> None:
    model, optimizer, tasks = _step_problem(seed)
    theta = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}
    cfg = protonet.Config()
    losses = [protonet.task_loss(model, theta, tasks[i], cfg) for i in range(len(tasks))]
    want = _sgd(theta, torch.stack(losses).mean())
    my_meta_step(model, optimizer, tasks)
    after = {n: p.detach() for n, p in model.named_parameters()}
    if _close(after, want):
        return
    if _close(after, {n: t.detach() for n, t in theta.items()}):
        raise AssertionError("my_meta_step did not change θ: call loss.backward() and then "
                             "optimizer.step(), in that order after optimizer.zero_grad()")
    if _close(after, {n: w - _LR * _STALE for n, w in want.items()}):
        raise AssertionError("the update also holds the gradient left over from before the call: "
                             "call optimizer.zero_grad() before loss.backward() (gradients "
                             "accumulate in .grad)")
    for message, value in _task_mistakes(len(tasks)).items():
        if _close(after, _sgd(theta, value(torch.stack(losses)))):
            raise AssertionError(f"θ moved by one SGD step on {message}")
    assert_close(after, want, atol=_ATOL, rtol=_RTOL,
                 what="θ after one step of SGD(lr=0.1) (compared with protonet.meta_step; if "
                      "check_protonet_loss passes, the difference is in the step)")


def check_meta_step(my_meta_step: Callable, *, seed: int = 0,
                    label: str = "lab02/meta_step") -> None:
    """Exercise 2.4, numerically: one call of ``my_meta_step`` with ``SGD(lr=0.1)`` on a float64
    model whose parameters hold a stale gradient, against one SGD step on ``protonet.meta_loss``."""
    __tracebackhide__ = True
    run_checks(label, [
        ("returns {'meta_loss': float}, the loss before the update",
         lambda: _meta_step_returns(my_meta_step, seed)),
        ("moves θ like one SGD step on the mean loss (zero_grad first)",
         lambda: _meta_step_update(my_meta_step, seed)),
    ])


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
