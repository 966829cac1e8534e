"""MAML's Table 5: half-cheetah forward/backward (and goal velocity), return after 0-3 policy-gradient steps.

Setup (Finn et al. 2017, §5.3 and App. A.2; the envs and their rewards in
``metacourse.rl.envs.cheetah``): Gymnasium's HalfCheetah-v5 (MuJoCo) with H = 200; Gaussian MLP
policy 17-100-100-6 (ReLU), one inner REINFORCE step with α = 0.1 and a linear feature baseline
fitted per task, TRPO outer step (δ = 0.01) on the post-adaptation trajectories. The algorithm is
``rl.maml_rl`` unchanged, and training, evaluation and configuration reuse the 2D-navigation
experiment (``experiments.maml_rl``); only the task family differs.

Budgets (``--budget``):

- ``paper``: 500 meta-iterations (App. A.2: "up to 500"; the official script ran 1,000) of
  40 tasks × 20 trajectories, 600 test tasks × 20 trajectories per step (≈ 0.64 M env steps per
  meta-iteration: hours on a CPU).
- ``cpu`` (default): 100 meta-iterations of 20 tasks × 10 trajectories, 40 test tasks (half
  forward, half backward for ``dir``) × 20 trajectories per step: ≈ 15 min on one CPU thread,
  far short of the paper (see the README); ``--meta-steps`` changes the length.
- FAST (``--fast``): a smoke test of a few seconds (horizon 20), never a reproduction.

Test tasks of ``dir`` alternate forward and backward (p(T) has only these two tasks), so the mean
over tasks is the mean of the two directions; rows per direction show what one step changes.
The paper evaluates the iterate with the best average training return; we evaluate the last.
Training runs through ``train.meta_train`` (checkpointed in ``out_dir``, resumable).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..evaluate import summarize
from ..reproduce import Argument, Result, Row, RunOptions, register
from ..rl import maml_rl
from ..rl.envs.cheetah import HORIZON, TASK_FAMILIES, BatchedCheetah
from ..train import meta_train
from ..utils import Clock
from .maml_rl import (
    EVAL_STEPS,
    MamlRLBudget,
    make_cfg,
    meta_iteration,
    plot_steps,
    plot_training,
    train_config,
    training_curve,
    training_record,
)

PAPER = {  # MAML Table 5 (App. C.2): half-cheetah forward/backward, average return after k grad steps
    "dir": {"MAML": {0: -50.69, 1: 293.19, 2: 313.48, 3: 315.65},
            "context vector": {0: -40.49, 1: -44.08, 2: -38.27, 3: -42.50}},
    "vel": {},  # Fig. 5 only: no numbers were published (docs: anchors.md §4)
}
BUDGETS = {  # meta_steps, meta_batch_size, episodes_per_task, test_tasks, eval_episodes
    "paper": (500, 40, 20, 600, 20),
    "cpu": (100, 20, 10, 40, 20),
}
TITLES = {"dir": "forward/backward", "vel": "goal velocity"}


def budget(options: RunOptions) -> MamlRLBudget:
    """The run's budget: the paper's (``--budget paper``), a CPU one (default) or FAST's smoke test."""
    preset = options.extra.get("budget", "cpu")
    meta_steps, meta_batch_size, episodes, test_tasks, eval_episodes = \
        (2, 2, 2, 4, 2) if options.fast else BUDGETS[preset]
    return MamlRLBudget(budget="fast" if options.fast else preset, meta_steps=options.meta_steps or meta_steps,
                        meta_batch_size=meta_batch_size, episodes_per_task=episodes,
                        horizon=20 if options.fast else HORIZON,
                        exact_fisher=bool(options.extra.get("exact_fisher", 0)),
                        test_tasks=test_tasks, eval_episodes=eval_episodes)


def sample_batch(family: str, n_tasks: int, rng: np.random.Generator) -> tuple[list[dict], int]:
    """A meta-batch: tasks of ``family``, and the seed of its action and start noise."""
    env_class = TASK_FAMILIES[family]
    tasks = [{env_class.task_key: float(v)} for v in env_class.sample_values(rng, n_tasks)]
    return tasks, int(rng.integers(2**62))


def held_out_tasks(family: str, n_tasks: int, seed: int) -> list[dict]:
    """The fixed test tasks: ``dir`` alternates forward and backward, ``vel`` draws v* ~ U[0, 2]."""
    if family == "dir":
        return [{"direction": 1.0 if i % 2 == 0 else -1.0} for i in range(n_tasks)]
    return sample_batch(family, n_tasks, np.random.default_rng([seed, 2017]))[0]


def training_step(policy: maml_rl.GaussianPolicy, cfg: maml_rl.Config, env: BatchedCheetah, batch
                  ) -> dict[str, float]:
    """One meta-iteration on a meta-batch of tasks (``sample_batch``), in the envs of ``env``."""
    tasks, seed = batch
    env.set_tasks(tasks)
    return meta_iteration(policy, cfg, env, seed)


def make_policy(plan: MamlRLBudget) -> maml_rl.GaussianPolicy:
    return maml_rl.GaussianPolicy(BatchedCheetah.obs_dim, BatchedCheetah.act_dim, tuple(plan.hidden))


def train(family: str, options: RunOptions, plan: MamlRLBudget):
    """Meta-train (checkpointed every 5 iterations, resumed if a checkpoint exists)."""
    torch.manual_seed(options.seed)
    policy, cfg = make_policy(plan), make_cfg(plan)
    placeholders = held_out_tasks(family, plan.meta_batch_size, options.seed)  # each step sets its own
    env = BatchedCheetah(family, placeholders, plan.horizon)
    from ..rl.envs import cheetah

    train_cfg = train_config(options, plan, f"maml-rl-cheetah-{family}", f"MAML-RL cheetah {TITLES[family]}",
                             checkpoint_every=5, modules=(sys.modules[__name__], cheetah))
    clock = Clock()
    history = meta_train(lambda batch: training_step(policy, cfg, env, batch),
                         lambda n, rng: sample_batch(family, n, rng), train_cfg, {"policy": policy})
    env.close()
    return policy, cfg, history, clock


def evaluate(family: str, policy, cfg: maml_rl.Config, plan: MamlRLBudget, seed: int, chunk: int = 20
             ) -> dict[int, np.ndarray]:
    """Per-task average return after 0..3 steps on the fixed test tasks (in chunks of tasks)."""
    tasks = held_out_tasks(family, plan.test_tasks, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    env = BatchedCheetah(family, tasks[:chunk], plan.horizon)
    parts = []
    for i in range(0, len(tasks), chunk):
        env.set_tasks(tasks[i:i + chunk])
        parts.append(maml_rl.evaluate(policy, env, cfg, EVAL_STEPS, plan.eval_episodes,
                                      plan.eval_step_sizes, generator))
    env.close()
    return {k: np.concatenate([part[k] for part in parts]) for k in range(EVAL_STEPS + 1)}


def result_rows(family: str, curves: dict, plan: MamlRLBudget) -> list[Row]:
    """Paper beside ours for every method and step; for ``dir`` also MAML per direction (0 and 1 step)."""
    paper = PAPER[family]
    rows = [Row(method, f"return_{k}step", paper.get(method, {}).get(k), summarize(curve[k]))
            for method, curve in curves.items() for k in range(EVAL_STEPS + 1)]
    if family == "dir":
        forward = np.array([task["direction"] > 0 for task in held_out_tasks(family, plan.test_tasks, 0)])
        for label, chosen in (("forward", forward), ("backward", ~forward)):
            rows += [Row(f"MAML, {label} tasks", f"return_{k}step", None, summarize(curves["MAML"][k][chosen]))
                     for k in (0, 1)]
    return rows


def run_family(family: str, options: RunOptions) -> Result:
    clock = Clock()
    name = f"maml-rl-cheetah-{family}"
    plan = budget(options)
    policy, cfg, history, training_clock = train(family, options, plan)
    curve = training_curve(history)
    measured = training_record(curve, training_clock)
    curves = {"MAML": evaluate(family, policy, cfg, plan, options.seed)}
    torch.manual_seed(options.seed + 12345)
    curves["random init"] = evaluate(family, make_policy(plan), cfg, plan, options.seed)
    notes = [f"MAML-RL on HalfCheetah {TITLES[family]}: {plan.meta_steps} meta-iterations (paper: up "
             f"to 500) of {plan.meta_batch_size} tasks x {plan.episodes_per_task} trajectories of "
             f"{plan.horizon} steps (paper: 40 x 20 x 200), {plan.env_steps:,} env steps; trained in "
             f"{measured['train_wall_seconds']:.0f} s wall, {measured['train_cpu_seconds']:.0f} s CPU (1 torch "
             f"thread; a resumed run counts only its own time; this run {history.origin(plan.meta_steps)})",
             "TRPO Fisher products: " + ("exact (through the inner step)" if plan.exact_fisher else
                                         "of the adapted policy only (dφ/dθ ≈ I); meta-gradient second order"),
             "Gymnasium HalfCheetah-v5 (17-D observation, Δt = 0.05 s), not rllab's cheetah of the paper",
             "evaluated: the last iterate (the paper: the iterate with the best training return)",
             "random init: an untrained policy adapted the same way (the paper plots it, no table)"]
    if family == "dir":
        notes.append("paper, context vector (Table 5, 0/1/2/3 steps): "
                     + ", ".join(f"{v:g}" for v in PAPER["dir"]["context vector"].values()))
    else:
        notes.append("paper: Fig. 5 only, no table; rough readings of the plot (not anchors): MAML ≈ -130 "
                     "at 0 steps, ≈ -70 to -80 after 1 step")
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    result = Result(name, options.seed, "cpu", 0.0, plan, result_rows(family, curves, plan), notes,
                    measured=measured)
    result.artifacts.update(save_artifacts(family, policy, curves, curve, plan, options))
    result.wall_seconds, result.measured["cpu_seconds"] = clock.wall(), round(clock.cpu(), 1)
    return result


def save_artifacts(family: str, policy, curves: dict, curve: dict, plan: MamlRLBudget, options: RunOptions) -> dict:
    """The learning curve (JSON), the policy and a plot: training returns, and ours vs the paper."""
    from matplotlib import pyplot as plt

    stem = Path(options.out_dir) / f"maml-rl-cheetah-{family}-seed{options.seed}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{stem}.curve.json").write_text(json.dumps(curve) + "\n")
    torch.save({"state_dict": policy.state_dict(), "hidden": plan.hidden, "budget": plan}, f"{stem}.policy.pt")
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    plot_training(axes[0], curve)
    plot_steps(axes[1], curves, PAPER[family].get("MAML"))
    figure.savefig(f"{stem}.png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return {"learning_curve": f"{stem}.curve.json", "policy": f"{stem}.policy.pt", "plot": f"{stem}.png"}


ARGUMENTS = (Argument("--budget", str, "cpu", tuple(BUDGETS), "cpu: 100 meta-iterations of 20 tasks x 10 "
                      "trajectories (~15 min); paper: 500 of 40 x 20 (hours)"),
             Argument("--exact-fisher", int, 0, (0, 1), "1: TRPO's Fisher products through the inner step (slower)"))


@register("maml-rl-cheetah-dir", "MAML Table 5: HalfCheetah forward/backward return after 0-3 steps "
          "(needs MuJoCo)", arguments=ARGUMENTS, threads=1)
def run_dir(options: RunOptions) -> Result:
    return run_family("dir", options)


@register("maml-rl-cheetah-vel", "MAML Fig. 5: HalfCheetah goal velocity return after 0-3 steps "
          "(needs MuJoCo; no paper table)", arguments=ARGUMENTS, threads=1)
def run_vel(options: RunOptions) -> Result:
    return run_family("vel", options)


# --- Showing stored results ---


def stored_result(family: str, meta_steps: int | None = None):
    """The stored run of ``family`` ("dir" or "vel"; ``meta_steps=300``: the longer "dir" run):
    shown as a cell's last expression, a Markdown table with the paper beside ours, its seed,
    device, time and plan."""
    from .. import results

    if family not in TITLES:
        raise ValueError(f"family {family!r}: choose one of {', '.join(TITLES)}")
    keys = {} if meta_steps is None else {"meta_steps": meta_steps}
    return results.load(f"maml-rl-cheetah-{family}", **keys)


def stored_table(family: str, meta_steps: int | None = None):
    """The stored run's table (see :func:`stored_result`) with a line on its budget and training time."""
    from IPython.display import Markdown

    result = stored_result(family, meta_steps)
    budget = result.plan
    line = (f"**HalfCheetah, {TITLES[family]}**: {budget['meta_steps']} meta-iterations of {budget['meta_batch_size']} "
            f"tasks × {budget['episodes_per_task']} trajectories (the paper: up to 500 of 40 × 20); training "
            f"{result.measured['train_cpu_seconds'] / 60:.0f} min of CPU, "
            f"{result.measured['train_wall_seconds'] / 60:.0f} min wall.\n\n")
    return Markdown(line + result.markdown(digits=1))


def plot_stored_curves():
    """The stored figure of the 300-iteration forward/backward run: training returns before and
    after one step, and the returns after 0..3 steps on new tasks beside the paper."""
    from IPython.display import Image

    return Image(filename=str(stored_result("dir", meta_steps=300).figure()), width=900)
