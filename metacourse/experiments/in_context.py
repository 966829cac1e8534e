"""In-context learning with a small causal transformer: linear regression and MAML's sinusoids.

``icl-linear``: Garg, Tsipras, Liang and Valiant (2022), §3 and Figure 2 at a dimension a CPU
trains: prompts of ``points`` examples of y = wᵀx, w ~ N(0, I_d), x ~ N(0, I_d) (d = 5 by
default; the paper's d = 20 needs a GPU), the transformer trained on every prompt length at once
(the loss at each x from the examples before it). Test: 1,000 new functions, 10 queries each;
squared error divided by the error of predicting 0 (d · x_scale²) for every k = 0 … points − 1,
beside least squares (min-norm; the Bayes-optimal estimator for noiseless labels), averaging and
3-nearest neighbours. Two shifts of the paper, at test time only: noisy example labels
(y_i + ε, ε ~ N(0, 1); ridge with λ = σ² = 1 is then the Bayes-optimal estimator) and inputs
scaled by 3 (x ~ N(0, 9 I)).

``icl-sinusoid``: the same transformer (x_dim = 1) on MAML's sinusoid tasks with the budget of
``blackbox-sinusoid`` (K = 10 support + 10 query points, meta-batch 25, Adam 1e-3) but 4,500
meta-steps where the stored rows of MAML, the CNP and the hypernetwork had 20,000, tested on the
same 600 tasks at K = 5 and K = 10 (MSE on 100 query points), so its rows stand beside theirs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..algorithms import in_context
from ..evaluate import summarize
from ..functional import params_of
from ..models.transformer import InContextTransformer
from ..reproduce import Argument, Budget, Result, Row, RunOptions, register
from ..tasks import SinusoidTasks
from ..train import TrainConfig, meta_train
from ..utils import get_device
from . import blackbox

SHIFTS = {"clean": {}, "noisy": {"noise": 1.0}, "scaled": {"x_scale": 3.0}}
"""Test conditions of icl-linear: the training distribution, noisy example labels, inputs × 3."""


def model_for(plan: Budget) -> InContextTransformer:
    """The transformer of a run's budget."""
    return InContextTransformer(plan.x_dim, 1, d_model=plan.d_model, layers=plan.layers,
                                heads=plan.heads, max_points=plan.points)


def checkpoint_file(runs_dir: str | Path, name: str, seed: int, meta_steps: int) -> Path:
    """Where a run named ``name`` keeps its checkpoint (resumed from when it exists)."""
    return Path(runs_dir) / "checkpoints" / f"{name}-seed{seed}-{meta_steps}.pt"


def train(name: str, model: InContextTransformer, sampler, plan: Budget,
          options: RunOptions) -> tuple[float, float, int]:
    """Meta-train (checkpointed every 500 steps, resumable). Returns the training's wall and CPU
    seconds over every session of the run (each step logs its CPU time, kept in the checkpoint's
    history) and the step this session resumed from (0: from scratch)."""
    torch.manual_seed(options.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=plan.outer_lr)
    cfg = in_context.Config(objective=plan.objective, max_grad_norm=plan.max_grad_norm)
    path = checkpoint_file(options.out_dir, name, options.seed, plan.meta_steps)
    train_cfg = TrainConfig(meta_steps=plan.meta_steps, meta_batch_size=plan.meta_batch_size,
                            seed=options.seed, checkpoint_path=str(path), progress=options.progress,
                            description=name, checkpoint_every=500)
    clock = {"cpu": time.process_time(), "wall": time.perf_counter()}

    def step(tasks) -> dict[str, float]:
        metrics = in_context.meta_step(model, optimizer, tasks, cfg)
        cpu, wall = time.process_time(), time.perf_counter()
        metrics.update(cpu_seconds=cpu - clock["cpu"], wall_seconds=wall - clock["wall"])
        clock.update(cpu=cpu, wall=wall)
        return metrics

    history = meta_train(step, sampler, train_cfg, state={"model": model, "optimizer": optimizer})
    return (float(np.sum(history.metrics["wall_seconds"])), float(np.sum(history.metrics["cpu_seconds"])),
            history.resumed_from)


def _sessions(resumed: int) -> str:
    return "one session" if not resumed else f"resumed at step {resumed}; times summed over the sessions"


# ----------------------------------------------------------------------------- linear regression

@dataclass(frozen=True)
class TransformerSettings:
    """The in-context transformer and its training objective (shared by both experiments)."""

    x_dim: int = 1
    points: int = 20
    """Examples per prompt, the query included."""
    objective: str = "prefix"
    max_grad_norm: float = 1.0
    d_model: int = 64
    layers: int = 3
    heads: int = 4


@dataclass(frozen=True)
class LinearBudget(TransformerSettings, Budget):
    """Garg et al.'s linear functions in d dimensions, 3d + 1 examples per prompt."""

    experiment: str = "icl-linear"
    meta_steps: int = 4_500
    meta_batch_size: int = 32
    outer_lr: float = 1e-3
    test_tasks: int = 1000
    queries_per_task: int = 10
    noise_std: float = SHIFTS["noisy"]["noise"]
    x_scale: float = SHIFTS["scaled"]["x_scale"]


def linear_budget(options: RunOptions) -> LinearBudget:
    d = int(options.extra.get("dim", 5))
    return LinearBudget(x_dim=d, points=3 * d + 1, meta_steps=options.meta_steps or (40 if options.fast else 4_500),
                        test_tasks=100 if options.fast else 1000)


def linear_errors(model: InContextTransformer, plan: Budget, seed: int,
                  device) -> dict[str, dict[str, dict[int, np.ndarray]]]:
    """{condition: {method: {k: per-task normalised squared error}}} on the held-out test functions."""
    d, ks = plan.x_dim, range(plan.points)
    out = {}
    for condition, shift in SHIFTS.items():
        family = in_context.LinearTasks(d, **shift)
        tasks = family.sample(plan.test_tasks, plan.points - 1, plan.queries_per_task,
                              np.random.default_rng([seed, 2208]), device)
        methods = {"transformer": in_context.in_context_predictor(model), **in_context.BASELINES}
        if condition == "noisy":
            methods["ridge (Bayes, λ = σ²)"] = partial(in_context.ridge, lam=family.noise ** 2)
        out[condition] = {name: in_context.error_by_k(f, tasks, ks, d * family.x_scale ** 2)
                          for name, f in methods.items()}
    return out


def linear_notes(rows: list[Row], plan: Budget) -> list[str]:
    """How far the transformer is from least squares at k ≥ 2d (in distribution) and under each shift."""
    d, notes = plan.x_dim, []
    for condition in SHIFTS:
        pairs = [(k, _mean(rows, "transformer", condition, k), _mean(rows, "least squares", condition, k))
                 for k in range(2 * d, plan.points)]
        gap = max(t - ls for _, t, ls in pairs)
        worst = max(pairs, key=lambda p: p[1] - p[2])
        notes.append(f"{condition}: for k ≥ 2d = {2 * d}, transformer − least squares ≤ {gap:.4f} (normalised error; "
                     f"worst at k = {worst[0]}: {worst[1]:.4f} vs {worst[2]:.4f})")
    return notes


def _mean(rows: list[Row], method: str, condition: str, k: int) -> float:
    return next(r.ours.mean for r in rows if r.method == method and r.metric == f"{condition}_k{k}")


@register("icl-linear", "Garg et al. 2022: a transformer's in-context linear regression vs least squares, by k",
          arguments=(Argument("--dim", int, 5, None, "input dimension d (prompts hold 3d + 1 examples)"),),
          threads=1)
def run_linear(options: RunOptions) -> Result:
    started, device = time.perf_counter(), get_device(options.device or "cpu")
    plan = linear_budget(options)
    torch.manual_seed(options.seed)  # the transformer's initial weights
    model = model_for(plan).to(device)
    sampler = partial(in_context.LinearTasks(plan.x_dim).sample, k_shot=plan.points - 1, n_query=1,
                      device=device)
    wall, cpu, resumed = train(f"icl-linear-d{plan.x_dim}", model, sampler, plan, options)
    rows = [Row(method, f"{condition}_k{k}", None, summarize(values))
            for condition, methods in linear_errors(model, plan, options.seed, device).items()
            for method, by_k in methods.items() for k, values in by_k.items()]
    notes = [f"transformer: {sum(p.numel() for p in model.parameters()):,} parameters; training took "
             f"{wall:.0f} s wall, {cpu:.0f} s CPU ({torch.get_num_threads()} thread(s); {_sessions(resumed)})"]
    notes += linear_notes(rows, plan)
    notes.append("metric condition_kK: squared error / (d · x_scale²) with k examples in the prompt "
                 "(1 = predicting 0); "
                 "noisy: example labels + N(0, 1), targets clean; scaled: x ~ N(0, 9 I)")
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    return Result("icl-linear", options.seed, str(device), time.perf_counter() - started, plan, rows, notes)


# ----------------------------------------------------------------------------- sinusoids

@dataclass(frozen=True)
class SinusoidICLBudget(TransformerSettings, blackbox.SinusoidBlackBoxBudget):
    """blackbox-sinusoid's budget for the transformer: no gradient step at test time."""

    experiment: str = "icl-sinusoid"
    inner_lr: float | None = None
    meta_steps: int = 4_500


def sinusoid_budget(options: RunOptions) -> SinusoidICLBudget:
    """blackbox-sinusoid's budget (K = 10 + 10, meta-batch 25, Adam 1e-3) for the transformer, with
4,500 meta-steps where the stored rows had 20,000 (about 4 minutes of one CPU core)."""
    shared = blackbox.sinusoid_budget(options)
    return SinusoidICLBudget(meta_steps=options.meta_steps or (60 if options.fast else 4_500),
                             test_tasks=shared.test_tasks)


@register("icl-sinusoid", "the in-context transformer on MAML's sinusoids at K = 5 and 10 (beside blackbox-sinusoid)",
          threads=1)
def run_sinusoid(options: RunOptions) -> Result:
    started, device = time.perf_counter(), get_device(options.device or "cpu")
    plan = sinusoid_budget(options)
    torch.manual_seed(options.seed)  # the transformer's initial weights
    model = model_for(plan).to(device)
    sampler = partial(SinusoidTasks().sample, k_shot=plan.k_shot_train, n_query=plan.n_query_train,
                      device=device)
    wall, cpu, resumed = train("icl-sinusoid", model, sampler, plan, options)
    rows = []
    for k, tasks in blackbox.sinusoid_test_tasks(plan, options.seed, device).items():
        with torch.no_grad():
            prediction = in_context.predict(model, params_of(model), tasks)
        rows.append(Row("transformer (in context)", f"mse_{k}shot", None,
                        summarize(((prediction - tasks.y_query) ** 2).mean(dim=(1, 2)).cpu().numpy())))
    notes = [f"transformer: {sum(p.numel() for p in model.parameters()):,} parameters; training took "
             f"{wall:.0f} s wall, {cpu:.0f} s CPU ({torch.get_num_threads()} thread(s); {_sessions(resumed)}); loss at "
             "every x of the "
             "20 points, each from the points before it",
             "the same 600 test tasks as blackbox-sinusoid (K = 5: the first 5 of the 10 support points)"]
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    return Result("icl-sinusoid", options.seed, str(device), time.perf_counter() - started, plan, rows, notes)


# ----------------------------------------------------------------------------- reading stored results

def linear_curves(result: dict) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """{condition: {method: {"k", "mean", "ci95"}}} from an icl-linear result (``Result.to_dict`` or its JSON)."""
    curves: dict = {}
    for row in result["rows"]:
        condition, k = row["metric"].rsplit("_k", 1)
        entry = curves.setdefault(condition, {}).setdefault(row["method"], {"k": [], "mean": [], "ci95": []})
        entry["k"].append(int(k))
        entry["mean"].append(np.nan if row["ours"]["mean"] is None else row["ours"]["mean"])
        entry["ci95"].append(np.nan if row["ours"]["ci95"] is None else row["ours"]["ci95"])
    return {c: {m: {key: np.asarray(v) for key, v in e.items()} for m, e in methods.items()}
            for c, methods in curves.items()}


def gap_to_least_squares(result: dict, condition: str = "clean", from_k: int | None = None) -> dict[int, dict]:
    """Per k ≥ ``from_k`` (default 2d): the transformer's and least squares' mean errors, their difference
    and ratio (the ratio is inf where least squares is exact)."""
    curves = linear_curves(result)[condition]
    start = 2 * result["budget"]["x_dim"] if from_k is None else from_k
    out = {}
    for k, t, ls in zip(curves["transformer"]["k"], curves["transformer"]["mean"], curves["least squares"]["mean"]):
        if k >= start:
            out[int(k)] = {"transformer": float(t), "least squares": float(ls), "difference": float(t - ls),
                           "ratio": float(t / ls) if ls > 0 else float("inf")}
    return out


TITLES = {"clean": "in distribution", "noisy": "noisy example labels (σ = 1)", "scaled": "inputs scaled by 3"}


FLOOR = 1e-4
"""Errors below this (least squares at k ≥ d: zero up to rounding) are drawn at it on a log scale."""


def plot_linear(result: dict, conditions: tuple[str, ...] = ("clean", "noisy", "scaled"), log: bool = True):
    """The error-vs-k curves of an icl-linear result, one panel per condition; returns the figure."""
    from matplotlib import pyplot as plt

    curves, d = linear_curves(result), result["budget"]["x_dim"]
    figure, axes = plt.subplots(1, len(conditions), figsize=(5 * len(conditions), 3.8), squeeze=False)
    for ax, condition in zip(axes[0], conditions):
        for method, c in curves[condition].items():
            style = {"lw": 2.5, "color": "black"} if method == "transformer" else {"lw": 1.2}
            ax.plot(c["k"], np.maximum(c["mean"], FLOOR) if log else c["mean"], "o-", ms=3, label=method, **style)
        ax.axvline(d, color="gray", ls=":", lw=1)
        ax.axvline(2 * d, color="gray", ls="--", lw=1)
        ax.set(title=TITLES.get(condition, condition), xlabel="k, examples in the prompt",
               ylabel="squared error / (d · scale²)", yscale="log" if log else "linear")
        if log:
            ax.set_ylim(bottom=FLOOR / 2)
        ax.legend(fontsize=7)
    budget = result["budget"]
    figure.suptitle(f"d = {d}: {budget['meta_steps']:,} meta-steps × {budget['meta_batch_size']} prompts, "
                    f"seed {result['seed']}, {result['device']}; dotted k = d, dashed k = 2d; "
                    f"errors < {FLOOR:g} drawn at {FLOOR:g}",
                    fontsize=10)
    figure.tight_layout()
    return figure


SINUSOID_ROWS = {"MAML": ("mse_{k}shot_1step", "mse_{k}shot_10step"), "CNP": ("mse_{k}shot",),
                 "hypernetwork": ("mse_{k}shot",)}


def sinusoid_table(icl: dict, stored: dict) -> str:
    """Markdown: the transformer's sinusoid MSE at K = 5 and 10 beside MAML (1 and 10 steps), the CNP and
    the hypernetwork, read from their results (``icl-sinusoid`` and ``blackbox-sinusoid``)."""
    def cell(result: dict, method: str, metric: str) -> str:
        row = next((r for r in result["rows"] if r["method"] == method and r["metric"] == metric), None)
        if row is None or row["ours"]["mean"] is None:
            return "—"
        return f"{row['ours']['mean']:.3f} ± {row['ours']['ci95']:.3f}"

    lines = ["| learner | meta-steps | K = 5 | K = 10 |", "|---|---|---|---|"]
    for method, metrics in SINUSOID_ROWS.items():
        for metric in metrics:
            name = method + (f", {metric.rsplit('_', 1)[1].replace('step', ' step(s)')}" if method == "MAML" else "")
            lines.append(f"| {name} | {stored['budget']['meta_steps']:,} | "
                         f"{cell(stored, method, metric.format(k=5))} | {cell(stored, method, metric.format(k=10))} |")
    transformer = icl["rows"][0]["method"]
    lines.append(f"| **{transformer}** | {icl['budget']['meta_steps']:,} | {cell(icl, transformer, 'mse_5shot')} | "
                 f"{cell(icl, transformer, 'mse_10shot')} |")
    return "\n".join(lines)


# --- Showing stored results ---
# Lecture 10's figures and tables, read from the course's stored runs (metacourse.results).

def as_stored_dict(stored) -> dict:
    """A stored run (:class:`metacourse.results.StoredResult`) in the dict form the readers above take."""
    return {"rows": [{"method": row.method, "metric": row.metric,
                      "ours": {"mean": row.ours.mean, "ci95": row.ours.ci95}} for row in stored.rows],
            "budget": dict(stored.plan), "seed": stored.seed, "device": stored.device}


def stored_label(stored) -> str:
    """One line: the run's file, budget, seed, device and times (its notes give the training's times)."""
    plan = stored.plan
    return (f"`{stored.name}`: {plan.meta_steps:,} meta-steps × {plan.meta_batch_size} prompts of "
            f"{plan.points} examples, Adam {plan.outer_lr:g}, a {plan.layers}-layer transformer "
            f"({plan.d_model} units, {plan.heads} heads); seed {stored.seed}, device `{stored.device}`; "
            + "; ".join(note.replace("summed over the sessions", "summed over every resumed part")
                        for note in stored.notes if note.startswith("transformer:")))


def checkpoint_of(stored, runs_dir: str | Path, seed: int = 0) -> Path:
    """Where ``metacourse reproduce icl-linear --out-dir RUNS_DIR`` leaves the stored run's checkpoint."""
    plan = stored.plan
    return checkpoint_file(runs_dir, f"icl-linear-d{plan.x_dim}", seed, plan.meta_steps)


def stored_linear_figure(stored):
    """The error-vs-k figure of a stored ``icl-linear`` run (in distribution and under both shifts)."""
    return plot_linear(as_stored_dict(stored))


def linear_table(stored, condition: str = "clean") -> str:
    """Markdown: normalised error (mean ± 95% CI) of every learner at the telling values of k."""
    curves, d = linear_curves(as_stored_dict(stored))[condition], stored.plan["x_dim"]
    ks = sorted({0, 1, d - 1, d, d + 1, 2 * d, stored.plan["points"] - 1})
    lines = [f"**{TITLES[condition]}**", "", "| k | " + " | ".join(curves) + " |", "|---" * (len(curves) + 1) + "|"]
    for k in ks:
        lines.append(f"| {k} | " + " | ".join(f"{c['mean'][k]:.3f} ± {c['ci95'][k]:.3f}" for c in curves.values())
                     + " |")
    return "\n".join(lines)


def theory_check(stored) -> str:
    """The measured least-squares and averaging curves against eqs. (6), (8) and (9) of Lecture 10;
    raises AssertionError when least squares leaves eq. (6) by more than three confidence intervals."""
    curves, d = linear_curves(as_stored_dict(stored)), stored.plan["x_dim"]
    clean = curves["clean"]
    k = clean["least squares"]["k"]
    predicted = np.maximum(1 - k / d, 0)
    gap = np.abs(clean["least squares"]["mean"] - predicted)
    assert (gap <= 3 * clean["least squares"]["ci95"].max() + 1e-6).all(), "least squares does not follow eq. (6)"
    big = k >= 2
    noisy = curves["noisy"]["least squares"]
    far = noisy["k"] >= d + 3
    sigma2 = stored.plan["noise_std"] ** 2
    return "\n".join([
        f"least squares, measured − eq. (6), max over k: {gap.max():.3f}",
        f"averaging, measured / eq. (9) for k ≥ 2: {np.round(clean['averaging']['mean'][big] / ((d + 1) / k[big]), 2)}",
        "noisy labels, least squares measured / eq. (8) for k ≥ d + 3: "
        f"{np.round(noisy['mean'][far] / (sigma2 / (noisy['k'][far] - d - 1)), 2)}"])


def gap_report(stored, threshold: float = 0.1) -> str:
    """One line per condition: the largest difference transformer − least squares over k ≥ 2d."""
    lines = []
    for condition in SHIFTS:
        gaps = gap_to_least_squares(as_stored_dict(stored), condition)
        worst = max(gaps, key=lambda k: gaps[k]["difference"])
        verdict = "within" if gaps[worst]["difference"] <= threshold else "NOT within"
        lines.append(f"{TITLES[condition]:<30} k ≥ 2d: transformer − least squares ≤ {gaps[worst]['difference']:.4f} "
                     f"(worst at k = {worst}: {gaps[worst]['transformer']:.4f} vs {gaps[worst]['least squares']:.4f})"
                     f" → {verdict} {threshold:g}")
    return "\n".join(lines)


def stored_sinusoid_table() -> str:
    """Markdown: the stored ``icl-sinusoid`` run beside Lecture 3's stored ``blackbox-sinusoid`` learners,
    with both runs' labels."""
    from .. import results

    icl, others = results.load("icl-sinusoid"), results.load("blackbox-sinusoid")
    labels = [f"- `{run.name}`: seed {run.seed}, device `{run.device}`, {run.plan['meta_steps']:,} meta-steps; "
              + "; ".join(note.replace("summed over the sessions", "summed over every resumed part")
                          for note in run.notes[:1]) for run in (icl, others)]
    return sinusoid_table(as_stored_dict(icl), as_stored_dict(others)) + "\n\n" + "\n".join(labels)
