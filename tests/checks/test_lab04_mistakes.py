"""Lab 4's (MAML on sinusoids) mistake catalogue: each usual mistake fails its check with a message
that names it and the fix.

Every test writes the mistaken implementation a student would write (the solution's code with one
mistake switched on) and asserts the check's message. With no mistake, every check passes.
"""

from __future__ import annotations

import pytest
import torch
from _catalogue import assert_named, with_mistake

from metacourse.checks import lab04 as checks
from metacourse.functional import expand_over_tasks, forward, mse_loss, params_of

pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------------------------------------
# The solution's implementations (solutions/lab04_maml_sinusoid.ipynb), with a mistake switch


def adapt(model, params, x_support, y_support, inner_lr, inner_steps, first_order, *, mistake=None):
    adapted = params if mistake == "in place" else dict(params)
    for _ in range(inner_steps):
        support_loss = mse_loss(forward(model, adapted, x_support), y_support).sum()
        create_graph = {"no create_graph": False, "always create_graph": True}.get(mistake, not first_order)
        grads = torch.autograd.grad(support_loss, list(adapted.values()), create_graph=create_graph)
        if mistake == "detached":
            grads = [g.detach() for g in grads]
        if mistake == "in place":
            for (name, p), g in zip(list(adapted.items()), grads):
                adapted[name] = p - inner_lr * g
        else:
            adapted = {name: p - inner_lr * g for (name, p), g in zip(adapted.items(), grads)}
    return None if mistake == "no return" else adapted


def meta_loss(model, params, tasks, inner_lr, inner_steps, first_order, *, mistake=None):
    expanded = expand_over_tasks(params, len(tasks))
    adapted = expanded if mistake == "no adaptation" else adapt(
        model, expanded, tasks.x_support, tasks.y_support, inner_lr, inner_steps,
        True if mistake == "first_order not passed" else first_order)
    x, y = (tasks.x_support, tasks.y_support) if mistake == "support" else (tasks.x_query, tasks.y_query)
    losses = mse_loss(forward(model, adapted, x), y)
    if mistake == "per task":
        return losses
    if mistake == "float":
        return losses.mean().item()
    return losses.sum() if mistake == "sum" else losses.mean()


def meta_step(model, optimizer, tasks, inner_lr, inner_steps, first_order, *, mistake=None):
    if mistake != "no zero_grad":
        optimizer.zero_grad()
    loss = meta_loss(model, params_of(model), tasks, inner_lr, inner_steps,
                     True if mistake == "first_order not passed" else first_order)
    loss.backward()
    if mistake != "no step":
        optimizer.step()
    return loss if mistake == "tensor" else {"meta_loss": loss.item()}


# ---------------------------------------------------------------------------------------------


def test_correct_solutions_pass(capsys):
    """With every mistake switched off, the catalogue's implementations pass every check."""
    for check, function in ((checks.check_adapt, adapt), (checks.check_meta_loss, meta_loss),
                            (checks.check_meta_step, meta_step)):
        check(function)
    verdicts = capsys.readouterr().out.splitlines()
    assert all(line.split(": ")[1].split("/")[0] == line.split("/")[-1].split(" ")[0] for line in verdicts), verdicts


@pytest.mark.parametrize(("mistake", "message"), [
    ("no create_graph", "equals the FIRST-order one"),
    ("detached", "equals the FIRST-order one"),
    ("always create_graph", "still holds the second-order terms"),
    ("in place", "changed the caller's params dict"),
    ("no return", "did you forget to `return` it?"),
])
def test_adapt_mistakes_are_named(mistake, message):
    assert_named(checks.check_adapt, with_mistake(adapt, mistake), message)


def test_planted_bug_is_named():
    assert_named(checks.check_adapt, checks.adapt_without_create_graph, "create_graph")


@pytest.mark.parametrize(("mistake", "message"), [
    ("sum", "the SUM over the"),
    ("support", "the loss on the SUPPORT set after adaptation; score φ on the query set"),
    ("no adaptation", "without adaptation: adapt to each task first"),
    ("per task", "reduce it with .mean()"),
    ("float", "should return a torch tensor"),
    ("first_order not passed", "pass first_order through to my_adapt"),
])
def test_meta_loss_mistakes_are_named(mistake, message):
    assert_named(checks.check_meta_loss, with_mistake(meta_loss, mistake), message)


@pytest.mark.parametrize(("mistake", "message"), [
    ("no zero_grad", "left over from before the call"),
    ("no step", "did not change the model's parameters"),
    ("tensor", "should return a dict {'meta_loss': <float>}"),
    ("first_order not passed", "pass first_order on to my_meta_loss"),
])
def test_meta_step_mistakes_are_named(mistake, message):
    assert_named(checks.check_meta_step, with_mistake(meta_step, mistake), message)
