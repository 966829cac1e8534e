"""Lab 4b's (MAML on Omniglot) mistake catalogue: each usual mistake fails its check with a
message that names it.

Every test writes the mistaken implementation a student would write and asserts the check's
message. The correct implementations (the solution's) pass every check.
"""

from __future__ import annotations

import pytest
import torch
from _catalogue import assert_named, with_mistake

from metacourse.checks import lab04_omniglot as checks
from metacourse.functional import accuracy, cross_entropy_loss, forward, params_of

pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------------------------------------
# Correct implementations (as in solutions/lab04_maml_omniglot.ipynb), with a mistake switch


def adapt(model, params, x_support, y_support, inner_lr, inner_steps, first_order, *,
          mistake=None):
    adapted = params if mistake == "in place" else dict(params)
    steps = inner_steps - 1 if mistake == "one step short" else inner_steps
    for _ in range(steps):
        loss = cross_entropy_loss(forward(model, adapted, x_support), y_support)
        create_graph = {"no create_graph": False, "always create_graph": True}.get(
            mistake, not first_order)
        wrt = params if mistake == "grad wrt theta" else adapted
        grads = torch.autograd.grad(loss, list(wrt.values()), create_graph=create_graph)
        sign = -1.0 if mistake == "ascent" else 1.0
        if mistake == "in place":
            for (name, p), g in zip(list(adapted.items()), grads):
                adapted[name] = p - inner_lr * g
        else:
            adapted = {name: p - sign * inner_lr * g for (name, p), g in zip(adapted.items(), grads)}
    return adapted


def query_accuracy(model, params, task, inner_lr, inner_steps, *, mistake=None):
    if mistake == "all under no_grad":
        with torch.no_grad():
            phi = adapt(model, params, task.x_support, task.y_support, inner_lr, inner_steps, True)
            return accuracy(forward(model, phi, task.x_query), task.y_query).item()
    theta = {n: p.detach().requires_grad_() for n, p in params.items()}
    with torch.enable_grad():
        phi = adapt(model, theta, task.x_support, task.y_support, inner_lr, inner_steps, True)
    if mistake == "no adaptation":
        phi = theta
    x, y = (task.x_support, task.y_support) if mistake == "support" else (task.x_query, task.y_query)
    with torch.no_grad():
        value = accuracy(forward(model, phi, x), y).item()
    return 100 * value if mistake == "percent" else value


def meta_step(model, optimizer, tasks, inner_lr, inner_steps, first_order, *, mistake=None):
    if mistake != "no zero_grad":
        optimizer.zero_grad()
    params, losses = params_of(model), []
    for task in (tasks[i] for i in range(len(tasks))):
        phi = adapt(model, params, task.x_support, task.y_support, inner_lr, inner_steps,
                    True if mistake == "first_order not passed" else first_order)
        if mistake == "no adaptation":
            phi = params
        x, y = (task.x_support, task.y_support) if mistake == "support" else (task.x_query,
                                                                              task.y_query)
        losses.append(cross_entropy_loss(forward(model, phi, x), y))
    loss = torch.stack(losses).sum() if mistake == "sum" else torch.stack(losses).mean()
    if mistake == "backward per task":
        for task_loss in losses:
            task_loss.backward(retain_graph=True)
    else:
        loss.backward()
    if mistake != "no step":
        optimizer.step()
    return loss if mistake == "tensor" else {"meta_loss": loss.item()}


# ---------------------------------------------------------------------------------------------


def test_correct_solutions_pass(capsys):
    """With every mistake switched off, the catalogue's implementations pass every check."""
    for check, function in ((checks.check_adapt, adapt), (checks.check_query_accuracy, query_accuracy),
                            (checks.check_meta_step, meta_step)):
        check(function)
    verdicts = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[1] for line in verdicts] == ["5/5 checks passed", "2/2 checks passed",
                                                          "2/2 checks passed"]


@pytest.mark.parametrize(("mistake", "message"), [
    ("no create_graph", "equals the FIRST-order one"),
    ("always create_graph", "still holds the second-order terms"),
    ("in place", "changed the caller's params dict"),
    ("one step short", "the values of 1 step(s), not 2"),
    ("ascent", "gradient ASCENT"),
    ("grad wrt theta", "the gradient is taken with respect to θ"),
])
def test_adapt_mistakes_are_named(mistake, message):
    assert_named(checks.check_adapt, with_mistake(adapt, mistake), message)


def test_planted_restart_bug_is_named():
    assert_named(checks.check_adapt, checks.restart_adapt, "every step starts again from θ")


@pytest.mark.parametrize(("mistake", "message"), [
    ("support", "SUPPORT set"),
    ("no adaptation", "are those of θ itself"),
    ("percent", "look like percentages"),
    ("all under no_grad", "my_adapt ran under torch.no_grad()"),
])
def test_query_accuracy_mistakes_are_named(mistake, message):
    assert_named(checks.check_query_accuracy, with_mistake(query_accuracy, mistake), message)


@pytest.mark.parametrize(("mistake", "message"), [
    ("no zero_grad", "start my_meta_step with optimizer.zero_grad()"),
    ("no step", "my_meta_step did not change θ"),
    ("tensor", "my_meta_step returned a tensor"),
    ("sum", "the SUM of the 3 tasks' query losses"),
    ("no adaptation", "the query loss at θ, without adaptation"),
    ("support", "the loss on the SUPPORT set after adaptation"),
    ("first_order not passed", "first-order MAML's"),
    ("backward per task", "θ moved 3 times too far"),
])
def test_meta_step_mistakes_are_named(mistake, message):
    assert_named(checks.check_meta_step, with_mistake(meta_step, mistake), message)
