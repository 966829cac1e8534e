"""Milliseconds per meta-step of MAML on config A (5-way 1-shot Omniglot): metacourse's backends
against learn2learn.

Config A (MAML's Omniglot setting, issue #9): ``Conv4(5, pooling="stride")`` — four blocks of
[3×3 conv, 64 filters, stride 2 → batch norm with batch statistics → ReLU], spatial mean, linear
head (28→14→7→4→2) — on 1×28×28 inputs; 5 ways, 1 support and 1 query image per class, meta-batch
32 tasks, one inner SGD step with α = 0.4, cross-entropy, Adam outer step; second order and first
order. The images are random tensors (the benchmark measures compute, not learning; the cost of a
meta-step does not depend on the pixel values) and are generated before timing.

Every implementation starts from the same weights. Before timing, each one's meta-gradient on the
same batch is compared with metacourse's loop backend (same order). Timed: whole meta-steps
(meta-gradient and Adam step), one at a time, implementations interleaved round-robin over
``--repeats`` rounds of ``--steps`` steps after warm-up; reported are the median and min over all
timed steps. FLOPs of one meta-gradient are counted with
``torch.utils.flop_counter.FlopCounterMode`` on the loop backend (the workload, used for GFLOP/s
of every row) and on each row's own ops (reported as "own": under vmap the counter sees the
batched convolutions and reports far more than the work done); the fp32 SGEMM peak (a large
``torch.mm``) is measured in the same run with the same thread count, and each row's fraction of
it is printed. Peak memory is not measured (on CPU it needs a separate process per row).

    python benchmarks/omniglot_maml.py                # 2 threads, all implementations found
    python benchmarks/omniglot_maml.py --threads 1 --json results/bench-omniglot-config-a.json

learn2learn is optional (``bash scripts/install_learn2learn.sh``); without it its rows are skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from metacourse.algorithms import maml
from metacourse.models.conv4 import Conv4
from metacourse.tasks.base import TaskBatch

N_WAY, K_SHOT, N_QUERY, META_BATCH, INNER_LR, OUTER_LR = 5, 1, 1, 32, 0.4, 1e-3


def reference_model() -> Conv4:
    """The config-A network with fixed weights (every implementation starts from these)."""
    torch.manual_seed(0)
    return Conv4(N_WAY, in_channels=1, hidden=64, pooling="stride")


def make_batch(seed: int) -> TaskBatch:
    """32 tasks of random 28×28 images, labels 0..4 (one support and one query image each)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(N_WAY).repeat_interleave(K_SHOT).expand(META_BATCH, -1).contiguous()
    return TaskBatch(torch.randn(META_BATCH, N_WAY * K_SHOT, 1, 28, 28, generator=gen), labels,
                     torch.randn(META_BATCH, N_WAY * N_QUERY, 1, 28, 28, generator=gen),
                     labels.clone())


def metacourse_impl(backend: str, first_order: bool):
    """(model, meta_step(optimizer, tasks), backward(tasks)) for one metacourse backend."""
    model = reference_model()
    cfg = maml.Config(inner_lr=INNER_LR, first_order=first_order, loss="cross_entropy",
                      backend=backend)

    def backward(tasks):
        maml.meta_loss(model, dict(model.named_parameters()), tasks, cfg).backward()

    return model, lambda opt, tasks: maml.meta_step(model, opt, tasks, cfg), backward


def learn2learn_impl(first_order: bool):
    """The same for learn2learn 0.2.0's MAML, written as in its examples (one task at a time)."""
    from learn2learn.algorithms import MAML as L2LMAML

    model = reference_model()
    wrapper = L2LMAML(model, lr=INNER_LR, first_order=first_order)

    def backward(tasks):
        for t in range(len(tasks)):
            learner = wrapper.clone()
            learner.adapt(F.cross_entropy(learner(tasks.x_support[t]), tasks.y_support[t]))
            (F.cross_entropy(learner(tasks.x_query[t]), tasks.y_query[t]) / len(tasks)).backward()

    def step(opt, tasks):
        opt.zero_grad(set_to_none=True)
        backward(tasks)
        opt.step()

    return model, step, backward


def meta_gradient(model: nn.Module, backward, tasks) -> torch.Tensor:
    """The meta-gradient of one batch, flattened."""
    model.zero_grad(set_to_none=True)
    backward(tasks)
    grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    model.zero_grad(set_to_none=True)
    return grad


def as_float64(tasks: TaskBatch) -> TaskBatch:
    """The same tasks in float64: the exactness check, free of float32 rounding."""
    return TaskBatch(tasks.x_support.double(), tasks.y_support, tasks.x_query.double(), tasks.y_query)


def count_flops(model: nn.Module, backward, tasks) -> int:
    """FLOPs of one meta-gradient (the Adam step is negligible and not counted)."""
    with FlopCounterMode(display=False) as counter:
        meta_gradient(model, backward, tasks)
    return counter.get_total_flops()


def sgemm_peak(n: int = 2048, reps: int = 10) -> float:
    """Best fp32 ``torch.mm`` throughput (GFLOP/s) of an n×n×n product at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n ** 3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed meta-steps per row per round")
    parser.add_argument("--repeats", type=int, default=4,
                        help="round-robin rounds (median and min over repeats × steps steps)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed meta-steps per row")
    parser.add_argument("--json", default=None, help="also write the table as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.steps * args.repeats < 10:
        parser.error("time at least 10 meta-steps per row (--steps × --repeats >= 10)")

    batches = [make_batch(seed) for seed in range(4)]
    builders = {"metacourse loop": lambda fo: metacourse_impl("loop", fo),
                "metacourse vmap": lambda fo: metacourse_impl("vmap", fo)}
    if importlib.util.find_spec("learn2learn") is not None:
        builders["learn2learn 0.2.0 MAML"] = learn2learn_impl
    else:
        print("learn2learn is not importable: its rows are skipped "
              "(install it with `bash scripts/install_learn2learn.sh`)")

    peak = sgemm_peak()
    print(f"fp32 SGEMM peak (2048³ torch.mm, {args.threads} threads): {peak:.1f} GFLOP/s")

    rows = []
    for first_order in (False, True):
        order = "first" if first_order else "second"
        loop_model, _, loop_backward = metacourse_impl("loop", first_order)
        reference = meta_gradient(loop_model, loop_backward, batches[0])
        loop64, _, loop64_backward = metacourse_impl("loop", first_order)
        reference64 = meta_gradient(loop64.double(), loop64_backward, as_float64(batches[0]))
        work = count_flops(loop_model, loop_backward, batches[0])   # the workload's FLOPs
        impls = {}
        for name, build in builders.items():
            model, step, backward = build(first_order)
            grad = meta_gradient(model, backward, batches[0])
            diff = (grad - reference).abs().max().item()
            model64, _, backward64 = build(first_order)
            grad64 = meta_gradient(model64.double(), backward64, as_float64(batches[0]))
            diff64 = ((grad64 - reference64).abs().max() / reference64.abs().max()).item()
            flops = count_flops(model, backward, batches[0])
            optimizer = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
            for i in range(args.warmup):
                step(optimizer, batches[i % len(batches)])
            impls[name] = (step, optimizer, flops, (diff, diff64), [])
        for _ in range(args.repeats):                     # interleaved round-robin
            for step, optimizer, _, _, times in impls.values():
                for i in range(args.steps):
                    start = time.perf_counter()
                    step(optimizer, batches[i % len(batches)])
                    times.append(time.perf_counter() - start)
        for name, (_, _, flops, (diff, diff64), times) in impls.items():
            median = statistics.median(times)
            rows.append({"implementation": name, "order": order, "median_ms": 1e3 * median,
                         "min_ms": 1e3 * min(times), "timed_steps": len(times), "gflop": work / 1e9,
                         "gflop_counted_own": flops / 1e9, "gflop_per_s": work / median / 1e9,
                         "fraction_of_sgemm_peak": work / median / 1e9 / peak,
                         "max_abs_grad_diff_vs_loop": diff,
                         "max_rel_grad_diff_vs_loop": diff / reference.abs().max().item(),
                         "max_rel_grad_diff_vs_loop_float64": diff64})

    print(f"\n{'implementation':<24}{'order':<8}{'median ms':>10}{'min ms':>9}{'GFLOP':>8}"
          f"{'own':>8}{'GFLOP/s':>9}{'% peak':>8}  max |Δg| vs loop: float32 (relative); float64 relative")
    for r in rows:
        print(f"{r['implementation']:<24}{r['order']:<8}{r['median_ms']:>10.1f}{r['min_ms']:>9.1f}"
              f"{r['gflop']:>8.2f}{r['gflop_counted_own']:>8.2f}{r['gflop_per_s']:>9.1f}"
              f"{100 * r['fraction_of_sgemm_peak']:>7.1f}%"
              f"  {r['max_abs_grad_diff_vs_loop']:.1e} ({r['max_rel_grad_diff_vs_loop']:.1e});"
              f" {r['max_rel_grad_diff_vs_loop_float64']:.1e}")
    print("GFLOP: the workload's FLOPs, counted on the loop backend (used for GFLOP/s and % peak);"
          " own: FlopCounterMode's count on the row's own ops (vmap's batched convolutions are"
          " counted as far more than the work they do)")
    print("peak memory: not measured (CPU; would need one process per row)")
    info = {"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
            "cpu": platform.processor() or platform.machine(), "steps": args.steps,
            "repeats": args.repeats, "warmup": args.warmup, "sgemm_peak_gflop_per_s": peak,
            "config": {"model": "Conv4(5, pooling='stride', hidden=64), batch-statistics BN",
                       "input": "random 1x28x28", "n_way": N_WAY, "k_shot": K_SHOT,
                       "n_query": N_QUERY, "meta_batch": META_BATCH, "inner_steps": 1,
                       "inner_lr": INNER_LR, "outer": f"Adam lr={OUTER_LR}"},
            "learn2learn": "learn2learn 0.2.0 MAML" in builders, "peak_memory": "not measured",
            "rows": rows}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(info, handle, indent=2)


if __name__ == "__main__":
    main()
