"""Meta-SGD on sinusoids: MAML whose inner step sizes α are learned, one per parameter.

Li, Zhou, Chen, Li, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning" (arXiv:1707.09835),
§4.1; the algorithm is ``metacourse.algorithms.maml`` eq. (7): φ = θ − α ⊙ ∇_θ L(f_θ; D^tr), with θ
and α both meta-learned by Adam. Meta-SGD's α starts from U[0.005, 0.1] per entry; MAML keeps
α = 0.01. Both networks are the 1-40-40-1 ReLU MLP, both take one inner step in meta-training.

``--tasks maml``: MAML's sinusoids y = A sin(x + φ), A ~ U[0.1, 5], φ ~ U[0, π], trained exactly
as ``metacourse reproduce sinusoid`` trains MAML (K = 5 support + 10 query points, meta-batch 25,
Adam 1e-3, 70,000 meta-steps; MAML here *is* that experiment's MAML, by import). Test: 600 new
tasks, K = 5, MSE on 100 points after 1, 5 and 10 steps (Meta-SGD repeats its learned step).
The paper column is MAML's Table 2; Meta-SGD reports no number on this distribution.

``--tasks metasgd``: Meta-SGD's own sinusoids y = A sin(ωx + b), A ~ U[0.1, 5], ω ~ U[0.8, 1.2],
b ~ U[0, π], x ~ U[−5, 5]; meta-batch 4 and 60,000 meta-steps as in the paper, K = 5 support +
10 query points (the query count is our choice: the source we could read does not give it).
Test: 600 new tasks, one inner step from K = 5 and from K = 20 points, MSE on 100 points. The
paper's Table 1 (5-shot meta-training; secondary source, docs/anchors.md §1.5): MAML 1.13 / 0.71,
Meta-SGD 0.90 / 0.50 for 5-shot / 20-shot meta-testing; its MAML row is the authors' own re-run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..algorithms import maml
from ..evaluate import adaptation_curve, summarize
from ..functional import params_of
from ..models import MLP
from ..reproduce import Argument, Result, Row, RunOptions, register
from ..tasks import SinusoidTasks
from ..tasks.base import TaskBatch
from ..tasks.sinusoid import _check_range, check_sample_request
from ..train import TrainConfig, meta_train
from ..utils import Clock
from . import sinusoid

METHODS = ("MAML", "Meta-SGD")
INIT_RANGE = (0.005, 0.1)
"""Meta-SGD's initial step sizes: every entry of α from U[0.005, 0.1] (§4.1)."""
PAPER = {  # MAML Table 2 (5-shot, 1/5/10 steps) on MAML's tasks; Meta-SGD Table 1 on its own
    "maml": {("MAML", "mse_5shot_1step"): 0.67, ("MAML", "mse_5shot_5step"): 0.38,
             ("MAML", "mse_5shot_10step"): 0.35},
    "metasgd": {("MAML", "mse_5shot_1step"): 1.13, ("Meta-SGD", "mse_5shot_1step"): 0.90,
                ("MAML", "mse_20shot_1step"): 0.71, ("Meta-SGD", "mse_20shot_1step"): 0.50},
}


@dataclass(frozen=True)
class FrequencySinusoidTasks(SinusoidTasks):
    """Meta-SGD's sinusoids y = A sin(ωx + b): MAML's family with a frequency ω per task."""

    frequency: tuple[float, float] = (0.8, 1.2)
    """Range of the frequency ω."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_range("frequency", self.frequency)

    def sample(self, n_tasks: int, k_shot: int, n_query: int, rng: np.random.Generator,
               device: torch.device | str = "cpu") -> TaskBatch:
        """Draw ``n_tasks`` sinusoids with ``k_shot`` support and ``n_query`` query points each."""
        check_sample_request(n_tasks, k_shot, n_query, rng)
        amplitude = rng.uniform(*self.amplitude, size=(n_tasks, 1, 1))
        frequency = rng.uniform(*self.frequency, size=(n_tasks, 1, 1))
        phase = rng.uniform(*self.phase, size=(n_tasks, 1, 1))
        x = rng.uniform(*self.x_range, size=(n_tasks, k_shot + n_query, 1))
        x_t, y_t = (torch.as_tensor(v, dtype=torch.float32, device=device)
                    for v in (x, amplitude * np.sin(frequency * x + phase)))
        info = {"amplitude": amplitude.reshape(-1), "frequency": frequency.reshape(-1), "phase": phase.reshape(-1)}
        return TaskBatch(x_t[:, :k_shot], y_t[:, :k_shot], x_t[:, k_shot:], y_t[:, k_shot:], info=info)


@dataclass(frozen=True)
class MetaSGDBudget(sinusoid.SinusoidBudget):
    """The plan of a Meta-SGD run: the sinusoid plan, the task family and what is tested."""

    tasks: str = "maml"
    """``maml``: MAML's sinusoids and setup; ``metasgd``: Meta-SGD's, with a frequency ω per task."""
    test_shots: tuple[int, ...] = (5,)
    test_steps: tuple[int, ...] = (1, 5, 10)
    k_shot_test: int | None = None
    """Unused: ``test_shots`` lists the K of the test tasks."""


def budget(options: RunOptions) -> MetaSGDBudget:
    """The run's budget: the papers' unless FAST or overridden."""
    tasks, fast = options.extra.get("tasks", "maml"), options.fast
    if tasks == "maml":  # as `reproduce sinusoid`, so that MAML is that experiment's MAML
        return MetaSGDBudget(**sinusoid.budget(options).to_dict(), tasks=tasks)
    return MetaSGDBudget(tasks=tasks, meta_steps=options.meta_steps or (300 if fast else 60_000), meta_batch_size=4,
                         k_shot_test=None, test_tasks=100 if fast else 600, test_shots=(5, 20), test_steps=(1,))


def family(plan: MetaSGDBudget) -> SinusoidTasks:
    return SinusoidTasks() if plan.tasks == "maml" else FrequencySinusoidTasks()


def init_meta_sgd_lrs(model: torch.nn.Module, seed: int) -> torch.nn.ParameterDict:
    """Meta-SGD's α, one entry per parameter entry, drawn from U[0.005, 0.1] (seeded)."""
    inner_lrs = maml.init_inner_lrs(params_of(model), maml.Config())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lr in inner_lrs.values():
            lr.copy_(INIT_RANGE[0] + (INIT_RANGE[1] - INIT_RANGE[0]) * torch.rand(lr.shape, generator=generator))
    return inner_lrs


def train_method(method: str, options: RunOptions, plan: MetaSGDBudget):
    """Meta-train MAML or Meta-SGD from the seed (checkpointed, resumable): the model, its learned
    step sizes (None for MAML) and the wall time of this session's training."""
    if method == "MAML" and plan.tasks == "maml":
        model, seconds, _ = sinusoid.train_method("MAML", options, plan, torch.device("cpu"))
        return model, None, seconds
    torch.manual_seed(options.seed)
    model = MLP(1, (40, 40), 1)
    inner_lrs = init_meta_sgd_lrs(model, options.seed) if method == "Meta-SGD" else None
    trained = [*model.parameters(), *(inner_lrs.parameters() if inner_lrs is not None else [])]
    optimizer = torch.optim.Adam(trained, lr=plan.outer_lr)
    step = partial(maml.meta_step, model, optimizer, cfg=maml.Config(inner_lr=plan.inner_lr),
                   inner_lrs=inner_lrs)
    sampler = partial(family(plan).sample, k_shot=plan.k_shot_train, n_query=plan.n_query_train)
    slug = method.lower().replace("-", "")
    state = {"model": model, "optimizer": optimizer, **({"inner_lrs": inner_lrs} if inner_lrs is not None else {})}
    train_cfg = TrainConfig(
        meta_steps=plan.meta_steps, meta_batch_size=plan.meta_batch_size, seed=options.seed,
        checkpoint_path=str(Path(options.out_dir) / "checkpoints" / f"meta-sgd-{plan.tasks}-tasks-{slug}-k"
                            f"{plan.k_shot_train}-seed{options.seed}-{plan.meta_steps}.pt"),
        progress=options.progress, description=f"{method} ({plan.tasks} tasks)")
    started = time.perf_counter()
    meta_train(step, sampler, train_cfg, state=state)
    return model, inner_lrs, time.perf_counter() - started


def test_tasks(plan: MetaSGDBudget, k_shot: int, seed: int) -> TaskBatch:
    """Held-out tasks; on MAML's distribution the very tasks of ``reproduce sinusoid``."""
    if plan.tasks == "maml":
        return sinusoid.test_tasks(plan, seed, plan.test_tasks, torch.device("cpu"))
    rng = np.random.default_rng([seed, 1707, k_shot])
    return family(plan).sample(plan.test_tasks, k_shot, plan.n_query_test, rng)


def evaluate(model, inner_lrs, plan: MetaSGDBudget, seed: int) -> dict[str, np.ndarray]:
    """Per-task query MSE after each number of steps in ``plan.test_steps``, per K. Meta-SGD
    (``inner_lrs``) only after the one step its α was learned for: repeated, it is another method."""
    values = {}
    steps = plan.test_steps if inner_lrs is None else [1]
    for k_shot in plan.test_shots:
        tasks = test_tasks(plan, k_shot, seed)
        curve = adaptation_curve(model, tasks, steps, inner_lr=plan.inner_lr, inner_lrs=inner_lrs)
        values.update({f"mse_{k_shot}shot_{n}step": curve[n] for n in steps})
    return values


def step_size_notes(inner_lrs) -> str:
    """What Meta-SGD learned: the mean and range of α per parameter tensor."""
    return "Meta-SGD's learned α (mean [min, max]) — " + "; ".join(
        f"{name.replace('/', '.')}: {lr.mean():.4f} [{lr.min():.4f}, {lr.max():.4f}]"
        for name, lr in inner_lrs.items())


@register("meta-sgd", "Meta-SGD vs MAML on sinusoids: MAML's tasks (Table 2) or Meta-SGD's own (ω ∈ [0.8, 1.2])",
          arguments=(Argument("--tasks", str, "maml", ("maml", "metasgd"),
                              "maml: MAML's sinusoids and setup; metasgd: Meta-SGD's, with a frequency ω per task"),),
          threads=1)
def run(options: RunOptions) -> Result:
    clock = Clock()
    plan = budget(options)
    rows, notes, trained = [], [], {}
    for method in METHODS:
        model, inner_lrs, seconds = train_method(method, options, plan)
        trained[method] = seconds
        for metric, values in evaluate(model, inner_lrs, plan, options.seed).items():
            rows.append(Row(method, metric, PAPER[plan.tasks].get((method, metric)), summarize(values)))
            notes += sinusoid.diverged_notes(f"{method} ({metric})", {int(metric.split("_")[-1][:-4]): values})
        if inner_lrs is not None:
            notes.append(step_size_notes(inner_lrs))
    notes.insert(0, f"{plan.meta_steps:,} meta-steps of {plan.meta_batch_size} tasks each, K = "
                    f"{plan.k_shot_train} + {plan.n_query_train} query points; training wall time "
                    + ", ".join(f"{m} {s:.0f} s" for m, s in trained.items())
                    + " (this session; 0 when a finished checkpoint was found)")
    if plan.tasks == "maml":
        notes.append("paper column: MAML Table 2 (70,000 meta-steps); Meta-SGD reports nothing on MAML's tasks")
    else:
        notes.append("paper column: Meta-SGD Table 1, 5-shot meta-training, 60,000 meta-steps (secondary source; "
                     "its MAML row is the authors' re-run)")
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    result = Result("meta-sgd", options.seed, "cpu", 0.0, plan, rows, notes)
    result.wall_seconds = clock.wall()
    result.measured = {"train_wall_seconds": {method: round(seconds, 1) for method, seconds in trained.items()},
                       "cpu_seconds": round(clock.cpu(), 1)}
    return result


# --- Showing stored results ---

FAMILIES = {"maml": "MAML's: A ∈ [0.1, 5], b ∈ [0, π]", "metasgd": "Meta-SGD's: A, b and ω ∈ [0.8, 1.2]"}
"""The task family of each stored variant (``--tasks``), as the comparison table names it."""


def comparison_markdown(stored_runs) -> str:
    """MAML beside Meta-SGD after one fine-tuning step, from stored ``meta-sgd`` runs (results of
    :func:`metacourse.results.load`): one row per task family, method and number of shots, with the
    paper's number where the paper has one, then each run's budget, seed and where its paper column
    comes from."""
    lines = ["| task family | meta-steps × tasks | method | test | paper | ours: mean ± 95% CI (median) |",
             "|---|---|---|---|---|---|"]
    footer = []
    for stored in stored_runs:
        plan = stored.plan
        family = FAMILIES.get(plan.tasks, plan.tasks)
        for row in stored.rows:
            shots, steps = (int(part.removesuffix("shot").removesuffix("step")) for part in row.metric.split("_")[1:])
            if steps != 1:
                continue  # Meta-SGD is scored after the one step its step sizes were learned for
            paper = "—" if row.paper is None else f"{row.paper:.2f}"
            lines.append(f"| {family} | {plan.meta_steps:,} × {plan.meta_batch_size} | {row.method} "
                         f"| {shots}-shot, 1 step | {paper} | {sinusoid.summary_text(row.ours)} |")
        source = next((note.removeprefix("paper column: ") for note in stored.notes
                       if note.startswith("paper column")), "none")
        footer.append(f"`{stored.name}`: seed {stored.seed}, {stored.device}, {plan.test_tasks} test tasks; "
                      f"paper column: {source}.")
        if any("FAST" in note for note in stored.notes):
            footer.append(f"**`{stored.name}` is a FAST run: a smoke test, not a reproduction.**")
    return "\n".join(lines + [""] + [f"* {line}" for line in footer])


def comparison_table(*selections: dict):
    """:func:`comparison_markdown` of the stored runs chosen by ``selections`` (keys of
    :func:`metacourse.results.load`; by default ``{"variant": "maml"}`` and ``{"variant": "metasgd"}``,
    the ``--tasks`` of ``metacourse reproduce meta-sgd``), displayed as Markdown in a notebook."""
    from IPython.display import Markdown

    from .. import results

    selections = selections or ({"variant": "maml"}, {"variant": "metasgd"})
    return Markdown(comparison_markdown([results.load("meta-sgd", **keys) for keys in selections]))
