"""Public checks of Lab 3, a conditional neural process on sinusoids (``labs/lab03_cnp.ipynb``).

Each check compares a student's function with the reference in
:mod:`metacourse.models.blackbox` / :mod:`metacourse.algorithms.blackbox` and prints one verdict
line (``lab03/adapt: 4/4 checks passed``):

- :func:`check_adapt` — ``my_adapt(model, x_support, y_support)``: the task representation
  r = mean_i h([x_i, y_i]) of a ``CNP``, shape ``(tasks, r_dim)``; a sum or a maximum instead of a
  mean, a mean over the features or over the tasks, pairs encoded as [y, x] or without y, and an
  order-dependent aggregation are named.
- :func:`check_predict` — ``my_predict(model, r, x_query)``: ŷ = g([x, r]) for every query point;
  [r, x] instead of [x, r], r not repeated along the points, and r shared across tasks are named.
- :func:`check_meta_loss` — ``my_meta_loss(model, tasks)``: the mean over tasks of the query MSE
  after reading the support set; encoding the query points too ("peeking"), reading r from the
  query set, summing over tasks or over points, the root of the MSE, and scoring the support set
  are named.
- :func:`check_learns` — ``my_meta_loss`` trains a CNP on sinusoids in a few hundred steps.

Numeric checks run in float64 on CNPs with random weights and random sinusoids from fixed seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor

from ..algorithms import blackbox
from ..functional import mse_loss, params_of
from ..models.blackbox import CNP
from ..tasks import SinusoidTasks, TaskBatch
from . import assert_close, run_checks
from .fallback import builds_on
from .losses import loss_gradient, loss_value, meta_train_with, name_the_mistake, returned_tensor

__all__ = ["check_adapt", "check_predict", "check_meta_loss", "check_learns"]

_ATOL, _RTOL = 1e-9, 1e-7
_EARLIER_EXERCISES = {  # during the checks of 3.3 and 3.4, the reference in place of 3.1 and 3.2
    "my_adapt": lambda model, x_support, y_support: model(x_support, y_support, stage="adapt")["r"],
    "my_predict": lambda model, r, x_query: model({"r": r}, x_query, stage="predict"),
}


def _model(seed: int) -> CNP:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CNP(1, 1, hidden=32, r_dim=16).double()


def _tasks(seed: int, n_tasks: int, k_shot: int, n_query: int = 7) -> TaskBatch:
    batch = SinusoidTasks().sample(n_tasks, k_shot, n_query, np.random.default_rng([seed, 303]))
    return TaskBatch(batch.x_support.double(), batch.y_support.double(), batch.x_query.double(),
                     batch.y_query.double())


# ---------------------------------------------------------------------------------------------
# Exercise 3.1: adapt


def _call(function: Callable, what: str, *args):
    """Call a student's function; a matrix-size error of a network names what that network reads."""
    try:
        return function(*args)
    except RuntimeError as error:
        if "shapes cannot be multiplied" in str(error) or "size mismatch" in str(error):
            raise AssertionError(f"{what} ({error})") from None
        if "Sizes of tensors must match" in str(error) or "same number of dimensions" in str(error):
            raise AssertionError("torch.cat got tensors of different sizes: r has one row per task, so repeat "
                                 f"it along the query points before concatenating it with x ({error})") from None
        raise


def _adapt_value(adapt: Callable, model: CNP, tasks: TaskBatch) -> None:
    want = model(tasks.x_support, tasks.y_support, stage="adapt")["r"]
    got = _call(adapt, "the encoder h reads a pair [x_i, y_i], x_dim + y_dim numbers: encode "
                       "torch.cat([x_support, y_support], dim=-1)", model, tasks.x_support, tasks.y_support)
    encoded = model.encoder(torch.cat([tasks.x_support, tasks.y_support], -1))
    if isinstance(got, Tensor) and got.shape == encoded.mean(-1).shape and got.shape != want.shape:
        raise AssertionError(f"r has shape {tuple(got.shape)}: you averaged over the features "
                             "(dim=-1); average over the support points (dim=1) instead")
    if isinstance(got, Tensor) and got.shape == encoded.mean(0).shape and got.shape != want.shape:
        raise AssertionError(f"r has shape {tuple(got.shape)}: you averaged over the TASKS (dim=0); each "
                             "task gets its own r, the mean over its support points (dim=1)")
    if isinstance(got, Tensor) and got.dim() == want.dim() + 1 and 1 in got.shape[1:-1] and got.numel() == want.numel():
        raise AssertionError(f"r has shape {tuple(got.shape)}, an extra axis of size 1: x and y were stacked on a "
                             "new axis (torch.stack); concatenate them along the last one, "
                             "torch.cat([x_support, y_support], dim=-1)")
    got = returned_tensor(got, "r", tuple(want.shape))
    with torch.no_grad():
        swapped = model.encoder(torch.cat([tasks.y_support, tasks.x_support], -1))
        mistakes = [
            (encoded.sum(1), "r is the SUM of the encoded pairs: use the mean, so that r does not grow with "
                             "the number of support points K"),
            (encoded.max(1).values, "r is the MAXIMUM over the encoded pairs; the CNP's r is their mean"),
            (encoded[:, -1], "r is the code of the LAST support point only; average the codes of all K points "
                             "(dim=1), so that r does not depend on their order"),
            (encoded[:, 0], "r is the code of the FIRST support point only; average the codes of all K points "
                            "(dim=1)"),
            (swapped.mean(1), "the pairs were encoded as [y, x]; the encoder reads [x, y]: "
                              "torch.cat([x_support, y_support], dim=-1)"),
        ]
        for wrong, message in mistakes if tasks.x_support.shape[1] > 1 else []:
            if torch.allclose(got, wrong, atol=_ATOL, rtol=_RTOL):
                raise AssertionError(message)
    assert_close(got, want, atol=_ATOL, rtol=_RTOL, what=f"r with K = {tasks.x_support.shape[1]}")


def _order_free(adapt: Callable, model: CNP, tasks: TaskBatch) -> None:
    perm = torch.randperm(tasks.x_support.shape[1], generator=torch.Generator().manual_seed(3))
    reads = "the encoder h reads a pair [x_i, y_i]: encode torch.cat([x_support, y_support], dim=-1)"
    a = _call(adapt, reads, model, tasks.x_support, tasks.y_support)
    b = _call(adapt, reads, model, tasks.x_support[:, perm], tasks.y_support[:, perm])
    assert_close(b, a, atol=_ATOL, rtol=_RTOL, what="r of the shuffled support set (it must not "
                                                    "depend on the order of the points)")


def check_adapt(adapt: Callable, *, seed: int = 0, label: str = "lab03/adapt") -> None:
    """Exercise 3.1: ``adapt(model, x_support, y_support)`` against ``CNP.adapt``."""
    __tracebackhide__ = True
    model = _model(seed)
    checks = [
        ("r with K = 5", lambda: _adapt_value(adapt, model, _tasks(seed, 3, 5))),
        ("r with K = 1", lambda: _adapt_value(adapt, model, _tasks(seed + 1, 2, 1))),
        ("r with K = 20", lambda: _adapt_value(adapt, model, _tasks(seed + 2, 2, 20))),
        ("r ignores the order of the support set", lambda: _order_free(adapt, model, _tasks(seed, 2, 8))),
    ]
    run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 3.2: predict


def _predict_value(predict: Callable, model: CNP, tasks: TaskBatch) -> None:
    r = model(tasks.x_support, tasks.y_support, stage="adapt")["r"]
    want = model({"r": r}, tasks.x_query, stage="predict")
    got = _call(predict, "the decoder g reads [x, r] for each query point, x_dim + r_dim numbers: "
                         "torch.cat([x_query, r repeated along the points], dim=-1)", model, r, tasks.x_query)
    got = returned_tensor(got, "the predictions", tuple(want.shape))
    with torch.no_grad():
        repeated = r.unsqueeze(1).expand(-1, tasks.x_query.shape[1], -1)
        if torch.allclose(got, model.decoder(torch.cat([repeated, tasks.x_query], -1)), atol=_ATOL, rtol=_RTOL):
            raise AssertionError("the decoder was given [r, x]; it reads [x, r] (x first, as in ŷ = g([x, r]))")
        for shared, whose in ((repeated[:1].expand_as(repeated), "task 0's r"), (repeated.mean(0, keepdim=True)
                                                                                  .expand_as(repeated), "the mean r")):
            if len(r) > 1 and torch.allclose(got, model.decoder(torch.cat([tasks.x_query, shared], -1)),
                                             atol=_ATOL, rtol=_RTOL):
                raise AssertionError(f"every task was decoded with {whose}; the points of task t need task t's "
                                     "own r_t next to them (row t of r)")
    assert_close(got, want, atol=_ATOL, rtol=_RTOL, what="the predictions ŷ = g([x, r])")


def _one_r_per_task(predict: Callable, model: CNP, tasks: TaskBatch) -> None:
    r = model(tasks.x_support, tasks.y_support, stage="adapt")["r"]
    reads = "the decoder g reads [x, r] for each query point: torch.cat([x_query, r repeated], dim=-1)"
    both = _call(predict, reads, model, r, tasks.x_query)
    first = _call(predict, reads, model, r[:1], tasks.x_query[:1])
    assert_close(both[:1], first, atol=_ATOL, rtol=_RTOL,
                 what="task 0's predictions (they must use task 0's r only)")


def check_predict(predict: Callable, *, seed: int = 0, label: str = "lab03/predict") -> None:
    """Exercise 3.2: ``predict(model, r, x_query)`` against ``CNP.predict``."""
    __tracebackhide__ = True
    model = _model(seed)
    checks = [
        ("predictions, 3 tasks of 7 query points", lambda: _predict_value(predict, model, _tasks(seed, 3, 5))),
        ("predictions, 1 query point", lambda: _predict_value(predict, model, _tasks(seed + 1, 2, 4, 1))),
        ("each task uses its own r", lambda: _one_r_per_task(predict, model, _tasks(seed + 2, 2, 4))),
    ]
    run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 3.3: meta_loss


def _reference(model: CNP, tasks: TaskBatch) -> Tensor:
    return blackbox.meta_loss(model, params_of(model), tasks, blackbox.Config())


def _diagnose(value: float, model: CNP, tasks: TaskBatch) -> None:
    with torch.no_grad():
        r = model(tasks.x_support, tasks.y_support, stage="adapt")
        x_all = torch.cat([tasks.x_support, tasks.x_query], 1)
        y_all = torch.cat([tasks.y_support, tasks.y_query], 1)
        peek = model(x_all, y_all, stage="adapt")
        per_task = mse_loss(model(r, tasks.x_query, stage="predict"), tasks.y_query)
        mistakes = [
            (mse_loss(model(peek, tasks.x_query, stage="predict"), tasks.y_query).mean(),
             "the loss when the QUERY points are encoded too: r must be computed from the support "
             "set only, or the learner sees the answers it is scored on"),
            (per_task.sum(), f"the SUM over the {len(tasks)} tasks; use the mean"),
            (mse_loss(model(r, tasks.x_support, stage="predict"), tasks.y_support).mean(),
             "the loss on the SUPPORT set; score the predictions at x_query against y_query"),
            (mse_loss(model(model(tasks.x_query, tasks.y_query, stage="adapt"), tasks.x_query,
                            stage="predict"), tasks.y_query).mean(),
             "the loss when r is read from the QUERY set; r comes from the support set only, and the "
             "query set is what it is scored on"),
            ((per_task * tasks.x_query.shape[1]).mean(),
             f"the squared errors SUMMED over the {tasks.x_query.shape[1]} query points of each task; the MSE "
             "is their mean (mse_loss(prediction, y) averages over the points)"),
            (per_task.mean().sqrt(), "the ROOT of the mean squared error; the meta-loss is the MSE itself"),
            (per_task.mean() / 2, "HALF the mean squared error (the ½ of some textbooks); the meta-loss is the "
                                  "MSE itself, mse_loss(prediction, y)"),
        ]
    name_the_mistake(value, mistakes, "my_meta_loss", atol=_ATOL, rtol=_RTOL)


def _meta_loss_value(meta_loss: Callable, model: CNP, tasks: TaskBatch) -> None:
    loss_value(meta_loss, _reference, _diagnose, model, tasks, call="my_meta_loss(model, tasks)",
               what="the meta-loss", atol=_ATOL, rtol=_RTOL)


def _meta_loss_gradient(meta_loss: Callable, model: CNP, tasks: TaskBatch) -> None:
    loss_gradient(meta_loss, _reference, model, tasks, call="my_meta_loss(model, tasks)", name="the meta-loss",
                  every_weight="use both the encoder and the decoder", atol=_ATOL, rtol=_RTOL)


def check_meta_loss(meta_loss: Callable, *, seed: int = 0, label: str = "lab03/meta_loss") -> None:
    """Exercise 3.3: ``meta_loss(model, tasks)`` against ``blackbox.meta_loss`` (query objective)."""
    __tracebackhide__ = True
    model = _model(seed + 1)
    checks = [
        ("value, 4 tasks with K = 5", lambda: _meta_loss_value(meta_loss, model, _tasks(seed + 1, 4, 5))),
        ("value, 2 tasks with K = 10", lambda: _meta_loss_value(meta_loss, model, _tasks(seed + 2, 2, 10))),
        ("gradient with respect to θ", lambda: _meta_loss_gradient(meta_loss, model, _tasks(seed + 3, 3, 6))),
    ]
    with builds_on(meta_loss, **_EARLIER_EXERCISES):
        run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 3.4: it learns


def _ten_shot_mse(model: CNP, seed: int) -> float:
    tasks = SinusoidTasks().sample(100, 10, 50, np.random.default_rng([seed, 3, 4]))
    return float(blackbox.task_scores(model, tasks, blackbox.Config()).mean())


def _learns(meta_loss: Callable, seed: int, meta_steps: int, ratio: float) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CNP(1, 1, hidden=64, r_dim=64)
        before = _ten_shot_mse(model, seed)
        sampler = partial(SinusoidTasks().sample, k_shot=10, n_query=10)
        meta_train_with(meta_loss, model, sampler, meta_steps=meta_steps, meta_batch_size=16, seed=seed)
    after = _ten_shot_mse(model, seed)
    if not np.isfinite(after) or after > ratio * before:
        raise AssertionError(
            f"after {meta_steps} steps with your meta-loss the 10-shot query MSE went from "
            f"{before:.3f} to {after:.3f}; it should fall below {ratio:.0%} of where it started. "
            "Check that r comes from the support set and the loss from the query set")


def check_learns(meta_loss: Callable, *, seed: int = 0, meta_steps: int = 300, ratio: float = 0.5,
                 label: str = "lab03/learns") -> None:
    """Exercise 3.4: a CNP (64 units) trained with ``meta_loss`` for ``meta_steps`` steps (K = 10,
    16 tasks per step, Adam 3e-3) must bring the 10-shot MSE of 100 fixed test tasks below
    ``ratio`` of its value before training."""
    __tracebackhide__ = True
    with builds_on(meta_loss, **_EARLIER_EXERCISES):
        run_checks(label, [(f"10-shot MSE falls below {ratio:.0%} in {meta_steps} steps",
                            lambda: _learns(meta_loss, seed, meta_steps, ratio))])
