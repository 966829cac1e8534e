"""Grade a class's submitted labs: ``metacourse grade LAB SUBMISSIONS --out DIR``.

Every submission is treated as hostile. For each submitted notebook (a student's copy of
``labs/<lab>.ipynb``) :func:`grade`, the trusted *parent*,

1. **reads the submission** itself, without following a symbolic link (a link, or a notebook outside
   the student's own folder, is refused with a note), and keeps the source of every code cell;
2. **runs the notebook in a sandbox of its own** (:mod:`.sandbox`: no network, the installation
   read-only, private empty ``$HOME`` and ``/tmp``, no view of ``solutions/``, of the other
   submissions, of the output folder or of the grader; limits on CPU, memory, processes and file
   size; every process killed when it ends), through :mod:`.executor` (nbclient, a fresh kernel,
   per-cell and per-notebook time limits, capped outputs): the executed notebook is feedback, and
   each cell's status is advice for the probes;
3. **grades each check cell**: where the lab has probes (:mod:`.probes`, ``get_lab_probes(lab)``),
   each check runs ``python -m metacourse.course.grading.runner`` in a fresh sandbox of its own
   (inputs generated here; the student's code loaded from the source read in step 1; the library's
   answers replaced by sentinels), which writes plain numbers back (``meta.json``, ``data.npz``,
   read with ``allow_pickle=False`` after checking sizes); the check's judge decides the verdict
   here, in the parent, with the library's reference. A check cell without a probe (and every check
   of a lab without probes) takes the *legacy* path: the solution's check cell, public then hidden
   part, runs on the functions taken from the kernel, in a fresh process inside the submission's
   sandbox (step 2): its verdict is decided inside the sandbox, next to the student's code, so it
   is weaker than a probe's (a student could forge it; no student can change another's);
4. **writes the outputs** (:mod:`.report`) once every sandbox of the batch has ended: nothing the
   students ran is left to change them.

Without a working sandbox (no bubblewrap, or no user namespaces) :func:`grade` refuses, naming the
fix; ``sandbox=False`` (``--no-sandbox``) runs the same steps without isolation, for trusted work
only (your own solutions, a smoke test).

Hidden checks ship apart from the student material: the ``### BEGIN HIDDEN TESTS`` regions of the
solution notebook's check cells, read at grading time (``--solutions`` may point at a private copy).
Submissions are ``SUBMISSIONS/<student>.ipynb`` or ``SUBMISSIONS/<student>/<any>.ipynb``; students
get unique, stable, spreadsheet-safe ids (:func:`.report.student_ids`).

The quick path for instructors: ``pytest --nbval-lax --nbval-current-env submission.ipynb`` runs a
single notebook and reports each failing cell; it grades nothing, runs without a sandbox and
trusts the notebook's own (editable) check cells.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..notebook import cell_source, code_cells, is_answer, nbgrader_meta, read_json_nofollow, split_hidden
from . import report
from .report import VISIBILITIES, GradeSummary, StudentResult, TestResult, fmt, shorten
from .run_limits import NotebookLimits
from .sandbox import Limits, SandboxUnavailable, run_sandboxed, sandbox_available

__all__ = [
    "CheckCell",
    "GradeSummary",
    "LabSpec",
    "SandboxUnavailable",
    "StudentResult",
    "TestResult",
    "grade",
    "load_lab",
]

MAX_NOTEBOOK_BYTES = 60_000_000
"""A submitted notebook larger than this is not read (graded zero, with a note)."""
MAX_META_BYTES = 1_000_000
MAX_DATA_BYTES = 50_000_000
MAX_RUN_BYTES = 20_000_000
MAX_ANSWER_CHARS = 20_000
_STARTUP = 180.0  # seconds a sandbox may spend starting Python and importing torch on a loaded machine


# ---------------------------------------------------------------------------------------------
# The lab: exercise names and check cells, read from the solution notebook


@dataclass(frozen=True)
class CheckCell:
    """One check cell of a solution notebook: a graded unit worth ``points``."""

    grade_id: str
    """``metadata.nbgrader.grade_id``: the test's name in the results."""
    points: float
    public: str
    """The source the lab shows (hidden regions removed)."""
    hidden: str
    """The HIDDEN TESTS lines, run after ``public`` in the same namespace ("" when none)."""
    names: tuple[str, ...]
    """The global names the cell reads (besides builtins)."""
    index: int
    """Position of the cell in the solution notebook."""


@dataclass(frozen=True)
class LabSpec:
    """What grading a lab needs, read from its solution notebook by :func:`load_lab`."""

    name: str
    """The solution's file stem, e.g. ``lab04_maml_sinusoid``."""
    solution: Path
    exercises: dict[str, str]
    """Exercise function (or class) name -> exercise label of its answer cell (``"4.1"``)."""
    checks: tuple[CheckCell, ...]
    prelude: tuple[str, ...]
    """Top-level imports of the solution's other code cells that bind a name a check cell reads."""
    manual: tuple[tuple[str, float], ...] = ()
    """(grade_id, points) of answer cells a person grades (nbgrader ``solution`` and ``grade``)."""
    questions: tuple[str, ...] = ()
    """For each of ``manual``: the question (the markdown cell above the answer cell)."""

    @property
    def max_score(self) -> float:
        """The points of all check cells (manually graded answers not included)."""
        return float(sum(check.points for check in self.checks))


def _parse(source: str, where: str) -> ast.Module:
    """Parse a cell, ignoring IPython's line magics and shell escapes (``%time``, ``!pip``)."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n")]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError as error:
        raise ValueError(
            f"{where} is not valid Python ({error.msg}, line {error.lineno}); the grader reads it "
            "with Python's parser: fix the cell in the solution notebook"
        ) from None


def _read_names(tree: ast.Module) -> tuple[str, ...]:
    builtin = set(dir(builtins))
    names = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in builtin
    }
    return tuple(sorted(names))


def _defined_names(tree: ast.Module) -> list[str]:
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return [node.name for node in tree.body if isinstance(node, kinds)]


def _imports(tree: ast.Module) -> list[tuple[set[str], str]]:
    """The top-level imports of a cell: (names they bind, source)."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.module != "__future__"):
            bound = {alias.asname or alias.name.split(".")[0] for alias in node.names}
            found.append((bound, ast.unparse(node)))
    return found


def _resolve_solution(lab: str | os.PathLike[str], solutions_dir: str | os.PathLike[str]) -> Path:
    path = Path(lab)
    if path.suffix == ".ipynb":
        if not path.is_file():
            raise FileNotFoundError(f"no solution notebook {path}; pass the solution of the lab to grade")
        return path
    folder = Path(solutions_dir)
    if not folder.is_absolute() and not folder.is_dir():
        from ..labs import find_root

        folder = find_root() / folder
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no solutions folder {folder}; run from the repository root or pass solutions_dir "
            "(--solutions) pointing at the folder with the solution notebooks"
        )
    exact = folder / f"{path.name}.ipynb"
    candidates = [exact] if exact.is_file() else sorted(folder.glob(f"{path.name}_*.ipynb"))
    if len(candidates) != 1:
        known = ", ".join(p.stem for p in sorted(folder.glob("*.ipynb"))) or "none"
        if candidates:
            several = ", ".join(p.stem for p in candidates)
            raise ValueError(f"lab {str(lab)!r} matches several solutions in {folder} ({several}); "
                             f"name one of them, e.g. `metacourse grade {candidates[-1].stem} ...`")
        raise ValueError(f"lab {str(lab)!r} matches no solution in {folder} (labs: {known}); name one of them")
    return candidates[0]


def _question(cells: list, lab_cells: list, index: int) -> str:
    """The question an answer cell answers: what the lab shows of the cell itself (the solution
    removed), with the markdown cell just above it."""
    from ..labs import MARKDOWN_STUB

    own = cell_source(lab_cells[index]).replace(MARKDOWN_STUB, "").strip() if index < len(lab_cells) else ""
    above = ""
    if index > 0 and cells[index - 1].get("cell_type") == "markdown" and not is_answer(cells[index - 1]):
        above = cell_source(cells[index - 1]).strip()
    return "\n\n".join(part for part in (above, own) if part)


def load_lab(lab: str | os.PathLike[str], solutions_dir: str | os.PathLike[str] = "solutions") -> LabSpec:
    """Read what grading ``lab`` needs from its solution notebook.

    ``lab`` is a solution notebook's path, its stem (``lab04_maml_sinusoid``) or a prefix that names
    one notebook in ``solutions_dir`` (relative folders: from the current directory, else from the
    repository root). Raises ``ValueError`` when the solution is malformed (see
    :mod:`metacourse.course.labs`), has no check cell, or its answer cells define no function.
    """
    import nbformat

    from ..labs import build_lab

    path = _resolve_solution(lab, solutions_dir)
    nb = nbformat.read(path, as_version=4)
    lab_cells = build_lab(nb, name=str(path)).cells  # validates markers, grade ids and points
    exercises: dict[str, str] = {}
    checks: list[CheckCell] = []
    imports: list[tuple[set[str], str]] = []
    manual: list[tuple[str, float]] = []
    questions: list[str] = []
    for index, cell in enumerate(nb.cells):
        meta, where = nbgrader_meta(cell), f"{path}, cell {index}"
        if meta.get("solution") and meta.get("grade"):
            manual.append((meta["grade_id"], float(meta.get("points", 0))))
            questions.append(_question(nb.cells, lab_cells, index))
        if cell.cell_type != "code":
            continue
        tree = _parse(cell_source(cell), where)
        if meta.get("solution"):
            label = str(cell.get("metadata", {}).get("metacourse", {}).get("exercise", meta["grade_id"]))
            for name in _defined_names(tree):
                exercises[name] = label
        elif meta.get("grade"):
            public, hidden = split_hidden(cell_source(cell))
            checks.append(CheckCell(
                grade_id=meta["grade_id"], points=float(meta["points"]), public=public, hidden=hidden,
                names=_read_names(tree), index=index,
            ))
        else:
            imports += _imports(tree)
    if not checks:
        raise ValueError(
            f"{path} has no check cell; mark the cells that check the answers with metadata.nbgrader "
            '{"grade": true, "points": ..., "grade_id": ...} (see metacourse.course.labs)'
        )
    if not exercises:
        raise ValueError(
            f"{path}: its answer cells define no function; the grader takes the student's functions "
            "by the names the answer cells define with `def`"
        )
    needed = {name for check in checks for name in check.names}
    prelude = tuple(dict.fromkeys(source for bound, source in imports if bound & needed))
    return LabSpec(path.stem, path, exercises, tuple(checks), prelude, tuple(manual), tuple(questions))


# ---------------------------------------------------------------------------------------------
# Submissions


@dataclass(frozen=True)
class _Submission:
    student: str
    """The student id."""
    path: Path | None
    """The notebook to read (None: nothing gradable; see ``problem``)."""
    shown: Path
    """What the outputs show as the submission (the file or the folder found)."""
    base: Path
    """The folder the notebook must lie in (the student's own)."""
    problem: str = ""


def _find_submissions(folder: Path, lab: str) -> list[_Submission]:
    """One :class:`_Submission` per entry of ``folder``; links are never followed."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no submissions folder {folder}; pass the folder holding the notebooks")
    entries = sorted((e for e in os.scandir(folder) if not e.name.startswith(".")), key=lambda e: os.fsencode(e.name))
    found: list[tuple[str, Path | None, Path, Path, str]] = []
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink():
            if entry.name.endswith(".ipynb") or entry.is_dir():
                found.append((path.stem if entry.name.endswith(".ipynb") else entry.name, None, path, folder,
                              "the submission is a symbolic link, not a notebook file; submit the notebook itself"))
            continue
        if entry.is_file(follow_symlinks=False) and entry.name.endswith(".ipynb"):
            found.append((path.stem, path, path, folder, ""))
        elif entry.is_dir(follow_symlinks=False):
            notebooks = sorted(_walk_notebooks(path), key=lambda p: os.fsencode(str(p)))
            named = [p for p in notebooks if p.stem == lab] or notebooks
            if len(named) == 1:
                problem = ("the notebook is a symbolic link, not a file of your own; submit the notebook itself"
                           if named[0].is_symlink() else "")
                found.append((entry.name, None if problem else named[0], path, path, problem))
            else:
                problem = "no notebook" if not named else f"{len(named)} notebooks and none is named {lab}.ipynb"
                problem = f"the submission folder holds {problem}; submit one notebook"
                found.append((entry.name, None, path, path, problem))
    if not found:
        raise ValueError(f"no submissions in {folder}: put <student>.ipynb or <student>/<lab>.ipynb files there")
    ids = report.student_ids([name for name, *_ in found])
    return [_Submission(sid, nb, shown, base, problem) for sid, (_, nb, shown, base, problem) in zip(ids, found)]


def _walk_notebooks(folder: Path) -> list[Path]:
    """The notebooks under ``folder`` (links listed, never entered), outside ``.ipynb_checkpoints``."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [d for d in dirs if d != ".ipynb_checkpoints" and not d.startswith(".")]
        found += [Path(root, name) for name in files if name.endswith(".ipynb")]
    return found


# ---------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class _Options(NotebookLimits):
    """The limits of a notebook's run (sent to the executor), then the sandbox's own settings."""

    sandbox: bool
    memory_bytes: int
    hidden_visibility: str
    hidden: tuple[Path, ...]
    """Host folders no sandbox may see, even inside a whitelisted folder."""


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or characters, got {value!r}")


def _env(options: _Options) -> dict[str, str]:
    threads = str(options.threads)
    return {"METACOURSE_FAST": "1", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


# ---------------------------------------------------------------------------------------------
# One submission


def _read_submission(sub: _Submission) -> tuple[Any, str]:
    """The notebook as nbformat 4 (or None) and the problem."""
    import nbformat

    if sub.path is None:
        return None, sub.problem
    try:
        data = read_json_nofollow(sub.path, max_bytes=MAX_NOTEBOOK_BYTES, base=sub.base)
        if not isinstance(data, dict):
            raise ValueError("the file is JSON but not a notebook")
        return nbformat.reads(json.dumps(data), as_version=4), ""
    except Exception as error:  # noqa: BLE001 - a broken file is graded zero
        return None, f"the notebook cannot be read ({type(error).__name__}: {shorten(str(error), 160)})"


def _executor_request(nb: Any, spec: LabSpec, legacy: list[CheckCell], options: _Options) -> dict:
    context = sorted({name for check in legacy for name in check.names} - set(spec.exercises))
    return {"notebook": nb, "limits": options.as_request(), "exercises": spec.exercises, "context": context,
            "prelude": list(spec.prelude), "checks": [[c.grade_id, c.public, c.hidden] for c in legacy],
            "sandboxed": options.sandbox}


def _read_checked_json(path: Path, max_bytes: int) -> Any:
    return read_json_nofollow(path, max_bytes=max_bytes, base=path.parent)


def _valid_run(data: Any) -> dict:
    """The executor's ``run.json``, checked field by field (anything else: a failed run)."""
    if not isinstance(data, dict):
        raise ValueError("run.json is not an object")
    notes = data.get("notes", [])
    cells = data.get("cells", [])
    checks = data.get("checks", {})
    if not (isinstance(notes, list) and all(isinstance(n, str) for n in notes)):
        raise ValueError("run.json notes are not a list of strings")
    if not (isinstance(cells, list) and all(isinstance(c, dict) and isinstance(c.get("index"), int)
                                            and isinstance(c.get("status"), str) for c in cells)):
        raise ValueError("run.json cells are not a list of {index, status}")
    if not isinstance(checks, dict):
        raise ValueError("run.json checks are not an object")
    clean: dict[str, dict] = {}
    for gid, event in checks.items():
        if not isinstance(event, dict):
            continue
        public, hidden, output = event.get("public"), event.get("hidden"), event.get("output", "")
        if not all(v is None or isinstance(v, str) for v in (public, hidden)) or not isinstance(output, str):
            continue
        clean[str(gid)] = {"output": output[:200_000], "public": public, "hidden": hidden,
                           "has_hidden": bool(event.get("has_hidden"))}
    return {"notes": [shorten(n, 600) for n in notes[:200]], "cells": cells, "checks": clean,
            "exported": bool(data.get("exported"))}


def _valid_executed(data: Any) -> dict | None:
    if isinstance(data, dict) and isinstance(data.get("cells"), list) and isinstance(data.get("metadata", {}), dict):
        return data
    return None


def _legacy_result(check: CheckCell, event: dict | None, reason: str, visibility: str) -> TestResult:
    if event is None:
        event = {"output": "", "public": reason, "hidden": None, "has_hidden": False}
    lines = [event["output"].rstrip("\n")] if event["output"].strip() else []
    label = "checks" if not event["has_hidden"] else "public checks"
    lines.append(f"{label}: " + ("passed" if event["public"] is None else f"failed\n{event['public']}"))
    if event["has_hidden"]:
        lines.append("hidden checks: " + ("passed" if event["hidden"] is None else f"failed\n{event['hidden']}"))
    passed = event["public"] is None and event["hidden"] is None
    return TestResult(name=check.grade_id, score=check.points if passed else 0.0, max_score=check.points,
                      output="\n".join(lines), status="passed" if passed else "failed", visibility=visibility)


def _student_cells(nb: Any, statuses: dict[int, str]) -> list[dict]:
    """Every code cell of the student's notebook, its source as read here from the submission file."""
    return [{"index": index, "source": cell_source(cell), "status": statuses.get(index, "not-run"),
             "nbgrader": nbgrader_meta(cell)} for index, cell in code_cells(nb)]


def _answers(nb: Any, spec: LabSpec) -> dict[str, str]:
    """The student's written answers: the last answer cell with each manually graded grade_id."""
    wanted = {gid for gid, _ in spec.manual}
    found: dict[str, str] = {}
    for cell in nb.get("cells", []) if nb is not None else []:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid in wanted:
            found[gid] = cell_source(cell)[:MAX_ANSWER_CHARS]
    return found


def _load_npz(path: Path) -> dict:
    import numpy as np

    if path.is_symlink() or not path.is_file():
        raise ValueError("data.npz is missing")
    if path.stat().st_size > MAX_DATA_BYTES:
        raise ValueError(f"data.npz is larger than {MAX_DATA_BYTES / 1e6:.0f} MB")
    data = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            array = archive[key]
            if array.dtype.kind not in "biufc":
                raise ValueError(f"data.npz holds {key!r} of dtype {array.dtype}, not numbers")
            data[key] = array
    return data


def _valid_meta(data: Any) -> dict:
    if not isinstance(data, dict) or not isinstance(data.get("status"), str):
        raise ValueError("meta.json has no status")
    if not isinstance(data.get("message", ""), str) or len(data.get("message", "")) > 4000:
        raise ValueError("meta.json message is not a short string")
    if data.get("sentinel") is not None and not isinstance(data["sentinel"], str):
        raise ValueError("meta.json sentinel is not a string")
    return data


def _probe(check: Any, spec: LabSpec, cells: list[dict], scratch: Path, options: _Options) -> tuple[Any, str]:
    """Run one probe in a fresh sandbox; return (Verdict or None, why it failed)."""
    from .probes import load_student_request

    folder = scratch / f"probe-{check.grade_id}"
    inputs, outdir = folder / "in", folder / "out"
    inputs.mkdir(parents=True)
    outdir.mkdir()
    request = check.request()
    payload = load_student_request(spec.name, check.grade_id, cells, request)
    (inputs / "request.json").write_text(json.dumps(payload), encoding="utf-8")
    limits = Limits(cpu_seconds=float(check.cpu_seconds), wall_seconds=3 * float(check.cpu_seconds) + _STARTUP,
                    memory_bytes=options.memory_bytes)
    run = run_sandboxed([sys.executable, "-I", "-m", "metacourse.course.grading.runner",
                         str(inputs / "request.json"), str(outdir)],
                        workdir=None, outdir=outdir, readonly={inputs: str(inputs)}, overlays=check.overlays(),
                        limits=limits, env=_env(options), hidden=options.hidden, sandbox=options.sandbox)
    why = ""
    if run.timed_out:
        why = f"it ran past {limits.wall_seconds:.0f} s and was stopped"
    try:
        meta = _valid_meta(_read_checked_json(outdir / "meta.json", MAX_META_BYTES))
        data = _load_npz(outdir / "data.npz") if (outdir / "data.npz").exists() else {}
    except Exception as error:  # noqa: BLE001 - anything odd from the sandbox is a failed check
        tail = run.stderr_tail.strip().splitlines()[-1:] if run.stderr_tail.strip() else []
        code = f"exit code {run.returncode}" + (f": {tail[0]}" if tail else "")
        return None, why or f"{error} ({code})"
    try:
        return check.judge(request, data, meta), ""
    except Exception as error:  # noqa: BLE001 - a judge that cannot read the data fails the check
        return None, f"its results could not be judged ({type(error).__name__}: {shorten(str(error), 200)})"


def _grade_one(spec: LabSpec, sub: _Submission, probes: dict[str, Any], options: _Options) -> StudentResult:
    start = time.monotonic()
    notes: list[str] = []
    executed = None
    visibility = {c.grade_id: (options.hidden_visibility if c.hidden else "visible") for c in spec.checks}
    legacy = [check for check in spec.checks if check.grade_id not in probes]
    scratch = Path(tempfile.mkdtemp(prefix="metacourse-grade-"))
    tests: dict[str, TestResult] = {}
    nb, problem = _read_submission(sub)
    answers = _answers(nb, spec)
    try:
        run: dict = {"notes": [], "cells": [], "checks": {}, "exported": False}
        if nb is not None:
            run = _execute(nb, spec, legacy, scratch, options)
            notes += run["notes"]
            executed = run.pop("executed", None)
        else:
            notes.append(problem)
        statuses = {c["index"]: c["status"] for c in run["cells"]}
        reason = "not run: nothing could be taken from the notebook (see the notes above)"
        for check in legacy:
            tests[check.grade_id] = _legacy_result(check, run["checks"].get(check.grade_id), reason,
                                                   visibility[check.grade_id])
        cells = _student_cells(nb, statuses) if nb is not None else []
        for check in spec.checks:
            probe = probes.get(check.grade_id)
            if probe is None:
                continue
            if nb is None:
                verdict, why = None, "the notebook could not be read"
            else:
                verdict, why = _probe(probe, spec, cells, scratch, options)
            if verdict is None:
                message = f"the probe of {probe.exercise} did not finish: {why}"
                tests[check.grade_id] = TestResult(check.grade_id, 0.0, check.points, message, "failed",
                                                   visibility[check.grade_id])
            else:
                score = max(0.0, min(float(verdict.score), check.points))
                tests[check.grade_id] = TestResult(check.grade_id, score, check.points, str(verdict.message),
                                                   "passed" if verdict.passed else "failed", visibility[check.grade_id])
    except Exception:  # noqa: BLE001 - a grader failure on one notebook must not stop the batch
        notes.append("the grader failed on this submission (a bug; please report it): "
                     + traceback.format_exc(limit=-3).strip())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for check in spec.checks:
        tests.setdefault(check.grade_id, _legacy_result(check, None, "not run: the grader failed",
                                                        visibility[check.grade_id]))
    notes = [report.printable(note) for note in notes]  # a file name that is not UTF-8 may be quoted
    return StudentResult(sub.student, sub.shown, [tests[c.grade_id] for c in spec.checks], spec.max_score,
                         time.monotonic() - start, notes, answers, executed=executed)


def _execute(nb: Any, spec: LabSpec, legacy: list[CheckCell], scratch: Path, options: _Options) -> dict:
    """Run the notebook (and the legacy checks) in the submission's sandbox; return the checked run."""
    work, out = scratch / "work", scratch / "out"
    work.mkdir()
    out.mkdir()
    request = _executor_request(nb, spec, legacy, options)
    wall = options.total_timeout + len(legacy) * (options.check_timeout + 10) + 60 + _STARTUP
    limits = Limits(cpu_seconds=wall * options.threads, wall_seconds=wall, memory_bytes=options.memory_bytes,
                    file_bytes=max(256 << 20, 4 * options.max_output))
    run = run_sandboxed([sys.executable, "-I", "-m", "metacourse.course.grading.executor", str(out)],
                        workdir=work, outdir=out, limits=limits, env=_env(options), hidden=options.hidden,
                        sandbox=options.sandbox, stdin=json.dumps(request))
    try:
        checked = _valid_run(_read_checked_json(out / "run.json", MAX_RUN_BYTES))
    except Exception as error:  # noqa: BLE001 - the run ended early: graded on what the probes find
        tail = run.stderr_tail.strip().splitlines()[-1:]
        why = ("it ran past its time limit and was stopped" if run.timed_out
               else f"exit code {run.returncode}" + (f": {shorten(tail[0], 200)}" if tail else ""))
        checked = {"notes": [f"the notebook's run ended early ({why}; {error}): the checks that need it "
                             "score zero, the others grade the notebook's source"],
                   "cells": [], "checks": {}, "exported": False}
    try:
        executed = _valid_executed(_read_checked_json(out / "executed.ipynb", 4 * options.max_output + MAX_RUN_BYTES))
    except Exception:  # noqa: BLE001 - feedback only
        executed = None
    checked["executed"] = executed
    return checked


# ---------------------------------------------------------------------------------------------
# A class


def _lab_probes(name: str) -> dict[str, Any]:
    """grade_id -> ProbeCheck for the lab (empty: every check takes the legacy path)."""
    try:
        from .probes import get_lab_probes
    except ImportError:
        return {}
    lab = get_lab_probes(name)
    return {} if lab is None else {check.grade_id: check for check in lab.checks}


def grade(
    lab: str | os.PathLike[str],
    submissions_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    solutions_dir: str | os.PathLike[str] = "solutions",
    cell_timeout: float = 120,
    total_timeout: float = 900,
    check_timeout: float = 120,
    max_cell_output: int = 200_000,
    max_output: int = 2_000_000,
    jobs: int = 1,
    students: Sequence[str] | None = None,
    sandbox: bool = True,
    hidden_visibility: str = "after_published",
    memory_bytes: int = 8 << 30,
) -> GradeSummary:
    """Grade every submission of ``lab`` in ``submissions_dir``; write the results to ``out_dir``.

    ``lab``: the solution notebook's path, stem or a prefix naming one solution (see :func:`load_lab`).
    ``cell_timeout``: seconds per notebook cell; ``total_timeout``: seconds for running a notebook;
    ``check_timeout``: seconds per legacy check cell (probes have CPU-second limits of their own).
    ``max_cell_output`` and ``max_output``: characters kept per cell and per notebook. ``jobs``:
    submissions graded at the same time. ``students``: grade only these (ids as in the results).
    ``sandbox``: False runs the students' code without isolation (trusted work only).
    ``hidden_visibility``: Gradescope visibility of the checks that have hidden tests.
    ``memory_bytes``: address space of each process in a sandbox.
    Returns a :class:`GradeSummary`; raises ``ValueError``/``FileNotFoundError`` for problems of the
    lab or the folders and :class:`SandboxUnavailable` (with the fix) when there is no sandbox.
    """
    for name, value in (("cell_timeout", cell_timeout), ("total_timeout", total_timeout),
                        ("check_timeout", check_timeout), ("max_cell_output", max_cell_output),
                        ("max_output", max_output), ("jobs", jobs), ("memory_bytes", memory_bytes)):
        _check_positive(name, value)
    if hidden_visibility not in VISIBILITIES:
        raise ValueError(f"hidden_visibility must be one of {', '.join(VISIBILITIES)}, got {hidden_visibility!r}")
    if sandbox:
        ok, why = sandbox_available()
        if not ok:
            raise SandboxUnavailable(f"no sandbox for the students' code: {why}")
    start = time.monotonic()
    spec = load_lab(lab, solutions_dir)
    submissions_path, out = Path(submissions_dir), Path(out_dir)
    submissions = _find_submissions(submissions_path, spec.name)
    if students is not None:
        wanted = set(students)
        unknown = sorted(wanted - {s.student for s in submissions})
        if unknown:
            raise ValueError(f"no submission for {', '.join(unknown)} in {submissions_dir}; check the names")
        submissions = [s for s in submissions if s.student in wanted]
    out.mkdir(parents=True, exist_ok=True)
    hidden = tuple(dict.fromkeys(p.resolve() for p in (
        spec.solution.parent, Path(solutions_dir), submissions_path, out, Path.cwd(), Path.home())))
    options = _Options(float(cell_timeout), float(total_timeout), float(check_timeout), int(max_cell_output),
                       int(max_output), max(1, (os.cpu_count() or 1) // int(jobs)), bool(sandbox),
                       int(memory_bytes), hidden_visibility, hidden)
    probes = _lab_probes(spec.name)
    with ThreadPoolExecutor(int(jobs)) as pool:
        ordered = list(pool.map(lambda sub: _grade_one(spec, sub, probes, options), submissions))
    # every sandbox of the batch has ended: only now is anything written
    for result in ordered:
        report.write_student(result, out)
    wall = time.monotonic() - start
    grades_csv, report_md, answers_csv = out / "grades.csv", out / "report.md", out / "answers.csv"
    report.write_csv(grades_csv, [c.grade_id for c in spec.checks], ordered)
    manual = [(gid, points, question) for (gid, points), question in zip(spec.manual, spec.questions)]
    report.write_answers(answers_csv, manual, ordered)
    how = [(c.grade_id, c.points, "probe + judge" if c.grade_id in probes else "check cell in the sandbox")
           for c in spec.checks]
    limits_line = (f"limits: {fmt(cell_timeout)} s a cell, {fmt(total_timeout)} s a notebook, "
                   f"{fmt(check_timeout)} s a legacy check")
    report.write_report(report_md, lab=spec.name, solution=spec.solution, checks=how, manual=manual,
                        results=ordered, max_score=spec.max_score, limits_line=limits_line, wall=wall,
                        sandboxed=options.sandbox)
    return GradeSummary(spec.name, spec.solution, out, spec.max_score, ordered, grades_csv, report_md, wall,
                        answers_csv, options.sandbox)
