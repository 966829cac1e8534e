"""The open problems of meta-learning, measured (Lecture 9: lectures/09_open_problems.ipynb).

Three experiments, each a few minutes on a 2-core CPU at its default budget:

- ``meta-overfitting``: meta-test error against the number N of distinct meta-training tasks.
  MAML (MLP 1-40-40-1, one inner step) and a black-box learner (a conditional neural process)
  are meta-trained on a pool of N sinusoids (``tasks.variants.SinusoidPool``: fresh inputs x at
  every visit, only N functions) for N = 5, 20, 100, 1000 and on unlimited tasks, and scored on
  the pool's own tasks (train) and on 600 new tasks (test).
- ``task-shift``: meta-train on one amplitude range, test on another. Each learner is trained on
  the training range, on the shifted test range (the in-distribution baseline for that range)
  and on the paper's full range, and scored on both ranges.
- ``maml-cost``: time per meta-step and memory of second-order vs first-order MAML for 1…5
  inner steps, on the sinusoid MLP and on a Conv4 with Omniglot-shaped inputs. Memory is measured
  twice: the peak that the CPU allocator reports during one meta-step (``torch.profiler``), and
  the bytes of the tensors the autograd graph holds for the backward pass (counted by walking the
  graph of the meta-loss).

Shared setup (MAML's sinusoid experiment): meta-batch 25, K = 10 support and 10 query points per
training task, α = 0.01, Adam with β = 0.001; test tasks have K = 10 support and 100 query points;
MAML is fine-tuned for 1 and 10 steps at test time, the CNP reads the support set once.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..algorithms import blackbox, maml
from ..evaluate import Summary, adaptation_curve, summarize
from ..functional import params_of
from ..models import MLP
from ..models.blackbox import CNP
from ..reproduce import Argument, Budget, Result, Row, RunOptions, register
from ..tasks import SinusoidTasks, TaskBatch
from ..tasks.variants import SinusoidPool
from ..train import TrainConfig, meta_train
from ..utils import check_positive_int, get_device

__all__ = ["LEARNERS", "parse_pool_sizes", "parse_range", "train_learner", "score_learner",
           "graph_bytes", "peak_bytes", "plot_meta_overfitting", "plot_task_shift", "plot_maml_cost",
           "overfitting_table", "shift_table", "cost_table"]

LEARNERS = ("MAML", "CNP")
INNER_LR = 0.01
OUTER_LR = 1e-3
FINE_TUNING_STEPS = (1, 10)
UNLIMITED = "unlimited"
POOL_STREAM = 5  # the pool's tasks come from their own random stream, apart from training's task draws


# ----------------------------------------------------------------------------- shared pieces

@dataclass(frozen=True)
class SinusoidProblemBudget(Budget):
    """The training and test budget shared by the two sinusoid experiments (and what each varies)."""

    meta_steps: int = 5000
    meta_batch_size: int = 25
    k_shot: int = 10
    n_query_train: int = 10
    n_query_test: int = 100
    inner_lr: float = INNER_LR
    outer_lr: float = OUTER_LR
    test_tasks: int = 600
    pool_sizes: tuple[str | int, ...] | None = None
    """meta-overfitting: the numbers of training tasks compared."""
    amplitude_train: tuple[float, float] | None = None
    """task-shift: the amplitude ranges of training, the shifted test and the full range."""
    amplitude_shifted: tuple[float, float] | None = None
    amplitude_full: tuple[float, float] | None = None


def sinusoid_plan(options: RunOptions, default_steps: int, **varied) -> SinusoidProblemBudget:
    """The training and test budget shared by the two sinusoid experiments."""
    return SinusoidProblemBudget(meta_steps=options.meta_steps or (40 if options.fast else default_steps),
                                 test_tasks=50 if options.fast else 600, **varied)


@dataclass(frozen=True)
class MamlCostBudget(Budget):
    """What maml-cost measures: inner steps, repeats per model, and the models (described)."""

    inner_steps: tuple[int, ...] = (1, 2, 3, 4, 5)
    repeats: dict | None = None
    device: str = "cpu"
    mlp: dict | None = None
    conv4: dict | None = None


def build_learner(method: str) -> nn.Module:
    """MAML's 1-40-40-1 MLP, or a CNP of the size used in Lecture 3 (128 hidden units, r of 128)."""
    if method == "MAML":
        return MLP(1, (40, 40), 1)
    if method == "CNP":
        return CNP(1, 1, hidden=128, r_dim=128)
    raise ValueError(f"no learner named {method!r}; choose one of {LEARNERS}")


def train_learner(method: str, family, plan: Budget, options: RunOptions, description: str,
                  device: torch.device) -> tuple[nn.Module, float]:
    """Meta-train ``method`` on tasks from ``family`` (anything with ``SinusoidTasks.sample``'s
    interface); every call starts from the same initialisation and task stream (``options.seed``).
    Returns the model and the training wall time in seconds."""
    torch.manual_seed(options.seed)
    model = build_learner(method).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=plan.outer_lr)
    if method == "MAML":
        step = partial(maml.meta_step, model, optimizer, cfg=maml.Config(inner_lr=plan.inner_lr))
    else:
        step = partial(blackbox.meta_step, model, optimizer, cfg=blackbox.Config())
    sampler = partial(family.sample, k_shot=plan.k_shot, n_query=plan.n_query_train, device=device)
    train_cfg = TrainConfig(meta_steps=plan.meta_steps, meta_batch_size=plan.meta_batch_size,
                            seed=options.seed, progress=options.progress, description=description)
    start = time.perf_counter()
    meta_train(step, sampler, train_cfg, state={"model": model, "optimizer": optimizer})
    return model, time.perf_counter() - start


def score_learner(method: str, model: nn.Module, tasks: TaskBatch, plan: Budget) -> dict[str, np.ndarray]:
    """Per-task query MSE: MAML after 1 and 10 fine-tuning steps, the CNP after reading the support
    set. Keys are the labels of the table: ``"MAML (1 step)"``, ``"MAML (10 steps)"``, ``"CNP"``."""
    if method == "MAML":
        curve = adaptation_curve(model, tasks, FINE_TUNING_STEPS, inner_lr=plan.inner_lr)
        return {f"MAML ({s} step{'s' if s > 1 else ''})": curve[s] for s in FINE_TUNING_STEPS}
    return {method: blackbox.task_scores(model, tasks, blackbox.Config())}


def parse_pool_sizes(text: str) -> list[int | None]:
    """``"5,20,unlimited"`` → ``[5, 20, None]`` (None: a fresh task at every draw)."""
    sizes: list[int | None] = []
    for item in (part.strip() for part in str(text).split(",")):
        if item == UNLIMITED:
            sizes.append(None)
        elif item.isdigit() and int(item) > 0:
            sizes.append(int(item))
        else:
            raise ValueError(f"--pool-sizes {text!r}: give comma-separated positive integers and/or "
                             f"'{UNLIMITED}', e.g. 5,20,100,1000,{UNLIMITED}")
    return sizes


def parse_range(flag: str, text: str) -> tuple[float, float]:
    """``"0.1,2.5"`` → ``(0.1, 2.5)``; the error names the flag and shows the expected form."""
    try:
        low, high = (float(part) for part in str(text).split(","))
    except ValueError:
        raise ValueError(f"{flag} {text!r}: give two numbers 'low,high', e.g. {flag} 0.1,2.5") from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 <= low < high):
        raise ValueError(f"{flag} {text!r}: need 0 <= low < high, e.g. {flag} 0.1,2.5")
    return low, high


def _pool_label(size: int | None) -> str:
    return UNLIMITED if size is None else str(size)


def _load_note() -> str:
    one, five, _ = os.getloadavg()
    return f"CPU load average while running: {one:.1f} (1 min), {five:.1f} (5 min); 1 torch thread"


def _save(figure, options: RunOptions, name: str) -> str:
    from .. import viz

    path = Path(options.out_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    viz.close(figure)
    return str(path)


def _finish(name: str, options: RunOptions, device, started: float, plan: Budget, rows: list[Row],
            notes: list[str]) -> Result:
    notes.append(_load_note())
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a result")
    return Result(name, options.seed, str(device), time.perf_counter() - started, plan, rows, notes)


# ----------------------------------------------------------------------------- meta-overfitting

@register("meta-overfitting", "meta-test MSE vs number of meta-training tasks, MAML and a CNP (sinusoids)",
          arguments=(Argument("--pool-sizes", str, f"5,20,100,1000,{UNLIMITED}", None,
                              f"comma-separated numbers of distinct training tasks, or '{UNLIMITED}'"),), threads=1)
def run_meta_overfitting(options: RunOptions) -> Result:
    started, device = time.perf_counter(), get_device(options.device or "cpu")
    sizes = parse_pool_sizes(options.extra.get("pool_sizes", f"5,20,100,1000,{UNLIMITED}"))
    plan = sinusoid_plan(options, default_steps=5000, pool_sizes=tuple(_pool_label(s) for s in sizes))
    test = SinusoidTasks().sample(plan.test_tasks, plan.k_shot, plan.n_query_test,
                                  np.random.default_rng([options.seed, 2017]), device)
    rows, notes = [], []
    for size in sizes:
        label = _pool_label(size)
        family = SinusoidTasks() if size is None else SinusoidPool(size, seed=[options.seed, POOL_STREAM])
        seen = family.sample(plan.test_tasks, plan.k_shot, plan.n_query_test,
                             np.random.default_rng([options.seed, 11]), device)
        for method in LEARNERS:
            model, seconds = train_learner(method, family, plan, options, f"{method}, N={label}", device)
            for split, tasks in (("train", seen), ("test", test)):
                for key, values in score_learner(method, model, tasks, plan).items():
                    rows.append(Row(key, f"{split}_mse_{label}tasks", None, summarize(values)))
            notes.append(f"{method}, N={label}: trained in {seconds:.0f} s")
    notes += [f"train_mse: {plan.test_tasks} episodes drawn from the N training tasks with new "
              "inputs x (for small N the same task recurs, so its ± understates the spread over "
              "tasks); test_mse: the same 600 new tasks for every model",
              "pools are nested (same seed): the 5 tasks are the first 5 of the 20, and so on; every "
              "model starts from the same initialisation and the same stream of task draws"]
    result = _finish("meta-overfitting", options, device, started, plan, rows, notes)
    result.artifacts["plot"] = _save(plot_meta_overfitting(result), options, "meta-overfitting")
    return result


def plot_meta_overfitting(result: Result):
    """MSE (mean ± 95% CI) against the number of meta-training tasks: new tasks solid, the
    training tasks dashed; 'unlimited' is drawn at the right end."""
    from matplotlib import pyplot as plt

    labels = result.budget["pool_sizes"]
    finite = [int(s) for s in labels if s != UNLIMITED]
    far = 10 * max(finite) if finite else 1
    where = {s: (far if s == UNLIMITED else int(s)) for s in labels}
    figure, ax = plt.subplots(figsize=(6.5, 4))
    for color, method in zip(("C0", "C1", "C2"), dict.fromkeys(r.method for r in result.rows)):
        for split, style in (("test", "-"), ("train", "--")):
            points = [(where[s], r.ours) for s in labels for r in result.rows
                      if r.method == method and r.metric == f"{split}_mse_{s}tasks"]
            x = [p[0] for p in points]
            ax.errorbar(x, [p[1].mean for p in points], yerr=[p[1].ci95 for p in points], color=color,
                        linestyle=style, marker="o", capsize=3, label=f"{method}, {split} tasks")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(list(where.values()), [("∞" if s == UNLIMITED else s) for s in labels])
    ax.set_xlabel("number of distinct meta-training tasks N")
    ax.set_ylabel("query MSE (K = 10)")
    title = "meta-overfitting" + (" — FAST smoke test" if any("FAST" in n for n in result.notes) else "")
    ax.set_title(f"{title}: {result.budget['meta_steps']} meta-steps")
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


# ----------------------------------------------------------------------------- task shift

@register("task-shift", "meta-train on one sinusoid amplitude range, test on a shifted one (MAML, CNP)",
          arguments=(Argument("--train-amplitude", str, "0.1,2.5", None, "amplitude range 'low,high' of training"),
                     Argument("--test-amplitude", str, "2.5,5.0", None, "shifted amplitude range 'low,high'")),
          threads=1)
def run_task_shift(options: RunOptions) -> Result:
    started, device = time.perf_counter(), get_device(options.device or "cpu")
    ranges = {"train": parse_range("--train-amplitude", options.extra.get("train_amplitude", "0.1,2.5")),
              "shifted": parse_range("--test-amplitude", options.extra.get("test_amplitude", "2.5,5.0"))}
    ranges["full"] = SinusoidTasks().amplitude
    plan = sinusoid_plan(options, default_steps=5000, **{f"amplitude_{k}": tuple(v) for k, v in ranges.items()})
    tests = {name: SinusoidTasks(amplitude=ranges[name]).sample(
                 plan.test_tasks, plan.k_shot, plan.n_query_test,
                 np.random.default_rng([options.seed, 2017, i]), device)
             for i, name in enumerate(("train", "shifted"))}
    rows, notes, per_task = [], [], {}
    for trained_on in ("train", "shifted", "full"):
        family = SinusoidTasks(amplitude=ranges[trained_on])
        for method in LEARNERS:
            model, seconds = train_learner(method, family, plan, options,
                                           f"{method}, A in {ranges[trained_on]}", device)
            for tested_on, tasks in tests.items():
                for key, values in score_learner(method, model, tasks, plan).items():
                    rows.append(Row(key, f"mse_train{_span(ranges[trained_on])}_test{_span(ranges[tested_on])}",
                                    None, summarize(values)))
                    per_task.setdefault((key, trained_on), []).append(
                        (tasks.info["amplitude"], values))
            notes.append(f"{method}, trained on A in {ranges[trained_on]}: {seconds:.0f} s")
    notes.append("metric mse_trainA_testB: trained on amplitudes A ~ U[A], tested on 600 new tasks "
                 "with amplitudes ~ U[B]; the row trained on B is the in-distribution baseline for B")
    result = _finish("task-shift", options, device, started, plan, rows, notes)
    curves = {key: tuple(np.concatenate(parts) for parts in zip(*pieces)) for key, pieces in per_task.items()}
    result.artifacts["plot"] = _save(plot_task_shift(curves, ranges, plan.meta_steps, options.fast),
                                     options, "task-shift")
    return result


def _span(bounds: tuple[float, float]) -> str:
    return f"{bounds[0]:g}-{bounds[1]:g}"


def plot_task_shift(curves: dict, ranges: dict, meta_steps: int, fast: bool = False):
    """Normalised test MSE against the test task's amplitude A (mean per bin), one panel per
    learner, one line per training range; the training range is shaded. The MSE is divided by
    A²/2, the mean of y² over a period, so 1 means "no better than predicting zero" and tasks of
    different amplitudes can be compared."""
    from matplotlib import pyplot as plt

    keys = list(dict.fromkeys(key for key, _ in curves))
    figure, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), sharey=True, squeeze=False)
    colors = {"train": "C0", "shifted": "C1", "full": "C2"}
    for ax, key in zip(axes[0], keys):
        for trained_on, color in colors.items():
            if (key, trained_on) not in curves:
                continue
            amplitude, mse = curves[(key, trained_on)]
            edges = np.linspace(amplitude.min(), amplitude.max(), 13)
            bins = np.clip(np.digitize(amplitude, edges) - 1, 0, len(edges) - 2)
            centres = [(edges[b] + edges[b + 1]) / 2 for b in range(len(edges) - 1) if np.any(bins == b)]
            normalised = mse / (amplitude ** 2 / 2)
            means = [normalised[bins == b].mean() for b in range(len(edges) - 1) if np.any(bins == b)]
            low, high = ranges[trained_on]
            ax.plot(centres, means, marker="o", color=color, label=f"trained on A∈[{low:g}, {high:g}]")
        low, high = ranges["train"]
        ax.axvspan(low, high, color=colors["train"], alpha=0.08)
        ax.set_title(key + (" — FAST" if fast else ""))
        ax.set_xlabel("amplitude A of the test task")
        ax.set_yscale("log")
    axes[0][0].set_ylabel(f"query MSE ÷ (A²/2), mean per bin\n({meta_steps} meta-steps)")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return figure


# ----------------------------------------------------------------------------- cost of MAML

COST_MODELS = ("mlp", "conv4")
COST_METRICS = ("cpu_ms_per_step", "ms_per_step", "peak_MiB", "graph_MiB")


def cost_setup(name: str, fast: bool) -> tuple[nn.Module, TaskBatch, maml.Config, dict]:
    """The network, one fixed batch of tasks, the MAML config and the description of a cost run.

    ``mlp``: the sinusoid setting (25 tasks, K = 10, 10 query points). ``conv4``: MAML's Omniglot
    network on 5-way 1-shot tasks of 28×28 images with 5 query images per class, 8 tasks per
    batch; the pixels are random, which changes nothing in the cost of a step.
    """
    generator = torch.Generator().manual_seed(0)
    if name == "mlp":
        tasks = SinusoidTasks().sample(25, 10, 10, np.random.default_rng(0))
        return MLP(1, (40, 40), 1), tasks, maml.Config(inner_lr=INNER_LR), {
            "network": "MLP 1-40-40-1", "meta_batch_size": 25, "k_shot": 10, "n_query": 10}
    if name == "conv4":
        from ..models.conv4 import Conv4

        n_tasks, n_way, n_query = (2 if fast else 8), 5, 5
        support = torch.rand(n_tasks, n_way, 1, 28, 28, generator=generator)
        query = torch.rand(n_tasks, n_way * n_query, 1, 28, 28, generator=generator)
        labels = torch.arange(n_way)
        tasks = TaskBatch(support, labels.expand(n_tasks, -1), query,
                          labels.repeat_interleave(n_query).expand(n_tasks, -1))
        return Conv4(n_way), tasks, maml.Config(inner_lr=0.4, loss="cross_entropy"), {
            "network": "Conv4 (64 filters, strided)", "meta_batch_size": n_tasks, "n_way": n_way,
            "k_shot": 1, "n_query_per_class": n_query}
    raise ValueError(f"--models: no cost model named {name!r}; choose from {','.join(COST_MODELS)}")


def graph_bytes(loss: torch.Tensor) -> int:
    """Bytes of the distinct tensors that the autograd graph of ``loss`` saved for the backward pass
    (the graph's ``_saved_*`` attributes, each storage counted once)."""
    storages: dict[int, int] = {}
    stack, visited = [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for attribute in dir(node):
            if not attribute.startswith("_saved_"):
                continue
            value = getattr(node, attribute)
            for item in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(item, torch.Tensor):
                    storage = item.untyped_storage()
                    storages[storage.data_ptr()] = storage.nbytes()
        stack.extend(parent for parent, _ in node.next_functions)
    return sum(storages.values())


@contextlib.contextmanager
def _native_stderr_silenced():
    """Discard what C++ code writes to file descriptor 2 inside the block: the profiler's start/stop
    log lines (and, on some builds, "gpuGetDeviceCount failed" warnings) that Python cannot filter.
    Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(step) -> int:
    """Peak of the bytes allocated on the CPU while ``step()`` runs, above the level at its start,
    from the allocation and release events that ``torch.profiler`` records."""
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    events = sorted((event.start_ns(), event.nbytes()) for event in profiler.profiler.kineto_results.events()
                    if event.name() == "[memory]")
    level = peak = 0
    for _, change in events:
        level += change
        peak = max(peak, level)
    return peak


def measure_cost(model: nn.Module, tasks: TaskBatch, cfg: maml.Config, repeats: int) -> dict:
    """Wall and CPU seconds of each of ``repeats`` meta-steps (after one warm-up step), the
    profiler's peak bytes of one more step, and the bytes the meta-loss's graph holds for backward.

    With one torch thread the CPU time of the process is the compute a step costs, whatever else
    runs on the machine; the wall time also counts the waits for a core on a shared machine."""
    optimizer = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
    step = partial(maml.meta_step, model, optimizer, tasks, cfg)
    step()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    held = graph_bytes(maml.meta_loss(model, params_of(model), tasks, cfg))  # before θ changes again
    return {"wall_seconds": np.array(wall), "cpu_seconds": np.array(cpu), "peak_bytes": peak_bytes(step),
            "graph_bytes": held}


@register("maml-cost", "time per meta-step and memory of second- vs first-order MAML, inner steps 1-5",
          arguments=(Argument("--models", str, ",".join(COST_MODELS), None,
                              "comma-separated subset of " + ",".join(COST_MODELS)),
                     Argument("--max-inner-steps", int, 5, None, "measure inner steps 1..this", minimum=1)),
          threads=1)
def run_maml_cost(options: RunOptions) -> Result:
    started = time.perf_counter()
    names = [n.strip() for n in options.extra.get("models", ",".join(COST_MODELS)).split(",") if n.strip()]
    max_steps = check_positive_int("--max-inner-steps", options.extra.get("max_inner_steps", 5),
                                   "measure at least one inner step, e.g. --max-inner-steps 5")
    if not names or any(n not in COST_MODELS for n in names):
        raise ValueError(f"--models {','.join(names)!r}: choose a comma-separated subset of {','.join(COST_MODELS)}")
    repeats = {"mlp": 3 if options.fast else 50, "conv4": 1 if options.fast else 10}
    plan = MamlCostBudget(inner_steps=tuple(range(1, max_steps + 1)), repeats={n: repeats[n] for n in names})
    described_models = {}
    rows, notes = [], []
    for name in names:
        for first_order in (False, True):
            order = "first order" if first_order else "second order"
            for inner_steps in plan.inner_steps:
                torch.manual_seed(options.seed)
                model, tasks, cfg, described = cost_setup(name, options.fast)
                cfg = maml.Config(inner_lr=cfg.inner_lr, inner_steps=inner_steps, first_order=first_order,
                                  loss=cfg.loss)
                cost = measure_cost(model, tasks, cfg, repeats[name])
                method, k = f"{name} {order}", f"{inner_steps}inner"
                rows += [Row(method, f"cpu_ms_per_step_{k}", None, summarize(1000 * cost["cpu_seconds"])),
                         Row(method, f"ms_per_step_{k}", None, summarize(1000 * cost["wall_seconds"])),
                         Row(method, f"peak_MiB_{k}", None, _single(cost["peak_bytes"] / 2**20)),
                         Row(method, f"graph_MiB_{k}", None, _single(cost["graph_bytes"] / 2**20))]
        described_models[name] = described
    plan = plan.replace(**described_models)
    notes += ["cpu_ms_per_step / ms_per_step: CPU time of the process / wall time of maml.meta_step "
              "(forward, backward, Adam update) on one fixed batch, mean ± 95% CI over the repeats after "
              "one warm-up step; task sampling excluded. With 1 torch thread the CPU time is the cost of "
              "the step even on a busy machine; the wall time grows with the machine's load",
              "peak_MiB: peak CPU allocation above the starting level during one meta-step "
              "(torch.profiler, profile_memory=True); graph_MiB: tensors the meta-loss's autograd "
              "graph saves for backward, each storage counted once (one measurement each, n = 1)"]
    result = _finish("maml-cost", options, "cpu", started, plan, rows, notes)
    result.artifacts["plot"] = _save(plot_maml_cost(result), options, "maml-cost")
    return result


def _single(value: float) -> Summary:
    """A Summary of one deterministic measurement (no confidence interval)."""
    return Summary(float(value), float("nan"), float(value), 1)


def plot_maml_cost(result: Result):
    """Time per meta-step and peak memory against inner steps, second vs first order, per network."""
    from matplotlib import pyplot as plt

    steps = result.budget["inner_steps"]
    names = list(dict.fromkeys(r.method.split()[0] for r in result.rows))
    figure, axes = plt.subplots(len(names), 2, figsize=(9, 3.2 * len(names)), squeeze=False)
    for row_axes, name in zip(axes, names):
        for ax, metric, label in ((row_axes[0], "cpu_ms_per_step", "CPU ms per meta-step"),
                                  (row_axes[1], "peak_MiB", "peak memory (MiB)")):
            for order, style in (("second order", "-o"), ("first order", "--s")):
                values = [r.ours for k in steps for r in result.rows
                          if r.method == f"{name} {order}" and r.metric == f"{metric}_{k}inner"]
                ax.errorbar(steps, [v.mean for v in values],
                            yerr=[0 if math.isnan(v.ci95) else v.ci95 for v in values],
                            fmt=style, capsize=3, label=order)
            ax.set_xlabel("inner steps")
            ax.set_ylabel(label)
            ax.set_title(result.budget.get(name, {}).get("network", name))
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=8)
    figure.tight_layout()
    return figure


# ----------------------------------------------------------------------------- tables for the lecture

def _cell(summary: Summary, digits: int = 3) -> str:
    if not math.isfinite(summary.mean):
        return "diverged"
    ci = "" if not math.isfinite(summary.ci95) else f" ± {summary.ci95:.{digits}f}"
    return f"{summary.mean:.{digits}f}{ci}"


def _lookup(result: Result) -> dict[tuple[str, str], Summary]:
    return {(row.method, row.metric): row.ours for row in result.rows}


def overfitting_table(result: Result) -> str:
    """Markdown: one line per number of training tasks N, train and test MSE of every learner."""
    found, methods = _lookup(result), list(dict.fromkeys(row.method for row in result.rows))
    lines = ["| N tasks | " + " | ".join(f"{m}: train | {m}: test" for m in methods) + " |",
             "|---|" + "---|---|" * len(methods)]
    for size in result.budget["pool_sizes"]:
        cells = [_cell(found[(m, f"{split}_mse_{size}tasks")]) for m in methods for split in ("train", "test")]
        lines.append(f"| {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def shift_table(result: Result) -> str:
    """Markdown: one line per (learner, training range), the MSE on each test range."""
    ranges = {name: _span(tuple(result.budget[f"amplitude_{name}"])) for name in ("train", "shifted", "full")}
    found, methods = _lookup(result), list(dict.fromkeys(row.method for row in result.rows))
    lines = [f"| learner | trained on A ∈ | test A ∈ [{ranges['train']}] | test A ∈ [{ranges['shifted']}] |",
             "|---|---|---|---|"]
    for method in methods:
        for trained in ("train", "shifted", "full"):
            cells = [_cell(found[(method, f"mse_train{ranges[trained]}_test{ranges[tested]}")])
                     for tested in ("train", "shifted")]
            lines.append(f"| {method} | [{ranges[trained]}] | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cost_table(result: Result) -> str:
    """Markdown: per network and number of inner steps, time and memory of both orders and their ratio."""
    found = _lookup(result)
    names = list(dict.fromkeys(row.method.split()[0] for row in result.rows))
    lines = ["| network | inner steps | CPU ms/step, 2nd order | CPU ms/step, 1st order | ratio | "
             "wall ms/step, 2nd | wall ms/step, 1st | peak MiB, 2nd | peak MiB, 1st | ratio | "
             "graph MiB, 2nd | graph MiB, 1st |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        for k in result.budget["inner_steps"]:
            second, first = ({m: found[(f"{name} {order}", f"{m}_{k}inner")] for m in COST_METRICS}
                             for order in ("second order", "first order"))
            time_ratio = second["cpu_ms_per_step"].mean / first["cpu_ms_per_step"].mean
            memory_ratio = second["peak_MiB"].mean / first["peak_MiB"].mean
            lines.append(f"| {result.budget.get(name, {}).get('network', name)} | {k} | "
                         f"{_cell(second['cpu_ms_per_step'], 1)} | {_cell(first['cpu_ms_per_step'], 1)} | "
                         f"{time_ratio:.2f}× | {_cell(second['ms_per_step'], 1)} | {_cell(first['ms_per_step'], 1)} | "
                         f"{second['peak_MiB'].mean:.2f} | {first['peak_MiB'].mean:.2f} | {memory_ratio:.2f}× | "
                         f"{second['graph_MiB'].mean:.2f} | {first['graph_MiB'].mean:.2f} |")
    return "\n".join(lines)


# --- Showing stored results ---
# Lecture 9's tables, read from the course's stored runs (metacourse.results). Every line of a table
# names the run it comes from: its file, budget, seed, device and time.

FAMILY = {"MAML": "optimisation", "first-order MAML": "optimisation", "Reptile": "optimisation",
          "Meta-SGD": "optimisation", "Prototypical Networks": "metric", "Matching Networks": "metric",
          "Matching Networks (no FCE)": "metric",
          "CNP": "black-box", "hypernetwork": "black-box", "LSTM": "black-box (recurrent)",
          "SNAIL": "black-box (attention)", "MANN": "black-box (memory)", "feed-forward": "none (no memory)",
          "transformer (in context)": "black-box (attention)", "RL²": "black-box (recurrent)"}
"""The family of each learner whose rows Lecture 9 compares (anything else: no meta-learning)."""

META_RL = ("rl2-bandits-k5-n10", "rl2-bandits-k5-n100", "rl2-mdp-n10")
"""The meta-RL problems with a trained RL² row (the other sizes store the hand-designed rows only)."""


def _duration(seconds: float) -> str:
    return f"{seconds:,.0f} s" if seconds < 120 else f"{seconds / 60:,.0f} min"


def run_label(stored) -> str:
    """``file: budget, seed, device, time`` of a stored run (a :class:`metacourse.results.StoredResult`).

    The time is the training's wall (and CPU) time where the run stored it, otherwise the wall time of
    the run when it wrote the file (a resumed run may only have evaluated then)."""
    plan, measured = stored.plan, stored.measured
    rl2 = measured.get("rl2") or {}
    if "meta_steps" in plan:
        budget = f"{plan['meta_steps']:,} meta-steps (meta-batch {plan.get('meta_batch_size', 1)})"
    elif rl2.get("env_steps"):
        budget = f"{rl2['env_steps']:,} environment steps"
    else:
        budget = "a timing run, no training"
    wall = measured.get("train_seconds") or rl2.get("train_wall_seconds")
    cpu = measured.get("train_cpu_seconds") or rl2.get("train_cpu_seconds")
    if wall:
        when = f"training {_duration(wall)} wall" + (f", {_duration(cpu)} CPU" if cpu else "")
    else:
        when = f"{_duration(stored.wall_seconds)} wall when the file was written"
    return f"`{stored.name}`: {budget}, seed {stored.seed}, {stored.device or 'device not stored'}, {when}"


def _family_table(header: list[str], entries: list[tuple], digits: int = 3) -> str:
    """Markdown: one line per (learner, stored run, metrics), the run's label in the last column."""
    lines = ["| learner | family | " + " | ".join(header) + " | run |", "|---|---|" + "---|" * len(header) + "---|"]
    for learner, stored, method, metrics in entries:
        found = _lookup(stored)
        cells = [_cell(found[(method, metric)], digits) if (method, metric) in found else "—" for metric in metrics]
        lines.append(f"| {learner} | {FAMILY.get(method, 'none (no meta-learning)')} | " + " | ".join(cells)
                     + f" | {run_label(stored)} |")
    return "\n".join(lines)


def families_sinusoid() -> str:
    """Markdown: every learner of Lectures 3, 4 and 10 on MAML's sinusoids, 5-shot and 10-shot MSE."""
    from .. import results

    sinusoid, blackbox, icl = (results.load(name) for name in ("sinusoid", "blackbox-sinusoid", "icl-sinusoid"))
    k = {run.name: run.plan["k_shot_train"] for run in (sinusoid, blackbox, icl)}
    entries = [(f"pretrain on all tasks, 10 fine-tuning steps (K = {k['sinusoid']})", sinusoid,
                "pretrain on all tasks", ("mse_5shot_10step", "mse_10shot_10step")),
               (f"MAML, 10 steps (K = {k['sinusoid']} in training)", sinusoid, "MAML",
                ("mse_5shot_10step", "mse_10shot_10step")),
               (f"MAML, 10 steps (K = {k['blackbox-sinusoid']} in training)", blackbox, "MAML",
                ("mse_5shot_10step", "mse_10shot_10step"))]
    entries += [(method, blackbox, method, ("mse_5shot", "mse_10shot")) for method in ("CNP", "hypernetwork", "LSTM",
                                                                                       "SNAIL")]
    entries.append(("transformer, in context", icl, "transformer (in context)", ("mse_5shot", "mse_10shot")))
    return _family_table(["5-shot MSE", "10-shot MSE"], entries)


def _omniglot_learner(method: str, run) -> str:
    if run.entry.get("variant") == "query5":
        return f"{method}, {run.plan['n_query_train']} query images per class in training"
    return method


def families_omniglot() -> str:
    """Markdown: every stored Omniglot 5-way 1-shot learner (Lectures 2, 3 and 4), % correct on new classes."""
    from .. import results

    runs = [*results.runs("omniglot", ways=5, shots=1), *results.runs("omniglot", ways=5, shots=1, variant="query5"),
            *results.runs("blackbox-omniglot", ways=5, shots=1),
            *results.runs("blackbox-omniglot", ways=5, shots=1, variant="snail")]
    entries = [(_omniglot_learner(row.method, run), run, row.method, (row.metric,)) for run in runs for row in run.rows]
    return _family_table(["accuracy %"], entries, digits=2)


def families_memory() -> str:
    """Markdown: Santoro et al.'s Omniglot protocol, % correct at the 1st, 2nd and 10th presentation of a class."""
    from .. import results

    stored = results.load("mann-omniglot")
    return _family_table(["1st", "2nd", "10th presentation"],
                         [(m, stored, m, tuple(f"acc%_instance{i}" for i in (1, 2, 10)))
                          for m in ("MANN", "LSTM", "feed-forward")], digits=1)


def _problem(experiment: str) -> str:
    parts = dict((part[0], part[1:]) for part in experiment.split("-")[2:])
    if experiment.startswith("rl2-bandits"):
        return f"Bernoulli bandit, {parts['k']} arms, {parts['n']} pulls"
    return f"random tabular MDP, {parts['n']} episodes"


def families_meta_rl(experiments: tuple[str, ...] = META_RL) -> str:
    """Markdown: RL² (every stored seed) beside the best hand-designed algorithm, total reward on 1,000
    test problems, with RL²'s training budget and time; a problem without an RL² run says so."""
    from .. import results

    lines = ["| problem | best hand-designed algorithm (seed 0) | RL² | RL²'s run |", "|---|---|---|---|"]
    for experiment in experiments:
        baselines = [row for row in results.load(experiment).rows if row.method != "RL²"]
        best = max(baselines, key=lambda row: row.ours.mean)
        trained = [(run, _lookup(run)[("RL²", "total_reward")]) for run in results.runs(experiment)
                   if ("RL²", "total_reward") in _lookup(run)]
        for run, rl2 in trained:
            lines.append(f"| {_problem(experiment)} | {best.method}: {_cell(best.ours)} | {_cell(rl2)} | "
                         f"{run_label(run)} |")
        if not trained:
            lines.append(f"| {_problem(experiment)} | {best.method}: {_cell(best.ours)} | not trained | — |")
    return "\n".join(lines)


def meta_rl_problems() -> tuple[str, ...]:
    """Every stored meta-RL problem of Lecture 5 (bandits and MDPs of every size)."""
    from .. import results

    names = {entry["experiment"] for entry in results.catalogue()}
    return tuple(sorted((n for n in names if n.startswith(("rl2-bandits-", "rl2-mdp-"))),
                        key=lambda n: (n.split("-")[1], [int(p[1:]) for p in n.split("-")[2:]])))


def _as_run(stored) -> Result:
    """A stored run as the :class:`metacourse.reproduce.Result` the tables above read (plan and
    measured values together, as a fresh run holds them)."""
    return Result(stored.experiment, stored.seed, stored.device, stored.wall_seconds,
                  {**stored.plan, **stored.measured}, list(stored.rows), list(stored.notes))


def stored_cost(full: bool = False) -> str:
    """Markdown: the stored ``maml-cost`` run — CPU time and peak memory of both orders (``full``: every
    column, wall time and graph memory included) — and its label."""
    from .. import results

    stored = results.load("maml-cost")
    if full:
        return cost_table(_as_run(stored)) + f"\n\n{run_label(stored)}"
    found, described = _lookup(stored), {**stored.plan, **stored.measured}  # each network's description
    lines = ["| network | inner steps | CPU ms/step, 2nd order | 1st order | ratio | peak MiB, 2nd order | "
             "1st order | ratio |", "|---|---|---|---|---|---|---|---|"]
    for name in dict.fromkeys(row.method.split()[0] for row in stored.rows):
        for k in stored.plan["inner_steps"]:
            second, first = ({m: found[(f"{name} {order}", f"{m}_{k}inner")] for m in COST_METRICS}
                             for order in ("second order", "first order"))
            lines.append(f"| {described.get(name, {}).get('network', name)} | {k} | "
                         f"{_cell(second['cpu_ms_per_step'], 1)} | {_cell(first['cpu_ms_per_step'], 1)} | "
                         f"{second['cpu_ms_per_step'].mean / first['cpu_ms_per_step'].mean:.2f}× | "
                         f"{second['peak_MiB'].mean:.2f} | {first['peak_MiB'].mean:.2f} | "
                         f"{second['peak_MiB'].mean / first['peak_MiB'].mean:.2f}× |")
    return "\n".join(lines) + f"\n\n{run_label(stored)}"


def stored_shift() -> str:
    """Markdown: the stored ``task-shift`` table and its label."""
    from .. import results

    stored = results.load("task-shift")
    return shift_table(_as_run(stored)) + f"\n\n{run_label(stored)}"


def stored_overfitting(seed: int = 0) -> str:
    """Markdown: the stored ``meta-overfitting`` table of one seed and its label."""
    from .. import results

    stored = results.load("meta-overfitting", seed=seed)
    return overfitting_table(_as_run(stored)) + f"\n\n{run_label(stored)}"


def stored_notes(experiment: str, **keys) -> str:
    """Markdown: the notes a stored run wrote (hyper-parameters, timings, load average), as a list."""
    from .. import results

    stored = results.load(experiment, **keys)
    return "\n".join(f"* {note}" for note in stored.notes) + f"\n\n{run_label(stored)}"
