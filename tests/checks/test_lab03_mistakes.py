"""Lab 03's mistake catalogue: each typical wrong implementation of Exercises 3.1–3.3 fails its
check with a message that names the mistake and the fix; the reference passes."""

from __future__ import annotations

import pytest
import torch
from _catalogue import assert_named

from metacourse.checks import lab03
from metacourse.functional import mse_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _adapt(pairs=lambda x, y: torch.cat([x, y], -1), pool=lambda codes: codes.mean(1)):
    def my_adapt(model, x_support, y_support):
        return pool(model.encoder(pairs(x_support, y_support)))
    return my_adapt


def _predict(inputs=lambda x, r: torch.cat([x, r], -1), repeat=lambda r, n: r.unsqueeze(1).expand(-1, n, -1)):
    def my_predict(model, r, x_query):
        return model.decoder(inputs(x_query, repeat(r, x_query.shape[1])))
    return my_predict


def _meta_loss(read=lambda t: (t.x_support, t.y_support), at=lambda t: (t.x_query, t.y_query),
               reduce=lambda per_task: per_task.mean(), points=mse_loss):
    def my_meta_loss(model, tasks):
        r = _adapt()(model, *read(tasks))
        x, y = at(tasks)
        return reduce(points(_predict()(model, r, x), y))
    return my_meta_loss


ADAPT_MISTAKES = {
    "sum instead of mean": (_adapt(pool=lambda c: c.sum(1)), r"SUM of the encoded pairs.*use the mean"),
    "mean over the features": (_adapt(pool=lambda c: c.mean(-1)), r"over the features.*dim=1"),
    "mean over the tasks": (_adapt(pool=lambda c: c.mean(0)), r"over the TASKS \(dim=0\).*dim=1"),
    "maximum instead of mean": (_adapt(pool=lambda c: c.max(1).values), r"MAXIMUM.*mean"),
    "pairs as [y, x]": (_adapt(pairs=lambda x, y: torch.cat([y, x], -1)), r"\[y, x\].*torch\.cat\(\[x_support"),
    "x and y stacked on a new axis": (_adapt(pairs=lambda x, y: torch.stack([x, y], -1)),
                                      r"extra axis of size 1.*torch\.cat"),
    "x and y concatenated along the points": (_adapt(pairs=lambda x, y: torch.cat([x, y], 1)),
                                              r"reads a pair \[x_i, y_i\]"),
    "y forgotten": (_adapt(pairs=lambda x, y: x), r"reads a pair \[x_i, y_i\]"),
    "last point only": (_adapt(pool=lambda c: c[:, -1]), r"LAST support point only.*average"),
}

PREDICT_MISTAKES = {
    "[r, x] instead of [x, r]": (_predict(inputs=lambda x, r: torch.cat([r, x], -1)), r"\[r, x\]; it reads \[x, r\]"),
    "r not repeated": (_predict(repeat=lambda r, n: r), r"repeat it along the query points"),
    "task 0's r for all": (_predict(repeat=lambda r, n: r[:1].unsqueeze(1).expand(len(r), n, -1)),
                           r"task 0's r.*own r_t"),
    "the mean r for all": (_predict(repeat=lambda r, n: r.mean(0).expand(len(r), n, -1)), r"the mean r.*own r_t"),
    "x forgotten": (_predict(inputs=lambda x, r: r), r"decoder g reads \[x, r\]"),
}

META_LOSS_MISTAKES = {
    "query points encoded too": (
        _meta_loss(read=lambda t: (torch.cat([t.x_support, t.x_query], 1), torch.cat([t.y_support, t.y_query], 1))),
        r"QUERY points are encoded too.*support set only"),
    "r from the query set": (_meta_loss(read=lambda t: (t.x_query, t.y_query)), r"r is read from the QUERY set"),
    "scored on the support set": (_meta_loss(at=lambda t: (t.x_support, t.y_support)), r"SUPPORT set.*x_query"),
    "sum over tasks": (_meta_loss(reduce=lambda per_task: per_task.sum()), r"SUM over the 4 tasks; use the mean"),
    "sum over points": (_meta_loss(points=lambda p, y: ((p - y) ** 2).sum((1, 2))), r"SUMMED over the 7 query points"),
    "half the MSE": (_meta_loss(reduce=lambda per_task: per_task.mean() / 2), r"HALF the mean squared error"),
    "root of the MSE": (_meta_loss(reduce=lambda per_task: per_task.mean().sqrt()), r"ROOT of the mean squared"),
    "detached": (lambda model, tasks: _meta_loss()(model, tasks).detach(), r"does not depend on the model's weights"),
    "encoder left out of the graph": (
        lambda model, tasks: mse_loss(_predict()(model, _adapt()(model, tasks.x_support, tasks.y_support).detach(),
                                                 tasks.x_query), tasks.y_query).mean(),
        r"does not depend on \[.*encoder.*use both the encoder and the decoder"),
}


def test_reference_functions_pass(capsys):
    lab03.check_adapt(_adapt())
    lab03.check_predict(_predict())
    lab03.check_meta_loss(_meta_loss())
    assert capsys.readouterr().out.splitlines() == [
        "lab03/adapt: 4/4 checks passed", "lab03/predict: 3/3 checks passed", "lab03/meta_loss: 3/3 checks passed"]


@pytest.mark.parametrize("name", ADAPT_MISTAKES)
def test_adapt_mistake_is_named(name):
    assert_named(lab03.check_adapt, *ADAPT_MISTAKES[name], regex=True)


@pytest.mark.parametrize("name", PREDICT_MISTAKES)
def test_predict_mistake_is_named(name):
    assert_named(lab03.check_predict, *PREDICT_MISTAKES[name], regex=True)


@pytest.mark.parametrize("name", META_LOSS_MISTAKES)
def test_meta_loss_mistake_is_named(name):
    assert_named(lab03.check_meta_loss, *META_LOSS_MISTAKES[name], regex=True)


def test_wrong_adapt_and_predict_do_not_cost_the_meta_loss(capsys):
    namespace = {"mse_loss": mse_loss, "my_adapt": ADAPT_MISTAKES["sum instead of mean"][0],
                 "my_predict": PREDICT_MISTAKES["[r, x] instead of [x, r]"][0]}
    exec("def my_meta_loss(model, tasks):\n"
         "    r = my_adapt(model, tasks.x_support, tasks.y_support)\n"
         "    return mse_loss(my_predict(model, r, tasks.x_query), tasks.y_query).mean()", namespace)
    lab03.check_meta_loss(namespace["my_meta_loss"])
    assert capsys.readouterr().out == "lab03/meta_loss: 3/3 checks passed\n"
