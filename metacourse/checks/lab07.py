"""Public checks of Lab 7, MB-MPO's learned dynamics (``labs/lab07_mbmpo.ipynb``).

Each check compares a student's function with the reference in :mod:`metacourse.rl.mbmpo` on a
random float64 ensemble with random normalisation statistics, and prints one verdict line
(``lab07/predict: 4/4 checks passed``); the usual mistakes are named in the failure message.

- :func:`check_predict` — ``my_predict(ensemble, obs, actions)`` → s' = s + Δ for every model
  (standardise (s, a), run the batched net, un-standardise Δ, add it to s).
- :func:`check_model_loss` — ``my_model_loss(ensemble, obs, actions, next_obs)``, eq. (1): the mean
  squared error of the standardised state change; values, gradients, and a short fit of a known
  linear system with it.
- :func:`check_imagine` — ``my_imagine(ensemble, policy_fn, starts, reward_fn, horizon)``, eq. (2):
  imagined episodes in every model, the reward of (s_t, a_t), and no real environment anywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..rl import mbmpo
from . import assert_close, run_checks
from .fallback import builds_on

__all__ = ["check_predict", "check_model_loss", "check_imagine", "reference_imagine", "random_ensemble"]

_ATOL, _RTOL = 1e-9, 1e-7


def random_ensemble(seed: int, n_models: int = 3, obs_dim: int = 3, act_dim: int = 1,
                    hidden: tuple[int, ...] = (16,)) -> mbmpo.DynamicsEnsemble:
    """A float64 ensemble with random weights and random (non-trivial) normalisation statistics."""
    generator = torch.Generator().manual_seed(seed)
    ensemble = mbmpo.DynamicsEnsemble(obs_dim, act_dim, n_models, hidden).double()
    with torch.no_grad():
        for weight in ensemble.weights.values():
            weight.copy_(torch.randn(weight.shape, generator=generator, dtype=torch.float64) * 0.5)
        for name in ("in_mean", "out_mean"):
            getattr(ensemble, name).copy_(torch.randn(getattr(ensemble, name).shape, generator=generator,
                                                      dtype=torch.float64))
        for name in ("in_std", "out_std"):
            getattr(ensemble, name).copy_(0.5 + torch.rand(getattr(ensemble, name).shape, generator=generator,
                                                           dtype=torch.float64))
    return ensemble


def _batch(seed: int, ensemble: mbmpo.DynamicsEnsemble, n: int = 7) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed + 1)
    shape = (ensemble.n_models, n)
    obs = torch.randn(*shape, ensemble.obs_dim, generator=generator, dtype=torch.float64)
    actions = torch.randn(*shape, ensemble.act_dim, generator=generator, dtype=torch.float64)
    next_obs = obs + 0.1 * torch.randn(*shape, ensemble.obs_dim, generator=generator, dtype=torch.float64)
    return obs, actions, next_obs


def _predict_mistakes(ensemble: mbmpo.DynamicsEnsemble, obs: Tensor, actions: Tensor) -> list[tuple[Tensor, str]]:
    """(s', message) of the usual wrong predictions, from the ensemble's own pieces."""
    raw_inputs = torch.cat([obs, actions], -1)
    out = ensemble.normalized_forward((raw_inputs - ensemble.in_mean) / ensemble.in_std)
    delta = out * ensemble.out_std + ensemble.out_mean
    return [
        (delta, "my_predict returned the state change Δ; the next state is s + Δ"),
        (obs + out, "the network's output is the *standardised* Δ̃: multiply by ensemble.out_std and add "
                    "ensemble.out_mean before adding it to s"),
        (obs + (out + ensemble.out_mean) * ensemble.out_std,
         "Δ was un-standardised in the wrong order: invert Δ̃ = (Δ − out_mean) / out_std as "
         "Δ = Δ̃ · out_std + out_mean (multiply first, then add the mean)"),
        (obs + out * ensemble.out_std ** 2 + ensemble.out_mean,
         "Δ̃ was multiplied by out_std², the variance; un-standardise with the standard deviation: "
         "Δ = Δ̃ · out_std + out_mean"),
        (obs + out / ensemble.out_std + ensemble.out_mean,
         "Δ̃ was divided by out_std; un-standardising MULTIPLIES: Δ = Δ̃ · out_std + out_mean"),
        (obs + ensemble.normalized_forward(raw_inputs - ensemble.in_mean) * ensemble.out_std + ensemble.out_mean,
         "the inputs were centred but not scaled: standardise them fully, "
         "(torch.cat([obs, actions], -1) − in_mean) / in_std"),
        (obs + ensemble.normalized_forward(raw_inputs) * ensemble.out_std + ensemble.out_mean,
         "the network was given raw (s, a); it expects standardised inputs: "
         "(torch.cat([obs, actions], -1) − in_mean) / in_std"),
    ]


def _predict_by(ensemble: mbmpo.DynamicsEnsemble, obs: Tensor, actions: Tensor, members: list[int]) -> Tensor:
    """s' where row k is moved by model ``members[k]`` instead of model k (a wrong-member imagination)."""
    rows = []
    for k, member in enumerate(members):
        spread = (obs[k].expand_as(obs), actions[k].expand_as(actions))
        rows.append(ensemble.predict(*spread)[member])
    return torch.stack(rows)


def _mean_model(ensemble: mbmpo.DynamicsEnsemble, obs: Tensor, actions: Tensor) -> Tensor:
    """s' where every row is moved by the mean prediction of all the models."""
    return torch.stack([ensemble.predict(obs[k].expand_as(obs), actions[k].expand_as(actions)).mean(0)
                        for k in range(len(obs))])


def check_predict(my_predict: Callable, seed: int = 0, label: str = "lab07/predict") -> None:
    """``my_predict(ensemble, obs, actions)`` must equal ``ensemble.predict(obs, actions)``."""
    ensemble = random_ensemble(seed)
    obs, actions, _ = _batch(seed, ensemble)

    def matches():
        before = obs.clone()
        with torch.no_grad():
            got, want = my_predict(ensemble, obs, actions), ensemble.predict(obs, actions)
        if not torch.equal(obs, before):
            raise AssertionError("my_predict changed `obs` in place (obs += ...): return obs + Δ as a new tensor")
        if torch.is_tensor(got) and got.shape == want.shape and not torch.allclose(got, want, atol=_ATOL, rtol=_RTOL):
            for wrong, message in _predict_mistakes(ensemble, obs, actions):
                if torch.allclose(got, wrong, atol=_ATOL, rtol=_RTOL):
                    raise AssertionError(message)
        assert_close(got, want, atol=_ATOL, rtol=_RTOL, what="my_predict(ensemble, obs, actions)")

    def models_are_separate():
        with torch.no_grad():
            if not torch.allclose(my_predict(ensemble, obs, actions), ensemble.predict(obs, actions),
                                  atol=_ATOL, rtol=_RTOL):
                raise AssertionError("my_predict differs from ensemble.predict already in the given row order "
                                     "(see the check above); fix that first")
            swapped = my_predict(ensemble, obs.flip(0), actions.flip(0))
            alone = ensemble.predict(obs.flip(0), actions.flip(0))
        assert_close(swapped, alone, atol=_ATOL, rtol=_RTOL,
                     what="my_predict with the rows of obs reordered (row k must go through model k)")

    def one_model_per_row_shape():
        with torch.no_grad():
            got = my_predict(ensemble, obs[:, :1], actions[:, :1])
        assert tuple(got.shape) == (ensemble.n_models, 1, ensemble.obs_dim), \
            f"expected shape {(ensemble.n_models, 1, ensemble.obs_dim)}, got {tuple(got.shape)}"

    def differentiable():
        got = my_predict(ensemble, obs, actions)
        assert got.requires_grad, "my_predict must stay differentiable in the ensemble's weights " \
                                  "(do not wrap it in torch.no_grad or detach it)"

    run_checks(label, [("matches ensemble.predict", matches), ("row k uses model k", models_are_separate),
                       ("shape (K, N, obs_dim)", one_model_per_row_shape),
                       ("differentiable in the weights", differentiable)])


def _loss_mistakes(ensemble: mbmpo.DynamicsEnsemble, obs: Tensor, actions: Tensor, next_obs: Tensor
                   ) -> list[tuple[Tensor, str]]:
    """(loss, message) of the usual wrong model losses."""
    standardised = (torch.cat([obs, actions], -1) - ensemble.in_mean) / ensemble.in_std
    out = ensemble.normalized_forward(standardised)
    target = (next_obs - obs - ensemble.out_mean) / ensemble.out_std
    n_models = len(obs)
    return [
        (((ensemble.predict(obs, actions) - next_obs) ** 2).mean(),
         "the loss is measured in real units; eq. (1) compares the *standardised* "
         "Δ̃ = (s' − s − out_mean) / out_std with the network's output"),
        (((out - (next_obs - obs)) ** 2).mean(),
         "the target Δ = s' − s is not standardised; the network's output is compared with "
         "Δ̃ = (s' − s − out_mean) / out_std"),
        (((out - (next_obs - ensemble.out_mean) / ensemble.out_std) ** 2).mean(),
         "the target is the standardised NEXT STATE; the network predicts the standardised CHANGE, "
         "Δ̃ = (s' − s − out_mean) / out_std"),
        (((out - target) ** 2).sum(), "the SUM of the squared errors; eq. (1) is their mean"),
        (((out - target) ** 2).mean((1, 2)).sum(),
         f"the sum over the {n_models} models of their mean errors ({n_models}× too large); take the mean "
         "over models too: .mean() over everything"),
        (((ensemble.normalized_forward(torch.cat([obs, actions], -1)) - target) ** 2).mean(),
         "the network was given raw (s, a); it expects standardised inputs: "
         "(torch.cat([obs, actions], -1) − in_mean) / in_std"),
        ((out - target).abs().mean(), "the mean ABSOLUTE error; eq. (1) is the mean SQUARED error"),
        (((out - target) ** 2).mean(-1).sum(-1).mean(),
         f"the squared errors SUMMED over the {obs.shape[1]} transitions of each model ({obs.shape[1]}× too "
         "large); eq. (1) is the mean over models, transitions and dimensions: .mean() over everything"),
        (torch.nn.functional.smooth_l1_loss(out, target),
         "a smooth-L1 (Huber) loss; eq. (1) is the mean SQUARED error, ((output − Δ̃)²).mean()"),
    ]


def check_model_loss(my_model_loss: Callable, seed: int = 0, label: str = "lab07/model_loss") -> None:
    """``my_model_loss(ensemble, obs, actions, next_obs)`` must equal ``mbmpo.model_loss``, with
    the same gradients, and fit a known linear system when minimised."""
    ensemble = random_ensemble(seed)
    obs, actions, next_obs = _batch(seed, ensemble)

    def value():
        got, want = my_model_loss(ensemble, obs, actions, next_obs), mbmpo.model_loss(ensemble, obs, actions, next_obs)
        if torch.is_tensor(got) and got.dim() != 0:
            raise AssertionError(f"the loss has shape {tuple(got.shape)}; return one number, the mean over "
                                 "models, transitions and dimensions (.mean() over everything)")
        if torch.is_tensor(got) and not torch.allclose(got.detach(), want.detach(), atol=_ATOL, rtol=_RTOL):
            with torch.no_grad():
                for wrong, message in _loss_mistakes(ensemble, obs, actions, next_obs):
                    if torch.allclose(got.detach(), wrong, atol=_ATOL, rtol=_RTOL):
                        raise AssertionError(message)
        if torch.is_tensor(got) and not got.requires_grad:
            raise AssertionError("the loss does not depend on the ensemble's weights: compute it without "
                                 "torch.no_grad() or .detach()")
        assert_close(got, want, atol=_ATOL, rtol=_RTOL, what="my_model_loss(...)")

    def gradients():
        weights = list(ensemble.weights.values())
        got = torch.autograd.grad(my_model_loss(ensemble, obs, actions, next_obs), weights)
        want = torch.autograd.grad(mbmpo.model_loss(ensemble, obs, actions, next_obs), weights)
        assert_close(dict(enumerate(got)), dict(enumerate(want)), atol=_ATOL, rtol=_RTOL,
                     what="the gradient of my_model_loss with respect to the ensemble's weights")

    def fits_a_linear_system():
        got = my_model_loss(ensemble, obs, actions, next_obs)
        if not torch.is_tensor(got) or got.shape != () or not torch.allclose(
                got.detach(), mbmpo.model_loss(ensemble, obs, actions, next_obs).detach(), atol=_ATOL, rtol=_RTOL):
            raise AssertionError("the loss itself differs from eq. (1) (see the check above): the fit is tried "
                                 "once it matches")
        torch.manual_seed(seed)
        model = mbmpo.DynamicsEnsemble(2, 1, 2, (32,)).double()
        generator = torch.Generator().manual_seed(seed + 2)
        states = torch.rand(2, 400, 2, generator=generator, dtype=torch.float64) * 2 - 1
        pushes = torch.rand(2, 400, 1, generator=generator, dtype=torch.float64) * 2 - 1
        matrix = torch.tensor([[0.9, 0.2], [-0.2, 0.9]], dtype=torch.float64)
        after = states @ matrix.T + 0.3 * pushes
        model.set_normalizer(torch.cat([states, pushes], -1).flatten(0, 1), (after - states).flatten(0, 1))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            optimizer.zero_grad()
            my_model_loss(model, states, pushes, after).backward()
            optimizer.step()
        with torch.no_grad():
            error = (model.predict(states, pushes) - after).abs().mean().item()
        assert error < 0.02, f"after 300 Adam steps on my_model_loss the mean prediction error is " \
                             f"{error:.3f} (the reference reaches < 0.01)"

    run_checks(label, [("value equals eq. (1)", value), ("gradients", gradients),
                       ("minimising it fits s' = A s + B a", fits_a_linear_system)])


def reference_imagine(ensemble: mbmpo.DynamicsEnsemble, policy_fn: Callable[[Tensor], Tensor], starts: Tensor,
                      reward_fn: Callable[[Tensor, Tensor], Tensor], horizon: int,
                      predict: Callable[[Tensor, Tensor], Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. (2) with a deterministic policy: obs (K, E, H, d), actions (K, E, H, a), rewards (K, E, H).
    ``predict(obs, actions)`` steps the models (``ensemble.predict`` if None)."""
    predict = predict or ensemble.predict
    obs, record = starts, {"obs": [], "actions": [], "rewards": []}
    with torch.no_grad():
        for _ in range(horizon):
            actions = policy_fn(obs)
            record["obs"].append(obs), record["actions"].append(actions)
            record["rewards"].append(reward_fn(obs, actions))
            obs = predict(obs, actions)
    return (torch.stack(record["obs"], -2), torch.stack(record["actions"], -2),
            torch.stack(record["rewards"], -1))


def _imagine_shapes(got: tuple, want: tuple, horizon: int) -> None:
    for name, mine, reference in zip(("obs", "actions", "rewards"), got, want):
        if not torch.is_tensor(mine):
            raise AssertionError(f"{name} should be a tensor, got {type(mine).__name__}")
        if mine.shape == reference.shape:
            continue
        time_axis = reference.dim() - (1 if name == "rewards" else 2)
        if mine.dim() == reference.dim() and sorted(mine.shape) == sorted(reference.shape):
            where = ("the last axis, -1" if name == "rewards"
                     else f"axis {time_axis - reference.dim()}, just before the features")
            raise AssertionError(f"{name} has shape {tuple(mine.shape)}, expected {tuple(reference.shape)}: "
                                 f"stack the steps on {where}")
        if mine.dim() == reference.dim() and mine.shape[time_axis] in (horizon - 1, horizon + 1):
            raise AssertionError(f"{name} has {mine.shape[time_axis]} steps for horizon = {horizon}: record "
                                 "exactly one (s_t, a_t, r_t) per step, t = 0 … H − 1 (no final state)")


def check_imagine(my_imagine: Callable, seed: int = 0, label: str = "lab07/imagine") -> None:
    """``my_imagine(ensemble, policy_fn, starts, reward_fn, horizon)`` against ``reference_imagine``;
    a ``my_predict`` that ``my_imagine`` calls is ``ensemble.predict`` during the check."""
    ensemble = random_ensemble(seed, hidden=(8,))
    with torch.no_grad():
        for weight in ensemble.weights.values():
            weight.mul_(0.3)  # a tame model: states stay moderate over the horizon
    starts = _batch(seed, ensemble, n=4)[0]
    policy_fn = lambda obs: torch.tanh(obs[..., :1] - 0.5 * obs[..., 1:2])  # noqa: E731 (state-dependent)
    reward_fn = lambda obs, actions: -(obs ** 2).sum(-1) - 0.1 * actions[..., 0] ** 2  # noqa: E731
    horizon = 6

    def matches():
        got = my_imagine(ensemble, policy_fn, starts, reward_fn, horizon)
        want = reference_imagine(ensemble, policy_fn, starts, reward_fn, horizon)
        if not isinstance(got, tuple) or len(got) != 3:
            raise AssertionError("my_imagine must return a tuple (obs, actions, rewards)")
        _imagine_shapes(got, want, horizon)
        if any(part.requires_grad for part in got):
            raise AssertionError("the imagined rollouts carry gradients: imagine under `with torch.no_grad():` "
                                 "(the policy learns from them by a policy gradient, not through the model)")
        if got[0].shape == want[0].shape and not torch.allclose(got[0], want[0], atol=_ATOL, rtol=_RTOL):
            n_models = ensemble.n_models
            for members, message in (([0] * n_models, "every row was moved by model 0"),
                                     (list(range(n_models))[::-1], "row k was moved by model K − 1 − k")):
                wrong = reference_imagine(ensemble, policy_fn, starts, reward_fn, horizon,
                                          lambda o, a, m=members: _predict_by(ensemble, o, a, m))
                if torch.allclose(got[0], wrong[0], atol=_ATOL, rtol=_RTOL):
                    raise AssertionError(f"{message}: in MB-MPO row k of the states is imagined in model k "
                                         "only — pass the whole (K, E, ·) batch to my_predict and keep the rows")
            frozen_policy = reference_imagine(ensemble, lambda o: policy_fn(starts), starts, reward_fn, horizon)
            if torch.allclose(got[0], frozen_policy[0], atol=_ATOL, rtol=_RTOL):
                raise AssertionError("every action was chosen from the START states: a_t = π(ŝ_t), the policy "
                                     "reads the current imagined state")
            averaged = reference_imagine(ensemble, policy_fn, starts, reward_fn, horizon,
                                         lambda o, a: _mean_model(ensemble, o, a))
            if torch.allclose(got[0], averaged[0], atol=_ATOL, rtol=_RTOL):
                raise AssertionError("every row was moved by the MEAN of the models; MB-MPO imagines in each "
                                     "model separately (row k → model k), so that the policy sees them disagree")
        shifted = torch.cat([want[0][..., 1:, :], ensemble.predict(want[0][..., -1, :], want[1][..., -1, :])
                             .unsqueeze(-2)], -2)
        if got[0].shape == want[0].shape and torch.allclose(got[0].detach(), shifted):
            raise AssertionError("obs[..., t, :] must be the state the action a_t was taken in (s_t), "
                                 "not the state after it: record the state before stepping the model")
        if got[2].shape == want[2].shape and torch.allclose(got[2].detach(), reward_fn(shifted, want[1])):
            raise AssertionError("the reward is r(s_t, a_t), of the state the action was taken in, "
                                 "not of the next state")
        for name, mine, reference in zip(("obs", "actions", "rewards"), got, want):
            assert_close(mine, reference, atol=_ATOL, rtol=_RTOL, what=f"my_imagine(...) {name}")

    def starts_untouched():
        before = starts.clone()
        my_imagine(ensemble, policy_fn, starts, reward_fn, horizon)
        assert torch.equal(starts, before), "my_imagine changed `starts` in place; build new tensors"

    def no_real_environment():
        calls = []
        counting = lambda obs, actions: calls.append(1) or reward_fn(obs, actions)  # noqa: E731
        my_imagine(ensemble, policy_fn, starts, counting, horizon)
        assert len(calls) == horizon, f"reward_fn was called {len(calls)} times for {horizon} steps " \
                                      "(once per step, on the whole batch)"

    with builds_on(my_imagine, my_predict=lambda ensemble, obs, actions: ensemble.predict(obs, actions)):
        run_checks(label, [("matches eq. (2)", matches), ("starts left untouched", starts_untouched),
                           ("one batched reward per step, nothing else", no_real_environment)])
