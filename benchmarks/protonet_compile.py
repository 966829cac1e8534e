"""Prototypical Networks with and without ``torch.compile``: milliseconds per training step and
per evaluation chunk, compile time, and the differences in gradients and logits.

The network is ProtoNets' Omniglot embedding, ``Conv4(None, pooling="max")`` (four blocks of
[3×3 conv, 64 filters → batch norm with batch statistics → ReLU → 2×2 max-pool], 28→14→7→3→1),
on random 1×28×28 images (the cost does not depend on the pixel values):

- ``train-1shot`` / ``train-5shot``: one optimizer step (``protonet.meta_step``, Adam) on the
  paper's training episode, 60 classes with 1 or 5 support and 5 query images each;
- ``eval-50`` / ``eval-1``: query logits (no gradient) of 5-way 1-shot test tasks with 15 queries
  per class, 50 tasks at once (vmapped; the chunk ``metacourse reproduce omniglot`` uses on a GPU)
  or one at a time (its CPU setting: per task, one task is faster on a CPU than 50 together).

Eager and compiled (``protonet.Config(compile=True)``, see ``metacourse.compiled``) start from
the same weights. The first call of each is timed alone ("first call": it includes compiling for
the compiled row). Then ``--repeats`` rounds of ``--steps`` calls each, the two interleaved;
reported are the median and min. Before timing, the float32 gradient (training) or logits
(evaluation) of each row are compared with eager float64 on the same weights and inputs:
max |Δ| / max |reference|.

    python benchmarks/protonet_compile.py --threads 2 --json results/bench-protonet-compile.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from metacourse.algorithms import protonet
from metacourse.functional import params_of
from metacourse.models.conv4 import Conv4
from metacourse.tasks.base import TaskBatch

SETTINGS = {  # name: (tasks, ways, shots, queries per class, training?)
    "train-1shot": (1, 60, 1, 5, True),
    "train-5shot": (1, 60, 5, 5, True),
    "eval-50": (50, 5, 1, 15, False),
    "eval-1": (1, 5, 1, 15, False),
}


def make_tasks(n_tasks: int, ways: int, shots: int, queries: int, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)

    def labels(k: int) -> torch.Tensor:
        return torch.arange(ways).repeat_interleave(k).expand(n_tasks, -1).contiguous()

    return TaskBatch(torch.rand(n_tasks, ways * shots, 1, 28, 28, generator=g), labels(shots),
                     torch.rand(n_tasks, ways * queries, 1, 28, 28, generator=g), labels(queries))


def fresh_model(dtype: torch.dtype = torch.float32) -> Conv4:
    torch.manual_seed(0)
    return Conv4(None, pooling="max").to(dtype)


def as_float64(tasks: TaskBatch) -> TaskBatch:
    return TaskBatch(tasks.x_support.double(), tasks.y_support, tasks.x_query.double(),
                     tasks.y_query)


def output(model: Conv4, tasks: TaskBatch, cfg: protonet.Config, training: bool) -> torch.Tensor:
    """The gradient of the meta-loss (training) or the query logits (evaluation), flattened."""
    if not training:
        with torch.no_grad():
            return protonet.predict(model, params_of(model), tasks, cfg).flatten().double()
    model.zero_grad(set_to_none=True)
    protonet.meta_loss(model, params_of(model), tasks, cfg).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()]).double()


def relative(a: torch.Tensor, reference: torch.Tensor) -> float:
    return float((a - reference).abs().max() / reference.abs().max())


def runner(tasks: TaskBatch, cfg: protonet.Config, training: bool):
    """A callable doing one timed unit of work, on its own model and optimizer."""
    model = fresh_model()
    if training:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        return lambda: protonet.meta_step(model, optimizer, tasks, cfg)

    def evaluate():
        with torch.no_grad():
            protonet.predict(model, params_of(model), tasks, cfg)
    return evaluate


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def bench(name: str, steps: int, repeats: int) -> list[dict]:
    n_tasks, ways, shots, queries, training = SETTINGS[name]
    tasks = make_tasks(n_tasks, ways, shots, queries)
    configs = {"eager": protonet.Config(), "compiled": protonet.Config(compile=True)}
    reference = output(fresh_model(torch.float64), as_float64(tasks), configs["eager"], training)
    rows = {}
    for label, cfg in configs.items():
        first = timed(lambda cfg=cfg: output(fresh_model(), tasks, cfg, training))
        rows[label] = {"setting": name, "implementation": label, "first_call_ms": round(first),
                       "difference_from_float64": relative(
                           output(fresh_model(), tasks, cfg, training), reference),
                       "_run": runner(tasks, cfg, training), "_times": []}
    for row in rows.values():  # warm-up: the runner's own first calls (the optimizer step too)
        row["_run"](), row["_run"]()
    for _ in range(repeats):
        for row in rows.values():
            row["_times"] += [timed(row["_run"]) for _ in range(steps)]
    eager_median = statistics.median(rows["eager"]["_times"])
    out = []
    for row in rows.values():
        times = row.pop("_times")
        row.pop("_run")
        row |= {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
                "ms_per_task": round(statistics.median(times) / n_tasks, 1),
                "speed-up": round(eager_median / statistics.median(times), 2)}
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--steps", type=int, default=5, help="timed calls per row per round")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--json", default=None, help="also write the table as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [row for name in args.settings for row in bench(name, args.steps, args.repeats)]
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}")
    print("| setting | implementation | median ms (min) | ms per task | speed-up | first call ms | "
          "max rel. difference from float64 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setting']} | {r['implementation']} | {r['median_ms']} ({r['min_ms']}) | "
              f"{r['ms_per_task']} | {r['speed-up']}× | {r['first_call_ms']} | {r['difference_from_float64']:.1e} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"torch": torch.__version__, "threads": args.threads,
                       "steps": args.steps * args.repeats, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
