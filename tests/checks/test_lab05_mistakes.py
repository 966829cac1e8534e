"""Lab 5's mistake catalogue: each usual mistake fails its check with a message that names it.

Every test writes the mistaken implementation a student would write and asserts the check's
message. The correct implementations (the solution's) pass every check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _catalogue import assert_named, with_mistake

from metacourse.checks import lab05

pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------------------------------------
# Correct implementations (as in solutions/lab05_bandits_rl2.ipynb)


def ucb1_index(successes, failures, c, *, mistake=None):
    pulls = successes + failures + 2
    t = pulls.sum(axis=-1, keepdims=True)
    mean = (successes + 1) / pulls
    if mistake == "log2":
        return mean + c * np.sqrt(2 * np.log2(t) / pulls)
    if mistake == "no log":
        return mean + c * np.sqrt(2 * t / pulls)
    if mistake == "minus":
        return mean - c * np.sqrt(2 * np.log(t) / pulls)
    if mistake == "t per arm":
        return mean + c * np.sqrt(2 * np.log(pulls) / pulls)
    if mistake == "t over bandits":
        t = pulls.sum(axis=0, keepdims=True)
    if mistake == "no prior":
        pulls = successes + failures
        with np.errstate(all="ignore"):  # arms never pulled: 0 / 0
            return successes / pulls + c * np.sqrt(2 * np.log(pulls.sum(-1, keepdims=True)) / pulls)
    if mistake == "c inside":
        return mean + np.sqrt(c * 2 * np.log(t) / pulls)
    if mistake == "no 2":
        return mean + c * np.sqrt(np.log(t) / pulls)
    return mean + c * np.sqrt(2 * np.log(t) / pulls)


def thompson_choose(successes, failures, rng, *, mistake=None):
    if mistake == "argmin":
        return rng.beta(successes + 1, failures + 1).argmin(axis=-1)
    if mistake == "swapped":
        return rng.beta(failures + 1, successes + 1).argmax(axis=-1)
    if mistake == "no prior":
        return rng.beta(successes, failures).argmax(axis=-1)
    if mistake == "mean":
        return ((successes + 1) / (successes + failures + 2)).argmax(axis=-1)
    if mistake == "np.random":
        return np.random.beta(successes + 1, failures + 1).argmax(axis=-1)
    if mistake == "samples":
        return rng.beta(successes + 1, failures + 1)
    if mistake == "axis 0":
        return rng.beta(successes + 1, failures + 1).argmax(axis=0)
    return rng.beta(successes + 1, failures + 1).argmax(axis=-1)


def encode(states, prev_actions, prev_rewards, prev_dones, n_states, n_actions, *, mistake=None):
    states, prev_actions = torch.as_tensor(states), torch.as_tensor(prev_actions)
    state_part = torch.nn.functional.one_hot(states, n_actions if mistake == "sizes swapped"
                                             else n_states).float()
    if mistake == "one_hot(-1)":
        action_part = torch.nn.functional.one_hot(prev_actions, n_actions).float()
    else:
        action_part = torch.nn.functional.one_hot(prev_actions.clamp_min(0), n_actions).float()
        action_part = action_part * (prev_actions >= 0).unsqueeze(-1)
    reward = torch.as_tensor(prev_rewards, dtype=torch.float32)
    done = torch.as_tensor(prev_dones, dtype=torch.float32)
    scalars = torch.stack([done, reward] if mistake == "done first" else [reward, done], dim=-1)
    parts = [state_part, action_part, scalars]
    if mistake == "action first":
        parts = [action_part, state_part, scalars]
    if mistake == "no done":
        parts = [state_part, action_part, reward[:, None]]
    x = torch.cat(parts, dim=-1)
    if mistake == "integers":
        return x.long()
    if mistake == "float64":
        return x.double()
    if mistake == "numpy":
        return x.numpy()
    return x


def rollout_trial(policy, env, n_steps, encode, generator, greedy=False, *, mistake=None):
    n = env.n_tasks
    obs = env.reset(1, torch.Generator() if mistake == "own generator" else generator)
    states = obs if mistake == "(n, 1) states" else obs[:, 0]
    first_action = 0 if mistake == "first action 0" else -1
    prev_actions, prev_rewards, prev_dones = torch.full((n,), first_action), torch.zeros(n), torch.zeros(n, dtype=bool)
    hidden = policy.initial_state(n)
    actions_taken, rewards_seen = [], []
    with torch.no_grad():
        for _ in range(n_steps):
            if mistake == "six arguments":
                x = encode(states, prev_actions, prev_rewards, prev_dones, policy.n_states, policy.n_actions)
            elif mistake == "wrong sizes":
                x = encode(states, prev_actions, prev_rewards, prev_dones, 5, 10)
            else:
                x = encode(states, prev_actions, prev_rewards, prev_dones)
            logits, _, new_hidden = policy.step(x, hidden)
            if mistake != "hidden not carried":
                hidden = new_hidden
            if (greedy and mistake != "always sample") or mistake == "never sample":
                actions = logits.argmax(-1)
            else:
                actions = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
            step = env.step(actions[:, None])
            ended = step.terminated | step.truncated
            if mistake == "reset at done" and ended.any():
                hidden = policy.initial_state(n)
            new_states = step.obs if mistake == "no restart" else env.restart(ended)
            actions_taken.append(actions)
            rewards_seen.append(step.rewards if mistake == "(n, 1) results" else step.rewards[:, 0])
            if mistake != "old state":
                states = new_states if mistake == "(n, 1) states" else new_states[:, 0]
            prev_actions, prev_rewards, prev_dones = actions, step.rewards[:, 0], ended[:, 0]
    if mistake == "steps first":
        return torch.stack(actions_taken), torch.stack(rewards_seen)
    return torch.stack(actions_taken, dim=1), torch.stack(rewards_seen, dim=1)


# ---------------------------------------------------------------------------------------------


def test_correct_solutions_pass(capsys):
    lab05.check_ucb1_index(ucb1_index)
    lab05.check_thompson(thompson_choose)
    lab05.check_encode(encode)
    lab05.check_rollout(rollout_trial)
    assert capsys.readouterr().out.splitlines() == [
        "lab05/ucb1: 3/3 checks passed", "lab05/thompson: 4/4 checks passed",
        "lab05/encode: 3/3 checks passed", "lab05/rollout: 3/3 checks passed"]


@pytest.mark.parametrize(("mistake", "message"), [
    ("no log", "the log is missing"),
    ("no 2", "the factor 2 is missing"),
    ("log2", "the log is in base 2"),
    ("minus", "the bonus is subtracted"),
    ("c inside", "c is inside the square root"),
    ("no prior", "pseudo-counts are missing"),
    ("t per arm", "t is each arm's own count"),
    ("t over bandits", "t is summed over the bandits"),
])
def test_ucb1_mistakes_are_named(mistake, message):
    assert_named(lab05.check_ucb1_index, with_mistake(ucb1_index, mistake), message)


@pytest.mark.parametrize(("mistake", "message"), [
    ("argmin", "the LOWEST sample"),
    ("swapped", "α and β swapped"),
    ("no prior", "rng.beta got a zero parameter"),
    ("mean", "highest posterior MEAN"),
    ("np.random", "never np.random.beta"),
    ("samples", "not the samples"),
    ("axis 0", "not axis 0"),
])
def test_thompson_mistakes_are_named(mistake, message):
    assert_named(lab05.check_thompson, with_mistake(thompson_choose, mistake), message)


@pytest.mark.parametrize(("mistake", "message"), [
    ("one_hot(-1)", "−1 means 'no previous step yet'"),
    ("action first", "the previous action comes before the state"),
    ("done first", "the reward and the done flag are swapped"),
    ("no done", "(batch, n_states + n_actions + 2)"),
    ("integers", "convert with .float()"),
    ("sizes swapped", "One-hot the states with n_states classes"),
    ("float64", "NumPy arrays become float64"),
    ("numpy", "should return a torch tensor"),
])
def test_encode_mistakes_are_named(mistake, message):
    assert_named(lab05.check_encode, with_mistake(encode, mistake), message)


def test_planted_encode_bug_is_caught_at_the_first_step():
    with pytest.raises(AssertionError) as info:
        lab05.check_encode(lab05.buggy_encode)
    message = str(info.value)
    assert "1 of 3 checks failed" in message
    assert "first step of a trial" in message and "LAST action" in message


def test_six_argument_encode_call_is_accepted(capsys):
    lab05.check_rollout(with_mistake(rollout_trial, "six arguments"))
    assert capsys.readouterr().out == "lab05/rollout: 3/3 checks passed\n"


@pytest.mark.parametrize(("mistake", "message"), [
    ("wrong sizes", "the encode you are given already knows the sizes"),
    ("first action 0", "step 0: encode got [0, 0, 0, 0, 0, 0]... as its argument 2"),
    ("old state", "(the NEW state, and state 0 where an episode ended"),
    ("reset at done", "policy.initial_state was called 3 times"),
    ("hidden not carried", "is not the one the previous policy.step returned"),
    ("always sample", "with greedy=True the action is logits.argmax(-1)"),
    ("never sample", "with greedy=False every environment took the same first action"),
    ("steps first", "stack the steps along dim=1"),
    ("no restart", "then after every step env.restart(ended)[:, 0]"),
    ("own generator", "start the trial with env.reset(1, generator)"),
    ("(n, 1) states", "it takes one value per task, shape (n_tasks,)"),
    ("(n, 1) results", "take [:, 0] of the env's (n_tasks, 1) tensors"),
])
def test_rollout_mistakes_are_named(mistake, message):
    assert_named(lab05.check_rollout, with_mistake(rollout_trial, mistake), message)


def test_rollout_that_ignores_the_encode_argument_is_named():
    from functools import partial

    def global_encode(policy, env, n_steps, given_encode, generator, greedy=False):
        mine = partial(encode, n_states=10, n_actions=5)
        return rollout_trial(policy, env, n_steps, mine, generator, greedy)

    assert_named(lab05.check_rollout, global_encode, "the encode argument was never called")
