"""Checks of lab 05 (bandits and RL²): UCB1, Thompson sampling, RL²'s inputs, a trial rollout.

Each ``check_*`` compares a student's function with the reference in ``metacourse.rl`` on random
inputs (numerically where the result is deterministic, statistically where it is random) and
prints one verdict line such as ``lab05/ucb1: 3/3 checks passed``. When a result differs, the
usual mistakes are recomputed and the one that matches is named with its fix:

- :func:`check_ucb1_index` — no log, no factor 2, the bonus subtracted, c inside the root, no
  pseudo-counts, t per arm or summed over the bandits instead of the arms.
- :func:`check_thompson` — the lowest sample, α and β swapped, no Beta(1, 1) prior, the
  posterior mean instead of a sample, ``np.random`` instead of ``rng``, the wrong axis.
- :func:`check_encode` — a previous action of −1 encoded as the last action, the parts in the
  wrong order, reward and done swapped, integers instead of floats, NumPy instead of torch.
- :func:`check_rollout` — ``encode`` called with the sizes (accepted when they are right) or
  with (tasks, 1) tensors, the generator not given to ``env.reset``, the first step's previous
  action, the state/reward/done passed one step late or without ``env.restart``, the hidden state
  reset or not carried, sampling when ``greedy``, a (steps, batch) result.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from . import assert_close, run_checks

__all__ = ["check_ucb1_index", "check_thompson", "check_encode", "check_rollout",
           "buggy_encode"]


def _counts(rng: np.random.Generator, n_envs: int, n_arms: int) -> tuple[np.ndarray, np.ndarray]:
    pulls = rng.integers(0, 30, size=(n_envs, n_arms)).astype(np.float64)
    successes = np.floor(pulls * rng.uniform(size=pulls.shape))
    return successes, pulls - successes


def _name_mistake(got, variants: dict[str, Callable[[], object]], what: str, want) -> None:
    """When ``got`` differs from ``want``, raise naming the first variant (a usual mistake) that
    ``got`` equals; return quietly otherwise (the numeric comparison then reports)."""
    import torch

    if isinstance(got, torch.Tensor):
        got = got.detach().cpu().double().numpy()
    try:
        got = np.asarray(got, dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
    except (TypeError, ValueError):
        return
    if got.shape == want.shape and np.allclose(got, want, atol=1e-9, rtol=1e-7):
        return
    for message, variant in variants.items():
        with np.errstate(all="ignore"):
            value = np.asarray(variant(), dtype=np.float64)
        if value.shape == got.shape and np.allclose(got, value, atol=1e-9, rtol=1e-7,
                                                    equal_nan=True):
            raise AssertionError(f"{what}: {message}")


# ---------------------------------------------------------------------------------------------
# Exercise 5.1: UCB1


def _ucb1(successes, failures, c, *, log=np.log, two=2.0, sign=1.0, c_inside=False,
          prior=True, t_axis: int | None = -1):
    pulls = successes + failures + (2 if prior else 0)
    mean = (successes + (1 if prior else 0)) / pulls
    t = pulls if t_axis is None else pulls.sum(axis=t_axis, keepdims=True)
    if c_inside:
        return mean + sign * np.sqrt(c * two * log(t) / pulls)
    return mean + sign * c * np.sqrt(two * log(t) / pulls)


def _ucb1_mistakes(successes, failures, c) -> dict[str, Callable[[], object]]:
    s, f = successes, failures
    return {
        "the log is missing: the bonus is c √(2 ln t / T_i), with the natural log of the total "
        "count t (np.log)": lambda: _ucb1(s, f, c, log=lambda t: t),
        "the factor 2 is missing: the bonus is c √(2 ln t / T_i)": lambda: _ucb1(s, f, c, two=1.0),
        "the log is in base 2: ln is the natural log, np.log": lambda: _ucb1(s, f, c, log=np.log2),
        "the log is in base 10: ln is the natural log, np.log": lambda: _ucb1(s, f, c, log=np.log10),
        "the bonus is subtracted: an UPPER confidence bound adds it, μ̂_i + c √(2 ln t / T_i)":
            lambda: _ucb1(s, f, c, sign=-1.0),
        "c is inside the square root: multiply the root by c, c √(2 ln t / T_i)":
            lambda: _ucb1(s, f, c, c_inside=True),
        "the Beta(1, 1) pseudo-counts are missing: T_i = successes_i + failures_i + 2 and "
        "μ̂_i = (successes_i + 1) / T_i": lambda: _ucb1(s, f, c, prior=False),
        "t is each arm's own count: t = Σ_i T_i is the total over the arms of one bandit "
        "(sum over axis=-1, keepdims=True)": lambda: _ucb1(s, f, c, t_axis=None),
        "t is summed over the bandits (axis 0): sum each bandit's arms, "
        "pulls.sum(axis=-1, keepdims=True)": lambda: _ucb1(s, f, c, t_axis=0),
    }


def check_ucb1_index(ucb1_index: Callable) -> None:
    """``ucb1_index(successes, failures, c)`` -> μ̂ + c √(2 ln t / T) per arm (Beta(1, 1) start)."""
    __tracebackhide__ = True
    rng = np.random.default_rng(5)

    def matches(n_envs, n_arms, c):
        successes, failures = _counts(rng, n_envs, n_arms)
        got = ucb1_index(successes.copy(), failures.copy(), c)
        want = _ucb1(successes, failures, c)
        what = f"ucb1_index(..., c={c}) on {n_envs} bandits with {n_arms} arms"
        if got is not None:
            _name_mistake(got, _ucb1_mistakes(successes, failures, c), what, want)
        assert_close(got, want, atol=1e-9, rtol=1e-7, what=what)

    def before_any_pull():
        zeros = np.zeros((1, 3))
        expected = 0.5 + np.sqrt(2 * np.log(6) / 2)
        assert_close(ucb1_index(zeros, zeros, 1.0), np.full((1, 3), expected), atol=1e-9,
                     rtol=0, what="the index before any pull (T_i = 2, t = 6)")

    run_checks("lab05/ucb1", [
        ("matches the reference, c = 1", lambda: matches(8, 5, 1.0)),
        ("matches the reference, c = 0.2, 50 arms", lambda: matches(4, 50, 0.2)),
        ("Beta(1, 1) pseudo-counts before any pull", before_any_pull)])


# ---------------------------------------------------------------------------------------------
# Exercise 5.2: Thompson sampling

# Three arms with posteriors Beta(3, 1), Beta(1, 1), Beta(2, 5): every usual mistake chooses
# them with different frequencies.
_PROBE_S, _PROBE_F = np.array([2.0, 0.0, 1.0]), np.array([0.0, 0.0, 4.0])
_DRAWS = 20000


def _thompson_variants() -> dict[str, Callable]:
    def prior_free(s, f, rng):
        return rng.beta(np.maximum(s, 1e-3), np.maximum(f, 1e-3)).argmax(-1)

    return {
        None: lambda s, f, rng: rng.beta(s + 1, f + 1).argmax(-1),
        # argmin of the right posteriors and argmax with α, β swapped choose alike (θ ↦ 1 − θ)
        "you choose the arm most likely to be the WORST: either the LOWEST sample (use argmax) or "
        "α and β swapped (the posterior of an arm is Beta(1 + successes, 1 + failures))":
            lambda s, f, rng: rng.beta(s + 1, f + 1).argmin(-1),
        "you choose the highest posterior MEAN (greedy): Thompson sampling draws θ_i ~ "
        "Beta(1 + successes_i, 1 + failures_i) and chooses the highest draw":
            lambda s, f, rng: ((s + 1) / (s + f + 2)).argmax(-1),
        "the Beta(1, 1) prior is missing: use rng.beta(successes + 1, failures + 1)": prior_free,
    }


def _shares(choose, rng_seed: int) -> np.ndarray:
    successes, failures = np.tile(_PROBE_S, (_DRAWS, 1)), np.tile(_PROBE_F, (_DRAWS, 1))
    arms = np.asarray(choose(successes, failures, np.random.default_rng(rng_seed)))
    if arms.shape != (_DRAWS,):
        hint = (" (argmax over axis=-1, the arms, not axis 0, the bandits)" if arms.shape == (3,)
                else " (return the index of the best sample, .argmax(axis=-1), not the samples)"
                if arms.shape == (_DRAWS, 3) else "")
        raise AssertionError(f"thompson_choose should return one arm per bandit, shape "
                             f"({_DRAWS},); got shape {arms.shape}{hint}")
    return np.bincount(arms.astype(np.int64).ravel(), minlength=3)[:3] / _DRAWS


def check_thompson(thompson_choose: Callable) -> None:
    """``thompson_choose(successes, failures, rng)`` -> one arm per bandit, sampled by TS."""
    __tracebackhide__ = True
    from ..rl.classical import play_bandits

    def posterior_probability():
        # P(Beta(3, 1) > Beta(1, 2)) = 0.9: arm 0 should be chosen 90% of the time
        successes, failures = np.tile([[2.0, 0.0]], (20000, 1)), np.tile([[0.0, 1.0]], (20000, 1))
        try:
            arms = np.asarray(thompson_choose(successes, failures, np.random.default_rng(0)))
        except ValueError as error:
            if "<= 0" in str(error) or "a <= 0" in str(error) or "b <= 0" in str(error):
                raise AssertionError("rng.beta got a zero parameter: the posterior of an arm "
                                     "is Beta(1 + successes, 1 + failures), the Beta(1, 1) prior "
                                     "updated by the counts") from None
            raise
        assert arms.shape == (20000,), (f"expected one arm per bandit, shape (20000,), got shape "
                                        f"{arms.shape}: take .argmax(axis=-1) of the samples")
        share = float((arms == 0).mean())
        if abs(share - 0.9) >= 0.015:
            got = _shares(thompson_choose, 1)
            for message, variant in _thompson_variants().items():
                if message and np.abs(got - _shares(variant, 2)).max() < 0.02:
                    raise AssertionError(message)
        assert abs(share - 0.9) < 0.015, f"arm 0 chosen {share:.3f} of the time, expected 0.900"

    def three_arms():
        got, want = _shares(thompson_choose, 1), _shares(_thompson_variants()[None], 2)
        if np.abs(got - want).max() >= 0.02:
            for message, variant in _thompson_variants().items():
                if message and np.abs(got - _shares(variant, 2)).max() < 0.02:
                    raise AssertionError(message)
            raise AssertionError(f"posteriors Beta(3, 1), Beta(1, 1), Beta(2, 5): arms chosen "
                                 f"{got.round(3)} of the time, expected {want.round(3)}")

    def uses_rng():
        successes, failures = np.ones((200, 4)), np.ones((200, 4))
        first = np.asarray(thompson_choose(successes, failures, np.random.default_rng(7)))
        again = np.asarray(thompson_choose(successes, failures, np.random.default_rng(7)))
        if not np.array_equal(first, again):
            raise AssertionError("the same rng seed chose different arms: draw with the rng "
                                 "argument, rng.beta(...), never np.random.beta")

    def plays_well():
        agent = type("Student", (), {"choose": lambda self, s, f, left, rng: thompson_choose(s, f, rng)})
        means = np.random.default_rng(1).uniform(size=(1000, 5))
        total = play_bandits(agent(), means, 10, seed=2).mean()
        assert 5.5 < total < 6.1, f"mean total reward {total:.3f} at n = 10, k = 5; TS earns ≈ 5.75"

    run_checks("lab05/thompson", [
        ("chooses arms with their posterior probability of being best", posterior_probability),
        ("three arms: the same frequencies as the reference", three_arms),
        ("draws its random numbers from rng", uses_rng),
        ("earns Thompson sampling's reward (paper: 5.7)", plays_well)])


# ---------------------------------------------------------------------------------------------
# Exercise 5.3: RL²'s input encoding


def buggy_encode(states, prev_actions, prev_rewards, prev_dones, n_states, n_actions):
    """The planted bug of Lab 5: an encoding that looks right and is right at every step but one."""
    import torch

    state_part = torch.eye(n_states)[torch.as_tensor(states)]
    action_part = torch.eye(n_actions)[torch.as_tensor(prev_actions)]
    scalars = torch.stack([torch.as_tensor(prev_rewards, dtype=torch.float32),
                           torch.as_tensor(prev_dones, dtype=torch.float32)], dim=-1)
    return torch.cat([state_part, action_part, scalars], dim=-1)


def _encode_mistakes(states, actions, rewards, dones, n_states, n_actions):
    from ..rl.rl2 import encode_inputs

    def parts(a=actions):
        x = encode_inputs(states, a, rewards, dones, n_states, n_actions).double().numpy()
        return x[:, :n_states], x[:, n_states:n_states + n_actions], x[:, -2:-1], x[:, -1:]

    def wrapped():  # numpy/torch index −1: the last action
        s, _, r, d = parts()
        return np.concatenate([s, np.eye(n_actions)[actions], r, d], axis=1)

    return {
        "a previous action of −1 (no previous step) is encoded as the LAST action (index −1 "
        "wraps around): it must encode as all zeros, e.g. one_hot(a.clamp_min(0)) * (a >= 0)":
            wrapped,
        "the previous action comes before the state: the order is [onehot(s), onehot(a), r, d]":
            lambda: np.concatenate([parts()[1], parts()[0], *parts()[2:]], axis=1),
        "the reward and the done flag are swapped: the order is [onehot(s), onehot(a), r, d]":
            lambda: np.concatenate([*parts()[:2], parts()[3], parts()[2]], axis=1),
        "the previous action is missing or all zeros: encode onehot(a_{t−1})":
            lambda: np.concatenate([parts()[0], 0 * parts()[1], *parts()[2:]], axis=1),
    }


def check_encode(encode: Callable) -> None:
    """``encode(states, prev_actions, prev_rewards, prev_dones, n_states, n_actions)`` -> x_t."""
    __tracebackhide__ = True
    import torch

    from ..rl.rl2 import encode_inputs

    rng = np.random.default_rng(3)

    def matches(n_states, n_actions, first):
        n = 16
        states = rng.integers(n_states, size=n)
        actions = np.full(n, -1) if first else rng.integers(n_actions, size=n)
        rewards, dones = rng.normal(size=n), rng.uniform(size=n) < 0.3
        expected = encode_inputs(states, actions, rewards, dones, n_states, n_actions)
        what = f"encode(...) with {n_states} states and {n_actions} actions"
        try:
            got = encode(states, actions, rewards, dones, n_states, n_actions)
        except (RuntimeError, IndexError) as error:
            if "smaller than num_classes" in str(error):
                raise AssertionError(
                    f"RuntimeError ({error}): one_hot(x, n) needs n larger than every value of x. "
                    "One-hot the states with n_states classes and the previous actions with "
                    "n_actions classes") from None
            if first and ("negative" in str(error) or "out of" in str(error)):
                raise AssertionError(
                    f"{type(error).__name__} ({error}) on a previous action of −1: −1 means "
                    "'no previous step yet' and encodes as all zeros, e.g. "
                    "one_hot(a.clamp_min(0), n_actions) * (a >= 0).unsqueeze(-1)") from None
            raise
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"{what} should return a torch tensor (the policy's input), got "
                                 f"{type(got).__name__}"
                                 + ("; did you forget to `return` it?" if got is None else
                                    ": wrap it with torch.as_tensor(..., dtype=torch.float32)"))
        if not got.is_floating_point():
            raise AssertionError(f"{what} returned a {got.dtype} tensor: the GRU takes floats; "
                                 "one_hot gives integers, convert with .float()")
        if got.dtype != torch.get_default_dtype():
            raise AssertionError(f"{what} returned a {got.dtype} tensor, but the policy's weights "
                                 f"are {torch.get_default_dtype()} (NumPy arrays become float64): "
                                 "convert with .float()")
        if tuple(got.shape) != tuple(expected.shape):
            raise AssertionError(f"{what} has shape {tuple(got.shape)}, expected "
                                 f"{tuple(expected.shape)} = (batch, n_states + n_actions + 2): "
                                 "[onehot(s_t), onehot(a_{t−1}), r_{t−1}, d_{t−1}]")
        _name_mistake(got, _encode_mistakes(states, actions, rewards, dones, n_states, n_actions),
                      what, expected)
        assert_close(got, expected, atol=1e-6, rtol=1e-6, what=what)

    run_checks("lab05/encode", [("bandit inputs (one state)", lambda: matches(1, 5, False)),
                                ("tabular MDP inputs", lambda: matches(10, 5, False)),
                                ("first step of a trial (no previous action)",
                                 lambda: matches(10, 5, True))])


# ---------------------------------------------------------------------------------------------
# Exercise 5.4: a trial rollout


class _RecordingEncode:
    """The ``encode`` handed to the student's rollout: ``encode_inputs`` with the sizes bound,
    recording every call. The contract is four arguments; a call that also passes the sizes
    (positionally or by name) is accepted when they are the right ones."""

    def __init__(self, n_states: int, n_actions: int) -> None:
        self.sizes, self.calls = {"n_states": n_states, "n_actions": n_actions}, []

    def __call__(self, states, prev_actions, prev_rewards, prev_dones, *sizes, **named):
        from ..rl.rl2 import encode_inputs

        given = dict(zip(("n_states", "n_actions"), sizes), **named)
        unknown = set(given) - set(self.sizes)
        if len(sizes) > 2 or unknown:
            raise AssertionError(
                "encode takes four arguments, encode(states, prev_actions, prev_rewards, "
                f"prev_dones); it was called with extra arguments {sizes[2:] or sorted(unknown)}")
        wrong = {k: v for k, v in given.items() if v != self.sizes[k]}
        if wrong:
            raise AssertionError(
                f"encode was called with {wrong}, but this environment has {self.sizes}. Call "
                "encode(states, prev_actions, prev_rewards, prev_dones) with four arguments: "
                "the encode you are given already knows the sizes (functools.partial)")
        if np.ndim(states) != 1:
            raise AssertionError(
                f"encode got states of shape {tuple(np.shape(states))}; it takes one value per task, shape "
                "(n_tasks,): the env's tensors are (n_tasks, 1) (one trial per task), so pass obs[:, 0], "
                "step.rewards[:, 0] and (step.terminated | step.truncated)[:, 0]")
        copy = [np.array(np.asarray(v), copy=True) for v in
                (states, prev_actions, prev_rewards, prev_dones)]
        self.calls.append(copy)
        return encode_inputs(states, prev_actions, prev_rewards, prev_dones, **self.sizes)


class _RecordingPolicy:
    """Wraps a policy: counts ``initial_state`` calls, checks the hidden state is carried, keeps
    each step's logits."""

    def __init__(self, policy) -> None:
        self.policy, self.initial_at, self.logits = policy, [], []
        self.hidden_problems: list[int] = []
        self._last = None

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def __call__(self, *args, **kwargs):
        return self.policy(*args, **kwargs)

    def initial_state(self, batch_size: int):
        self.initial_at.append(len(self.logits))  # the steps taken before this call
        self._last = self.policy.initial_state(batch_size)
        return self._last

    def step(self, inputs, hidden):
        import torch

        last = self._last
        same = last is not None and len(last) == len(hidden) and all(
            torch.equal(a, b) for a, b in zip(last, hidden))
        if not same:
            self.hidden_problems.append(len(self.logits))
        logits, values, self._last = self.policy.step(inputs, hidden)
        self.logits.append(logits.detach().clone())
        return logits, values, self._last


def _as_batch_by_step(value, name: str, batch: int, n_steps: int):
    import torch

    if isinstance(value, (list, tuple)):
        raise AssertionError(f"{name} should be one tensor of shape (batch, n_steps) = "
                             f"({batch}, {n_steps}), got a {type(value).__name__}: "
                             "torch.stack(the list, dim=1)")
    shape = tuple(np.shape(value))
    if len(shape) == 3 and 1 in shape[1:]:
        raise AssertionError(f"{name} has shape {shape}: one trial per task gives (n_tasks, n_steps) = "
                             f"({batch}, {n_steps}); take [:, 0] of the env's (n_tasks, 1) tensors before "
                             "stacking")
    if shape == (n_steps, batch) and batch != n_steps:
        raise AssertionError(f"{name} has shape (n_steps, batch) = {shape}: stack the steps "
                             f"along dim=1 to get (batch, n_steps) = ({batch}, {n_steps})")
    return torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)


def _call_rollout(rollout_trial, policy, env, n_steps, encode, greedy, seed=5):
    import torch

    generator = torch.Generator().manual_seed(seed)
    untouched = generator.get_state()
    result = rollout_trial(policy, env, n_steps, encode, generator, greedy)
    if torch.equal(generator.get_state(), untouched):
        raise AssertionError("the generator you were given drew nothing: start the trial with "
                             "env.reset(1, generator), so that the env's rewards and transitions (and the "
                             "sampled actions) come from it")
    if not isinstance(result, tuple) or len(result) != 2:
        raise AssertionError("rollout_trial should return a pair (actions, rewards), got "
                             f"{type(result).__name__}"
                             + ("; did you forget to `return` it?" if result is None else ""))
    return result


_CALL_HINTS = {
    1: "prev_actions should be the actions taken at the previous step (and −1 at the first step: "
       "torch.full((env.n_tasks,), -1), 'no previous action yet')",
    0: "states should be the states of the episodes now running: env.reset(1, generator)[:, 0] at "
       "the start, then after every step env.restart(ended)[:, 0] (the NEW state, and state 0 where an "
       "episode ended and the next one began)",
    2: "prev_rewards should be the rewards of the previous step, step.rewards[:, 0] (0 at the "
       "first step)",
    3: "prev_dones should be the previous step's (step.terminated | step.truncated)[:, 0] (False at "
       "the first step)",
}


def _diagnose_rollout(mine: _RecordingEncode, reference: _RecordingEncode,
                      policy: _RecordingPolicy, greedy: bool, actions) -> None:
    import torch

    resets = sum(at < len(policy.logits) for at in policy.initial_at)  # ignoring any after the end
    if resets != 1:
        raise AssertionError(
            f"policy.initial_state was called {resets} times in one trial: create "
            "the hidden state once, at the start of the trial, and carry it across episode ends "
            "(RL² never resets it within a trial)")
    if policy.hidden_problems:
        raise AssertionError(
            f"at step {policy.hidden_problems[0]} the hidden state passed to policy.step is not "
            "the one the previous policy.step returned: keep `logits, values, hidden = "
            "policy.step(x, hidden)` and pass that hidden on (never reset it at done)")
    if greedy and len(policy.logits) == actions.shape[1]:
        best = torch.stack(policy.logits, dim=1).argmax(-1)
        if not torch.equal(torch.as_tensor(actions).long(), best):
            raise AssertionError("with greedy=True the action is logits.argmax(-1); yours are not "
                                 "the most likely actions of your logits (sampled?)")
    if not mine.calls:
        raise AssertionError("the encode argument was never called: build each step's input "
                             "with the encode passed to rollout_trial (Part 3 passes its own), "
                             "x = encode(states, prev_actions, prev_rewards, prev_dones)")
    for t, (got, want) in enumerate(zip(mine.calls, reference.calls)):
        for index in (1, 0, 2, 3):
            if got[index].shape != want[index].shape or not np.allclose(got[index], want[index]):
                raise AssertionError(f"step {t}: encode got {got[index].tolist()[:6]}... as its "
                                     f"argument {index + 1}, expected "
                                     f"{want[index].tolist()[:6]}...: {_CALL_HINTS[index]}")


def check_rollout(rollout_trial: Callable) -> None:
    """``rollout_trial(policy, env, n_steps, encode, generator, greedy)`` -> (actions, rewards), each
    (n_tasks, n_steps), one trial per task of a ``task_env`` env.

    ``encode`` is called as ``encode(states, prev_actions, prev_rewards, prev_dones)``: the check
    passes ``encode_inputs`` with the sizes already bound, and records every call, so that a
    wrong argument is named with the step where it first differs from the reference's call.
    """
    __tracebackhide__ = True
    import torch

    from ..rl.envs import BatchedTabularMDP
    from ..rl.rl2 import RL2Policy
    from ..rl.rollout import collect_trials

    def compare(horizon, episodes):
        torch.manual_seed(0)
        policy = RL2Policy(10, 5, 16)
        env = lambda: BatchedTabularMDP.sample(6, np.random.default_rng(1), horizon=horizon)  # noqa: E731
        reference = _RecordingEncode(10, 5)
        n_steps = horizon * episodes
        expected = collect_trials(policy, env(), n_steps, reference, torch.Generator().manual_seed(5),
                                  greedy=True)[:, 0]
        mine, recorder = _RecordingEncode(10, 5), _RecordingPolicy(policy)
        actions, rewards = _call_rollout(rollout_trial, recorder, env(), n_steps, mine, True)
        actions = _as_batch_by_step(actions, "actions", 6, n_steps)
        rewards = _as_batch_by_step(rewards, "rewards", 6, n_steps)
        if tuple(actions.shape) == tuple(rewards.shape) == (6, n_steps) and not (
                torch.equal(actions.long(), expected.actions) and torch.allclose(rewards.float(), expected.rewards)):
            _diagnose_rollout(mine, reference, recorder, True, actions)
        assert_close(actions, expected.actions, atol=0, rtol=0, what="actions")
        assert_close(rewards, expected.rewards, atol=1e-5, rtol=1e-5, what="rewards")
        _diagnose_rollout(mine, reference, recorder, True, actions)
        if len(mine.calls) != n_steps:
            raise AssertionError(f"encode was called {len(mine.calls)} times for {n_steps} steps: "
                                 "once per step, before policy.step")

    def samples_when_not_greedy():
        torch.manual_seed(0)
        policy = RL2Policy(1, 5, 16)  # a near-uniform first policy: samples differ across envs
        from ..rl.envs import BatchedBernoulliBandit

        env = BatchedBernoulliBandit(np.full((64, 5), 0.5))
        actions, _ = _call_rollout(rollout_trial, policy, env, 3, _RecordingEncode(1, 5), False)
        actions = _as_batch_by_step(actions, "actions", 64, 3)
        if len(torch.unique(torch.as_tensor(actions)[:, 0])) == 1:
            raise AssertionError("with greedy=False every environment took the same first action: "
                                 "sample it, torch.distributions.Categorical(logits=logits)"
                                 ".sample(), instead of taking the argmax")

    run_checks("lab05/rollout", [
        ("one episode of 4 steps", lambda: compare(4, 1)),
        ("three episodes: the hidden state crosses episode boundaries", lambda: compare(3, 3)),
        ("greedy=False samples the actions", samples_when_not_greedy)])
