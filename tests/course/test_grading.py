"""Tests of the grading command (metacourse.course.grading).

A class of synthetic submissions of a tiny lab (``tests/fixtures/grading/solutions/``, plain
Python, so that these tests do not depend on a real lab's run time) is graded once, in one call,
with short time limits; each test then checks one student's result. The real lab04 is graded too
when it exists. The quick instructor path (``pytest --nbval-lax`` on one submission) is run in a
subprocess.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

from metacourse.course.grading import GradeSummary, grade, load_lab
from metacourse.course.grading.sandbox import sandbox_available
from metacourse.course.labs import build_lab

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "grading" / "solutions" / "lab90_grading_fixture.ipynb"
LAB = FIXTURE.stem
# in a sandbox where the machine has one (CI does), else without: the grading is the same
SANDBOX = sandbox_available()[0] or os.environ.get("METACOURSE_REQUIRE_SANDBOX") == "1"
LIMITS = {"cell_timeout": 3, "total_timeout": 60, "check_timeout": 4, "max_cell_output": 100_000, "jobs": 3,
          "sandbox": SANDBOX}


# ---------------------------------------------------------------------------------------------
# Building submissions from the fixture lab


def _solution() -> NotebookNode:
    return nbformat.read(FIXTURE, as_version=4)


def _grade_id(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _answers(solution: NotebookNode) -> dict[str, str]:
    """The solution's code answers, without the SOLUTION marker lines: what a good student writes."""
    return {
        _grade_id(cell): "\n".join(line for line in cell.source.split("\n") if "SOLUTION" not in line)
        for cell in solution.cells
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")
    }


ANSWERS = _answers(_solution())
WRONG_MEAN = "def mean(xs):\n    return sum(xs) / (len(xs) + 1)"


def _lab(solution: NotebookNode | None = None) -> NotebookNode:
    return build_lab(solution or _solution())


def _index(nb: NotebookNode, grade_id: str) -> int:
    return next(i for i, cell in enumerate(nb.cells) if _grade_id(cell) == grade_id)


def _answer(nb: NotebookNode, grade_id: str, source: str) -> NotebookNode:
    nb.cells[_index(nb, grade_id)].source = source
    return nb


def _correct(solution: NotebookNode | None = None) -> NotebookNode:
    solution = solution or _solution()
    nb = _lab(solution)
    for grade_id, source in _answers(solution).items():
        _answer(nb, grade_id, source)
    return nb


def _after(nb: NotebookNode, grade_id: str, source: str) -> NotebookNode:
    nb.cells.insert(_index(nb, grade_id) + 1, new_code_cell(source))
    return nb


def _deleted_and_reordered() -> NotebookNode:
    nb = _correct()
    nb.cells = [cell for cell in nb.cells if not cell.metadata.get("nbgrader", {}).get("grade")][::-1]
    return nb


def _edited_checks() -> NotebookNode:
    nb = _answer(_lab(), "mean", "def mean(xs):\n    return 0.0")
    _answer(nb, "step", "def inner_step(theta, grad, inner_lr):\n    return theta")
    _after(nb, "step", ANSWERS["step"])  # a duplicated, corrected answer cell: the last one counts
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.source = 'print("lab90: all checks passed")'
    return nb


STUBBORN_LOOP = """\
import time
while True:  # swallows the grader's interrupt
    try:
        time.sleep(0.05)
    except KeyboardInterrupt:
        pass"""

FLOOD = 'print("x" * 3_000_000)\nfor i in range(100_000):\n    print(i)'

HELPERS = """\
import statistics as st

OFFSET = 0.0


def _total(xs):
    return sum(xs) + OFFSET"""

STEP_BY_COPY = """\
import copy


def inner_step(theta, grad, inner_lr):
    phi = copy.deepcopy(theta)
    for name in phi:
        phi[name] -= inner_lr * grad[name]
    return phi"""


def _helpers() -> NotebookNode:
    nb = _answer(_lab(), "mean", "def mean(xs):\n    return _total(xs) / len(xs)")
    _answer(nb, "step", STEP_BY_COPY)
    nb.cells.insert(3, new_code_cell(HELPERS))
    nb.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "Mine", "language": "python"}
    return nb


# name -> (how to build it, expected score, where it goes: "<name>.ipynb" or "<name>/<file>")
CLASS: dict[str, tuple[Callable[[], NotebookNode | str], float]] = {
    "correct": (_correct, 5),
    "stubs": (_lab, 0),
    "partial": (lambda: _answer(_lab(), "mean", ANSWERS["mean"]), 2),
    "hidden_fails": (lambda: _answer(_correct(), "mean", (
        "import statistics\n\ndef mean(xs):\n    return statistics.fmean(xs) if len(xs) > 1 else 0.0")), 3),
    "deleted_reordered": (_deleted_and_reordered, 5),
    "edited_checks": (_edited_checks, 3),
    "loop": (lambda: _after(_correct(), "mean", "while True:\n    pass"), 5),
    "stubborn_loop": (lambda: _after(_correct(), "mean", STUBBORN_LOOP), 5),
    "exits": (lambda: _after(_after(_correct(), "mean", 'import sys\nsys.exit("I am done")'), "step", "exit()"), 5),
    "kills_kernel": (lambda: _after(_correct(), "mean", "import os\nos._exit(1)"), 5),
    "raises_at_import": (lambda: _answer(_correct(), "mean", "import not_a_real_module\n\n" + ANSWERS["mean"]), 3),
    "megabytes": (lambda: _after(_correct(), "step", FLOOD), 5),
    "overwrites_reference": (lambda: _answer(_correct(), "mean", (
        f"import statistics\n\n{WRONG_MEAN}\n\nstatistics.fmean = mean  # the check's reference")), 3),
    "imports_reference": (lambda: _answer(_correct(), "mean", "from statistics import fmean as mean"), 3),
    "loops_in_function": (lambda: _answer(_correct(), "mean", "def mean(xs):\n    while True:\n        pass"), 3),
    "helpers": (_helpers, 5),
    "corrupt": (lambda: '{"cells": [', 0),
}


def _write_class(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name, (build, _) in CLASS.items():
        content = build()
        text = content if isinstance(content, str) else nbformat.writes(content)
        if name == "helpers":  # a Gradescope-style folder with a second, unrelated notebook
            (folder / name).mkdir()
            (folder / name / f"{LAB}.ipynb").write_text(text)
            (folder / name / "scratch.ipynb").write_text(nbformat.writes(_lab()))
        else:
            (folder / f"{name}.ipynb").write_text(text)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> GradeSummary:
    """The whole class graded in one call: what ``metacourse grade`` does."""
    base = tmp_path_factory.mktemp("grading")
    _write_class(base / "submissions")
    return grade(FIXTURE, base / "submissions", base / "out", **LIMITS)


def _result(summary: GradeSummary, student: str):
    return next(r for r in summary.results if r.student == student)


def _test(summary: GradeSummary, student: str, grade_id: str):
    return next(t for t in _result(summary, student).tests if t.name == grade_id)


# ---------------------------------------------------------------------------------------------
# The class


@pytest.mark.parametrize("student", sorted(CLASS))
def test_each_submission_gets_its_expected_score(graded: GradeSummary, student: str) -> None:
    result = _result(graded, student)
    assert result.score == CLASS[student][1], (result.notes, [t.to_json() for t in result.tests])
    assert [t.name for t in result.tests] == ["mean-check", "step-check"]  # every check, always


def test_results_json_has_gradescopes_shape(graded: GradeSummary) -> None:
    for student in CLASS:
        data = json.loads((graded.out_dir / student / "results.json").read_text())
        assert set(data) == {"score", "tests", "execution_time", "output"}
        assert data["score"] == CLASS[student][1] and data["execution_time"] >= 0
        if student != "corrupt":  # a file that is not a notebook is rejected in milliseconds
            assert data["execution_time"] > 0
        for test in data["tests"]:
            assert {"name", "score", "max_score", "output", "status"} <= set(test)
            assert test["score"] in (0, test["max_score"])
    correct = json.loads((graded.out_dir / "correct" / "results.json").read_text())
    assert [(t["name"], t["score"], t["max_score"]) for t in correct["tests"]] == [
        ("mean-check", 2, 2), ("step-check", 3, 3)]
    assert "lab90/mean: 2/2 checks passed" in correct["tests"][0]["output"]
    assert "hidden checks: passed" in correct["tests"][0]["output"]


def test_class_csv_and_report(graded: GradeSummary) -> None:
    with open(graded.grades_csv, newline="") as file:
        rows = {row["student"]: row for row in csv.DictReader(file)}
    assert set(rows) == set(CLASS)
    assert rows["partial"]["score"] == "2" and rows["partial"]["mean-check"] == "2"
    assert rows["partial"]["step-check"] == "0" and rows["partial"]["max_score"] == "5"
    report = graded.report_md.read_text()
    assert report.startswith(f"# Grades: {LAB}")
    assert "| mean-check | 2 | check cell in the sandbox |" in report
    assert re.search(r"^\| corrupt \| \S+/corrupt\.ipynb \| 0/5 \|", report, re.MULTILINE)
    assert "why (1 point)" in report  # the markdown answer a person grades
    assert rows["helpers"]["submission"].endswith("submissions/helpers")  # the folder as submitted
    with open(graded.answers_csv, newline="") as file:
        answers = {row["student"]: row for row in csv.DictReader(file)}
    assert answers["correct"]["grade_id"] == "why" and "new dict" in answers["correct"]["question"]
    assert "stubborn_loop" in graded.table()


def test_stubs_fail_every_check_with_the_exercise_message(graded: GradeSummary) -> None:
    output = _test(graded, "stubs", "mean-check").output
    assert "NotImplementedError: Exercise 90.1: return the arithmetic mean of xs" in output


def test_hidden_checks_count_and_fail_alone(graded: GradeSummary) -> None:
    output = _test(graded, "hidden_fails", "mean-check").output
    assert "public checks: passed" in output
    assert "hidden checks: failed\nthe mean of one number is that number" in output


def test_deleted_edited_and_duplicated_cells_cannot_remove_a_check(graded: GradeSummary) -> None:
    assert _result(graded, "deleted_reordered").score == 5
    edited = _result(graded, "edited_checks")
    assert [t.score for t in edited.tests] == [0, 3]  # wrong mean; the last inner_step counts
    assert "mean([1.0, 2.0, 3.0]) is 0.0, expected 2.0" in edited.tests[0].output


def test_loops_are_interrupted_or_dropped_and_the_batch_goes_on(graded: GradeSummary) -> None:
    assert any("`while True:` ran past the cell time limit (3 s) and was interrupted" in note
               for note in _result(graded, "loop").notes)
    stubborn = _result(graded, "stubborn_loop").notes
    assert any("did not stop when interrupted; the notebook was run again without it" in n for n in stubborn)
    output = _test(graded, "loops_in_function", "mean-check").output
    assert "ran past the check time limit (4 s)" in output
    assert _test(graded, "loops_in_function", "step-check").score == 3  # graded in a new process


def test_exits_and_kernel_deaths_are_graded(graded: GradeSummary) -> None:
    assert any("raised SystemExit: I am done" in note for note in _result(graded, "exits").notes)
    assert any("`import os` ended the kernel" in note for note in _result(graded, "kills_kernel").notes)


def test_a_cell_that_raises_costs_only_what_it_defines(graded: GradeSummary) -> None:
    result = _result(graded, "raises_at_import")
    assert any("raised ModuleNotFoundError: No module named 'not_a_real_module'" in n for n in result.notes)
    assert "`mean` is not defined once your notebook has run" in result.tests[0].output


def test_output_is_capped(graded: GradeSummary) -> None:
    nb = nbformat.read(graded.out_dir / "megabytes" / "executed.ipynb", as_version=4)
    sizes = [sum(len(o.get("text", "")) for o in cell.get("outputs", [])) for cell in nb.cells]
    assert 100_000 <= max(sizes) < 100_500
    assert "[metacourse grade: output cut here, past 100000 characters]" in json.dumps(nb)


def test_a_patched_reference_does_not_reach_the_checks(graded: GradeSummary) -> None:
    executed = nbformat.read(graded.out_dir / "overwrites_reference" / "executed.ipynb", as_version=4)
    in_kernel = executed.cells[_index(executed, "mean-check")].outputs
    assert "lab90/mean: 2/2 checks passed" in in_kernel[0]["text"]  # fooled in the student's kernel
    assert "public checks: failed" in _test(graded, "overwrites_reference", "mean-check").output


def test_the_library_function_is_not_the_students_answer(graded: GradeSummary) -> None:
    output = _test(graded, "imports_reference", "mean-check").output
    assert "`mean` is statistics.fmean, imported instead of written in your notebook" in output


def test_unreadable_notebook_is_graded_zero(graded: GradeSummary) -> None:
    result = _result(graded, "corrupt")
    assert result.score == 0 and "cannot be read" in result.notes[0]


# ---------------------------------------------------------------------------------------------
# The lab spec and arguments


def test_load_lab_reads_exercises_checks_and_hidden_tests() -> None:
    spec = load_lab(FIXTURE)
    assert spec.name == LAB and spec.max_score == 5
    assert spec.exercises == {"mean": "90.1", "inner_step": "90.2"}
    assert [(c.grade_id, c.points) for c in spec.checks] == [("mean-check", 2), ("step-check", 3)]
    assert spec.checks[0].hidden.startswith("assert mean([5.0]) == 5.0")
    assert "HIDDEN" not in spec.checks[0].public and "assert mean([5.0])" not in spec.checks[0].public
    assert spec.checks[0].public == build_lab(_solution()).cells[_index(_solution(), "mean-check")].source
    assert spec.prelude == ("import statistics",) and spec.manual == (("why", 1.0),)
    assert "SCALE" in spec.checks[1].names


def test_lab_found_by_prefix_in_a_solutions_folder() -> None:
    assert load_lab("lab90", FIXTURE.parent).solution == FIXTURE
    with pytest.raises(ValueError, match="matches no solution .* name one of them"):
        load_lab("lab99", FIXTURE.parent)


def test_the_lab_is_named_by_its_stem_and_an_ambiguous_prefix_names_the_choices(tmp_path: Path) -> None:
    for stem in ("lab04_maml_sinusoid", "lab04_maml_omniglot"):
        nbformat.write(_solution(), tmp_path / f"{stem}.ipynb")
    nbformat.write(_solution(), tmp_path / "lab04_maml.ipynb")  # an exact stem wins over longer names
    assert load_lab("lab04_maml_sinusoid", tmp_path).name == "lab04_maml_sinusoid"
    assert load_lab("lab04_maml", tmp_path).name == "lab04_maml"
    with pytest.raises(ValueError, match=r"matches several solutions .*\(lab04_maml, lab04_maml_omniglot, "
                                         r"lab04_maml_sinusoid\); name one of them, e.g. `metacourse grade"):
        load_lab("lab04", tmp_path)


def test_solution_without_check_cells_is_refused(tmp_path: Path) -> None:
    nb = _solution()
    nb.cells = [cell for cell in nb.cells if not cell.metadata.get("nbgrader", {}).get("grade")]
    nbformat.write(nb, tmp_path / "lab91_nochecks.ipynb")
    with pytest.raises(ValueError, match="has no check cell"):
        load_lab(tmp_path / "lab91_nochecks.ipynb")


def test_bad_arguments_are_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cell_timeout must be a positive number"):
        grade(FIXTURE, tmp_path, tmp_path / "out", cell_timeout=0)
    with pytest.raises(ValueError, match="no submissions in"):
        grade(FIXTURE, tmp_path, tmp_path / "out")


def test_labs_hold_no_hidden_checks() -> None:
    """Every lab in labs/ leaves out its solution's hidden checks (metacourse labs check says more)."""
    solutions = sorted((ROOT / "solutions").glob("*.ipynb"))
    for path in solutions:
        lab = ROOT / "labs" / path.name
        text = lab.read_text()
        assert "HIDDEN TESTS" not in text, lab
        for check in load_lab(path).checks:
            for line in check.hidden.split("\n"):
                assert len(line.strip()) <= 12 or json.dumps(line.strip())[1:-1] not in text, (lab, line)


# ---------------------------------------------------------------------------------------------
# The instructor's quick path: nbval on one submission


def test_nbval_lax_reports_the_failing_cell(tmp_path: Path) -> None:
    nb = _answer(_lab(), "mean", ANSWERS["mean"])  # mean solved, inner_step left as the stub
    nbformat.write(nb, tmp_path / "submission.ipynb")
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]  # nbval counts code cells
    failing, passing = code.index(_index(nb, "step-check")), code.index(_index(nb, "mean-check"))
    env = dict(os.environ, METACOURSE_FAST="1")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=60",
         "-p", "no:cacheprovider", "-v", "submission.ipynb"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    out = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)  # the kernel's tracebacks are coloured
    assert run.returncode == 1, out
    assert f"FAILED submission.ipynb::Cell {failing} - Notebook cell execution failed" in out
    assert f"::Cell {passing} PASSED" in out and "1 failed, 5 passed" in out
    assert "NotImplementedError: Exercise 90.2: return theta - inner_lr * grad, key by key" in out


# ---------------------------------------------------------------------------------------------
# The real lab04


LAB04 = sorted((ROOT / "solutions").glob("lab04_*.ipynb"))


@pytest.mark.notebook
@pytest.mark.skipif(not LAB04, reason="solutions/lab04_*.ipynb is not written yet")
def test_lab04_correct_gets_full_marks_and_stubs_zero(tmp_path: Path) -> None:
    solution = nbformat.read(LAB04[0], as_version=4)
    lab = build_lab(solution)
    correct = copy.deepcopy(lab)
    answers = _answers(solution)
    for cell in correct.cells:
        if _grade_id(cell) in answers and cell.cell_type == "code":
            cell.source = answers[_grade_id(cell)]
    (tmp_path / "subs").mkdir()
    nbformat.write(correct, tmp_path / "subs" / "correct.ipynb")
    nbformat.write(lab, tmp_path / "subs" / "stubs.ipynb")
    summary = grade(LAB04[0], tmp_path / "subs", tmp_path / "out", cell_timeout=300, check_timeout=300, jobs=2,
                    sandbox=SANDBOX)
    scores = summary.scores()
    assert scores["correct"] == summary.max_score > 0, _result(summary, "correct").notes
    assert scores["stubs"] == 0
