"""Multi-process meta-training: one meta-batch split across W processes with torch.distributed.

The meta-loss (MAML eq. 3) is a mean over the tasks of the meta-batch B, so its gradient is a sum
of per-task pieces that different processes (ranks r = 0 … W−1) can compute side by side:

    (1) shard        B = B_0 ∪ … ∪ B_{W−1}, contiguous slices; |B_r| = ⌈|B|/W⌉ or ⌊|B|/W⌋
    (2) local loss   L_r(θ) = (|B_r| / |B|) · meta_loss(θ; B_r) = (1/|B|) Σ_{T ∈ B_r} L_T(θ)
    (3) all-reduce   g = Σ_r ∇_θ L_r(θ) = ∇_θ (1/|B|) Σ_{T ∈ B} L_T(θ)        (ReduceOp.SUM)
    (4) outer step   every rank applies the same optimizer step to the same g

Every rank starts from the same θ (rank 0's, ``broadcast_parameters``) and the same optimizer
state and applies the same g, so θ stays identical on every rank without being sent again.
Weighting each rank's mean by |B_r|/|B| (2) makes uneven shards exact (25 tasks on 2 ranks:
13 + 12); averaging the ranks' means instead would over-weight the tasks of the smaller shard.

Sampling: every rank draws the *same* global meta-batch from the shared seed and keeps its slice.
A W-process run with seed S therefore trains on exactly the tasks ``train.meta_train`` draws with
seed S in one process and ends at the same θ up to float rounding (the sum (3) runs in another
order). The price, each rank building W× the tasks it uses, is small next to a meta-gradient.

| symbol | identifier |
|---|---|
| W, r | ``world_size``, ``rank`` |
| B, B_r | ``tasks``, ``shard(tasks, rank, world_size)`` |
| g | every ``p.grad`` after ``all_reduce_gradients`` |

Backends: gloo on CPU, NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``). PyTorch's
``DistributedDataParallel`` is not used: MAML runs the network through ``functional_call`` with
adapted weights, and one explicit all-reduce shows the whole algorithm.

    torchrun --nproc_per_node 2 -m metacourse.distributed --task sinusoid --steps 1000
    torchrun --nproc_per_node 2 -m metacourse.distributed --task omniglot --meta-batch 32 --steps 2500

Differs from ``maml.meta_step`` by one all-reduce between the backward pass and the optimizer step.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .algorithms import maml
from .functional import params_of
from .models import MLP
from .models.conv4 import Conv4
from .tasks import SinusoidTasks
from .tasks.base import Task, TaskBatch, stack_tasks
from .tasks.episodes import EpisodeSampler
from .tasks.omniglot import Omniglot
from .train import TrainConfig, meta_train, save_atomically
from .utils import torch_threads

__all__ = ["Process", "init_process_group_from_env", "check_shardable", "shard", "broadcast_parameters",
           "all_reduce_gradients", "distributed_meta_step", "main"]

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Process:
    """This process's place in the group: its rank r, the world size W, and its device."""

    rank: int
    world_size: int
    device: torch.device


def init_process_group_from_env(device: str = "auto") -> Process:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``).

    ``device="cpu"`` uses gloo; ``"cuda"`` uses NCCL on GPU ``LOCAL_RANK``; ``"auto"`` picks CUDA
    when it is available. A group that is already initialised is joined as it is.
    """
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ValueError(f"environment variables {missing} are not set: start the processes with "
                         "`torchrun --nproc_per_node N -m metacourse.distributed ...` (or set RANK, "
                         "WORLD_SIZE, MASTER_ADDR and MASTER_PORT yourself)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported here; use 'cpu' (gloo), 'cuda' (NCCL) or 'auto'")
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    chosen = torch.device("cpu")
    if device == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"process with LOCAL_RANK={local_rank} has no GPU ({torch.cuda.device_count()} "
                             "visible); start at most one process per GPU, or pass --device cpu (gloo)")
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=rank, world_size=world_size)
    return Process(dist.get_rank(), dist.get_world_size(), chosen)


def _group() -> tuple[int, int]:
    """(rank, world size) of the initialised default group, or an error that says what to call."""
    if not dist.is_available() or not dist.is_initialized():
        raise ValueError("torch.distributed is not initialised: call "
                         "metacourse.distributed.init_process_group_from_env() first, under torchrun")
    return dist.get_rank(), dist.get_world_size()


def check_shardable(n_tasks: int, world_size: int) -> None:
    """Every rank needs at least one task of the meta-batch."""
    if n_tasks < world_size:
        raise ValueError(f"a meta-batch of {n_tasks} task(s) cannot be split across {world_size} processes "
                         f"(each needs at least one task); use a meta-batch of at least {world_size} "
                         f"tasks, or start {n_tasks} process(es) or fewer (--nproc_per_node {n_tasks})")


def shard(tasks: TaskBatch | Sequence[Task], rank: int, world_size: int) -> TaskBatch:
    """Eq. (1): rank r's contiguous slice B_r of the meta-batch; the first |B| mod W ranks
    get one task more than the others."""
    tasks = stack_tasks(tasks)
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} is outside 0..{world_size - 1}; pass the process's own rank")
    check_shardable(len(tasks), world_size)
    base, extra = divmod(len(tasks), world_size)
    start = rank * base + min(rank, extra)
    part = slice(start, start + base + (rank < extra))
    return TaskBatch(tasks.x_support[part], tasks.y_support[part], tasks.x_query[part],
                     tasks.y_query[part], info={k: v[part] for k, v in tasks.info.items()})


def broadcast_parameters(*modules: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank: the common starting θ."""
    _group()
    with torch.no_grad():
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                dist.broadcast(tensor, src)


def all_reduce_gradients(params: Iterable[Tensor]) -> None:
    """Eq. (3): replace every ``p.grad`` by its sum over the ranks, in one flat all-reduce.

    A parameter without a gradient counts as zeros, so every rank sends the same layout.
    """
    _group()
    params = list(params)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad = g.view_as(p).to(p.dtype)


def distributed_meta_step(model: nn.Module, optimizer: torch.optim.Optimizer,
                          tasks: TaskBatch | Sequence[Task], cfg: maml.Config,
                          inner_lrs: nn.ParameterDict | None = None) -> dict[str, float]:
    """Eq. (1)–(4): ``maml.meta_step`` on the global meta-batch ``tasks``, this rank's share of it.

    Every rank calls it with the same ``tasks`` and the same θ; the gradients of every parameter
    the optimizer updates (θ, and Meta-SGD's α when ``inner_lrs`` is given) are all-reduced. The
    returned meta-loss is the whole batch's, equal on every rank.
    """
    rank, world_size = _group()
    tasks = stack_tasks(tasks)
    local = shard(tasks, rank, world_size)
    optimizer.zero_grad(set_to_none=True)
    loss = maml.meta_loss(model, params_of(model), local, cfg, inner_lrs) * (len(local) / len(tasks))
    loss.backward()
    all_reduce_gradients(p for group in optimizer.param_groups for p in group["params"])
    total = loss.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    optimizer.step()
    return {"meta_loss": total.item()}


def build(task: str, process: Process, first_order: bool, backend: str):
    """(model, sampler, maml.Config) of MAML's setup for ``task`` on this process's device:
    sinusoid — MLP 1-40-40-1, 5 support + 10 query points, α = 0.01; omniglot — stride-2
    Conv4, 5-way 1-shot with 1 query image per class, α = 0.4, cross-entropy."""
    if task == "sinusoid":
        model = MLP(1, (40, 40), 1)
        sampler = partial(SinusoidTasks().sample, k_shot=5, n_query=10, device=process.device)
        cfg = maml.Config(inner_lr=0.01, first_order=first_order, backend=backend)
        return model.to(process.device), sampler, cfg
    if process.rank != 0:
        dist.barrier()           # rank 0 decodes and caches Omniglot first, the others then read the cache
    dataset = Omniglot("train")
    if process.rank == 0:
        dist.barrier()
    model = Conv4(5, in_channels=1, hidden=64, pooling="stride")
    sampler = EpisodeSampler(dataset, n_way=5, k_shot=1, n_query=1, device=str(process.device))
    cfg = maml.Config(inner_lr=0.4, first_order=first_order, loss="cross_entropy", backend=backend)
    return model.to(process.device), sampler, cfg


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node N -m metacourse.distributed",
        description="Meta-train MAML with the meta-batch split across torchrun's processes.")
    parser.add_argument("--task", choices=("sinusoid", "omniglot"), default="sinusoid")
    parser.add_argument("--meta-batch", type=int, default=None,
                        help="tasks per outer step, over all processes (default: sinusoid 25, omniglot 32)")
    parser.add_argument("--steps", type=int, default=1000, help="number of outer steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of θ's initialisation and of the task stream")
    parser.add_argument("--outer-lr", type=float, default=1e-3, help="β, Adam's learning rate")
    parser.add_argument("--first-order", action="store_true", help="first-order MAML")
    parser.add_argument("--backend", choices=maml.BACKENDS, default="auto", help="MAML backend")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="cpu (gloo) or cuda (NCCL, one GPU per process); auto: cuda if available")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    parser.add_argument("--out", default="runs/distributed", help="rank 0 writes the checkpoint here")
    return parser


def run(args: argparse.Namespace, process: Process) -> dict:
    """Meta-train on every rank; rank 0 saves the checkpoint and returns its payload."""
    torch.manual_seed(args.seed)
    model, sampler, cfg = build(args.task, process, args.first_order, args.backend)
    meta_batch = args.meta_batch or (25 if args.task == "sinusoid" else 32)
    check_shardable(meta_batch, process.world_size)
    broadcast_parameters(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.outer_lr)
    train_cfg = TrainConfig(meta_steps=args.steps, meta_batch_size=meta_batch, seed=args.seed,
                            progress=process.rank == 0, description=f"MAML {args.task}, {process.world_size} processes")
    start = time.perf_counter()
    history = meta_train(partial(distributed_meta_step, model, optimizer, cfg=cfg), sampler, train_cfg, state={})
    payload = {"step": args.steps, "state": {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
               "history": history.__dict__, "args": vars(args) | {"meta_batch": meta_batch},
               "world_size": process.world_size, "wall_s": time.perf_counter() - start}
    if process.rank == 0:
        path = Path(args.out) / f"maml-{args.task}-w{process.world_size}-seed{args.seed}-{args.steps}.pt"
        save_atomically(payload, path)
        print(f"{args.steps} steps on {process.world_size} processes in {payload['wall_s']:.1f} s "
              f"({args.steps / payload['wall_s']:.2f} steps/s); final meta-loss "
              f"{history.metrics['meta_loss'][-1]:.4f}; checkpoint {path}")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``torchrun --nproc_per_node N -m metacourse.distributed``."""
    args = _parser().parse_args(argv)
    process = init_process_group_from_env(args.device)
    try:
        with torch_threads(args.threads):
            run(args, process)
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
