"""MB-MPO's sample efficiency on the Pendulum family: return vs real environment steps.

``mbmpo-pendulum`` trains, from the same seed and on the same task family (Pendulum with mass and
length drawn from U[0.5, 1.5], ``metacourse.rl.envs.pendulum``; every real episode is a fresh
pendulum the agent is not told about; ``--pendulums narrow`` draws from U[0.8, 1.2] instead,
``--pendulums standard`` keeps mass = length = 1):

- **MB-MPO** (``metacourse.rl.mbmpo``): K = 5 dynamics models, the meta-policy trained with
  MAML-RL on imagined episodes (α = 0.001, TRPO δ = 0.01, outer derivatives to first order: with α
  this small the second-order terms are O(α), and dropping them halves a meta-step's cost), real
  episodes collected with the K adapted policies;
- **PPO** (``metacourse.rl.ppo``), the model-free baseline: the same Gaussian policy, a value MLP,
  GAE, trained on real episodes only;
- **MAML-RL** (``metacourse.rl.maml_rl``), model-free meta-RL: every task a real pendulum, one
  inner step on real episodes; its real steps include the adaptation episodes.

Every method is evaluated at checkpoints on the same held-out pendulums (sampled actions, the
returns of MB-MPO's adapted policies averaged over the K models; evaluation episodes are not counted
as training steps for any method). The target is PPO's final return (the mean of its last three
evaluations); the table gives the real steps each method needed to first reach it, and their ratio.
Each method checkpoints after every evaluation: an interrupted run resumes, and a run with a
larger length (``mbmpo_iterations``, ``ppo_steps``, ``maml_rl_meta_steps``) continues a finished one.
The paper reports learning curves only (docs/anchors.md §5: "two orders of magnitude less samples"
than model-free methods on MuJoCo), so the rows have no paper column.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..evaluate import Summary, summarize
from ..functional import frozen_params, params_of
from ..models import MLP
from ..reproduce import Argument, Budget, Result, Row, RunOptions, register
from ..rl import maml_rl, mbmpo, ppo
from ..rl.envs.pendulum import LENGTH_RANGE, MASS_RANGE, MAX_TORQUE, BatchedPendulum, pendulum_reward, sample_pendulums
from ..rl.returns import gae
from ..rl.task_env import Rollout
from ..train import CheckpointError, save_atomically
from ..utils import Clock

METHODS = ("MB-MPO", "PPO", "MAML-RL")


@dataclass(frozen=True)
class PendulumBudget(Budget):
    """The plan of an MB-MPO run and its two model-free baselines on the pendulums."""

    mbmpo_iterations: int = 20
    meta_steps_per_iteration: int = 30
    imagined_episodes: int = 20
    max_model_epochs: int = 50
    pendulums: str = "family"
    """``family`` (sampled mass and length), ``narrow`` or ``standard`` (mass = length = 1)."""
    n_models: int = 5
    model_hidden: tuple[int, ...] = (128, 128)
    model_history: int = 0
    """Previous transitions each dynamics model sees (0: the paper's models)."""
    policy_hidden: tuple[int, ...] = (64, 64)
    real_episodes_per_model: int = 1
    inner_lr: float = 0.001
    max_kl: float = 0.01
    gamma: float = 0.99
    gae_lambda: float = 0.97
    ppo_steps: int = 300_000
    ppo_envs: int = 20
    ppo_epochs: int = 10
    ppo_minibatch: int = 64
    ppo_lr: float = 1e-3
    ppo_gamma: float = 0.95
    ppo_eval_every: int = 1
    maml_rl_meta_steps: int = 20
    maml_rl_tasks: int = 10
    maml_rl_episodes: int = 10
    maml_rl_inner_lr: float = 0.1
    test_tasks: int = 20
    test_episodes: int = 2


def budget(options: RunOptions) -> PendulumBudget:
    """The run's budget (FAST: a smoke test). ``--meta-steps`` overrides MB-MPO's iterations."""
    plan = PendulumBudget(pendulums=options.extra.get("pendulums", "family"),
                          model_history=options.extra.get("model_history", 0))
    if options.fast:
        plan = plan.replace(mbmpo_iterations=2, meta_steps_per_iteration=2, imagined_episodes=4, max_model_epochs=5,
                            ppo_steps=4_000, maml_rl_meta_steps=1, maml_rl_tasks=2, maml_rl_episodes=2,
                            test_tasks=4, test_episodes=1)
    return plan.replace(mbmpo_iterations=options.meta_steps) if options.meta_steps else plan


# ---- the pendulums: the family, a narrower one, or the standard pendulum every time ----

RANGES = {"family": (MASS_RANGE, LENGTH_RANGE), "narrow": ((0.8, 1.2), (0.8, 1.2)),
          "standard": (MASS_RANGE, LENGTH_RANGE)}
"""(mass range, length range) of each ``--pendulums`` setting; "standard" draws from the family
only to advance the rng alike, then sets mass = length = 1."""


def draw_pendulums(plan: PendulumBudget, rng: np.random.Generator, n: int, repeat: int = 1) -> BatchedPendulum:
    """``n`` pendulums, each repeated ``repeat`` times: fresh draws from the family (mass, length
    ~ U[0.5, 1.5]; the agent is not told which) or the narrow family (U[0.8, 1.2]), or, with
    ``plan.pendulums == "standard"``, the standard pendulum (mass = length = 1, Gymnasium's
    Pendulum-v1) every time: the single-environment setting of the MB-MPO paper's benchmarks.
    The rng advances alike in all three."""
    masses, lengths = sample_pendulums(rng, n, *RANGES[plan.pendulums])
    if plan.pendulums == "standard":
        masses, lengths = np.ones(n), np.ones(n)
    return BatchedPendulum(np.tile(masses, repeat), np.tile(lengths, repeat))


def test_pendulums(plan: PendulumBudget, seed: int, repeat: int = 1) -> BatchedPendulum:
    """The held-out pendulums (a stream separate from training's), each repeated ``repeat`` times."""
    return draw_pendulums(plan, np.random.default_rng([seed, 2018]), plan.test_tasks, repeat)


def real_returns(policy, params: dict, plan: PendulumBudget, seed: int, n_policies: int = 1) -> np.ndarray:
    """Mean return on each held-out pendulum, shape (test_tasks,). ``params`` is one policy or
    ``n_policies`` batched ones (MB-MPO's adapted policies), each run on every pendulum."""
    env = test_pendulums(plan, seed, n_policies)
    if n_policies > 1:
        params = {n: p.repeat_interleave(plan.test_tasks, 0) for n, p in params.items()}
    generator = torch.Generator().manual_seed(seed + 99)
    returns = maml_rl.rollout(policy, params, env, plan.test_episodes, generator).episode_returns
    return returns.mean(-1).reshape(n_policies, plan.test_tasks).mean(0).numpy()


# ---- checkpoints: every method resumes where it stopped ----

LENGTHS = ("mbmpo_iterations", "ppo_steps", "maml_rl_meta_steps")
"""Budget entries that only say how long to train: a larger value continues a finished run."""


def _checkpoint(options: RunOptions, method: str, plan: PendulumBudget) -> Path:
    """One file per method, seed and setting (every budget entry but the lengths)."""
    ignored = LENGTHS if method == "mbmpo" else (*LENGTHS, "model_history")  # only MB-MPO has models
    setting = json.dumps({k: v for k, v in plan.items() if k not in ignored}, sort_keys=True)
    tag = hashlib.sha1(setting.encode()).hexdigest()[:8]
    return Path(options.out_dir) / "checkpoints" / f"mbmpo-pendulum-{method}-seed{options.seed}-{tag}.pt"


def _load(path: Path) -> dict | None:
    """A method's checkpoint (None when there is none); a truncated or foreign file raises a
    CheckpointError that says what to do with it."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, weights_only=False)
    except Exception as error:  # a truncated or foreign file: say what to do
        raise CheckpointError(f"cannot read checkpoint {path} ({type(error).__name__}: {error}); it is truncated "
                              "or not a checkpoint: delete it to start afresh") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a checkpoint of mbmpo-pendulum; delete or move it to start afresh")
    return payload


class Resumable:
    """What one method's training carries across interrupted runs: its ``parts`` (anything with
    ``state_dict``/``load_state_dict``: networks, optimizer, real data), the two random streams,
    the evaluation curve, the real-step count, the last evaluation and the time spent. Made from
    the checkpoint at ``path`` when there is one; ``record`` appends an evaluation and saves."""

    def __init__(self, path: Path, parts: dict, generator: torch.Generator, rng: np.random.Generator) -> None:
        self.path, self.parts, self.generator, self.rng = path, parts, generator, rng
        self.curve, self.steps, self.final, clock = [], 0, None, (0.0, 0.0)
        state = _load(path)
        self.resumed = state is not None
        if state is not None:
            for name, part in parts.items():
                part.load_state_dict(state[name])
            generator.set_state(state["generator"])
            rng.bit_generator.state = state["rng"]
            self.curve, self.steps, self.final = state["curve"], state.get("steps", 0), state["final"]
            clock = state["clock"]
        self.clock = Clock(*clock)

    def record(self, point: dict, final) -> None:
        """Append an evaluation ``point`` ({"real_steps", "return", ...}) and checkpoint."""
        self.curve.append(point)
        self.final = final
        save_atomically({**{name: part.state_dict() for name, part in self.parts.items()},
                         "generator": self.generator.get_state(), "rng": self.rng.bit_generator.state,
                         "curve": self.curve, "steps": self.steps, "clock": self.clock.totals(),
                         "final": final}, self.path)

    def outcome(self, real_steps: int) -> dict:
        """The method's curve, last evaluation, times (all sessions) and real steps."""
        wall, cpu = self.clock.totals()
        return {"curve": self.curve, "final": self.final, "wall": wall, "cpu": cpu,
                "real_steps": real_steps, "resumed": self.resumed}


# ---- MB-MPO ----

def mbmpo_config(plan: PendulumBudget) -> mbmpo.Config:
    return mbmpo.Config(
        n_models=plan.n_models, model_hidden=tuple(plan.model_hidden),
        model_history=plan.model_history,
        max_model_epochs=plan.max_model_epochs, imagined_episodes=plan.imagined_episodes,
        real_episodes=plan.real_episodes_per_model, meta_steps=plan.meta_steps_per_iteration,
        maml=maml_rl.Config(inner_lr=plan.inner_lr, max_kl=plan.max_kl, gamma=plan.gamma,
                            gae_lambda=plan.gae_lambda, first_order=True))


def train_mbmpo(options: RunOptions, plan: PendulumBudget, progress=None) -> dict:
    """Algorithm 1 for ``mbmpo_iterations`` iterations, evaluated after each; checkpointed."""
    cfg = mbmpo_config(plan)
    torch.manual_seed(options.seed)
    policy = maml_rl.GaussianPolicy(3, 1, plan.policy_hidden)
    ensemble = mbmpo.DynamicsEnsemble(3, 1, cfg.n_models, cfg.model_hidden, cfg.model_history)
    data, generator = mbmpo.RealData(cfg.model_history), torch.Generator().manual_seed(options.seed)
    run = Resumable(_checkpoint(options, "mbmpo", plan), {"policy": policy, "ensemble": ensemble, "data": data},
                    generator, np.random.default_rng([options.seed, 1]))
    if not data.n_steps:  # D starts with one episode of the initial policy per model
        theta = frozen_params(policy)
        first = maml_rl.rollout(policy, theta, draw_pendulums(plan, run.rng, cfg.n_models),
                                cfg.real_episodes, generator)
        data.add(first, MAX_TORQUE)
        run.curve.append({"real_steps": data.n_steps,
                          "return": float(real_returns(policy, theta, plan, options.seed).mean())})
    while len(run.curve) <= plan.mbmpo_iterations:
        real_env = draw_pendulums(plan, run.rng, cfg.n_models)
        metrics = mbmpo.iteration(policy, ensemble, data, real_env, pendulum_reward, cfg, generator,
                                  MAX_TORQUE)
        imagined = mbmpo.ImaginedEnv(ensemble, data, pendulum_reward, 200, MAX_TORQUE)
        adapted = mbmpo.adapt_to_models(policy, imagined, cfg, generator)
        returns = real_returns(policy, adapted, plan, options.seed, cfg.n_models)
        run.record({"real_steps": data.n_steps, "return": float(returns.mean()),
                    **{k: round(v, 4) for k, v in metrics.items() if k != "real_steps"}}, returns)
        if progress:
            progress(f"MB-MPO iteration {len(run.curve) - 1}: {data.n_steps} real steps, return {returns.mean():.1f}")
    return run.outcome(data.n_steps)


# ---- PPO (model-free baseline) ----

def ppo_batch(policy, value, trajectories: Rollout, plan: PendulumBudget) -> dict:
    """One PPO batch from real episodes (T, 1, H): old log-probs, GAE advantages, value targets."""
    obs, actions = trajectories.obs.flatten(0, 1), trajectories.actions.flatten(0, 1)
    with torch.no_grad():
        values = value(obs).squeeze(-1)
        old = maml_rl.distribution(policy, params_of(policy), obs).log_prob(actions).sum(-1)
    advantages, returns = gae(trajectories.rewards.flatten(0, 1), values, plan.ppo_gamma, 0.95)
    return {"obs": obs.flatten(0, 1), "actions": actions.flatten(0, 1),
            "old_log_probs": old.flatten(), "advantages": advantages.flatten(), "returns": returns.flatten()}


def train_ppo(options: RunOptions, plan: PendulumBudget, progress=None) -> dict:
    """PPO on real episodes (``ppo_envs`` fresh pendulums per update), evaluated every few updates."""
    torch.manual_seed(options.seed)
    policy, value = maml_rl.GaussianPolicy(3, 1, plan.policy_hidden), MLP(3, tuple(plan.policy_hidden), 1)
    optimizer = torch.optim.Adam([*policy.parameters(), *value.parameters()], lr=plan.ppo_lr)
    steps_per_update = plan.ppo_envs * 200
    cfg = ppo.Config(epochs=plan.ppo_epochs, minibatches=steps_per_update // plan.ppo_minibatch,
                     outer_lr=plan.ppo_lr, entropy_coef=0.0)
    generator = torch.Generator().manual_seed(options.seed)
    run = Resumable(_checkpoint(options, "ppo", plan), {"policy": policy, "value": value, "optimizer": optimizer},
                    generator, np.random.default_rng([options.seed, 2]))
    n_updates = math.ceil(plan.ppo_steps / steps_per_update)
    while run.steps < n_updates * steps_per_update:
        for _ in range(plan.ppo_eval_every):
            env = draw_pendulums(plan, run.rng, plan.ppo_envs)
            trajectories = maml_rl.rollout(policy, params_of(policy), env, 1, generator)
            run.steps += int(trajectories.mask.sum())
            batch = ppo_batch(policy, value, trajectories, plan)
            obs, actions = batch.pop("obs"), batch.pop("actions")
            ppo.update(partial(_ppo_evaluate, policy, value, obs, actions), optimizer, batch, cfg,
                       generator=generator)
            if run.steps >= n_updates * steps_per_update:
                break
        final = real_returns(policy, frozen_params(policy), plan, options.seed)
        run.record({"real_steps": run.steps, "return": float(final.mean())}, final)
        if progress:
            progress(f"PPO: {run.steps} real steps, return {final.mean():.1f}")
    return run.outcome(run.steps)


def _ppo_evaluate(policy, value, obs, actions, indices):
    """PPO's ``evaluate``: log π(a|s), entropy and V(s) of the current networks on a minibatch."""
    dist = maml_rl.distribution(policy, params_of(policy), obs[indices])
    return dist.log_prob(actions[indices]).sum(-1), dist.entropy().sum(-1), value(obs[indices]).squeeze(-1)


# ---- MAML-RL (model-free meta-RL) ----

def train_maml_rl(options: RunOptions, plan: PendulumBudget, progress=None) -> dict:
    """MAML-RL on real pendulums (each meta-step: ``maml_rl_tasks`` fresh pendulums, K episodes
    before and K after adaptation); evaluated after one inner step on the held-out pendulums."""
    cfg = maml_rl.Config(inner_lr=plan.maml_rl_inner_lr, episodes_per_task=plan.maml_rl_episodes,
                         gamma=plan.gamma, gae_lambda=plan.gae_lambda, max_kl=plan.max_kl)
    torch.manual_seed(options.seed)
    policy = maml_rl.GaussianPolicy(3, 1, plan.policy_hidden)
    generator = torch.Generator().manual_seed(options.seed)
    run = Resumable(_checkpoint(options, "maml-rl", plan), {"policy": policy}, generator,
                    np.random.default_rng([options.seed, 3]))
    while len(run.curve) < plan.maml_rl_meta_steps:
        env = draw_pendulums(plan, run.rng, plan.maml_rl_tasks)
        pre = maml_rl.rollout(policy, frozen_params(policy), env, cfg.episodes_per_task, generator)
        maml_rl.meta_step(policy, pre, partial(_post_rollout, policy, env, cfg.episodes_per_task, generator), cfg)
        run.steps += 2 * int(pre.mask.sum())  # the post-adaptation episodes are as many as the pre ones
        test = test_pendulums(plan, options.seed)
        final = maml_rl.evaluate(policy, test, replace(cfg, inner_lr=plan.maml_rl_inner_lr), steps=1,
                                 n_episodes=plan.test_episodes,
                                 generator=torch.Generator().manual_seed(options.seed + 99))[1]
        run.record({"real_steps": run.steps, "return": float(final.mean())}, final)
        if progress:
            progress(f"MAML-RL: {run.steps} real steps, return after one step {final.mean():.1f}")
    return run.outcome(run.steps)


def _post_rollout(policy, env, n_episodes, generator, adapted):
    return maml_rl.rollout(policy, adapted, env, n_episodes, generator)


# ---- the comparison ----

def steps_to_reach(curve: list[dict], target: float) -> int | None:
    """Real steps at the first evaluation whose return is at least ``target`` (None: never)."""
    return next((point["real_steps"] for point in curve if point["return"] >= target), None)


def _count(value: float | None) -> Summary:
    number = float("nan") if value is None else float(value)
    return Summary(number, float("nan"), number, 1)


@register("mbmpo-pendulum",
          "MB-MPO vs model-free PPO and MAML-RL on Pendulum (sampled mass, length): return vs real steps",
          arguments=(Argument("--methods", str, "all", ("all", "mbmpo+ppo"),
                              "which methods to train (MAML-RL is the slowest)"),
                     Argument("--pendulums", str, "family", tuple(RANGES),
                              "family: every episode a fresh pendulum (mass, length ~ U[0.5, 1.5]); "
                              "narrow: the same with mass, length ~ U[0.8, 1.2]; "
                              "standard: mass = length = 1 throughout (the paper's single-environment setting)"),
                     Argument("--model-history", int, 0, None,
                              "h, previous transitions each dynamics model sees (0: the paper's models; "
                              "2 lets them infer a family member's mass and length)", minimum=0)), threads=1)
def run(options: RunOptions) -> Result:
    clock = Clock()
    plan = budget(options)
    say = print if options.progress else None
    trainers = {"MB-MPO": train_mbmpo, "PPO": train_ppo, "MAML-RL": train_maml_rl}
    if options.extra.get("methods", "all") != "all":
        trainers.pop("MAML-RL")
    outcomes = {name: train(options, plan, say) for name, train in trainers.items()}
    target = _final_return(outcomes["PPO"]["curve"])
    reached = {name: steps_to_reach(o["curve"], target) for name, o in outcomes.items()}
    mbmpo_final = _final_return(outcomes["MB-MPO"]["curve"])
    ppo_to_mbmpo = steps_to_reach(outcomes["PPO"]["curve"], mbmpo_final)
    labels = {"MB-MPO": "MB-MPO (after adaptation)", "PPO": "PPO (model-free)",
              "MAML-RL": "MAML-RL (after 1 step)"}
    rows = [Row(labels[name], "final_return", None, summarize(o["final"])) for name, o in outcomes.items()]
    rows += [Row(labels[name], "real_steps_to_target", None, _count(reached[name])) for name in outcomes]
    rows += [Row(labels[name], "real_steps_total", None, _count(o["real_steps"])) for name, o in outcomes.items()]
    ratio = None if reached["MB-MPO"] is None or reached["PPO"] is None else reached["PPO"] / reached["MB-MPO"]
    rows.append(Row("PPO / MB-MPO", "step_ratio_to_target", None, _count(ratio)))
    rows.append(Row(labels["PPO"], "real_steps_to_mbmpo_final", None, _count(ppo_to_mbmpo)))
    measured = {"target_return": round(target, 2), "steps_to_target": reached,
                "step_ratio": None if ratio is None else round(ratio, 2),
                "mbmpo_final_return": round(mbmpo_final, 2), "ppo_steps_to_mbmpo_final": ppo_to_mbmpo,
                "curves": {name: o["curve"] for name, o in outcomes.items()},
                "method_wall_seconds": {name: round(o["wall"], 1) for name, o in outcomes.items()},
                "method_cpu_seconds": {name: round(o["cpu"], 1) for name, o in outcomes.items()}}
    notes = _notes(outcomes, target, reached, ratio, plan, measured)
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    result = Result("mbmpo-pendulum", options.seed, "cpu", 0.0, plan, rows, notes, measured=measured)
    setting = ("" if plan.pendulums == "family" else f"-{plan.pendulums}") + (
        f"-h{plan.model_history}" if plan.model_history else "")
    plot = Path(options.out_dir) / f"mbmpo-pendulum{setting}-seed{options.seed}.png"
    result.artifacts["plot"] = save_plot(result.to_dict(), plot)
    result.wall_seconds, result.measured["cpu_seconds"] = clock.wall(), round(clock.cpu(), 1)
    if any(o["resumed"] for o in outcomes.values()):
        notes.append("resumed from checkpoints: the command's wall and CPU time cover this session only; "
                     "each method's times above add up every session")
    return result


def _final_return(curve: list[dict]) -> float:
    """A method's final return: the mean of its last three evaluations (one is noisy)."""
    return float(np.mean([point["return"] for point in curve[-3:]]))


def _notes(outcomes: dict, target: float, reached: dict, ratio, plan: PendulumBudget, measured: dict) -> list[str]:
    notes = [f"target return = PPO's final return (mean of its last 3 evaluations): {target:.1f}; "
             f"MB-MPO's final return, the same way: {measured['mbmpo_final_return']:.1f} ("
             + ("PPO never reached it" if measured["ppo_steps_to_mbmpo_final"] is None
                else f"PPO first reached it at {measured['ppo_steps_to_mbmpo_final']:,} real steps") + ")"]
    for name, o in outcomes.items():
        steps = "never reached" if reached[name] is None else f"reached at {reached[name]:,} real steps"
        notes.append(f"{name}: target {steps}; {o['real_steps']:,} real steps in all; "
                     f"{o['wall']:.0f} s wall, {o['cpu']:.0f} s CPU (1 torch thread; a resumed run adds "
                     "the time of its earlier parts)")
    if ratio is not None:
        notes.append(f"MB-MPO reached PPO's final return with {ratio:.1f}x fewer real steps")
    notes.append(f"evaluation: {plan.test_tasks} held-out pendulums x {plan.test_episodes} episodes, "
                 "sampled actions; evaluation episodes are not counted as training steps")
    return notes


def save_plot(result: dict, path: Path) -> str:
    """Return vs real environment steps (log x) for every method, the target and the step counts."""
    from matplotlib import pyplot as plt  # imported here only: the library runs without it

    budget = {**result["budget"], **result.get("measured", {})}
    colors = {"MB-MPO": "tab:blue", "PPO": "tab:orange", "MAML-RL": "tab:green"}
    figure, axis = plt.subplots(figsize=(7, 4))
    for name, curve in budget["curves"].items():
        axis.plot([p["real_steps"] for p in curve], [p["return"] for p in curve], "o-", ms=3,
                  color=colors[name], label=name)
    axis.axhline(budget["target_return"], color="grey", ls="--", lw=1,
                 label=f"PPO's final return ({budget['target_return']:.0f})")
    low, high = axis.get_ylim()
    for name, steps in budget["steps_to_target"].items():
        if steps is not None:
            axis.axvline(steps, color=colors[name], ls=":", lw=1)
            axis.text(steps * 1.08, low + 0.3 * (high - low), f"{name}: {steps:,} steps",
                      color=colors[name], rotation=90, va="bottom", fontsize=8)
    ratio = budget["step_ratio"]
    setting = budget.get("pendulums", "family")
    (low, high), _ = RANGES[setting]  # the same range for mass and length
    title = ("Standard pendulum (mass = length = 1)" if setting == "standard"
             else f"Pendulum, sampled mass and length (U[{low}, {high}])")
    if budget.get("model_history"):
        title += f"\nMB-MPO's models also see the last {budget['model_history']} transitions"
    if ratio:
        title += f"\nPPO needs {ratio:.1f}x MB-MPO's real steps to its final return"
    axis.set(xscale="log", xlabel="real environment steps", ylabel="average return (held-out pendulums)",
             title=title)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return str(path)


# --- Showing stored results ---
# The functions below turn stored runs (``metacourse.results.load`` / ``results.runs``) into the
# tables and figures of Lecture 7 and its appendix. They read the stored numbers; they train nothing.

MBMPO_LABEL, PPO_LABEL = "MB-MPO (after adaptation)", "PPO (model-free)"


class MarkdownTable(str):
    """A Markdown table that a notebook renders as a table when it is a cell's last expression."""

    def _repr_markdown_(self) -> str:
        return str(self)


def _values(run) -> dict:
    """A stored run's settings and measurements as one mapping (``plan`` and ``measured``)."""
    return {**dict(run.plan), **dict(run.measured)}


def _by_seed(runs) -> list:
    """(seed, run) pairs, by seed, from ``results.runs(...)`` (a mapping seed → run) or a list of runs."""
    pairs = runs.items() if hasattr(runs, "items") else ((run.seed, run) for run in runs)
    pairs = sorted(pairs, key=lambda pair: pair[0])
    if not pairs:
        raise ValueError("no stored runs given: list them with metacourse.results.catalogue() and pass "
                         "results.runs('mbmpo-pendulum', variant=...)")
    return pairs


def _steps(value) -> str:
    return "never" if value is None else f"{value:,.0f}"


def _ratio(ppo_steps, mbmpo_steps) -> str:
    return "never" if mbmpo_steps is None or ppo_steps is None else f"{ppo_steps / mbmpo_steps:.1f}×"


def seed_table(runs) -> MarkdownTable:
    """One line per seed: final returns (mean ± 95% CI over the held-out pendulums), PPO's final
    return (the target), the real steps each method needed to reach it and their ratio, the
    models' last validation error and the CPU time of each method."""
    lines = ["| seed | MB-MPO, last evaluation | PPO, last evaluation | target: PPO's final return (last 3) "
             "| real steps to it: MB-MPO / PPO | PPO / MB-MPO | models' validation error at the end "
             "| CPU s: MB-MPO / PPO |", "|---|---|---|---|---|---|---|---|"]
    for seed, run in _by_seed(runs):
        values = _values(run)
        mb, ppo = run.row(MBMPO_LABEL, "final_return").ours, run.row(PPO_LABEL, "final_return").ours
        reached = values["steps_to_target"]
        cpu = values["method_cpu_seconds"]
        lines.append(f"| {seed} | {mb.mean:.1f} ± {mb.ci95:.1f} | {ppo.mean:.1f} ± {ppo.ci95:.1f} "
                     f"| {values['target_return']:.1f} | {_steps(reached['MB-MPO'])} / {_steps(reached['PPO'])} "
                     f"| {_ratio(reached['PPO'], reached['MB-MPO'])} "
                     f"| {values['curves']['MB-MPO'][-1].get('model_val_mse', float('nan')):.4f} "
                     f"| {cpu['MB-MPO']:.0f} / {cpu['PPO']:.0f} |")
    return MarkdownTable("\n".join(lines))


def level_table(runs, levels) -> MarkdownTable:
    """For each return level (rows) and seed (columns): real steps at MB-MPO's and PPO's first
    evaluation at or above the level, and their ratio."""
    pairs = _by_seed(runs)
    lines = ["| return level | " + " | ".join(f"seed {seed}: MB-MPO / PPO" for seed, _ in pairs) + " |",
             "|---|" + "---|" * len(pairs)]
    for level in levels:
        cells = []
        for _, run in pairs:
            curves = _values(run)["curves"]
            mb, ppo = steps_to_reach(curves["MB-MPO"], level), steps_to_reach(curves["PPO"], level)
            cells.append(f"{_steps(mb)} / {_steps(ppo)} ({_ratio(ppo, mb)})")
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return MarkdownTable("\n".join(lines))


def target_readings(run) -> dict[str, float]:
    """Three readings of "the model-free baseline's return": PPO's final return (the mean of its
    last three evaluations, the command's target), the mean of its last ten evaluations, and its
    best mean over five evaluations in a row (immune to a late collapse; the hardest)."""
    values = _values(run)
    ppo = np.array([point["return"] for point in values["curves"]["PPO"]])
    return {"final (last 3)": float(values["target_return"]), "last 10": float(ppo[-10:].mean()),
            "best 5 in a row": float(np.convolve(ppo, np.ones(5) / 5, "valid").max())}


def ratios(run, target: float) -> float | None:
    """PPO's real steps to ``target`` divided by MB-MPO's (None: MB-MPO never reached it)."""
    curves = _values(run)["curves"]
    mb, ppo = steps_to_reach(curves["MB-MPO"], target), steps_to_reach(curves["PPO"], target)
    return None if mb is None or ppo is None else ppo / mb


def settings_table(settings: dict, readings=("final (last 3)",), at_least: float = 10.0) -> MarkdownTable:
    """One line per setting (a name → ``results.runs(...)``) and reading of PPO's return: the ratio
    PPO / MB-MPO of real steps to it in every seed, and how many seeds reach ``at_least``."""
    seeds = sorted({seed for runs in settings.values() for seed, _ in _by_seed(runs)})
    lines = ["| setting | PPO's return read as | " + " | ".join(f"seed {seed}" for seed in seeds)
             + f" | seeds with ≥ {at_least:g}× |", "|---|---|" + "---|" * (len(seeds) + 1)]
    for name, runs in settings.items():
        by_seed = dict(_by_seed(runs))
        for reading in readings:
            found = {seed: ratios(run, target_readings(run)[reading]) for seed, run in by_seed.items()}
            cells = ["–" if seed not in found else "never" if found[seed] is None else f"{found[seed]:.1f}×"
                     for seed in seeds]
            hits = sum(value is not None and value >= at_least for value in found.values())
            lines.append(f"| {name} | {reading} | " + " | ".join(cells) + f" | {hits} of {len(found)} |")
    return MarkdownTable("\n".join(lines))


def plot_curves(panels: dict, columns: int = 3, title: str | None = None):
    """Return vs real steps (log x) of every method of each stored run, one panel per run
    (``panels``: a title → a run), with PPO's final return as a dashed line. Returns the figure."""
    from matplotlib import pyplot as plt  # imported here only: the library runs without it

    colors = {"MB-MPO": "tab:blue", "PPO": "tab:orange", "MAML-RL": "tab:green"}
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.9 * columns, 3.0 * rows), sharey=True, squeeze=False)
    for axis, (name, run) in zip(axes.flat, panels.items()):
        values = _values(run)
        for method, curve in values["curves"].items():
            axis.plot([p["real_steps"] for p in curve], [p["return"] for p in curve], "-", lw=1.3,
                      color=colors[method], label=method)
        axis.axhline(values["target_return"], color="grey", ls="--", lw=1, label="PPO's final return")
        axis.set(xscale="log", title=name, ylim=(-1400, 0))
        axis.title.set_fontsize(9)
    for axis in axes.flat[len(panels):]:
        axis.axis("off")
    for axis in axes[:, 0]:
        axis.set_ylabel("return (held-out pendulums)")
    for axis in axes[-1]:
        axis.set_xlabel("real environment steps")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def imagination_table(runs) -> MarkdownTable:
    """Imagination against reality at MB-MPO's last iteration, per seed: the imagined return of the
    meta-policy before and after adaptation (in the models), the real return of the adapted policies
    on the held-out pendulums, their gap, and the models' validation error (standardised MSE)."""
    lines = ["| seed | imagined return, before / after adaptation | real return (held-out) "
             "| imagined − real | models' validation error |", "|---|---|---|---|---|"]
    for seed, run in _by_seed(runs):
        last = _values(run)["curves"]["MB-MPO"][-1]
        before, after = last.get("imagined_return_before"), last.get("imagined_return_after")
        if before is None or after is None:
            raise KeyError(f"run {run.name} stores no imagined returns: it predates them; rerun "
                           "`metacourse reproduce mbmpo-pendulum` with its settings")
        lines.append(f"| {seed} | {before:.1f} / {after:.1f} | {last['return']:.1f} | {after - last['return']:+.1f} "
                     f"| {last.get('model_val_mse', float('nan')):.4f} |")
    return MarkdownTable("\n".join(lines))
