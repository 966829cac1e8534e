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
  first_order)``: one outer update against :func:`metacourse.algorithms.maml.meta_step`, from a
  model whose ``.grad`` already holds a stale gradient, so that a missing ``optimizer.zero_grad()``
  shows. A missing ``step``, a returned tensor, the sum over tasks, the query loss at θ or on the
  support set and a ``first_order`` that is not passed on are named.

The inner loop's usual mistakes are named too: a loop one step short or long, gradient ascent,
every step restarting from θ (the planted bug, :func:`restart_adapt`), and differentiating the
loss at φ with respect to θ instead of φ. So is a query accuracy computed entirely under
``torch.no_grad()`` (the adaptation needs gradients).

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
from ..functional import Params, accuracy, cross_entropy_loss, forward
from ..models.conv4 import Conv4
from ..tasks.base import TaskBatch
from . import assert_close, lab04, run_checks

__all__ = ["check_adapt", "check_query_accuracy", "check_meta_step", "restart_adapt",
           "reference_query_accuracy", "reference_meta_step"]

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


def reference_query_accuracy(model: nn.Module, params: Params, task, inner_lr: float,
                             inner_steps: int) -> float:
    """Exercise 4.5 done by the library (``maml.adapt``, first order): the lab's evaluation cells
    run it while ``my_query_accuracy`` is still a stub."""
    cfg = maml.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=True,
                      loss="cross_entropy", backend="loop")
    theta = {name: p.detach().requires_grad_() for name, p in params.items()}
    with torch.enable_grad():
        phi = maml.adapt(model, theta, task, cfg)
    with torch.no_grad():
        return accuracy(forward(model, phi, task.x_query), task.y_query).item()


def reference_meta_step(model: nn.Module, optimizer: torch.optim.Optimizer, tasks: TaskBatch,
                        inner_lr: float, inner_steps: int, first_order: bool) -> dict[str, float]:
    """Exercise 4.6 done by the library (``maml.meta_step``): the lab's training cell runs it
    while ``my_meta_step`` is still a stub."""
    cfg = maml.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order,
                      loss="cross_entropy")
    return maml.meta_step(model, optimizer, tasks, cfg)


# ---------------------------------------------------------------------------------------------
# Exercise 4.4: adapt with the cross-entropy loss

def restart_adapt(model, params, x_support, y_support, inner_lr, inner_steps, first_order):
    """Lab 4b's planted bug: an inner loop that looks like MAML's eq. (1). One line is wrong."""
    adapted = dict(params)
    for _ in range(inner_steps):
        loss = cross_entropy_loss(forward(model, adapted, x_support), y_support)
        grads = torch.autograd.grad(loss, list(adapted.values()), create_graph=not first_order)
        adapted = {name: params[name] - inner_lr * g for name, g in zip(adapted, grads)}
    return adapted


def _variant_adapt(model, params, task, inner_lr, inner_steps, *, sign=1.0, restart=False,
                   wrt_theta=False) -> Params:
    adapted = dict(params)
    for _ in range(inner_steps):
        loss = cross_entropy_loss(forward(model, adapted, task.x_support), task.y_support)
        wrt = params if wrt_theta else adapted
        grads = torch.autograd.grad(loss, list(wrt.values()), create_graph=True)
        start = params if restart else adapted
        adapted = {n: start[n] - sign * inner_lr * g for n, g in zip(adapted, grads)}
    return adapted


def _adapt_mistakes(adapt: Callable, model, params, task, inner_lr: float, steps: int) -> None:
    """Name the usual inner-loop mistake when ``steps`` second-order steps give other values."""
    want = _reference_adapt(model, params, task, inner_lr, steps, False)
    got = adapt(model, dict(params), task.x_support, task.y_support, inner_lr, steps, False)
    if not isinstance(got, dict) or lab04._close(got, want):
        return
    variants = {
        f"the values of {steps - 1} step(s), not {steps}: loop for _ in range(inner_steps)":
            lambda: _reference_adapt(model, params, task, inner_lr, steps - 1, True),
        f"the values of {steps + 1} steps, not {steps}: loop for _ in range(inner_steps)":
            lambda: _reference_adapt(model, params, task, inner_lr, steps + 1, True),
        "gradient ASCENT: the step is φ ← φ − α ∇L (minus the gradient)":
            lambda: _variant_adapt(model, params, task, inner_lr, steps, sign=-1.0),
        "every step starts again from θ: the update is φ_{j+1} = φ_j − α ∇L(φ_j), from the "
        "current φ (adapted[name]), not from params[name]":
            lambda: _variant_adapt(model, params, task, inner_lr, steps, restart=True),
        "the gradient is taken with respect to θ (list(params.values())) instead of the current "
        "φ: differentiate with respect to list(adapted.values())":
            lambda: _variant_adapt(model, params, task, inner_lr, steps, wrt_theta=True),
    }
    for message, variant in variants.items():
        if lab04._close(got, variant()):
            raise AssertionError(f"after {steps} inner steps your φ has {message}")


def check_adapt(adapt: Callable, *, seed: int = 0, label: str = "lab04_omniglot/adapt") -> None:
    """Exercise 4.4: ``adapt`` against ``maml.adapt(loss="cross_entropy")`` on random 5-way tasks.

    Five checks: adapted values after one first-order step and after two second-order steps; the
    second-order meta-gradient through Conv4 and its batch normalisation; the first-order
    gradient; the caller's ``params`` left unchanged.
    """
    __tracebackhide__ = True
    model, params = _model_and_params(seed)
    tasks = _tasks(seed, 3)
    checks = lab04.adapt_checks(adapt, model, params, tasks, inner_lr=0.4,  # MAML's Omniglot
                                steps=(2, 1, 2), loss="cross_entropy")  # step size
    name, values = checks[1]  # adapted values after 2 second-order steps: name the usual mistake

    def named_values() -> None:
        _adapt_mistakes(adapt, model, params, tasks[1], 0.4, 2)
        values()

    checks[1] = (name, named_values)
    run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 4.5: query accuracy after adaptation


def _call_accuracy(query_accuracy, model, params, task, inner_lr, inner_steps) -> float:
    try:
        value = query_accuracy(model, params, task, inner_lr, inner_steps)
    except RuntimeError as error:
        if "does not require grad" not in str(error):
            raise
        raise AssertionError(
            "the adaptation found no gradient (RuntimeError: element 0 of tensors does not require "
            "grad): my_adapt ran under torch.no_grad(), or from detached θ. Adapt with gradients "
            "on (θ as leaves that require grad, inside torch.enable_grad()), and wrap only the "
            "query prediction in torch.no_grad()") from None
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


_STALE = 1.0  # a stale gradient planted on every parameter before the meta-step runs


def _one_step(meta_step: Callable | None, seed: int, inner_steps: int, first_order: bool):
    """Parameters after one SGD meta-step from the same θ, and the returned metrics. The model's
    parameters start with a stale ``.grad`` (as after any earlier backward), which the step must
    clear with ``optimizer.zero_grad()``."""
    model, _ = _model_and_params(seed)
    for p in model.parameters():
        p.grad = torch.full_like(p, _STALE)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tasks = _tasks(seed, 3)
    if meta_step is None:
        cfg = maml.Config(inner_lr=0.4, inner_steps=inner_steps, first_order=first_order,
                          loss="cross_entropy", backend="loop")
        metrics = maml.meta_step(model, optimizer, tasks, cfg)
    else:
        metrics = meta_step(model, optimizer, tasks, 0.4, inner_steps, first_order)
    return {n: p.detach().clone() for n, p in model.named_parameters()}, metrics


def _loss_mistakes(seed: int, inner_steps: int) -> dict[str, float]:
    """The meta-losses of the usual mistakes on the check's problem, by message."""
    model, params = _model_and_params(seed)
    tasks = _tasks(seed, 3)
    query, support, unadapted = [], [], []
    for i in range(len(tasks)):
        task = tasks[i]
        phi = _reference_adapt(model, params, task, 0.4, inner_steps, True)
        query.append(cross_entropy_loss(forward(model, phi, task.x_query), task.y_query))
        support.append(cross_entropy_loss(forward(model, phi, task.x_support), task.y_support))
        unadapted.append(cross_entropy_loss(forward(model, params, task.x_query), task.y_query))
    return {
        f"the SUM of the {len(tasks)} tasks' query losses; eq. (3) is their mean":
            torch.stack(query).sum().item(),
        "the query loss at θ, without adaptation: adapt each task with my_adapt first, then "
        "score φ on the queries": torch.stack(unadapted).mean().item(),
        "the loss on the SUPPORT set after adaptation (the set φ was fitted to): score φ on "
        "the query set, task.x_query and task.y_query": torch.stack(support).mean().item(),
    }


def _meta_step_matches(meta_step, seed, inner_steps, first_order) -> None:
    want, want_metrics = _one_step(None, seed, inner_steps, first_order)
    got, got_metrics = _one_step(meta_step, seed, inner_steps, first_order)
    if isinstance(got_metrics, Tensor):
        raise AssertionError("my_meta_step returned a tensor: return a dict with a float, "
                             "{'meta_loss': loss.item()}")
    if not isinstance(got_metrics, dict) or "meta_loss" not in got_metrics:
        raise AssertionError(f"my_meta_step should return {{'meta_loss': float}}, got "
                             f"{got_metrics!r}" + ("; did you forget to `return` it?"
                                                   if got_metrics is None else ""))
    value = got_metrics["meta_loss"]
    value = value.item() if isinstance(value, Tensor) and value.numel() == 1 else value
    if isinstance(value, (int, float)) and not np.isclose(value, want_metrics["meta_loss"],
                                                          rtol=_RTOL, atol=_ATOL):
        for message, mistake in _loss_mistakes(seed, inner_steps).items():
            if np.isclose(value, mistake, rtol=1e-7, atol=0):
                raise AssertionError(f"the returned meta_loss is {message}")
    assert_close(value, want_metrics["meta_loss"], atol=_ATOL, rtol=_RTOL,
                 what="returned meta_loss (the mean query cross-entropy before the update)")
    _, theta = _model_and_params(seed)
    theta = {n: p.detach() for n, p in theta.items()}
    if lab04._close(got, theta):
        raise AssertionError("my_meta_step did not change θ: call loss.backward() and then "
                             "optimizer.step(), after optimizer.zero_grad()")
    if not lab04._close(got, want) and lab04._close(
            got, {n: w - 0.1 * _STALE for n, w in want.items()}):
        raise AssertionError("the update also holds the gradient left over from before the call: "
                             "start my_meta_step with optimizer.zero_grad() (gradients accumulate "
                             "in .grad)")
    if not lab04._close(got, want) and lab04._close(
            got, {n: t + 3 * (want[n] - t) for n, t in theta.items()}):
        raise AssertionError("θ moved 3 times too far: by the SUM of the 3 tasks' gradients "
                             "(a backward() per task accumulates them in .grad). Eq. (3) is the "
                             "mean: backward the mean of the query losses once")
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
    first order, from the same θ with ``SGD(lr=0.1)`` and a stale gradient in every ``.grad``."""
    __tracebackhide__ = True
    checks = [
        ("one second-order meta-step", lambda: _meta_step_matches(meta_step, seed + 2, 1, False)),
        ("one first-order meta-step, 2 inner steps",
         lambda: _meta_step_matches(meta_step, seed + 3, 2, True)),
    ]
    run_checks(label, checks)

