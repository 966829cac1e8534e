"""Public checks of Lab 4, MAML on sinusoids (``labs/lab04_maml_sinusoid.ipynb``).

Each check compares a student's function with the reference in
:mod:`metacourse.algorithms.maml` and prints one verdict line (``lab04/adapt: 5/5 checks passed``):

- :func:`check_adapt` — ``my_adapt(model, params, x_support, y_support, inner_lr, inner_steps,
  first_order)``, eq. (1): the adapted parameters and the gradients that flow back through them,
  second order (``create_graph=True``) and first order. Forgetting ``create_graph`` is diagnosed.
- :func:`check_meta_loss` — ``my_meta_loss(model, params, tasks, inner_lr, inner_steps,
  first_order)``, eq. (3): values and gradients; summing instead of averaging over tasks, skipping
  the adaptation or scoring on the support set are diagnosed.
- :func:`check_meta_step` — ``my_meta_step(model, optimizer, tasks, inner_lr, inner_steps,
  first_order)``, eq. (4): one outer update against ``maml.meta_step``; a missing ``zero_grad()``
  is diagnosed.
- :func:`check_beats_pretraining` — the same, then meta-training with ``my_meta_step`` for a few
  hundred steps (seconds on a CPU): one fine-tuning step on 5 points must beat the pretraining
  baseline trained as long.

Numeric checks run in float64 on random MLPs, random parameters and random sinusoid tasks drawn
from fixed seeds, so a correct implementation passes to about 1e-10 and the verdicts never flicker.
:func:`adapt_without_create_graph` is a planted bug for the lab's investigation cell.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
from torch import Tensor, nn

from ..algorithms import maml, pretrain
from ..evaluate import adaptation_curve
from ..functional import LOSSES, Params, forward, mse_loss
from ..models import MLP
from ..tasks import SinusoidTasks, TaskBatch
from ..train import TrainConfig, meta_train
from . import assert_close, run_checks
from .losses import name_the_mistake

__all__ = [
    "check_adapt",
    "check_meta_loss",
    "check_meta_step",
    "check_beats_pretraining",
    "adapt_without_create_graph",
    "adapt_checks",
]

_ATOL, _RTOL = 1e-9, 1e-7  # float64: a correct implementation agrees to round-off
_CREATE_GRAPH_HINT = (
    "pass create_graph=not first_order to torch.autograd.grad, so that the inner gradient is "
    "itself differentiated when the meta-gradient flows back through φ = θ − α∇L(θ)"
)


# ---------------------------------------------------------------------------------------------
# Random problems (float64, fixed seeds; the global random state is left alone)


def _model_and_params(seed: int, hidden: tuple[int, ...]) -> tuple[nn.Module, Params]:
    """A float64 MLP 1→hidden→1 and random parameters θ (leaves that require grad), drawn like
    PyTorch's default initialisation: U(−1/√fan_in, 1/√fan_in) for weights and biases."""
    model = MLP(1, hidden, 1).double()
    generator = torch.Generator().manual_seed(seed)
    params = {}
    for name, p in model.named_parameters():
        bound = model.get_submodule(name.rsplit(".", 1)[0]).in_features ** -0.5
        value = torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1
        params[name] = (bound * value).requires_grad_()
    return model, params


def _tasks(seed: int, n_tasks: int, k_shot: int = 5, n_query: int = 10) -> TaskBatch:
    batch = SinusoidTasks().sample(n_tasks, k_shot, n_query, np.random.default_rng([seed, 404]))
    return TaskBatch(batch.x_support.double(), batch.y_support.double(), batch.x_query.double(),
                     batch.y_query.double(), info=batch.info)


def _grads(loss: Tensor, params: Params, what: str) -> dict[str, Tensor]:
    """∂loss/∂params, with a message when the loss does not depend on some of them."""
    if not loss.requires_grad:
        raise AssertionError(
            f"{what} does not depend on params at all (no gradient flows back): build φ from "
            "params with out-of-place operations (φ = θ − α g), never from detached copies"
        )
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    missing = [name for name, g in zip(params, grads) if g is None]
    if missing:
        raise AssertionError(
            f"{what} does not depend on params{missing}: every adapted tensor must be computed "
            "from the corresponding tensor of params (do not detach or re-create it)"
        )
    return dict(zip(params, grads))


def _close(actual, expected) -> bool:
    try:
        assert_close(actual, expected, atol=_ATOL, rtol=_RTOL, what="value")
    except AssertionError:
        return False
    return True


def _query_loss(model: nn.Module, adapted: Params, task, loss: str = "mse") -> Tensor:
    return LOSSES[loss](forward(model, adapted, task.x_query), task.y_query)


# ---------------------------------------------------------------------------------------------
# Exercise 4.1: adapt


def adapt_without_create_graph(model: nn.Module, params: Params, x_support: Tensor,
                               y_support: Tensor, inner_lr: float, inner_steps: int,
                               first_order: bool) -> Params:
    """A planted bug: MAML's inner loop that never passes ``create_graph=True``.

    Its adapted values are right, and so is its first-order gradient, but its "second-order"
    meta-gradient silently is the first-order one. ``check_adapt`` diagnoses it.
    """
    adapted = dict(params)
    for _ in range(inner_steps):
        loss = mse_loss(forward(model, adapted, x_support), y_support)
        grads = torch.autograd.grad(loss, list(adapted.values()))  # the bug: no create_graph
        adapted = {name: p - inner_lr * g for (name, p), g in zip(adapted.items(), grads)}
    return adapted


def _reference_adapt(model, params, task, inner_lr, inner_steps, first_order,
                     loss: str = "mse") -> Params:
    cfg = maml.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order,
                      loss=loss, backend="loop")
    return maml.adapt(model, params, task, cfg)


def _call_adapt(adapt: Callable, model, params, task, inner_lr, inner_steps, first_order):
    adapted = adapt(model, params, task.x_support, task.y_support, inner_lr, inner_steps,
                    first_order)
    if not isinstance(adapted, dict):
        raise AssertionError(
            f"my_adapt should return a dict name -> tensor like params, got "
            f"{type(adapted).__name__}" + ("; did you forget to `return` it?" if adapted is None
                                           else "")
        )
    return adapted


def _adapted_values(adapt, model, params, task, inner_lr, inner_steps, first_order,
                    loss: str = "mse") -> None:
    want = _reference_adapt(model, params, task, inner_lr, inner_steps, first_order, loss)
    got = _call_adapt(adapt, model, params, task, inner_lr, inner_steps, first_order)
    assert_close(got, want, atol=_ATOL, rtol=_RTOL,
                 what=f"adapted parameters after {inner_steps} step(s) (the support loss is "
                      f"{loss}_loss(predictions, y_support))")


def _reference_gradient(model, params, task, inner_lr, inner_steps, first_order, loss):
    adapted = _reference_adapt(model, params, task, inner_lr, inner_steps, first_order, loss)
    return _grads(_query_loss(model, adapted, task, loss), params, "reference")


def _gradient_of_order(adapt, model, params, task, inner_lr, inner_steps, first_order: bool,
                       loss: str = "mse") -> None:
    """d(query loss)/dθ at the student's φ equals the reference's of the same order; the other order's
    gradient is named when it is the one found."""
    theta = dict(params)  # the leaves, even if my_adapt edits the dict
    want = _reference_gradient(model, params, task, inner_lr, inner_steps, first_order, loss)
    other = _reference_gradient(model, params, task, inner_lr, inner_steps, not first_order, loss)
    got_phi = _call_adapt(adapt, model, params, task, inner_lr, inner_steps, first_order)
    got = _grads(_query_loss(model, got_phi, task, loss), theta, "the query loss at your φ")
    if not _close(got, want) and _close(got, other):
        raise AssertionError(_KEEPS_SECOND_ORDER if first_order else _MISSES_SECOND_ORDER)
    what = (f"first-order gradient d(query loss)/dθ through {inner_steps} step(s)" if first_order
            else f"meta-gradient d(query loss)/dθ through {inner_steps} second-order step(s)")
    assert_close(got, want, atol=_ATOL, rtol=_RTOL, what=what)


_MISSES_SECOND_ORDER = (
    "with first_order=False your meta-gradient equals the FIRST-order one (FOMAML): the "
    "Hessian terms (I − α∇²L) of eq. (5) are missing. The inner gradient was treated as a "
    f"constant — {_CREATE_GRAPH_HINT}"
)
_KEEPS_SECOND_ORDER = (
    "with first_order=True your gradient still holds the second-order terms: use "
    "create_graph=False (i.e. create_graph=not first_order), so that dφ/dθ = I (eq. 6)"
)


def _leaves_params_alone(adapt, model, params, task, inner_lr) -> None:
    before = {name: p.detach().clone() for name, p in params.items()}
    objects = {name: id(p) for name, p in params.items()}
    _call_adapt(adapt, model, params, task, inner_lr, 2, False)
    if {name: id(p) for name, p in params.items()} != objects:
        raise AssertionError(
            "my_adapt changed the caller's params dict (it replaced or added entries): build a "
            "new dict, e.g. adapted = dict(params), then adapted = {name: ... for ...}"
        )
    assert_close(params, before, atol=0.0, rtol=0.0,
                 what="params after my_adapt (they must not be modified in place)")


def check_adapt(adapt: Callable, *, seed: int = 0, hidden: tuple[int, ...] = (40, 40),
                label: str = "lab04/adapt") -> None:
    """Exercise 4.1: ``adapt`` against ``maml.adapt`` on random sinusoid tasks and parameters.

    Five checks: adapted values after one first-order step and after three second-order steps;
    the second-order meta-gradient (diagnoses a missing ``create_graph=True``); the first-order
    gradient (diagnoses a ``create_graph`` left on); the caller's ``params`` left unchanged.
    """
    __tracebackhide__ = True
    model, params = _model_and_params(seed, hidden)
    run_checks(label, adapt_checks(adapt, model, params, _tasks(seed, 3), inner_lr=0.02))


def adapt_checks(adapt: Callable, model: nn.Module, params: Params, tasks: TaskBatch,
                 inner_lr: float, steps: tuple[int, int, int] = (3, 2, 2), loss: str = "mse"
                 ) -> list[tuple[str, Callable[[], None]]]:
    """The five checks of an inner loop ``adapt(model, params, x_support, y_support, inner_lr,
    inner_steps, first_order)`` against ``maml.adapt`` with the task loss ``loss``, on three
    tasks: values after one first-order step and after ``steps[0]`` second-order steps, the
    second-order meta-gradient after ``steps[1]`` steps, the first-order gradient after
    ``steps[2]`` steps, and the caller's ``params`` left alone. Lab 4's Omniglot part reuses
    them with the cross-entropy."""
    fresh = partial(dict, params)  # each check gets its own dict: one cannot spoil the next
    second, meta, first = steps
    return [
        ("adapted values, 1 step, first order",
         lambda: _adapted_values(adapt, model, fresh(), tasks[0], inner_lr, 1, True, loss)),
        (f"adapted values, {second} steps, second order",
         lambda: _adapted_values(adapt, model, fresh(), tasks[1], inner_lr, second, False, loss)),
        (f"second-order meta-gradient (create_graph=True), {meta} step(s)",
         lambda: _gradient_of_order(adapt, model, fresh(), tasks[2], inner_lr, meta, False, loss)),
        (f"first-order gradient (create_graph=False), {first} steps",
         lambda: _gradient_of_order(adapt, model, fresh(), tasks[0], inner_lr, first, True, loss)),
        ("params left unchanged",
         lambda: _leaves_params_alone(adapt, model, fresh(), tasks[1], inner_lr)),
    ]


# ---------------------------------------------------------------------------------------------
# Exercise 4.2: meta_loss


def _reference_meta_loss(model, params, tasks, inner_lr, inner_steps, first_order) -> Tensor:
    cfg = maml.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order,
                      backend="loop")
    return maml.meta_loss(model, params, tasks, cfg)


def _call_meta_loss(meta_loss, model, params, tasks, inner_lr, inner_steps, first_order):
    value = meta_loss(model, params, tasks, inner_lr, inner_steps, first_order)
    if not isinstance(value, Tensor):
        raise AssertionError(
            f"my_meta_loss should return a torch tensor (a scalar that .backward() can start "
            f"from), got {type(value).__name__}"
            + ("; did you forget to `return` it?" if value is None else "")
        )
    if value.dim() != 0:
        raise AssertionError(
            f"my_meta_loss should return one number (the mean over the {len(tasks)} tasks), got "
            f"a tensor of shape {tuple(value.shape)}: reduce it with .mean()"
        )
    return value


def _diagnose_value(value: Tensor, model, params, tasks, inner_lr, inner_steps) -> None:
    """Name the usual mistake when ``value`` differs from the reference."""
    with torch.no_grad():
        got = value.item()
    batch = len(tasks)
    per_task = [(t, _reference_adapt(model, params, t, inner_lr, inner_steps, True))
                for t in (tasks[i] for i in range(batch))]
    query = torch.stack([_query_loss(model, phi, t) for t, phi in per_task])
    unadapted = torch.stack([_query_loss(model, params, t) for t, _ in per_task])
    support = torch.stack([mse_loss(forward(model, phi, t.x_support), t.y_support)
                           for t, phi in per_task])
    mistakes = [
        (query.sum(), f"the SUM over the {batch} tasks; eq. (3) is the mean over tasks"),
        (unadapted.mean(), "the query loss at θ, without adaptation: adapt to each task first"),
        (support.mean(), "the loss on the SUPPORT set after adaptation; score φ on the query "
                         "set (x_query, y_query)"),
    ]
    name_the_mistake(got, mistakes, "my_meta_loss", atol=_ATOL, rtol=_RTOL)


def _meta_loss_value(meta_loss, model, params, tasks, inner_lr, inner_steps, first_order) -> None:
    value = _call_meta_loss(meta_loss, model, params, tasks, inner_lr, inner_steps, first_order)
    want = _reference_meta_loss(model, params, tasks, inner_lr, inner_steps, first_order)
    if not _close(value, want):
        _diagnose_value(value, model, params, tasks, inner_lr, inner_steps)
    assert_close(value, want, atol=_ATOL, rtol=_RTOL,
                 what=f"meta-loss ({inner_steps} step(s), first_order={first_order})")


def _meta_loss_gradient(meta_loss, model, params, tasks, inner_lr, inner_steps,
                        first_order) -> None:
    value = _call_meta_loss(meta_loss, model, params, tasks, inner_lr, inner_steps, first_order)
    got = _grads(value, params, "your meta-loss")
    want = _grads(_reference_meta_loss(model, params, tasks, inner_lr, inner_steps, first_order),
                  params, "reference")
    if not first_order and not _close(got, want):
        other = _grads(_reference_meta_loss(model, params, tasks, inner_lr, inner_steps, True),
                       params, "reference")
        if _close(got, other):
            raise AssertionError(
                "with first_order=False the gradient of your meta-loss is the first-order one: "
                f"pass first_order through to my_adapt, and in my_adapt {_CREATE_GRAPH_HINT}"
            )
    assert_close(got, want, atol=_ATOL, rtol=_RTOL,
                 what=f"gradient of the meta-loss ({inner_steps} step(s), "
                      f"first_order={first_order})")


def check_meta_loss(meta_loss: Callable, *, seed: int = 0, hidden: tuple[int, ...] = (40, 40),
                    label: str = "lab04/meta_loss") -> None:
    """Exercise 4.2: ``meta_loss`` against ``maml.meta_loss`` on batches of random tasks.

    Four checks: the value after one second-order step and after two first-order steps (with a
    diagnosis of the usual mistakes), and the gradient with respect to θ in both settings.
    """
    __tracebackhide__ = True
    model, params = _model_and_params(seed + 1, hidden)
    tasks = _tasks(seed + 1, 4)
    lr = 0.02
    fresh = partial(dict, params)
    checks = [
        ("value, 1 step, second order",
         lambda: _meta_loss_value(meta_loss, model, fresh(), tasks, lr, 1, False)),
        ("value, 2 steps, first order",
         lambda: _meta_loss_value(meta_loss, model, fresh(), tasks, lr, 2, True)),
        ("meta-gradient, 2 steps, second order",
         lambda: _meta_loss_gradient(meta_loss, model, fresh(), tasks, lr, 2, False)),
        ("gradient, 1 step, first order",
         lambda: _meta_loss_gradient(meta_loss, model, fresh(), tasks, lr, 1, True)),
    ]
    run_checks(label, checks)


# ---------------------------------------------------------------------------------------------
# Exercise 4.3: meta_step, and meta-training that beats pretraining


_STALE = 1.0  # a stale gradient planted on every parameter before my_meta_step runs


def _meta_step_outcome(meta_step: Callable, seed: int, hidden: tuple[int, ...], inner_lr: float,
                       inner_steps: int, first_order: bool):
    """θ, the returned metrics and θ after one call, with SGD(lr=0.1) and stale gradients."""
    model, theta = _model_and_params(seed + 2, hidden)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(theta[name])
            p.grad = torch.full_like(p, _STALE)  # a step that forgets zero_grad() shows it
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    tasks = _tasks(seed + 2, 4)
    metrics = meta_step(model, optimizer, tasks, inner_lr, inner_steps, first_order)
    after = {name: p.detach().clone() for name, p in model.named_parameters()}
    return model, theta, tasks, metrics, after


def _expected_update(model, theta, tasks, inner_lr, inner_steps, first_order) -> Params:
    loss = _reference_meta_loss(model, theta, tasks, inner_lr, inner_steps, first_order)
    grads = _grads(loss, theta, "reference")
    return {name: theta[name].detach() - 0.1 * grads[name] for name in theta}


def _meta_step_metrics(meta_step, seed, hidden, inner_lr, inner_steps, first_order) -> None:
    model, theta, tasks, metrics, _ = _meta_step_outcome(meta_step, seed, hidden, inner_lr,
                                                         inner_steps, first_order)
    if not isinstance(metrics, dict) or not isinstance(metrics.get("meta_loss"), float):
        raise AssertionError(
            "my_meta_step should return a dict {'meta_loss': <float>} (use loss.item()), got "
            f"{metrics!r}"
        )
    want = _reference_meta_loss(model, theta, tasks, inner_lr, inner_steps, first_order)
    assert_close(metrics["meta_loss"], want.item(), atol=_ATOL, rtol=_RTOL,
                 what="the returned meta_loss (the meta-loss at θ, before the update)")


def _meta_step_update(meta_step, seed, hidden, inner_lr, inner_steps, first_order) -> None:
    model, theta, tasks, _, after = _meta_step_outcome(meta_step, seed, hidden, inner_lr,
                                                       inner_steps, first_order)
    want = _expected_update(model, theta, tasks, inner_lr, inner_steps, first_order)
    if _close(after, {name: t.detach() for name, t in theta.items()}):
        raise AssertionError("my_meta_step did not change the model's parameters: call "
                             "loss.backward() and optimizer.step()")
    if not _close(after, want):
        stale = {name: w - 0.1 * _STALE for name, w in want.items()}
        if _close(after, stale):
            raise AssertionError(
                "the update also holds the gradient left over from before the call: start "
                "my_meta_step with optimizer.zero_grad()"
            )
        other = _expected_update(model, theta, tasks, inner_lr, inner_steps, not first_order)
        if _close(after, other):
            raise AssertionError(
                f"the update is the {'first' if not first_order else 'second'}-order one although "
                f"first_order={first_order}: pass first_order on to my_meta_loss"
            )
    assert_close(after, want, atol=_ATOL, rtol=_RTOL,
                 what="θ after one step of torch.optim.SGD(lr=0.1) (compared with maml.meta_step)")


def _meta_step_checks(meta_step: Callable, seed: int, hidden: tuple[int, ...], inner_steps: int,
                      first_order: bool) -> list:
    args = (meta_step, seed, hidden, 0.02, inner_steps, first_order)
    return [
        ("returns {'meta_loss': float}, the meta-loss before the update",
         lambda: _meta_step_metrics(*args)),
        ("updates θ like maml.meta_step (one SGD step, zero_grad first)",
         lambda: _meta_step_update(*args)),
    ]


def check_meta_step(meta_step: Callable, *, seed: int = 0, hidden: tuple[int, ...] = (40, 40),
                    inner_steps: int = 1, first_order: bool = False,
                    label: str = "lab04/meta_step") -> None:
    """Exercise 4.3, numerically: one call of ``meta_step`` against ``maml.meta_step``.

    ``meta_step(model, optimizer, tasks, inner_lr, inner_steps, first_order)`` runs on a float64
    MLP with ``torch.optim.SGD(lr=0.1)`` and a stale gradient planted on every parameter; it must
    return ``{"meta_loss": float}`` (the meta-loss before the update) and leave θ exactly where one
    SGD step on the reference meta-gradient puts it. Diagnoses a missing ``zero_grad()``, a missing
    ``step()`` and a ``first_order`` that is not passed on.
    """
    __tracebackhide__ = True
    run_checks(label, _meta_step_checks(meta_step, seed, hidden, inner_steps, first_order))


_PRETRAINED: dict[tuple[int, int], tuple[float, float]] = {}
"""(seed, meta_steps) -> (chosen step size, 1-step 5-shot MSE) of the pretraining baseline."""


def _train(step_factory: Callable, seed: int, meta_steps: int) -> nn.Module:
    """Train a fresh MLP 1-40-40-1 with Adam(1e-3) on the paper's task stream (K = 10 support and
    10 query points, 25 tasks per step); the global random state and thread count are restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 1-40-40-1 MLP gains nothing from more threads; one avoids contention
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MLP(1, (40, 40), 1)
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            sampler = partial(SinusoidTasks().sample, k_shot=10, n_query=10)
            cfg = TrainConfig(meta_steps=meta_steps, meta_batch_size=25, seed=seed, progress=False)
            meta_train(step_factory(model, optimizer), sampler, cfg, state={})
    finally:
        torch.set_num_threads(threads)
    return model


def _five_shot_mse(model: nn.Module, inner_lr: float, seed: int) -> tuple[float, float]:
    """Mean query MSE of 100 fixed test tasks before and after one step on K = 5 points."""
    tasks = SinusoidTasks().sample(100, 5, 100, np.random.default_rng([seed, 4, 1]))
    curve = adaptation_curve(model, tasks, (0, 1), inner_lr=inner_lr)
    return float(curve[0].mean()), float(curve[1].mean())


def _pretrain_baseline(seed: int, meta_steps: int) -> tuple[float, float]:
    key = (seed, meta_steps)
    if key not in _PRETRAINED:
        cfg = pretrain.Config()
        model = _train(lambda m, opt: partial(pretrain.pretrain_step, m, opt, cfg=cfg), seed,
                       meta_steps)
        validation = SinusoidTasks().sample(100, 5, 100, np.random.default_rng([seed, 4, 2]))
        inner_lr = pretrain.choose_inner_lr(model, validation, cfg, inner_steps=1)
        _PRETRAINED[key] = (inner_lr, _five_shot_mse(model, inner_lr, seed)[1])
    return _PRETRAINED[key]


def _beats_pretraining(meta_step: Callable, seed: int, meta_steps: int, ratio: float) -> None:
    model = _train(lambda m, opt: lambda tasks: meta_step(m, opt, tasks, 0.01, 1, False), seed,
                   meta_steps)
    before, after = _five_shot_mse(model, 0.01, seed)
    pretrain_lr, baseline = _pretrain_baseline(seed, meta_steps)
    numbers = (f"your MAML after {meta_steps} meta-steps: 5-shot MSE {before:.3f} before and "
               f"{after:.3f} after one step (α = 0.01); pretraining, same budget: {baseline:.3f} "
               f"after one step (α = {pretrain_lr:g}, chosen on validation tasks)")
    if not np.isfinite(after) or after > ratio * baseline:
        raise AssertionError(
            f"{numbers}. MAML should be at least {1 - ratio:.0%} better than pretraining: check "
            "that my_meta_step minimises my_meta_loss with first_order=False and the given "
            "inner_lr, and that the optimizer steps on the model's own parameters"
        )
    if after > ratio * before:
        raise AssertionError(f"{numbers}. One step should lower the MSE by at least "
                             f"{1 - ratio:.0%}: θ has not learned to adapt")


def check_beats_pretraining(meta_step: Callable, *, seed: int = 0, meta_steps: int = 300,
                            ratio: float = 0.95, label: str = "lab04/beats_pretraining") -> None:
    """Exercise 4.3: ``meta_step`` is right on one batch, and meta-training with it beats pretraining.

    First the two checks of :func:`check_meta_step` (second order, one inner step). Then an MLP
    1-40-40-1 is meta-trained with ``meta_step`` for ``meta_steps`` steps (MAML's sinusoid setup:
    K = 10, 25 tasks per step, α = 0.01, Adam 1e-3, second order) and, from the same seed and
    budget, the library's pretraining baseline. On 100 fixed test tasks fine-tuned on K = 5
    points, one step must bring MAML's query MSE below ``ratio`` × the baseline's (whose step size
    is chosen on validation tasks) and below ``ratio`` × MAML's own MSE before the step. With 300
    steps a correct implementation passes with room to spare (MAML/pretrain ≈ 0.84–0.91 over seeds
    0–9), while training on the plain query loss, without adaptation, does not.
    """
    __tracebackhide__ = True
    checks = _meta_step_checks(meta_step, seed, (40, 40), 1, False)
    checks.append((f"after {meta_steps} meta-steps, one step on 5 points beats pretraining",
                   lambda: _beats_pretraining(meta_step, seed, meta_steps, ratio)))
    run_checks(label, checks)
