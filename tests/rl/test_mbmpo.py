import numpy as np
import pytest
import torch

from metacourse.functional import params_of
from metacourse.rl import maml_rl, mbmpo
from metacourse.rl.envs import BatchedPendulum, pendulum_reward, sample_pendulums
from metacourse.rl.envs.pendulum import MAX_TORQUE
from metacourse.rl.task_env import Rollout, check_task_env, play

pytestmark = pytest.mark.usefixtures("one_thread")


def linear_system_data(n_episodes: int = 20, horizon: int = 30, seed: int = 0) -> mbmpo.RealData:
    """Episodes of s' = A s + B a with random actions, as real data."""
    rng = np.random.default_rng(seed)
    a_matrix = np.array([[0.9, 0.1, 0.0], [-0.1, 0.9, 0.05], [0.0, 0.0, 0.95]])
    b_matrix = np.array([[0.0], [0.1], [0.2]])
    obs = np.zeros((1, n_episodes, horizon, 3), dtype=np.float32)
    actions = rng.uniform(-1, 1, size=(1, n_episodes, horizon, 1)).astype(np.float32)
    obs[:, :, 0] = rng.uniform(-1, 1, size=(1, n_episodes, 3))
    for t in range(horizon - 1):
        obs[:, :, t + 1] = obs[:, :, t] @ a_matrix.T + actions[:, :, t] @ b_matrix.T
    data = mbmpo.RealData()
    zeros, flags = torch.zeros(1, n_episodes, horizon), torch.zeros(1, n_episodes, horizon, dtype=torch.bool)
    data.add(Rollout(torch.as_tensor(obs), torch.as_tensor(actions), zeros, flags, flags))
    return data, a_matrix, b_matrix


def test_ensemble_fits_a_known_linear_system_and_counts_every_real_step():
    torch.manual_seed(0)
    data, a_matrix, b_matrix = linear_system_data()
    assert data.n_steps == 20 * 30  # every step counts, although the last of each episode is not a transition
    assert len(data.tensors()[0]) == 20 * 29
    ensemble = mbmpo.DynamicsEnsemble(3, 1, n_models=3, hidden=(32, 32))
    cfg = mbmpo.Config(n_models=3, max_model_epochs=60, patience=10, model_lr=3e-3, model_batch_size=128)
    metrics = mbmpo.fit_ensemble(ensemble, data, cfg, torch.Generator().manual_seed(0))
    assert metrics["model_val_mse"] < 0.02  # standardised units
    test_obs = torch.as_tensor(np.random.default_rng(1).uniform(-1, 1, (3, 100, 3)), dtype=torch.float32)
    test_act = torch.as_tensor(np.random.default_rng(2).uniform(-1, 1, (3, 100, 1)), dtype=torch.float32)
    expected = test_obs @ torch.as_tensor(a_matrix.T, dtype=torch.float32) \
        + test_act @ torch.as_tensor(b_matrix.T, dtype=torch.float32)
    predicted = ensemble.predict(test_obs, test_act)
    assert predicted.shape == (3, 100, 3)
    assert (predicted - expected).abs().mean() < 0.03


def test_models_of_the_ensemble_differ_and_each_moves_its_own_row():
    torch.manual_seed(0)
    ensemble = mbmpo.DynamicsEnsemble(3, 1, n_models=4, hidden=(16,))
    obs, actions = torch.randn(1, 5, 3).expand(4, 5, 3), torch.randn(1, 5, 1).expand(4, 5, 1)
    predicted = ensemble.predict(obs, actions)
    assert not torch.allclose(predicted[0], predicted[1])  # independent initialisations
    alone = ensemble.predict(obs[2:3].expand(4, 5, 3), actions[2:3].expand(4, 5, 1))
    assert torch.allclose(alone[2], predicted[2])


def small_setup(seed: int = 0):
    torch.manual_seed(seed)
    policy = maml_rl.GaussianPolicy(3, 1, (16, 16))
    ensemble = mbmpo.DynamicsEnsemble(3, 1, n_models=3, hidden=(32,))
    data = mbmpo.RealData()
    theta = {n: p.detach() for n, p in params_of(policy).items()}
    real = BatchedPendulum(*sample_pendulums(np.random.default_rng(seed), 3))
    data.add(maml_rl.rollout(policy, theta, real, 1, torch.Generator().manual_seed(seed)), 2.0)
    cfg = mbmpo.Config(n_models=3, max_model_epochs=3, imagined_episodes=3, meta_steps=1,
                       maml=maml_rl.Config(inner_lr=0.01, first_order=True))
    mbmpo.fit_ensemble(ensemble, data, cfg, torch.Generator().manual_seed(seed))
    return policy, ensemble, data, cfg


def test_imagined_rollouts_are_deterministic_under_a_seed_and_take_no_real_step():
    policy, ensemble, data, cfg = small_setup()
    steps_before = data.n_steps
    env = mbmpo.ImaginedEnv(ensemble, data, pendulum_reward, horizon=30, action_clip=2.0)
    theta = {n: p.detach() for n, p in params_of(policy).items()}
    first = mbmpo.imagine(policy, theta, env, 4, torch.Generator().manual_seed(7))
    second = mbmpo.imagine(policy, theta, env, 4, torch.Generator().manual_seed(7))
    other = mbmpo.imagine(policy, theta, env, 4, torch.Generator().manual_seed(8))
    assert first.obs.shape == (3, 4, 30, 3)  # (models, episodes, horizon, obs)
    assert torch.equal(first.obs, second.obs) and torch.equal(first.rewards, second.rewards)
    assert not torch.equal(first.obs, other.obs)
    assert data.n_steps == steps_before
    # every imagined reward is the known reward of the imagined state and action
    assert torch.allclose(first.rewards, pendulum_reward(first.obs, first.actions.clamp(-2, 2)))
    # models differ, so the same start and noise give different imagined futures
    assert not torch.allclose(first.obs[0, :, -1], first.obs[1, :, -1])
    with pytest.raises(ValueError, match="n_episodes"):
        env.reset(0, torch.Generator())
    with pytest.raises(TypeError, match="torch.Generator"):
        env.reset(2, None)


def test_imagined_env_keeps_the_task_env_contract_and_pads_after_the_horizon():
    _, ensemble, data, _ = small_setup()
    env = mbmpo.ImaginedEnv(ensemble, data, pendulum_reward, horizon=2, action_clip=2.0)
    check_task_env(env, lambda obs: torch.ones(*obs.shape[:-1], 1), n_steps=5)
    record = play(env, lambda obs, last: torch.ones(*obs.shape[:-1], 1), 3, 2, torch.Generator().manual_seed(0))
    assert record.truncated[..., 1].all() and not record.terminated.any()
    assert record.rewards[..., 2].eq(0).all() and torch.equal(record.obs[..., 2, :], record.next_obs[..., 1, :])
    assert torch.equal(record.next_obs[..., 2, :], record.next_obs[..., 1, :])  # padding: nothing moves


def test_one_iteration_collects_k_real_episodes_with_the_adapted_policies():
    policy, ensemble, data, cfg = small_setup()
    steps_before = data.n_steps
    real = BatchedPendulum(*sample_pendulums(np.random.default_rng(5), 3))
    metrics = mbmpo.iteration(policy, ensemble, data, real, pendulum_reward, cfg,
                              torch.Generator().manual_seed(0), action_clip=2.0)
    assert data.n_steps - steps_before == 3 * 1 * 200  # K models x 1 episode x H steps, exactly
    assert metrics["real_steps"] == data.n_steps
    assert np.isfinite(metrics["model_val_mse"]) and np.isfinite(metrics["imagined_return_after"])
    assert all(torch.isfinite(p).all() for p in params_of(policy).values())


def test_config_and_data_errors_say_how_to_fix_them():
    with pytest.raises(ValueError, match="validation_fraction"):
        mbmpo.Config(validation_fraction=1.0)
    with pytest.raises(ValueError, match="collect_real"):
        mbmpo.RealData().tensors()


def test_imagined_states_stay_in_the_range_of_the_real_data_even_when_a_model_diverges():
    policy, ensemble, data, cfg = small_setup()
    ensemble.out_std.mul_(1e6)  # a wildly wrong model
    env = mbmpo.ImaginedEnv(ensemble, data, pendulum_reward, horizon=20, action_clip=2.0)
    theta = {n: p.detach() for n, p in params_of(policy).items()}
    imagined = mbmpo.imagine(policy, theta, env, 2, torch.Generator().manual_seed(0))
    real_obs = data.tensors()[0]
    span = real_obs.max(0).values - real_obs.min(0).values
    assert torch.isfinite(imagined.rewards).all()
    assert (imagined.obs <= real_obs.max(0).values + 0.1 * span + 1e-6).all()


# ---- models with a history (1h) ----

def pendulum_episodes(masses, lengths, n_episodes: int = 4, seed: int = 0) -> Rollout:
    """Episodes of random torques on the given pendulums, (T, E, 200, ·), as real data."""
    return mbmpo.random_episodes(BatchedPendulum(np.asarray(masses), np.asarray(lengths)), n_episodes,
                                 MAX_TORQUE, torch.Generator().manual_seed(seed))


def test_history_context_lists_the_previous_transitions_most_recent_first():
    obs, actions = torch.arange(30.0).reshape(1, 10, 3), -torch.arange(10.0).reshape(1, 10, 1)
    context = mbmpo.history_context(obs, actions, 2)
    assert context.shape == (1, 8, 8)
    t = 5  # row t − h
    expected = torch.cat([obs[0, t - 1], actions[0, t - 1], obs[0, t - 2], actions[0, t - 2]])
    assert torch.equal(context[0, t - 2], expected)


def test_real_data_with_history_keeps_each_transitions_context_and_starts_h_steps_in():
    trajectories = pendulum_episodes([1.0, 0.7], [1.0, 1.3], n_episodes=3)
    data = mbmpo.RealData(history=2)
    data.add(trajectories, action_clip=2.0)
    obs, actions, next_obs = data.tensors()
    context = data.context_tensor()
    assert data.n_steps == 2 * 3 * 200 and len(obs) == 2 * 3 * 197 == len(context)
    episode = trajectories.obs[1, 2]  # task 1, episode 2: rows 5 · 197 … of D
    row = 5 * 197 + 10  # its step t = 12
    assert torch.equal(obs[row], episode[12]) and torch.equal(next_obs[row], episode[13])
    assert torch.equal(context[row, :3], episode[11]) and torch.equal(context[row, 4:7], episode[10])
    assert torch.equal(torch.cat(data.starts)[5], episode[2])
    assert mbmpo.RealData().context_tensor() is None


def test_imagined_step_with_history_feeds_the_context_and_shifts_it():
    torch.manual_seed(0)
    data = mbmpo.RealData(history=2)
    data.add(pendulum_episodes([1.0], [1.0], n_episodes=2), action_clip=2.0)
    ensemble = mbmpo.DynamicsEnsemble(3, 1, n_models=3, hidden=(16,), history=2)
    imagined = mbmpo.ImaginedEnv(ensemble, data, pendulum_reward, 200, action_clip=2.0)
    obs = imagined.reset(4, torch.Generator().manual_seed(0))
    context = imagined.context.clone()
    assert context.shape == (3, 4, 8)
    actions = torch.full((3, 4, 1), 5.0)  # clipped to 2 before the model and the context see it
    next_obs, *_ = imagined.step(actions)
    by_hand = ensemble.predict(obs, actions.clamp(-2, 2), context).clamp(imagined.low, imagined.high)
    assert torch.allclose(next_obs, by_hand)
    assert torch.equal(imagined.context[..., :4], torch.cat([obs, actions.clamp(-2, 2)], -1))
    assert torch.equal(imagined.context[..., 4:], context[..., :4])


def test_history_must_match_between_data_ensemble_and_calls():
    ensemble = mbmpo.DynamicsEnsemble(3, 1, n_models=2, hidden=(8,), history=1)
    with pytest.raises(ValueError, match="pass context"):
        ensemble.predict(torch.zeros(2, 1, 3), torch.zeros(2, 1, 1))
    data = mbmpo.RealData()
    data.add(pendulum_episodes([1.0], [1.0], n_episodes=1))
    with pytest.raises(ValueError, match="same history"):
        mbmpo.fit_ensemble(ensemble, data, mbmpo.Config(n_models=2, max_model_epochs=1))
    with pytest.raises(ValueError, match="model_history"):
        mbmpo.Config(model_history=-1)


def test_a_history_lets_the_models_tell_pendulums_of_the_family_apart():
    masses, lengths = sample_pendulums(np.random.default_rng(0), 60)
    errors = {}
    for history in (0, 2):
        torch.manual_seed(0)
        data = mbmpo.RealData(history)
        data.add(pendulum_episodes(masses, lengths, n_episodes=1), action_clip=2.0)
        ensemble = mbmpo.DynamicsEnsemble(3, 1, n_models=2, hidden=(64, 64), history=history)
        cfg = mbmpo.Config(n_models=2, max_model_epochs=30, patience=30, model_lr=3e-3,
                           model_history=history)
        errors[history] = mbmpo.fit_ensemble(ensemble, data, cfg, torch.Generator().manual_seed(0))["model_val_mse"]
    # only θ̇ depends on the hidden mass and length: a (s, a) model must average over the family
    assert errors[2] < 0.75 * errors[0], errors


def test_random_episodes_record_what_the_pendulum_did():
    env = BatchedPendulum([1.0, 0.7], [1.0, 1.3])
    episodes = mbmpo.random_episodes(env, 3, MAX_TORQUE, torch.Generator().manual_seed(0))
    assert episodes.obs.shape == (2, 3, 200, 3) and episodes.actions.shape == (2, 3, 200, 1)
    assert episodes.rewards.shape == episodes.truncated.shape == (2, 3, 200)
    assert episodes.truncated[..., -1].all() and not episodes.terminated.any()
    assert episodes.actions.abs().max() <= MAX_TORQUE and episodes.actions.std() > 0.5
    # the recorded reward is the known reward of the recorded state and torque
    assert torch.allclose(episodes.rewards, pendulum_reward(episodes.obs, episodes.actions), atol=1e-4)
    with pytest.raises(ValueError, match="n_episodes"):
        mbmpo.random_episodes(env, 0, MAX_TORQUE, torch.Generator())


def test_the_ensemble_holds_only_its_k_members_and_reads_checkpoints_that_kept_a_template():
    from metacourse.models import MLP

    torch.manual_seed(0)
    ensemble = mbmpo.DynamicsEnsemble(3, 1, n_models=4, hidden=(16, 16))
    member = sum(p.numel() for p in MLP(4, (16, 16), 3).parameters())
    assert sum(p.numel() for p in ensemble.parameters()) == 4 * member
    assert not any(key.startswith("template.") for key in ensemble.state_dict())
    older = {**ensemble.state_dict(), **{f"template.{k}": v for k, v in MLP(4, (16, 16), 3).state_dict().items()}}
    again = mbmpo.DynamicsEnsemble(3, 1, n_models=4, hidden=(16, 16))
    again.load_state_dict(older)
    obs, actions = torch.randn(4, 6, 3), torch.randn(4, 6, 1)
    assert torch.equal(again.predict(obs, actions), ensemble.predict(obs, actions))
    assert again.double().predict(obs.double(), actions.double()).dtype == torch.float64
    with pytest.raises(RuntimeError, match="Unexpected"):
        again.load_state_dict({**older, "extra.weight": torch.zeros(1)})
