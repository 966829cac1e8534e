"""Milliseconds per meta-step of MAML on Omniglot-sized tasks (configs A and B): metacourse's
backends against learn2learn.

Both configs use MAML's Omniglot network, ``Conv4(5, pooling="stride")`` — four blocks of [3×3
conv, 64 filters, stride 2 → batch norm with batch statistics → ReLU], spatial mean, linear head
(28→14→7→4→2) — on 1×28×28 inputs, meta-batch 32 tasks, inner SGD steps with α = 0.4,
cross-entropy, Adam outer step; second order and first order:

- config A (MAML's 5-way 1-shot setting): 1 support and 1 query image per class, 1 inner step;
- config B (5-way 5-shot): 5 support and 15 query images per class, 5 inner steps.

The images are random tensors (the benchmark measures compute, not learning; the cost of a
meta-step does not depend on the pixel values) and are generated before timing. "metacourse loop"
is the plain ``torch.func.functional_call`` loop over tasks.

Every implementation starts from the same weights. Before timing, each one's float32
meta-gradient on ``--check-batches`` batches is compared with metacourse's loop backend in float32
and with the loop in float64 (the exact meta-gradient up to float64 rounding): relative
differences are max |Δg| / max |g|, the largest over the batches. A float32 loop can itself be far
from the float64 one on a batch where a ReLU input sits within rounding of 0 (the second
derivative jumps there), so the float64 column is the accuracy to read. Timed: whole meta-steps
(meta-gradient and Adam step), one at a time, implementations interleaved round-robin over
``--repeats`` rounds of ``--steps`` steps after warm-up; reported are the median and min over all
timed steps. FLOPs of one meta-gradient are counted with
``torch.utils.flop_counter.FlopCounterMode`` on the loop backend (the workload, used for GFLOP/s
of every row) and on each row's own ops (reported as "own": under vmap the counter sees the
batched convolutions and reports far more than the work done); the fp32 SGEMM peak (a large
``torch.mm``) is measured in the same run with the same thread count, and each row's fraction of
it is printed. With ``--memory``, each row's peak memory is measured in a fresh process of its
own: the rise of the process's peak resident memory (VmHWM) over its resident memory before the
first meta-step, across three meta-steps.

    python benchmarks/omniglot_maml.py                # config A, 2 threads, all implementations found
    python benchmarks/omniglot_maml.py --config B --memory --json results/bench-omniglot-config-b.json

learn2learn is optional (``bash scripts/install_learn2learn.sh``); without it its rows are skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from metacourse.algorithms import maml
from metacourse.models.conv4 import Conv4
from metacourse.tasks.base import TaskBatch

META_BATCH, INNER_LR, OUTER_LR = 32, 0.4, 1e-3


@dataclass(frozen=True)
class Setting:
    """One benchmark configuration: shots and queries per class, inner steps."""

    n_way: int
    k_shot: int
    n_query: int
    inner_steps: int


CONFIGS = {"A": Setting(n_way=5, k_shot=1, n_query=1, inner_steps=1),
           "B": Setting(n_way=5, k_shot=5, n_query=15, inner_steps=5)}


def reference_model(setting: Setting) -> Conv4:
    """The network with fixed weights (every implementation starts from these)."""
    torch.manual_seed(0)
    return Conv4(setting.n_way, in_channels=1, hidden=64, pooling="stride")


def make_batch(setting: Setting, seed: int) -> TaskBatch:
    """32 tasks of random 28×28 images, labels 0..n_way-1 (k_shot support, n_query query per class)."""
    gen = torch.Generator().manual_seed(seed)
    classes = torch.arange(setting.n_way)
    support = classes.repeat_interleave(setting.k_shot).expand(META_BATCH, -1).contiguous()
    query = classes.repeat_interleave(setting.n_query).expand(META_BATCH, -1).contiguous()
    return TaskBatch(torch.randn(META_BATCH, support.shape[1], 1, 28, 28, generator=gen), support,
                     torch.randn(META_BATCH, query.shape[1], 1, 28, 28, generator=gen), query)


def metacourse_impl(setting: Setting, backend: str, first_order: bool, task_chunk: int | None = None):
    """(model, meta_step(optimizer, tasks), backward(tasks)) for one metacourse backend
    (``task_chunk``: the meta-gradient that many tasks at a time, as ``maml.meta_step`` does)."""
    model = reference_model(setting)
    cfg = maml.Config(inner_lr=INNER_LR, inner_steps=setting.inner_steps, first_order=first_order,
                      loss="cross_entropy", backend=backend, task_chunk=task_chunk)

    def backward(tasks):
        for chunk in tasks.split(task_chunk or len(tasks)):
            loss = maml.meta_loss(model, dict(model.named_parameters()), chunk, cfg)
            (loss * len(chunk) / len(tasks)).backward()

    return model, lambda opt, tasks: maml.meta_step(model, opt, tasks, cfg), backward


def learn2learn_impl(setting: Setting, first_order: bool):
    """The same for learn2learn 0.2.0's MAML, written as in its examples (one task at a time)."""
    from learn2learn.algorithms import MAML as L2LMAML

    model = reference_model(setting)
    wrapper = L2LMAML(model, lr=INNER_LR, first_order=first_order)

    def backward(tasks):
        for t in range(len(tasks)):
            learner = wrapper.clone()
            for _ in range(setting.inner_steps):
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


def builders_found() -> dict:
    """name → build(setting, first_order) for every implementation that can run here."""
    builders = {"metacourse loop": lambda setting, fo: metacourse_impl(setting, "loop", fo),
                "metacourse vmap": lambda setting, fo: metacourse_impl(setting, "vmap", fo),
                "metacourse vmap, chunks of 8": lambda setting, fo: metacourse_impl(setting, "vmap", fo, 8)}
    if importlib.util.find_spec("learn2learn") is not None:
        builders["learn2learn 0.2.0 MAML"] = learn2learn_impl
    return builders


def _status_kib(field: str) -> int:
    """A line of /proc/self/status in KiB (Linux), e.g. VmRSS or VmHWM."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} is not in /proc/self/status (peak memory needs Linux)")


def probe_memory(config: str, name: str, first_order: bool, threads: int) -> float:
    """Run in a fresh process: MiB by which three meta-steps raise the peak resident memory."""
    torch.set_num_threads(threads)
    setting = CONFIGS[config]
    batch = make_batch(setting, 0)
    model, step, _ = builders_found()[name](setting, first_order)
    optimizer = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
    before = _status_kib("VmRSS")
    for _ in range(3):
        step(optimizer, batch)
    return (_status_kib("VmHWM") - before) / 1024


def measure_memory(config: str, name: str, first_order: bool, threads: int) -> float:
    """``probe_memory`` in a child process (the parent's own peak would hide the row's)."""
    command = [sys.executable, __file__, "--config", config, "--threads", str(threads),
               "--probe-memory", name, "--probe-order", "first" if first_order else "second"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return float(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="A")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed meta-steps per row per round")
    parser.add_argument("--repeats", type=int, default=4,
                        help="round-robin rounds (median and min over repeats × steps steps)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed meta-steps per row")
    parser.add_argument("--check-batches", type=int, default=4,
                        help="batches on which the meta-gradients are compared before timing")
    parser.add_argument("--memory", action="store_true",
                        help="also measure each row's peak memory (one extra process per row)")
    parser.add_argument("--json", default=None, help="also write the table as JSON")
    parser.add_argument("--probe-memory", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--probe-order", default="second", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_memory:
        print(probe_memory(args.config, args.probe_memory, args.probe_order == "first", args.threads))
        return
    torch.set_num_threads(args.threads)
    if args.steps * args.repeats < 10:
        parser.error("time at least 10 meta-steps per row (--steps × --repeats >= 10)")
    if args.check_batches < 1:
        parser.error("--check-batches must be at least 1")
    setting = CONFIGS[args.config]
    batches = [make_batch(setting, seed) for seed in range(max(4, args.check_batches))]
    builders = builders_found()
    if "learn2learn 0.2.0 MAML" not in builders:
        print("learn2learn is not importable: its rows are skipped "
              "(install it with `bash scripts/install_learn2learn.sh`)")

    peak = sgemm_peak()
    print(f"config {args.config}: {setting}, meta-batch {META_BATCH}")
    print(f"fp32 SGEMM peak (2048³ torch.mm, {args.threads} threads): {peak:.1f} GFLOP/s")

    rows = []
    for first_order in (False, True):
        order = "first" if first_order else "second"
        loop_model, _, loop_backward = metacourse_impl(setting, "loop", first_order)
        loop64, _, loop64_backward = metacourse_impl(setting, "loop", first_order)
        loop64.double()
        checks = batches[:args.check_batches]
        references = [meta_gradient(loop_model, loop_backward, b) for b in checks]
        truths = [meta_gradient(loop64, loop64_backward, as_float64(b)) for b in checks]
        work = count_flops(loop_model, loop_backward, batches[0])   # the workload's FLOPs
        impls = {}
        for name, build in builders.items():
            model, step, backward = build(setting, first_order)
            grads = [meta_gradient(model, backward, b) for b in checks]
            vs_loop = max(((g - r).abs().max() / r.abs().max()).item() for g, r in zip(grads, references))
            vs_64 = max(((g.double() - t).abs().max() / t.abs().max()).item() for g, t in zip(grads, truths))
            model64, _, backward64 = build(setting, first_order)
            model64.double()
            grad64 = meta_gradient(model64, backward64, as_float64(checks[0]))
            exact = ((grad64 - truths[0]).abs().max() / truths[0].abs().max()).item()
            flops = count_flops(model, backward, batches[0])
            optimizer = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
            for i in range(args.warmup):
                step(optimizer, batches[i % len(batches)])
            impls[name] = (step, optimizer, flops, (vs_loop, vs_64, exact), [])
        for _ in range(args.repeats):                     # interleaved round-robin
            for step, optimizer, _, _, times in impls.values():
                for i in range(args.steps):
                    start = time.perf_counter()
                    step(optimizer, batches[i % len(batches)])
                    times.append(time.perf_counter() - start)
        for name, (_, _, flops, (vs_loop, vs_64, exact), times) in impls.items():
            median = statistics.median(times)
            memory = measure_memory(args.config, name, first_order, args.threads) if args.memory else None
            rows.append({"implementation": name, "order": order, "median_ms": 1e3 * median,
                         "min_ms": 1e3 * min(times), "timed_steps": len(times), "gflop": work / 1e9,
                         "gflop_counted_own": flops / 1e9, "gflop_per_s": work / median / 1e9,
                         "fraction_of_sgemm_peak": work / median / 1e9 / peak,
                         "max_rel_grad_diff_vs_loop_float32": vs_loop,
                         "max_rel_grad_diff_vs_loop_float64": vs_64,
                         "float64_rel_diff_vs_loop_float64": exact,
                         "peak_memory_mib": memory})

    print(f"\n{'implementation':<30}{'order':<8}{'median ms':>10}{'min ms':>9}{'GFLOP':>8}{'own':>8}"
          f"{'GFLOP/s':>9}{'% peak':>8}{'MiB':>7}  rel |Δg| fp32 vs loop fp32 / vs loop fp64; fp64 vs fp64")
    for r in rows:
        memory = "-" if r["peak_memory_mib"] is None else f"{r['peak_memory_mib']:.0f}"
        print(f"{r['implementation']:<30}{r['order']:<8}{r['median_ms']:>10.1f}{r['min_ms']:>9.1f}"
              f"{r['gflop']:>8.2f}{r['gflop_counted_own']:>8.2f}{r['gflop_per_s']:>9.1f}"
              f"{100 * r['fraction_of_sgemm_peak']:>7.1f}%{memory:>7}"
              f"  {r['max_rel_grad_diff_vs_loop_float32']:.1e} / {r['max_rel_grad_diff_vs_loop_float64']:.1e};"
              f" {r['float64_rel_diff_vs_loop_float64']:.1e}")
    print("GFLOP: the workload's FLOPs, counted on the loop backend (used for GFLOP/s and % peak);"
          " own: FlopCounterMode's count on the row's own ops (vmap's batched convolutions are"
          " counted as far more than the work they do)")
    info = {"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
            "cpu": platform.processor() or platform.machine(), "steps": args.steps,
            "repeats": args.repeats, "warmup": args.warmup, "check_batches": args.check_batches,
            "sgemm_peak_gflop_per_s": peak,
            "config": {"name": args.config,
                       "model": "Conv4(5, pooling='stride', hidden=64), batch-statistics BN",
                       "input": "random 1x28x28", "n_way": setting.n_way, "k_shot": setting.k_shot,
                       "n_query": setting.n_query, "meta_batch": META_BATCH,
                       "inner_steps": setting.inner_steps, "inner_lr": INNER_LR,
                       "outer": f"Adam lr={OUTER_LR}"},
            "learn2learn": "learn2learn 0.2.0 MAML" in builders,
            "peak_memory": ("VmHWM rise over VmRSS before the first of 3 meta-steps, fresh process per row"
                            if args.memory else "not measured"),
            "rows": rows}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(info, handle, indent=2)


if __name__ == "__main__":
    main()
