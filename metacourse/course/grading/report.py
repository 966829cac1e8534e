"""What the grader writes, and only the grader (the trusted parent, after every sandbox has ended).

- ``<out>/<student id>/results.json``: Gradescope's shape (``score``, ``execution_time``, ``output``,
  ``tests`` with ``name``, ``score``, ``max_score``, ``output``, ``status``, ``visibility``);
- ``<out>/<student id>/executed.ipynb``: the notebook as it ran in its sandbox, for feedback;
- ``<out>/grades.csv``: one row a submission: the student id, the ``submission`` (its path as found),
  the score, each check's points, the notes;
- ``<out>/answers.csv``: the written answers a person grades, one row per student and question;
- ``<out>/report.md``: the class at a glance, then the written answers grouped by question.

Student ids (:func:`student_ids`) are unique, stable (the same folder gives the same id at every
run), readable (unicode names are kept, NFC-normalised) and safe in a spreadsheet (never starting
with ``= + - @``); every text cell of the CSV files that a spreadsheet could read as a formula is
prefixed with ``'``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import statistics
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GradeSummary", "StudentResult", "TestResult", "VISIBILITIES", "student_ids"]

VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
"""Gradescope's visibility of a test."""
_MAX_NOTE_CHARS = 300
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def fmt(value: float) -> str:
    return f"{value:g}"


def shorten(text: str, limit: int = _MAX_NOTE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


# ---------------------------------------------------------------------------------------------
# Student ids


def _readable(name: str) -> str:
    """A file-name-safe, spreadsheet-safe rendering of a submission's name (unicode kept)."""
    raw = os.fsencode(name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:  # a name in another encoding (latin-1): keep what reads, mark the rest
        text = raw.decode("utf-8", errors="replace").replace("\ufffd", "_")
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch if (ch.isalnum() or ch in "._-") else "_" for ch in text)
    text = re.sub(r"_+", "_", text).strip("._-+=@ ")
    return text or "student"


def student_ids(names: Sequence[str]) -> list[str]:
    """One id per submission name (file stem or folder name, as ``os.listdir`` gives it).

    Unique even on a case-insensitive disk: names whose readable forms collide (``Zoë`` written
    composed and decomposed, ``a b`` and ``a_b``, two latin-1 names) each get a suffix made from
    a hash of the original bytes, so the same submission keeps its id at every run.
    """
    readable = [_readable(name) for name in names]
    counts: dict[str, int] = {}
    for text in readable:
        counts[text.casefold()] = counts.get(text.casefold(), 0) + 1
    ids = []
    for name, text in zip(names, readable):
        if counts[text.casefold()] > 1:
            text = f"{text}-{hashlib.sha1(os.fsencode(name)).hexdigest()[:8]}"
        ids.append(text)
    return ids


def printable(text: str) -> str:
    """``text`` with undecodable bytes of file names (surrogates) written as ``\\xe9``."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text."""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def _display_path(path: Path | None) -> str:
    if path is None:
        return ""
    return os.fsencode(str(path)).decode("utf-8", errors="backslashreplace")


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class TestResult:
    """One check cell's result for one student (a test in Gradescope's ``results.json``)."""

    name: str
    score: float
    max_score: float
    output: str
    status: str
    """``"passed"`` or ``"failed"``."""
    visibility: str = "visible"
    """Gradescope's visibility: checks with hidden tests are ``after_published`` by default."""

    def to_json(self) -> dict:
        return {"name": self.name, "score": self.score, "max_score": self.max_score,
                "output": self.output, "status": self.status, "visibility": self.visibility}


@dataclass
class StudentResult:
    """A student's grade: the tests, what happened while running the notebook, where it is saved."""

    student: str
    """The student id (see :func:`student_ids`): the folder of the results."""
    submission: Path | None
    """The submitted notebook (or folder) as found in the submissions folder."""
    tests: list[TestResult]
    max_score: float
    execution_time: float
    notes: list[str] = field(default_factory=list)
    """What went wrong while running the notebook (timeouts, errors, exits), one sentence each."""
    answers: dict[str, str] = field(default_factory=dict)
    """grade_id -> the written answer (a markdown or code answer cell a person grades)."""
    results_path: Path | None = None
    executed: dict | None = None
    """The executed notebook (validated JSON) to save beside the results."""

    @property
    def score(self) -> float:
        return float(sum(test.score for test in self.tests))

    def to_gradescope(self) -> dict:
        """This result in Gradescope's ``results.json`` shape."""
        lines = [f"Score {fmt(self.score)}/{fmt(self.max_score)}."]
        lines += [f"- {note}" for note in self.notes]
        return {"score": self.score, "execution_time": round(self.execution_time, 2),
                "output": "\n".join(lines), "tests": [test.to_json() for test in self.tests]}


@dataclass
class GradeSummary:
    """What :func:`~metacourse.course.grading.grade` did: one :class:`StudentResult` per submission."""

    lab: str
    solution: Path
    out_dir: Path
    max_score: float
    results: list[StudentResult]
    grades_csv: Path
    report_md: Path
    wall_time: float
    answers_csv: Path | None = None
    sandboxed: bool = True

    def scores(self) -> dict[str, float]:
        """Student id -> score."""
        return {result.student: result.score for result in self.results}

    def table(self) -> str:
        """A plain-text table of the class, for the command line."""
        width = max([7, *(len(r.student) for r in self.results)])
        lines = [f"{'student':<{width}}  score  notes"]
        for r in self.results:
            score = f"{fmt(r.score)}/{fmt(r.max_score)}"
            note = "; ".join(r.notes)
            lines.append(f"{r.student:<{width}}  {score:<5}  {shorten(note, 100)}".rstrip())
        mode = "each in its own sandbox" if self.sandboxed else "WITHOUT a sandbox (--no-sandbox)"
        lines.append(
            f"{len(self.results)} submissions of {self.lab} graded in {self.wall_time:.0f} s, {mode}; "
            f"wrote {self.grades_csv}, {self.report_md}, {self.answers_csv} and {self.out_dir}/<student>/results.json"
        )
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Writing


def write_student(result: StudentResult, out_dir: Path) -> None:
    """``<out>/<id>/results.json`` and ``executed.ipynb`` (replacing what a previous run left)."""
    folder = out_dir / result.student
    folder.mkdir(parents=True, exist_ok=True)
    result.results_path = folder / "results.json"
    _replace(result.results_path, json.dumps(result.to_gradescope(), indent=1, ensure_ascii=False) + "\n")
    if result.executed is not None:
        _replace(folder / "executed.ipynb", json.dumps(result.executed, indent=1, ensure_ascii=False) + "\n")


def _replace(path: Path, text: str) -> None:
    """Write ``path`` atomically, never through a link left in its place."""
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(text.encode("utf-8", "backslashreplace"))
    os.replace(tmp, path)


def write_csv(path: Path, check_ids: Sequence[str], results: Iterable[StudentResult]) -> None:
    with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "submission", "score", "max_score", *check_ids, "execution_time", "notes"])
        for r in results:
            writer.writerow([_cell(r.student), _cell(_display_path(r.submission)), fmt(r.score), fmt(r.max_score),
                             *(fmt(t.score) for t in r.tests), f"{r.execution_time:.1f}",
                             _cell(" | ".join(shorten(n) for n in r.notes))])


def write_answers(path: Path, manual: Sequence[tuple[str, float, str]], results: Iterable[StudentResult]) -> None:
    """``answers.csv``: student, submission, grade_id, points, question, answer."""
    with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "submission", "grade_id", "points", "question", "answer"])
        for r in results:
            for grade_id, points, question in manual:
                writer.writerow([_cell(r.student), _cell(_display_path(r.submission)), grade_id, fmt(points),
                                 _cell(question), _cell(r.answers.get(grade_id, ""))])


def write_report(path: Path, *, lab: str, solution: Path, checks: Sequence[tuple[str, float, str]],
                 manual: Sequence[tuple[str, float, str]], results: Sequence[StudentResult], max_score: float,
                 limits_line: str, wall: float, sandboxed: bool) -> None:
    """``report.md``. ``checks``: (grade_id, points, how it was graded)."""
    scores = [r.score for r in results]
    mode = ("each submission in a sandbox of its own (no network, read-only install, private home and tmp, "
            "no view of solutions, other submissions or outputs)") if sandboxed else (
            "**without a sandbox** (`--no-sandbox`: the students' code ran with the grader's rights)")
    lines = [
        f"# Grades: {lab}",
        "",
        f"{len(results)} submissions, out of {fmt(max_score)} points: mean "
        f"{statistics.fmean(scores) if scores else 0:.2f}, median {fmt(statistics.median(scores)) if scores else '-'}"
        f", graded in {wall:.0f} s ({limits_line}); {mode}.",
        f"Checks: those of `{solution.name}`.",
        "",
        "| check | points | graded by | passed by |",
        "|---|---|---|---|",
    ]
    for i, (grade_id, points, how) in enumerate(checks):
        passed = sum(1 for r in results if r.tests[i].status == "passed")
        lines.append(f"| {grade_id} | {fmt(points)} | {how} | {passed}/{len(results)} |")
    if manual:
        listed = ", ".join(f"{gid} ({fmt(points)} point{'s' * (points != 1)})" for gid, points, _ in manual)
        lines += ["", f"Graded by a person, not included above: {listed} (answers below and in answers.csv)."]
    lines += ["", "| student | submission | score | notes |", "|---|---|---|---|"]
    for r in results:
        notes = "; ".join(shorten(n, 160) for n in r.notes).replace("|", "\\|")
        where = _display_path(r.submission).replace("|", "\\|")
        lines.append(f"| {r.student} | {where} | {fmt(r.score)}/{fmt(r.max_score)} | {notes} |")
    for grade_id, points, question in manual:
        lines += ["", f"## Written answer `{grade_id}` ({fmt(points)} point{'s' * (points != 1)})", ""]
        lines += [f"> {line}" for line in (question.strip() or "(no question text)").split("\n")]
        for r in results:
            answer = r.answers.get(grade_id, "").strip() or "*(no answer)*"
            lines += ["", f"**{r.student}**", "", "```text", answer.replace("```", "` ` `"), "```"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="backslashreplace")
