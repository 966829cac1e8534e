"""Public checks that the labs' check cells call, and the runner they share.

A check cell calls one function of a per-lab module, e.g.
``metacourse.checks.lab04.check_adapt(adapt)``, which builds a list of named checks (each a
function of no argument that raises on failure) and hands it to :func:`run_checks`::

    def check_adapt(adapt):
        def matches_reference():
            assert_close(adapt(...), reference.adapt(...), atol=1e-6, rtol=1e-5, what="adapted")
        run_checks("lab04/adapt", [("matches the reference on random tasks", matches_reference)])

:func:`run_checks` prints exactly one stable verdict line (``lab04/adapt: 3/3 checks passed``),
which the notebooks mark ``# NBVAL_CHECK_OUTPUT``, and raises :class:`CheckFailed` (an
``AssertionError`` that IPython shows as its message only; ``METACOURSE_DEBUG=1`` shows the full
traceback) listing the failed checks. Submodules (``metacourse.checks.lab04``) are imported on
first attribute access. This package imports only numpy; torch is never imported here (tensors are recognised when the
caller has already imported torch).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["Check", "CheckFailed", "assert_close", "run_checks"]

Check = tuple[str, Callable[[], None]]
"""A named check: it passes when calling it returns without raising."""

_MAX_MESSAGE_CHARS = 400
DEBUG_ENV = "METACOURSE_DEBUG"
"""Set to ``1`` to see the full traceback of a failed check in a notebook."""


class CheckFailed(AssertionError):
    """Some checks of an exercise failed: the message names the exercise and each failed check.

    An ``AssertionError``, so ``pytest.raises(AssertionError)`` and graders catch it as before. In
    IPython/Jupyter it renders as its message alone: the frames inside ``metacourse.checks`` tell a
    student nothing the message does not. With ``METACOURSE_DEBUG=1`` (read when the error is shown,
    so ``%env METACOURSE_DEBUG=1`` in the notebook is enough) IPython shows the full traceback.
    """

    def __init__(self, label: str, message: str):
        super().__init__(message)
        self.label = label
        """The exercise, e.g. ``"lab04/adapt"``."""

    @property
    def _render_traceback_(self) -> Callable[[], list[str]]:
        # IPython calls ``_render_traceback_()`` when ``hasattr`` finds it; in debug mode the
        # attribute is absent, so IPython prints its usual traceback.
        if os.environ.get(DEBUG_ENV) == "1":
            raise AttributeError("_render_traceback_")
        return self._short_traceback

    def _short_traceback(self) -> list[str]:
        return [f"{type(self).__name__}: {self}",
                f"(the full traceback: %env {DEBUG_ENV}=1, then run the check cell again)"]


def _short(message: str) -> str:
    """One check's error message, indented for the list and cut to a readable length."""
    message = message.strip()
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 3].rstrip() + "..."
    return message.replace("\n", "\n    ")


def _describe(error: Exception) -> str:
    message = str(error).strip()
    if isinstance(error, NotImplementedError):
        return f"not implemented yet: {message}" if message else "not implemented yet"
    if isinstance(error, AssertionError):
        return message or "assertion failed"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def run_checks(label: str, checks: Sequence[Check]) -> None:
    """Run named checks, print one verdict line, and raise if any failed.

    A check passes when it returns without raising; any ``Exception`` (``AssertionError``,
    ``NotImplementedError`` from a student's stub, a crash in the student's code) is a failure.
    Prints ``"{label}: {passed}/{total} checks passed"``; when some failed, then raises
    :class:`CheckFailed` (an ``AssertionError``) whose message names each failed check with its
    error message (no traceback). ``KeyboardInterrupt`` and other ``BaseException`` pass through.
    """
    __tracebackhide__ = True  # pytest and IPython hide this frame
    if not checks:
        raise ValueError(f"run_checks({label!r}, ...) got no checks; pass (name, function) pairs")
    failures: list[tuple[str, str]] = []
    for name, check in checks:
        try:
            check()
        except Exception as error:  # noqa: BLE001 - every failure is reported, none is hidden
            failures.append((name, _describe(error)))
    total = len(checks)
    print(f"{label}: {total - len(failures)}/{total} checks passed", flush=True)
    if failures:
        lines = [f"{label}: {len(failures)} of {total} checks failed:"]
        lines += [f"  - {name}: {_short(message)}" for name, message in failures]
        raise CheckFailed(label, "\n".join(lines)) from None


# ---------------------------------------------------------------------------------------------
# Numeric comparison


def _to_array(value: Any, what: str) -> np.ndarray:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.double() if not value.is_complex() else value.cdouble()
        return value.numpy()
    try:
        array = np.asarray(value)
    except Exception as error:  # noqa: BLE001 - e.g. a list of tensors of different shapes
        raise AssertionError(
            f"{what} should be a number, an array or a tensor, got {type(value).__name__} "
            f"({error})"
        ) from None
    if array.dtype.kind not in "biufc":
        raise AssertionError(
            f"{what} should be a number, an array or a tensor, got {type(value).__name__}"
        )
    return array if array.dtype.kind == "c" else array.astype(np.float64)


def _format_index(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, index)) + "]"


def _compare(actual: Any, expected: Any, atol: float, rtol: float, what: str) -> None:
    if actual is None and expected is not None:
        raise AssertionError(f"{what} is None; did the function forget to `return` it?")
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            raise AssertionError(
                f"{what} should be a dict with keys {sorted(map(str, expected))}, "
                f"got {type(actual).__name__}"
            )
        missing = [key for key in expected if key not in actual]
        extra = [key for key in actual if key not in expected]
        if missing or extra:
            raise AssertionError(
                f"{what} has keys {sorted(map(str, actual))}, expected "
                f"{sorted(map(str, expected))} (missing {missing}, unexpected {extra})"
            )
        for key in expected:
            _compare(actual[key], expected[key], atol, rtol, f"{what}[{key!r}]")
        return
    got, want = _to_array(actual, what), _to_array(expected, f"expected {what}")
    if got.shape != want.shape:
        raise AssertionError(
            f"{what} has shape {tuple(got.shape)} but the expected shape is {tuple(want.shape)}"
        )
    close = np.isclose(got, want, atol=atol, rtol=rtol, equal_nan=True)
    if close.all():
        return
    diff = np.abs(got - want).astype(np.float64)
    diff = np.where(close, 0.0, np.nan_to_num(diff, nan=np.inf))
    worst = np.unravel_index(int(np.argmax(diff)), got.shape)
    tol = f"atol={atol:g}, rtol={rtol:g}"
    nonfinite = " (it contains nan or inf)" if not np.isfinite(got).all() else ""
    if got.ndim == 0:
        raise AssertionError(
            f"{what} is {got.item():.6g} but expected {want.item():.6g}{nonfinite}: "
            f"abs difference {diff.item():.3g} ({tol})"
        )
    raise AssertionError(
        f"{what} differs from the expected value{nonfinite}: {int((~close).sum())} of "
        f"{got.size} elements out of tolerance ({tol}); max abs difference "
        f"{diff[worst]:.3g} at {_format_index(tuple(map(int, worst)))} "
        f"(got {got[worst]:.6g}, expected {want[worst]:.6g})"
    )


def assert_close(
    actual: Any, expected: Any, *, atol: float = 1e-6, rtol: float = 1e-5, what: str
) -> None:
    """Raise ``AssertionError`` unless ``actual`` matches ``expected`` elementwise.

    Accepts numbers, numpy arrays, torch tensors (any device, gradients ignored) and dicts of
    those (compared key by key, e.g. parameter dicts). Elements match when
    ``|actual - expected| <= atol + rtol * |expected|`` (NaN matches NaN). Shapes must be equal,
    no broadcasting. The message starts with ``what`` and says what differs: a missing return,
    the shapes, the keys, or how many elements are out of tolerance, the largest absolute
    difference and where it is.
    """
    __tracebackhide__ = True
    _compare(actual, expected, atol, rtol, what)


# ---------------------------------------------------------------------------------------------
# Per-lab modules: ``metacourse.checks.lab04`` works without importing it first.


def __getattr__(name: str) -> ModuleType:
    if re.fullmatch(r"lab\d+\w*", name):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
