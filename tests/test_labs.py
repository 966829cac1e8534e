"""Tests of the lab builder (metacourse.course.labs) and of the repository's labs.

Unit tests use small in-memory notebooks. The repository tests check that the committed labs are
a fresh build of ``solutions/`` without leaks or outputs, and (marked ``notebook``) that every
lab's exercise stubs make its checks fail: proof that the checks bite.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from metacourse.course.labs import (
    build_lab,
    build_labs,
    check_labs,
    find_root,
    has_outputs,
    strip_outputs,
)

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
HINT = "implement one inner SGD step of MAML"
STUB = f'raise NotImplementedError("Exercise 4.1: {HINT}")'

ADAPT_SOLUTION = '''\
def adapt(params, grads, inner_lr):
    """One inner SGD step."""
    ### BEGIN SOLUTION
    phi = {name: p - inner_lr * grads[name] for name, p in params.items()}
    return phi
    ### END SOLUTION'''

PUBLIC_CHECK = """\
from metacourse.checks import assert_close, run_checks
run_checks("lab00/adapt", [("one step", lambda: assert_close(
    adapt({"w": 1.0}, {"w": 2.0}, 0.5), {"w": 0.0}, atol=1e-6, rtol=0, what="phi"))])"""
CHECK_SOURCE = PUBLIC_CHECK + """
### BEGIN HIDDEN TESTS
assert adapt({"w": 1.0}, {"w": 2.0}, inner_lr=0.5) == {"w": 0.0}
### END HIDDEN TESTS"""


# ---------------------------------------------------------------------------------------------
# Building synthetic notebooks


def _answer(
    source: str,
    grade_id: str = "adapt",
    *,
    cell_id: str = "answer-adapt",
    markdown: bool = False,
    exercise: str | None = "4.1",
) -> NotebookNode:
    new_cell = new_markdown_cell if markdown else new_code_cell
    cell = new_cell(source, id=cell_id)
    cell.metadata["nbgrader"] = {
        "solution": True, "grade": False, "locked": False,
        "grade_id": grade_id, "schema_version": 3,
    }
    if exercise is not None:
        cell.metadata["metacourse"] = {"exercise": exercise, "hint": HINT}
    return cell


def _check(source: str, grade_id: str = "adapt-check", *, cell_id: str = "check") -> NotebookNode:
    cell = new_code_cell(source, id=cell_id)
    cell.metadata["nbgrader"] = {
        "grade": True, "solution": False, "locked": True, "points": 2,
        "grade_id": grade_id, "schema_version": 3,
    }
    return cell


def _solution_nb() -> NotebookNode:
    fast = "import os\nFAST = os.environ.get('METACOURSE_FAST') == '1'"
    params = new_code_cell(fast, id="params")
    params.metadata["tags"] = ["parameters"]
    setup = new_code_cell("x = 1 + 1\nprint(x)", id="setup")
    setup.outputs = [new_output("stream", name="stdout", text="2\n")]
    setup.execution_count = 3
    markdown = _answer(
        "Why is the inner step size small?\n\n### BEGIN SOLUTION\n"
        "Because a large inner_lr overshoots on five examples.\n### END SOLUTION",
        "why", cell_id="why", markdown=True,
    )
    cells = [
        new_markdown_cell("# Lab 0: a fixture", id="title"),
        params,
        setup,
        _answer(ADAPT_SOLUTION),
        _check(CHECK_SOURCE),
        markdown,
    ]
    return new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC})


def _write_solution(folder: Path, name: str = "lab00_fixture.ipynb") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    nbformat.write(_solution_nb(), path)
    return path


def _repo(tmp_path: Path) -> tuple[Path, Path]:
    solutions, labs = tmp_path / "solutions", tmp_path / "labs"
    strip_outputs(_write_solution(solutions))
    return solutions, labs


# ---------------------------------------------------------------------------------------------
# build_lab


def test_solution_region_becomes_stub_at_marker_indentation() -> None:
    lab = build_lab(_solution_nb())
    assert lab.cells[3].source == (
        f'def adapt(params, grads, inner_lr):\n    """One inner SGD step."""\n    {STUB}'
    )


def test_several_regions_in_one_cell_and_trailing_newline_kept() -> None:
    source = (
        "### BEGIN SOLUTION\nimport math\n### END SOLUTION\n"
        "def f(x):\n    if x > 0:\n        ### BEGIN SOLUTION\n        return math.sqrt(x)\n"
        "        ### END SOLUTION\n    return 0.0\n"
    )
    lab = build_lab(new_notebook(cells=[_answer(source)]))
    assert lab.cells[0].source == (
        f"{STUB}\ndef f(x):\n    if x > 0:\n        {STUB}\n    return 0.0\n"
    )


def test_hidden_tests_removed_and_check_cells_locked() -> None:
    lab = build_lab(_solution_nb())
    check = lab.cells[4]
    assert check.source == PUBLIC_CHECK
    assert check.metadata["deletable"] is False and check.metadata["editable"] is False
    assert check.metadata["nbgrader"]["points"] == 2
    answer = lab.cells[3]
    assert "deletable" not in answer.metadata and "editable" not in answer.metadata


def test_markdown_region_becomes_your_answer_here() -> None:
    lab = build_lab(_solution_nb())
    assert lab.cells[5].source == "Why is the inner step size small?\n\n*Your answer here.*"


def test_outputs_cleared_ids_and_metadata_kept_input_untouched() -> None:
    solution = _solution_nb()
    before = nbformat.writes(solution)
    lab = build_lab(solution)
    assert nbformat.writes(solution) == before
    assert [cell.id for cell in lab.cells] == [cell.id for cell in solution.cells]
    assert has_outputs(lab) == [] and has_outputs(solution) == [2]
    assert lab.cells[1].metadata["tags"] == ["parameters"]
    assert lab.cells[3].metadata["metacourse"] == {"exercise": "4.1", "hint": HINT}
    assert lab.metadata["kernelspec"] == KERNELSPEC


def test_stub_message_is_a_valid_python_string() -> None:
    cell = _answer("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")
    cell.metadata["metacourse"]["hint"] = 'return "phi", not theta \\ done'
    source = build_lab(new_notebook(cells=[cell])).cells[0].source
    with pytest.raises(NotImplementedError, match='Exercise 4.1: return "phi", not theta'):
        exec(compile(source, "<lab>", "exec"), {})


def test_missing_ids_get_deterministic_ones() -> None:
    solution = _solution_nb()
    solution.nbformat_minor = 4
    for cell in solution.cells:
        del cell["id"]
    first, second = build_lab(solution), build_lab(solution)
    assert [c.id for c in first.cells] == [c.id for c in second.cells]
    assert len({c.id for c in first.cells}) == len(first.cells)


@pytest.mark.parametrize(
    ("cells", "fragment"),
    [
        ([_answer("### BEGIN SOLUTION\nx = 1")], "is never closed; add `### END SOLUTION`"),
        ([_answer("x = 1\n### END SOLUTION")], "without a matching `### BEGIN SOLUTION`"),
        (
            [_answer("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx\n### END SOLUTION\n"
                     "### END SOLUTION")],
            "regions cannot nest",
        ),
        (
            [_answer("### BEGIN SOLUTION\nx = 1\n### END HIDDEN TESTS")],
            "write `### END SOLUTION`",
        ),
        ([_answer("### BEGIN SOLUTON\nx = 1\n### END SOLUTION")], "misspelt marker"),
        ([_answer("x = 1")], "without a `### BEGIN SOLUTION`"),
        ([_answer("### BEGIN SOLUTION\nx\n### END SOLUTION", exercise=None)], '"exercise"'),
        ([_check("### BEGIN SOLUTION\nx\n### END SOLUTION")], "not an answer cell"),
        ([_answer("### BEGIN HIDDEN TESTS\nx\n### END HIDDEN TESTS")], "not a code check cell"),
        (
            [_answer("### BEGIN SOLUTION\nx\n### END SOLUTION", cell_id="a"),
             _answer("### BEGIN SOLUTION\ny\n### END SOLUTION", cell_id="b")],
            "grade_id 'adapt' is also used by cell 1",
        ),
    ],
    ids=[
        "begin-without-end", "end-without-begin", "nested", "mismatched-end", "misspelt",
        "answer-without-region", "no-exercise", "solution-in-check", "hidden-in-answer",
        "duplicate-grade-id",
    ],
)
def test_malformed_solutions_raise_with_location_and_fix(
    cells: list[NotebookNode], fragment: str
) -> None:
    nb = new_notebook(cells=[new_markdown_cell("# title", id="title"), *cells])
    with pytest.raises(ValueError) as info:
        build_lab(nb, name="solutions/lab09_bad.ipynb")
    message = str(info.value)
    where = ("cell 1", "cell 2 (id 'b')")  # the duplicate is reported at its second use
    assert message.startswith(tuple(f"solutions/lab09_bad.ipynb, {cell}" for cell in where))
    assert fragment in message


# ---------------------------------------------------------------------------------------------
# build_labs, check_labs, strip_outputs


def test_build_is_deterministic_and_checks_clean(tmp_path: Path) -> None:
    solutions, labs = _repo(tmp_path)
    [path] = build_labs(solutions, labs)
    assert path == labs / "lab00_fixture.ipynb"
    first = path.read_bytes()
    path.unlink()
    build_labs(solutions, labs)
    assert path.read_bytes() == first
    assert first.decode().endswith("}\n") and first.decode().startswith('{\n "cells": [\n  {')
    assert check_labs(solutions, labs) == []


def test_relative_folders_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _repo(tmp_path)
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "metacourse").mkdir()
    monkeypatch.chdir(tmp_path)
    assert build_labs() == [tmp_path / "labs" / "lab00_fixture.ipynb"]
    assert check_labs() == []
    monkeypatch.chdir(tmp_path / "metacourse")  # a subfolder: found through find_root()
    assert find_root() == tmp_path
    assert check_labs() == []


def test_missing_stale_and_extra_labs_are_reported(tmp_path: Path) -> None:
    solutions, labs = _repo(tmp_path)
    labs.mkdir()
    assert check_labs(solutions, labs) == [
        "labs/lab00_fixture.ipynb is missing: run `metacourse labs build`"
    ]
    [path] = build_labs(solutions, labs)
    lab = nbformat.read(path, as_version=4)
    lab.cells[0].source = "# Lab 0, edited by hand"
    nbformat.write(lab, path)
    nbformat.write(new_notebook(), labs / "lab99_orphan.ipynb")
    assert check_labs(solutions, labs) == [
        "labs/lab00_fixture.ipynb is out of date: run `metacourse labs build`",
        "labs/lab99_orphan.ipynb has no solution solutions/lab99_orphan.ipynb: "
        "delete the lab or add its solution",
    ]


def test_leaked_solution_line_is_reported(tmp_path: Path) -> None:
    solutions, labs = _repo(tmp_path)
    [path] = build_labs(solutions, labs)
    lab = nbformat.read(path, as_version=4)
    lab.cells[3].source += (
        "\n    phi = {name: p - inner_lr * grads[name] for name, p in params.items()}"
        "\n    return phi"  # too short to count as a leak
    )
    lab.cells[4].source += '\nassert adapt({"w": 1.0}, {"w": 2.0}, inner_lr=0.5) == {"w": 0.0}'
    nbformat.write(lab, path)
    problems = check_labs(solutions, labs)
    assert problems[:2] == [
        "labs/lab00_fixture.ipynb leaks solution text of solutions/lab00_fixture.ipynb (cell 3): "
        "'phi = {name: p - inner_lr * grads[name] for name, p in params.items()}'",
        "labs/lab00_fixture.ipynb leaks solution text of solutions/lab00_fixture.ipynb (cell 4): "
        "'assert adapt({\"w\": 1.0}, {\"w\": 2.0}, inner_lr=0.5) == {\"w\": 0.0}'",
    ]
    assert problems[2:] == ["labs/lab00_fixture.ipynb is out of date: run `metacourse labs build`"]


def test_lines_also_outside_the_regions_are_not_leaks(tmp_path: Path) -> None:
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    shared = "loss = torch.nn.functional.mse_loss(pred, y)"
    nb = new_notebook(cells=[
        new_code_cell(f"def reference(pred, y):\n    {shared}\n    return loss", id="given"),
        _answer(f"### BEGIN SOLUTION\n{shared}\n# a long comment inside the region\n"
                "### END SOLUTION"),
    ])
    nbformat.write(nb, solutions / "lab01_x.ipynb")
    labs = tmp_path / "labs"
    [path] = build_labs(solutions, labs)
    lab = nbformat.read(path, as_version=4)
    lab.cells[1].source += f"\n{shared}\n# a long comment inside the region"
    nbformat.write(lab, path)
    assert check_labs(solutions, labs) == [
        "labs/lab01_x.ipynb is out of date: run `metacourse labs build`"
    ]


def test_outputs_are_reported_and_stripped(tmp_path: Path) -> None:
    solutions = tmp_path / "solutions"
    path = _write_solution(solutions)
    labs = tmp_path / "labs"
    build_labs(solutions, labs)
    [problem] = check_labs(solutions, labs)
    assert problem.startswith(
        "solutions/lab00_fixture.ipynb is committed with outputs (cells 2): strip them"
    )
    assert strip_outputs(path) is True
    assert strip_outputs(path) is False
    assert has_outputs(nbformat.read(path, as_version=4)) == []
    assert check_labs(solutions, labs) == []


def test_malformed_solution_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    unclosed = new_notebook(cells=[_answer("### BEGIN SOLUTION\nx = 1")])
    nbformat.write(unclosed, solutions / "b.ipynb")
    [problem] = check_labs(solutions, tmp_path / "labs")
    assert problem.startswith("solutions/b.ipynb, cell 0 (id 'answer-adapt'): ")
    with pytest.raises(ValueError, match="never closed"):
        build_labs(solutions, tmp_path / "labs")
    assert not (tmp_path / "labs").exists()


# ---------------------------------------------------------------------------------------------
# Executing labs: the stubs must make every check fail


_INFRASTRUCTURE_ERRORS = {"SyntaxError", "IndentationError", "ImportError", "ModuleNotFoundError"}


def _execute(nb: NotebookNode, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> NotebookNode:
    from nbclient import NotebookClient

    monkeypatch.setenv("METACOURSE_FAST", "1")
    pythonpath = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), pythonpath])))
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute()


def _errors(cell: NotebookNode) -> list[str]:
    return [out.ename for out in cell.get("outputs", []) if out.output_type == "error"]


def _assert_stubs_bite(lab: NotebookNode, name: str) -> None:
    meta = [cell.metadata.get("nbgrader", {}) for cell in lab.cells]
    answers = [i for i, m in enumerate(meta) if m.get("solution")]
    checks = [
        i for i, m in enumerate(meta) if m.get("grade") and lab.cells[i].cell_type == "code"
    ]
    assert answers, f"{name} has no answer cell (metadata.nbgrader.solution = true)"
    assert checks, f"{name} has no graded check cell (metadata.nbgrader.grade = true)"
    for i in range(answers[0]):
        assert not _errors(lab.cells[i]), (
            f"{name}: cell {i}, before the first exercise, raised {_errors(lab.cells[i])}: "
            f"{json.dumps(lab.cells[i].outputs, indent=1)[:2000]}"
        )
    for i in checks:
        errors = _errors(lab.cells[i])
        assert errors, (
            f"{name}: check cell {i} ({meta[i].get('grade_id')}) passed with the exercise "
            "stubs in place: the check does not bite"
        )
        assert not _INFRASTRUCTURE_ERRORS.intersection(errors), (
            f"{name}: check cell {i} failed for a reason unrelated to the stubs: {errors}"
        )


@pytest.mark.notebook
def test_stub_harness_on_a_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The execution harness itself: the fixture's solution passes, its lab's check bites."""
    solution = _execute(_solution_nb(), tmp_path, monkeypatch)
    assert all(not _errors(cell) for cell in solution.cells)
    assert solution.cells[4].outputs[0].text == "lab00/adapt: 1/1 checks passed\n"
    lab = _execute(build_lab(_solution_nb()), tmp_path, monkeypatch)
    _assert_stubs_bite(lab, "lab00_fixture")
    with pytest.raises(AssertionError, match="does not bite"):
        _assert_stubs_bite(solution, "lab00_fixture (solution)")


def test_committed_labs_match_solutions() -> None:
    problems = check_labs(ROOT / "solutions", ROOT / "labs")
    assert problems == [], "\n".join(problems)


@pytest.mark.notebook
@pytest.mark.parametrize("solution", SOLUTIONS, ids=[path.stem for path in SOLUTIONS])
def test_lab_stubs_make_checks_fail(solution: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labs = ROOT / "labs"
    lab = build_lab(solution, name=f"solutions/{solution.name}")
    executed = _execute(lab, labs if labs.is_dir() else ROOT, monkeypatch)
    _assert_stubs_bite(executed, f"labs/{solution.name}")
