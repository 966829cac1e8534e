"""Tests of the shared check runner (metacourse.checks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metacourse.checks import assert_close, run_checks


def _passes() -> None:
    assert 1 + 1 == 2


def _fails() -> None:
    raise AssertionError("expected 2, got 3")


def _stub() -> None:
    raise NotImplementedError("Exercise 4.1: implement one inner SGD step of MAML")


def _crashes() -> None:
    {}["missing"]


# ---------------------------------------------------------------------------------------------
# run_checks


def test_all_pass_prints_only_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    run_checks("lab04/adapt", [("one", _passes), ("two", _passes), ("three", _passes)])
    assert capsys.readouterr().out == "lab04/adapt: 3/3 checks passed\n"


def test_failure_prints_verdict_then_raises_with_each_failed_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    checks = [("shapes", _passes), ("values", _fails), ("keys", _crashes)]
    with pytest.raises(AssertionError) as info:
        run_checks("lab04/adapt", checks)
    assert capsys.readouterr().out == "lab04/adapt: 1/3 checks passed\n"
    message = str(info.value)
    assert "values: expected 2, got 3" in message
    assert "keys: KeyError: 'missing'" in message
    assert "shapes" not in message
    assert "Traceback" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_not_implemented_is_reported_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(AssertionError, match="not implemented yet: Exercise 4.1: implement"):
        run_checks("lab04/adapt", [("adapt runs", _stub)])
    assert capsys.readouterr().out == "lab04/adapt: 0/1 checks passed\n"


def test_every_check_runs_even_after_a_failure() -> None:
    ran: list[str] = []
    checks = [
        ("first", lambda: (ran.append("first"), _fails())),
        ("second", lambda: ran.append("second")),
    ]
    with pytest.raises(AssertionError):
        run_checks("lab01/x", checks)
    assert ran == ["first", "second"]


def test_empty_assertion_message_and_long_messages_are_readable() -> None:
    def silent() -> None:
        raise AssertionError  # like a bare `assert x` (pytest rewrites asserts in tests)

    def verbose() -> None:
        raise AssertionError("x" * 5000)

    with pytest.raises(AssertionError) as info:
        run_checks("lab01/x", [("silent", silent), ("verbose", verbose)])
    message = str(info.value)
    assert "silent: assertion failed" in message
    assert len(message) < 1000


def test_no_checks_is_an_error() -> None:
    with pytest.raises(ValueError, match="no checks"):
        run_checks("lab01/x", [])


def test_keyboard_interrupt_passes_through() -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_checks("lab01/x", [("stop", interrupted)])


# ---------------------------------------------------------------------------------------------
# assert_close


@pytest.mark.parametrize(
    ("actual", "expected"),
    [
        (1.0, 1.0 + 1e-9),
        (np.arange(6.0).reshape(2, 3), np.arange(6.0).reshape(2, 3)),
        (torch.ones(2, 3, requires_grad=True) * 2, 2 * np.ones((2, 3))),
        (torch.tensor([1, 2]), [1.0, 2.0]),
        (np.array([np.nan, 1.0]), np.array([np.nan, 1.0])),
        ({"w": torch.zeros(2), "b": 0.0}, {"w": np.zeros(2), "b": torch.tensor(0.0)}),
    ],
)
def test_assert_close_accepts_matching_values(actual: object, expected: object) -> None:
    assert_close(actual, expected, atol=1e-6, rtol=1e-5, what="value")


def test_assert_close_reports_max_difference_and_where() -> None:
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    actual[0, 0] = 0.1
    with pytest.raises(AssertionError) as info:
        assert_close(actual, expected, atol=1e-6, rtol=1e-5, what="adapted['w']")
    message = str(info.value)
    assert message.startswith("adapted['w'] differs")
    assert "2 of 6 elements" in message
    assert "max abs difference 0.5 at [1, 2]" in message
    assert "atol=1e-06, rtol=1e-05" in message


def test_assert_close_scalar_message() -> None:
    with pytest.raises(AssertionError, match=r"loss is 0.5 but expected 0.25: abs difference"):
        assert_close(0.5, 0.25, atol=1e-6, rtol=1e-5, what="loss")


def test_assert_close_shape_mismatch_is_not_broadcast() -> None:
    with pytest.raises(AssertionError, match=r"grad has shape \(3,\) but the expected .* \(1, 3\)"):
        assert_close(np.zeros(3), np.zeros((1, 3)), atol=1e-6, rtol=1e-5, what="grad")


def test_assert_close_tolerances_are_used() -> None:
    assert_close(1.05, 1.0, atol=0.1, rtol=0.0, what="x")
    assert_close(110.0, 100.0, atol=0.0, rtol=0.1, what="x")
    with pytest.raises(AssertionError):
        assert_close(1.05, 1.0, atol=0.01, rtol=0.0, what="x")


def test_assert_close_nan_and_none_and_wrong_types() -> None:
    with pytest.raises(AssertionError, match="contains nan or inf"):
        assert_close(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), atol=1e-6, rtol=0, what="y")
    with pytest.raises(AssertionError, match="forget to `return`"):
        assert_close(None, 1.0, atol=1e-6, rtol=0, what="y")
    with pytest.raises(AssertionError, match="should be a number"):
        assert_close("1.0", 1.0, atol=1e-6, rtol=0, what="y")


def test_assert_close_dict_keys_and_nested_names() -> None:
    with pytest.raises(AssertionError, match=r"missing \['b'\]"):
        assert_close({"w": 1.0}, {"w": 1.0, "b": 0.0}, atol=1e-6, rtol=0, what="params")
    with pytest.raises(AssertionError, match=r"^params\['b'\] is 1 but expected 0"):
        assert_close({"w": 1.0, "b": 1.0}, {"w": 1.0, "b": 0.0}, atol=1e-6, rtol=0, what="params")


def test_failing_assert_close_inside_run_checks_is_short(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def matches() -> None:
        assert_close(torch.ones(3), torch.zeros(3), atol=1e-6, rtol=1e-5, what="adapted")

    with pytest.raises(AssertionError, match=r"- matches the reference: adapted differs"):
        run_checks("lab04/adapt", [("matches the reference", matches)])
    assert capsys.readouterr().out == "lab04/adapt: 0/1 checks passed\n"


def test_lab_submodules_are_imported_on_access() -> None:
    import metacourse.checks as checks

    with pytest.raises(AttributeError, match="no attribute 'lab99_absent'"):
        checks.lab99_absent  # noqa: B018 - attribute access is the test
