"""Meta-Critic Networks (Sung et al. 2017): sinusoid regression and CartPole with varying pole length.

``meta-critic-sinusoid``: the meta-critic is meta-trained on sinusoid tasks (Algorithm 1, the
supervised one-step case), then fresh actors learn new sinusoids from K ∈ {4, 6, 8} labelled
points by following it (Algorithm 2); their MSE on 100 points is compared with the same actor
trained on the plain MSE of the K points, with MAML fine-tuned on the K points (the course's
sinusoid MAML, ``metacourse.algorithms.maml``, trained as in ``metacourse reproduce sinusoid``),
and with predicting 0 (the score of a learner that learns nothing).

``meta-critic-cartpole``: the meta-critic is meta-trained on CartPoles with sampled pole lengths;
on held-out pole lengths a fresh actor learns online by following it, against a standard
actor-critic from scratch. The metric is the number of environment interactions until the mean
return of the last 10 episodes reaches 195 (CartPole-v0's "solved" level, 200-step episodes).

The paper gives no numbers we could read (docs/anchors.md §6): the rows have no paper column.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..evaluate import adaptation_curve, summarize
from ..models import MLP
from ..reproduce import Argument, Budget, Result, Row, RunOptions, register
from ..rl import meta_critic, task_env
from ..rl.envs import BatchedCartPole, sample_pole_lengths
from ..tasks import SinusoidTasks
from ..tasks.base import TaskBatch
from ..train import TrainConfig, meta_train
from ..utils import Clock
from . import sinusoid

SHOTS = (4, 6, 8)
"""K, labelled points of a new task at meta-test (the paper's 4, 6 and 8)."""
TARGET_RETURN = 195.0


# ---- sinusoid regression ----

@dataclass(frozen=True)
class SinusoidCriticBudget(Budget):
    """The plan of a meta-critic run on sinusoids (Algorithm 1 with the paper's sizes)."""

    meta_steps: int = 20_000
    meta_batch_size: int = 32
    trace: str = "labelled"
    """What the TAEN reads of each labelled point (a key of ``TRACES``)."""
    actor_lifetime: int = 100
    trace_points: tuple[int, int] = (4, 8)
    critic_points: int = 20
    test_tasks: int = 600
    test_steps: int = 100
    test_actor_lr: float = 1e-2
    unlabelled_points: int = 100
    maml_meta_steps: int = 70_000


def sinusoid_budget(options: RunOptions) -> SinusoidCriticBudget:
    """The run's budget (FAST: a smoke test)."""
    fast = options.fast
    test_tasks, maml_steps = options.extra.get("test_tasks", 600), options.extra.get("maml_steps", 70_000)
    return SinusoidCriticBudget(meta_steps=options.meta_steps or (300 if fast else 20_000),
                                trace=options.extra.get("trace", "labelled"),
                                test_tasks=min(test_tasks, 100) if fast else test_tasks,
                                maml_meta_steps=min(maml_steps, 300) if fast else maml_steps)


class SinusoidStage:
    """Algorithm 1 on sinusoids as ``meta_train``'s sampler and step: every ``actor_lifetime``
    steps M new tasks and M fresh actors; each step draws K labelled points per task for the
    trace (K uniform in ``trace_points``) and more for the critic. Checkpointed with the run."""

    def __init__(self, critic: meta_critic.MetaCritic, actor_model: torch.nn.Module,
                 cfg: meta_critic.Config, plan: SinusoidCriticBudget,
                 generator: torch.Generator | None = None) -> None:
        self.critic, self.actor_model, self.cfg, self.plan = critic, actor_model, cfg, plan
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)  # random draws
        self.critic_optimizer = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
        self.count, self.amplitude, self.phase, self.actors, self.actor_optimizer = 0, None, None, None, None

    def sample(self, n_tasks: int, rng: np.random.Generator) -> TaskBatch:
        family = SinusoidTasks()
        if self.count % self.plan.actor_lifetime == 0:
            self.amplitude = rng.uniform(*family.amplitude, size=(n_tasks, 1, 1))
            self.phase = rng.uniform(*family.phase, size=(n_tasks, 1, 1))
        k_shot = int(rng.integers(self.plan.trace_points[0], self.plan.trace_points[1] + 1))
        x = rng.uniform(*family.x_range, size=(n_tasks, k_shot + self.plan.critic_points, 1))
        x_t, y_t = (torch.as_tensor(v, dtype=torch.float32) for v in (x, self.amplitude * np.sin(x + self.phase)))
        return TaskBatch(x_t[:, :k_shot], y_t[:, :k_shot], x_t[:, k_shot:], y_t[:, k_shot:])

    def step(self, tasks: TaskBatch) -> dict[str, float]:
        if self.count % self.plan.actor_lifetime == 0:
            self.actors = meta_critic.init_actors(self.actor_model, len(tasks))
            self.actor_optimizer = torch.optim.Adam(self.actors.parameters(), lr=self.cfg.actor_lr)
        metrics = meta_critic.supervised_meta_step(self.critic, self.critic_optimizer, self.actor_model,
                                                   self.actors, self.actor_optimizer, tasks, self.cfg,
                                                   self.generator)
        self.count += 1
        return metrics

    def state_dict(self) -> dict:
        actors = None if self.actors is None else self.actors.state_dict()
        actor_optimizer = None if self.actor_optimizer is None else self.actor_optimizer.state_dict()
        return {"count": self.count, "amplitude": self.amplitude, "phase": self.phase, "actors": actors,
                "actor_optimizer": actor_optimizer, "critic_optimizer": self.critic_optimizer.state_dict(),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.amplitude, self.phase = state["count"], state["amplitude"], state["phase"]
        self.generator.set_state(state["generator"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if state["actors"] is not None:
            self.actors = meta_critic.init_actors(self.actor_model, len(self.amplitude))
            self.actors.load_state_dict(state["actors"])
            self.actor_optimizer = torch.optim.Adam(self.actors.parameters(), lr=self.cfg.actor_lr)
            self.actor_optimizer.load_state_dict(state["actor_optimizer"])


def train_sinusoid_critic(options: RunOptions, plan: SinusoidCriticBudget, cfg: meta_critic.Config | None = None):
    """Meta-train the meta-critic on sinusoids (checkpointed, resumable); returns it, the actor
    architecture, the training history and the wall time."""
    labelled = plan.trace == "labelled"
    cfg = cfg or meta_critic.Config(actor_lr=1e-2, critic_lr=1e-3, trace_labels=labelled)
    torch.manual_seed(options.seed)
    critic, actor_model = meta_critic.MetaCritic(1, 1, cfg), MLP(1, (40, 40), 1)
    stage = SinusoidStage(critic, actor_model, cfg, plan, torch.Generator().manual_seed(options.seed))
    return _meta_train(stage, options, "sinusoid" + ("-labelled" if cfg.trace_labels else ""), plan.meta_steps,
                       plan.meta_batch_size, checkpoint_every=plan.actor_lifetime * 10)


def sinusoid_test_tasks(k_shot: int, n_tasks: int, seed: int) -> tuple[TaskBatch, torch.Tensor]:
    """Held-out tasks with K labelled and 100 query points, and 100 unlabelled inputs each."""
    rng = np.random.default_rng([seed, 2017, k_shot])
    tasks = SinusoidTasks().sample(n_tasks, k_shot, 100, rng)
    unlabelled = torch.as_tensor(rng.uniform(-5.0, 5.0, size=(n_tasks, 100, 1)), dtype=torch.float32)
    return tasks, unlabelled


def query_mse(actor_model: torch.nn.Module, actors, tasks: TaskBatch) -> np.ndarray:
    """Per-task MSE of trained actors on the query points."""
    with torch.no_grad():
        predictions = meta_critic.act(actor_model, actors, tasks.x_query)
    return ((predictions - tasks.y_query) ** 2).mean(dim=(1, 2)).numpy()


def sinusoid_rows(critic, actor_model, maml_model, plan: SinusoidCriticBudget, seed: int) -> tuple[list[Row], dict]:
    """Train fresh actors on K points per held-out task each way; one table row per method and K."""
    rows, values = [], {}
    steps, lr = plan.test_steps, plan.test_actor_lr
    for k_shot in SHOTS:
        tasks, unlabelled = sinusoid_test_tasks(k_shot, plan.test_tasks, seed)
        torch.manual_seed(seed + k_shot)  # the same fresh initialisations for every method
        methods = {
            "actor, plain MSE": partial(meta_critic.train_supervised_actors, actor_model, tasks, steps, lr),
            "actor, meta-critic": partial(meta_critic.train_supervised_actors, actor_model, tasks, steps,
                                          lr, critic),
            "actor, meta-critic + unlabelled x": partial(meta_critic.train_supervised_actors, actor_model,
                                                         tasks, steps, lr, critic, unlabelled),
        }
        for method, train in methods.items():
            torch.manual_seed(seed + k_shot)
            values[(method, k_shot)] = query_mse(actor_model, train(), tasks)
        values[("predict 0 (no learning)", k_shot)] = (tasks.y_query ** 2).mean(dim=(1, 2)).numpy()
        if maml_model is not None:
            values[("MAML, 10 steps", k_shot)] = adaptation_curve(maml_model, tasks, (10,),
                                                                  inner_lr=sinusoid.INNER_LR)[10]
    for (method, k_shot), mse in values.items():
        rows.append(Row(method, f"mse_{k_shot}shot", None, summarize(mse)))
    rows.sort(key=lambda row: (row.metric, row.method))
    return rows, values


TRACES = {"labelled": "(x, ŷ, r, y): the actor's trace on its labelled points, labels included",
          "reward": "(x, ŷ, r): the paper's (s, a, r), which fixes y only up to its mirror image 2ŷ − y"}


@register("meta-critic-sinusoid",
          "Meta-Critic Networks: sinusoid MSE of an actor taught by the meta-critic vs plain loss vs MAML",
          arguments=(Argument("--trace", str, "labelled", tuple(TRACES),
                              "what the TAEN reads of each labelled point: labelled (x, ŷ, r, y) or reward "
                              "(x, ŷ, r)"),
                     Argument("--test-tasks", int, 600, help="held-out tasks per K (FAST: at most 100)", minimum=1),
                     Argument("--maml-steps", int, 70_000, help="meta-steps of the MAML row (FAST: at most 300); "
                              "0 leaves the row out", minimum=0)), threads=1)
def run_sinusoid(options: RunOptions) -> Result:
    clock = Clock()
    plan = sinusoid_budget(options)
    critic, actor_model, history, seconds = train_sinusoid_critic(options, plan)
    maml_model, maml_seconds = None, 0.0
    if plan.maml_meta_steps:
        maml_plan = sinusoid.budget(RunOptions(fast=options.fast, meta_steps=plan.maml_meta_steps)).replace(
            k_shot_train=5)
        maml_model, maml_seconds, _ = sinusoid.train_method("MAML", options, maml_plan, torch.device("cpu"))
    rows, _ = sinusoid_rows(critic, actor_model, maml_model, plan, options.seed)
    critic_losses = history.metrics.get("critic_loss", [])
    measured = {"train_wall_seconds": round(seconds, 1), "maml_train_wall_seconds": round(maml_seconds, 1),
                "critic_loss_curve": [round(float(np.mean(critic_losses[i:i + 500])), 4)
                                      for i in range(0, len(critic_losses), 500)]}
    notes = [f"meta-critic: {plan.meta_steps} steps of Algorithm 1 ({plan.meta_batch_size} tasks, "
             f"actors renewed every {plan.actor_lifetime} steps), {seconds:.0f} s wall (this run; a "
             f"resumed run counts only its own time; this run {history.origin(plan.meta_steps)})",
             f"the TAEN reads {TRACES[plan.trace]}",
             f"meta-test: fresh 1-40-40-1 actors, {plan.test_steps} Adam steps at "
             f"{plan.test_actor_lr:g} on the K points; the '+ unlabelled x' actors also follow the "
             f"critic at {plan.unlabelled_points} unlabelled inputs of the task (labels never used)",
             (f"MAML: {plan.maml_meta_steps} meta-steps with K = 5 (as `metacourse reproduce sinusoid`; "
              f"{maml_seconds:.0f} s here, 0 when its checkpoint existed), 10 fine-tuning steps at α = 0.01"
              if maml_model is not None else "MAML: left out of this run (--maml-steps 0)"),
             "predict 0 (no learning): the MSE of ŷ = 0 on the same tasks, E[A²]/2 ≈ 4.25 in expectation; "
             "a learner above it has learned less than nothing from its K points"]
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    result = Result("meta-critic-sinusoid", options.seed, "cpu", 0.0, plan, rows, notes, measured=measured)
    plot_path = Path(options.out_dir) / f"meta-critic-sinusoid-seed{options.seed}.png"
    result.artifacts["plot"] = save_sinusoid_plot(result.to_dict(), plot_path)
    result.wall_seconds, result.measured["cpu_seconds"] = clock.wall(), round(clock.cpu(), 1)
    return result


def save_sinusoid_plot(result: dict, path: Path) -> str:
    """Query MSE (mean ± 95% CI) of every method at K = 4, 6, 8, from a result's rows, as PNG."""
    from matplotlib import pyplot as plt  # imported here only: the library runs without it

    rows = result["rows"]
    methods = sorted({row["method"] for row in rows})
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for offset, method in enumerate(methods):
        cells = [next(r for r in rows if r["method"] == method and r["metric"] == f"mse_{k}shot")
                 for k in SHOTS]
        width = 0.8 / len(methods)
        axis.bar(np.arange(len(SHOTS)) + width * (offset - (len(methods) - 1) / 2),
                 [c["ours"]["mean"] for c in cells], width=width,
                 yerr=[c["ours"]["ci95"] for c in cells], label=method)
    axis.set(xticks=range(len(SHOTS)), xticklabels=[f"K = {k}" for k in SHOTS], yscale="log",
             ylabel="query MSE (100 points)",
             title=f"sinusoids: {rows[0]['ours']['n']} held-out tasks, seed {result['seed']}")
    axis.legend(fontsize=7)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return str(path)


# ---- CartPole with varying pole length ----

HELD_OUT_LENGTHS = (0.25, 0.4, 0.55, 0.7, 0.85, 1.0, 1.15)
"""Pole half-lengths of the meta-test; training draws ℓ ~ U[0.2, 1.2] afresh, so these exact
poles are never trained on."""


@dataclass(frozen=True)
class CartPoleCriticBudget(Budget):
    """The plan of a meta-critic run on CartPole with sampled pole lengths."""

    meta_steps: int = 6000
    tasks_per_step: int = 16
    carts_per_task: int = 4
    steps_per_update: int = 10
    actor_lifetime: int = 150
    held_out_lengths: tuple[float, ...] = HELD_OUT_LENGTHS
    test_seeds: tuple[int, ...] = (0, 1, 2)
    max_interactions: int = 60_000
    actor_lr: float = 3e-3
    actor_critic_lrs: tuple[float, ...] = (3e-3, 1e-2)
    embedding_lengths: int = 24
    embedding_updates: int = 60


def cartpole_budget(options: RunOptions) -> CartPoleCriticBudget:
    """The run's budget (FAST: a smoke test)."""
    if not options.fast:
        return CartPoleCriticBudget(meta_steps=options.meta_steps or 6000)
    return CartPoleCriticBudget(meta_steps=options.meta_steps or 40, actor_lifetime=20, test_seeds=(0,),
                                max_interactions=2_000, actor_critic_lrs=(3e-3,), embedding_updates=10)


def cartpole_config() -> meta_critic.Config:
    return meta_critic.Config(gamma=0.95, actor_lr=3e-3, critic_lr=1e-3, trace_length=20)


class CartPoleStage:
    """Algorithm 1 on CartPole as ``meta_train``'s sampler and step: every ``actor_lifetime``
    steps M new pole lengths and M fresh actors (n carts each); each step collects a few steps in
    every cart, moves the actors along the critic and takes a TD step. Checkpointed with the run."""

    def __init__(self, critic: meta_critic.MetaCritic, actor_model: torch.nn.Module,
                 cfg: meta_critic.Config, plan: CartPoleCriticBudget,
                 generator: torch.Generator | None = None) -> None:
        self.critic, self.actor_model, self.cfg, self.plan = critic, actor_model, cfg, plan
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)  # random draws
        self.critic_optimizer = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
        self.count, self.lengths, self.recent_return = 0, None, 0.0

    def _start(self, lengths: np.ndarray, env_seed: int) -> None:
        self.lengths, self.env = lengths, BatchedCartPole(lengths)
        self.env_generator = torch.Generator().manual_seed(env_seed)  # the carts' starts and restarts
        self.obs, self.trace = self.env.reset(self.plan.carts_per_task, self.env_generator), None
        self.running = torch.zeros(len(lengths), self.plan.carts_per_task)
        self.actors = meta_critic.init_actors(self.actor_model, len(lengths))
        self.actor_optimizer = torch.optim.Adam(self.actors.parameters(), lr=self.cfg.actor_lr)

    def sample(self, n_tasks: int, rng: np.random.Generator) -> task_env.Rollout:
        if self.count % self.plan.actor_lifetime == 0:
            self._start(sample_pole_lengths(rng, n_tasks), int(rng.integers(2**32)))
        batch = meta_critic.collect(self.env, self.actor_model, self.actors, self.obs, self.plan.steps_per_update,
                                    self.generator)
        self.obs = batch.final_obs
        self.returns, self.running = meta_critic.finished_returns(batch, self.running)
        return batch

    def step(self, batch: task_env.Rollout) -> dict[str, float]:
        self.trace = meta_critic.update_trace(self.trace, batch, self.cfg.trace_length, self.env.n_actions)
        metrics = meta_critic.meta_step(self.critic, self.critic_optimizer, self.actor_model, self.actors,
                                        self.actor_optimizer, batch, self.trace, self.cfg)
        finished = [r for returns in self.returns for r in returns]
        self.recent_return = float(np.mean(finished)) if finished else self.recent_return
        self.count += 1
        return {**metrics, "actor_return": self.recent_return}

    def state_dict(self) -> dict:
        if self.lengths is None:
            return {"count": 0, "critic_optimizer": self.critic_optimizer.state_dict(),
                    "generator": self.generator.get_state()}
        return {"count": self.count, "lengths": self.lengths, "env_generator": self.env_generator.get_state(),
                "env_states": self.env.states, "env_clock": self.env.clock.state_dict(), "running": self.running,
                "trace": self.trace, "actors": self.actors.state_dict(), "recent_return": self.recent_return,
                "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.count = state["count"]
        self.generator.set_state(state["generator"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        if "lengths" not in state:
            return
        self._start(state["lengths"], 0)
        self.env_generator.set_state(state["env_generator"])
        self.env.states = state["env_states"]
        if "env_clock" in state:
            self.env.clock.load_state_dict(state["env_clock"])
        else:  # a checkpoint written before the clock was kept: its step counts, every cart running
            self.env.clock.steps = state["env_steps"]
        self.obs, self.running, self.trace = self.env.states.float(), state["running"], state["trace"]
        self.recent_return = state["recent_return"]
        self.actors.load_state_dict(state["actors"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])


def train_cartpole_critic(options: RunOptions, plan: CartPoleCriticBudget):
    """Meta-train the meta-critic on CartPoles (checkpointed, resumable)."""
    cfg = cartpole_config()
    torch.manual_seed(options.seed)
    critic, actor_model = meta_critic.MetaCritic(4, 2, cfg), MLP(4, (32,), 2)
    stage = CartPoleStage(critic, actor_model, cfg, plan, torch.Generator().manual_seed(options.seed))
    return _meta_train(stage, options, "cartpole", plan.meta_steps, plan.tasks_per_step,
                       checkpoint_every=plan.actor_lifetime * 2)


def _meta_train(stage, options: RunOptions, family: str, meta_steps: int, batch_size: int,
                checkpoint_every: int):
    """The meta-learning stage of one task family, checkpointed in ``out_dir/checkpoints`` and
    resumed from there; returns the critic, the actor architecture, the history and the wall time."""
    train_cfg = TrainConfig(
        meta_steps=meta_steps, meta_batch_size=batch_size, seed=options.seed,
        checkpoint_path=str(Path(options.out_dir) / "checkpoints"
                            / f"meta-critic-{family}-seed{options.seed}-{meta_steps}.pt"),
        checkpoint_every=checkpoint_every, progress=options.progress,
        description=f"meta-critic ({family})")
    started = time.perf_counter()
    history = meta_train(stage.step, stage.sample, train_cfg,
                         {"critic": stage.critic, "stage": stage})
    return stage.critic, stage.actor_model, history, time.perf_counter() - started


def learn_held_out(method: str, critic, actor_model, lengths, plan: CartPoleCriticBudget, seed: int, lr: float) -> dict:
    """Algorithm 2 on every pole of ``lengths`` at once (fresh actors, n carts each): following the
    frozen meta-critic, or with a standard actor-critic learned from scratch."""
    torch.manual_seed(seed)
    actors = meta_critic.init_actors(actor_model, len(lengths))
    if method == "meta-critic":
        optimizer = torch.optim.Adam(actors.parameters(), lr=lr)
        update = lambda batch, trace: meta_critic.actor_loss(  # noqa: E731
            critic, actor_model, actors, meta_critic.per_task(batch.obs), critic.encoder(trace),
            cartpole_config().entropy_coef)
    else:
        value_model = MLP(4, (64,), 1)
        values = meta_critic.init_actors(value_model, len(lengths))
        optimizer = torch.optim.Adam([*actors.parameters(), *values.parameters()], lr=lr)
        update = partial(_actor_critic_update, actor_model, actors, value_model, values)
    return meta_critic.learn_task(BatchedCartPole(lengths), actor_model, actors, update, optimizer,
                                  plan.carts_per_task, plan.steps_per_update, plan.max_interactions,
                                  TARGET_RETURN, generator=torch.Generator().manual_seed(seed))


def _actor_critic_update(actor_model, actors, value_model, values, batch, trace):
    return meta_critic.actor_critic_loss(actor_model, actors, value_model, values, batch, gamma=0.99,
                                         gae_lambda=0.95, entropy_coef=0.0)


def embedding_points(critic, actor_model, plan: CartPoleCriticBudget, seed: int) -> dict:
    """TAEN codes z of fresh actors following the meta-critic on evenly spaced pole lengths, from
    the 10th update on; their first two principal components, and how well a line through z
    predicts the length (R² of least squares on held-out poles: every other length)."""
    lengths = np.linspace(0.2, 1.2, plan.embedding_lengths)
    run = learn_held_out("meta-critic", critic, actor_model, lengths,
                         plan.replace(max_interactions=plan.embedding_updates * plan.steps_per_update
                                      * plan.carts_per_task), seed, plan.actor_lr)
    with torch.no_grad():
        codes = torch.stack([critic.encoder(trace) for trace in run["traces"][min(9, len(run["traces"]) - 1):]])
    z = codes.reshape(-1, codes.shape[-1]).numpy().astype(np.float64)
    labels = np.tile(lengths, codes.shape[0])
    centred = z - z.mean(axis=0)
    components = np.linalg.svd(centred, full_matrices=False)[2][:2]
    features = np.c_[z, np.ones(len(z))]
    train = np.isin(labels, lengths[::2])
    weights = np.linalg.lstsq(features[train], labels[train], rcond=None)[0]
    residual = labels[~train] - features[~train] @ weights
    r2 = 1.0 - residual.var() / labels[~train].var()
    return {"lengths": labels.round(4).tolist(), "pc": (centred @ components.T).round(4).tolist(),
            "r2_length_from_z": round(float(r2), 4)}


def compare_on_held_out(critic, actor_model, plan: CartPoleCriticBudget) -> dict:
    """Interactions to reach 195 on every held-out pole, per seed: the meta-critic's actor and the
    actor-critic from scratch at each step size (NaN: not reached within ``max_interactions``)."""
    lengths = np.array(plan.held_out_lengths)
    runs = {"meta-critic": [learn_held_out("meta-critic", critic, actor_model, lengths, plan, seed,
                                           plan.actor_lr) for seed in plan.test_seeds]}
    for lr in plan.actor_critic_lrs:
        runs[f"actor-critic lr={lr:g}"] = [learn_held_out("actor-critic", None, actor_model, lengths, plan,
                                                          seed, lr) for seed in plan.test_seeds]
    return runs


def _reached(run_list: list[dict]) -> np.ndarray:
    """(seeds, lengths) interactions to the target, NaN where never reached."""
    return np.stack([run["interactions_to_target"] for run in run_list])


def _censored_median(values: np.ndarray) -> np.ndarray:
    """Median over seeds counting 'not reached' as above the budget (inf), per length."""
    return np.median(np.where(np.isnan(values), np.inf, values), axis=0)


@register("meta-critic-cartpole",
          "Meta-Critic Networks: interactions to return 195 on held-out CartPole poles vs actor-critic", threads=1)
def run_cartpole(options: RunOptions) -> Result:
    clock = Clock()
    plan = cartpole_budget(options)
    critic, actor_model, history, seconds = train_cartpole_critic(options, plan)
    runs = compare_on_held_out(critic, actor_model, plan)
    cap = plan.max_interactions
    medians = {name: _censored_median(_reached(run_list)) for name, run_list in runs.items()}
    baselines = [name for name in runs if name != "meta-critic"]
    best = min(baselines, key=lambda name: (np.median(medians[name]), name))
    rows, wins = [], 0
    for index, length in enumerate(plan.held_out_lengths):
        for name in ("meta-critic", best):
            values = _reached(runs[name])[:, index]
            rows.append(Row(name, f"interactions_to_195_len{length:g}", None,
                            summarize(np.where(np.isnan(values), cap, values))))
        wins += int(medians["meta-critic"][index] < medians[best][index])
    details = {"interactions_to_195": {name: _reached(run_list).tolist() for name, run_list in runs.items()},
               "actor_return_curve": [round(float(np.mean(history.metrics["actor_return"][i:i + 150])), 1)
                                      for i in range(0, len(history.steps), 150)],
               "embedding": embedding_points(critic, actor_model, plan, options.seed)}
    measured = {"train_wall_seconds": round(seconds, 1), "origin": history.origin(plan.meta_steps),
                "best_actor_critic": best,
                "median_interactions": {name: [None if np.isinf(v) else float(v) for v in values]
                                        for name, values in medians.items()}}
    notes = [f"the meta-critic's actor reached 195 with fewer interactions (median over seeds "
             f"{plan.test_seeds}) than the actor-critic from scratch on {wins} of "
             f"{len(plan.held_out_lengths)} held-out poles",
             f"actor-critic from scratch: Adam step size chosen among {plan.actor_critic_lrs} by its "
             f"median over all poles and seeds, on the test poles themselves (in its favour): {best}; "
             + "; ".join(f"{name}: median {np.median(medians[name]):g}" for name in baselines),
             f"not reached within {cap:,} interactions counts as {cap:,} in the means (a lower bound): "
             + ", ".join(f"{name} {int(np.isnan(_reached(r)).sum())}" for name, r in runs.items()),
             f"meta-training: {plan.meta_steps} steps x {plan.tasks_per_step} poles x "
             f"{plan.carts_per_task} carts x {plan.steps_per_update} steps = "
             f"{plan.meta_steps * plan.tasks_per_step * plan.carts_per_task * plan.steps_per_update:,}"
             f" interactions, {seconds:.0f} s wall (this run; a resumed run counts only its own time)",
             f"TAEN codes: R² of pole length predicted linearly from z on held-out poles = "
             f"{details['embedding']['r2_length_from_z']:.3f}"]
    if options.fast:
        notes.append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    result = Result("meta-critic-cartpole", options.seed, "cpu", 0.0, plan, rows, notes, measured=measured)
    result.artifacts.update(save_cartpole_plots(runs, plan, details["embedding"], options))
    result.artifacts["details"] = str(Path(options.out_dir) / f"meta-critic-cartpole-seed{options.seed}.details.json")
    Path(result.artifacts["details"]).write_text(json.dumps(details) + "\n")
    result.wall_seconds, result.measured["cpu_seconds"] = clock.wall(), round(clock.cpu(), 1)
    return result


def save_cartpole_plots(runs: dict, plan: CartPoleCriticBudget, embedding: dict, options: RunOptions) -> dict[str, str]:
    """Return-vs-interactions curves (first seed) and the TAEN codes coloured by pole length."""
    from matplotlib import pyplot as plt  # imported here only: the library runs without it

    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lengths = plan.held_out_lengths
    figure, axes = plt.subplots(1, len(lengths), figsize=(2.6 * len(lengths), 2.6), sharey=True)
    for index, axis in enumerate(axes):
        for name, run_list in runs.items():
            points = np.array(run_list[0]["episodes"][index] or [(0, 0.0)])
            smooth = np.convolve(points[:, 1], np.ones(10) / 10, mode="valid") if len(points) >= 10 else points[:, 1]
            axis.plot(points[len(points) - len(smooth):, 0], smooth, label=name, lw=1)
        axis.axhline(TARGET_RETURN, color="k", ls=":", lw=0.8)
        axis.set(title=f"ℓ = {lengths[index]:g}", xlabel="interactions", xscale="log")
    axes[0].set_ylabel("return (mean of 10 episodes)")
    axes[-1].legend(fontsize=6)
    figure.tight_layout()
    paths = {"curves": str(out / f"meta-critic-cartpole-seed{options.seed}.png"),
             "embedding": str(out / f"meta-critic-cartpole-z-seed{options.seed}.png")}
    figure.savefig(paths["curves"], dpi=110)
    plt.close(figure)
    figure = plt.figure(figsize=(4.5, 3.5))
    pc = np.array(embedding["pc"])
    plt.scatter(pc[:, 0], pc[:, 1], c=embedding["lengths"], s=4, cmap="viridis")
    plt.colorbar(label="pole half-length ℓ (m)")
    plt.xlabel("PC 1 of z")
    plt.ylabel("PC 2 of z")
    plt.title("TAEN codes of actors following the meta-critic", fontsize=9)
    figure.tight_layout()
    figure.savefig(paths["embedding"], dpi=110)
    plt.close(figure)
    return paths


# --- Showing stored results ---
# The functions below turn stored runs (``metacourse.results.load`` / ``results.runs``) into the
# tables and figures of Lecture 8 and its appendix. They read the stored numbers; they train nothing.

class MarkdownTable(str):
    """A Markdown table that a notebook renders as a table when it is a cell's last expression."""

    def _repr_markdown_(self) -> str:
        return str(self)


def _values(run) -> dict:
    """A stored run's settings and measurements as one mapping (``plan`` and ``measured``)."""
    return {**dict(run.plan), **dict(run.measured)}


def _cell(run, method: str, k: int) -> str:
    ours = run.row(method, f"mse_{k}shot").ours
    return f"{ours.mean:.2f} ± {ours.ci95:.2f}"


def critic_budget_table(runs) -> MarkdownTable:
    """Query MSE (mean ± 95% CI over the held-out tasks) of the actors a sinusoid meta-critic
    teaches, one pair of lines per critic budget (``meta_steps``), then the two references
    (plain MSE on the K points, predicting 0), which do not depend on the critic."""
    runs = sorted(runs.values() if hasattr(runs, "values") else runs, key=lambda run: _values(run)["meta_steps"])
    if not runs:
        raise ValueError("no stored runs given: pass the meta-critic-sinusoid runs of one trace, e.g. "
                         "[results.load('meta-critic-sinusoid', variant='labelled', critic_steps=n) for n in ...]")
    lines = ["| critic steps | the actor follows the critic at | " + " | ".join(f"K = {k}" for k in SHOTS) + " |",
             "|---|---|" + "---|" * len(SHOTS)]
    for run in runs:
        for method, where in [("actor, meta-critic", "the K points"),
                              ("actor, meta-critic + unlabelled x", "the K points + 100 unlabelled x")]:
            lines.append(f"| {_values(run)['meta_steps']:,} | {where} | "
                         + " | ".join(_cell(run, method, k) for k in SHOTS) + " |")
    for method in ("actor, plain MSE", "predict 0 (no learning)"):
        lines.append(f"| – | ({method}) | " + " | ".join(_cell(runs[0], method, k) for k in SHOTS) + " |")
    cpu = ", ".join(f"{_values(run)['meta_steps']:,} steps: {_values(run)['cpu_seconds']:.0f} s"
                    for run in runs)
    return MarkdownTable("\n".join(lines) + f"\n\nSeed {runs[0].seed}, {_values(runs[0])['test_tasks']} held-out "
                         f"tasks per K; CPU time of each whole run (one thread): {cpu}.")


def cartpole_table(run) -> MarkdownTable:
    """Median (over the test seeds) interactions until a fresh actor's mean return over 10
    episodes first reaches 195, per held-out pole and method ("not reached": the median seed did
    not get there within the budget)."""
    values = _values(run)
    medians = values["median_interactions"]
    names = ["meta-critic"] + sorted(name for name in medians if name != "meta-critic")
    lines = ["| pole half-length ℓ | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for index, length in enumerate(values["held_out_lengths"]):
        cells = ["not reached" if medians[name][index] is None else f"{medians[name][index]:,.0f}" for name in names]
        lines.append(f"| {length:g} | " + " | ".join(cells) + " |")
    return MarkdownTable("\n".join(lines) + f"\n\nMedians over test seeds {list(values['test_seeds'])}, at most "
                         f"{values['max_interactions']:,} interactions per pole and seed.")


def plot_cartpole_interactions(run):
    """Interactions to a mean return of 195 on every held-out pole: one dot per test seed and
    method (at the top edge when not reached), the median as a bar. Two rows: the meta-critic
    and the actor-critic from scratch with each step size. Returns the figure."""
    from matplotlib import pyplot as plt  # imported here only: the library runs without it

    values = _values(run)
    reached = run.extra("details")["interactions_to_195"]
    lengths, cap = values["held_out_lengths"], values["max_interactions"]
    names = ["meta-critic"] + sorted(name for name in reached if name != "meta-critic")
    figure, axes = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, sharey=True)
    for axis, group in zip(axes, (names[:1] + names[1:2], names[:1] + names[2:])):
        width = 0.8 / len(group)
        for offset, name in enumerate(group):
            seeds = np.array(reached[name], dtype=float)  # (seeds, lengths), NaN: not reached
            shown = np.where(np.isnan(seeds), cap, seeds)
            x = np.arange(len(lengths)) + width * (offset - (len(group) - 1) / 2)
            axis.bar(x, np.median(shown, 0), width=width * 0.9, alpha=0.35, color=f"C{names.index(name)}",
                     label=f"{name} (median)")
            for row in shown:
                axis.plot(x, row, "o", ms=3, color=f"C{names.index(name)}")
        axis.axhline(cap, color="k", ls=":", lw=0.8)
        axis.set(ylabel="interactions to 195")
        axis.legend(fontsize=7, loc="upper left")
    axes[-1].set(xticks=range(len(lengths)), xticklabels=[f"ℓ = {length:g}" for length in lengths],
                 xlabel="held-out pole half-length (dots: test seeds; dotted line: budget, not reached)")
    figure.tight_layout()
    return figure


def plot_taen_codes(run):
    """The TAEN codes z of fresh actors that follow the frozen CartPole meta-critic (first two
    principal components, coloured by pole length), with the R² of pole length predicted linearly
    from z on poles the fit did not see. Returns the figure."""
    from matplotlib import pyplot as plt  # imported here only: the library runs without it

    embedding = run.extra("details")["embedding"]
    pc = np.array(embedding["pc"])
    figure, axis = plt.subplots(figsize=(5, 3.8))
    points = axis.scatter(pc[:, 0], pc[:, 1], c=embedding["lengths"], s=4, cmap="viridis")
    figure.colorbar(points, label="pole half-length ℓ")
    axis.set(xlabel="PC 1 of z", ylabel="PC 2 of z",
             title=f"stored run: R² of ℓ from z on held-out poles = {embedding['r2_length_from_z']:.2f}")
    axis.title.set_fontsize(9)
    figure.tight_layout()
    return figure


def plot_stored_strip(path, rows: int = 2):
    """A stored figure that is one long strip of panels (e.g. the CartPole learning curves, one
    panel per held-out pole), cut at blank columns into ``rows`` rows so that it stays readable at
    ≤ 1,400 pixels wide. The pixels are the stored ones. Returns the figure."""
    from matplotlib import pyplot as plt  # imported here only: the library runs without it

    image = plt.imread(str(path))
    blank = np.where((image[..., :3].min(axis=0) > 0.98).all(axis=-1))[0]  # all-white columns
    height, width = image.shape[:2]
    cuts = [0]
    for part in range(1, rows):
        wanted = part * width / rows
        cuts.append(int(blank[np.abs(blank - wanted).argmin()]) if len(blank) else int(wanted))
    cuts.append(width)
    widest = max(b - a for a, b in zip(cuts, cuts[1:]))
    figure, axes = plt.subplots(rows, 1, figsize=(widest / 100, rows * height / 100), dpi=100)
    for axis, start, stop in zip(np.atleast_1d(axes), cuts, cuts[1:]):
        axis.imshow(image[:, start:stop])
        axis.set(xlim=(0, widest), ylim=(height, 0))
        axis.axis("off")
    figure.subplots_adjust(0, 0, 1, 1, hspace=0.02)
    return figure


def plot_critic_loss(runs):
    """The critic's TD loss along Algorithm 1 (the stored ``critic_loss_curve``, log scale), one
    line per stored sinusoid run, labelled by its number of critic steps. Returns the figure."""
    from matplotlib import pyplot as plt  # imported here only: the library runs without it

    figure, axis = plt.subplots(figsize=(6, 3.2))
    for run in runs:
        values = _values(run)
        curve = np.asarray(values["critic_loss_curve"], dtype=float)
        steps = np.linspace(values["meta_steps"] / len(curve), values["meta_steps"], len(curve))
        axis.plot(steps, curve, "o-" if len(curve) < 3 else "-", ms=3, label=f"{values['meta_steps']:,} steps")
    axis.set(xscale="log", yscale="log", xlabel="Algorithm 1 step", ylabel="critic loss (stored curve)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    return figure
