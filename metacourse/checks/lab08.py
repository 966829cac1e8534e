"""Public checks of Lab 8, Meta-Critic Networks (``labs/lab08_meta_critic.ipynb``).

Each check compares a student's function with the reference in :mod:`metacourse.rl.meta_critic`
and prints one verdict line (``lab08/encoder: 4/4 checks passed``):

- :func:`check_encoder` — ``my_encode(encoder, trace)``, eq. (1): the TAEN's code z of a batch of
  (s, a, r) traces, from the encoder's own ``lstm`` and ``head``. Named when they happen: the
  LSTM's output at the first step, the mean or sum over steps, the cell state instead of the hidden
  state, the trace read backwards or transposed, a missing ``head``, the trace changed in place.
- :func:`check_actor_loss` — ``my_actor_loss(critic, model, actors, states, z, entropy_coef)``,
  eq. (2): the meta-critic's actor loss, its value and its gradient with respect to the actors.
  Named when they happen: the sign, the mean over tasks, the sum over states, Q weighted by log π
  or by the logits, only the most likely action scored, the entropy bonus's sign or absence, a
  loss that does not depend on the actors, gradients into the critic. The value is diagnosed
  before ``backward()``, so a loss without a graph is named too.

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


def _encoder_mistakes(encoder, trace: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """(z, message) of the usual wrong encoders of one trace."""
    outputs, (hidden, cell) = encoder.lstm(trace)
    _, (backwards, _) = encoder.lstm(trace.flip(1))
    return [
        (encoder.head(outputs[:, 0]), "z is computed from the LSTM's output at the first step; use its "
                                      "state after the *last* step (hidden[-1] or output[:, -1])"),
        (encoder.head(outputs.mean(1)), "z averages the LSTM's outputs over the steps; the TAEN uses its "
                                        "state after the last step (hidden[-1])"),
        (encoder.head(outputs.sum(1)), "z sums the LSTM's outputs over the steps; the TAEN uses its state "
                                       "after the last step (hidden[-1])"),
        (encoder.head(cell[-1]), "z is computed from the LSTM's CELL state c; eq. (1) uses the hidden "
                                 "state h: `_, (hidden, cell) = encoder.lstm(trace)`, then hidden[-1]"),
        (encoder.head(backwards[-1]), "z reads the trace backwards (last step first); pass the trace in "
                                      "time order"),
    ]


def _check_code(my_encode: Callable, encoder, trace: torch.Tensor) -> None:
    k = trace.shape[1]
    with torch.no_grad():
        expected = encoder(trace)
        try:
            actual = my_encode(encoder, trace)
        except (ValueError, RuntimeError) as error:
            if "dtype" not in str(error):
                raise
            raise AssertionError(f"my_encode changed the trace's dtype ({error}); feed the trace to the LSTM "
                                 "as it is (the check runs in float64): no .float()") from None
        if not isinstance(actual, torch.Tensor):
            raise AssertionError(f"my_encode should return a tensor z, got {type(actual).__name__}"
                                 + ("; did you forget to `return` it?" if actual is None else ""))
        _, (hidden, _) = encoder.lstm(trace)
        if actual.shape == (hidden.shape[0], *expected.shape):
            raise AssertionError(f"z has shape {tuple(actual.shape)}: the LSTM's hidden state has a leading axis of "
                                 "layers, (layers, tasks, units); take the last layer's, hidden[-1]")
        if actual.shape == hidden[-1].shape and actual.shape != expected.shape:
            raise AssertionError(f"z has shape {tuple(actual.shape)}, the LSTM's hidden size: apply the "
                                 f"linear map encoder.head to get the code of size {expected.shape[-1]}")
        if actual.shape[0] == k and actual.shape != expected.shape:
            raise AssertionError(f"z has {k} rows, one per step, not one per task: the LSTM is batch_first, "
                                 "its input and outputs are (tasks, k, ·) — pass the trace without transposing "
                                 "it, and take the last step as outputs[:, -1] or hidden[-1]")
        if actual.shape == expected.shape and not torch.allclose(actual, expected, atol=_ATOL, rtol=_RTOL):
            for wrong, message in _encoder_mistakes(encoder, trace) if k > 1 else []:
                if torch.allclose(actual, wrong, atol=_ATOL, rtol=_RTOL):
                    raise AssertionError(message)
    assert_close(actual, expected, atol=_ATOL, rtol=_RTOL, what=f"z for traces of {k} steps")


def check_encoder(my_encode: Callable, seed: int = 8, label: str = "lab08/encoder") -> None:
    """Check ``my_encode(encoder, trace) -> z`` against ``TaskActorEncoder.forward``."""
    critic = _with_seed(seed, _critic)
    generator = torch.Generator().manual_seed(seed)
    traces = {k: torch.randn(5, k, 7, generator=generator, dtype=torch.float64) for k in (1, 4, 20)}

    def leaves_trace_alone() -> None:
        trace = traces[4].clone()
        my_encode(critic.encoder, trace)
        assert torch.equal(trace, traces[4]), "my_encode changed the trace it was given (an in-place " \
                                              "operation on it): build new tensors instead"

    run_checks(label, [(f"z of {k}-step traces matches the TAEN",
                        lambda k=k: _check_code(my_encode, critic.encoder, traces[k])) for k in (1, 4, 20)]
               + [("the trace is left unchanged", leaves_trace_alone)])


def _actor_loss_mistakes(critic, model, actors, states, z, entropy_coef: float) -> list[tuple[torch.Tensor, str]]:
    """(loss, message) of the usual wrong actor losses, from the reference's pieces."""
    with torch.no_grad():
        logits = meta_critic.act(model, actors, states)
        eye = torch.eye(logits.shape[-1], dtype=states.dtype)
        q_values = torch.stack([critic(states, eye[a].expand(*states.shape[:2], -1), z)
                                for a in range(logits.shape[-1])], dim=-1)
        policy, log_policy = torch.softmax(logits, -1), torch.log_softmax(logits, -1)
        entropy = -(policy * log_policy).sum(-1)
        value = (policy * q_values).sum(-1)
        greedy = q_values.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)
        n_tasks = states.shape[0]
        mistakes = [
            (((value + entropy_coef * entropy).mean(1).sum()),
             "+E[Σ_a π Q] + c_H H: the sign is wrong. The actor MAXIMISES the objective, so the loss "
             "is its negative"),
            (-(value + entropy_coef * entropy).mean(1).mean(),
             f"the mean over the {n_tasks} actors ({n_tasks}× too small); SUM over the tasks, so that "
             "each actor gets its own task's full gradient"),
            (-(value + entropy_coef * entropy).sum(1).sum(),
             "the SUM over each task's states; take the mean over the states (dim=1), then the sum over tasks"),
            (-((log_policy * q_values).sum(-1) + entropy_coef * entropy).mean(1).sum(),
             "Q weighted by log π(a|s); eq. (2) weights Q(s, a, z) by the probability π(a|s) = softmax(logits)"),
            (-((logits * q_values).sum(-1) + entropy_coef * entropy).mean(1).sum(),
             "Q weighted by the raw logits; turn them into probabilities first: π = torch.softmax(logits, -1)"),
            (-(greedy + entropy_coef * entropy).mean(1).sum(),
             "the loss scores only the most likely action; weight Q(s, a, z) of *every* action by "
             "π(a | s) and sum over actions"),
        ]
        if entropy_coef:
            mistakes += [
                (-(value - entropy_coef * entropy).mean(1).sum(),
                 "the entropy bonus has the wrong sign: it must REWARD entropy, −(Σ_a π Q + c_H H)"),
                (-value.mean(1).sum(), "the loss ignores entropy_coef: add c_H · H(π(·|s)), "
                                       "H = −Σ_a π log π, inside the mean"),
            ]
    return mistakes


def check_actor_loss(my_actor_loss: Callable, seed: int = 8, label: str = "lab08/actor_loss") -> None:
    """Check ``my_actor_loss(critic, model, actors, states, z, entropy_coef)`` against
    ``meta_critic.actor_loss``: value, gradient with respect to the actors, none to the critic."""
    critic = _with_seed(seed, _critic)
    model = MLP(4, (8,), 2).double()
    actors = _with_seed(seed + 1, lambda s: (torch.manual_seed(s), meta_critic.init_actors(model, 3))[1])
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(3, 10, 4, generator=generator, dtype=torch.float64)
    z = torch.randn(3, 6, generator=generator, dtype=torch.float64)

    def run(function, entropy_coef: float, expected: torch.Tensor | None = None):
        for p in [*actors.values(), *critic.parameters()]:
            p.grad = None
        loss = function(critic, model, actors, states, z, entropy_coef)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise AssertionError(f"the loss should be a scalar tensor, got {loss!r:.80}"
                                 + (" — sum over the tasks" if isinstance(loss, torch.Tensor) else ""))
        if expected is not None and not torch.allclose(loss.detach(), expected, atol=_ATOL, rtol=_RTOL):
            for wrong, message in _actor_loss_mistakes(critic, model, actors, states, z, entropy_coef):
                if torch.allclose(loss.detach(), wrong, atol=_ATOL, rtol=_RTOL):
                    raise AssertionError(message)
        if not loss.requires_grad:
            raise AssertionError("the loss does not depend on the actors: compute the logits with "
                                 "meta_critic.act(model, actors, states) outside torch.no_grad(); only Q is frozen")
        loss.backward()
        grads = {name: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
                 for name, p in actors.items()}
        critic_touched = any(p.grad is not None and p.grad.abs().sum() > 0 for p in critic.parameters())
        return loss.detach(), grads, critic_touched

    def matches(entropy_coef: float) -> Callable[[], None]:
        def check() -> None:
            expected, expected_grads, _ = run(meta_critic.actor_loss, entropy_coef)
            actual, actual_grads, _ = run(my_actor_loss, entropy_coef, expected)
            assert_close(actual, expected, atol=_ATOL, rtol=_RTOL, what=f"loss (entropy_coef={entropy_coef})")
            if any(not torch.allclose(actual_grads[n], want, atol=_ATOL, rtol=_RTOL)
                   for n, want in expected_grads.items()):
                raise AssertionError(f"the loss has the right value but not the right gradient (entropy_coef="
                                     f"{entropy_coef}): part of it is cut from the graph — π, log π or the logits "
                                     "detached (in the entropy, say). Only Q(s, a, z) may be computed without "
                                     "gradients")
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
