"""Black-box meta-learners on sinusoids (against MAML) and on Santoro et al.'s Omniglot protocol.

``blackbox-sinusoid``: a CNP, a hypernetwork (generating all 1,761 weights of MAML's 1-40-40-1
MLP), an LSTM and SNAIL, each fed (x_t, y_{t−1}), are meta-trained on the task distribution and
budget of MAML's sinusoid run — K = 10 support + 10 query points, meta-batch 25, Adam 1e-3, the
same number of meta-steps for every method, MAML included — and tested on the same 600 new tasks
with K = 5 and K = 10 support points (MSE on 100 query points). MAML is trained by
``experiments.sinusoid.train_method`` and fine-tuned with α = 0.01 for 1 and 10 steps; the
black-box learners adapt in one forward pass. No paper reports these learners on this
benchmark: MAML's Table 2 numbers are the only anchors. Every method was trained with K = 10
only; K = 5 is outside the black-box learners' training distribution (MAML too was trained at 10).

``mann-omniglot``: Santoro et al. (2016), Table 1. An episode shows 10 drawings of each of 5
classes in random order; at each step the learner sees the image x_t and the previous label
y_{t−1} and must predict y_t; classes are relabelled at random in every episode, so only what is
stored during the episode helps. Accuracy at the k-th presentation of a class (k = 1, 2, 3, 5,
10) for the memory-augmented network (LRUA), an LSTM and a feed-forward network, all trained with
the same episodes and budget (Adam 1e-3, gradient norm clipped at 10, meta-batch 16). Data:
1,200 training characters, 423 test characters, ×4 rotations, 20×20 pixels (as Santoro et al.).

``blackbox-omniglot``: few-shot classification on the data of ``metacourse reproduce omniglot``
(MAML's Table 1): a black-box learner on top of a Conv4 image embedding (``models.blackbox.Embedded``),
trained end to end on 5-way K-shot episodes of the 1,200 training characters (×4 rotations) and
tested on the same 600 5-way K-shot tasks of the 423 test characters (15 queries per class) as
MAML and ProtoNets. ``hypernetwork`` generates a linear classifier over learned query features, row
k from the support images of class k (``models.hypernet.ClassifierHyperNetwork``); ``SNAIL`` reads
the support images with their own labels and each query without one (Mishra et al.'s few-shot
input); ``CNP`` reads r = mean_i h([e(x_i), y_i]) and predicts the query's class from [e(x), r].
No published number for these learners on this split was located (anchors §2.2); MAML's and
ProtoNets' papers, and the course's runs of them, are quoted in the notes for reference.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..algorithms import blackbox
from ..evaluate import adaptation_curve, summarize
from ..functional import params_of
from ..models import MLP
from ..models.blackbox import CNP, MANN, SNAIL, Embedded, FeedForward, LSTMLearner
from ..models.conv4 import Conv4
from ..models.hypernet import ClassifierHyperNetwork, HyperNetwork
from ..reproduce import Argument, Budget, Result, Row, RunOptions, register
from ..tasks import SinusoidTasks, TaskBatch
from ..tasks.episodes import EpisodeSampler, sample_episodes
from ..tasks.omniglot import Omniglot
from ..train import History, Plan, TrainConfig, meta_train
from ..utils import code_fingerprint, get_device
from . import omniglot, sinusoid

SINUSOID_METHODS = ("MAML", "CNP", "hypernetwork", "LSTM", "SNAIL")
MAML_PAPER = {1: 0.67, 10: 0.35}  # MAML Table 2, 5-shot MSE after 1 and 10 steps
MANN_METHODS = ("MANN", "LSTM", "feed-forward", "SNAIL")
INSTANCES = (1, 2, 3, 5, 10)
MANN_PAPER = {  # Santoro et al. 2016, Table 1 (% correct by instance; 100,000 training episodes)
    "MANN": {1: 36.4, 2: 82.8, 3: 91.0, 5: 94.9, 10: 98.1},
    "LSTM": {1: 24.4, 2: 49.5, 3: 55.3, 5: 63.6, 10: 62.5},
    "feed-forward": {1: 24.4, 2: 19.6, 3: 21.1, 5: 22.8, 10: 19.5},
}


def _methods(text: str, known: tuple[str, ...]) -> list[str]:
    chosen = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in known]
    if unknown or not chosen:
        raise ValueError(f"--methods {text!r}: choose a comma-separated subset of {','.join(known)}")
    return chosen


def _single_thread(run):
    """Small networks gain nothing from more threads on a shared CPU; one avoids contention."""
    def wrapped(options: RunOptions) -> Result:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return run(options)
        finally:
            torch.set_num_threads(threads)
    wrapped.__doc__ = run.__doc__
    return wrapped


class Trained(NamedTuple):
    """What :func:`train_blackbox` reports about one training call."""

    seconds: float
    """Wall time of this call, in s (0 when a finished checkpoint was loaded)."""
    resumed_from: int
    """The step this call started from (0: trained from scratch)."""
    history: History
    """Every step's metrics and every learning-curve point, earlier sessions included."""


def train_blackbox(name: str, model: nn.Module, cfg: blackbox.Config, sampler, plan: Budget,
                   options: RunOptions, evaluate=None) -> Trained:
    """Meta-train one black-box learner (checkpointed under its plan's name, resumable).
    ``evaluate`` is called every ``plan.curve_every`` steps when the plan has one."""
    torch.manual_seed(options.seed)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=plan.outer_lr)
    slug = name.lower().replace("-", "")
    from ..models import blackbox as models

    typed = Plan(plan.experiment, name, options.seed, {**plan, "model": repr(model), "config": repr(cfg)},
                 fast=options.fast, device=next(model.parameters()).device.type,
                 code=code_fingerprint(sys.modules[__name__], blackbox, models))
    path = typed.checkpoint(options.out_dir, f"{plan.experiment}-{slug}-seed{options.seed}-{plan.meta_steps}")
    train_cfg = TrainConfig(meta_steps=plan.meta_steps, meta_batch_size=plan.meta_batch_size,
                            seed=options.seed, checkpoint_path=str(path), progress=options.progress,
                            description=name, checkpoint_every=getattr(plan, "checkpoint_every", 500), plan=typed,
                            eval_every=getattr(plan, "curve_every", 0) if evaluate else 0)
    start = time.perf_counter()
    history = meta_train(partial(blackbox.meta_step, model, optimizer, cfg=cfg), sampler, train_cfg,
                         state={"model": model, "optimizer": optimizer}, evaluate=evaluate)
    return Trained(time.perf_counter() - start, history.resumed_from, history)


def _trained_note(method: str, model: nn.Module, seconds: float, resumed: int, plan: Budget) -> str:
    note = (f"{method}: {sum(p.numel() for p in model.parameters()):,} parameters, trained in {seconds:.0f} s "
            f"({plan.meta_steps - resumed:,} steps")
    if resumed:
        note += f"; resumed from step {resumed:,} of an earlier run, whose time is not included"
    return note + ")"


CURVE_SEED = 20_240_607
"""Seed of the learning-curve tasks (not the 600 test tasks the result reports)."""


def learning_curve(history, every: int) -> dict[str, list[float]]:
    """The stored curve: at each evaluation step, the curve tasks' accuracies and the mean training
    meta-loss of the ``every`` steps before it."""
    losses = dict(zip(history.steps, history.metrics.get("meta_loss", [])))
    curve: dict[str, list[float]] = {"steps": list(history.eval_steps)}
    for key, values in history.eval_metrics.items():
        curve[key] = [round(v, 2) for v in values]
    curve["meta_loss"] = [round(float(np.mean([losses[s] for s in range(max(1, step - every + 1), step + 1)
                                                if s in losses] or [np.nan])), 4) for step in history.eval_steps]
    return curve


def curve_evaluation(batches: dict[str, TaskBatch], score):
    """``evaluate`` for ``meta_train``: ``score(batch)`` (metric → value) on the fixed tasks of each
    split of ``batches``, keyed ``<split>_<metric>`` (``test_accuracy``, ``train_instance2``, …)."""
    def evaluate() -> dict[str, float]:
        return {f"{split}_{metric}": value for split, batch in batches.items()
                for metric, value in score(batch).items()}
    return evaluate


# ----------------------------------------------------------------------------- sinusoids

@dataclass(frozen=True)
class SinusoidBlackBoxBudget(Budget):
    """Every learner of the sinusoid comparison: MAML's meta-steps, meta-batch and optimiser, K = 10."""

    experiment: str = "blackbox-sinusoid"
    meta_steps: int = 20_000
    meta_batch_size: int = 25
    k_shot_train: int = 10
    n_query_train: int = 10
    inner_lr: float | None = sinusoid.INNER_LR
    """MAML's inner step (the black-box learners take none)."""
    outer_lr: float = sinusoid.OUTER_LR
    k_shot_test: tuple[int, ...] = (5, 10)
    n_query_test: int = 100
    test_tasks: int = 600


def sinusoid_budget(options: RunOptions) -> SinusoidBlackBoxBudget:
    """Every method: the same meta-steps, meta-batch, K and optimiser as MAML's sinusoid run."""
    return SinusoidBlackBoxBudget(meta_steps=options.meta_steps or (60 if options.fast else 20_000),
                                  test_tasks=50 if options.fast else 600)


def sinusoid_model(method: str) -> nn.Module:
    """The black-box learners of the sinusoid comparison (sizes chosen to train in minutes on a CPU)."""
    if method == "CNP":
        return CNP(1, 1, hidden=128, r_dim=128)
    if method == "hypernetwork":
        return HyperNetwork(MLP(1, (40, 40), 1), 1, 1, hidden=128, r_dim=128)
    if method == "LSTM":
        return LSTMLearner(1, 1, hidden=128)
    if method == "SNAIL":
        return SNAIL(1, 1, max_len=11, channels=32, filters=32, key_dim=32, value_dim=32, tc_blocks=1)
    raise ValueError(f"no black-box learner named {method!r}")


def sinusoid_test_tasks(plan: Budget, seed: int, device) -> dict[int, TaskBatch]:
    """The same 600 test sinusoids with K = 10 support points, and their first 5 for K = 5."""
    tasks = SinusoidTasks().sample(plan.test_tasks, max(plan.k_shot_test), plan.n_query_test,
                                   np.random.default_rng([seed, 2017]), device)
    return {k: TaskBatch(tasks.x_support[:, :k], tasks.y_support[:, :k], tasks.x_query, tasks.y_query)
            for k in plan.k_shot_test}


def sinusoid_rows(method: str, model: nn.Module, tests: dict[int, TaskBatch], plan: Budget,
                  notes: list[str]) -> list[Row]:
    """MSE per test task: after 1 and 10 fine-tuning steps for MAML, after one read otherwise;
    diverged fine-tuning is reported in ``notes``."""
    rows = []
    for k, tasks in tests.items():
        if method == "MAML":
            curve = adaptation_curve(model, tasks, (1, 10), inner_lr=plan.inner_lr)
            notes += [n.replace("test tasks", f"{k}-shot test tasks") for n in sinusoid.diverged_notes(method, curve)]
            rows += [Row(method, f"mse_{k}shot_{s}step", MAML_PAPER[s] if k == 5 else None, summarize(curve[s]))
                     for s in (1, 10)]
        else:
            scores = blackbox.task_scores(model, tasks, blackbox.Config())
            rows.append(Row(method, f"mse_{k}shot", None, summarize(scores)))
    return rows


@register("blackbox-sinusoid", "CNP, hypernetwork, LSTM and SNAIL vs MAML: sinusoid MSE at K = 5 and 10",
          arguments=(Argument("--methods", str, ",".join(SINUSOID_METHODS), None,
                              "comma-separated subset of " + ",".join(SINUSOID_METHODS)),))
@_single_thread
def run_sinusoid(options: RunOptions) -> Result:
    started, device = time.perf_counter(), get_device(options.device or "cpu")
    plan = sinusoid_budget(options)
    methods = _methods(options.extra.get("methods", ",".join(SINUSOID_METHODS)), SINUSOID_METHODS)
    tests = sinusoid_test_tasks(plan, options.seed, device)
    sampler = partial(SinusoidTasks().sample, k_shot=plan.k_shot_train, n_query=plan.n_query_train,
                      device=device)
    rows, notes = [], []
    for method in methods:
        if method == "MAML":
            maml_plan = sinusoid.SinusoidBudget(**{key: plan[key] for key in sinusoid.TRAINING_KEYS})
            model, seconds, history = sinusoid.train_method("MAML", options, maml_plan, device)
            resumed = history.resumed_from
        else:
            torch.manual_seed(options.seed)  # the learner's initial weights
            model = sinusoid_model(method).to(device)
            seconds, resumed, _ = train_blackbox(method, model, blackbox.Config(), sampler, plan, options)
        rows += sinusoid_rows(method, model, tests, plan, notes)
        notes.append(_trained_note(method, model, seconds, resumed, plan))
    notes += _ratio_notes(rows)
    notes.append("all methods trained with K = 10 support points only; K = 5 is outside the training "
                 "distribution of every learner. Paper numbers: MAML Table 2 (70,000 meta-steps).")
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    return Result("blackbox-sinusoid", options.seed, str(device), time.perf_counter() - started, plan, rows, notes)


def _ratio_notes(rows: list[Row]) -> list[str]:
    """Each black-box learner's mean MSE over MAML's best finite mean (1 or 10 steps), per K."""
    notes = []
    for k in ("5shot", "10shot"):
        maml_rows = [r for r in rows if r.method == "MAML" and f"_{k}_" in r.metric and np.isfinite(r.ours.mean)]
        if not maml_rows:
            continue
        best = min(maml_rows, key=lambda r: r.ours.mean)
        notes += [f"{r.method} / {best.method} ({best.metric.rsplit('_', 1)[1]}) at K = {k[:-4]}: "
                  f"{r.ours.mean / best.ours.mean:.2f}×" for r in rows if r.metric == f"mse_{k}"]
    return notes


# ----------------------------------------------------------------------------- Santoro et al.

@dataclass(frozen=True)
class MannBudget(Budget):
    """Santoro et al.'s episodes: 5 classes × 10 drawings at 20×20 pixels, meta-batch 16."""

    experiment: str = "mann-omniglot"
    meta_steps: int = 2_000
    meta_batch_size: int = 16
    n_classes: int = 5
    per_class: int = 10
    image_size: int = 20
    outer_lr: float = 1e-3
    max_grad_norm: float = 10.0
    test_episodes: int = 600
    train_split: str = "train"
    test_split: str = "test"
    curve_every: int = 0
    """Measure the learning curve every this many steps (0: no curve)."""
    curve_episodes: int = 100
    """Episodes of each curve point, from the training characters and from the test characters."""


def mann_budget(options: RunOptions) -> MannBudget:
    if options.fast:
        return MannBudget(meta_steps=options.meta_steps or 6, test_episodes=20, curve_every=3, curve_episodes=4)
    return MannBudget(meta_steps=options.meta_steps or 2_000, curve_every=250)


def mann_episodes(images, n_tasks: int, rng: np.random.Generator, n_classes: int = 5, per_class: int = 10,
                  image_size: int = 20, device="cpu") -> TaskBatch:
    """Santoro et al.'s episodes: ``per_class`` drawings of each of ``n_classes`` random classes,
    shuffled; labels 0..n_classes−1 assigned at random. The whole episode is the support sequence
    (the query set is empty: every image is predicted before its label is shown)."""
    classes = np.stack([rng.choice(images.n_classes, n_classes, replace=False) for _ in range(n_tasks)])
    drawings = rng.random((n_tasks, n_classes, images.n_per_class)).argsort(-1)[..., :per_class]
    x = images.get(classes[:, :, None], drawings).reshape(n_tasks * n_classes * per_class, 1, 28, 28)
    if image_size != x.shape[-1]:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True)
    x = x.reshape(n_tasks, n_classes * per_class, 1, image_size, image_size)
    y, order = shuffled_labels(n_tasks, rng, n_classes, per_class)
    x = x[torch.arange(n_tasks)[:, None], order]
    batch = TaskBatch(x, y, x[:, :0], y[:, :0], info={"classes": classes})
    return batch.to(device) if str(device) != "cpu" else batch


def shuffled_labels(n_tasks: int, rng: np.random.Generator, n_classes: int = 5, per_class: int = 10
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The label sequences of Santoro et al.'s episodes, (n_tasks, n_classes × per_class): each label
    ``per_class`` times in a random order; also the order, which :func:`mann_episodes` applies to the images."""
    y = torch.arange(n_classes).repeat_interleave(per_class).expand(n_tasks, -1)
    order = torch.as_tensor(rng.random((n_tasks, n_classes * per_class)).argsort(-1))
    return y.gather(1, order), order


def presentation(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """How many times each position's class has been shown so far, itself included (1 = first)."""
    return F.one_hot(labels, n_classes).cumsum(dim=1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)


def instance_accuracy(model: nn.Module, episodes: TaskBatch, n_classes: int, chunk_size: int = 100
                      ) -> dict[int, np.ndarray]:
    """Per-episode accuracy (%) at the k-th presentation of each class, for k = 1 … per_class."""
    params, hits, shown = params_of(model), [], []
    with torch.no_grad():
        for chunk in episodes.split(chunk_size):
            prediction, labels = blackbox.online_predictions(model, params, chunk)
            hits.append((prediction.argmax(-1) == labels).float())
            shown.append(labels)
    return by_presentation(torch.cat(hits), torch.cat(shown), n_classes)


def by_presentation(scores: torch.Tensor, labels: torch.Tensor, n_classes: int) -> dict[int, np.ndarray]:
    """Per-episode mean (%) of ``scores`` (episodes, steps; 1 = right) at the k-th presentation of
    each class, for every k in the episodes."""
    seen = presentation(labels, n_classes)
    out = {}
    for k in range(1, int(seen.max()) + 1):
        mask = (seen == k).float()
        out[k] = (100 * (scores * mask).sum(1) / mask.sum(1).clamp_min(1)).cpu().numpy()
    return out


def elimination_accuracy(labels: torch.Tensor, n_classes: int) -> dict[int, np.ndarray]:
    """Expected accuracy (%) at the k-th presentation of a learner that stores no image at all: it
    guesses uniformly among the labels it has not yet been given as feedback (among all labels once
    every one has been given). A class shown for the first time always carries such a label; a class
    shown again never does, until every label has been given."""
    steps = labels.shape[1]
    given = F.one_hot(labels, n_classes).cumsum(dim=1) > 0                       # after step t: labels 0..t given
    before = torch.cat([torch.zeros_like(given[:, :1]), given[:, :steps - 1]], dim=1)  # at step t: labels 0..t-1
    unseen = n_classes - before.sum(-1)
    new = ~before.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    expected = torch.where(unseen == 0, 1 / n_classes, new.float() / unseen.clamp_min(1))
    return by_presentation(expected, labels, n_classes)


def mann_curve_episodes(plan: Budget, seed: int) -> dict[str, TaskBatch]:
    """The fixed episodes of the learning curve, of the training characters (fit) and of the test
    characters (generalisation), drawn from their own seed, none of them among the reported test episodes."""
    shape = {k: plan[k] for k in ("n_classes", "per_class", "image_size")}
    return {split: mann_episodes(Omniglot(split), plan.curve_episodes, np.random.default_rng([seed, CURVE_SEED, index]),
                                 **shape)
            for index, split in enumerate((plan.train_split, plan.test_split))}


def mann_curve_score(model: nn.Module, plan: Budget):
    """Accuracy (%) at the 2nd and at the last presentation of a class on a batch of episodes."""
    def score(batch: TaskBatch) -> dict[str, float]:
        accuracy = instance_accuracy(model, batch.to(next(model.parameters()).device), plan.n_classes)
        return {f"instance{k}": float(accuracy[k].mean()) for k in (2, plan.per_class) if k in accuracy}
    return score


def mann_model(method: str, plan: Budget) -> nn.Module:
    """Santoro et al.'s sizes: 200 controller units, 128 × 40 memory, 4 read heads."""
    x_dim, n = plan.image_size ** 2, plan.n_classes
    if method == "MANN":
        return MANN(x_dim, n, hidden=200, slots=128, slot_size=40, heads=4)
    if method == "LSTM":
        return LSTMLearner(x_dim, n, hidden=200)
    if method == "feed-forward":
        return FeedForward(x_dim, n, hidden=200)
    if method == "SNAIL":
        return SNAIL(x_dim, n, max_len=plan.n_classes * plan.per_class, channels=64, tc_blocks=2)
    raise ValueError(f"no learner named {method!r}")


@register("mann-omniglot", "Santoro et al. Table 1: accuracy by instance, MANN vs LSTM vs feed-forward",
          arguments=(Argument("--methods", str, "MANN,LSTM,feed-forward", None,
                              "comma-separated subset of " + ",".join(MANN_METHODS)),))
@_single_thread
def run_mann(options: RunOptions) -> Result:
    started, device = time.perf_counter(), get_device(options.device or "cpu")
    plan = mann_budget(options)
    methods = _methods(options.extra.get("methods", "MANN,LSTM,feed-forward"), MANN_METHODS)
    shape = {k: plan[k] for k in ("n_classes", "per_class", "image_size")}
    train, test = Omniglot(plan.train_split), Omniglot(plan.test_split)
    sampler = partial(mann_episodes, train, device=device, **shape)
    episodes = mann_episodes(test, plan.test_episodes, np.random.default_rng([options.seed, 2016]), **shape)
    cfg = blackbox.Config(loss="cross_entropy", objective="online", max_grad_norm=plan.max_grad_norm)
    rows, notes, curves = [], [], {}
    for method in methods:
        torch.manual_seed(options.seed)  # the learner's initial weights
        model = mann_model(method, plan).to(device)
        evaluate = curve_evaluation(mann_curve_episodes(plan, options.seed), mann_curve_score(model, plan)) \
            if plan.curve_every else None
        seconds, resumed, history = train_blackbox(method, model, cfg, sampler, plan, options, evaluate)
        if plan.curve_every:
            curves[method] = learning_curve(history, plan.curve_every)
        accuracy = instance_accuracy(model.cpu(), episodes, plan.n_classes)
        rows += [Row(method, f"acc%_instance{k}", MANN_PAPER.get(method, {}).get(k), summarize(accuracy[k]))
                 for k in INSTANCES]
        notes.append(_trained_note(method, model, seconds, resumed, plan)
                     + f"; {plan.meta_steps * plan.meta_batch_size:,} training episodes in all")
    notes.append("paper: Santoro et al. 2016 Table 1, 100,000 training episodes (RMSprop); chance is 20%")
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    return Result("mann-omniglot", options.seed, str(device), time.perf_counter() - started, plan, rows, notes,
                  measured={"curves": curves} if curves else {})


# ----------------------------------------------------------------------------- few-shot Omniglot

OMNIGLOT_METHODS = ("SNAIL", "hypernetwork", "CNP")
EMBEDDING = 64
"""Width of the Conv4 embedding the black-box learner reads (``Conv4(None)``, MAML's network)."""


@dataclass(frozen=True)
class OmniglotBlackBoxBudget(Budget):
    """5-way K-shot training episodes (K support + 5 query images per class), meta-batch 8, Adam 1e-3."""

    experiment: str = "blackbox-omniglot-5w1s"
    meta_steps: int = 3_000
    meta_batch_size: int = 8
    ways: int = 5
    shots: int = 1
    n_query_train: int = 5
    outer_lr: float = 1e-3
    checkpoint_every: int = 100
    test_tasks: int = 600
    n_query_test: int = 15
    train_split: str = "train"
    test_split: str = "test"
    encoder: str = "trained"
    """``trained``: a Conv4 trained with the learner from scratch; ``frozen-protonet``: the shipped
    ProtoNet's Conv4 (trained on the same training characters), frozen, so only the learner learns."""
    curve_every: int = 0
    """Measure the learning curve every this many steps (0: no curve)."""
    curve_tasks: int = 100
    """Tasks of each curve point, from the training characters and from the test characters."""


ENCODERS = ("trained", "frozen-protonet")


def omniglot_budget(options: RunOptions) -> OmniglotBlackBoxBudget:
    """The default 3,000 steps take about 10 minutes of one CPU core at 1 shot (0.2 s a step for the
    hypernetwork and SNAIL; 5 shots cost about 1.7× more)."""
    shots = int(options.extra.get("shots", 1))
    encoder = options.extra.get("encoder", "trained")
    if encoder not in ENCODERS:
        raise ValueError(f"encoder={encoder!r} is unknown; choose one of {ENCODERS}")
    plan = OmniglotBlackBoxBudget(experiment=f"blackbox-omniglot-5w{shots}s", shots=shots,
                                  meta_steps=options.meta_steps or 3_000, encoder=encoder, curve_every=250)
    if options.fast:
        plan = plan.replace(meta_steps=options.meta_steps or 4, meta_batch_size=2, test_tasks=10,
                            curve_every=2, curve_tasks=4)
    return plan


def omniglot_encoder(plan: Budget) -> nn.Module:
    """The Conv4 under the learner: fresh (``trained``), or the shipped ProtoNet's, frozen."""
    if plan.encoder == "trained":
        return Conv4(None)
    from ..checkpoints import load

    encoder = load("protonet-omniglot-5w1s").model
    encoder.requires_grad_(False)
    return encoder


def omniglot_model(method: str, plan: Budget) -> Embedded:
    """Conv4 embedding (64-d, stride-2 blocks as MAML's Omniglot net) under a black-box learner."""
    ways = plan.ways
    if method == "SNAIL":  # Mishra et al.'s Omniglot sizes: attention keys 64, values 32, TC filters
        learner = SNAIL(EMBEDDING, ways, max_len=ways * plan.shots + 1, channels=EMBEDDING,
                        filters=64, key_dim=64, value_dim=32, tc_blocks=2, label_input="own")
    elif method == "hypernetwork":
        learner = ClassifierHyperNetwork(EMBEDDING, ways, hidden=128, features=64)
    elif method == "CNP":
        learner = CNP(EMBEDDING, ways, hidden=256, r_dim=256)
    else:
        raise ValueError(f"no black-box learner named {method!r}; choose one of {OMNIGLOT_METHODS}")
    return Embedded(omniglot_encoder(plan), learner)


def curve_tasks(plan: Budget, device) -> dict[str, TaskBatch]:
    """The fixed tasks of the learning curve: 5-way K-shot tasks (15 queries per class) of the
    training characters (how well the learner fits the tasks it trains on) and of the test characters
    (how well it generalises); drawn from their own seed, none of them among the reported test tasks."""
    return {split: sample_episodes(Omniglot(split), plan.curve_tasks, plan.ways, plan.shots, plan.n_query_test,
                                   np.random.default_rng([CURVE_SEED, index]), device)
            for index, split in enumerate((plan.train_split, plan.test_split))}


def accuracy_score(model: nn.Module, cfg: blackbox.Config):
    """Mean accuracy (%) of the learner on a batch of few-shot tasks."""
    def score(batch: TaskBatch) -> dict[str, float]:
        return {"accuracy": float(100 * blackbox.task_scores(model, batch, cfg, "accuracy", 20).mean())}
    return score


def reference_notes(ways: int, shots: int, results_dir: str | Path = "results") -> list[str]:
    """MAML's and ProtoNets' published numbers, and this course's runs of them where their result
    files exist (``metacourse reproduce omniglot --method M --json results/omniglot-M-NwKs.json``)."""
    notes = []
    for method in ("maml", "protonet"):
        paper = omniglot.PAPER[method].get((ways, shots))
        text = f"reference, {omniglot.LABELS[method]}: paper {paper} ({omniglot.PAPER_SOURCE[method]})"
        path = Path(results_dir) / f"omniglot-{method}-{ways}w{shots}s.json"
        if path.exists():
            saved = json.loads(path.read_text())
            ours, budget = saved["rows"][0]["ours"], saved["budget"]
            fast = "; FAST smoke test" if any("FAST" in n for n in saved["notes"]) else ""
            text += (f"; ours {ours['mean']:.2f} ± {ours['ci95']:.2f} on the same {ours['n']} test tasks "
                     f"after {budget['meta_steps']:,} steps × {budget['meta_batch_size']} episodes "
                     f"({path}{fast})")
        else:
            text += f"; no course run found at {path}"
        notes.append(text)
    return notes


@register("blackbox-omniglot", "Hypernetwork / SNAIL / CNP over a Conv4 embedding: Omniglot 5-way "
          "K-shot accuracy on MAML's and ProtoNets' test tasks",
          arguments=(Argument("--method", str, "hypernetwork", OMNIGLOT_METHODS, "which black-box learner"),
                     Argument("--shots", int, 1, (1, 5), "K of the 5-way K-shot tasks"),
                     Argument("--encoder", str, "trained", ENCODERS,
                              "the Conv4 under the learner: trained with it, or the shipped ProtoNet's, frozen")))
@_single_thread
def run_omniglot(options: RunOptions) -> Result:
    started, device = time.perf_counter(), get_device(options.device or "cpu")
    plan = omniglot_budget(options)
    method = options.extra.get("method", "hypernetwork")
    torch.manual_seed(options.seed)  # the learner's initial weights
    model = omniglot_model(method, plan).to(device)
    sampler = EpisodeSampler(Omniglot(plan.train_split), plan.ways, plan.shots,
                             plan.n_query_train, str(device))
    cfg = blackbox.Config(loss="cross_entropy")
    evaluate = curve_evaluation(curve_tasks(plan, device), accuracy_score(model, cfg)) if plan.curve_every else None
    cpu_start = time.process_time()
    seconds, resumed, history = train_blackbox(method, model, cfg, sampler, plan, options, evaluate)
    cpu_seconds = time.process_time() - cpu_start
    evaluation_start = time.perf_counter()
    tasks = omniglot.test_tasks(plan)      # the 600 test tasks of MAML's and ProtoNets' runs
    accuracy = 100 * blackbox.task_scores(model.cpu(), tasks, cfg, metric="accuracy", chunk_size=20)
    eval_seconds = time.perf_counter() - evaluation_start
    measured = {"train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
                "eval_seconds": round(eval_seconds, 1)}
    if plan.curve_every:
        measured["curves"] = learning_curve(history, plan.curve_every)
    rows = [Row(method, f"accuracy_{plan.ways}w{plan.shots}s_%", None, summarize(accuracy))]
    notes = [_trained_note(method, model, seconds, resumed, plan)
             + f"; {cpu_seconds:.0f} s CPU, 1 thread; "
             f"{plan.meta_steps * plan.meta_batch_size:,} training episodes in all",
             f"evaluated {len(accuracy)} test tasks in {eval_seconds:.0f} s",
             *([] if plan.encoder == "trained" else
               ["encoder: the shipped ProtoNet's Conv4 (protonet-omniglot-5w1s), frozen; only the learner trained"]),
             "no published number for this learner on this split (anchors §2.2)",
             *reference_notes(plan.ways, plan.shots)]
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    return Result("blackbox-omniglot", options.seed, str(device), time.perf_counter() - started, plan,
                  rows, notes, measured=measured)


# --- Showing stored results ---
# Tables and figures of the stored runs (``metacourse.results.load(...)``) for lecture 3 and its appendix.
# Each function reads a stored result's rows and plan only; nothing is recomputed.

MANN_PAPER_EPISODES = 100_000
"""Training episodes behind Santoro et al.'s Table 1."""


def _mean_ci(summary, digits: int) -> str:
    return f"{summary.mean:.{digits}f} ± {summary.ci95:.{digits}f}"


def _minutes(seconds) -> str:
    return "not recorded" if not seconds else f"{seconds / 60:.0f} min"


def provenance(result) -> str:
    """One line under a table: which stored run, its budget, seed, device and wall time."""
    plan = result.plan
    return (f"`results/{result.name}.json`: {plan.meta_steps:,} meta-steps × {plan.meta_batch_size} "
            f"tasks per step, seed {result.seed}, {result.device}, {_minutes(result.wall_seconds)} wall in all.")


def _sinusoid_label(row) -> tuple[str, int]:
    """('MAML, 10 steps', 5) for the row ``mse_5shot_10step`` of MAML; ('CNP', 10) for ``mse_10shot``."""
    parts = row.metric.split("_")
    k = int(parts[1].removesuffix("shot"))
    if len(parts) == 3:
        steps = int(parts[2].removesuffix("step"))
        return f"{row.method}, {steps} step{'s' if steps > 1 else ''}", k
    return row.method, k


def sinusoid_table(result) -> str:
    """The stored ``blackbox-sinusoid`` run as one Markdown table: query MSE (mean ± 95% CI over the
    test tasks) of each learner at each test K, MAML's published 5-shot value beside it, and the run's
    budget, seed, device and time underneath."""
    cells, paper = {}, {}
    for row in result.rows:
        label, k = _sinusoid_label(row)
        cells.setdefault(label, {})[k] = _mean_ci(row.ours, 3)
        if row.paper is not None:
            paper[label] = f"{row.paper:g}"
    shots = sorted({k for by_k in cells.values() for k in by_k})
    lines = ["| learner | " + " | ".join(f"K = {k}" for k in shots) + " | paper, K = 5 (MAML Table 2) |",
             "|---" * (len(shots) + 2) + "|"]
    lines += [f"| {label} | " + " | ".join(by_k.get(k, "—") for k in shots) + f" | {paper.get(label, '—')} |"
              for label, by_k in cells.items()]
    n = result.rows[0].ours.n
    trained = result.plan["k_shot_train"]
    return "\n".join(lines) + (f"\n\nEvery learner trained with K = {trained} support points; query MSE on "
                               f"{n} test tasks. " + provenance(result))


def shift_figure(result):
    """Each learner's query MSE (mean, 95% CI bars, log scale) at every test K of the stored
    ``blackbox-sinusoid`` run, the training K marked: how much each loses when K differs from training."""
    from matplotlib import pyplot as plt

    cells = {}
    for row in result.rows:
        label, k = _sinusoid_label(row)
        cells.setdefault(label, {})[k] = row.ours
    shots = sorted({k for by_k in cells.values() for k in by_k})
    figure, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(shots)
    for j, k in enumerate(shots):
        means = [cells[label][k].mean for label in cells]
        errors = [cells[label][k].ci95 for label in cells]
        trained = " (the training K)" if k == result.plan["k_shot_train"] else ""
        ax.bar(np.arange(len(cells)) + (j - (len(shots) - 1) / 2) * width, means, width, yerr=errors,
               capsize=3, label=f"K = {k}{trained}")
    ax.set_xticks(np.arange(len(cells)), list(cells), fontsize=9)
    ax.set(yscale="log", ylabel="query MSE (mean, 95% CI)",
           title=f"{result.plan['meta_steps']:,} meta-steps each, seed {result.seed} (results/{result.name}.json)")
    ax.legend(fontsize=9)
    figure.tight_layout()
    return figure


def mann_figure(result):
    """Accuracy (%) at the k-th presentation of a class in Santoro et al.'s episodes: the stored
    ``mann-omniglot`` run (solid, 95% CI bars) beside Table 1 of the paper (dashed), chance dotted."""
    from matplotlib import pyplot as plt

    figure, ax = plt.subplots(figsize=(9, 3.8))
    for colour, method in enumerate(dict.fromkeys(row.method for row in result.rows)):
        rows = [row for row in result.rows if row.method == method]
        k = [int(row.metric.removeprefix("acc%_instance")) for row in rows]
        ax.errorbar(k, [row.ours.mean for row in rows], [row.ours.ci95 for row in rows], color=f"C{colour}",
                    marker="o", capsize=3, label=f"{method}, ours")
        if all(row.paper is not None for row in rows):
            ax.plot(k, [row.paper for row in rows], "--", color=f"C{colour}", alpha=0.7, label=f"{method}, paper")
    ax.axhline(100 / result.plan["n_classes"], color="gray", linestyle=":", label="chance")
    episodes = result.plan["meta_steps"] * result.plan["meta_batch_size"]
    ax.set(xlabel="presentation of the class in the episode", ylabel="accuracy (%)", ylim=(0, 100),
           xticks=INSTANCES,
           title=f"ours: {episodes:,} training episodes; paper: {MANN_PAPER_EPISODES:,} (seed {result.seed})")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    return figure


def curves_figure(curves: dict[str, dict], panels: dict[str, str], chance: float):
    """Stored learning curves, one colour per labelled curve: for each panel (title → metric), the
    metric on the curve tasks of the test characters (``test_<metric>``, solid) and of the training
    characters (``train_<metric>``, dashed) against the meta-step; the last panel is the training
    meta-loss (mean over the steps since the previous point)."""
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, len(panels) + 1, figsize=(5.5 * (len(panels) + 1), 3.8))
    for colour, (label, curve) in enumerate(curves.items()):
        for ax, metric in zip(axes, panels.values()):
            ax.plot(curve["steps"], curve[f"test_{metric}"], color=f"C{colour}", label=f"{label}: test characters")
            ax.plot(curve["steps"], curve[f"train_{metric}"], "--", color=f"C{colour}", alpha=0.7,
                    label=f"{label}: training characters")
        axes[-1].plot(curve["steps"], curve["meta_loss"], color=f"C{colour}", label=label)
    for ax, title in zip(axes, panels):
        ax.axhline(chance, color="gray", linestyle=":", label="chance")
        ax.set(xlabel="meta-step", ylabel="accuracy (%)", ylim=(0, 100), title=title)
    axes[0].legend(fontsize=7, loc="lower right")
    axes[-1].set(xlabel="meta-step", ylabel="training meta-loss (cross-entropy)", title="training loss")
    axes[-1].legend(fontsize=7)
    figure.tight_layout()
    return figure


def curves_markdown(curves: dict[str, dict], metrics: dict[str, str]) -> str:
    """Every point of stored learning curves, one column per labelled curve: for each metric (name →
    key), its value (%) on the curve tasks of the test and of the training characters, then the
    training meta-loss."""
    names = ", ".join(f"{name} test / training (%)" for name in metrics) if len(metrics) > 1 \
        else "test / training characters (%)"
    lines = ["| meta-step | " + " | ".join(f"{label}: {names}, loss" for label in curves) + " |",
             "|---|" + "---|" * len(curves)]
    for step in sorted({step for curve in curves.values() for step in curve["steps"]}):
        cells = []
        for curve in curves.values():
            if step not in curve["steps"]:
                cells.append("(run ended)")
                continue
            i = curve["steps"].index(step)
            values = [f"{curve[f'test_{key}'][i]:.2f} / {curve[f'train_{key}'][i]:.2f}" for key in metrics.values()]
            cells.append("; ".join(values) + f", {curve['meta_loss'][i]:.3f}")
        lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def elimination_markdown(labelled: dict, method: str = "LSTM", episodes: int = 10_000, seed: int = 0) -> str:
    """Santoro et al.'s protocol, % correct at each presentation: the learner with no memory of images
    (:func:`elimination_accuracy`, its expectation over ``episodes`` random label sequences) beside the
    ``method`` row of each labelled stored ``mann-omniglot`` run and the paper's."""
    plan = next(iter(labelled.values())).plan
    labels, _ = shuffled_labels(episodes, np.random.default_rng(seed), plan["n_classes"], plan["per_class"])
    guess = elimination_accuracy(labels, plan["n_classes"])
    lines = ["| presentation | no memory of images: guess among the labels not yet given | "
             + " | ".join(f"{method}, {label}" for label in labelled) + f" | {method}, paper |",
             "|---|---|" + "---|" * len(labelled) + "---|"]
    for k in INSTANCES:
        ours = [_mean_ci(result.row(method, f"acc%_instance{k}").ours, 1) for result in labelled.values()]
        lines.append(f"| {k} | {guess[k].mean():.1f} | " + " | ".join(ours) + f" | {MANN_PAPER[method][k]:g} |")
    return "\n".join(lines) + (f"\n\nThe first column is an expectation over {episodes:,} random label sequences "
                                f"(seed {seed}); chance is {100 / plan['n_classes']:g}%.")


def omniglot_curves_figure(labelled: dict):
    """Learning curves of stored few-shot Omniglot runs (:func:`curves_figure`), one colour per
    labelled run: accuracy on the curve tasks, and the training meta-loss."""
    plan = next(iter(labelled.values())).plan
    title = f"{plan['ways']}-way {plan['shots']}-shot, {plan['curve_tasks']} tasks per point"
    return curves_figure({label: result.measured["curves"] for label, result in labelled.items()},
                         {title: "accuracy"}, 100 / plan["ways"])


def omniglot_curves_markdown(labelled: dict) -> str:
    """Every point of the stored learning curves of few-shot Omniglot runs (:func:`curves_markdown`)."""
    return curves_markdown({label: result.measured["curves"] for label, result in labelled.items()},
                           {"accuracy": "accuracy"})


MANN_CURVE_METRICS = {"2nd presentation": "instance2", "10th presentation": "instance10"}
"""The accuracies a ``mann-omniglot`` curve stores: at the first repeat of a class and at the last."""


def mann_curves_figure(result):
    """Learning curves of the stored ``mann-omniglot`` run: accuracy (%) at the 2nd and at the 10th
    presentation of a class on the curve episodes of the test and of the training characters, one
    colour per learner, and each learner's training loss."""
    curves = result.measured["curves"]
    episodes = result.plan["curve_episodes"]
    return curves_figure(curves, {f"{title}, {episodes} episodes per point": key
                                  for title, key in MANN_CURVE_METRICS.items()}, 100 / result.plan["n_classes"])


def mann_curves_markdown(result) -> str:
    """Every point of the stored ``mann-omniglot`` learning curves (:func:`curves_markdown`)."""
    return curves_markdown(result.measured["curves"], MANN_CURVE_METRICS)


def omniglot_table(labelled: dict) -> str:
    """Stored few-shot Omniglot runs as one Markdown table, one labelled row each: accuracy (%,
    mean ± 95% CI over the test tasks), the published value where there is one, the training budget
    (steps × episodes per step), the training CPU and wall time where recorded, seed and device."""
    lines = ["| learner | ours (%) | paper (%) | budget | training CPU (wall) | seed, device, file |",
             "|---|---|---|---|---|---|"]
    for label, result in labelled.items():
        row, plan = result.rows[0], result.plan
        budget = f"{plan.meta_steps:,} steps × {plan.meta_batch_size} episodes"
        paper = "—" if row.paper is None else f"{row.paper:g}"
        cpu, wall = (_minutes(result.measured.get(key)) for key in ("train_cpu_seconds", "train_seconds"))
        times = f"{cpu} ({wall})"
        lines.append(f"| {label} | {_mean_ci(row.ours, 2)} (n = {row.ours.n}) | {paper} | {budget} | "
                     f"{times} | {result.seed}, {result.device}, `results/{result.name}.json` |")
    return "\n".join(lines)


def run_notes(result) -> list[str]:
    """The notes a stored run wrote about itself (parameters, training and evaluation time), without
    the notes that quote other runs: those were copied when the run was made and may be older than
    the other runs' stored results, which the lecture reads directly."""
    return [note for note in result.notes if not note.startswith(("reference,", "no published number"))]
