"""Public checks of Lab 10, a transformer that learns linear regression in context (``labs/lab10_in_context.ipynb``).

Each check compares a student's function with the reference in
:mod:`metacourse.models.transformer` / :mod:`metacourse.algorithms.in_context` and prints one
verdict line (``lab10/encode: 4/4 checks passed``):

- :func:`check_encode` — ``my_encode_prompt(x, y, x_query)``: tokens x₁, y₁, …, x_k, y_k, queries;
  an x and its y merged into one token, y before x and a y token without its flag are named.
- :func:`check_positions` — ``my_positions(n_pairs, n_query)``: 0 … 2k−1, then 2k for every query;
  positions shared between x_i and y_i, queries numbered one after another and counting from 1
  are named.
- :func:`check_mask` — ``my_prompt_mask(n_pairs, n_query)``: causal over the examples, each query
  sees the examples and itself; a mask that shows a token its own label, queries that see each
  other, an inverted mask and a token that cannot see itself are named.
- :func:`check_loss` — ``my_icl_loss(model, tasks)``: the squared error at every x token of
  support ⊕ query, each predicted from the examples before it; the loss over every position,
  predictions read at the y tokens, only the last point and the sum over tasks are named.
- :func:`check_least_squares` — ``my_least_squares(x, y, x_query)``: the minimum-norm solution,
  k < d and k = 0 included; the normal equations (singular for k < d) are named.
- :func:`check_learns` — ``my_icl_loss`` trains a small transformer to predict from its prompt.

Numeric checks run in float64 on transformers with random weights and fixed random tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor

from ..algorithms import in_context
from ..functional import mse_loss, params_of
from ..models.transformer import InContextTransformer, encode_prompt, prompt_mask, token_positions
from ..tasks import TaskBatch
from . import assert_close, run_checks
from .losses import loss_gradient, loss_value, meta_train_with, name_the_mistake, returned_tensor

__all__ = ["check_encode", "check_positions", "check_mask", "check_loss", "check_least_squares", "check_learns"]

_ATOL, _RTOL = 1e-9, 1e-7


def _model(seed: int, x_dim: int = 3) -> InContextTransformer:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = InContextTransformer(x_dim, 1, d_model=16, layers=2, heads=2, max_points=16).double()
        with torch.no_grad():  # learned positions large enough that a wrong position changes the output
            model.position.weight.normal_(0.0, 1.0)
        return model


def _tasks(seed: int, n_tasks: int, k_shot: int, n_query: int = 4, x_dim: int = 3) -> TaskBatch:
    batch = in_context.LinearTasks(x_dim).sample(n_tasks, max(k_shot, 1), n_query, np.random.default_rng([seed, 1010]))
    return TaskBatch(batch.x_support[:, :k_shot].double(), batch.y_support[:, :k_shot].double(), batch.x_query.double(),
                     batch.y_query.double())


def _same(a: Tensor, b: Tensor) -> bool:
    return a.shape == b.shape and (a.numel() == 0 or bool((a.double() - b.double()).abs().max() <= 1e-12))


# ---------------------------------------------------------------------------------------------
# Exercise 10.1: the prompt's tokens


def _encode_value(encode: Callable, tasks: TaskBatch, with_queries: bool) -> None:
    x, y = tasks.x_support, tasks.y_support
    x_query = tasks.x_query if with_queries else None
    want = encode_prompt(x, y, x_query)
    got = encode(x, y, x_query)
    returned_tensor(got, "the tokens")
    k = x.shape[1]
    if got.shape[1] == k + (x_query.shape[1] if with_queries else 0) and got.shape[1] != want.shape[1]:
        raise AssertionError(f"the tokens have shape {tuple(got.shape)}: one token per (x, y) pair. Give x_i and y_i "
                             "a token each (2k tokens for k examples), so the prediction for x_i can be read "
                             "before y_i is seen")
    got = returned_tensor(got, "the tokens", tuple(want.shape))
    swapped = encode_prompt(x, y)[:, torch.arange(2 * k).view(-1, 2).flip(1).reshape(-1)]
    if k and _same(got[:, : 2 * k], swapped):
        raise AssertionError("the examples come as y₁, x₁, y₂, x₂, …: put each x BEFORE its y, so that a label "
                             "follows the input it belongs to")
    no_flag = want.clone()
    no_flag[:, 1: 2 * k: 2, -1] = 0
    if k and _same(got, no_flag):
        raise AssertionError("the y tokens have 0 in the last feature: a y token is [0, y, 1] — the flag 1 tells a "
                             "label token from an input token even when y = 0")
    assert_close(got, want, atol=_ATOL, rtol=_RTOL, what="the tokens ([x, 0, 0] for an x, [0, y, 1] for a y)")


def check_encode(encode: Callable, *, seed: int = 0, label: str = "lab10/encode") -> None:
    """Exercise 10.1: ``encode(x, y, x_query)`` against ``models.transformer.encode_prompt``."""
    __tracebackhide__ = True
    checks = [
        ("3 tasks, k = 4, 2 queries", lambda: _encode_value(encode, _tasks(seed, 3, 4, 2), True)),
        ("k = 1, 5 queries", lambda: _encode_value(encode, _tasks(seed + 1, 2, 1, 5), True)),
        ("no queries (x_query=None)", lambda: _encode_value(encode, _tasks(seed + 2, 2, 6), False)),
        ("k = 0: the queries alone", lambda: _encode_value(encode, _tasks(seed + 3, 2, 0, 3), True)),
    ]
    run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 10.2: positions


def _positions_value(positions: Callable, n_pairs: int, n_query: int) -> None:
    want = token_positions(n_pairs, n_query)
    got = returned_tensor(positions(n_pairs, n_query), f"my_positions({n_pairs}, {n_query})")
    if got.dim() == 1 and got.numel() == n_pairs + n_query and got.numel() != want.numel():
        raise AssertionError(f"my_positions({n_pairs}, {n_query}) has {got.numel()} entries, one per example: "
                             f"the prompt has 2k + m = {want.numel()} tokens, and each needs a position")
    got = returned_tensor(got, f"my_positions({n_pairs}, {n_query})", tuple(want.shape))
    if got.dtype in (torch.float16, torch.float32, torch.float64):
        raise AssertionError("positions index an embedding table: return integers (dtype=torch.long)")
    got = got.long()
    shared = torch.cat([torch.arange(n_pairs).repeat_interleave(2), torch.full((n_query,), n_pairs)])
    if n_pairs and torch.equal(got, shared):
        raise AssertionError("x_i and y_i share position i: the model cannot tell where an input ends and its label "
                             "begins by position. Number the tokens 0, 1, 2, … (x_i at 2i − 2, y_i at 2i − 1)")
    if n_query > 1 and torch.equal(got, torch.arange(2 * n_pairs + n_query)):
        raise AssertionError("the queries are numbered 2k, 2k + 1, …: every query stands in the same place, the x "
                             "after the last example, so give each of them position 2k")
    if torch.equal(got, want + 1):
        raise AssertionError("the positions start at 1: count from 0 (the first x is token 0)")
    assert_close(got, want, atol=0, rtol=0, what=f"my_positions({n_pairs}, {n_query})")


def check_positions(positions: Callable, *, seed: int = 0, label: str = "lab10/positions") -> None:
    """Exercise 10.2: ``positions(n_pairs, n_query)`` against ``models.transformer.token_positions``."""
    __tracebackhide__ = True
    checks = [(f"k = {k}, {m} queries", partial(_positions_value, positions, k, m))
              for k, m in ((4, 3), (1, 1), (6, 0), (0, 2), (5 + seed % 3, 4))]
    run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 10.3: the mask


def _mask_value(mask_fn: Callable, n_pairs: int, n_query: int) -> None:
    want = prompt_mask(n_pairs, n_query)
    got = returned_tensor(mask_fn(n_pairs, n_query), f"my_prompt_mask({n_pairs}, {n_query})", tuple(want.shape))
    if got.dtype != torch.bool:
        raise AssertionError(f"the mask has dtype {got.dtype}: return booleans (True = may attend), e.g. "
                             "torch.ones(L, L, dtype=torch.bool).tril()")
    length, examples = want.shape[0], 2 * n_pairs
    if torch.equal(got, ~want):
        raise AssertionError("the mask is inverted: True must mean 'may attend' (j ≤ i), as masked_fill(~mask, -inf) "
                             "reads it")
    x_tokens = torch.arange(0, examples, 2)
    if n_pairs and bool(got[x_tokens, x_tokens + 1].any()):
        raise AssertionError("an x token can attend to the next token, its own label y_i: the prediction would copy "
                             "the answer. Allow j ≤ i only (.tril(), not .tril(1) or no mask)")
    if not bool(got.diagonal().all()):
        raise AssertionError("a token cannot attend to itself: keep the diagonal (j ≤ i, not j < i); a query that "
                             "cannot see itself cannot read its own x")
    if n_query > 1 and torch.equal(got, torch.ones(length, length, dtype=torch.bool).tril()):
        raise AssertionError("the queries attend to the queries before them: each query must see the examples and "
                             "itself only, so that its answer does not depend on the other queries")
    assert_close(got, want, atol=0, rtol=0, what=f"my_prompt_mask({n_pairs}, {n_query})")


def _label_hidden(mask_fn: Callable, seed: int) -> None:
    """Behaviour: with the student's mask the prediction at x_i must not change when y_i does."""
    model, tasks = _model(seed), _tasks(seed, 2, 5, 1)
    tokens = encode_prompt(tasks.x_support, tasks.y_support)
    index, mask = token_positions(5, 0), mask_fn(5, 0)
    with torch.no_grad():
        before = model.run(tokens, index, mask)[0][:, 0::2]
        for i in range(5):
            changed = tokens.clone()
            changed[:, 2 * i + 1, -2] += 10.0  # the label y_{i+1}
            after = model.run(changed, index, mask)[0][:, 0::2]
            if not torch.allclose(before[:, : i + 1], after[:, : i + 1]):
                raise AssertionError(f"changing the label y_{i + 1} changed the prediction made at x_{i + 1} or "
                                     "before: the mask lets a token see its own label (or later ones); "
                                     "allow j ≤ i only")


def check_mask(mask_fn: Callable, *, seed: int = 0, label: str = "lab10/mask") -> None:
    """Exercise 10.3: ``mask_fn(n_pairs, n_query)`` against ``models.transformer.prompt_mask``."""
    __tracebackhide__ = True
    checks = [(f"k = {k}, {m} queries", partial(_mask_value, mask_fn, k, m)) for k, m in ((4, 3), (2, 1), (5, 0))]
    checks.append(("the prediction at x_i ignores y_i", lambda: _label_hidden(mask_fn, seed)))
    run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 10.4: the loss


def _reference(model: InContextTransformer, tasks: TaskBatch) -> Tensor:
    return in_context.meta_loss(model, params_of(model), tasks, in_context.Config())


def _outputs(model: InContextTransformer, tasks: TaskBatch) -> tuple[Tensor, Tensor]:
    x = torch.cat([tasks.x_support, tasks.x_query], 1)
    y = torch.cat([tasks.y_support, tasks.y_query], 1)
    n = x.shape[1]
    return model.run(encode_prompt(x, y), token_positions(n), prompt_mask(n))[0], y


def _diagnose(value: float, model: InContextTransformer, tasks: TaskBatch) -> None:
    with torch.no_grad():
        outputs, y = _outputs(model, tasks)
        mistakes = [
            (mse_loss(outputs, y.repeat_interleave(2, dim=1)).mean(),
             "the loss over EVERY token: the outputs at the y tokens are scored too (and can copy the label "
             "they read). Read the predictions at the x tokens only, outputs[:, 0::2]"),
            (mse_loss(outputs[:, 1::2], y).mean(),
             "the loss of the outputs at the y TOKENS, which have read the label they are scored on; read the "
             "predictions at the x tokens, outputs[:, 0::2]"),
            (mse_loss(outputs[:, -2:-1], y[:, -1:]).mean(),
             "the loss at the LAST point only: score every x of the sequence (every prompt length k at once)"),
            (mse_loss(outputs[:, 0::2], y).sum(), f"the SUM over the {len(tasks)} tasks; use the mean"),
        ]
    name_the_mistake(value, mistakes, "my_icl_loss", atol=_ATOL, rtol=_RTOL)


def _loss_value(loss_fn: Callable, model: InContextTransformer, tasks: TaskBatch) -> None:
    loss_value(loss_fn, _reference, _diagnose, model, tasks, call="my_icl_loss(model, tasks)",
               what="the in-context loss", atol=_ATOL, rtol=_RTOL)


def _loss_gradient(loss_fn: Callable, model: InContextTransformer, tasks: TaskBatch) -> None:
    loss_gradient(loss_fn, _reference, model, tasks, call="my_icl_loss(model, tasks)", name="the loss",
                  every_weight="run the tokens through model.run", atol=_ATOL, rtol=_RTOL)


def check_loss(loss_fn: Callable, *, seed: int = 0, label: str = "lab10/loss") -> None:
    """Exercise 10.4: ``loss_fn(model, tasks)`` against ``in_context.meta_loss`` (objective "prefix")."""
    __tracebackhide__ = True
    model = _model(seed + 1)
    checks = [
        ("value, 4 tasks of 5 + 3 points", lambda: _loss_value(loss_fn, model, _tasks(seed + 1, 4, 5, 3))),
        ("value, 2 tasks of 2 + 6 points", lambda: _loss_value(loss_fn, model, _tasks(seed + 2, 2, 2, 6))),
        ("gradient with respect to θ", lambda: _loss_gradient(loss_fn, model, _tasks(seed + 3, 3, 4, 2))),
    ]
    run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 10.5: least squares


def _least_squares_value(fit: Callable, seed: int, k: int, x_dim: int = 4) -> None:
    tasks = _tasks(seed, 3, k, 5, x_dim)
    want = in_context.least_squares(tasks.x_support, tasks.y_support, tasks.x_query)
    singular = (f"with k = {k} < d = {x_dim} examples XᵀX is singular: many w fit them exactly, and least squares "
                "means the one of minimum norm, ŵ = torch.linalg.pinv(X) @ y (solve or inv give an arbitrary ŵ)")
    try:
        got = fit(tasks.x_support, tasks.y_support, tasks.x_query)
    except RuntimeError as error:  # torch.linalg.solve / inv on a singular XᵀX
        if k == 0:
            raise AssertionError(f"with k = 0 examples there is nothing to fit ({error}); predict 0, the mean of "
                                 "w under its prior (torch.linalg.pinv handles k = 0 too)") from None
        if k < x_dim:
            raise AssertionError(f"{singular} ({error})") from None
        raise
    got = returned_tensor(got, f"the predictions with k = {k}", tuple(want.shape))
    if 0 < k < x_dim and not torch.allclose(got, want, atol=1e-7, rtol=1e-6):
        raise AssertionError(singular)
    assert_close(got, want, atol=1e-7, rtol=1e-6, what=f"the least-squares predictions with k = {k}, d = {x_dim}")


def check_least_squares(fit: Callable, *, seed: int = 0, label: str = "lab10/least_squares") -> None:
    """Exercise 10.5: ``fit(x, y, x_query)`` against ``in_context.least_squares``."""
    __tracebackhide__ = True
    checks = [(f"k = {k}, d = 4", partial(_least_squares_value, fit, seed + k, k)) for k in (8, 4, 2)]
    checks.append(("k = 0: predict 0", partial(_least_squares_value, fit, seed, 0)))
    run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 10.6: it learns


def _error_at(model: InContextTransformer, k: int, x_dim: int, seed: int) -> float:
    tasks = in_context.LinearTasks(x_dim).sample(200, k, 5, np.random.default_rng([seed, 10, 6]))
    return float(in_context.error_by_k(in_context.in_context_predictor(model), tasks, [k], x_dim)[k].mean())


def _learns(loss_fn: Callable, seed: int, meta_steps: int, ratio: float, x_dim: int = 1, points: int = 6) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = InContextTransformer(x_dim, 1, d_model=32, layers=2, heads=2, max_points=points)
        sampler = partial(in_context.LinearTasks(x_dim).sample, k_shot=points - 1, n_query=1)
        meta_train_with(loss_fn, model, sampler, meta_steps=meta_steps, meta_batch_size=32, seed=seed)
    error = _error_at(model, 2 * x_dim, x_dim, seed)
    if not np.isfinite(error) or error > ratio:
        raise AssertionError(
            f"after {meta_steps} steps with your loss, the error with k = {2 * x_dim} examples is {error:.3f} "
            f"(1 = predicting 0); it should fall below {ratio}. Check that the predictions are read at the x tokens "
            "and that the mask hides each label from its own x")


def check_learns(loss_fn: Callable, *, seed: int = 0, meta_steps: int = 300, ratio: float = 0.5,
                 label: str = "lab10/learns") -> None:
    """Exercise 10.6: a small transformer (d = 1, prompts of 6 points) trained with ``loss_fn`` for
    ``meta_steps`` steps (32 tasks per step, Adam 3e-3) must bring the normalised error with k = 2
    examples below ``ratio`` (predicting 0 scores 1, averaging y_i x_i about 1, least squares 0)."""
    __tracebackhide__ = True
    run_checks(label, [(f"error at k = 2d falls below {ratio} in {meta_steps} steps",
                        lambda: _learns(loss_fn, seed, meta_steps, ratio))])
