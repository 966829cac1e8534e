"""Lab 10's mistake catalogue: each typical wrong implementation of Exercises 10.1–10.6 fails its
check with a message that names the mistake and the fix; the reference passes."""

from __future__ import annotations

import re

import pytest
import torch

from metacourse.algorithms import in_context
from metacourse.checks import lab10
from metacourse.functional import mse_loss
from metacourse.models.transformer import encode_prompt, prompt_mask, token_positions

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- 10.1 encode

def _merged(x, y, x_query=None):  # one token per pair
    tokens = torch.cat([x, y], -1)
    if x_query is not None:
        tokens = torch.cat([tokens, torch.cat([x_query, x_query.new_zeros(*x_query.shape[:2], 1)], -1)], 1)
    return tokens


def _y_first(x, y, x_query=None):
    tokens = encode_prompt(x, y, x_query)
    k = x.shape[1]
    order = torch.cat([torch.arange(2 * k).view(-1, 2).flip(1).reshape(-1), torch.arange(2 * k, tokens.shape[1])])
    return tokens[:, order]


def _no_flag(x, y, x_query=None):
    tokens = encode_prompt(x, y, x_query).clone()
    tokens[:, 1: 2 * x.shape[1]: 2, -1] = 0
    return tokens


ENCODE_MISTAKES = {
    "x and y in one token": (_merged, r"one token per \(x, y\) pair.*a token each"),
    "y before x": (_y_first, r"y₁, x₁.*x BEFORE its y"),
    "no label flag": (_no_flag, r"\[0, y, 1\].*flag"),
}


# ----------------------------------------------------------------------------- 10.2 positions

def _shared(n_pairs, n_query):
    return torch.cat([torch.arange(n_pairs).repeat_interleave(2), torch.full((n_query,), n_pairs)])


POSITION_MISTAKES = {
    "positions shared between x and y tokens": (_shared, r"share position i.*x_i at 2i − 2"),
    "queries numbered one after another": (lambda k, m: torch.arange(2 * k + m), r"each of them position 2k"),
    "counting from 1": (lambda k, m: token_positions(k, m) + 1, r"start at 1: count from 0"),
    "one position per example": (lambda k, m: torch.arange(k + m), r"2k \+ m = \d+ tokens"),
    "float positions": (lambda k, m: token_positions(k, m).float(), r"dtype=torch\.long"),
}


# ----------------------------------------------------------------------------- 10.3 mask

def _sees_own_label(k, m):
    mask = prompt_mask(k, m)
    mask[: 2 * k, : 2 * k] = torch.ones(2 * k, 2 * k, dtype=torch.bool).tril(1)
    return mask


MASK_MISTAKES = {
    "a mask that lets the query see its own label": (_sees_own_label, r"own label y_i.*\.tril\(\)"),
    "no mask at all": (lambda k, m: torch.ones(2 * k + m, 2 * k + m, dtype=torch.bool), r"inverted|own label"),
    "queries see each other (plain causal)": (lambda k, m: torch.ones(2 * k + m, 2 * k + m, dtype=torch.bool).tril(),
                                              r"queries attend to the queries before them"),
    "inverted mask": (lambda k, m: ~prompt_mask(k, m), r"inverted: True must mean 'may attend'"),
    "strictly lower triangle": (lambda k, m: prompt_mask(k, m) & ~torch.eye(2 * k + m, dtype=torch.bool),
                                r"cannot attend to itself.*keep the diagonal"),
    "float mask": (lambda k, m: prompt_mask(k, m).float(), r"return booleans"),
}


# ----------------------------------------------------------------------------- 10.4 loss

def _sequence(model, tasks):
    x = torch.cat([tasks.x_support, tasks.x_query], 1)
    y = torch.cat([tasks.y_support, tasks.y_query], 1)
    n = x.shape[1]
    return model.run(encode_prompt(x, y), token_positions(n), prompt_mask(n))[0], y


def reference_loss(model, tasks):
    outputs, y = _sequence(model, tasks)
    return mse_loss(outputs[:, 0::2], y).mean()


def _every_position(model, tasks):
    outputs, y = _sequence(model, tasks)
    return mse_loss(outputs, y.repeat_interleave(2, dim=1)).mean()


def _at_y_tokens(model, tasks):
    outputs, y = _sequence(model, tasks)
    return mse_loss(outputs[:, 1::2], y).mean()


def _last_only(model, tasks):
    outputs, y = _sequence(model, tasks)
    return mse_loss(outputs[:, -2:-1], y[:, -1:]).mean()


def _summed(model, tasks):
    outputs, y = _sequence(model, tasks)
    return mse_loss(outputs[:, 0::2], y).sum()


def _detached(model, tasks):
    with torch.no_grad():
        return reference_loss(model, tasks)


LOSS_MISTAKES = {
    "the loss over every position instead of the queries": (_every_position, r"EVERY token.*outputs\[:, 0::2\]"),
    "predictions read at the y tokens": (_at_y_tokens, r"y TOKENS.*outputs\[:, 0::2\]"),
    "the last point only": (_last_only, r"LAST point only: score every x"),
    "sum over tasks": (_summed, r"SUM over the \d tasks; use the mean"),
    "no gradient": (_detached, r"does not depend on the model's weights"),
}


# ----------------------------------------------------------------------------- 10.5 least squares

def _normal_equations(x, y, x_query):
    w = torch.linalg.solve(x.transpose(1, 2) @ x, x.transpose(1, 2) @ y)
    return x_query @ w


LEAST_SQUARES_MISTAKES = {
    "normal equations (singular for k < d)": (_normal_equations, r"singular.*torch\.linalg\.pinv"),
    "averaging instead of least squares": (in_context.averaging, r"least-squares predictions with k = 8"),
}


CATALOGUE = {
    "encode": (lab10.check_encode, encode_prompt, ENCODE_MISTAKES),
    "positions": (lab10.check_positions, token_positions, POSITION_MISTAKES),
    "mask": (lab10.check_mask, prompt_mask, MASK_MISTAKES),
    "loss": (lab10.check_loss, reference_loss, LOSS_MISTAKES),
    "least_squares": (lab10.check_least_squares, in_context.least_squares, LEAST_SQUARES_MISTAKES),
}
CASES = [(exercise, name) for exercise, (_, _, mistakes) in CATALOGUE.items() for name in mistakes]


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 6
    assert {"a mask that lets the query see its own label", "positions shared between x and y tokens",
            "the loss over every position instead of the queries"} <= {name for _, name in CASES}


@pytest.mark.parametrize("exercise", sorted(CATALOGUE))
def test_the_reference_passes(exercise, capsys):
    check, reference, _ = CATALOGUE[exercise]
    check(reference)
    assert re.fullmatch(r"lab10/\w+: (\d+)/\1 checks passed\n", capsys.readouterr().out)


@pytest.mark.parametrize(("exercise", "name"), CASES)
def test_each_mistake_is_caught_and_named(exercise, name, capsys):
    check, _, mistakes = CATALOGUE[exercise]
    wrong, message = mistakes[name]
    with pytest.raises(AssertionError, match=message):
        check(wrong)
    assert "checks passed" in capsys.readouterr().out


def test_a_stub_fails_every_check():
    def stub(*args):
        raise NotImplementedError("Exercise 10.3: build the mask")

    with pytest.raises(AssertionError, match="not implemented yet: Exercise 10.3"):
        lab10.check_mask(stub)


def test_the_mask_check_sees_a_label_leak_by_behaviour_too():
    """The behavioural check alone (without the reference comparison) catches the leaking mask."""
    with pytest.raises(AssertionError, match=r"changing the label y_\d changed the prediction"):
        lab10._label_hidden(_sees_own_label, 0)
    lab10._label_hidden(prompt_mask, 0)


@pytest.mark.slow
def test_learns_passes_with_the_reference_and_fails_reading_the_y_tokens(capsys):
    lab10.check_learns(reference_loss)
    with pytest.raises(AssertionError, match=r"error with k = 2 examples.*read at the x tokens"):
        lab10.check_learns(_at_y_tokens)
