from functools import partial

import numpy as np
import pytest
import torch

from metacourse.algorithms import pretrain
from metacourse.functional import forward, params_of
from metacourse.models import MLP
from metacourse.tasks import SinusoidTasks
from metacourse.train import TrainConfig, meta_train


def test_pretrain_loss_is_the_pooled_mse():
    model = MLP(1, (8,), 1)
    tasks = SinusoidTasks().sample(3, 4, 6, np.random.default_rng(0))
    x = torch.cat([tasks.x_support, tasks.x_query], 1).reshape(-1, 1)
    y = torch.cat([tasks.y_support, tasks.y_query], 1).reshape(-1, 1)
    expected = ((forward(model, params_of(model), x) - y) ** 2).mean()
    assert torch.allclose(pretrain.pretrain_loss(model, params_of(model), tasks, pretrain.Config()), expected)


def test_pretraining_learns_the_mean_function_and_picks_a_grid_step_size():
    torch.manual_seed(0)
    model = MLP(1, (40, 40), 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = partial(pretrain.pretrain_step, model, optimizer, cfg=pretrain.Config())
    sampler = partial(SinusoidTasks().sample, k_shot=10, n_query=10)
    history = meta_train(step, sampler, TrainConfig(meta_steps=200, progress=False), state={})
    assert np.mean(history.metrics["pretrain_loss"][-20:]) < np.mean(history.metrics["pretrain_loss"][:20])
    validation = SinusoidTasks().sample(20, 5, 20, np.random.default_rng(1))
    chosen = pretrain.choose_inner_lr(model, validation, pretrain.Config(), inner_steps=5)
    assert chosen in pretrain.Config().inner_lr_grid


def test_bad_grid_is_rejected():
    with pytest.raises(ValueError, match="inner_lr_grid"):
        pretrain.Config(inner_lr_grid=(-0.1,))
