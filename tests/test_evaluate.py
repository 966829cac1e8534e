import numpy as np
import pytest
import torch

from metacourse.algorithms import maml
from metacourse.evaluate import adaptation_curve, summarize
from metacourse.functional import forward, mse_loss, params_of
from metacourse.models import MLP
from metacourse.tasks import SinusoidTasks


def test_summary_is_mean_ci95_median():
    values = np.array([1.0, 2.0, 3.0, 10.0])
    summary = summarize(values)
    assert summary.mean == pytest.approx(4.0)
    assert summary.ci95 == pytest.approx(1.96 * values.std(ddof=1) / 2.0)
    assert summary.median == pytest.approx(2.5) and summary.n == 4
    with pytest.raises(ValueError, match="at least one task"):
        summarize([])


def test_adaptation_curve_matches_maml_adapt_task_by_task():
    model = MLP(1, (16, 16), 1)
    tasks = SinusoidTasks().sample(6, 5, 20, np.random.default_rng(0))
    curve = adaptation_curve(model, tasks, steps=(0, 2), inner_lr=0.02, chunk_size=4)
    assert curve[0].shape == (6,)
    for t in range(6):
        task = tasks[t]
        with torch.no_grad():
            before = mse_loss(forward(model, params_of(model), task.x_query), task.y_query)
        adapted = maml.adapt(model, params_of(model), task,
                             maml.Config(inner_lr=0.02, inner_steps=2, first_order=True))
        after = mse_loss(forward(model, adapted, task.x_query), task.y_query)
        assert curve[0][t] == pytest.approx(before.item(), rel=1e-5)
        assert curve[2][t] == pytest.approx(after.item(), rel=1e-4)


def test_adaptation_curve_rejects_bad_arguments():
    model, tasks = MLP(), SinusoidTasks().sample(2, 5, 5, np.random.default_rng(0))
    with pytest.raises(ValueError, match="metric"):
        adaptation_curve(model, tasks, (1,), 0.01, metric="f1")
    with pytest.raises(ValueError, match="non-negative"):
        adaptation_curve(model, tasks, (-1,), 0.01)
