"""The helpers that connect a lab's exercises: the reference as a named fallback for a stub, and
the reference in place of earlier exercises while one exercise is checked."""

from __future__ import annotations

import pytest

from metacourse.checks.fallback import builds_on, yours_or_reference


def _stub(x):
    raise NotImplementedError("Exercise 9.1: double x")


def test_a_stub_falls_back_to_the_reference_and_says_so(capsys):
    double = yours_or_reference(_stub, lambda x: 2 * x, "my_double", "reference.double")
    assert double(3) == 6 and double(4) == 8
    assert capsys.readouterr().out == ("my_double: not implemented yet (Exercise 9.1), running the reference "
                                       "reference.double\n")


def test_an_implemented_function_runs_and_says_so(capsys):
    double = yours_or_reference(lambda x: x + x, lambda x: 2 * x, "my_double", "reference.double")
    assert double(5) == 10
    assert capsys.readouterr().out == "my_double: running yours\n"


def test_a_bug_is_not_hidden_by_the_fallback():
    def broken(x):
        raise ValueError("shape mismatch")

    with pytest.raises(ValueError, match="shape mismatch"):
        yours_or_reference(broken, lambda x: 2 * x, "my_double", "reference.double")(1)


def test_builds_on_swaps_the_earlier_exercise_and_restores_it():
    namespace = {"my_loss": lambda x: -x}
    exec("def my_step(x):\n    return x - my_loss(x)", namespace)  # a notebook: my_step calls my_loss
    step = namespace["my_step"]
    assert step(2) == 4
    with builds_on(step, my_loss=lambda x: x, my_absent=print):
        assert step(2) == 0
        assert "my_absent" not in namespace
    assert step(2) == 4
