import numpy as np
import pytest
import torch

from metacourse.models import MLP
from metacourse.rl import meta_critic as mc
from metacourse.rl import task_env
from metacourse.rl.envs import BatchedCartPole
from metacourse.rl.returns import gae
from metacourse.rl.task_env import Rollout
from metacourse.tasks.base import TaskBatch
from metacourse.tasks.sinusoid import SinusoidTasks


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is fastest on a shared CPU
    yield
    torch.set_num_threads(threads)


def test_config_rejects_bad_values_with_the_field_named():
    with pytest.raises(ValueError, match="gamma"):
        mc.Config(gamma=1.5)
    with pytest.raises(ValueError, match="trace_length"):
        mc.Config(trace_length=0)
    with pytest.raises(ValueError, match="actor_lr"):
        mc.Config(actor_lr=-1.0)


def test_critic_shapes_and_trace_errors():
    critic = mc.MetaCritic(4, 2, mc.Config(embedding_size=5))
    z = critic.encoder(torch.randn(3, 7, 4 + 2 + 1))
    assert z.shape == (3, 5)
    assert critic(torch.randn(3, 11, 4), torch.randn(3, 11, 2), z).shape == (3, 11)
    with pytest.raises(ValueError, match=r"\(tasks, steps, 7\)"):
        critic.encoder(torch.randn(3, 7, 5))


def test_actors_are_independent_fresh_copies():
    model = MLP(1, (8,), 1)
    actors = mc.init_actors(model, 3)
    weights = actors["0/weight"]
    assert weights.shape == (3, 8, 1) and not torch.equal(weights[0], weights[1])
    x = torch.randn(3, 5, 1)
    loss = mc.act(model, actors, x)[0].sum()  # only actor 0's output
    loss.backward()
    assert actors["0/weight"].grad[1:].abs().sum() == 0 and actors["0/weight"].grad[0].abs().sum() > 0
    single = torch.func.functional_call(model, {n: p[2] for n, p in mc.actor_params(actors).items()}, (x[2],))
    assert torch.allclose(mc.act(model, actors, x)[2], single)


def test_supervised_trace_is_x_prediction_and_negative_squared_error():
    model = MLP(1, (8,), 1)
    actors = mc.init_actors(model, 2)
    x, y = torch.randn(2, 4, 1), torch.randn(2, 4, 1)
    trace = mc.supervised_trace(model, actors, x, y)
    predictions = mc.act(model, actors, x).detach()
    assert torch.equal(trace[..., :1], x) and torch.allclose(trace[..., 1:2], predictions)
    assert torch.allclose(trace[..., 2:], -(predictions - y) ** 2)


def _constant_tasks(rng, constants):
    """Tasks y = c on x ∈ [−1, 1]: 2 labelled points and 10 query points each."""
    x = torch.as_tensor(rng.uniform(-1, 1, size=(len(constants), 12, 1)), dtype=torch.float32)
    y = torch.as_tensor(constants, dtype=torch.float32).view(-1, 1, 1).expand_as(x).clone()
    return TaskBatch(x[:, :2], y[:, :2], x[:, 2:], y[:, 2:])


def _algorithm_1_on_constants(critic, critic_optimizer, model, cfg, rng, low, high, lifetimes, steps):
    """Algorithm 1 on constant tasks c ~ U[low, high]: 16 fresh actors per lifetime."""
    noise = torch.Generator().manual_seed(0)
    for _ in range(lifetimes):
        actors = mc.init_actors(model, 16)
        actor_optimizer = torch.optim.Adam(actors.parameters(), lr=cfg.actor_lr)
        constants = rng.uniform(low, high, size=16)
        for _ in range(steps):
            mc.supervised_meta_step(critic, critic_optimizer, model, actors, actor_optimizer,
                                    _constant_tasks(rng, constants), cfg, noise)


def test_a_reward_trace_cannot_tell_a_label_from_its_mirror_image_a_labelled_trace_can():
    """r = −(ŷ − y)² is the same for y and 2ŷ − y: without labels the TAEN sees the same trace for
    both tasks, so the critic gives them the same Q and cannot say on which side of ŷ the label is."""
    torch.manual_seed(0)
    model = MLP(1, (8,), 1)
    actors = mc.init_actors(model, 2)
    x, y = torch.randn(2, 4, 1), torch.randn(2, 4, 1)
    mirror = 2 * mc.act(model, actors, x).detach() - y
    assert torch.allclose(mc.supervised_trace(model, actors, x, y), mc.supervised_trace(model, actors, x, mirror))
    labelled = mc.supervised_trace(model, actors, x, y, labels=True)
    assert labelled.shape == (2, 4, 4) and torch.equal(labelled[..., 3:], y)
    assert torch.equal(labelled[..., :3], mc.supervised_trace(model, actors, x, y))
    critic = mc.MetaCritic(1, 1, mc.Config(trace_labels=True))
    assert critic.trace_labels and critic.encoder.lstm.input_size == 4
    with pytest.raises(ValueError, match=r"\(tasks, steps, 4\)"):
        critic.encoder(mc.supervised_trace(model, actors, x, y))


@pytest.mark.parametrize("labels", [False, True])
def test_only_a_labelled_trace_teaches_labels_on_both_sides_of_the_actor(labels):
    """Constant tasks y = c with c ∈ [−2, 2]: fresh actors start near 0, where the reward alone
    says |c| but not its sign. After the same short Algorithm 1, the critic that reads the labels
    teaches fresh actors c; the one that reads only rewards cannot do better than staying near 0."""
    torch.manual_seed(0)
    cfg = mc.Config(embedding_size=4, encoder_hidden=16, critic_hidden=(32, 32), actor_lr=1e-2,
                    critic_lr=1e-2, trace_labels=labels)
    critic, model = mc.MetaCritic(1, 1, cfg), MLP(1, (16,), 1)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    rng = np.random.default_rng(0)
    _algorithm_1_on_constants(critic, critic_optimizer, model, cfg, rng, -2, 2, lifetimes=6, steps=20)
    test = _constant_tasks(rng, rng.uniform(-2, 2, size=64))
    torch.manual_seed(5)
    taught = mc.train_supervised_actors(model, test, 60, 1e-2, critic=critic)
    mse = ((mc.act(model, taught, test.x_query) - test.y_query) ** 2).mean().item()
    predict_zero = (test.y_query ** 2).mean().item()
    if labels:
        assert mse < 0.3 * predict_zero
    else:
        assert mse > 0.6 * predict_zero


def _rollout(n_tasks=2, carts=2, steps=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n_tasks, carts, steps)
    return Rollout(
        obs=torch.as_tensor(rng.normal(size=(*shape, 4)), dtype=torch.float32),
        actions=torch.as_tensor(rng.integers(2, size=shape)),
        rewards=torch.ones(shape),
        terminated=torch.as_tensor(rng.random(shape) < 0.3),
        truncated=torch.zeros(shape, dtype=torch.bool),
        next_obs=torch.as_tensor(rng.normal(size=(*shape, 4)), dtype=torch.float32))


def test_critic_loss_is_the_expected_sarsa_td_error():
    torch.manual_seed(1)
    critic, model = mc.MetaCritic(4, 2, mc.Config()), MLP(4, (8,), 2)
    actors, batch, gamma = mc.init_actors(model, 2), _rollout(), 0.9
    z = torch.randn(2, critic.encoder.head.out_features)
    loss = mc.critic_loss(critic, model, actors, batch, z, gamma)
    def q(state, action, task):
        return critic(state.view(1, 1, 4), torch.eye(2)[action].view(1, 1, 2), z[task:task + 1]).item()

    errors = []
    for task in range(2):  # two carts per task, each judged under its own task's actor and code
        params = {n: p[task] for n, p in mc.actor_params(actors).items()}
        for cart in range(2):
            for t in range(3):
                next_state = batch.next_obs[task, cart, t]
                policy = torch.softmax(torch.func.functional_call(model, params, (next_state,)), -1).reshape(-1)
                expected = sum(policy[a].item() * q(next_state, a, task) for a in range(2))
                target = 1.0 + gamma * (1.0 - float(batch.terminated[task, cart, t])) * expected
                errors.append((q(batch.obs[task, cart, t], int(batch.actions[task, cart, t]), task) - target) ** 2)
    assert loss.item() == pytest.approx(np.mean(errors), rel=1e-4)


def test_per_task_pools_every_step_of_a_tasks_carts():
    batch = _rollout(n_tasks=3, carts=2, steps=5)
    pooled = mc.per_task(batch.obs)
    assert pooled.shape == (3, 10, 4) and torch.equal(pooled[1, 5:], batch.obs[1, 1])
    assert mc.per_task(batch.rewards).shape == (3, 10)


def test_actor_gradient_is_the_all_action_policy_gradient():
    torch.manual_seed(2)
    critic, model = mc.MetaCritic(4, 2, mc.Config()), MLP(4, (8,), 2)
    actors = mc.init_actors(model, 1)
    states, z = torch.randn(1, 6, 4), torch.randn(1, mc.Config().embedding_size)
    logits = mc.act(model, actors, states)
    logits.retain_grad()
    # rebuild the loss from the same logits to read d loss / d logits
    q_values = torch.stack([critic(states, torch.eye(2)[a].expand(1, 6, 2), z) for a in range(2)], -1).detach()
    policy = torch.softmax(logits, -1)
    (-(policy * q_values).sum(-1).mean()).backward()
    closed_form = -policy * (q_values - (policy * q_values).sum(-1, keepdim=True)) / 6
    assert torch.allclose(logits.grad, closed_form.detach(), atol=1e-6)
    value = mc.actor_loss(critic, model, actors, states, z, entropy_coef=0.0)
    assert value.item() == pytest.approx(-(policy * q_values).sum(-1).mean().item(), rel=1e-5)


def test_actor_critic_targets_are_gae_with_time_limits_bootstrapped():
    torch.manual_seed(3)
    model, value_model = MLP(4, (8,), 2), MLP(4, (8,), 1)
    actors, values = mc.init_actors(model, 1), mc.init_actors(value_model, 1)
    batch = _rollout(n_tasks=1, carts=2, steps=5)
    batch.truncated[0, 0, 2], batch.terminated[0, 0, 2] = True, False
    loss = mc.actor_critic_loss(model, actors, value_model, values, batch, 0.9, 1.0, 0.0)
    assert torch.isfinite(loss)
    loss.backward()
    assert values["0/weight"].grad.abs().sum() > 0 and actors["0/weight"].grad.abs().sum() > 0
    # the bootstrapped reward at the truncated step uses V(s'), as GAE's last_value would
    with torch.no_grad():
        v_next = mc.act(value_model, values, mc.per_task(batch.next_obs)).reshape(2, 5)
        v = mc.act(value_model, values, mc.per_task(batch.obs)).reshape(2, 5)
    done = (batch.terminated | batch.truncated)[0]
    _, targets = gae(batch.rewards[0] + 0.9 * batch.truncated[0] * v_next, v, 0.9, 1.0, dones=done,
                     last_value=v_next[:, -1] * ~done[:, -1])
    assert targets[0, 2].item() == pytest.approx(1.0 + 0.9 * v_next[0, 2].item(), rel=1e-5)


def test_meta_critic_learns_a_task_family_and_teaches_fresh_actors():
    """Constant tasks y = c, c ∈ [1, 3] (positive, so r = −(ŷ − c)² tells c from ŷ): a short
    Algorithm 1 makes the critic predict rewards on new tasks much better, and fresh actors that
    follow it from two labelled points fit c better than untrained ones (seconds on a CPU)."""
    torch.manual_seed(0)
    cfg = mc.Config(embedding_size=4, encoder_hidden=16, critic_hidden=(32, 32), actor_lr=1e-2,
                    critic_lr=1e-2, action_noise=1.0)
    critic, model = mc.MetaCritic(1, 1, cfg), MLP(1, (16,), 1)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    rng = np.random.default_rng(0)
    test = _constant_tasks(rng, rng.uniform(1, 3, size=64))
    probe_actors, probe_actions = mc.init_actors(model, 64), 3 * torch.rand(64, 10, 1)

    def reward_error():
        with torch.no_grad():
            z = critic.encoder(mc.supervised_trace(model, probe_actors, test.x_support, test.y_support))
            return mc.supervised_critic_loss(critic, test.x_query, probe_actions, test.y_query, z).item()

    before = reward_error()
    _algorithm_1_on_constants(critic, critic_optimizer, model, cfg, rng, 1, 3, lifetimes=12, steps=25)
    assert reward_error() < 0.25 * before
    torch.manual_seed(5)
    untrained = mc.init_actors(model, 64)
    torch.manual_seed(5)
    taught = mc.train_supervised_actors(model, test, 60, 1e-2, critic=critic)
    mse = lambda a: ((mc.act(model, a, test.x_query) - test.y_query) ** 2).mean().item()  # noqa: E731
    assert mse(taught) < 0.75 * mse(untrained)


def _follow_the_critic(critic, model, actors):
    return lambda batch, trace: mc.actor_loss(critic, model, actors, mc.per_task(batch.obs),
                                              critic.encoder(trace), 0.01)


def test_learn_task_counts_interactions_and_reports_unreached_targets():
    torch.manual_seed(0)
    critic, model = mc.MetaCritic(4, 2, mc.Config(trace_length=5)), MLP(4, (8,), 2)
    env = BatchedCartPole([0.5, 1.0])
    actors = mc.init_actors(model, 2)
    optimizer = torch.optim.Adam(actors.parameters(), lr=1e-3)
    update = _follow_the_critic(critic, model, actors)
    out = mc.learn_task(env, model, actors, update, optimizer, carts_per_task=3, n_steps=4, max_interactions=120,
                        target_return=195.0, generator=torch.Generator().manual_seed(0), trace_length=5)
    assert np.isnan(out["interactions_to_target"]).all()  # nobody balances 195 steps in 120
    assert len(out["traces"]) == 120 // 12 and out["traces"][-1].shape == (2, 5, 7)
    steps = [i for task in out["episodes"] for i, _ in task]
    assert all(i % 12 == 0 and 12 <= i <= 120 for i in steps)
    out = mc.learn_task(env, model, actors, update, optimizer, carts_per_task=3, n_steps=4, max_interactions=120,
                        target_return=1.0, generator=torch.Generator().manual_seed(0), window=2, trace_length=5)
    assert np.all(out["interactions_to_target"] <= 120)


def test_finished_returns_follow_each_cart_across_rollouts():
    env = BatchedCartPole([0.5], horizon=3)
    obs = env.reset(2, torch.Generator().manual_seed(0))
    running, returns = torch.zeros(1, 2), []
    for _ in range(2):  # 2 × 4 steps: every cart finishes two 3-step episodes, carrying 2 steps over
        batch = task_env.play(env, lambda states, last: torch.zeros(1, 2, dtype=torch.long), 4, obs=obs,
                              restart=True)
        finished, running = mc.finished_returns(batch, running)
        returns.append(finished[0])
        obs = batch.final_obs
    assert returns == [[3.0, 3.0], [3.0, 3.0]] and running.tolist() == [[2.0, 2.0]]


def test_rl_meta_step_reduces_the_td_error_on_a_fixed_batch():
    torch.manual_seed(0)
    cfg = mc.Config(trace_length=5, critic_lr=3e-3, gamma=0.0)  # γ = 0: a fixed regression target
    critic, model = mc.MetaCritic(4, 2, cfg), MLP(4, (8,), 2)
    actors = mc.init_actors(model, 2)
    critic_optimizer = torch.optim.Adam(critic.parameters(), lr=cfg.critic_lr)
    actor_optimizer = torch.optim.Adam(actors.parameters(), lr=0.0)  # hold the actors still
    batch = _rollout()
    trace = mc.update_trace(None, batch, cfg.trace_length, 2)
    assert trace.shape == (2, 3, 7) and torch.equal(trace[1, :, :4], batch.obs[1, 0])  # cart 0 of each task
    first = mc.meta_step(critic, critic_optimizer, model, actors, actor_optimizer, batch, trace, cfg)
    for _ in range(60):
        last = mc.meta_step(critic, critic_optimizer, model, actors, actor_optimizer, batch, trace, cfg)
    assert last["critic_loss"] < 0.2 * first["critic_loss"]


def test_learn_task_needs_an_explicit_target_and_draws_starts_and_actions_from_its_generator():
    critic, model = mc.MetaCritic(4, 2, mc.Config(trace_length=5)), MLP(4, (8,), 2)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        actors = mc.init_actors(model, 2)
        update = _follow_the_critic(critic, model, actors)
        optimizer = torch.optim.Adam(actors.parameters(), lr=1e-3)
        env = BatchedCartPole([0.5, 1.0])
        with pytest.raises(TypeError, match="target_return"):
            mc.learn_task(env, model, actors, update, optimizer, 3, 4, 48)
        with pytest.raises(TypeError, match="195.0 for CartPole"):
            mc.learn_task(env, model, actors, update, optimizer, 3, 4, 48, None, torch.Generator())
        torch.manual_seed(123 + len(runs))  # the global generator is not used
        out = mc.learn_task(env, model, actors, update, optimizer, 3, 4, 48, target_return=10.0,
                            generator=torch.Generator().manual_seed(5), trace_length=5)
        runs.append(out["traces"])
    assert len(runs[0]) == len(runs[1]) and all(torch.equal(a, b) for a, b in zip(*runs))


def test_supervised_meta_step_noise_comes_from_its_generator():
    losses = []
    for global_seed in (1, 2):
        torch.manual_seed(0)
        cfg = mc.Config(action_noise=0.5)
        critic, model = mc.MetaCritic(1, 1, cfg), MLP(1, (8,), 1)
        actors = mc.init_actors(model, 2)
        tasks = SinusoidTasks().sample(2, 5, 5, np.random.default_rng(0))
        torch.manual_seed(global_seed)
        metrics = mc.supervised_meta_step(critic, torch.optim.Adam(critic.parameters()), model, actors,
                                          torch.optim.Adam(actors.parameters()), tasks, cfg,
                                          torch.Generator().manual_seed(7))
        losses.append(metrics["critic_loss"])
    assert losses[0] == losses[1]
