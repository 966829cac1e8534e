"""The black-box verbs (adapt / task_loss / meta_loss / meta_step) and short learning tests."""

from functools import partial

import numpy as np
import pytest
import torch

from metacourse.algorithms import blackbox
from metacourse.functional import mse_loss, params_of
from metacourse.models import MLP
from metacourse.models.blackbox import CNP, SNAIL, LSTMLearner
from metacourse.models.hypernet import HyperNetwork
from metacourse.tasks import SinusoidTasks, TaskBatch
from metacourse.train import TrainConfig, meta_train


def _tasks(n=4, k=5, q=6, seed=0):
    return SinusoidTasks().sample(n, k, q, np.random.default_rng(seed))


def test_meta_loss_is_the_mean_of_single_task_losses():
    model, tasks, cfg = CNP(hidden=16, r_dim=8), _tasks(), blackbox.Config()
    singles = torch.stack([blackbox.task_loss(model, params_of(model), tasks[i], cfg) for i in range(len(tasks))])
    assert singles.shape == (4,)
    torch.testing.assert_close(blackbox.meta_loss(model, params_of(model), tasks, cfg), singles.mean())


def test_adapt_reads_only_the_support_set_and_runs_with_any_parameter_dict():
    model, tasks, cfg = CNP(hidden=16, r_dim=8), _tasks(), blackbox.Config()
    phi = blackbox.adapt(model, params_of(model), tasks, cfg)
    other = TaskBatch(tasks.x_support, tasks.y_support, tasks.x_query + 1, tasks.y_query * 2)
    torch.testing.assert_close(blackbox.adapt(model, params_of(model), other, cfg)["r"], phi["r"])
    assert blackbox.adapt(model, params_of(model), tasks[0], cfg)["r"].shape == (1, 8)
    zeros = {n: torch.zeros_like(p) for n, p in params_of(model).items()}    # θ = 0: every output is 0
    assert blackbox.predict(model, zeros, blackbox.adapt(model, zeros, tasks, cfg), tasks.x_query).abs().max() == 0


def test_query_loss_is_the_mse_of_the_predictions_from_the_adapted_state():
    model, tasks, cfg = LSTMLearner(hidden=8), _tasks(), blackbox.Config()
    phi = model(tasks.x_support, tasks.y_support, stage="adapt")
    expected = mse_loss(model(phi, tasks.x_query, stage="predict"), tasks.y_query)
    torch.testing.assert_close(blackbox.task_loss(model, params_of(model), tasks, cfg), expected)


def test_online_objective_scores_every_point_of_support_then_query():
    model, tasks = LSTMLearner(hidden=8), _tasks()
    cfg = blackbox.Config(objective="online")
    x, y = torch.cat([tasks.x_support, tasks.x_query], 1), torch.cat([tasks.y_support, tasks.y_query], 1)
    expected = mse_loss(model(x, y, stage="online")[0], y)
    torch.testing.assert_close(blackbox.task_loss(model, params_of(model), tasks, cfg), expected)


def test_meta_step_clips_the_gradient_and_updates_the_weights():
    model, tasks = CNP(hidden=16, r_dim=8), _tasks()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    metrics = blackbox.meta_step(model, optimizer, tasks, blackbox.Config(max_grad_norm=1e-3))
    assert set(metrics) == {"meta_loss"}
    grad_norm = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
    assert grad_norm <= 1e-3 * 1.001
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("kwargs", [{"loss": "hinge"}, {"objective": "offline"}, {"max_grad_norm": 0.0}])
def test_bad_config_is_rejected(kwargs):
    with pytest.raises(ValueError):
        blackbox.Config(**kwargs)


def test_task_scores_reports_accuracy_for_classification():
    model = CNP(4, 3, hidden=8, r_dim=8)
    x, y = torch.randn(5, 6, 4), torch.randint(0, 3, (5, 6))
    tasks = TaskBatch(x, y, x, y)
    scores = blackbox.task_scores(model, tasks, blackbox.Config(loss="cross_entropy"), metric="accuracy", chunk_size=2)
    assert scores.shape == (5,) and ((0 <= scores) & (scores <= 1)).all()


LEARNERS = {  # (model, meta-steps, Adam step size, required MSE ratio after/before): seconds on one core
    "CNP": (lambda: CNP(hidden=32, r_dim=32), 300, 3e-3, 0.6),
    "hypernetwork": (lambda: HyperNetwork(MLP(1, (16, 16), 1), hidden=32, r_dim=32), 300, 3e-3, 0.6),
    "LSTM": (lambda: LSTMLearner(hidden=32), 400, 1e-2, 0.6),
    "SNAIL": (lambda: SNAIL(max_len=11, channels=16, filters=8, key_dim=8, value_dim=8, tc_blocks=1), 150, 1e-2, 0.8),
}


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_black_box_learners_learn_sinusoids_in_seconds(name):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    build, steps, outer_lr, ratio = LEARNERS[name]
    model, cfg = build(), blackbox.Config()
    test = SinusoidTasks().sample(100, 10, 50, np.random.default_rng(123))
    before = blackbox.task_scores(model, test, cfg).mean()
    optimizer = torch.optim.Adam(model.parameters(), lr=outer_lr)
    sampler = partial(SinusoidTasks().sample, k_shot=10, n_query=10)
    meta_train(partial(blackbox.meta_step, model, optimizer, cfg=cfg), sampler,
               TrainConfig(meta_steps=steps, meta_batch_size=8, progress=False), state={})
    after = blackbox.task_scores(model, test, cfg).mean()
    assert after < ratio * before, (before, after)


def test_online_classification_learns_to_bind_labels_within_an_episode():
    """Episodes of 2 random vectors, each shown 4 times with a random label: predicting the label of
    a repeated vector is possible only by remembering it; chance is 50%."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, cfg = LSTMLearner(6, 2, hidden=32), blackbox.Config(loss="cross_entropy", objective="online")

    def episodes(n, rng):
        prototypes = torch.as_tensor(rng.standard_normal((n, 2, 6)), dtype=torch.float32)
        labels = torch.as_tensor(rng.random((n, 8)).argsort(-1) % 2)
        return TaskBatch(prototypes.gather(1, labels[..., None].expand(-1, -1, 6)), labels,
                         torch.zeros(n, 0, 6), torch.zeros(n, 0, dtype=torch.long))

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    meta_train(partial(blackbox.meta_step, model, optimizer, cfg=cfg), episodes,
               TrainConfig(meta_steps=300, meta_batch_size=32, progress=False), state={})
    test = episodes(200, np.random.default_rng(7))
    with torch.no_grad():
        prediction, labels = blackbox.online_predictions(model, params_of(model), test)
    later = (prediction.argmax(-1) == labels)[:, 4:].float().mean()   # every vector seen before
    assert later > 0.8, later
