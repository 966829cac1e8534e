"""Meta-steps per second of MAML config A on 1 and 2 processes (torch.distributed, gloo, CPU).

Config A (``--config A``, the default; settings, model and batches are imported from
``benchmarks/omniglot_maml.py``): stride-2 Conv4, 5-way 1-shot, 1 query image per class,
meta-batch 32 random 28×28 tasks, one inner step with α = 0.4, second order, Adam outer step. Rows:

- ``plain``: ``maml.meta_step`` in one process, no process group (the baseline);
- ``gloo W=1``, ``gloo W=2``: ``metacourse.distributed.distributed_meta_step`` on W processes,
  each taking 32/W tasks, gradients all-reduced over gloo.

Every process runs one torch thread, so W=2 uses 2 cores where W=1 uses one. Timed: whole
meta-steps (rank 0's wall time from a barrier to the end of the step: the all-reduce makes rank 0
wait for the slowest rank), ``--steps`` per row per round after ``--warmup`` untimed steps, rows
run one after the other for ``--repeats`` rounds; reported are the median and min over all timed
steps, and rank 0's median CPU time per step (``time.process_time``: the work one process does,
less sensitive than wall time to other jobs on a shared machine). Also reported: one all-reduce of
the meta-gradient (112k floats) alone, and the relative difference between the first all-reduced
meta-gradient and the plain one (float32).

    python benchmarks/distributed_scaling.py --json results/bench-distributed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from omniglot_maml import CONFIGS, INNER_LR, META_BATCH, OUTER_LR, make_batch, reference_model

from metacourse import distributed
from metacourse.algorithms import maml

ROWS = (("plain", 1), ("gloo", 1), ("gloo", 2))


def reference_gradient(config, cfg: maml.Config, tasks) -> torch.Tensor:
    """The single-process meta-gradient at the reference weights, flattened."""
    model = reference_model(config)
    maml.meta_loss(model, dict(model.named_parameters()), tasks, cfg).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def median_allreduce_ms(numel: int, repeats: int = 20) -> float:
    """Median time of one SUM all-reduce of ``numel`` floats (the meta-gradient's size)."""
    flat, times = torch.randn(numel), []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(flat)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def worker(rank: int, mode: str, world_size: int, port: int, opts: dict, out_file: str) -> None:
    """One process of one row (``mode`` "plain" or "gloo"): warm up, time ``opts['steps']``
    meta-steps; rank 0 saves the times."""
    torch.set_num_threads(1)
    config = CONFIGS[opts["config"]]
    cfg = maml.Config(inner_lr=INNER_LR, inner_steps=config.inner_steps, loss="cross_entropy",
                      backend=opts["backend"])
    batches = [make_batch(config, seed) for seed in range(4)]
    model = reference_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
    if mode == "plain":
        step, sync = (lambda tasks: maml.meta_step(model, optimizer, tasks, cfg)), (lambda: None)
    else:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
        distributed.init_process_group_from_env("cpu")
        distributed.broadcast_parameters(model)
        step, sync = (lambda tasks: distributed.distributed_meta_step(model, optimizer, tasks, cfg)), dist.barrier
    step(batches[0])                                 # first step: also the exactness check
    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    for i in range(1, opts["warmup"]):
        step(batches[i % len(batches)])
    times, cpu_times = [], []
    for i in range(opts["steps"]):
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        step(batches[i % len(batches)])
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    result = {"times": times, "cpu_times": cpu_times}
    if mode != "plain":
        result["allreduce_ms"] = median_allreduce_ms(grad.numel())
        dist.destroy_process_group()
    if rank == 0:
        reference = reference_gradient(config, cfg, batches[0])
        result["rel_grad_diff"] = ((grad - reference).abs().max() / reference.abs().max()).item()
        torch.save(result, out_file)


def run_row(mode: str, world_size: int, opts: dict, out_dir: Path) -> dict:
    """Start ``world_size`` fresh processes for one row and return rank 0's results."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out_file = out_dir / f"{mode}-{world_size}.pt"
    mp.start_processes(worker, args=(mode, world_size, port, opts, str(out_file)), nprocs=world_size,
                       start_method="spawn")
    return torch.load(out_file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed meta-steps per row per round")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the rows")
    parser.add_argument("--warmup", type=int, default=2, help="untimed meta-steps per row per round")
    parser.add_argument("--config", choices=sorted(CONFIGS), default="A", help="benchmark setting")
    parser.add_argument("--backend", choices=maml.BACKENDS, default="auto", help="MAML backend (auto: vmap)")
    parser.add_argument("--json", default=None, help="also write the table as JSON")
    args = parser.parse_args()
    if args.steps * args.repeats < 10:
        parser.error("time at least 10 meta-steps per row (--steps × --repeats >= 10)")
    opts = {"steps": args.steps, "warmup": max(args.warmup, 1), "backend": args.backend, "config": args.config}
    config = CONFIGS[args.config]
    load_before = os.getloadavg()
    found: dict[tuple[str, int], dict] = {row: {"times": [], "cpu_times": []} for row in ROWS}
    with tempfile.TemporaryDirectory() as out_dir:
        for _ in range(args.repeats):
            for row in ROWS:
                result = run_row(*row, opts, Path(out_dir))
                found[row] = result | {key: found[row][key] + result[key] for key in ("times", "cpu_times")}
    load_after = os.getloadavg()

    base = statistics.median(found[("gloo", 1)]["times"])
    rows = []
    for (mode, world_size), result in found.items():
        median = statistics.median(result["times"])
        rows.append({"mode": mode, "processes": world_size, "tasks_per_process": META_BATCH // world_size,
                     "median_ms": 1e3 * median, "min_ms": 1e3 * min(result["times"]),
                     "median_cpu_ms_rank0": 1e3 * statistics.median(result["cpu_times"]),
                     "meta_steps_per_s": 1 / median, "tasks_per_s": META_BATCH / median,
                     "speedup_vs_gloo_w1": base / median, "timed_steps": len(result["times"]),
                     "allreduce_ms": result.get("allreduce_ms"), "rel_grad_diff_vs_plain": result["rel_grad_diff"]})

    print(f"\n{'mode':<8}{'W':>3}{'tasks/W':>8}{'median ms':>11}{'min ms':>9}{'steps/s':>9}{'tasks/s':>9}"
          f"{'speedup':>9}{'CPU ms':>8}{'all-reduce ms':>15}{'rel Δg':>9}")
    for r in rows:
        allreduce = f"{r['allreduce_ms']:.2f}" if r["allreduce_ms"] is not None else "-"
        print(f"{r['mode']:<8}{r['processes']:>3}{r['tasks_per_process']:>8}{r['median_ms']:>11.1f}"
              f"{r['min_ms']:>9.1f}{r['meta_steps_per_s']:>9.2f}{r['tasks_per_s']:>9.1f}"
              f"{r['speedup_vs_gloo_w1']:>8.2f}×{r['median_cpu_ms_rank0']:>8.1f}{allreduce:>15}{r['rel_grad_diff_vs_plain']:>9.1e}")
    print(f"1 torch thread per process; {os.cpu_count()} CPUs; load average before/after "
          f"{load_before[0]:.2f}/{load_after[0]:.2f}; backend {args.backend} "
          f"(resolves to {maml.choose_backend(reference_model(config), maml.Config(backend=args.backend))})")
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(), "threads_per_process": 1,
            "steps": args.steps, "repeats": args.repeats, "warmup": opts["warmup"],
            "load_average_1min_before_after": [load_before[0], load_after[0]],
            "config": {"name": args.config, "model": "Conv4(n_way, pooling='stride', hidden=64), batch-statistics BN",
                       "input": "random 1x28x28", **vars(config),
                       "meta_batch": META_BATCH, "inner_lr": INNER_LR,
                       "order": "second", "backend": args.backend, "outer": f"Adam lr={OUTER_LR}"},
            "rows": rows}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as handle:
            json.dump(info, handle, indent=2)


if __name__ == "__main__":
    main()
