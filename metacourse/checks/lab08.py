"""Public checks of Lab 8, Meta-Critic Networks (``labs/lab08_meta_critic.ipynb``).

Each check compares a student's function with the reference in :mod:`metacourse.rl.meta_critic`
and prints one verdict line (``lab08/encoder: 4/4 checks passed``):

- :func:`check_encoder` — ``my_encode(encoder, trace)``, eq. (1): the TAEN's code z of a batch of
  (s, a, r) traces, from the encoder's own ``lstm`` and ``head``. Reading the LSTM's output at the
  first step, or averaging over steps, instead of its state after the last step is diagnosed.
- :func:`check_actor_loss` — ``my_actor_loss(critic, model, actors, states, z, entropy_coef)``,
  eq. (2): the meta-critic's actor loss, its value and its gradient with respect to the actors;
  letting the gradient reach the critic, and scoring only the most likely action, are diagnosed.

Numeric checks run in float64 on random networks and inputs drawn from fixed seeds, so a correct
implementation passes to about 1e-10 and the verdicts never flicker.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..models import MLP
from ..rl import meta_critic
from . import assert_close, run_checks

__all__ = ["check_encoder", "check_actor_loss"]

_ATOL, _RTOL = 1e-9, 1e-7


def _critic(seed: int, state_size: int = 4, action_size: int = 2) -> meta_critic.MetaCritic:
    torch.manual_seed(seed)  # module initialisation draws from the global stream: restored below
    return meta_critic.MetaCritic(state_size, action_size, meta_critic.Config(embedding_size=6,
                                                                              encoder_hidden=12,
                                                                              critic_hidden=(16,))).double()


def _with_seed(seed: int, build: Callable):
    state = torch.get_rng_state()
    try:
        return build(seed)
    finally:
        torch.set_rng_state(state)


def check_encoder(my_encode: Callable, seed: int = 8, label: str = "lab08/encoder") -> None:
    """Check ``my_encode(encoder, trace) -> z`` against ``TaskActorEncoder.forward``."""
    critic = _with_seed(seed, _critic)
    generator = torch.Generator().manual_seed(seed)
    traces = {k: torch.randn(5, k, 7, generator=generator, dtype=torch.float64) for k in (1, 4, 20)}

    def matches(k: int) -> Callable[[], None]:
        def check() -> None:
            with torch.no_grad():
                expected = critic.encoder(traces[k])
                actual = my_encode(critic.encoder, traces[k])
                outputs, _ = critic.encoder.lstm(traces[k])
            if k > 1 and isinstance(actual, torch.Tensor) and actual.shape == expected.shape:
                if torch.allclose(actual, critic.encoder.head(outputs[:, 0])):
                    raise AssertionError("z is computed from the LSTM's output at the first step; "
                                         "use its state after the *last* step (hidden[-1] or output[:, -1])")
                if torch.allclose(actual, critic.encoder.head(outputs.mean(1))):
                    raise AssertionError("z averages the LSTM's outputs over the steps; the TAEN "
                                         "uses its state after the last step")
            assert_close(actual, expected, atol=_ATOL, rtol=_RTOL, what=f"z for traces of {k} steps")
        return check

    def leaves_trace_alone() -> None:
        trace = traces[4].clone()
        my_encode(critic.encoder, trace)
        assert torch.equal(trace, traces[4]), "my_encode changed the trace it was given"

    run_checks(label, [(f"z of {k}-step traces matches the TAEN", matches(k)) for k in (1, 4, 20)]
               + [("the trace is left unchanged", leaves_trace_alone)])


def check_actor_loss(my_actor_loss: Callable, seed: int = 8, label: str = "lab08/actor_loss") -> None:
    """Check ``my_actor_loss(critic, model, actors, states, z, entropy_coef)`` against
    ``meta_critic.actor_loss``: value, gradient with respect to the actors, none to the critic."""
    critic = _with_seed(seed, _critic)
    model = MLP(4, (8,), 2).double()
    actors = _with_seed(seed + 1, lambda s: (torch.manual_seed(s), meta_critic.init_actors(model, 3))[1])
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(3, 10, 4, generator=generator, dtype=torch.float64)
    z = torch.randn(3, 6, generator=generator, dtype=torch.float64)

    def run(function, entropy_coef: float):
        for p in [*actors.values(), *critic.parameters()]:
            p.grad = None
        loss = function(critic, model, actors, states, z, entropy_coef)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise AssertionError(f"the loss should be a scalar tensor, got {loss!r:.80}")
        loss.backward()
        grads = {name: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                 for name, p in actors.items()}
        critic_touched = any(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())
        return loss.detach(), grads, critic_touched

    def matches(entropy_coef: float) -> Callable[[], None]:
        def check() -> None:
            expected, expected_grads, _ = run(meta_critic.actor_loss, entropy_coef)
            actual, actual_grads, _ = run(my_actor_loss, entropy_coef)
            greedy = _greedy_loss(critic, model, actors, states, z)
            if entropy_coef == 0 and torch.allclose(actual, greedy):
                raise AssertionError("the loss scores only the most likely action; weight Q(s, a, z) "
                                     "of *every* action by π(a | s) and sum over actions")
            assert_close(actual, expected, atol=_ATOL, rtol=_RTOL, what=f"loss (entropy_coef={entropy_coef})")
            assert_close(actual_grads, expected_grads, atol=_ATOL, rtol=_RTOL,
                         what=f"gradient with respect to the actors (entropy_coef={entropy_coef})")
        return check

    def critic_is_frozen() -> None:
        _, _, touched = run(my_actor_loss, 0.01)
        assert not touched, ("the actor's loss sent gradients into the critic; compute Q(s, a, z) "
                             "under torch.no_grad() (or detach it): on a new task the critic is frozen")

    run_checks(label, [("loss and gradient match, no entropy bonus", matches(0.0)),
                       ("loss and gradient match, entropy bonus 0.05", matches(0.05)),
                       ("no gradient reaches the critic", critic_is_frozen)])


def _greedy_loss(critic, model, actors, states, z) -> torch.Tensor:
    with torch.no_grad():
        logits = meta_critic.act(model, actors, states)
        q_values = torch.stack([critic(states, torch.eye(2, dtype=states.dtype)[a].expand(*states.shape[:2], -1), z)
                                for a in range(2)], dim=-1)
        best = q_values.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)
        return -best.mean(dim=1).sum()
