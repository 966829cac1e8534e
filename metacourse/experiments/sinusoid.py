"""MAML's Table 2 on sinusoid regression: MAML, first-order MAML and the pretrain baseline.

Setup (Finn et al. 2017, §5.1 and the official code): MLP 1-40-40-1, K = 5 support and 10 query
points per training task (the table is 5-shot; ``--train-shots 10`` trains with the official
code's K = 10 instead), meta-batch 25, one inner SGD step with α = 0.01, Adam with β = 1e-3,
70,000 meta-steps. Test: 600 new tasks, fine-tuned on K = 5 points with α = 0.01 for 1, 5 and 10
steps; MSE on 100 query points. The pretrain baseline is trained on the pooled points of the same
task stream for the same number of steps; its fine-tuning step size is chosen on 100 validation
tasks for each step count.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..algorithms import maml, pretrain
from ..evaluate import adaptation_curve, summarize
from ..models import MLP
from ..reproduce import Argument, Budget, Result, Row, RunOptions, register
from ..tasks import SinusoidTasks
from ..train import Plan, TrainConfig, meta_train
from ..utils import code_fingerprint, get_device

PAPER = {  # MAML Table 2 (App. C.1), 5-shot MSE after 1 / 5 / 10 gradient steps
    "MAML": {1: 0.67, 5: 0.38, 10: 0.35},
    "pretrain on all tasks": {1: 2.41, 5: 2.23, 10: 2.19},
}
EVAL_STEPS = (0, 1, 5, 10)
INNER_LR = 0.01
OUTER_LR = 1e-3


@dataclass(frozen=True)
class SinusoidBudget(Budget):
    """The plan of a sinusoid run: MAML's Table 2 setup (the defaults) unless FAST or overridden."""

    meta_steps: int = 70_000
    meta_batch_size: int = 25
    k_shot_train: int = 5
    n_query_train: int = 10
    inner_lr: float = INNER_LR
    outer_lr: float = OUTER_LR
    k_shot_test: int = 5
    n_query_test: int = 100
    test_tasks: int = 600


def budget(options: RunOptions) -> SinusoidBudget:
    """The run's budget: the paper's unless FAST or overridden."""
    meta_steps = options.meta_steps or (300 if options.fast else 70_000)
    return SinusoidBudget(meta_steps=meta_steps, k_shot_train=options.extra.get("train_shots", 5),
                          test_tasks=100 if options.fast else 600)


TRAINING_KEYS = ("meta_steps", "meta_batch_size", "k_shot_train", "n_query_train", "inner_lr", "outer_lr")
"""The settings of ``budget`` that change what a method trains (the others only change its test)."""


def run_plan(method: str, options: RunOptions, plan: SinusoidBudget, device: torch.device) -> Plan:
    """The typed plan of one method's training: budget, seed, FAST, device type and code."""
    from .. import train as train_module
    from ..models import mlp
    from ..tasks import sinusoid as tasks_module

    algorithm = pretrain if method == "pretrain on all tasks" else maml
    return Plan("sinusoid", method, options.seed, plan.only(TRAINING_KEYS),
                fast=options.fast, device=device.type,
                code=code_fingerprint(sys.modules[__name__], algorithm, mlp, tasks_module, train_module))


def checkpoint_path(method: str, options: RunOptions, plan: SinusoidBudget, device: torch.device) -> Path:
    """``out_dir/checkpoints/sinusoid-SLUG-kK-seedS-STEPS-DIGEST.pt``, named by the method's plan."""
    slug = method.split()[0].lower()
    return run_plan(method, options, plan, device).checkpoint(
        options.out_dir, f"sinusoid-{slug}-k{plan.k_shot_train}-seed{options.seed}-{plan.meta_steps}")


def train_method(method: str, options: RunOptions, plan: SinusoidBudget, device: torch.device):
    """Meta-train one method from the same seed (resuming its plan's checkpoint, if any); returns
    the trained model, the wall time of this call and the history (``history.origin(...)`` says
    whether it trained from scratch or resumed)."""
    torch.manual_seed(options.seed)
    model = MLP(1, (40, 40), 1).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=OUTER_LR)
    if method == "pretrain on all tasks":
        step = partial(pretrain.pretrain_step, model, optimizer, cfg=pretrain.Config())
    else:
        cfg = maml.Config(inner_lr=INNER_LR, first_order=(method == "first-order MAML"))
        step = partial(maml.meta_step, model, optimizer, cfg=cfg)
    sampler = partial(SinusoidTasks().sample, k_shot=plan.k_shot_train,
                      n_query=plan.n_query_train, device=device)
    train_cfg = TrainConfig(
        meta_steps=plan.meta_steps, meta_batch_size=plan.meta_batch_size, seed=options.seed,
        checkpoint_path=str(checkpoint_path(method, options, plan, device)),
        progress=options.progress, description=method, plan=run_plan(method, options, plan, device))
    start = time.perf_counter()
    history = meta_train(step, sampler, train_cfg, state={"model": model, "optimizer": optimizer})
    return model, time.perf_counter() - start, history


def test_tasks(plan: SinusoidBudget, seed: int, n_tasks: int, device: torch.device):
    """Held-out tasks from a random stream separate from training's."""
    rng = np.random.default_rng([seed, 2017])
    return SinusoidTasks().sample(n_tasks, plan.k_shot_test, plan.n_query_test, rng, device)


def evaluate_method(method: str, model, plan: SinusoidBudget, seed: int, device: torch.device):
    """Per-task MSE after 0/1/5/10 steps, and the step size used for each step count."""
    tasks = test_tasks(plan, seed, plan.test_tasks, device)
    if method != "pretrain on all tasks":
        curve = adaptation_curve(model, tasks, EVAL_STEPS, inner_lr=INNER_LR)
        return curve, {s: INNER_LR for s in EVAL_STEPS}
    validation = SinusoidTasks().sample(100, plan.k_shot_test, plan.n_query_test,
                                        np.random.default_rng([seed, 1703]), device)
    curve, chosen = {}, {}
    for steps in EVAL_STEPS:
        chosen[steps] = pretrain.choose_inner_lr(model, validation, pretrain.Config(), max(steps, 1))
        curve[steps] = adaptation_curve(model, tasks, (steps,), inner_lr=chosen[steps])[steps]
    return curve, chosen


@register("sinusoid", "MAML Table 2: 5-shot sinusoid MSE of MAML, first-order MAML and pretraining",
          arguments=(Argument("--train-shots", int, 5, (5, 10), "support points per meta-training task"),), threads=1)
def run(options: RunOptions) -> Result:
    started = time.perf_counter()
    device = get_device(options.device or "cpu")  # a 1-40-40-1 MLP runs fastest on the CPU
    plan = budget(options)
    rows, notes, curves, models, training = [], [], {}, {}, {}
    for method in ("MAML", "first-order MAML", "pretrain on all tasks"):
        model, seconds, history = train_method(method, options, plan, device)
        training[method] = training_record(method, options, plan, device, history)
        curve, step_sizes = evaluate_method(method, model, plan, options.seed, device)
        curves[method], models[method] = curve, model
        for steps in (1, 5, 10):
            paper = PAPER.get(method, {}).get(steps)
            rows.append(Row(method, f"mse_5shot_{steps}step", paper, summarize(curve[steps])))
        notes.append(f"{method}: {history.origin(plan.meta_steps)}, {seconds:.0f} s now; fine-tuning step sizes "
                     + ", ".join(f"{s} steps: {a:g}" for s, a in step_sizes.items() if s))
        notes += diverged_notes(method, curve)
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    result = Result("sinusoid", options.seed, str(device), time.perf_counter() - started, plan, rows,
                    notes, training=training)
    result.artifacts["plot"] = save_plot(curves, models, plan, options)
    result.wall_seconds = time.perf_counter() - started
    return result


def training_record(method: str, options: RunOptions, plan: SinusoidBudget, device: torch.device, history) -> dict:
    """What ``Result.training`` stores for one trained method: its plan, checkpoint, and where it resumed."""
    return {"plan": run_plan(method, options, plan, device).digest(),
            "checkpoint": str(checkpoint_path(method, options, plan, device)),
            "resumed_from_step": history.resumed_from, "meta_steps": plan.meta_steps,
            "earlier_seconds": round(history.earlier_seconds, 1), "origin": history.origin(plan.meta_steps)}


def diverged_notes(method: str, curve: dict) -> list[str]:
    """Say plainly on how many test tasks fine-tuning diverged (a non-finite MSE), if any."""
    notes = []
    for steps, values in sorted(curve.items()):
        bad = int(np.sum(~np.isfinite(values)))
        if bad:
            finite = values[np.isfinite(values)]
            notes.append(f"{method}: fine-tuning diverged on {bad} of {values.size} test tasks after "
                         f"{steps} steps (mean over the other tasks: {finite.mean():.3f})")
    return notes


def save_plot(curves: dict, models: dict, plan: SinusoidBudget, options: RunOptions) -> str:
    """Adaptation curves and one example fit, saved as PNG (matplotlib imported only here)."""
    from .. import viz

    path = Path(options.out_dir) / f"sinusoid-seed{options.seed}.png"
    example = test_tasks(plan, options.seed, 1, torch.device("cpu"))
    figure = viz.sinusoid_summary(curves, {m: model.cpu() for m, model in models.items()},
                                  example, inner_lr=INNER_LR)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    viz.close(figure)
    return str(path)


# --- Showing stored results ---


def fine_tuning_path(model, task, x: np.ndarray, inner_lr: float, steps: int) -> list[np.ndarray]:
    """Predictions on ``x`` after 0, 1, …, ``steps`` plain gradient steps (first order, step size
    ``inner_lr``) on the support set of the first task of ``task``; a step that makes the
    parameters non-finite ends the list early (fine-tuning diverged)."""
    from ..functional import forward, params_of

    cfg = maml.Config(inner_lr=inner_lr, inner_steps=1, first_order=True)
    params = {name: p.detach() for name, p in params_of(model).items()}
    grid = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1)
    path = []
    for step in range(steps + 1):
        with torch.no_grad():
            predictions = forward(model, params, grid).reshape(-1).numpy()
        if not np.all(np.isfinite(predictions)):
            break
        path.append(predictions)
        if step < steps:
            with torch.enable_grad():
                params = maml.adapt(model, {n: p.requires_grad_() for n, p in params.items()}, task[0], cfg)
            params = {name: p.detach() for name, p in params.items()}
    return path


def plot_fine_tuning(models: dict, task, inner_lr: float, steps: int, ax=None, limit: float = 7.0):
    """The true sinusoid of ``task``, its support points, and each model after ``steps`` fine-tuning
    steps with step size ``inner_lr``, on a y-axis of ±``limit``.

    A fine-tune that overshoots is drawn as it is — a curve that leaves the plot — and its legend
    entry says how far it went, beside the last step whose curve was wholly in view; one that
    diverged to non-finite values shows its last finite step and says at which step it diverged.
    Nothing vanishes silently.
    """
    from matplotlib import pyplot as plt

    ax = ax or plt.subplots(figsize=(8, 4))[1]
    x = np.linspace(-5, 5, 200)
    info = task[0].info
    ax.plot(x, SinusoidTasks.curve(float(info["amplitude"]), float(info["phase"]), x), color="black", lw=2,
            label="true function")
    ax.scatter(task.x_support[0, :, 0], task.y_support[0, :, 0], color="black", zorder=5,
               label=f"K = {task.x_support.shape[1]} support points")
    left = False
    for method, model in models.items():
        path = fine_tuning_path(model, task, x, inner_lr, steps)
        if not path:
            ax.plot([], [], "--", label=f"{method}: non-finite before any step")
            continue
        label = f"{method}, {_steps_text(len(path) - 1)}"
        if len(path) - 1 < steps:
            label = f"{method}: non-finite from step {len(path)} on; {_steps_text(len(path) - 1)}"
        largest = float(np.max(np.abs(path[-1])))
        if largest > limit:
            left = True
            label += f": off the plot (max |y| = {largest:.2g})"
        # clipped far outside the axes, so that the line leaves the plot where it crosses ±limit
        (line,) = ax.plot(x, np.clip(path[-1], -1e3 * limit, 1e3 * limit), "--", label=label)
        in_view = [j for j, p in enumerate(path) if np.max(np.abs(p)) <= limit]
        if largest > limit and in_view:
            j = in_view[-1]
            ax.plot(x, path[j], ":", color=line.get_color(), lw=1,
                    label=f"{method}, {_steps_text(j)}: the last step wholly in view")
    if left:
        ax.text(0.01, 0.02, f"α = {inner_lr:.3g} overshoots: fine-tuning leaves the plot",
                transform=ax.transAxes, fontsize=8, color="firebrick")
    ax.set_ylim(-limit, limit)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def _steps_text(steps: int) -> str:
    return f"{steps} step" + ("" if steps == 1 else "s")


def summary_text(summary) -> str:
    """One stored summary as "mean ± ci (median)"; a missing or non-finite mean means that fine-tuning
    diverged on at least one task (the median still says what happened on the typical one)."""
    finite = summary.mean is not None and np.isfinite(summary.mean)
    mean = f"{summary.mean:.3f}" if finite else "diverged on some task"
    ci = f" ± {summary.ci95:.3f}" if finite and summary.ci95 is not None and np.isfinite(summary.ci95) else ""
    return f"{mean}{ci} ({summary.median:.3f})"


def steps_markdown(stored) -> str:
    """MAML's Table 2 from a stored ``sinusoid`` run (a :func:`metacourse.results.load` result): one
    row per method for the paper and one for ours, one column per number of fine-tuning steps; ours
    as mean ± 95% CI (median) over the test tasks, then the budget, seed, device and wall time."""
    steps = sorted({int(row.metric.rsplit("_", 1)[1].removesuffix("step")) for row in stored.rows})
    methods = list(dict.fromkeys(row.method for row in stored.rows))
    shots = stored.plan.k_shot_test
    lines = [f"| {shots}-shot MSE after | " + " | ".join(_steps_text(s) for s in steps) + " |",
             "|---" * (len(steps) + 1) + "|"]
    for method in methods:
        rows = [stored.row(method, f"mse_{shots}shot_{s}step") for s in steps]
        if any(row.paper is not None for row in rows):
            lines.append(f"| {method}, paper | " + " | ".join("—" if row.paper is None else f"{row.paper:.2f}"
                                                            for row in rows) + " |")
        lines.append(f"| {method}, ours | " + " | ".join(summary_text(row.ours) for row in rows) + " |")
    plan = stored.plan
    lines.append(f"\nOurs: {plan.meta_steps:,} meta-steps × {plan.meta_batch_size} tasks per method, "
                 f"K = {plan.k_shot_train} support points in meta-training, {plan.test_tasks} test tasks; "
                 f"mean ± 95% CI (median). Seed {stored.seed}, {stored.device}, "
                 f"{stored.wall_seconds / 60:.1f} min for the whole run (`results/{stored.name}.json`).")
    if any("FAST" in note for note in stored.notes):
        lines.append("\n**FAST mode: a smoke test, not a reproduction.**")
    return "\n".join(lines)


def steps_table(variant: str | None = None):
    """:func:`steps_markdown` of the stored run (``variant="train10"``: meta-trained with K = 10),
    displayed as Markdown in a notebook."""
    from IPython.display import Markdown

    from .. import results

    return Markdown(steps_markdown(results.load("sinusoid", **({"variant": variant} if variant else {}))))
