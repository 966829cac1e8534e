import os
import signal
from functools import partial

import numpy as np
import pytest
import torch

from metacourse.algorithms import maml
from metacourse.models import MLP
from metacourse.tasks import SinusoidTasks
from metacourse.train import TrainConfig, meta_train
from metacourse.utils import DivergenceError

SAMPLER = partial(SinusoidTasks().sample, k_shot=5, n_query=5)


def _setup(inner_lr=0.01):
    torch.manual_seed(0)
    model = MLP(1, (16, 16), 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = partial(maml.meta_step, model, optimizer, cfg=maml.Config(inner_lr=inner_lr))
    return model, optimizer, step


def _run(tmp_path, meta_steps, step_hook=None):
    model, optimizer, step = _setup()
    cfg = TrainConfig(meta_steps=meta_steps, meta_batch_size=4, checkpoint_path=str(tmp_path / "ck.pt"),
                      checkpoint_every=7, progress=False)
    history = meta_train(step_hook(step) if step_hook else step, SAMPLER, cfg,
                         state={"model": model, "optimizer": optimizer})
    return model, history


def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path):
    straight, straight_history = _run(tmp_path / "a", 30)
    _run(tmp_path / "b", 12)                      # stops after 12 steps, checkpoint written
    resumed, resumed_history = _run(tmp_path / "b", 30)  # same path: resumes from step 12
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert straight_history.metrics == resumed_history.metrics
    assert resumed_history.steps == list(range(1, 31))


def test_ctrl_c_finishes_the_step_saves_and_resumes_exactly(tmp_path):
    calls = {"n": 0}

    def interrupt_at_step_9(step):
        def wrapped(tasks):
            calls["n"] += 1
            if calls["n"] == 9:
                os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C mid-step
            return step(tasks)
        return wrapped

    with pytest.raises(KeyboardInterrupt, match="after step 9"):
        _run(tmp_path / "b", 20, step_hook=interrupt_at_step_9)
    resumed, _ = _run(tmp_path / "b", 20)
    straight, _ = _run(tmp_path / "a", 20)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)


def test_divergence_stops_with_the_step_and_a_hint():
    model, optimizer, _ = _setup()
    step = partial(maml.meta_step, model, optimizer, cfg=maml.Config(inner_lr=1e6))
    with pytest.raises(DivergenceError, match=r"at step \d+.*smaller step size"):
        meta_train(step, SAMPLER, TrainConfig(meta_steps=50, meta_batch_size=4, progress=False), state={})


def test_corrupt_checkpoint_says_how_to_recover(tmp_path):
    path = tmp_path / "ck.pt"
    path.write_bytes(b"not a checkpoint")
    model, optimizer, step = _setup()
    cfg = TrainConfig(meta_steps=3, meta_batch_size=2, checkpoint_path=str(path), progress=False)
    with pytest.raises(ValueError, match="delete it"):
        meta_train(step, SAMPLER, cfg, state={"model": model})


def test_evaluation_is_logged_every_eval_every_steps():
    model, optimizer, step = _setup()
    cfg = TrainConfig(meta_steps=10, meta_batch_size=2, eval_every=5, progress=False)
    history = meta_train(step, SAMPLER, cfg, state={}, evaluate=lambda: {"score": 1.0})
    assert history.eval_steps == [5, 10] and history.eval_metrics == {"score": [1.0, 1.0]}


@pytest.mark.parametrize("kwargs", [{"meta_steps": 0}, {"meta_batch_size": -1}, {"eval_every": -5}])
def test_bad_budget_is_rejected(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_seed_changes_the_task_stream():
    a = SAMPLER(3, rng=np.random.default_rng(0)).x_support
    b = SAMPLER(3, rng=np.random.default_rng(1)).x_support
    assert not torch.equal(a, b)
