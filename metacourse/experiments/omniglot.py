"""Few-shot classification on Omniglot: MAML's Table 1 (and ProtoNets', Reptile's) on real data.

``metacourse reproduce omniglot --method M --ways N --shots K`` meta-trains one method on the
1,200 training characters (×4 rotations), evaluates it on 600 N-way K-shot tasks of the other 423
characters (the same 600 tasks for every method and seed: their stream has its own fixed seed),
and prints the paper's number beside ours (mean ± 95% CI over tasks, in %).

Setups (defaults; ``--meta-steps`` overrides the number of meta-training steps):

- ``maml`` / ``fomaml``: the cbfinn/maml setup — stride-2 Conv4, α = 0.4 with 1 inner step in
  training and 3 at test (20-way: α = 0.1, 5 and 5 steps, meta-batch 16), meta-batch 32, K
  support + K query images per class in training, Adam β = 1e-3. Reuses ``algorithms.maml``.
- ``protonet`` / ``matching``: one 60-way episode per step with 5 queries per class and the test
  shot (ProtoNets' protocol), Adam 1e-3 halved every 2,000 episodes.
- ``reptile``: openai/supervised-reptile's Omniglot command (10 training shots, 5 inner Adam steps
  on batches of 10, meta-batch 5, meta step 1 → 0; 50 steps at test).
- ``finetune`` / ``nearest``: a classifier over all 4,800 training classes, then fine-tuning a new
  head and the body on the support set, or 1-nearest-neighbour (cosine) in its feature space.

Batch normalisation uses the statistics of each batch at test time too (MAML's "transduction"),
so the comparable Reptile row is the paper's "Reptile + Transduction". On a CPU the default
budgets are shortened (a few thousand steps, one thread); on CUDA they are the papers'.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..algorithms import classifier_baselines, maml, matching, protonet, reptile
from ..checkpoints.omniglot import build_model, evaluate_model, load_file, model_spec, test_tasks
from ..evaluate import summarize
from ..reproduce import Argument, Budget, Result, Row, RunOptions, register
from ..tasks.episodes import EpisodeSampler, sample_batch, sample_episodes
from ..tasks.omniglot import Omniglot
from ..train import Plan, TrainConfig, checkpoint_info, meta_train
from ..utils import Clock, code_fingerprint, get_device, torch_threads

METHODS = ("maml", "fomaml", "reptile", "protonet", "matching", "finetune", "nearest")
LABELS = {"maml": "MAML", "fomaml": "first-order MAML", "reptile": "Reptile",
          "protonet": "Prototypical Networks", "matching": "Matching Networks (no FCE)",
          "finetune": "fine-tuning baseline", "nearest": "nearest-neighbour baseline"}
PAPER = {  # accuracy in %, (ways, shots) → number; sources in PAPER_SOURCE
    "maml": {(5, 1): 98.7, (5, 5): 99.9, (20, 1): 95.8, (20, 5): 98.9},
    "maml-mlp": {(5, 1): 89.7, (5, 5): 97.5},
    "fomaml": {(5, 1): 98.3, (5, 5): 99.2, (20, 1): 89.4, (20, 5): 97.9},
    "reptile": {(5, 1): 97.68, (5, 5): 99.48, (20, 1): 89.43, (20, 5): 97.12},
    "protonet": {(5, 1): 98.8, (5, 5): 99.7, (20, 1): 96.0, (20, 5): 98.9},
    "matching": {(5, 1): 98.1, (5, 5): 98.9, (20, 1): 93.8, (20, 5): 98.5},
}
PAPER_SOURCE = {
    "maml": "MAML (Finn et al. 2017) Table 1", "maml-mlp": "MAML Table 1, 'MAML, no conv'",
    "fomaml": "Reptile (Nichol et al. 2018) Table 2, '1st-order MAML + Transduction'",
    "reptile": "Reptile Table 2, 'Reptile + Transduction' (non-transductive: 95.39 / 98.90 / "
               "88.14 / 96.65)",
    "protonet": "ProtoNets (Snell et al. 2017) Table 1 (1,000 test episodes)",
    "matching": "ProtoNets Table 1 / MAML Table 1, 'matching nets' (with a fixed cosine, no FCE)",
    "finetune": "no Omniglot number published (MiniImagenet, MAML Table 1: 28.86 / 49.79%)",
    "nearest": "no Omniglot number published (MiniImagenet, MAML Table 1: 41.08 / 51.04%)",
}
CHECK_TASKS = 50
"""The first this many test tasks are the quick check that ``tests/test_checkpoints.py`` repeats."""

ARGUMENTS = (
    Argument("--method", str, "protonet", METHODS, "which meta-learner or baseline"),
    Argument("--ways", int, 5, (5, 20), "N of the N-way test tasks"),
    Argument("--shots", int, 1, (1, 5), "K of the K-shot test tasks"),
    Argument("--network", str, "conv4", ("conv4", "mlp"), "Conv4, or MAML's 'no conv' MLP"),
    Argument("--pooling", str, "auto", ("auto", "stride", "max"),
             "Conv4 downsampling (auto: stride-2 conv, MAML's Omniglot net)"),
    Argument("--train-ways", int, 0, None, "ways of training episodes (0: the method's default)", minimum=0),
    Argument("--test-tasks", int, 600, None, "number of test tasks", minimum=1),
    Argument("--backend", str, "auto", ("auto", "loop", "vmap"), "MAML backend"),
    Argument("--threads", int, 1, None, "torch CPU threads (1 is fastest on a shared CPU; 0: all)", minimum=0),
    Argument("--compile", int, 0, (0, 1),
             "1: torch.compile the embedding network (protonet, matching; see metacourse.compiled)"),
    Argument("--bf16", int, 0, (0, 1),
             "1: train with the forward passes in bfloat16 (torch.autocast; for GPUs; protonet, "
             "matching, fomaml, reptile); weights, optimizer and evaluation stay float32"),
    Argument("--n-query-train", int, 0, None, "query images per class in training episodes "
             "(0: the method's default; maml, fomaml, protonet, matching)", minimum=0),
    Argument("--inner-steps", int, 0, None, "inner-loop steps in training (0: the method's default; "
             "maml, fomaml, reptile)", minimum=0),
    Argument("--inner-steps-test", int, 0, None, "inner-loop steps at test (0: the method's default; "
             "maml, fomaml, reptile)", minimum=0),
    Argument("--outer-lr", float, 0.0, None, "the outer (meta-) optimizer's step size (0: the method's "
             "default: Adam's 1e-3, Reptile's meta step 1)"),
)
BF16_METHODS = ("protonet", "matching", "fomaml", "reptile")
"""The methods whose training may run under bfloat16 autocast: one backward pass per step.
Second-order MAML differentiates through its inner gradient, where bfloat16's 8-bit mantissa
would be carried twice; it stays float32."""


@dataclass(frozen=True)
class OmniglotBudget(Budget):
    """The plan of a few-shot Omniglot run. The settings shared by every method come first; a
    setting a method does not use is None (and absent from the stored plan)."""

    method: str
    ways: int
    shots: int
    network: str
    pooling: str
    test_tasks: int
    n_query_test: int
    outer_lr: float
    meta_steps: int
    meta_batch_size: int
    train_ways: int
    k_shot_train: int
    n_query_train: int
    inner_lr: float | None = None
    """maml, fomaml, reptile: the inner step size."""
    inner_steps: int | None = None
    inner_steps_test: int | None = None
    backend: str | None = None
    """maml, fomaml: how the tasks of a meta-batch run (see ``metacourse.algorithms.maml``)."""
    halve_lr_every: int | None = None
    """protonet, matching: Adam's step size halves every this many episodes."""
    compile: bool | None = None
    inner_batch: int | None = None
    """reptile: images per inner step."""
    finetune_lrs: tuple[float, ...] | None = None
    """finetune, nearest: the fine-tuning step sizes tried on validation tasks."""
    finetune_steps: int | None = None
    validation_tasks: int | None = None
    finetune_lr: float | None = None
    """finetune: the step size chosen on the validation tasks after training."""
    bf16: bool | None = None


def budget(options: RunOptions) -> OmniglotBudget:
    """The run's plan: the method's setup at the test shape, shortened on CPU and in FAST mode."""
    extra = {a.key: a.default for a in ARGUMENTS} | dict(options.extra)
    method, ways, shots = extra["method"], extra["ways"], extra["shots"]
    gpu = (options.device or "cpu").startswith("cuda")
    plan = {"method": method, "ways": ways, "shots": shots, "network": extra["network"],
            "pooling": "stride" if extra["pooling"] == "auto" else extra["pooling"],
            "test_tasks": extra["test_tasks"], "n_query_test": 15,
            "outer_lr": 1e-3}
    if method in ("maml", "fomaml"):
        five = ways == 5
        plan |= {"meta_steps": 60_000 if gpu else 2_500, "meta_batch_size": 32 if five else 16,
                 "inner_lr": 0.4 if five else 0.1, "inner_steps": 1 if five else 5,
                 "inner_steps_test": 3 if five else 5, "train_ways": ways, "k_shot_train": shots,
                 "n_query_train": shots, "backend": extra["backend"]}
    elif method in ("protonet", "matching"):
        plan |= {"meta_steps": 20_000 if gpu else 5_000, "meta_batch_size": 1, "train_ways": 60,
                 "k_shot_train": shots, "n_query_train": 5, "halve_lr_every": 2_000,
                 "compile": bool(extra["compile"])}
    elif method == "reptile":
        five = ways == 5
        plan |= {"meta_steps": 100_000 if gpu else 5_000, "meta_batch_size": 5,
                 "train_ways": ways, "k_shot_train": 10, "n_query_train": 1,
                 "inner_lr": 1e-3 if five else 5e-4, "inner_batch": 10 if five else 20,
                 "inner_steps": 5 if five else 10, "inner_steps_test": 50, "outer_lr": 1.0}
    else:
        plan |= {"meta_steps": 10_000 if gpu else 3_000, "meta_batch_size": 64,
                 "train_ways": 0, "k_shot_train": 0, "n_query_train": 0,
                 "finetune_lrs": (0.01, 0.03, 0.1, 0.3), "finetune_steps": 20,
                 "validation_tasks": 50}
    if extra["train_ways"]:
        plan["train_ways"] = _train_ways(method, ways, extra["train_ways"])
    plan |= _overrides(method, extra)
    if extra["bf16"]:
        if method not in BF16_METHODS:
            raise ValueError(f"--bf16 1 is for {', '.join(BF16_METHODS)}; {method} trains in float32 "
                             "(drop --bf16, or pick --method fomaml for a first-order MAML)")
        plan["bf16"] = True
    if options.fast:
        plan |= {"meta_steps": 4, "test_tasks": min(plan["test_tasks"], 10),
                 "meta_batch_size": min(plan["meta_batch_size"], 2),
                 "train_ways": min(plan["train_ways"], 10)}
        for key, cap in (("inner_steps_test", 3), ("finetune_steps", 3), ("validation_tasks", 4)):
            if key in plan:
                plan[key] = min(plan[key], cap)
    if options.meta_steps:
        plan["meta_steps"] = options.meta_steps
    return OmniglotBudget(**plan)


TRAIN_CLASSES = 4 * 1200
"""Classes of the training split: 1,200 characters, each in four rotations."""
EVALUATION_KEYS = ("test_tasks", "n_query_test", "inner_steps_test", "finetune_lrs", "finetune_steps",
                   "validation_tasks")
"""Settings of the plan that only change how the trained network is measured, not its training."""


def _train_ways(method: str, ways: int, train_ways: int) -> int:
    """``--train-ways``, checked against what the method can train on."""
    if train_ways > TRAIN_CLASSES:
        raise ValueError(f"--train-ways {train_ways}: the training split has {TRAIN_CLASSES:,} classes "
                         "(1,200 characters x 4 rotations); use at most that many")
    if method in ("maml", "fomaml", "reptile") and train_ways != ways:
        raise ValueError(f"--train-ways {train_ways}: {method} trains a {ways}-way output layer on tasks "
                         f"of the test's --ways; drop --train-ways (or use --method protonet or matching)")
    if method in ("finetune", "nearest"):
        raise ValueError(f"--train-ways {train_ways}: {method} pretrains one classifier over all "
                         f"{TRAIN_CLASSES:,} classes, not on episodes; drop --train-ways")
    if train_ways < 2:
        raise ValueError(f"--train-ways {train_ways}: an episode needs 2 classes or more")
    return train_ways


OVERRIDES = {"n_query_train": ("maml", "fomaml", "protonet", "matching"),
             "inner_steps": ("maml", "fomaml", "reptile"), "inner_steps_test": ("maml", "fomaml", "reptile"),
             "outer_lr": METHODS}
"""The settings that ``--n-query-train``, ``--inner-steps``, ``--inner-steps-test`` and ``--outer-lr``
replace (0 keeps the method's own), and the methods that have them."""
WHY_NOT = {"n_query_train": {"reptile": "reptile trains on its support images only (no query set)",
                             "finetune": "finetune pretrains a classifier on image batches, not episodes",
                             "nearest": "nearest pretrains a classifier on image batches, not episodes"},
           "inner_steps": "{method} has no inner loop", "inner_steps_test": "{method} has no inner loop"}


def _overrides(method: str, extra: dict) -> dict:
    """The settings replaced by ``--n-query-train``, ``--inner-steps``, ``--inner-steps-test`` and
    ``--outer-lr``, checked against what the method has (0: keep the method's setting)."""
    overrides = {}
    for key, methods in OVERRIDES.items():
        value = extra.get(key) or 0
        if not value:
            continue
        flag = "--" + key.replace("_", "-")
        if method not in methods:
            why = WHY_NOT[key] if isinstance(WHY_NOT[key], str) else WHY_NOT[key][method]
            raise ValueError(f"{flag} {value}: {why.format(method=method)}; drop {flag} "
                             f"(or use --method {', '.join(methods[:-1])} or {methods[-1]})")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{flag} {value}: give a finite positive number (or 0 for the method's own)")
        overrides[key] = value
    return overrides


def option_notes(plan: OmniglotBudget, options: RunOptions) -> list[str]:
    """What the run does not do as asked: options its method ignores, and FAST mode's caps."""
    extra = {a.key: a.default for a in ARGUMENTS} | dict(options.extra)
    notes = []
    if extra["backend"] != "auto" and plan.method not in ("maml", "fomaml"):
        notes.append(f"--backend {extra['backend']} is ignored: only maml and fomaml have backends")
    if extra["compile"] and plan.method not in ("protonet", "matching"):
        notes.append("--compile 1 is ignored: only protonet and matching compile their network")
    if extra["pooling"] != "auto" and plan.network == "mlp":
        notes.append(f"--pooling {extra['pooling']} is ignored: the MLP has no pooling")
    if options.fast:
        full = budget(RunOptions(meta_steps=options.meta_steps, seed=options.seed, device=options.device,
                                 extra=options.extra))
        capped = [f"{key} {full[key]} → {plan[key]}" for key in full
                  if key != "meta_steps" and full[key] != plan[key]]
        if capped:
            notes.append("FAST mode caps " + ", ".join(capped))
    return notes


def run_plan(plan: OmniglotBudget, options: RunOptions, device: torch.device) -> Plan:
    """The typed plan of a run: what trains, its seed, FAST, device type and code (for checkpoints
    and exported files), with the evaluation settings apart."""
    method = plan.method
    algorithm = {"maml": maml, "fomaml": maml, "reptile": reptile, "protonet": protonet,
                 "matching": matching}.get(method, classifier_baselines)
    from .. import train as train_module
    from ..models import conv4
    from ..tasks import episodes

    measuring = EVALUATION_KEYS + (PRETRAINING_SHARED_BY if method in PRETRAINED else ())
    training = {k: v for k, v in plan.items() if k not in measuring and k != "finetune_lr"}
    evaluation = {k: v for k, v in plan.items() if k in measuring}
    return Plan("omniglot", training_name(plan), options.seed, training, fast=options.fast,
                device=device.type, evaluation=evaluation,
                code=code_fingerprint(sys.modules[__name__], algorithm, conv4, episodes, train_module))


PRETRAINED = ("finetune", "nearest")
"""The baselines that pretrain one classifier over all 4,800 training classes."""
PRETRAINING_SHARED_BY = ("method", "ways", "shots")
"""Settings that do not change the baselines' pretraining (only how it is measured): fine-tuning and
nearest neighbour at every N-way K-shot share one pretraining checkpoint."""


def training_name(plan: OmniglotBudget) -> str:
    """The name of what trains: :func:`checkpoint_name`, but ``classifier-omniglot`` for the
    baselines' shared pretraining (``classifier-mlp-omniglot`` for the MLP)."""
    if plan.method in PRETRAINED:
        return f"classifier{'-mlp' if plan.network == 'mlp' else ''}-omniglot"
    return checkpoint_name(plan)


def checkpoint_name(plan: OmniglotBudget) -> str:
    """e.g. ``protonet-omniglot-5w1s`` (``maml-mlp-omniglot-5w1s`` for the no-conv network)."""
    network = "-mlp" if plan.network == "mlp" else ""
    precision = "-bf16" if plan.bf16 else ""
    return f"{plan.method}{network}-omniglot-{plan.ways}w{plan.shots}s{precision}"


def _scheduled(step, scheduler, tasks):
    metrics = step(tasks)
    scheduler.step()
    return metrics


def _in_bfloat16(step, device_type: str, tasks):
    """One training step under ``torch.autocast``: matrix products and convolutions run in
    bfloat16, the parameters, their gradients and the optimizer's state stay float32."""
    with torch.autocast(device_type, dtype=torch.bfloat16):
        return step(tasks)


def build_step(plan: OmniglotBudget, model: nn.Module):
    """The step function of ``meta_train`` and the state a checkpoint must hold."""
    step, state = _build_step(plan, model)
    if plan.bf16:
        step = partial(_in_bfloat16, step, next(model.parameters()).device.type)
    return step, state


def _build_step(plan: OmniglotBudget, model: nn.Module):
    method = plan.method
    if method == "reptile":
        optimizer = torch.optim.SGD(model.parameters(), lr=plan.outer_lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: max(0.0, 1.0 - step / plan.meta_steps))
        cfg = reptile.Config(inner_lr=plan.inner_lr, inner_steps=plan.inner_steps,
                             inner_batch=plan.inner_batch)
        step = partial(_scheduled, partial(reptile.meta_step, model, optimizer, cfg=cfg), schedule)
        return step, {"model": model, "optimizer": optimizer, "schedule": schedule}
    optimizer = torch.optim.Adam(model.parameters(), lr=plan.outer_lr)
    if method in ("maml", "fomaml"):
        cfg = maml.Config(inner_lr=plan.inner_lr, inner_steps=plan.inner_steps,
                          first_order=method == "fomaml", loss="cross_entropy",
                          backend=plan.backend)
        return partial(maml.meta_step, model, optimizer, cfg=cfg), {"model": model,
                                                                     "optimizer": optimizer}
    if method in ("finetune", "nearest"):
        step = partial(classifier_baselines.pretrain_step, model, optimizer)
        return step, {"model": model, "optimizer": optimizer}
    module = protonet if method == "protonet" else matching
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, plan.halve_lr_every, gamma=0.5)
    cfg = module.Config(compile=plan.compile)
    step = partial(_scheduled, partial(module.meta_step, model, optimizer, cfg=cfg), schedule)
    return step, {"model": model, "optimizer": optimizer, "schedule": schedule}


def build_sampler(plan: OmniglotBudget, device: torch.device):
    """Training tasks from the 1,200 training characters (or image batches, for the baselines)."""
    train = Omniglot("train")
    if plan.method in ("finetune", "nearest"):
        return lambda n_tasks, rng: sample_batch(train, n_tasks, rng, device)
    return EpisodeSampler(train, plan.train_ways, plan.k_shot_train, plan.n_query_train,
                          str(device))


def _command(plan: OmniglotBudget, options: RunOptions) -> str:
    words = ["metacourse", "reproduce", "omniglot", "--method", plan.method, "--ways",
             str(plan.ways), "--shots", str(plan.shots), "--seed", str(options.seed)]
    for argument in ARGUMENTS[3:]:
        value = options.extra.get(argument.key, argument.default)
        if value != argument.default:
            words += [argument.flag, str(value)]
    if options.meta_steps:
        words += ["--meta-steps", str(options.meta_steps)]
    return shlex.join(words + (["--fast"] if options.fast else []))


def train(plan: OmniglotBudget, options: RunOptions, device: torch.device) -> tuple[nn.Module, dict]:
    """Meta-train (resumable from ``out_dir/checkpoints``); returns the model and its timing.

    The checkpoint is named by the run's plan (``run_plan``): another plan never resumes from it.
    A run stopped and started again resumes from its checkpoint; each part (*segment*) of the
    training is timed, wall clock and CPU time of this process, and the segments are kept in
    ``NAME.times.json`` beside the checkpoint so that the card reports the whole training, not just
    its last part. On a shared machine wall time exceeds CPU time: the load average at the start
    and end of each segment says how busy the machine was. ``timing["origin"]`` says whether this
    call trained from scratch or resumed, and from which checkpoint.
    """
    torch.manual_seed(options.seed)
    model = build_model(model_spec(plan)).to(device)
    step, state = build_step(plan, model)
    typed = run_plan(plan, options, device)
    checkpoint = checkpoint_path(plan, options, device)
    train_cfg = TrainConfig(
        meta_steps=plan.meta_steps, meta_batch_size=plan.meta_batch_size, seed=options.seed,
        checkpoint_path=str(checkpoint), checkpoint_every=100, progress=options.progress,
        description=LABELS[plan.method], plan=typed)
    first_step = checkpoint_info(checkpoint)["step"]
    load_before = _load_average()
    started_utc = datetime.now(timezone.utc).isoformat(timespec="seconds")
    clock = Clock()
    history = meta_train(step, build_sampler(plan, device), train_cfg, state)
    wall, cpu = clock.totals()
    times = _times_path(checkpoint)
    segments = json.loads(times.read_text())["segments"] if times.exists() and first_step else []
    if first_step < plan.meta_steps:  # a run resumed from a finished checkpoint trains nothing
        segments.append({"steps": [first_step, plan.meta_steps], "wall_seconds": round(wall, 1),
                         "cpu_seconds": round(cpu, 1), "started_utc": started_utc,
                         "load_average": [load_before, _load_average()],
                         "threads": torch.get_num_threads(), "device": str(device)})
        times.write_text(json.dumps({"segments": segments}, indent=2) + "\n")
    origin = {"plan": typed.digest(), "checkpoint": str(checkpoint), "resumed_from_step": history.resumed_from,
              "meta_steps": plan.meta_steps, "earlier_seconds": round(history.earlier_seconds, 1),
              "origin": history.origin(plan.meta_steps)}
    return model, _timing(segments, plan.meta_steps) | {"origin": origin}


def checkpoint_path(plan: OmniglotBudget, options: RunOptions, device: torch.device) -> Path:
    """``out_dir/checkpoints/NAME-seedS-STEPS-DIGEST.pt``: the digest names the plan's training."""
    typed = run_plan(plan, options, device)
    return typed.checkpoint(options.out_dir, f"{training_name(plan)}-seed{options.seed}-{plan.meta_steps}")


def _times_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".times.json")


def _load_average() -> float | None:
    """The machine's 1-minute load average (None where the OS does not report one)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _timing(segments: list[dict], meta_steps: int) -> dict:
    """Totals over the timed segments; a segment timed without CPU time makes the CPU total None.

    ``train_seconds`` is None too when the segments do not cover all ``meta_steps`` (an older run
    resumed without a record of its first part).
    """
    covered = sum(b - a for a, b in (s["steps"] for s in segments))
    walls = [s["wall_seconds"] for s in segments]
    cpus = [s.get("cpu_seconds") for s in segments]
    complete = covered == meta_steps and None not in walls
    return {"train_seconds": round(sum(walls), 1) if complete else None,
            "train_cpu_seconds": round(sum(cpus), 1) if complete and None not in cpus else None,
            "train_segments": segments}


def export_path(plan: OmniglotBudget, options: RunOptions, device: torch.device) -> Path:
    """``out_dir/NAME-seedS-DIGEST.pt``, the digest of the whole plan (training and evaluation): a run
    with other options never overwrites it. (Shipped, it is called ``NAME.pt``: ``checkpoints.ship``.)"""
    digest = run_plan(plan, options, device).digest(training=False)
    return Path(options.out_dir) / f"{checkpoint_name(plan)}-seed{options.seed}-{digest}.pt"


def export(plan: OmniglotBudget, model: nn.Module, card: dict, path: str | Path) -> Path:
    """Write the trained weights (``NAME.pt``) and their card (``NAME.json``) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = model_spec(plan)
    if plan.method in ("finetune", "nearest"):  # the 4,800-way head is not needed at test time
        model, spec = classifier_baselines.body(model), spec | {"out_features": None}
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "model": spec, "plan": plan}, path)
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return path


@register("omniglot", "Few-shot Omniglot (MAML Table 1): MAML, FOMAML, Reptile, ProtoNets, "
          "matching nets, fine-tuning and nearest-neighbour baselines", arguments=ARGUMENTS)
def run(options: RunOptions) -> Result:
    with torch_threads(dict(options.extra).get("threads", 1)):  # 0: leave the setting alone
        return _run(options)


def _run(options: RunOptions) -> Result:
    started = time.perf_counter()
    device = get_device(options.device or "cpu")
    plan = budget(options)
    asked = option_notes(plan, options)
    for note in asked:
        print(f"metacourse: note: {note}", file=sys.stderr)
    model, timing = train(plan, options, device)
    origin = timing.pop("origin")
    if plan.method == "finetune":
        plan = plan.replace(finetune_lr=classifier_baselines.choose_finetune_lr(
            classifier_baselines.body(model),
            sample_episodes(Omniglot("train"), plan.validation_tasks, plan.ways,
                            plan.shots, plan.n_query_test,
                            np.random.default_rng([options.seed, 7])),
            plan.finetune_lrs, plan.finetune_steps))
    card = {"name": checkpoint_name(plan), "method": plan.method,
            "command": _command(plan, options), "seed": options.seed, "device": str(device),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "budget": plan.to_dict(),
            **timing, "fast": options.fast,
            "plan": run_plan(plan, options, device).to_dict() | {"digest": origin["plan"]}}
    path = export(plan, model.cpu(), card, export_path(plan, options, device))
    evaluation_clock = Clock()
    reloaded = load_file(path)
    accuracies = 100 * evaluate_model(plan, reloaded, test_tasks(plan))
    eval_seconds, eval_cpu_seconds = evaluation_clock.totals()
    ours = summarize(accuracies)
    card |= {"eval_seconds": round(eval_seconds, 1), "eval_cpu_seconds": round(eval_cpu_seconds, 1),
             "test_accuracy": ours.to_dict(),
             "check": {"n_tasks": min(CHECK_TASKS, len(accuracies)),
                       "accuracy": float(accuracies[:CHECK_TASKS].mean())}}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    key = "maml-mlp" if plan.method == "maml" and plan.network == "mlp" else plan.method
    paper = PAPER.get(key, {}).get((plan.ways, plan.shots))
    metric = f"accuracy_{plan.ways}w{plan.shots}s_%"
    notes = [f"paper: {PAPER_SOURCE.get(key, '—')}",
             f"trained {plan.meta_steps} steps on {device}, {torch.get_num_threads()} "
             f"thread(s): {_wall_and_cpu(timing['train_seconds'], timing['train_cpu_seconds'])}, "
             f"in {len(timing['train_segments'])} segment(s)",
             f"this run {origin['origin']} ({origin['checkpoint']})",
             *(_segment_note(segment) for segment in timing["train_segments"]),
             f"evaluated {ours.n} test tasks in {eval_seconds:.0f} s wall, "
             f"{eval_cpu_seconds:.0f} s CPU", f"checkpoint: {path}", *asked]
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    measured = {"train_seconds": timing["train_seconds"], "train_cpu_seconds": timing["train_cpu_seconds"],
                "train_segments": len(timing["train_segments"]), "eval_seconds": round(eval_seconds, 1),
                "eval_cpu_seconds": round(eval_cpu_seconds, 1)}
    result = Result("omniglot", options.seed, str(device), time.perf_counter() - started,
                    plan, [Row(LABELS[plan.method], metric, paper, ours)], notes,
                    {"checkpoint": str(path), "card": str(path.with_suffix(".json"))},
                    {checkpoint_name(plan): origin}, measured)
    return result


def _wall_and_cpu(wall: float | None, cpu: float | None) -> str:
    return (f"{'wall time not recorded' if wall is None else f'{wall:.0f} s wall'}, "
            f"{'CPU time not recorded' if cpu is None else f'{cpu:.0f} s CPU'}")


def _segment_note(segment: dict) -> str:
    first, last = segment["steps"]
    text = f"  steps {first}-{last}: {_wall_and_cpu(segment['wall_seconds'], segment.get('cpu_seconds'))}"
    if segment.get("load_average"):
        text += " (load average {} at the start, {} at the end)".format(*segment["load_average"])
    return text + (f"; {segment['note']}" if segment.get("note") else "")


def results_table(paths: list[str | Path]) -> str:
    """A Markdown table of saved results (``metacourse reproduce omniglot --json FILE``): for each
    file the paper's number beside ours, the budget, seed, device and training time.

    ``wall`` is the whole training's wall-clock time summed over its segments (a run stopped and
    resumed has several), ``CPU`` the CPU time of the training processes; "—" where a segment was
    not timed. Evaluation (600 tasks) is timed separately. FAST results are marked: they are smoke
    tests, not reproductions.
    """
    lines = ["| method | task | paper | ours: mean ± 95% CI (tasks) | meta-steps × batch | seed "
             "| device | training wall (CPU) | evaluation wall (CPU) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(Path(p) for p in paths):
        result = json.loads(Path(path).read_text())
        budget, row = {**result["budget"], **result.get("measured", {})}, result["rows"][0]
        ours, paper = row["ours"], row["paper"]
        wall, cpu = budget.get("train_seconds"), budget.get("train_cpu_seconds")
        times = (f"{_minutes(wall)} ({_minutes(cpu)})" + (
            f", {budget['train_segments']} segments" if budget.get("train_segments", 1) > 1 else ""))
        fast = " **FAST: smoke test, not a reproduction**" if any(
            "FAST" in note for note in result["notes"]) else ""
        lines.append(
            f"| {row['method']}{fast} | {budget['ways']}-way {budget['shots']}-shot "
            f"| {'—' if paper is None else f'{paper:.1f}'} "
            f"| {ours['mean']:.2f} ± {ours['ci95']:.2f} ({ours['n']}) "
            f"| {budget['meta_steps']:,} × {budget['meta_batch_size']} | {result['seed']} "
            f"| {result['device']} | {times} | {_evaluation_time(budget)} |")
    return "\n".join(lines)


def _evaluation_time(budget: dict) -> str:
    if "eval_seconds" not in budget:
        return "—"
    cpu = budget.get("eval_cpu_seconds")
    return f"{budget['eval_seconds']:.0f} s" + ("" if cpu is None else f" ({cpu:.0f} s)")


def _minutes(seconds: float | None, missing: str = "—") -> str:
    return missing if seconds is None else f"{seconds / 60:.0f} min"


# --- Showing stored results ---

GRADIENT_METHOD_RUNS = (("maml", None), ("maml", "query5"), ("fomaml", None), ("fomaml", "query5"),
                        ("fomaml", "bf16"), ("reptile", None), ("protonet", None), ("protonet", "bf16"))
"""The stored 5-way 1-shot runs that Lecture 4 compares: (method, variant), variant "bf16" for the
runs trained under bfloat16 autocast, "query5" for those trained with 5 query images per class."""


def gradient_methods_markdown(stored_runs) -> str:
    """One row per stored Omniglot run (results of :func:`metacourse.results.load`): the method, the
    precision it trained in, the paper's number and its source, ours (mean ± 95% CI over the test
    tasks), the budget, and the training time — CPU time, then wall-clock time and the number of
    parts when a run was stopped and resumed ("not recorded" where a part was not timed)."""
    lines = ["| method | trained in | query images per class in training | paper | ours: mean ± 95% CI (tasks) "
             "| meta-steps × batch | training CPU (wall) | paper's number from |", "|---|---|---|---|---|---|---|---|"]
    for stored in stored_runs:
        settings = {**stored.plan, **stored.measured}
        row = stored.rows[0]
        cpu, wall, parts = (settings.get(key) for key in ("train_cpu_seconds", "train_seconds", "train_segments"))
        times = (f"{_minutes(cpu, 'not recorded')} ({_minutes(wall)} wall"
                 + (f", {parts} parts" if parts and parts > 1 else "") + ")")
        source = next((note.removeprefix("paper: ") for note in stored.notes if note.startswith("paper: ")), "—")
        fast = " **FAST: a smoke test**" if any("FAST" in note for note in stored.notes) else ""
        query = "— (no query set)" if settings.get("method") == "reptile" else settings.get("n_query_train", "—")
        lines.append(f"| {row.method}{fast} | {'bfloat16' if settings.get('bf16') else 'float32'} | {query} "
                     f"| {'—' if row.paper is None else f'{row.paper:g}'} "
                     f"| {row.ours.mean:.2f} ± {row.ours.ci95:.2f} ({row.ours.n}) "
                     f"| {settings['meta_steps']:,} × {settings['meta_batch_size']} | {times} | {source} |")
    seeds = ", ".join(str(seed) for seed in sorted({stored.seed for stored in stored_runs}))
    devices = ", ".join(sorted({stored.device for stored in stored_runs}))
    return "\n".join(lines + ["", f"{settings['ways']}-way {settings['shots']}-shot; seed {seeds}; {devices}. "
                              "Wall time grows with the machine's load; CPU time does not."])


def gradient_methods_table(runs=GRADIENT_METHOD_RUNS, ways: int = 5, shots: int = 1):
    """:func:`gradient_methods_markdown` of the stored runs named by ``runs`` ((method, variant)
    pairs), displayed as Markdown in a notebook."""
    from IPython.display import Markdown

    from .. import results

    return Markdown(gradient_methods_markdown(
        [results.load("omniglot", method=method, ways=ways, shots=shots, **({"variant": variant} if variant else {}))
         for method, variant in runs]))


def backend_benchmark_markdown(stored) -> str:
    """The stored timing of MAML's Omniglot meta-step (``benchmarks/omniglot_maml.py --json``, loaded
    with :func:`metacourse.results.load`, e.g. ``"bench-omniglot-config-a"``): one row per
    implementation, second and first order side by side — median (min) milliseconds per meta-step,
    the share of the machine's measured SGEMM peak, peak memory, the speed relative to learn2learn,
    and how far its float32 meta-gradient is from the float64 loop's."""
    data = stored.data
    by_name: dict[str, dict[str, dict]] = {}
    for row in data["rows"]:
        by_name.setdefault(row["implementation"], {})[row["order"]] = row
    reference = next((orders for name, orders in by_name.items() if name.startswith("learn2learn")), None)
    lines = ["| implementation | second order, ms (min) | first order, ms (min) | second order, % of SGEMM peak "
             "| peak memory, 2nd / 1st (MiB) | speed vs learn2learn, 2nd / 1st | float32 vs float64 loop, 2nd |",
             "|---|---|---|---|---|---|---|"]
    for name, orders in by_name.items():
        second, first = orders.get("second", {}), orders.get("first", {})

        def cell(row, key, fmt):
            return "—" if row.get(key) is None else format(row[key], fmt)

        speed = "—" if reference is None else " / ".join(
            f"{reference[order]['median_ms'] / orders[order]['median_ms']:.2f}×" if order in orders else "—"
            for order in ("second", "first"))
        lines.append(f"| {name} | {cell(second, 'median_ms', '.0f')} ({cell(second, 'min_ms', '.0f')}) "
                     f"| {cell(first, 'median_ms', '.0f')} ({cell(first, 'min_ms', '.0f')}) "
                     f"| {100 * second.get('fraction_of_sgemm_peak', float('nan')):.1f}% "
                     f"| {cell(second, 'peak_memory_mib', '.0f')} / {cell(first, 'peak_memory_mib', '.0f')} "
                     f"| {speed} | {cell(second, 'max_rel_grad_diff_vs_loop_float64', '.0e')} |")
    config = data["config"]
    lines.append(f"\nConfig {config['name']}: {config['n_way']}-way {config['k_shot']}-shot, {config['n_query']} "
                 f"query per class, {config['inner_steps']} inner step{'' if config['inner_steps'] == 1 else 's'} "
                 f"with α = {config['inner_lr']}, meta-batch "
                 f"{config['meta_batch']}, {config['input']} images; {data['threads']} CPU threads, torch "
                 f"{data['torch']}, SGEMM peak {data['sgemm_peak_gflop_per_s']:.0f} GFLOP/s "
                 f"(`results/{stored.name}.json`).")
    return "\n".join(lines)


def backend_benchmark_table(config: str = "a"):
    """:func:`backend_benchmark_markdown` of ``results/bench-omniglot-config-<config>.json``, as Markdown."""
    from IPython.display import Markdown

    from .. import results

    return Markdown(backend_benchmark_markdown(results.load(f"bench-omniglot-config-{config}")))


# (Lecture 2: every stored 5-way run beside its paper, with the evaluation protocol of each)

PAPER_PROTOCOL = {"maml": "transductive", "fomaml": "transductive", "reptile": "transductive",
                  "protonet": "non-transductive", "matching": "not stated"}
"""How each paper's Omniglot number was measured: MAML's code (and Reptile's "+ Transduction" rows)
normalise the test queries with their own batch statistics; ProtoNets' code uses running averages."""
COMMANDS = {"nontransductive": "python scripts/omniglot_transduction.py --model M --json FILE"}


def _protocol(stored) -> str:
    return "non-transductive" if stored.entry.get("variant") == "nontransductive" else "transductive"


def _lecture2_runs(methods=METHODS, ways: int = 5) -> list:
    """The stored float32 Omniglot runs of ``methods`` with ``ways`` ways (transductive, then
    non-transductive), ordered by method, shots and protocol."""
    from .. import results

    entries = [entry for entry in results.catalogue() if entry["experiment"] == "omniglot"
               and entry.get("method") in methods and entry.get("ways") == ways
               and entry.get("variant") in (None, "nontransductive") and entry["seed"] == 0]
    entries.sort(key=lambda e: (METHODS.index(e["method"]), e["shots"], e.get("variant") or ""))
    return [results.load("omniglot", method=e["method"], ways=e["ways"], shots=e["shots"],
                         **({"variant": e["variant"]} if e.get("variant") else {})) for e in entries]


def protocol_results_markdown(stored_runs, methods=("M",)) -> str:
    """One row per stored run (:func:`metacourse.results.load`): the method, the task, how it was
    evaluated, the paper's number with the paper's protocol, ours (mean ± 95% CI over the test
    tasks), the training budget and the training time (CPU, then wall clock). Without runs: the
    commands that store those of ``methods``."""
    if not stored_runs:
        commands = "; ".join(f"`metacourse reproduce omniglot --method {m} --ways 5 --shots 1 "
                             f"--json results/omniglot-{m}-5w1s.json`" for m in methods)
        return f"No stored run of {', '.join(LABELS.get(m, m) for m in methods)} yet. To store one: {commands}."
    lines = ["| method | task | our evaluation | paper (its protocol) | ours: mean ± 95% CI (tasks) "
             "| meta-steps × batch | training CPU (wall) |", "|---|---|---|---|---|---|---|"]
    for stored in stored_runs:
        settings, row = {**stored.plan, **stored.measured}, stored.rows[0]
        cpu, wall = settings.get("train_cpu_seconds"), settings.get("train_seconds")
        times = f"{_minutes(cpu, 'not recorded')} ({_minutes(wall)})"
        paper = ("—" if row.paper is None
                 else f"{row.paper:g} ({PAPER_PROTOCOL.get(settings['method'], 'not stated')})")
        fast = " **FAST: a smoke test**" if any("FAST" in note for note in stored.notes) else ""
        lines.append(f"| {row.method}{fast} | {settings['ways']}-way {settings['shots']}-shot "
                     f"| {_protocol(stored)} | {paper} | {row.ours.mean:.2f} ± {row.ours.ci95:.2f} ({row.ours.n}) "
                     f"| {settings['meta_steps']:,} × {settings['meta_batch_size']} | {times} |")
    seeds = ", ".join(str(s) for s in sorted({stored.seed for stored in stored_runs}))
    devices = ", ".join(sorted({stored.device for stored in stored_runs}))
    return "\n".join(lines + ["", f"Seed {seeds}; {devices}. Wall time grows with the "
                              "machine's load; CPU time does not."])


def stored_results_table(*methods: str, ways: int = 5):
    """:func:`protocol_results_markdown` of every stored run of ``methods`` (all when none are named),
    as Markdown for a notebook: whatever is stored in ``results/`` now."""
    from IPython.display import Markdown

    return Markdown(protocol_results_markdown(_lecture2_runs(methods or METHODS, ways), methods or METHODS))


def transduction_markdown(stored_runs) -> str:
    """For each method and task with both evaluations stored: the paper (with its protocol), ours
    with transduction, ours without, and the difference (transductive minus non-transductive)."""
    pairs: dict[tuple, dict] = {}
    for stored in stored_runs:
        key = (stored.rows[0].method, stored.plan["ways"], stored.plan["shots"])
        pairs.setdefault(key, {})[_protocol(stored)] = stored
    lines = ["| method | task | paper (its protocol) | ours, transductive | ours, non-transductive "
             "| difference |", "|---|---|---|---|---|---|"]
    for (method, ways, shots), both in pairs.items():
        if len(both) < 2:
            continue
        with_, without = (both[p].rows[0] for p in ("transductive", "non-transductive"))
        protocol = PAPER_PROTOCOL.get(both["transductive"].plan["method"], "not stated")
        paper = "—" if with_.paper is None else f"{with_.paper:g} ({protocol})"
        lines.append(f"| {method} | {ways}-way {shots}-shot | {paper} "
                     f"| {with_.ours.mean:.2f} ± {with_.ours.ci95:.2f} ({with_.ours.n}) "
                     f"| {without.ours.mean:.2f} ± {without.ours.ci95:.2f} ({without.ours.n}) "
                     f"| {with_.ours.mean - without.ours.mean:+.2f} |")
    if len(lines) == 2:
        return ("No method has both evaluations stored yet: " + COMMANDS["nontransductive"]
                + " stores the non-transductive one.")
    return "\n".join(lines)


def transduction_table(ways: int = 5):
    """:func:`transduction_markdown` of the stored ProtoNets and matching-network runs, as Markdown."""
    from IPython.display import Markdown

    return Markdown(transduction_markdown(_lecture2_runs(("protonet", "matching"), ways)))


# (Lecture 4's appendix: short MAML runs that change one setting of the 5-way 1-shot plan at a time)

PROBE_KEYS = ("n_query_train", "inner_steps", "inner_steps_test", "outer_lr", "inner_lr", "meta_batch_size")
"""The settings a MAML probe may change; the table names the ones that differ from the full run's."""


def _probe_change(plan, reference) -> str:
    changed = [f"{key} {reference.get(key)} → {plan.get(key)}" for key in PROBE_KEYS
               if plan.get(key) != reference.get(key)]
    return ", ".join(changed) or "none (the full run's settings)"


def maml_probes_markdown(probes, reference) -> str:
    """One row per short MAML or first-order MAML run (``probes``, results of :func:`metacourse.results.load`, the first
    of each budget with the full run's settings): the setting it changes from ``reference`` (the full
    run), its meta-steps, its accuracy on the test tasks (mean ± 95% CI), the difference from the first
    probe with as many meta-steps, and its training CPU time in all and per meta-step (the machine's
    load does not change it)."""
    if not probes:
        method, plan = reference.plan["method"], reference.plan
        shape = f"{plan['ways']}w{plan['shots']}s"
        return (f"No {LABELS[method]} probe stored yet. To store one: `metacourse reproduce omniglot "
                f"--method {method} --ways {plan['ways']} --shots {plan['shots']} --meta-steps 600 "
                f"--n-query-train 15 --json results/omniglot-{method}-{shape}-probe-query15.json`.")
    lines = ["| probe | changes from the full run | meta-steps × batch | ours: mean ± 95% CI (tasks) "
             "| vs the first probe of its budget | training CPU | CPU per meta-step |", "|---|---|---|---|---|---|---|"]
    firsts: dict[int, float] = {}
    for stored in probes:
        plan, measured, ours = stored.plan, stored.measured, stored.rows[0].ours
        first = firsts.setdefault(plan["meta_steps"], ours.mean)
        cpu = measured.get("train_cpu_seconds")
        per_step = "—" if cpu is None else f"{cpu / plan['meta_steps']:.2f} s"
        fast = " **FAST: a smoke test**" if any("FAST" in note for note in stored.notes) else ""
        lines.append(f"| {stored.entry.get('variant', '—')}{fast} | {_probe_change(plan, reference.plan)} "
                     f"| {plan['meta_steps']:,} × {plan['meta_batch_size']} "
                     f"| {ours.mean:.2f} ± {ours.ci95:.2f} ({ours.n}) | {ours.mean - first:+.2f} "
                     f"| {_minutes(cpu, 'not recorded')} | {per_step} |")
    full = reference.rows[0].ours
    return "\n".join(lines + ["", f"The full run ({reference.plan['meta_steps']:,} meta-steps): "
                              f"{full.mean:.2f} ± {full.ci95:.2f} ({full.n} tasks). Seed "
                              f"{', '.join(str(s) for s in sorted({p.seed for p in probes}))}; "
                              f"{', '.join(sorted({p.device for p in probes}))}."])


def _maml_probes(ways: int = 5, shots: int = 1, method: str = "maml") -> list:
    """The stored probes of ``method`` (variants ``probe-*``; a probe of another budget than the main
    probes names its meta-steps, e.g. ``omniglot-maml-5w1s-200-probe-base``), by budget, each budget's
    probe with the full run's settings first."""
    from .. import results

    entries = [entry for entry in results.catalogue() if entry["experiment"] == "omniglot"
               and entry.get("method") == method and entry.get("ways") == ways and entry.get("shots") == shots
               and str(entry.get("variant", "")).startswith("probe-") and entry["seed"] == 0]
    entries.sort(key=lambda e: ("meta_steps" in e, -e.get("meta_steps", 0), e["variant"] != "probe-base", e["variant"]))
    return [results.load("omniglot", method=method, ways=ways, shots=shots,
                         **{key: e[key] for key in ("variant", "meta_steps") if key in e}) for e in entries]


def maml_probes_table(ways: int = 5, shots: int = 1, method: str = "maml"):
    """:func:`maml_probes_markdown` of the stored probes of ``method`` (``"maml"`` or ``"fomaml"``)
    beside its full run, as Markdown."""
    from IPython.display import Markdown

    from .. import results

    return Markdown(maml_probes_markdown(_maml_probes(ways, shots, method),
                                         results.load("omniglot", method=method, ways=ways, shots=shots)))
