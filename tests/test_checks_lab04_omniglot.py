"""The checks of Lab 4b (MAML on Omniglot) pass a correct solution and name the usual mistakes."""

from __future__ import annotations

import pytest
import torch

from metacourse.checks import lab04_omniglot as checks
from metacourse.functional import accuracy, cross_entropy_loss, expand_over_tasks, forward, params_of


def adapt(model, params, x_support, y_support, inner_lr, inner_steps, first_order,
          create_graph=None):
    adapted = dict(params)
    for _ in range(inner_steps):
        loss = cross_entropy_loss(forward(model, adapted, x_support), y_support)
        grads = torch.autograd.grad(loss, list(adapted.values()),
                                    create_graph=(not first_order) if create_graph is None
                                    else create_graph)
        adapted = {name: p - inner_lr * g for (name, p), g in zip(adapted.items(), grads)}
    return adapted


def query_accuracy(model, params, task, inner_lr, inner_steps, on_support=False):
    theta = {n: p.detach().requires_grad_() for n, p in params.items()}
    with torch.enable_grad():
        phi = adapt(model, theta, task.x_support, task.y_support, inner_lr, inner_steps, True)
    x, y = (task.x_support, task.y_support) if on_support else (task.x_query, task.y_query)
    with torch.no_grad():
        return accuracy(forward(model, phi, x), y).item()


def meta_step(model, optimizer, tasks, inner_lr, inner_steps, first_order):
    optimizer.zero_grad()
    params = params_of(model)
    losses = []
    for i in range(len(tasks)):
        task = tasks[i]
        phi = adapt(model, params, task.x_support, task.y_support, inner_lr, inner_steps,
                    first_order)
        losses.append(cross_entropy_loss(forward(model, phi, task.x_query), task.y_query))
    loss = torch.stack(losses).mean()
    loss.backward()
    optimizer.step()
    return {"meta_loss": loss.item()}


def test_correct_solutions_pass(capsys):
    checks.check_adapt(adapt)
    checks.check_query_accuracy(query_accuracy)
    checks.check_meta_step(meta_step)
    assert capsys.readouterr().out.splitlines() == [
        "lab04_omniglot/adapt: 5/5 checks passed",
        "lab04_omniglot/query_accuracy: 2/2 checks passed",
        "lab04_omniglot/meta_step: 2/2 checks passed"]


def test_missing_create_graph_is_named():
    def no_graph(*args):
        return adapt(*args, create_graph=False)

    with pytest.raises(AssertionError, match="FIRST-order one"):
        checks.check_adapt(no_graph)


def test_support_set_accuracy_is_named():
    def on_support(*args):
        return query_accuracy(*args, on_support=True)

    with pytest.raises(AssertionError, match="SUPPORT set"):
        checks.check_query_accuracy(on_support)


def test_first_order_update_for_second_order_is_named():
    def always_first_order(model, optimizer, tasks, inner_lr, inner_steps, first_order):
        return meta_step(model, optimizer, tasks, inner_lr, inner_steps, True)

    with pytest.raises(AssertionError, match="first-order MAML's"):
        checks.check_meta_step(always_first_order)


def test_vmapped_solution_passes_too():
    """Adapting all tasks at once (the library's vmap backend) is as right as a loop."""
    def batched_meta_step(model, optimizer, tasks, inner_lr, inner_steps, first_order):
        optimizer.zero_grad()
        params = expand_over_tasks(params_of(model), len(tasks))
        for _ in range(inner_steps):
            loss = cross_entropy_loss(forward(model, params, tasks.x_support, batched=True),
                                      tasks.y_support).sum()
            grads = torch.autograd.grad(loss, list(params.values()), create_graph=not first_order)
            params = {n: p - inner_lr * g for (n, p), g in zip(params.items(), grads)}
        loss = cross_entropy_loss(forward(model, params, tasks.x_query, batched=True),
                                  tasks.y_query).mean()
        loss.backward()
        optimizer.step()
        return {"meta_loss": loss.item()}

    checks.check_meta_step(batched_meta_step)
