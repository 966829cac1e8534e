"""Lab 07's mistake catalogue: each typical wrong implementation of Exercises 7.1–7.3 fails its
check with a message that names the mistake and the fix; the reference passes."""

from __future__ import annotations

import pytest
import torch
from _catalogue import assert_named

from metacourse.checks import lab07
from metacourse.rl import mbmpo

pytestmark = pytest.mark.usefixtures("one_thread")


def _standardised(ensemble, obs, actions):
    return (torch.cat([obs, actions], -1) - ensemble.in_mean) / ensemble.in_std


def _predict(unstandardise=lambda e, out: out * e.out_std + e.out_mean, standardise=True, add_state=True,
             in_place=False):
    def my_predict(ensemble, obs, actions):
        inputs = _standardised(ensemble, obs, actions) if standardise else torch.cat([obs, actions], -1)
        delta = unstandardise(ensemble, ensemble.normalized_forward(inputs))
        if in_place:
            obs += delta
            return obs
        return obs + delta if add_state else delta
    return my_predict


PREDICT_MISTAKES = {
    "Δ instead of s + Δ": (_predict(add_state=False), r"state change Δ; the next state is s \+ Δ"),
    "Δ̃ not un-standardised": (_predict(unstandardise=lambda e, out: out), r"\*standardised\* Δ̃.*out_std"),
    "un-standardised in the wrong order": (_predict(unstandardise=lambda e, out: (out + e.out_mean) * e.out_std),
                                           r"wrong order.*Δ̃ · out_std \+ out_mean"),
    "multiplied by the variance": (_predict(unstandardise=lambda e, out: out * e.out_std ** 2 + e.out_mean),
                                   r"out_std², the variance"),
    "divided by out_std": (_predict(unstandardise=lambda e, out: out / e.out_std + e.out_mean),
                           r"divided by out_std.*MULTIPLIES"),
    "inputs not standardised": (_predict(standardise=False), r"raw \(s, a\).*in_mean\) / in_std"),
    "inputs centred only": (lambda e, o, a: o + e.normalized_forward(torch.cat([o, a], -1) - e.in_mean) * e.out_std
                            + e.out_mean, r"centred but not scaled"),
    "obs changed in place": (_predict(in_place=True), r"changed `obs` in place"),
    "detached": (lambda e, o, a: _predict()(e, o, a).detach(), r"must stay differentiable"),
}


def _loss(target=lambda e, o, n: (n - o - e.out_mean) / e.out_std, reduce=lambda err: (err ** 2).mean(),
          standardise=True):
    def my_model_loss(ensemble, obs, actions, next_obs):
        inputs = _standardised(ensemble, obs, actions) if standardise else torch.cat([obs, actions], -1)
        return reduce(ensemble.normalized_forward(inputs) - target(ensemble, obs, next_obs))
    return my_model_loss


LOSS_MISTAKES = {
    "real units": (lambda e, o, a, n: ((e.predict(o, a) - n) ** 2).mean(), r"real units.*\*standardised\*"),
    "target not standardised": (_loss(target=lambda e, o, n: n - o), r"target Δ = s' − s is not standardised"),
    "target is the next state": (_loss(target=lambda e, o, n: (n - e.out_mean) / e.out_std),
                                 r"standardised NEXT STATE.*CHANGE"),
    "sum instead of mean": (_loss(reduce=lambda err: (err ** 2).sum()), r"SUM of the squared errors.*mean"),
    "summed over models": (_loss(reduce=lambda err: (err ** 2).mean((1, 2)).sum()), r"sum over the 3 models"),
    "inputs not standardised": (_loss(standardise=False), r"raw \(s, a\).*standardised inputs"),
    "summed over transitions": (_loss(reduce=lambda err: (err ** 2).mean(-1).sum(-1).mean()),
                                r"SUMMED over the 7 transitions"),
    "absolute error": (_loss(reduce=lambda err: err.abs().mean()), r"ABSOLUTE error.*SQUARED"),
    "Huber loss": (lambda e, o, a, n: torch.nn.functional.smooth_l1_loss(
        e.normalized_forward(_standardised(e, o, a)), (n - o - e.out_mean) / e.out_std), r"smooth-L1.*SQUARED"),
    "one loss per model": (_loss(reduce=lambda err: (err ** 2).mean((1, 2))), r"return one number"),
}


def _imagine(step=None, act_from_start=False, record_after=False, reward_next=False, grad=False,
             steps=lambda h: h, in_place=False, stack_axis=-2, reward_axis=-1):
    def my_imagine(ensemble, policy_fn, starts, reward_fn, horizon):
        states, record = starts, {"obs": [], "actions": [], "rewards": []}
        with torch.set_grad_enabled(grad):
            for _ in range(steps(horizon)):
                chosen = policy_fn(starts if act_from_start else states)
                after = ensemble.predict(states, chosen) if step is None else step(ensemble, states, chosen)
                record["obs"].append(after if record_after else states)
                record["actions"].append(chosen)
                record["rewards"].append(reward_fn(after if reward_next else states, chosen))
                if in_place:
                    states.copy_(after)
                else:
                    states = after
        return (torch.stack(record["obs"], stack_axis), torch.stack(record["actions"], stack_axis),
                torch.stack(record["rewards"], reward_axis))
    return my_imagine


def _model_zero(ensemble, states, actions):
    return lab07._predict_by(ensemble, states, actions, [0] * ensemble.n_models)


def _flipped(ensemble, states, actions):
    return ensemble.predict(states.flip(0), actions.flip(0)).flip(0)  # row k through model K − 1 − k


IMAGINE_MISTAKES = {
    "records the next state": (_imagine(record_after=True), r"state the action a_t was taken in"),
    "rewards the next state": (_imagine(reward_next=True), r"r\(s_t, a_t\).*not of the next state"),
    "model 0 for every row": (_imagine(step=_model_zero), r"every row was moved by model 0.*row k.*model k"),
    "rows of the wrong model": (_imagine(step=_flipped), r"moved by model K − 1 − k.*model k only"),
    "mean of the models": (_imagine(step=lambda e, s, a: lab07._mean_model(e, s, a)),
                           r"MEAN of the models.*each\s+model separately"),
    "actions from the start states": (_imagine(act_from_start=True), r"START states.*current imagined state"),
    "gradients kept": (_imagine(grad=True, step=lambda e, s, a: e.predict(s, a)), r"carry gradients.*no_grad"),
    "one step too many": (_imagine(steps=lambda h: h + 1), r"7 steps for horizon = 6"),
    "starts changed in place": (_imagine(in_place=True), r"changed `starts` in place"),
    "stacked on the wrong axis": (_imagine(stack_axis=0), r"stack the steps on axis -2"),
    "rewards stacked on the wrong axis": (_imagine(reward_axis=1),
                                          r"rewards has shape.*stack the steps on the last axis"),
}


def test_reference_functions_pass(capsys):
    lab07.check_predict(lambda ensemble, obs, actions: ensemble.predict(obs, actions))
    lab07.check_predict(_predict())
    lab07.check_model_loss(mbmpo.model_loss)
    lab07.check_model_loss(_loss())
    lab07.check_imagine(lab07.reference_imagine)
    lab07.check_imagine(_imagine())
    assert capsys.readouterr().out.splitlines() == [
        "lab07/predict: 4/4 checks passed", "lab07/predict: 4/4 checks passed",
        "lab07/model_loss: 3/3 checks passed", "lab07/model_loss: 3/3 checks passed",
        "lab07/imagine: 3/3 checks passed", "lab07/imagine: 3/3 checks passed"]


@pytest.mark.parametrize("name", PREDICT_MISTAKES)
def test_predict_mistake_is_named(name):
    assert_named(lab07.check_predict, *PREDICT_MISTAKES[name], regex=True)


@pytest.mark.parametrize("name", LOSS_MISTAKES)
def test_model_loss_mistake_is_named(name):
    assert_named(lab07.check_model_loss, *LOSS_MISTAKES[name], regex=True)


@pytest.mark.parametrize("name", IMAGINE_MISTAKES)
def test_imagine_mistake_is_named(name):
    assert_named(lab07.check_imagine, *IMAGINE_MISTAKES[name], regex=True)


def test_a_wrong_predict_does_not_cost_the_imagination(capsys):
    namespace = {"torch": torch, "my_predict": PREDICT_MISTAKES["Δ instead of s + Δ"][0]}
    exec("def my_imagine(ensemble, policy_fn, starts, reward_fn, horizon):\n"
         "    states, obs, actions, rewards = starts, [], [], []\n"
         "    with torch.no_grad():\n"
         "        for _ in range(horizon):\n"
         "            chosen = policy_fn(states)\n"
         "            obs.append(states); actions.append(chosen); rewards.append(reward_fn(states, chosen))\n"
         "            states = my_predict(ensemble, states, chosen)\n"
         "    return torch.stack(obs, -2), torch.stack(actions, -2), torch.stack(rewards, -1)", namespace)
    lab07.check_imagine(namespace["my_imagine"])
    assert capsys.readouterr().out == "lab07/imagine: 3/3 checks passed\n"
