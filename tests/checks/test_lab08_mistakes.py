"""Lab 08's mistake catalogue: each typical wrong implementation of Exercises 8.1–8.2 fails its
check with a message that names the mistake and the fix; the reference passes."""

from __future__ import annotations

import pytest
import torch
from _catalogue import assert_named

from metacourse.checks import lab08
from metacourse.rl import meta_critic

pytestmark = pytest.mark.usefixtures("one_thread")


def _encode(read):
    def my_encode(encoder, trace):
        return read(encoder, trace)
    return my_encode


def _hidden(encoder, trace):
    _, (hidden, _) = encoder.lstm(trace)
    return hidden[-1]


def _in_place(encoder, trace):
    trace[..., -1] *= 0.1  # rescales the rewards of the caller's trace
    return encoder.head(_hidden(encoder, trace))


ENCODER_MISTAKES = {
    "first step's output": (_encode(lambda e, t: e.head(e.lstm(t)[0][:, 0])), r"first step.*last\* step"),
    "mean over steps": (_encode(lambda e, t: e.head(e.lstm(t)[0].mean(1))), r"averages.*hidden\[-1\]"),
    "sum over steps": (_encode(lambda e, t: e.head(e.lstm(t)[0].sum(1))), r"sums.*hidden\[-1\]"),
    "cell state": (_encode(lambda e, t: e.head(e.lstm(t)[1][1][-1])), r"CELL state.*hidden state h"),
    "trace read backwards": (_encode(lambda e, t: e.head(_hidden(e, t.flip(1)))), r"backwards.*time order"),
    "layer axis kept": (_encode(lambda e, t: e.head(e.lstm(t)[1][0])), r"leading axis of layers.*hidden\[-1\]"),
    "head forgotten": (_encode(_hidden), r"apply the linear map encoder\.head"),
    "trace transposed": (_encode(lambda e, t: e.head(_hidden(e, t.transpose(0, 1)))),
                         r"one per step, not one per task.*batch_first.*without transposing"),
    "trace cast to float32": (_encode(lambda e, t: e.head(_hidden(e, t.float()))), r"changed the trace's dtype"),
    "trace changed in place": (_encode(_in_place), r"changed the trace.*build new tensors"),
}


def _actor_loss(weights="softmax", task_reduce="sum", state_reduce="mean", sign=-1.0, entropy_sign=1.0,
                frozen=True, detach_logits=False, detach_entropy_probs=False):
    def my_actor_loss(critic, model, actors, states, z, entropy_coef):
        logits = meta_critic.act(model, actors, states)
        if detach_logits:
            logits = logits.detach()
        eye = torch.eye(logits.shape[-1], dtype=states.dtype)
        with torch.set_grad_enabled(not frozen):
            q_values = torch.stack([critic(states, eye[a].expand(*states.shape[:2], -1), z)
                                    for a in range(logits.shape[-1])], dim=-1)
        policy, log_policy = torch.softmax(logits, -1), torch.log_softmax(logits, -1)
        entropy = -((policy.detach() if detach_entropy_probs else policy) * log_policy).sum(-1)
        if weights == "greedy":
            value = q_values.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1)
        else:
            value = ({"softmax": policy, "log": log_policy, "logits": logits}[weights] * q_values).sum(-1)
        objective = value + entropy_sign * entropy_coef * entropy
        per_task = objective.mean(1) if state_reduce == "mean" else objective.sum(1)
        return sign * (per_task.sum() if task_reduce == "sum" else per_task.mean())
    return my_actor_loss


def _greedy_without_graph(critic, model, actors, states, z, entropy_coef):
    with torch.no_grad():
        logits = meta_critic.act(model, actors, states)
        q_values = torch.stack([critic(states, torch.eye(2, dtype=states.dtype)[a].expand(*states.shape[:2], -1), z)
                                for a in range(2)], dim=-1)
    return -q_values.gather(-1, logits.argmax(-1, keepdim=True)).squeeze(-1).mean(1).sum()


ACTOR_MISTAKES = {
    "wrong sign": (_actor_loss(sign=1.0), r"sign is wrong.*MAXIMISES"),
    "mean over tasks": (_actor_loss(task_reduce="mean"), r"mean over the 3 actors.*SUM over the tasks"),
    "sum over states": (_actor_loss(state_reduce="sum"), r"SUM over each task's states.*mean over the states"),
    "Q weighted by log π": (_actor_loss(weights="log"), r"log π.*probability π\(a\|s\)"),
    "Q weighted by logits": (_actor_loss(weights="logits"), r"raw logits.*softmax"),
    "only the most likely action": (_actor_loss(weights="greedy"), r"only the most likely action.*every"),
    "only the most likely action, no graph at all": (_greedy_without_graph, r"only the most likely action.*every"),
    "entropy bonus subtracted": (_actor_loss(entropy_sign=-1.0), r"entropy bonus has the wrong sign"),
    "entropy ignored": (_actor_loss(entropy_sign=0.0), r"ignores entropy_coef"),
    "π detached in the entropy": (_actor_loss(detach_entropy_probs=True), r"right value but not the right gradient"),
    "critic not frozen": (_actor_loss(frozen=False), r"gradients into the critic.*torch\.no_grad"),
    "actors detached": (_actor_loss(detach_logits=True), r"does not depend on the actors"),
}


def test_reference_functions_pass(capsys):
    lab08.check_encoder(lambda encoder, trace: encoder(trace))
    lab08.check_encoder(_encode(lambda e, t: e.head(_hidden(e, t))))
    lab08.check_actor_loss(meta_critic.actor_loss)
    lab08.check_actor_loss(_actor_loss())
    assert capsys.readouterr().out.splitlines() == [
        "lab08/encoder: 4/4 checks passed", "lab08/encoder: 4/4 checks passed",
        "lab08/actor_loss: 3/3 checks passed", "lab08/actor_loss: 3/3 checks passed"]


@pytest.mark.parametrize("name", ENCODER_MISTAKES)
def test_encoder_mistake_is_named(name):
    assert_named(lab08.check_encoder, *ENCODER_MISTAKES[name], regex=True)


@pytest.mark.parametrize("name", ACTOR_MISTAKES)
def test_actor_loss_mistake_is_named(name):
    assert_named(lab08.check_actor_loss, *ACTOR_MISTAKES[name], regex=True)


def test_a_greedy_loss_is_named_not_a_backward_error():
    with pytest.raises(AssertionError) as failure:
        lab08.check_actor_loss(_greedy_without_graph)
    assert "RuntimeError" not in str(failure.value)
