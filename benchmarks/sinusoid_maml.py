"""Meta-iterations per second of MAML on sinusoids: metacourse's backends against learn2learn.

Configuration (MAML's sinusoid setting): MLP 1-40-40-1, meta-batch 25 tasks, K = 10 support and
10 query points, one inner SGD step (α = 0.01), second order, Adam outer step. Every
implementation starts from the same weights and sees the same pre-sampled task batches (data
sampling is not timed). Before timing, each implementation's meta-gradient on one batch is
compared with metacourse's loop backend. Reported: median and min over repeats of the
meta-iterations per second of a run of ``--iters`` meta-steps, after warm-up.

    python benchmarks/sinusoid_maml.py                # 2 threads, all implementations found
    python benchmarks/sinusoid_maml.py --threads 1 --repeats 15 --json results/bench-sinusoid.json

learn2learn is optional (``bash scripts/install_learn2learn.sh``); without it its row is skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

from metacourse.algorithms import maml
from metacourse.functional import mse_loss, params_of
from metacourse.models import MLP
from metacourse.tasks import SinusoidTasks

INNER_LR, META_BATCH, K = 0.01, 25, 10


def reference_model() -> nn.Sequential:
    """A plain ``nn.Sequential`` MLP (what a learn2learn user would write)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 1))


def metacourse_model() -> MLP:
    """metacourse's MLP with exactly the reference weights."""
    model = MLP(1, (40, 40), 1)
    model.load_state_dict(reference_model().state_dict())
    return model


def metacourse_backward(backend: str):
    """(model, function that leaves the meta-gradient of a batch in ``.grad``) for one backend."""
    model = metacourse_model()
    cfg = maml.Config(inner_lr=INNER_LR, backend=backend)
    return model, lambda tasks: maml.meta_loss(model, params_of(model), tasks, cfg).backward()


def learn2learn_backward():
    """The same for learn2learn 0.2.0's MAML, written as in its examples (one task at a time)."""
    from learn2learn.algorithms import MAML as L2LMAML

    model = reference_model()
    return model, lambda tasks: l2l_backward(L2LMAML(model, lr=INNER_LR), tasks)


def l2l_backward(wrapper, tasks) -> None:
    for t in range(len(tasks)):
        learner = wrapper.clone()
        learner.adapt(mse_loss(learner(tasks.x_support[t]), tasks.y_support[t]))
        (mse_loss(learner(tasks.x_query[t]), tasks.y_query[t]) / len(tasks)).backward()


def meta_gradient(model: nn.Module, backward, tasks) -> torch.Tensor:
    """The meta-gradient of one batch, flattened."""
    model.zero_grad(set_to_none=True)
    backward(tasks)
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def meta_step(model: nn.Module, optimizer: torch.optim.Optimizer, backward, tasks) -> None:
    """One timed meta-iteration: meta-gradient, then the Adam step."""
    optimizer.zero_grad(set_to_none=True)
    backward(tasks)
    optimizer.step()


def time_runs(model, backward, batches, iters: int, repeats: int, warmup: int) -> list[float]:
    """Meta-iterations per second of ``repeats`` runs of ``iters`` meta-steps each."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for i in range(warmup):
        meta_step(model, optimizer, backward, batches[i % len(batches)])
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(iters):
            meta_step(model, optimizer, backward, batches[i % len(batches)])
        rates.append(iters / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=100, help="meta-steps per timed run")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs (median and min reported)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--json", default=None, help="also write the table as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    batches = [SinusoidTasks().sample(META_BATCH, K, K, rng) for _ in range(50)]
    candidates = {"metacourse loop": lambda: metacourse_backward("loop"),
                  "metacourse vmap": lambda: metacourse_backward("vmap")}
    if importlib.util.find_spec("learn2learn") is not None:
        candidates["learn2learn 0.2.0 MAML"] = learn2learn_backward
    reference = meta_gradient(*metacourse_backward("loop"), batches[0])
    rows = []
    for name, build in candidates.items():
        model, backward = build()
        diff = (meta_gradient(model, backward, batches[0]) - reference).abs().max().item()
        rates = time_runs(model, backward, batches, args.iters, args.repeats, args.warmup)
        rows.append({"implementation": name, "median_it_per_s": statistics.median(rates),
                     "min_it_per_s": min(rates), "max_abs_grad_diff_vs_loop": diff})
        print(f"{name:<26} median {rows[-1]['median_it_per_s']:7.0f} it/s   min {min(rates):7.0f} it/s"
              f"   max |Δ meta-gradient| vs loop {diff:.1e}")
    info = {"torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
            "cpu": platform.processor() or platform.machine(), "iters": args.iters,
            "repeats": args.repeats, "meta_batch": META_BATCH, "k_shot": K, "rows": rows}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(info, handle, indent=2)


if __name__ == "__main__":
    main()
