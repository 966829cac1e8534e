import math

import numpy as np
import pytest
import torch

from metacourse.tasks import SinusoidTasks, Task, TaskBatch, stack_tasks


def test_sample_shapes_ranges_and_targets():
    batch = SinusoidTasks().sample(200, k_shot=5, n_query=7, rng=np.random.default_rng(0))
    assert batch.x_support.shape == (200, 5, 1) and batch.y_query.shape == (200, 7, 1)
    amplitude, phase = batch.info["amplitude"], batch.info["phase"]
    assert amplitude.min() >= 0.1 and amplitude.max() <= 5.0
    assert phase.min() >= 0.0 and phase.max() <= math.pi
    assert batch.x_query.abs().max() <= 5.0
    expected = amplitude[3] * np.sin(batch.x_query[3].numpy() + phase[3])
    assert np.allclose(batch.y_query[3].numpy(), expected, atol=1e-5)


def test_same_seed_same_tasks():
    a = SinusoidTasks().sample(3, 4, 4, np.random.default_rng(7))
    b = SinusoidTasks().sample(3, 4, 4, np.random.default_rng(7))
    assert torch.equal(a.x_support, b.x_support) and torch.equal(a.y_query, b.y_query)


@pytest.mark.parametrize("kwargs, match", [
    ({"n_tasks": 0}, "n_tasks"), ({"k_shot": -1}, "k_shot"), ({"n_query": 0}, "n_query")])
def test_bad_sizes_name_the_argument(kwargs, match):
    args = {"n_tasks": 2, "k_shot": 5, "n_query": 5, "rng": np.random.default_rng(0)} | kwargs
    with pytest.raises(ValueError, match=match):
        SinusoidTasks().sample(**args)


def test_rng_must_be_a_generator():
    with pytest.raises(TypeError, match="default_rng"):
        SinusoidTasks().sample(2, 5, 5, rng=0)


def test_task_shape_mismatch_and_stacking():
    with pytest.raises(ValueError, match="one label per input"):
        Task(torch.zeros(5, 1), torch.zeros(4, 1), torch.zeros(3, 1), torch.zeros(3, 1))
    tasks = [Task(torch.zeros(5, 1), torch.zeros(5, 1), torch.zeros(3, 1), torch.zeros(3, 1))] * 4
    batch = stack_tasks(tasks)
    assert isinstance(batch, TaskBatch) and len(batch) == 4
    assert [len(part) for part in batch.split(3)] == [3, 1]
    with pytest.raises(TypeError, match="TaskBatch"):
        stack_tasks("not tasks")
