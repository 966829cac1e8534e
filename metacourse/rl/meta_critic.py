"""Meta-Critic Networks: learn one critic that teaches a fresh actor any task of a family.

Sung, Zhang, Xiang, Hospedales, Yang, "Learning to Learn: Meta-Critic Networks for Sample Efficient
Learning", arXiv:1706.09529 (2017). Each task T_i gets its own actor π_φi; one meta-critic, shared
by all tasks, judges every actor's actions. It is a Task-Actor Encoder Network (TAEN) that reads the
actor's last k (s, a, r) triplets into z, and a Meta-Value Network (MVN) Q_ω(s, a, z).

    (1) task code        z_i = TAEN_ψ((s, a, r)_{t−k+1..t} of actor i)              (LSTM, last state)
    (2) actor step       φ_i ← φ_i + α ∇_φ E_s[ Σ_a π_φi(a | s) Q_ω(s, a, z_i) ] (+ c_H entropy)
    (3) TD target        y = r + γ (1 − d) Σ_a' π_φi(a' | s') Q_ω(s', a', z_i)     (no gradient)
    (4) critic step      (ω, ψ) ← (ω, ψ) − β ∇ mean_{tasks, steps} (Q_ω(s, a, z_i) − y)²
    (5) supervised case  one step (γ = 0, d = 1): s = x, a = ŷ = f_φ(x), r = −(ŷ − y)², and (2) is
                         φ ← φ + α ∇_φ mean_x Q_ω(x, f_φ(x), z) — the critic is a learned loss
    Meta-learning stage (Algorithm 1): M tasks get fresh actors; every step trains each actor
    with (2) and the critic with (4); every ``actor_lifetime`` steps new tasks and actors.
    Meta-testing stage (Algorithm 2): a fresh actor on an unseen task, trained with (2) only.

| symbol | identifier |
|---|---|
| φ_i, α | ``actors`` (parameters stacked over tasks), ``cfg.actor_lr`` |
| ω, ψ, β | ``MetaCritic.value``, ``MetaCritic.encoder``, ``cfg.critic_lr`` |
| z, k | ``z``, ``cfg.trace_length`` |
| γ, c_H | ``cfg.gamma``, ``cfg.entropy_coef`` |
| s, a, r, s', d | ``batch.obs``, ``.actions``, ``.rewards``, ``.next_obs``, ``.terminated`` of a ``task_env.Rollout`` |
|  | (index [task, cart, step]; ``per_task`` pools a task's carts and steps for the sums over states) |

Lecture: lectures/08_meta_critic.ipynb.
Differs from actor-critic (``actor_critic_loss``) by sharing the critic across tasks and
conditioning it on the actor's trace, so only the actor is learned from scratch on a new task.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..functional import forward
from ..models import MLP
from ..tasks.base import TaskBatch
from ..utils import check_nonnegative, check_positive_int
from .ppo import normalize
from .returns import gae
from .task_env import Rollout, TaskEnv, play

__all__ = ["Config", "TaskActorEncoder", "MetaCritic", "init_actors", "actor_params", "act",
           "supervised_trace", "supervised_actor_loss", "supervised_critic_loss",
           "supervised_meta_step", "train_supervised_actors", "per_task", "sample_actions", "collect",
           "finished_returns", "update_trace", "critic_loss", "actor_loss", "actor_critic_loss", "meta_step",
           "learn_task"]


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of the meta-critic, its actors and (RL) the TD learning of Q."""

    embedding_size: int = 16
    """Size of the task-actor code z."""
    encoder_hidden: int = 64
    """LSTM units of the TAEN."""
    critic_hidden: tuple[int, ...] = (128, 128)
    """Hidden widths of the MVN, an MLP on [s, a, z]."""
    trace_length: int = 20
    """k, the (s, a, r) triplets the TAEN reads (supervised: the labelled points, whatever k)."""
    gamma: float = 0.95
    """γ of the TD target (3); the supervised case is one step and ignores it."""
    actor_lr: float = 1e-3
    """α, Adam's step size for the actors."""
    critic_lr: float = 1e-3
    """β, Adam's step size for the meta-critic (MVN and TAEN together)."""
    entropy_coef: float = 0.01
    """c_H, entropy bonus of discrete actors."""
    action_noise: float = 1.0
    """Supervised: σ of the Gaussian noise added to ŷ on the critic's training points, so the
    critic sees actions around the actor's and learns the slope of the reward."""
    trace_labels: bool = False
    """Supervised: the trace also carries each point's label, (x, ŷ, r, y). Without it the trace
    fixes y only up to a mirror image: r = −(ŷ − y)² is the same for y and 2ŷ − y, so the critic
    cannot tell on which side of the actor's prediction the label lies (lecture 08, §3)."""

    def __post_init__(self) -> None:
        for name in ("embedding_size", "encoder_hidden", "trace_length"):
            check_positive_int(name, getattr(self, name))
        for name in ("actor_lr", "critic_lr", "entropy_coef", "action_noise"):
            check_nonnegative(name, getattr(self, name))
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma}")


class TaskActorEncoder(nn.Module):
    """(1) TAEN: an LSTM over (B, k, D) triplets; its last hidden state, mapped linearly, is z."""

    def __init__(self, input_size: int, hidden_size: int, embedding_size: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, batch_first=True)
        self.head = nn.Linear(hidden_size, embedding_size)

    def forward(self, trace: Tensor) -> Tensor:
        if trace.dim() != 3 or trace.shape[-1] != self.lstm.input_size:
            raise ValueError(f"a trace has shape (tasks, steps, {self.lstm.input_size}) = (s, a, r) "
                             f"per step, got {tuple(trace.shape)}")
        _, (hidden, _) = self.lstm(trace)
        return self.head(hidden[-1])


class MetaCritic(nn.Module):
    """TAEN (``encoder``) and MVN (``value``): Q(s, a, z) for a batch of tasks."""

    def __init__(self, state_size: int, action_size: int, cfg: Config = Config()) -> None:
        super().__init__()
        self.state_size = check_positive_int("state_size", state_size)
        self.action_size = check_positive_int("action_size", action_size)
        self.trace_labels = cfg.trace_labels
        label_size = action_size if cfg.trace_labels else 0
        self.encoder = TaskActorEncoder(state_size + action_size + 1 + label_size, cfg.encoder_hidden,
                                        cfg.embedding_size)
        self.value = MLP(state_size + action_size + cfg.embedding_size, cfg.critic_hidden, 1)

    def forward(self, states: Tensor, actions: Tensor, z: Tensor) -> Tensor:
        """Q for states (M, N, S) and actions (M, N, A) of M tasks with codes z (M, E): (M, N)."""
        codes = z.unsqueeze(1).expand(-1, states.shape[1], -1)
        return self.value(torch.cat([states, actions, codes], dim=-1)).squeeze(-1)


def init_actors(model: nn.Module, n_actors: int) -> nn.ParameterDict:
    """Parameters of ``n_actors`` freshly initialised copies of ``model``, stacked on a leading
    task axis (Adam on them is n independent Adams: its update is elementwise)."""
    copies = [copy.deepcopy(model) for _ in range(check_positive_int("n_actors", n_actors))]
    for module in (m for c in copies for m in c.modules()):
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    stacked, _ = torch.func.stack_module_state(copies)
    return nn.ParameterDict({name.replace(".", "/"): nn.Parameter(p) for name, p in stacked.items()})


def actor_params(actors: nn.ParameterDict) -> dict[str, Tensor]:
    """The stacked parameters under the model's own names, for ``functional.forward``."""
    return {name.replace("/", "."): p for name, p in actors.items()}


def act(model: nn.Module, actors: nn.ParameterDict, inputs: Tensor) -> Tensor:
    """Every actor on its own task's inputs (M, N, D): outputs (M, N, ...), differentiable in φ."""
    return forward(model, actor_params(actors), inputs, batched=True)


# ---- the supervised case: one step, s = x, a = ŷ, r = −(ŷ − y)² (5) ----

def supervised_trace(model: nn.Module, actors: nn.ParameterDict, x: Tensor, y: Tensor,
                     labels: bool = False) -> Tensor:
    """The actors' (x, ŷ, r) on labelled points x, y (M, K, 1): a trace (M, K, 3), no gradient;
    with ``labels`` (x, ŷ, r, y), (M, K, 4) — see ``Config.trace_labels``."""
    with torch.no_grad():
        predictions = act(model, actors, x)
        return torch.cat([x, predictions, -(predictions - y) ** 2, *([y] if labels else [])], dim=-1)


def supervised_actor_loss(critic: MetaCritic, model: nn.Module, actors: nn.ParameterDict,
                          x: Tensor, z: Tensor) -> Tensor:
    """(5) −mean_x Q(x, f_φ(x), z) per actor, summed over actors (each gets its own gradient)."""
    return -critic(x, act(model, actors, x), z).mean(dim=1).sum()


def supervised_critic_loss(critic: MetaCritic, x: Tensor, actions: Tensor, y: Tensor, z: Tensor
                           ) -> Tensor:
    """(4) with γ = 0: mean (Q(x, a, z) − r)², r = −(a − y)² for the given actions a."""
    rewards = -((actions - y) ** 2).squeeze(-1)
    return ((critic(x, actions, z) - rewards) ** 2).mean()


def supervised_meta_step(critic: MetaCritic, critic_optimizer: torch.optim.Optimizer,
                         model: nn.Module, actors: nn.ParameterDict,
                         actor_optimizer: torch.optim.Optimizer, tasks: TaskBatch, cfg: Config,
                         generator: torch.Generator) -> dict[str, float]:
    """One step of Algorithm 1: support = the trace's labelled points; query = more labelled
    points on which the critic is trained (noisy actions, drawn with ``generator``) and the actors
    follow it."""
    trace = supervised_trace(model, actors, tasks.x_support, tasks.y_support, critic.trace_labels)
    z = critic.encoder(trace)
    actor_optimizer.zero_grad(set_to_none=True)
    supervised_actor_loss(critic, model, actors, tasks.x_query, z.detach()).backward()
    actor_optimizer.step()
    with torch.no_grad():
        x = torch.cat([tasks.x_support, tasks.x_query], dim=1)
        actions = act(model, actors, x)
        noise = torch.randn(actions.shape, generator=generator, dtype=actions.dtype, device=actions.device)
        actions = actions + cfg.action_noise * noise
    loss = supervised_critic_loss(critic, x, actions, torch.cat([tasks.y_support, tasks.y_query], 1), z)
    critic_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    critic_optimizer.step()
    return {"critic_loss": loss.item()}


def train_supervised_actors(model: nn.Module, tasks: TaskBatch, steps: int, actor_lr: float,
                            critic: MetaCritic | None = None, x_unlabelled: Tensor | None = None
                            ) -> nn.ParameterDict:
    """Algorithm 2: fresh actors trained ``steps`` Adam steps on the support sets. With a critic,
    they follow Q(x, f(x), z) at the support points (and at ``x_unlabelled``, whose labels are
    never used); without, they minimise the plain MSE (the baseline). Returns the actors."""
    actors = init_actors(model, len(tasks))
    optimizer = torch.optim.Adam(actors.parameters(), lr=actor_lr)
    x_actor = tasks.x_support if x_unlabelled is None else torch.cat([tasks.x_support, x_unlabelled], 1)
    for _ in range(check_positive_int("steps", steps)):
        if critic is None:
            loss = ((act(model, actors, tasks.x_support) - tasks.y_support) ** 2).mean(dim=(1, 2)).sum()
        else:
            with torch.no_grad():
                z = critic.encoder(supervised_trace(model, actors, tasks.x_support, tasks.y_support,
                                                    critic.trace_labels))
            loss = supervised_actor_loss(critic, model, actors, x_actor, z)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return actors


# ---- reinforcement learning: discrete actions, TD-learned Q (1)–(4); any env of rl.task_env with
# ``n_actions`` discrete actions, E carts (the episode axis) per task, each a stream of episodes ----

def per_task(value: Tensor) -> Tensor:
    """A ``Rollout`` field (T, E, steps, ...) as (T, E·steps, ...): every step of a task's carts together."""
    return value.reshape(value.shape[0], -1, *value.shape[3:])


def sample_actions(model: nn.Module, actors: nn.ParameterDict, obs: Tensor, generator: torch.Generator) -> Tensor:
    """Actor i's action in every cart of task i, a ~ π_φi(·|s) drawn with ``generator``: obs (T, E, S)
    → actions (T, E)."""
    probs = torch.softmax(act(model, actors, obs), dim=-1)
    return torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, True, generator=generator).reshape(obs.shape[:2])


def collect(env: TaskEnv, model: nn.Module, actors: nn.ParameterDict, obs: Tensor, n_steps: int,
            generator: torch.Generator) -> Rollout:
    """``n_steps`` of actor i in the E carts of task i, going on from ``obs`` (T, E, S) (a reset's, or
    the last rollout's ``final_obs``); ended episodes restart at once (the env's generator draws the
    starts), actions are drawn with ``generator``. One row of the episode axis is one cart's stream."""
    return play(env, lambda states, last: sample_actions(model, actors, states, generator), n_steps,
                obs=obs, restart=True)


def finished_returns(batch: Rollout, running: Tensor) -> tuple[list[list[float]], Tensor]:
    """The returns of the episodes that ended in ``batch`` (a stream rollout), per task, cart by cart
    in the order they ended; ``running`` (T, E) holds each cart's reward so far in its unfinished
    episode and is returned updated, for the next rollout."""
    returns: list[list[list[float]]] = [[[] for _ in range(running.shape[1])] for _ in range(running.shape[0])]
    running = running.clone()
    for t in range(batch.n_steps):
        running += batch.rewards[..., t]
        for task, cart in batch.ended[..., t].nonzero().tolist():
            returns[task][cart].append(float(running[task, cart]))
        running[batch.ended[..., t]] = 0.0
    return [[r for cart in task for r in cart] for task in returns], running


def update_trace(trace: Tensor | None, batch: Rollout, trace_length: int, n_actions: int) -> Tensor:
    """The last k (s, onehot a, r) triplets of each task's first cart, (T, k, S + A + 1)."""
    new = torch.cat([batch.obs[:, 0], nn.functional.one_hot(batch.actions[:, 0], n_actions),
                     batch.rewards[:, 0].unsqueeze(-1)], dim=-1).to(torch.get_default_dtype())
    joined = new if trace is None else torch.cat([trace, new], dim=1)
    return joined[:, -trace_length:]


def _all_actions(critic: MetaCritic, states: Tensor, z: Tensor) -> Tensor:
    """Q(s, a, z) for every discrete action: (M, N, A)."""
    eye = torch.eye(critic.action_size, dtype=states.dtype)
    return torch.stack([critic(states, eye[a].expand(*states.shape[:2], -1), z)
                        for a in range(critic.action_size)], dim=-1)


def critic_loss(critic: MetaCritic, model: nn.Module, actors: nn.ParameterDict, batch: Rollout,
                z: Tensor, gamma: float) -> Tensor:
    """(3)–(4) Expected-SARSA TD error of Q under each task's own actor, mean over tasks and steps.
    Truncated episodes (the time limit) bootstrap; terminated ones do not."""
    states, next_states = per_task(batch.obs), per_task(batch.next_obs)
    actions = nn.functional.one_hot(per_task(batch.actions), critic.action_size)
    with torch.no_grad():
        policy = torch.softmax(act(model, actors, next_states), dim=-1)
        next_value = (policy * _all_actions(critic, next_states, z)).sum(-1)
        alive = 1.0 - per_task(batch.terminated).to(next_value.dtype)
        target = per_task(batch.rewards) + gamma * alive * next_value
    return ((critic(states, actions.to(states.dtype), z) - target) ** 2).mean()


def actor_loss(critic: MetaCritic, model: nn.Module, actors: nn.ParameterDict, states: Tensor,
               z: Tensor, entropy_coef: float) -> Tensor:
    """(2) −E_s[Σ_a π(a|s) Q(s, a, z)] − c_H H(π), per actor, summed over actors; Q is frozen."""
    logits = act(model, actors, states)
    with torch.no_grad():
        q_values = _all_actions(critic, states, z)
    policy, log_policy = torch.softmax(logits, -1), torch.log_softmax(logits, -1)
    entropy = -(policy * log_policy).sum(-1)
    return -((policy * q_values).sum(-1) + entropy_coef * entropy).mean(dim=1).sum()


def actor_critic_loss(model: nn.Module, actors: nn.ParameterDict, value_model: nn.Module,
                      values: nn.ParameterDict, batch: Rollout, gamma: float,
                      gae_lambda: float, entropy_coef: float) -> Tensor:
    """The baseline the meta-critic replaces: a standard actor-critic whose own critic V(s) is
    learned from scratch on the task. GAE advantages (``returns.gae``, time-limit ends
    bootstrapped by adding γV(s') to their reward), policy gradient, value regression."""
    shape = batch.rewards.shape  # (T, E, steps)
    state_values = act(value_model, values, per_task(batch.obs)).reshape(shape)
    with torch.no_grad():
        next_values = act(value_model, values, per_task(batch.next_obs)).reshape(shape)
    rewards = batch.rewards + gamma * batch.truncated * next_values
    advantages, targets = gae(rewards, state_values, gamma, gae_lambda, dones=batch.ended,
                              last_value=next_values[..., -1] * ~batch.ended[..., -1])
    log_policy = torch.log_softmax(act(model, actors, per_task(batch.obs)), -1).reshape(*shape, -1)
    chosen = log_policy.gather(-1, batch.actions.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_policy.exp() * log_policy).sum(-1)
    advantages = normalize(advantages, dim=(1, 2))  # per task
    task_sum = lambda tensor: tensor.mean(dim=(1, 2)).sum()  # noqa: E731
    return task_sum(-chosen * advantages - entropy_coef * entropy) + 0.5 * task_sum((state_values - targets) ** 2)


def meta_step(critic: MetaCritic, critic_optimizer: torch.optim.Optimizer, model: nn.Module,
              actors: nn.ParameterDict, actor_optimizer: torch.optim.Optimizer, batch: Rollout,
              trace: Tensor, cfg: Config) -> dict[str, float]:
    """One step of Algorithm 1 on a rollout: each actor follows the critic (2), then the critic
    and TAEN take a TD step (4)."""
    z = critic.encoder(trace)
    actor_optimizer.zero_grad(set_to_none=True)
    actor_loss(critic, model, actors, per_task(batch.obs), z.detach(), cfg.entropy_coef).backward()
    actor_optimizer.step()
    loss = critic_loss(critic, model, actors, batch, z, cfg.gamma)
    critic_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    critic_optimizer.step()
    return {"critic_loss": loss.item(), "mean_reward": float(batch.rewards.mean())}


def learn_task(env: TaskEnv, model: nn.Module, actors: nn.ParameterDict, update: Callable[..., Tensor],
               optimizer: torch.optim.Optimizer, carts_per_task: int, n_steps: int, max_interactions: int,
               target_return: float, generator: torch.Generator, window: int = 10,
               trace_length: int = 20) -> dict[str, np.ndarray]:
    """Algorithm 2 (and the from-scratch baseline with another ``update``): each task's actor
    learns online in ``carts_per_task`` carts; ``update(batch, trace) -> loss`` is minimised after
    every ``n_steps`` steps. ``generator`` draws the carts' starts and the actions. Returns, per
    task, the interactions (all its carts' steps) at which the mean return of its last ``window``
    episodes first reached ``target_return`` (NaN if never; the task family's own threshold, e.g.
    195 for CartPole-v0), every episode's return as (interactions, return) pairs, and the trace
    after every update (for the TAEN's codes)."""
    if not isinstance(target_return, int | float) or isinstance(target_return, bool) or not np.isfinite(target_return):
        raise TypeError(f"target_return must be a finite number (the return that counts as solved, e.g. 195.0 "
                        f"for CartPole-v0), got {target_return!r}")
    obs, trace = env.reset(carts_per_task, generator), None
    running = torch.zeros(env.n_tasks, carts_per_task)
    reached = np.full(env.n_tasks, np.nan)
    history: list[list[tuple[int, float]]] = [[] for _ in range(env.n_tasks)]
    traces: list[Tensor] = []
    for interactions in range(n_steps * carts_per_task, max_interactions + 1, n_steps * carts_per_task):
        batch = collect(env, model, actors, obs, n_steps, generator)
        obs, trace = batch.final_obs, update_trace(trace, batch, trace_length, env.n_actions)
        traces.append(trace)
        optimizer.zero_grad(set_to_none=True)
        update(batch, trace).backward()
        optimizer.step()
        finished, running = finished_returns(batch, running)
        for task, returns in enumerate(finished):
            history[task] += [(interactions, r) for r in returns]
            recent = [r for _, r in history[task][-window:]]
            if np.isnan(reached[task]) and len(recent) == window and np.mean(recent) >= target_return:
                reached[task] = interactions
        if not np.isnan(reached).any():
            break
    return {"interactions_to_target": reached, "episodes": history, "traces": traces}
