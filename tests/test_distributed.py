"""Multi-process meta-training: 2 CPU processes (gloo, 127.0.0.1) against one process.

Oracle: the single-process meta-gradient of the whole meta-batch (``maml.meta_loss``), in float64.
The all-reduced meta-gradient must equal it to 1e-10 relative, on an uneven split (5 sinusoid
tasks: 3 + 2) and on a tiny second-order Conv4; after one Adam step θ must be bit-identical on
both ranks. The entry point ``torchrun -m metacourse.distributed`` must follow the same
trajectory as ``train.meta_train`` in one process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metacourse import distributed
from metacourse.algorithms import maml
from metacourse.models import MLP
from metacourse.models.conv4 import Conv4
from metacourse.tasks import SinusoidTasks
from metacourse.tasks.base import TaskBatch
from metacourse.train import TrainConfig, meta_train

pytestmark = pytest.mark.usefixtures("one_thread")

WORLD_SIZE, OUTER_LR, TIMEOUT_S = 2, 1e-3, 120
REPO = Path(__file__).resolve().parents[1]


def sinusoid_problem():
    """5 float64 sinusoid tasks (split 3 + 2), MLP 1-40-40-1, α = 0.01, second order."""
    tasks = SinusoidTasks().sample(5, k_shot=5, n_query=10, rng=np.random.default_rng(0))
    tasks = TaskBatch(tasks.x_support.double(), tasks.y_support.double(), tasks.x_query.double(),
                      tasks.y_query.double())
    return (lambda: MLP(1, (40, 40), 1).double()), tasks, maml.Config(inner_lr=0.01)


def conv4_problem():
    """4 tasks of random 8×8 images, 3-way 2-shot, a narrow stride-2 Conv4, α = 0.4, second order."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(2).expand(4, -1).contiguous()
    tasks = TaskBatch(torch.randn(4, 6, 1, 8, 8, generator=gen, dtype=torch.float64), labels,
                      torch.randn(4, 6, 1, 8, 8, generator=gen, dtype=torch.float64), labels.clone())
    cfg = maml.Config(inner_lr=0.4, loss="cross_entropy")
    return (lambda: Conv4(3, in_channels=1, hidden=8, pooling="stride").double()), tasks, cfg


PROBLEMS = {"sinusoid": sinusoid_problem, "conv4": conv4_problem}


def worker(rank: int, port: int, out_dir: str) -> None:
    """One rank: a different initialisation per rank (the broadcast must make them equal), then
    one distributed meta-step per problem; saves its gradients, parameters and meta-loss."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init_process_group_from_env("cpu")
    results = {}
    try:
        for name, problem in PROBLEMS.items():
            make_model, tasks, cfg = problem()
            torch.manual_seed(1 + rank)
            model = make_model()
            distributed.broadcast_parameters(model)
            optimizer = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
            metrics = distributed.distributed_meta_step(model, optimizer, tasks, cfg)
            results[name] = {"grads": {n: p.grad.clone() for n, p in model.named_parameters()},
                             "params": {n: p.detach().clone() for n, p in model.named_parameters()},
                             "meta_loss": metrics["meta_loss"]}
    finally:
        dist.destroy_process_group()
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")


def single_process(name: str) -> dict:
    """The oracle: rank 0's initialisation, the whole meta-batch's meta-gradient, one Adam step."""
    make_model, tasks, cfg = PROBLEMS[name]()
    torch.manual_seed(1)
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
    metrics = maml.meta_step(model, optimizer, tasks, cfg)
    return {"grads": {n: p.grad.clone() for n, p in model.named_parameters()},
            "params": {n: p.detach().clone() for n, p in model.named_parameters()},
            "meta_loss": metrics["meta_loss"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relative_error(actual: dict, expected: dict) -> float:
    """max |actual − expected| / max |expected| over all tensors."""
    diff = max((actual[n] - expected[n]).abs().max().item() for n in expected)
    return diff / max(t.abs().max().item() for t in expected.values())


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    """Run ``worker`` on 2 spawned processes and return each rank's results."""
    out_dir = tmp_path_factory.mktemp("ranks")
    context = mp.start_processes(worker, args=(free_port(), str(out_dir)), nprocs=WORLD_SIZE,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD_SIZE} processes did not finish within {TIMEOUT_S} s (a hung collective?)")
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD_SIZE)]


@pytest.mark.parametrize("name", PROBLEMS)
def test_all_reduced_meta_gradient_equals_single_process(two_ranks, name):
    expected = single_process(name)
    for rank in two_ranks:
        assert relative_error(rank[name]["grads"], expected["grads"]) < 1e-10
        assert rank[name]["meta_loss"] == pytest.approx(expected["meta_loss"], rel=1e-12)


@pytest.mark.parametrize("name", PROBLEMS)
def test_parameters_after_one_adam_step_are_identical_across_ranks(two_ranks, name):
    first, second = (rank[name]["params"] for rank in two_ranks)
    assert all(torch.equal(first[n], second[n]) for n in first)
    assert relative_error(first, single_process(name)["params"]) < 1e-10


def test_shard_slices_the_meta_batch_contiguously_and_unevenly():
    _, tasks, _ = sinusoid_problem()
    shards = [distributed.shard(tasks, rank, 2) for rank in range(2)]
    assert [len(s) for s in shards] == [3, 2]
    assert torch.equal(torch.cat([s.x_query for s in shards]), tasks.x_query)


def test_too_few_tasks_for_the_processes_is_a_clear_error():
    _, tasks, _ = sinusoid_problem()
    with pytest.raises(ValueError, match=r"5 task\(s\) cannot be split across 8 processes.*at least 8"):
        distributed.shard(tasks, rank=0, world_size=8)
    with pytest.raises(ValueError, match="rank=2 is outside 0..1"):
        distributed.shard(tasks, rank=2, world_size=2)


def test_outside_torchrun_the_errors_say_how_to_start(monkeypatch):
    for name in distributed.TORCHRUN_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="torchrun --nproc_per_node N -m metacourse.distributed"):
        distributed.init_process_group_from_env("cpu")
    make_model, tasks, cfg = sinusoid_problem()
    model = make_model()
    with pytest.raises(ValueError, match="init_process_group_from_env"):
        distributed.distributed_meta_step(model, torch.optim.Adam(model.parameters()), tasks, cfg)


def test_torchrun_entry_point_follows_the_single_process_trajectory(tmp_path):
    """20 steps of sinusoid MAML on 2 processes (13 + 12 tasks) end where ``meta_train`` ends."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "metacourse.distributed", "--task", "sinusoid", "--steps", "20", "--seed", "3",
               "--device", "cpu", "--out", str(tmp_path)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "20 steps on 2 processes" in done.stdout
    saved = torch.load(tmp_path / "maml-sinusoid-w2-seed3-20.pt", weights_only=False)

    torch.manual_seed(3)
    model = MLP(1, (40, 40), 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
    step = partial(maml.meta_step, model, optimizer, cfg=maml.Config(inner_lr=0.01))
    history = meta_train(step, partial(SinusoidTasks().sample, k_shot=5, n_query=10),
                         TrainConfig(meta_steps=20, meta_batch_size=25, seed=3, progress=False), state={})
    assert relative_error(saved["state"]["model"], model.state_dict()) < 1e-5    # float32, other sum order
    assert np.allclose(saved["history"]["metrics"]["meta_loss"], history.metrics["meta_loss"], rtol=1e-5)
