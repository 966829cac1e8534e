"""Public checks of Lab 4b, MAML on Omniglot (``labs/lab04_maml_omniglot.ipynb``).

Each check compares a student's function with the library's reference and prints one verdict
line (``lab04_omniglot/adapt: 5/5 checks passed``):

- :func:`check_adapt` — ``my_adapt(model, params, x_support, y_support, inner_lr, inner_steps,
  first_order)``: MAML's inner loop with the cross-entropy loss, against
  :func:`metacourse.algorithms.maml.adapt` (``loss="cross_entropy"``): adapted values, the
  second-order meta-gradient through a convolutional network with batch normalisation, the
  first-order gradient, and the caller's ``params`` left alone. Forgetting ``create_graph`` (or
  leaving it on for first order) is diagnosed.
- :func:`check_query_accuracy` — ``my_query_accuracy(model, params, task, inner_lr, inner_steps)``:
  the fraction of a task's query images labelled correctly after adaptation, against
  :func:`metacourse.evaluate.adaptation_curve`. Scoring the support set, or skipping the
  adaptation, is diagnosed.
- :func:`check_meta_step` — ``my_meta_step(model, optimizer, tasks, inner_lr, inner_steps,
  first_order)``: one outer update against :func:`metacourse.algorithms.maml.meta_step`.

The problems are small and need no data set: a float64 Conv4 with 8 filters per layer and random
14×14 "images", drawn from fixed seeds, so a correct implementation agrees to round-off (about 1e-10)
and verdicts never flicker.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..algorithms import maml
from ..evaluate import adaptation_curve
from ..functional import Params, accuracy, forward
from ..models.conv4 import Conv4
from ..tasks.base import TaskBatch
from . import assert_close, lab04, run_checks

__all__ = ["check_adapt", "check_query_accuracy", "check_meta_step"]

_ATOL, _RTOL = 1e-9, 1e-7  # float64: a correct implementation agrees to round-off
_SIZE = 14  # side of the random images: Conv4 takes any size, and 14×14 keeps the checks fast


# ---------------------------------------------------------------------------------------------
# Random problems: a small float64 Conv4 and random 5-way tasks of 14×14 "images"


def _model_and_params(seed: int, ways: int = 5) -> tuple[nn.Module, Params]:
    """A float64 Conv4 with 8 filters per block and its own parameters as leaves (θ)."""
    generator = torch.Generator().manual_seed(seed)
    model = Conv4(ways, hidden=8, pooling="stride").double()
    params = {}
    for name, p in model.named_parameters():
        scale = 0.3 if p.dim() > 1 else 0.1
        value = torch.randn(p.shape, generator=generator, dtype=torch.float64) * scale
        if name.endswith("weight") and p.dim() == 1:  # batch-norm scales around 1
            value = 1 + value
        params[name] = value.requires_grad_()
    with torch.no_grad():  # the model holds θ too, for references that read it (adaptation_curve)
        for name, p in model.named_parameters():
            p.copy_(params[name])
    return model, params


def _tasks(seed: int, n_tasks: int, ways: int = 5, shots: int = 1, queries: int = 3) -> TaskBatch:
    """Random tasks: each class has a random prototype image, its examples are noisy copies."""
    rng = np.random.default_rng([seed, 2017])
    prototypes = rng.random((n_tasks, ways, 1, _SIZE, _SIZE))

    def draw(per_class: int) -> tuple[Tensor, Tensor]:
        noise = 0.5 * rng.standard_normal((n_tasks, ways, per_class, 1, _SIZE, _SIZE))
        images = (prototypes[:, :, None] + noise).reshape(n_tasks, ways * per_class, 1, _SIZE, _SIZE)
        labels = np.repeat(np.arange(ways), per_class)[None].repeat(n_tasks, 0)
        return torch.tensor(images), torch.tensor(labels)

    (xs, ys), (xq, yq) = draw(shots), draw(queries)
    return TaskBatch(xs, ys, xq, yq)


def _reference_adapt(model, params, task, inner_lr, inner_steps, first_order) -> Params:
    return lab04._reference_adapt(model, params, task, inner_lr, inner_steps, first_order,
                                  loss="cross_entropy")


# ---------------------------------------------------------------------------------------------
# Exercise 4.4: adapt with the cross-entropy loss

def check_adapt(adapt: Callable, *, seed: int = 0, label: str = "lab04_omniglot/adapt") -> None:
    """Exercise 4.4: ``adapt`` against ``maml.adapt(loss="cross_entropy")`` on random 5-way tasks.

    Five checks: adapted values after one first-order step and after two second-order steps; the
    second-order meta-gradient through Conv4 and its batch normalisation; the first-order
    gradient; the caller's ``params`` left unchanged.
    """
    __tracebackhide__ = True
    model, params = _model_and_params(seed)
    checks = lab04.adapt_checks(adapt, model, params, _tasks(seed, 3), inner_lr=0.4,  # MAML's
                                steps=(2, 1, 2), loss="cross_entropy")  # Omniglot step size
    run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 4.5: query accuracy after adaptation


def _call_accuracy(query_accuracy, model, params, task, inner_lr, inner_steps) -> float:
    value = query_accuracy(model, params, task, inner_lr, inner_steps)
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise AssertionError(
                f"my_query_accuracy should return one number for one task, got a tensor of shape "
                f"{tuple(value.shape)}: average over the query images with .mean()")
        value = value.item()
    if not isinstance(value, (int, float)):
        raise AssertionError(
            f"my_query_accuracy should return a number between 0 and 1, got {type(value).__name__}"
            + ("; did you forget to `return` it?" if value is None else ""))
    return float(value)


def _accuracies(query_accuracy, model, params, tasks, inner_lr, inner_steps) -> None:
    want = adaptation_curve(model, tasks, (inner_steps,), inner_lr, loss="cross_entropy",
                            metric="accuracy", chunk_size=1)[inner_steps]
    got = np.array([_call_accuracy(query_accuracy, model, dict(params), tasks[i], inner_lr,
                                   inner_steps) for i in range(len(tasks))])
    if np.allclose(got, want):
        return
    if np.all((got >= 0) & (got <= 100)) and np.any(got > 1):
        raise AssertionError(f"your accuracies {got.round(3)} look like percentages: return the "
                             "fraction of query images labelled correctly, between 0 and 1")
    with torch.no_grad():
        theta = {n: p.detach() for n, p in params.items()}
        unadapted = np.array([accuracy(forward(model, theta, t.x_query), t.y_query).item()
                              for t in (tasks[i] for i in range(len(tasks)))])
    support = []
    for i in range(len(tasks)):
        task = tasks[i]
        with torch.enable_grad():
            phi = _reference_adapt(model, {n: p.detach().requires_grad_() for n, p in
                                           params.items()}, task, inner_lr, inner_steps, True)
        with torch.no_grad():
            support.append(accuracy(forward(model, phi, task.x_support), task.y_support).item())
    if np.allclose(got, support) and not np.allclose(support, want):
        raise AssertionError(f"your accuracies {got.round(3)} are those on the SUPPORT set after "
                             "adaptation: label the query images (task.x_query, task.y_query)")
    if np.allclose(got, unadapted) and not np.allclose(unadapted, want):
        raise AssertionError(f"your accuracies {got.round(3)} are those of θ itself: adapt to the "
                             "task's support set first (my_adapt), then label the queries")
    raise AssertionError(f"accuracies after {inner_steps} step(s) on {len(tasks)} tasks: yours "
                         f"{got.round(4)}, expected {want.round(4)}")


def check_query_accuracy(query_accuracy: Callable, *, seed: int = 0,
                         label: str = "lab04_omniglot/query_accuracy") -> None:
    """Exercise 4.5: per-task query accuracy after adaptation, against
    ``evaluate.adaptation_curve(..., loss="cross_entropy", metric="accuracy")``."""
    __tracebackhide__ = True
    model, params = _model_and_params(seed + 1)
    tasks = _tasks(seed + 1, 4, queries=4)
    checks = [
        ("accuracy after 1 step", lambda: _accuracies(query_accuracy, model, params, tasks, 0.4, 1)),
        ("accuracy after 3 steps",
         lambda: _accuracies(query_accuracy, model, params, tasks, 0.4, 3)),
    ]
    run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 4.6: meta_step


def _one_step(meta_step: Callable | None, seed: int, inner_steps: int, first_order: bool):
    """Parameters after one SGD meta-step from the same θ, and the returned metrics."""
    model, _ = _model_and_params(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tasks = _tasks(seed, 3)
    if meta_step is None:
        cfg = maml.Config(inner_lr=0.4, inner_steps=inner_steps, first_order=first_order,
                          loss="cross_entropy", backend="loop")
        metrics = maml.meta_step(model, optimizer, tasks, cfg)
    else:
        metrics = meta_step(model, optimizer, tasks, 0.4, inner_steps, first_order)
    return {n: p.detach().clone() for n, p in model.named_parameters()}, metrics


def _meta_step_matches(meta_step, seed, inner_steps, first_order) -> None:
    want, want_metrics = _one_step(None, seed, inner_steps, first_order)
    got, got_metrics = _one_step(meta_step, seed, inner_steps, first_order)
    if not isinstance(got_metrics, dict) or "meta_loss" not in got_metrics:
        raise AssertionError(f"my_meta_step should return {{'meta_loss': float}}, got "
                             f"{got_metrics!r}")
    assert_close(got_metrics["meta_loss"], want_metrics["meta_loss"], atol=_ATOL, rtol=_RTOL,
                 what="returned meta_loss (the mean query cross-entropy before the update)")
    if not lab04._close(got, want) and not first_order:
        other, _ = _one_step(None, seed, inner_steps, True)
        if lab04._close(got, other):
            raise AssertionError("with first_order=False your update is first-order MAML's: "
                                 f"in my_adapt {lab04._CREATE_GRAPH_HINT}")
    assert_close(got, want, atol=_ATOL, rtol=_RTOL,
                 what=f"θ after one meta-step ({inner_steps} inner step(s), "
                      f"first_order={first_order})")


def check_meta_step(meta_step: Callable, *, seed: int = 0,
                    label: str = "lab04_omniglot/meta_step") -> None:
    """Exercise 4.6: one outer update against ``maml.meta_step(loss="cross_entropy")``, second and
    first order, from the same θ with ``SGD(lr=0.1)``."""
    __tracebackhide__ = True
    checks = [
        ("one second-order meta-step", lambda: _meta_step_matches(meta_step, seed + 2, 1, False)),
        ("one first-order meta-step, 2 inner steps",
         lambda: _meta_step_matches(meta_step, seed + 3, 2, True)),
    ]
    run_checks(label, checks)

