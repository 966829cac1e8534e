"""Lab 2's mistake catalogue: each usual mistake fails its check with a message that names it.

Every test writes the mistaken implementation a student would write and asserts the check's
message. The correct implementations (the solution's) pass every check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _catalogue import assert_named, with_mistake

from metacourse.checks import lab02
from metacourse.functional import cross_entropy_loss, forward, params_of
from metacourse.tasks.base import Task

pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------------------------------------
# Correct implementations (as in solutions/lab02_episodes_protonets.ipynb), with a mistake switch


def sample_episode(dataset, n_way, k_shot, n_query, rng, *, mistake=None):
    if mistake == "classes with replacement":
        classes = rng.integers(dataset.n_classes, size=n_way)
    elif mistake == "np.random":
        classes = np.random.choice(dataset.n_classes, size=n_way, replace=False)
    else:
        classes = rng.choice(dataset.n_classes, size=n_way, replace=False)
    if mistake == "drawings with replacement":
        drawings = rng.integers(dataset.n_per_class, size=(n_way, k_shot + n_query))
    elif mistake == "query drawn apart":
        support = np.stack([rng.permutation(dataset.n_per_class)[:k_shot] for _ in range(n_way)])
        query = np.stack([rng.permutation(dataset.n_per_class)[:n_query] for _ in range(n_way)])
        drawings = np.concatenate([support, query], axis=1)
    else:
        drawings = np.stack([rng.permutation(dataset.n_per_class)[: k_shot + n_query]
                             for _ in range(n_way)])
    images = dataset.get(np.repeat(classes[:, None], k_shot + n_query, axis=1), drawings)
    shape = tuple(images.shape[2:])
    labels = torch.as_tensor(classes) if mistake == "class ids as labels" else torch.arange(n_way)
    spread = (lambda y, k: y.repeat(k)) if mistake == "tiled labels" else (
        lambda y, k: y.repeat_interleave(k))
    split = k_shot + 1 if mistake == "off by one" else k_shot
    x_query = images[:, split:].reshape(-1, *shape)
    if mistake == "query shuffled alone":  # the images, not their labels
        x_query = x_query[torch.as_tensor(rng.permutation(len(x_query)))]
    return Task(images[:, :split].reshape(-1, *shape), spread(labels, split), x_query,
                spread(labels, k_shot + n_query - split))


def prototypes(embeddings, labels, n_way, *, mistake=None):
    if mistake == "sum":
        return torch.stack([embeddings[labels == k].sum(dim=0) for k in range(n_way)])
    if mistake == "sorted labels":
        return embeddings.reshape(n_way, -1, embeddings.shape[-1]).mean(dim=1)
    if mistake == "float32 zeros":
        sums = torch.zeros(n_way, embeddings.shape[1]).index_add_(0, labels, embeddings)
        return sums / torch.bincount(labels, minlength=n_way)[:, None]
    if mistake == "wrong axis":
        return torch.stack([embeddings[labels == k].mean(dim=1) for k in range(n_way)])
    return torch.stack([embeddings[labels == k].mean(dim=0) for k in range(n_way)])


def protonet_loss(model, params, task, *, mistake=None):
    support = forward(model, params, task.x_support)
    query = forward(model, params, task.x_query)
    n_way = int(task.y_support.max()) + 1
    centres = prototypes(support, task.y_support, n_way)
    if mistake == "detached":
        centres = centres.detach()
    if mistake == "support":
        query, labels = support, task.y_support
    else:
        labels = task.y_query
    distances = ((query[:, None, :] - centres[None, :, :]) ** 2).sum(dim=-1)
    logits = distances if mistake == "plus" else -distances
    if mistake == "sum":
        return cross_entropy_loss(logits, labels) * len(labels)
    if mistake == "probabilities":
        return cross_entropy_loss(logits.softmax(-1), labels)
    if mistake == "nll on logits":
        return torch.nn.functional.nll_loss(logits, labels)
    return cross_entropy_loss(logits, labels)


def meta_step(model, optimizer, tasks, *, mistake=None):
    params = params_of(model)
    losses = torch.stack([protonet_loss(model, params, tasks[i]) for i in range(len(tasks))])
    loss = {"sum": losses.sum(), "first task": losses[0]}.get(mistake, losses.mean())
    if mistake != "no zero_grad":
        optimizer.zero_grad()
    loss.backward()
    if mistake == "zero_grad after backward":
        optimizer.zero_grad()
    if mistake != "no step":
        optimizer.step()
    if mistake == "tensor":
        return loss
    return {"meta_loss": loss.item()}


# ---------------------------------------------------------------------------------------------


def test_correct_solutions_pass(capsys):
    lab02.check_sample_episode(sample_episode)
    lab02.check_prototypes(prototypes)
    lab02.check_protonet_loss(protonet_loss)
    lab02.check_meta_step(meta_step)
    assert capsys.readouterr().out.splitlines() == [
        "lab02/sample_episode: 5/5 checks passed", "lab02/prototypes: 2/2 checks passed",
        "lab02/protonet_loss: 3/3 checks passed", "lab02/meta_step: 2/2 checks passed"]


@pytest.mark.parametrize(("mistake", "message"), [
    ("classes with replacement", "the classes were drawn WITH replacement"),
    ("drawings with replacement", "the drawings were drawn WITH replacement"),
    ("query drawn apart", "the query set leaks the support set"),
    ("tiled labels", "not labels.repeat(k_shot)"),
    ("query shuffled alone", "reorder their labels the same way"),
    ("class ids as labels", "labels are relabelled within the task"),
    ("np.random", "never np.random.* or random.*"),
    ("off by one", "needs 10 support and 15 query examples"),
])
def test_sampler_mistakes_are_named(mistake, message):
    assert_named(lab02.check_sample_episode, with_mistake(sample_episode, mistake), message)


def test_shuffled_queries_are_not_blamed_on_replacement():
    message = assert_named(lab02.check_sample_episode, with_mistake(sample_episode, "query shuffled alone"),
                           "the labels must follow the images")
    assert "WITH replacement" not in message


def test_replacement_is_caught_even_when_the_usual_seeds_do_not_collide():
    """The data set of exactly n_way classes makes a draw with replacement collide."""
    message = assert_named(lab02.check_sample_episode, with_mistake(sample_episode, "classes with replacement"),
                     "rng.choice(dataset.n_classes, n_way, replace=False)")
    assert "even when that is all there is" in message


@pytest.mark.parametrize(("mistake", "message"), [
    ("sum", "the SUM of each class's embeddings"),
    ("sorted labels", "assume the support set is sorted by label"),
    ("wrong axis", "the mean was taken over the embedding dimension"),
    ("float32 zeros", "must take their dtype"),
])
def test_prototype_mistakes_are_named(mistake, message):
    assert_named(lab02.check_prototypes, with_mistake(prototypes, mistake), message)


@pytest.mark.parametrize(("mistake", "message"), [
    ("plus", "they must be −distance"),
    ("support", "score the QUERY set"),
    ("sum", "the SUM over the"),
    ("probabilities", "cross_entropy_loss got probabilities"),
    ("nll on logits", "the log-softmax is missing"),
    ("detached", "the gradient does not flow through the prototypes"),
])
def test_loss_mistakes_are_named(mistake, message):
    assert_named(lab02.check_protonet_loss, with_mistake(protonet_loss, mistake), message)


def test_planted_cdist_bug_is_named():
    assert_named(lab02.check_protonet_loss, lab02.cdist_protonet_loss, "the distance is not squared",
           "torch.cdist")


@pytest.mark.parametrize(("mistake", "message"), [
    ("no zero_grad", "call optimizer.zero_grad() before loss.backward()"),
    ("tensor", "my_meta_step returned a tensor: return a dict with a float"),
    ("no step", "my_meta_step did not change θ"),
    ("zero_grad after backward", "my_meta_step did not change θ"),
    ("sum", "the SUM of the 3 task losses"),
    ("first task", "the loss of the first task only"),
])
def test_meta_step_mistakes_are_named(mistake, message):
    assert_named(lab02.check_meta_step, with_mistake(meta_step, mistake), message)


def test_random_task_is_a_task():
    """The loss checks' tasks have shuffled support labels (so a sorted-label shortcut fails)."""
    task = lab02._random_task(1)
    assert isinstance(task, Task)
    assert task.y_support.tolist() != sorted(task.y_support.tolist())
