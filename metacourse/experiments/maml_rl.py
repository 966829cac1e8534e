"""MAML's Table 4: 2D navigation, average return after 0, 1, 2 and 3 policy-gradient steps.

Setup (Finn et al. 2017, §5.3 and App. A.2; ``metacourse.rl.envs.navigation`` for the env and its
reward, −distance as in the official code): Gaussian MLP policy 2-100-100-2 (ReLU), one inner
REINFORCE step with α = 0.1 on K = 20 trajectories per task and a linear feature baseline fitted
per task, TRPO outer step (δ = 0.01) over 20 tasks per meta-iteration on the post-adaptation
trajectories. Test: new goals, 40 trajectories per gradient step, α = 0.1 then 0.05, return
averaged over the 40 trajectories of each task; mean ± 95% CI over test tasks.

Budget differences, stated in the result: fewer meta-iterations than the paper's 500, and by
default the Fisher-vector products of TRPO skip the inner step's second derivatives
(``--exact-fisher 1`` restores them, ~3.5× the CPU time per iteration); the meta-gradient is second order either way.
The paper evaluates the iterate with the best average training return; we evaluate the last.
Training runs through ``train.meta_train`` (checkpointed in ``out_dir``, resumable).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..evaluate import summarize
from ..functional import frozen_params
from ..reproduce import Argument, Budget, Result, Row, RunOptions, register
from ..rl import maml_rl
from ..rl.envs import BatchedNavigation2D, sample_goals
from ..train import Plan, TrainConfig, meta_train
from ..utils import Clock, code_fingerprint

PAPER = {  # MAML Table 4 (App. C.2): 2D point-mass navigation, average return after k grad steps
    "MAML": {0: -40.41, 1: -11.68, 2: -3.33, 3: -3.23},
    "context vector": {0: -42.42, 1: -13.90, 2: -5.17, 3: -3.18},
}
EVAL_STEPS = 3
EVAL_STEP_SIZES = (0.1, 0.05, 0.05)
"""α of test steps 1, 2, 3 (App. A.2: 0.1 for the first step, 0.05 after)."""


@dataclass(frozen=True)
class MamlRLBudget(Budget):
    """The plan of a MAML-RL run (2D navigation; the cheetah runs add their preset's name)."""

    meta_steps: int
    meta_batch_size: int
    episodes_per_task: int
    test_tasks: int
    eval_episodes: int
    horizon: int = 100
    hidden: tuple[int, ...] = (100, 100)
    inner_lr: float = 0.1
    max_kl: float = 0.01
    exact_fisher: bool = False
    """True: TRPO's Fisher products through the inner step (slower)."""
    eval_step_sizes: tuple[float, ...] = tuple(EVAL_STEP_SIZES)
    torch_threads: int = 1
    budget: str | None = None
    """The cheetah's preset: ``cpu``, ``paper`` or ``fast``."""

    @property
    def env_steps(self) -> int:
        """Environment steps of meta-training: θ's and φ's trajectories in every task of every step."""
        return self.meta_steps * self.meta_batch_size * self.episodes_per_task * self.horizon * 2

    def to_dict(self) -> dict:
        return {**super().to_dict(), "env_steps": self.env_steps}


def budget(options: RunOptions) -> MamlRLBudget:
    """The run's budget: reduced from the paper's 500 meta-iterations (FAST: a smoke test)."""
    fast = options.fast
    return MamlRLBudget(meta_steps=options.meta_steps or (3 if fast else 300), meta_batch_size=4 if fast else 20,
                        episodes_per_task=4 if fast else 20, exact_fisher=bool(options.extra.get("exact_fisher", 0)),
                        test_tasks=8 if fast else 600, eval_episodes=8 if fast else 40)


def make_cfg(plan: MamlRLBudget) -> maml_rl.Config:
    return maml_rl.Config(inner_lr=plan.inner_lr, episodes_per_task=plan.episodes_per_task,
                          max_kl=plan.max_kl, exact_fisher=plan.exact_fisher)


def sample_batch(n_tasks: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A meta-batch: goals, and the seed of its action noise (both from the run's own stream)."""
    return sample_goals(rng, n_tasks), int(rng.integers(2**62))


def meta_iteration(policy: maml_rl.GaussianPolicy, cfg: maml_rl.Config, env, seed: int) -> dict[str, float]:
    """Sample K trajectories of θ in every task of ``env``, then one MAML-RL meta-step (its
    rollouts of φ in the same tasks); ``seed`` seeds the action and start noise."""
    generator = torch.Generator().manual_seed(seed)
    theta = frozen_params(policy)
    pre = maml_rl.rollout(policy, theta, env, cfg.episodes_per_task, generator)
    return maml_rl.meta_step(
        policy, pre, lambda adapted: maml_rl.rollout(policy, adapted, env, cfg.episodes_per_task, generator),
        cfg)


def training_step(policy: maml_rl.GaussianPolicy, cfg: maml_rl.Config, batch) -> dict[str, float]:
    """One meta-iteration on a meta-batch of goals (``sample_batch``)."""
    goals, seed = batch
    return meta_iteration(policy, cfg, BatchedNavigation2D(goals), seed)


def training_curve(history) -> dict[str, list[float]]:
    """The training returns before/after adaptation, KL and backtracks of every meta-iteration."""
    return {key: [round(v, 3) for v in history.metrics.get(key, [])]
            for key in ("return_before", "return_after", "kl", "backtracks")}


def training_record(curve: dict[str, list[float]], clock: Clock) -> dict:
    """What meta-training measured: its wall and CPU seconds, and the mean training returns over
    the last 10% of meta-iterations (``Result.measured``)."""
    last = max(1, len(curve["return_after"]) // 10)
    wall, cpu = clock.totals()
    return {"train_wall_seconds": round(wall, 1), "train_cpu_seconds": round(cpu, 1),
            "training_returns_last_10pct": {key: round(float(np.mean(curve[key][-last:])), 3)
                                            for key in ("return_before", "return_after")}}


def plot_training(axis, curve: dict) -> None:
    """Returns before (θ) and after one step (φ) at every meta-iteration."""
    axis.plot(curve["return_before"], label="before adaptation (θ)")
    axis.plot(curve["return_after"], label="after one step (φ)")
    axis.set(xlabel="meta-iteration", ylabel="average return", title="meta-training")
    axis.legend()


def plot_steps(axis, curves: dict, paper: dict | None) -> None:
    """Average return (± 95% CI) after 0..3 test steps of every method, and the paper's MAML."""
    steps = np.arange(EVAL_STEPS + 1)
    for method, values in curves.items():
        stats = [summarize(values[k]) for k in steps]
        axis.errorbar(steps, [s.mean for s in stats], [s.ci95 for s in stats], marker="o",
                      capsize=3, label=f"{method} (ours)")
    if paper:
        axis.plot(steps, [paper[k] for k in steps], "k--", marker="s", label="MAML (paper)")
    axis.set(xlabel="gradient steps at test time", ylabel="average return", xticks=steps,
             title="new tasks")
    axis.legend()


def train_config(options: RunOptions, plan: MamlRLBudget, stem: str, description: str,
                 checkpoint_every: int, modules: tuple = ()) -> TrainConfig:
    """``meta_train``'s settings for a MAML-RL run; the checkpoint's name holds the seed, the
    budget and the digest of the run's plan
    (``<stem>-seed<S>-<meta-steps>x<tasks>x<trajectories>-H<horizon>-<fisher>-<digest>.pt``), whose
    code fingerprint covers this module, the algorithm and ``modules`` (the caller's, its environment)."""
    fisher = "exact" if plan.exact_fisher else "adapted"
    name = (f"{stem}-seed{options.seed}-{plan.meta_steps}x{plan.meta_batch_size}"
            f"x{plan.episodes_per_task}-H{plan.horizon}-{fisher}")
    from ..rl import maml_rl as algorithm
    from ..rl import trpo

    typed = Plan(stem, stem, options.seed, plan, fast=options.fast, device="cpu",
                 code=code_fingerprint(sys.modules[__name__], algorithm, trpo, *modules))
    return TrainConfig(meta_steps=plan.meta_steps, meta_batch_size=plan.meta_batch_size,
                       seed=options.seed, checkpoint_every=checkpoint_every, progress=options.progress,
                       checkpoint_path=str(typed.checkpoint(options.out_dir, name)),
                       description=description, plan=typed)


def train(options: RunOptions, plan: MamlRLBudget):
    """Meta-train (checkpointed every 10 iterations, resumed if a checkpoint exists)."""
    torch.manual_seed(options.seed)
    policy = maml_rl.GaussianPolicy(2, 2, tuple(plan.hidden))
    cfg = make_cfg(plan)
    from ..rl.envs import navigation

    train_cfg = train_config(options, plan, "maml-rl-navigation", "MAML-RL 2D navigation",
                             checkpoint_every=10, modules=(navigation,))
    clock = Clock()
    history = meta_train(lambda batch: training_step(policy, cfg, batch), sample_batch, train_cfg,
                         {"policy": policy})
    return policy, cfg, history, clock


def evaluate(policy, cfg: maml_rl.Config, plan: MamlRLBudget, seed: int, chunk: int = 100) -> dict[int, np.ndarray]:
    """Per-task average return after 0..3 steps on the fixed test goals (in chunks of tasks)."""
    goals = sample_goals(np.random.default_rng([seed, 2017]), plan.test_tasks)
    generator = torch.Generator().manual_seed(seed + 1)
    parts = [maml_rl.evaluate(policy, BatchedNavigation2D(goals[i:i + chunk]), cfg, EVAL_STEPS,
                              plan.eval_episodes, plan.eval_step_sizes, generator)
             for i in range(0, len(goals), chunk)]
    return {k: np.concatenate([part[k] for part in parts]) for k in range(EVAL_STEPS + 1)}


@register("maml-rl-navigation", "MAML Table 4: 2D navigation return after 0-3 policy-gradient steps",
          arguments=(Argument("--exact-fisher", int, 0, (0, 1),
                              "1: TRPO's Fisher products through the inner step (slower)"),), threads=1)
def run(options: RunOptions) -> Result:
    clock = Clock()
    plan = budget(options)
    policy, cfg, history, training_clock = train(options, plan)
    curve = training_curve(history)
    measured = training_record(curve, training_clock)
    curves = {"MAML": evaluate(policy, cfg, plan, options.seed)}
    torch.manual_seed(options.seed + 12345)
    curves["random init"] = evaluate(maml_rl.GaussianPolicy(2, 2, tuple(plan.hidden)), cfg, plan,
                                     options.seed)
    rows = [Row(method, f"return_{k}step", PAPER.get(method, {}).get(k), summarize(curve[k]))
            for method, curve in curves.items() for k in range(EVAL_STEPS + 1)]
    context = ", ".join(f"{v:g}" for v in PAPER["context vector"].values())
    notes = [f"MAML-RL: {plan.meta_steps} meta-iterations (paper: up to 500) of "
             f"{plan.meta_batch_size} tasks x {plan.episodes_per_task} trajectories, "
             f"{plan.env_steps:,} env steps; trained in {measured['train_wall_seconds']:.0f} s wall, "
             f"{measured['train_cpu_seconds']:.0f} s CPU (1 torch thread; a resumed run counts only its own time; "
             f"this run {history.origin(plan.meta_steps)})",
             "TRPO Fisher products: " + ("exact (through the inner step)" if plan.exact_fisher else
                                         "of the adapted policy only (dφ/dθ ≈ I); meta-gradient second "
                                         "order, exact KL ≤ δ in the line search"),
             "evaluated: the last iterate (the paper: the iterate with the best training return)",
             "random init: an untrained policy adapted the same way (the paper plots it, no table)",
             f"paper, context vector (Table 4, 0/1/2/3 steps): {context}"]
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    result = Result("maml-rl-navigation", options.seed, "cpu", 0.0, plan, rows, notes, measured=measured)
    result.artifacts["learning_curve"] = save_curve(curve, options)
    result.artifacts["plot"] = save_plot(policy, curves, curve, options)
    result.artifacts["policy"] = save_policy(policy, plan, options)
    result.wall_seconds, result.measured["cpu_seconds"] = clock.wall(), round(clock.cpu(), 1)
    return result


def save_curve(curve: dict, options: RunOptions) -> str:
    """The training returns before/after adaptation at every meta-iteration, as JSON."""
    path = Path(options.out_dir) / f"maml-rl-navigation-seed{options.seed}.curve.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(curve) + "\n")
    return str(path)


def save_policy(policy, plan: MamlRLBudget, options: RunOptions) -> str:
    path = Path(options.out_dir) / f"maml-rl-navigation-seed{options.seed}.policy.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": policy.state_dict(), "hidden": plan.hidden, "budget": plan}, path)
    return str(path)


def example_trajectories(policy, cfg: maml_rl.Config, goals: np.ndarray, seed: int, steps: int = 1,
                         n_episodes: int = 20):
    """Trajectories of θ and of φ after ``steps`` inner steps for a few goals (for plots)."""
    env, generator = BatchedNavigation2D(goals), torch.Generator().manual_seed(seed)
    theta = frozen_params(policy)
    params = {n: p.unsqueeze(0).repeat(len(goals), *[1] * p.dim()).requires_grad_() for n, p in theta.items()}
    found = [maml_rl.rollout(policy, params, env, n_episodes, generator)]
    for step in range(steps):
        step_cfg = maml_rl.Config(inner_lr=EVAL_STEP_SIZES[step], first_order=True)
        params = {n: p.detach().requires_grad_() for n, p in
                  maml_rl.adapt(policy, params, found[-1], step_cfg).items()}
        found.append(maml_rl.rollout(policy, params, env, n_episodes, generator))
    return found


def save_plot(policy, curves: dict, curve: dict, options: RunOptions) -> str:
    """Learning curve, returns after 0-3 steps against the paper, paths before/after one step."""
    from matplotlib import pyplot as plt

    plan = budget(options)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    plot_training(axes[0], curve)
    plot_steps(axes[1], curves, PAPER["MAML"])
    goals = sample_goals(np.random.default_rng([options.seed, 7]), 3)
    before, after = example_trajectories(policy, make_cfg(plan), goals, options.seed, 1, 1)
    for i, goal in enumerate(goals):
        color = f"C{i}"
        axes[2].plot(*before.obs[i, 0].T.numpy(), ":", color=color)
        axes[2].plot(*after.obs[i, 0].T.numpy(), "-", color=color)
        axes[2].plot(*goal, "*", color=color, markersize=14)
    axes[2].set(xlim=(-0.6, 0.6), ylim=(-0.6, 0.6), aspect="equal",
                title="dotted: θ (0 steps), solid: φ (1 step); ★ goal")
    path = Path(options.out_dir) / f"maml-rl-navigation-seed{options.seed}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return str(path)


# --- Showing stored results ---

STORED = "maml-rl-navigation"
"""The stored reproduction of Table 4 (``results/maml-rl-navigation.json`` and its curve and policy)."""


def stored_result():
    """The stored Table 4 run (seed 0): shown as a cell's last expression, a Markdown table with the
    paper beside ours, its seed, device, time and plan."""
    from .. import results

    return results.load(STORED)


def stored_notes() -> str:
    """The notes of the stored run: its budget, the Fisher variant, the iterate evaluated, the
    paper's context-vector row."""
    return "\n".join(stored_result().notes)


def plot_stored_result():
    """The stored run's training returns (before/after one step) and its returns after 0..3 steps
    on new goals (± 95% CI) beside the paper's MAML."""
    from matplotlib import pyplot as plt

    result = stored_result()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    plot_training(left, result.extra("curve"))
    steps = np.arange(EVAL_STEPS + 1)
    for method in ("MAML", "random init"):
        stats = [result.row(method, f"return_{k}step").ours for k in steps]
        right.errorbar(steps, [s.mean for s in stats], [s.ci95 for s in stats], marker="o", capsize=3,
                       label=f"{method} (ours)")
    right.plot(steps, [PAPER["MAML"][k] for k in steps], "k--", marker="s", label="MAML (paper)")
    right.set(xlabel="gradient steps at test time", ylabel="average return", xticks=steps,
              title=f"{result.row('MAML', 'return_0step').ours.n} new goals")
    right.legend()
    figure.tight_layout()
    return figure


def stored_policy() -> maml_rl.GaussianPolicy:
    """The stored run's trained policy θ (``results/maml-rl-navigation.policy.pt``)."""
    from ..results import result_path

    saved = torch.load(result_path(f"{STORED}.policy.pt"), map_location="cpu", weights_only=False)
    policy = maml_rl.GaussianPolicy(2, 2, tuple(saved["hidden"]))
    policy.load_state_dict(saved["state_dict"])
    return policy
