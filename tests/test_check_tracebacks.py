"""A failed check shows a student its message, not the library's frames.

A tiny notebook runs ``metacourse.checks.lab04.check_adapt`` on the lab's stub (it raises
``NotImplementedError``), so the check fails; nbclient executes it in a real kernel and the stored
error output is what JupyterLab shows. By default the traceback is the message alone (the exercise
and the failed checks); with ``METACOURSE_DEBUG=1`` it is IPython's usual traceback, frames included.
"""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat.v4 import new_code_cell, new_notebook

from metacourse.checks import CheckFailed, run_checks

STUB = '''\
from metacourse.checks.lab04 import check_adapt


def my_adapt(model, params, x_support, y_support, inner_lr, inner_steps, first_order=False):
    raise NotImplementedError("Exercise 4.1: one gradient step per inner step")'''

INTERNALS = ("metacourse/checks", "metacourse\\checks", "run_checks", "File ")


def _failed_check_output(debug: bool) -> dict:
    """Run the stub and its check in a fresh kernel (it inherits this environment, where
    ``METACOURSE_DEBUG`` is unset); the check cell's error output."""
    cells = [new_code_cell(STUB), new_code_cell("check_adapt(my_adapt)")]
    if debug:
        cells.insert(0, new_code_cell("%env METACOURSE_DEBUG=1"))
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    client = NotebookClient(nb, timeout=120, kernel_name="python3")
    with pytest.raises(CellExecutionError):
        client.execute()
    errors = [out for out in nb.cells[-1].outputs if out.output_type == "error"]
    assert len(errors) == 1, nbformat.writes(nb)[-3000:]
    return errors[0]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METACOURSE_DEBUG", raising=False)


def test_a_failed_check_shows_only_its_message_in_a_notebook() -> None:
    error = _failed_check_output(debug=False)
    shown = "\n".join(error["traceback"])
    assert error["ename"] == "CheckFailed"
    assert "lab04/adapt:" in shown and "checks failed" in shown  # the exercise and the verdict
    assert "not implemented yet: Exercise 4.1" in shown  # the stub's message, for each failed check
    assert "METACOURSE_DEBUG=1" in shown  # how to get the frames back
    leaked = [line for line in error["traceback"] if any(mark in line for mark in INTERNALS)]
    assert not leaked, f"library internals in the traceback:\n{shown}"


def test_metacourse_debug_shows_the_full_traceback() -> None:
    error = _failed_check_output(debug=True)
    shown = "\n".join(error["traceback"])
    assert "lab04/adapt:" in shown and "not implemented yet: Exercise 4.1" in shown
    assert "check_adapt" in shown and "run_checks" in shown  # the frames inside the library
    assert "metacourse" in shown and "checks" in shown


def test_check_failed_is_an_assertion_error_named_after_its_exercise(monkeypatch: pytest.MonkeyPatch) -> None:
    def fails() -> None:
        raise AssertionError("off by one")

    with pytest.raises(AssertionError) as caught:
        run_checks("lab99/demo", [("passes", lambda: None), ("fails", fails)])
    assert isinstance(caught.value, CheckFailed) and caught.value.label == "lab99/demo"
    lines = caught.value._render_traceback_()
    assert lines[0] == "CheckFailed: lab99/demo: 1 of 2 checks failed:\n  - fails: off by one"
    monkeypatch.setenv("METACOURSE_DEBUG", "1")
    assert not hasattr(caught.value, "_render_traceback_"), "METACOURSE_DEBUG=1 keeps IPython's traceback"
