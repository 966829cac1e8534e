"""Chunked meta-steps (``maml.Config(task_chunk=...)``): bounded memory, the same update."""

import numpy as np
import pytest
import torch

from metacourse.algorithms import maml
from metacourse.models.conv4 import Conv4
from metacourse.tasks.episodes import ArrayImages, sample_episodes


def _step(task_chunk, tasks, backend):
    torch.manual_seed(0)
    model = Conv4(3, hidden=8).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = maml.Config(inner_lr=0.4, inner_steps=2, loss="cross_entropy", backend=backend,
                      task_chunk=task_chunk)
    metrics = maml.meta_step(model, optimizer, tasks, cfg)
    return metrics["meta_loss"], torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("backend", ["vmap", "loop"])
def test_a_chunked_meta_step_equals_the_whole_batch_step(backend):
    images = ArrayImages(torch.rand(12, 4, 1, 28, 28, dtype=torch.float64))
    tasks = sample_episodes(images, 5, 3, 1, 2, np.random.default_rng(0))  # 5 tasks: chunks 2 + 2 + 1
    loss, params = _step(None, tasks, backend)
    chunked_loss, chunked_params = _step(2, tasks, backend)
    assert chunked_loss == pytest.approx(loss, rel=1e-12)
    assert torch.allclose(chunked_params, params, rtol=0, atol=1e-12)


def test_task_chunk_must_be_a_positive_int():
    with pytest.raises(ValueError, match="task_chunk"):
        maml.Config(task_chunk=0)
