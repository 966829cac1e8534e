"""Grade a class's submitted labs: ``metacourse grade LAB SUBMISSIONS --out DIR``.

For every submitted notebook (a student's copy of ``labs/<lab>.ipynb``) :func:`grade`

1. **executes** the notebook, cell by cell in the student's order, in a fresh Jupyter kernel of its
   own (nbclient; ``METACOURSE_FAST=1`` in the kernel's environment; working directory a scratch
   folder). A cell that raises is recorded and the next cell runs. A cell that runs past
   ``cell_timeout`` is interrupted; if the kernel does not answer after the interrupt, or if a cell
   ends the kernel (``os._exit``, a crash in compiled code), that cell is dropped and the notebook is run again
   from the top without it, so what ran before it still counts. ``total_timeout`` bounds the
   whole execution; cells past it are not run. Outputs are capped (``max_cell_output`` characters
   per cell, ``max_output`` per notebook) and the executed notebook is kept for feedback.
2. **takes the exercise functions by name** from the kernel: the names are the top-level ``def``
   (and ``class``) names of the solution's answer cells (``metadata.nbgrader.solution``), so it does
   not matter which cells the student kept, deleted, duplicated, edited or reordered: the last
   definition executed wins. The functions travel by value (``cloudpickle``, with the helpers and
   globals they use) to a **fresh grading process**, where nothing else of the student's notebook
   ran: monkey-patching a reference (``maml.adapt = my_adapt``) or a check
   (``metacourse.checks.run_checks = ...``) in the notebook has no effect there. A name the notebook
   does not define, or that is an import of the library's own function rather than the student's
   code, is replaced by a stub that raises a ``NameError`` saying so.
3. **runs every check cell of the solution**, public part then hidden part, in that process, in the
   solution's order, sharing one namespace. The namespace starts with the solution's top-level
   imports (setup cells), then any other name a check cell reads that the student's kernel defines
   (``FAST``, a model built in a setup cell), then the exercise functions. A check cell is worth its
   ``metadata.nbgrader.points`` when both parts run without an exception, else zero. Each check
   gets ``check_timeout`` seconds; a check that hangs or ends the process scores zero and the
   remaining checks run in a new process. A submission from which nothing could be taken (an
   unreadable file, a kernel that kept dying) scores zero without running the checks.

Hidden checks ship apart from the student material: they are the ``### BEGIN HIDDEN TESTS`` /
``### END HIDDEN TESTS`` regions of the solution notebook's check cells, read at grading time.
``solutions/`` is instructor material: it is not part of the installed package (the wheel holds
``metacourse/`` only), the labs are built without these regions (``metacourse labs build``) and
``metacourse labs check`` fails when a hidden line leaks into a lab. This course's public repository
publishes its solutions for self-study readers; an instructor who needs the hidden checks to stay
secret keeps the solution notebooks in a private copy and passes ``solutions_dir`` (``--solutions``).

Outputs in ``out_dir``: ``<student>/results.json`` in Gradescope's shape (``score``,
``execution_time``, ``output``, ``tests`` with ``name``, ``score``, ``max_score``, ``output``,
``status``), ``<student>/executed.ipynb``, the class table ``grades.csv`` and ``report.md``.
Submissions are ``SUBMISSIONS/<student>.ipynb`` or ``SUBMISSIONS/<student>/<any>.ipynb``. A
submission that cannot be read, loops, exits, raises or floods its output is graded like any other
and never stops the batch.

This is not a sandbox: the students' code runs with the grader's rights. Grade untrusted
submissions inside a container or a throw-away machine (as Gradescope's autograder does).

The quick path for instructors: ``pytest --nbval-lax --nbval-current-env submission.ipynb`` runs a
single notebook and reports each failing cell (item ``submission.ipynb::Cell N``, N counting code
cells from 0) with its traceback; it grades nothing and trusts the notebook's own (editable) check cells.

This module imports only the standard library at import time: the grading process loads this very
file (not the ``metacourse`` package) to run the checks.
"""

from __future__ import annotations

import ast
import asyncio
import atexit
import builtins
import contextlib
import copy
import csv
import functools
import io
import json
import logging
import math
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CheckCell",
    "GradeSummary",
    "LabSpec",
    "StudentResult",
    "TestResult",
    "grade",
    "load_lab",
]

KERNEL_NAME = "python3"
"""The kernel every submission runs in, whatever kernelspec the notebook names."""

_HIDDEN_RE = re.compile(r"^(?P<indent>[ \t]*)#+[ \t]*(?P<edge>BEGIN|END)[ \t]+HIDDEN TESTS\s*$")
_MAX_KERNEL_STARTS = 4  # a notebook whose cells end the kernel 3 times is given up on
_PING_TIMEOUT = 5.0  # seconds a kernel has to answer after an interrupt
_HARD_GRACE = 15.0  # seconds past a cell's timeout before its kernel is killed outright
_EXPORT_TIMEOUT = 60.0
_WORKER_STARTUP = 120.0  # seconds the grading process may take to import the checks' modules
_MAX_CONTEXT_BYTES = 50_000_000  # notebook values larger than this are not passed to the checks
_MAX_NOTE_CHARS = 300
_TIMEOUT_ENAME = "CellTimeoutError"
_QUIET = logging.getLogger("metacourse.grading.kernel")  # nbclient's timeout and kernel messages
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


# ---------------------------------------------------------------------------------------------
# The lab: exercise names and check cells, read from the solution notebook


@dataclass(frozen=True)
class CheckCell:
    """One check cell of a solution notebook: a graded unit worth ``points``."""

    grade_id: str
    """``metadata.nbgrader.grade_id``: the test's name in the results."""
    points: float
    """``metadata.nbgrader.points``."""
    public: str
    """The source the lab shows (hidden regions removed)."""
    hidden: str
    """The HIDDEN TESTS lines, run after ``public`` in the same namespace ("" when none). When a
    region is indented (inside a block), ``public`` holds the whole cell and ``hidden`` is ""."""
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
    """Top-level imports of the solution's other code cells that bind a name a check cell reads;
    run before the checks, they win over the student's values of those names."""
    manual: tuple[tuple[str, float], ...] = ()
    """(grade_id, points) of answer cells a person grades (nbgrader ``solution`` and ``grade``)."""

    @property
    def max_score(self) -> float:
        """The points of all check cells (manually graded answers not included)."""
        return float(sum(check.points for check in self.checks))


def _source(cell: Any) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _nbgrader(cell: Any) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


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


def _split_hidden(source: str) -> tuple[str, str]:
    """Split a check cell into (public, hidden) sources; see :attr:`CheckCell.hidden`."""
    public: list[str] = []
    hidden: list[str] = []
    inside = indented = False
    for line in source.split("\n"):
        match = _HIDDEN_RE.match(line)
        if match:
            inside = match["edge"] == "BEGIN"
            indented |= bool(match["indent"])
            continue
        (hidden if inside else public).append(line)
    if indented:  # an indented region cannot run on its own: keep the cell whole
        whole = [line for line in source.split("\n") if not _HIDDEN_RE.match(line)]
        return "\n".join(whole), ""
    return "\n".join(public), "\n".join(hidden).strip("\n")


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
        from .labs import find_root

        folder = find_root() / folder
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no solutions folder {folder}; run from the repository root or pass solutions_dir "
            "(--solutions) pointing at the folder with the solution notebooks"
        )
    candidates = sorted(folder.glob(f"{path.name}.ipynb")) or sorted(folder.glob(f"{path.name}_*.ipynb"))
    if len(candidates) != 1:
        known = ", ".join(p.stem for p in sorted(folder.glob("*.ipynb"))) or "none"
        problem = "matches several solutions" if candidates else "matches no solution"
        raise ValueError(f"lab {str(lab)!r} {problem} in {folder} (labs: {known}); name one of them")
    return candidates[0]


def load_lab(lab: str | os.PathLike[str], solutions_dir: str | os.PathLike[str] = "solutions") -> LabSpec:
    """Read what grading ``lab`` needs from its solution notebook.

    ``lab`` is a solution notebook's path, its stem (``lab04_maml_sinusoid``) or a unique prefix
    (``lab04``) of a notebook in ``solutions_dir`` (relative folders: from the current directory,
    else from the repository root). Raises ``ValueError`` when the solution is malformed (see
    :mod:`metacourse.labs`), has no check cell, or its answer cells define no function.
    """
    import nbformat

    from .labs import build_lab

    path = _resolve_solution(lab, solutions_dir)
    nb = nbformat.read(path, as_version=4)
    build_lab(nb, name=str(path))  # validates markers, grade ids and points
    exercises: dict[str, str] = {}
    checks: list[CheckCell] = []
    imports: list[tuple[set[str], str]] = []
    manual: list[tuple[str, float]] = []
    for index, cell in enumerate(nb.cells):
        meta, where = _nbgrader(cell), f"{path}, cell {index}"
        if meta.get("solution") and meta.get("grade"):
            manual.append((meta["grade_id"], float(meta.get("points", 0))))
        if cell.cell_type != "code":
            continue
        tree = _parse(_source(cell), where)
        if meta.get("solution"):
            label = str(cell.get("metadata", {}).get("metacourse", {}).get("exercise", meta["grade_id"]))
            for name in _defined_names(tree):
                exercises[name] = label
        elif meta.get("grade"):
            public, hidden = _split_hidden(_source(cell))
            checks.append(CheckCell(
                grade_id=meta["grade_id"], points=float(meta["points"]), public=public, hidden=hidden,
                names=_read_names(tree), index=index,
            ))
        else:
            imports += _imports(tree)
    if not checks:
        raise ValueError(
            f"{path} has no check cell; mark the cells that check the answers with metadata.nbgrader "
            '{"grade": true, "points": ..., "grade_id": ...} (see metacourse.labs)'
        )
    if not exercises:
        raise ValueError(
            f"{path}: its answer cells define no function; the grader takes the student's functions "
            "by the names the answer cells define with `def`"
        )
    needed = {name for check in checks for name in check.names}
    prelude = tuple(dict.fromkeys(source for bound, source in imports if bound & needed))
    return LabSpec(path.stem, path, exercises, tuple(checks), prelude, tuple(manual))


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

    def to_json(self) -> dict:
        return {"name": self.name, "score": self.score, "max_score": self.max_score,
                "output": self.output, "status": self.status}


@dataclass
class StudentResult:
    """A student's grade: the tests, what happened while running the notebook, where it is saved."""

    student: str
    submission: Path
    tests: list[TestResult]
    max_score: float
    execution_time: float
    notes: list[str] = field(default_factory=list)
    """What went wrong while running the notebook (timeouts, errors, exits), one sentence each."""
    results_path: Path | None = None

    @property
    def score(self) -> float:
        return float(sum(test.score for test in self.tests))

    def to_gradescope(self) -> dict:
        """This result in Gradescope's ``results.json`` shape."""
        lines = [f"Score {_fmt(self.score)}/{_fmt(self.max_score)}."]
        lines += [f"- {note}" for note in self.notes]
        return {"score": self.score, "execution_time": round(self.execution_time, 2),
                "output": "\n".join(lines), "tests": [test.to_json() for test in self.tests]}


@dataclass
class GradeSummary:
    """What :func:`grade` did: one :class:`StudentResult` per submission and the files written."""

    lab: str
    solution: Path
    out_dir: Path
    max_score: float
    results: list[StudentResult]
    grades_csv: Path
    report_md: Path
    wall_time: float

    def scores(self) -> dict[str, float]:
        """Student -> score."""
        return {result.student: result.score for result in self.results}

    def table(self) -> str:
        """A plain-text table of the class, for the command line."""
        width = max([7, *(len(r.student) for r in self.results)])
        lines = [f"{'student':<{width}}  score  notes"]
        for r in self.results:
            score = f"{_fmt(r.score)}/{_fmt(r.max_score)}"
            note = "; ".join(r.notes)
            lines.append(f"{r.student:<{width}}  {score:<5}  {_shorten(note, 100)}".rstrip())
        lines.append(
            f"{len(self.results)} submissions of {self.lab} graded in {self.wall_time:.0f} s; "
            f"wrote {self.grades_csv}, {self.report_md} and {self.out_dir}/<student>/results.json"
        )
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return f"{value:g}"


def _shorten(text: str, limit: int = _MAX_NOTE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


# ---------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class _Limits:
    cell_timeout: float
    total_timeout: float
    check_timeout: float
    max_cell_output: int
    max_output: int
    threads: int


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds or characters, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Running one notebook in a kernel


@functools.lru_cache(maxsize=1)
def _client_class() -> type:
    """An nbclient ``NotebookClient`` that caps outputs and records each cell's error reply."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_output

    class CappedClient(NotebookClient):
        def __init__(self, nb, *, max_cell_output: int, max_output: int, **kwargs):
            super().__init__(nb, **kwargs)
            self.max_cell_output, self.max_output = max_cell_output, max_output
            self.cell_chars: dict[int, int] = {}
            self.total_chars = 0
            self.capped: set[int] = set()
            self.errors: dict[int, dict] = {}

        def output(self, outs, msg, display_id, cell_index):
            if cell_index in self.capped:
                return None
            size = _message_size(msg)
            room = min(self.max_cell_output - self.cell_chars.get(cell_index, 0),
                       self.max_output - self.total_chars)
            if size > room:
                self.capped.add(cell_index)
                if msg["msg_type"] == "stream" and room > 0:
                    msg = copy.deepcopy(msg)
                    msg["content"]["text"] = msg["content"]["text"][:room]
                    super().output(outs, msg, display_id, cell_index)
                cell_full = self.cell_chars.get(cell_index, 0) + size > self.max_cell_output
                limit = self.max_cell_output if cell_full else self.max_output
                outs.append(new_output("stream", name="stderr", text=(
                    f"\n[metacourse grade: output cut here, past {limit} characters]\n")))
                size = max(room, 0)
            self.cell_chars[cell_index] = self.cell_chars.get(cell_index, 0) + size
            self.total_chars += size
            return None if cell_index in self.capped else super().output(outs, msg, display_id, cell_index)

        async def _check_raise_for_error(self, cell, cell_index, exec_reply):
            if exec_reply is not None and exec_reply["content"].get("status") == "error":
                self.errors[cell_index] = exec_reply["content"]
            return await super()._check_raise_for_error(cell, cell_index, exec_reply)

    return CappedClient


def _message_size(msg: dict) -> int:
    content = msg.get("content", {})
    if msg.get("msg_type") == "stream":
        return len(content.get("text", ""))
    if msg.get("msg_type") == "error":
        return sum(map(len, content.get("traceback", []))) + len(content.get("evalue", ""))
    return sum(len(str(value)) for value in content.get("data", {}).values())


def _describe_cell(nb: Any, index: int) -> str:
    cell = nb.cells[index]
    first = next((line.strip() for line in _source(cell).split("\n") if line.strip()), "")
    cell_id = cell.get("id")
    where = f"cell {index}" + (f" (id {cell_id!r})" if cell_id else "")
    return f"{where} `{_shorten(first, 60)}`"


@dataclass
class _Execution:
    notes: list[str]
    exported: bool
    nb: Any


async def _responsive(client: Any, timeout: float = _PING_TIMEOUT) -> bool:
    """True when the kernel answers a ``kernel_info`` request within ``timeout`` seconds."""
    from queue import Empty

    try:
        msg_id = client.kc.kernel_info()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            msg = await client.kc.shell_channel.get_msg(timeout=remaining)
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
    except Empty:
        return False


async def _run_cell(client: Any, index: int, timeout: float) -> str:
    """Execute one cell; return ok, error, timeout (interrupted), stuck (no answer) or dead."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    client.timeout = max(1, math.ceil(timeout))
    client.error_on_timeout = {"ename": _TIMEOUT_ENAME, "evalue": f"{client.timeout} s", "traceback": []}
    client.errors.pop(index, None)
    task = asyncio.ensure_future(client.async_execute_cell(client.nb.cells[index], index))
    finished, _ = await asyncio.wait({task}, timeout=client.timeout + _HARD_GRACE)
    if not finished:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        return "stuck"
    try:
        task.result()
    except DeadKernelError:
        return "dead"
    except CellTimeoutError:
        return "stuck"
    reply = client.errors.get(index)
    if reply is None:
        return "ok"
    if reply.get("ename") == _TIMEOUT_ENAME:
        return "timeout" if await _responsive(client) else "stuck"
    return "error"


def _note_for(outcome: str, reply: dict | None, timeout: float) -> str:
    if outcome == "error" and reply is not None:
        ename, evalue = reply.get("ename", "Error"), _shorten(str(reply.get("evalue", "")), 120)
        return f"raised {ename}: {evalue}" if evalue else f"raised {ename}"
    if outcome == "timeout":
        return f"ran past the cell time limit ({timeout:.0f} s) and was interrupted"
    if outcome == "stuck":
        return (f"ran past the cell time limit ({timeout:.0f} s) and did not stop when interrupted; "
                "the notebook was run again without it")
    return "ended the kernel (os._exit or a crash); the notebook was run again without it"


def _kernel_env(limits: _Limits) -> dict[str, str]:
    env = dict(os.environ, METACOURSE_FAST="1", PYTHONUNBUFFERED="1")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, str(limits.threads))
    return env


async def _execute(nb: Any, spec: LabSpec, limits: _Limits, workdir: Path, export_path: Path) -> _Execution:
    """Run the notebook's code cells; then write the exercise functions to ``export_path``."""
    notes: dict[int, str] = {}
    dropped: set[int] = set()
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and _source(cell).strip()]
    deadline = time.monotonic() + limits.total_timeout
    ran: set[int] = set()  # cells that finished in an earlier kernel: replayed past the deadline too
    for _ in range(_MAX_KERNEL_STARTS):
        client = _client_class()(
            nb, kernel_name=KERNEL_NAME, allow_errors=True, interrupt_on_timeout=True,
            record_timing=False, store_widget_state=False, shutdown_kernel="immediate",
            startup_timeout=120, max_cell_output=limits.max_cell_output, max_output=limits.max_output,
            log=_QUIET,
        )
        restart = started = False
        try:
            async with client.async_setup_kernel(env=_kernel_env(limits), cwd=str(workdir),
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
                started = True
                restart = await _run_cells(client, nb, code, (dropped, ran), notes, limits, deadline)
                if not restart:
                    failure = await _export(client, spec, export_path)
                    if failure:
                        notes[len(nb.cells)] = f"taking the exercise functions from the kernel {failure}"
                    return _Execution(_ordered_notes(nb, notes), failure is None, nb)
        except (RuntimeError, TimeoutError) as error:  # the kernel did not start: try again
            if started:
                raise
            atexit.unregister(client._cleanup_kernel)
            notes[len(nb.cells) + 1] = f"a kernel did not start ({_shorten(str(error), 120)})"
    notes[len(nb.cells)] = f"gave up after {_MAX_KERNEL_STARTS} kernel starts"
    return _Execution(_ordered_notes(nb, notes), False, nb)


async def _run_cells(client: Any, nb: Any, code: list[int], state: tuple[set[int], set[int]],
                     notes: dict[int, str], limits: _Limits, deadline: float) -> bool:
    """Run the code cells not dropped; return True when the kernel must be restarted.

    ``state`` is (dropped, ran): cells left out for good, and cells that finished in an earlier
    kernel (they are replayed even past the notebook's deadline, so that what ran still counts).
    """
    dropped, ran = state
    for index in code:
        if index in dropped:
            continue
        nb.cells[index].outputs, nb.cells[index].execution_count = [], None
        remaining = deadline - time.monotonic()
        if remaining < 1 and index not in ran:
            limit = limits.total_timeout
            notes.setdefault(index, f"not run: the notebook used up its time limit ({limit:.0f} s)")
            continue
        timeout = limits.cell_timeout if index in ran else min(limits.cell_timeout, remaining)
        outcome = await _run_cell(client, index, timeout)
        if outcome != "ok":
            notes.setdefault(index, _note_for(outcome, client.errors.get(index), timeout))
        if outcome in ("dead", "stuck"):
            dropped.add(index)
            return True
        ran.add(index)
    return False


def _ordered_notes(nb: Any, notes: dict[int, str]) -> list[str]:
    return [
        f"{_describe_cell(nb, index)} {note}" if index < len(nb.cells) else note
        for index, note in sorted(notes.items())
    ]


_EXPORT_SOURCE = """\
def _metacourse_grade_export(namespace, path, exercises, context, max_bytes):
    import functools, pickle
    import cloudpickle
    payload = {"functions": {}, "context": {}, "problems": {}}
    for name in exercises:
        if name not in namespace:
            payload["problems"][name] = ("missing", "")
            continue
        obj = namespace[name]
        if not callable(obj):
            payload["problems"][name] = ("missing", f"it is {type(obj).__name__}, not a function")
            continue
        target = obj.func if isinstance(obj, functools.partial) else obj
        module = getattr(target, "__module__", None)
        if module != "__main__":
            where = f"{module}.{getattr(target, '__qualname__', name)}" if module else repr(obj)
            payload["problems"][name] = ("foreign", where)
            continue
        try:
            payload["functions"][name] = cloudpickle.dumps(obj)
        except Exception as error:
            payload["problems"][name] = ("unpicklable", f"{type(error).__name__}: {error}")
    for name in context:
        if name in namespace and name not in exercises:
            try:
                blob = cloudpickle.dumps(namespace[name])
            except Exception:
                continue
            if len(blob) <= max_bytes:
                payload["context"][name] = blob
    with open(path, "wb") as file:
        pickle.dump(payload, file)
_metacourse_grade_export(globals(), __ARGS__)
del _metacourse_grade_export
"""


async def _export(client: Any, spec: LabSpec, export_path: Path) -> str | None:
    """Write the exercise functions (and the values the checks read) to ``export_path`` from the
    kernel; return None, or what went wrong."""
    from nbformat.v4 import new_code_cell

    context = sorted({name for check in spec.checks for name in check.names} - set(spec.exercises))
    args = ", ".join(map(repr, (str(export_path), list(spec.exercises), context, _MAX_CONTEXT_BYTES)))
    source = _EXPORT_SOURCE.replace("__ARGS__", args)
    client.nb.cells.append(new_code_cell(source))
    index = len(client.nb.cells) - 1
    try:
        outcome = await _run_cell(client, index, _EXPORT_TIMEOUT)
    finally:
        client.nb.cells.pop()
    if outcome == "ok" and export_path.is_file():
        return None
    return _note_for(outcome, client.errors.get(index), _EXPORT_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# Running the checks in a fresh process


_BOOTSTRAP = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_metacourse_grading_worker', sys.argv[1])\n"
    "module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(module)\n"
    "module._worker_main(sys.argv[2])\n"
)


class _CappedText(io.TextIOBase):
    """A text sink that keeps the first ``limit`` characters written to it."""

    def __init__(self, limit: int):
        self.limit, self.parts, self.size, self.cut = limit, [], 0, False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        room = self.limit - self.size
        if len(text) > room:
            self.cut = True
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        return len(text)

    def getvalue(self) -> str:
        cut = f"\n[metacourse grade: output cut here, past {self.limit} characters]" if self.cut else ""
        return "".join(self.parts) + cut


def _describe_error(error: BaseException, hidden: bool) -> str:
    message = str(error).strip()
    if isinstance(error, AssertionError) or hidden:
        name = "" if isinstance(error, AssertionError) else f"{type(error).__name__}: "
        return f"{name}{message}" if message or name else "assertion failed"
    lines = traceback.format_exception(type(error), error, error.__traceback__, limit=-4)
    return "".join(lines).strip()


def _missing_stub(name: str, label: str, problem: tuple[str, str] | None) -> Any:
    kind, detail = problem or ("not-run", "")
    reasons = {
        "missing": f"`{name}` is not defined once your notebook has run{f' ({detail})' if detail else ''} "
                   f"(Exercise {label}); keep its answer cell and make sure that cell runs without an error",
        "foreign": f"`{name}` is {detail}, imported instead of written in your notebook (Exercise "
                   f"{label}); define it yourself with `def {name}(...)` in the answer cell",
        "unpicklable": f"`{name}` could not be taken from your notebook ({detail}); keep it a plain "
                       "function whose globals are modules, functions or data (no open files or threads)",
        "not-run": f"`{name}` could not be taken from your notebook because the notebook did not run "
                   "to its end (see the notes above)",
    }
    reason = reasons.get(kind, f"`{name}` is unavailable: {detail}")

    def stub(*args: Any, **kwargs: Any) -> Any:
        raise NameError(reason)

    stub.__name__ = stub.__qualname__ = name
    return stub


def _worker_setup(spec: dict) -> dict:
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    for statement in spec["prelude"]:
        with contextlib.suppress(Exception):
            exec(compile(statement, "<setup imports>", "exec"), namespace)
    payload = {"functions": {}, "context": {}, "problems": {}}
    if os.path.isfile(spec["export"]):
        with open(spec["export"], "rb") as file:
            payload = pickle.load(file)
    for name, blob in payload["context"].items():
        if name not in namespace:  # the solution's imports win over the notebook's values
            with contextlib.suppress(Exception):
                namespace[name] = pickle.loads(blob)
    exported = os.path.isfile(spec["export"])
    for name, label in spec["exercises"].items():
        problem = payload["problems"].get(name) if exported else None
        if name in payload["functions"]:
            try:
                namespace[name] = pickle.loads(payload["functions"][name])
                continue
            except Exception as error:
                problem = ("unpicklable", f"{type(error).__name__}: {error}")
        namespace[name] = _missing_stub(name, label, problem)
    return namespace


def _worker_run_part(source: str, filename: str, namespace: dict, sink: _CappedText, hidden: bool) -> str | None:
    """Run one part of a check cell; return None when it passed, else what went wrong."""
    try:
        code = compile(source, filename, "exec")
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            exec(code, namespace)
    except BaseException as error:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are failures too
        return _describe_error(error, hidden)
    return None


def _worker_main(spec_path: str) -> None:
    """Entry point of the grading process: run the checks listed in ``spec_path``, log to JSONL."""
    with open(spec_path, "rb") as file:
        spec = pickle.load(file)
    with open(spec["progress"], "a", encoding="utf-8") as log:
        def emit(event: dict) -> None:
            log.write(json.dumps(event) + "\n")
            log.flush()

        namespace = _worker_setup(spec)
        emit({"event": "ready"})
        for grade_id, public, hidden in spec["checks"]:
            emit({"event": "start", "grade_id": grade_id})
            sink = _CappedText(spec["max_output"])
            public_error = _worker_run_part(public, f"<check {grade_id}>", namespace, sink, hidden=False)
            hidden_error = None
            if hidden:
                hidden_error = _worker_run_part(hidden, f"<hidden check {grade_id}>", namespace, sink, hidden=True)
            emit({"event": "done", "grade_id": grade_id, "output": sink.getvalue(),
                  "public": public_error, "hidden": hidden_error, "has_hidden": bool(hidden)})
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: the students' objects may hang in it


def _read_events(path: Path, offset: int) -> tuple[list[dict], int]:
    if not path.is_file():
        return [], offset
    with open(path, encoding="utf-8") as file:
        file.seek(offset)
        text = file.read()
    complete = text[: text.rfind("\n") + 1]
    events = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return events, offset + len(complete.encode("utf-8"))


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


async def _run_worker(spec: LabSpec, todo: list[CheckCell], export_path: Path, workdir: Path,
                      limits: _Limits, attempt: int) -> tuple[dict[str, dict], str | None]:
    """Start one grading process for ``todo``; return the finished checks and, if it stopped
    early, the grade_id it stopped in (or "" before the first check) with the reason."""
    progress, spec_path = workdir / f"progress-{attempt}.jsonl", workdir / f"checks-{attempt}.pkl"
    payload = {"prelude": list(spec.prelude), "export": str(export_path), "exercises": spec.exercises,
               "checks": [(c.grade_id, c.public, c.hidden) for c in todo], "progress": str(progress),
               "max_output": limits.max_cell_output}
    spec_path.write_bytes(pickle.dumps(payload))
    stderr_path = workdir / f"worker-{attempt}.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BOOTSTRAP, str(Path(__file__).resolve()), str(spec_path),
            cwd=str(workdir), env=_kernel_env(limits), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr)
    done: dict[str, dict] = {}
    offset, current, since = 0, "", time.monotonic()
    stopped: str | None = None
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.1)
        events, offset = _read_events(progress, offset)
        for event in events:
            if event["event"] == "start":
                current, since = event["grade_id"], time.monotonic()
            elif event["event"] == "done":
                done[event["grade_id"]], current = event, ""
            elif event["event"] == "ready":
                since = time.monotonic()
        if proc.returncode is not None:
            if len(done) < len(todo):
                tail = _tail(stderr_path)
                stopped = (f"the grading process ended during this check (exit code {proc.returncode})"
                           + (f": {tail}" if tail else ""))
            break
        limit = limits.check_timeout if current else max(_WORKER_STARTUP, limits.check_timeout)
        if time.monotonic() - since > limit:
            await _kill(proc)
            stopped = (f"ran past the check time limit ({limits.check_timeout:.0f} s)" if current
                       else f"the grading process did not start within {limit:.0f} s: {_tail(stderr_path)}")
            break
    if stopped is None:
        return done, None
    return done, f"{current}\0{stopped}"


def _tail(path: Path, limit: int = 600) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return text[-limit:]


async def _run_checks(spec: LabSpec, export_path: Path, workdir: Path, limits: _Limits) -> dict[str, dict]:
    """Run every check of ``spec``; a check that hangs or ends the process fails alone."""
    results: dict[str, dict] = {}
    for attempt in range(len(spec.checks) + 1):
        todo = [check for check in spec.checks if check.grade_id not in results]
        if not todo:
            break
        done, stopped = await _run_worker(spec, todo, export_path, workdir, limits, attempt)
        results.update(done)
        if stopped is None:
            continue
        grade_id, reason = stopped.split("\0", 1)
        failed = [grade_id] if grade_id else [check.grade_id for check in todo if check.grade_id not in results]
        for name in failed:
            results[name] = {"grade_id": name, "output": "", "public": reason, "hidden": None, "has_hidden": False}
    return results


def _test_result(check: CheckCell, event: dict | None, reason: str = "not run") -> TestResult:
    if event is None:
        event = {"output": "", "public": reason, "hidden": None, "has_hidden": False}
    lines = [event["output"].rstrip("\n")] if event["output"].strip() else []
    label = "checks" if not event["has_hidden"] else "public checks"
    lines.append(f"{label}: " + ("passed" if event["public"] is None else f"failed\n{event['public']}"))
    if event["has_hidden"]:
        lines.append("hidden checks: " + ("passed" if event["hidden"] is None else f"failed\n{event['hidden']}"))
    passed = event["public"] is None and event["hidden"] is None
    return TestResult(name=check.grade_id, score=check.points if passed else 0.0, max_score=check.points,
                      output="\n".join(lines), status="passed" if passed else "failed")


# ---------------------------------------------------------------------------------------------
# One submission, a class


def _student_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "student"


def _find_submissions(folder: Path, lab: str) -> list[tuple[str, Path | None, str]]:
    """Return (student, notebook, problem) for each submission in ``folder``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no submissions folder {folder}; pass the folder holding the notebooks")
    found: list[tuple[str, Path | None, str]] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix == ".ipynb":
            found.append((entry.stem, entry, ""))
        elif entry.is_dir():
            notebooks = sorted(p for p in entry.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
            named = [p for p in notebooks if p.stem == lab] or notebooks
            if len(named) == 1:
                found.append((entry.name, named[0], ""))
            else:
                problem = "no notebook" if not named else f"{len(named)} notebooks and none is named {lab}.ipynb"
                found.append((entry.name, None, f"the submission folder holds {problem}; submit one notebook"))
    if not found:
        raise ValueError(f"no submissions in {folder}: put <student>.ipynb or <student>/<lab>.ipynb files there")
    seen: dict[str, int] = {}
    unique = []
    for student, path, problem in found:
        name = _student_name(student)
        seen[name] = seen.get(name, 0) + 1
        unique.append((name if seen[name] == 1 else f"{name}-{seen[name]}", path, problem))
    return unique


async def _grade_one(spec: LabSpec, student: str, path: Path | None, problem: str, out_dir: Path,
                     limits: _Limits) -> StudentResult:
    import nbformat

    start = time.monotonic()
    student_dir = out_dir / student
    student_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"metacourse-grade-{student}-"))
    notes: list[str] = []
    try:
        nb = None
        if path is not None and not problem:
            try:
                nb = nbformat.read(path, as_version=4)
            except Exception as error:  # noqa: BLE001 - a broken file is graded zero
                problem = f"the notebook cannot be read ({type(error).__name__}: {_shorten(str(error), 160)})"
        export_path = workdir / "exported.pkl"
        events: dict[str, dict] = {}
        if nb is not None:
            execution = await _execute(nb, spec, limits, workdir, export_path)
            notes += execution.notes
            nbformat.write(execution.nb, student_dir / "executed.ipynb")
            if execution.exported:
                events = await _run_checks(spec, export_path, workdir, limits)
        else:
            notes.append(problem)
        reason = "not run: nothing could be taken from the notebook (see the notes above)"
        tests = [_test_result(check, events.get(check.grade_id), reason) for check in spec.checks]
    except Exception:  # noqa: BLE001 - a grader failure on one notebook must not stop the batch
        notes.append("the grader failed on this submission (a bug; please report it): "
                     + traceback.format_exc(limit=-3).strip())
        tests = [_test_result(check, None, "not run: the grader failed") for check in spec.checks]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = StudentResult(student, path or out_dir, tests, spec.max_score, time.monotonic() - start, notes)
    result.results_path = student_dir / "results.json"
    result.results_path.write_text(json.dumps(result.to_gradescope(), indent=1) + "\n", encoding="utf-8")
    return result


async def _grade_all(spec: LabSpec, submissions: list, out_dir: Path, limits: _Limits, jobs: int) -> list:
    semaphore = asyncio.Semaphore(jobs)

    async def one(student: str, path: Path | None, problem: str) -> StudentResult:
        async with semaphore:
            return await _grade_one(spec, student, path, problem, out_dir, limits)

    return list(await asyncio.gather(*(one(*submission) for submission in submissions)))


def _run_async(coroutine: Any) -> Any:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        return asyncio.run(coroutine)
    from concurrent.futures import ThreadPoolExecutor  # called from a notebook: its loop is busy

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


# ---------------------------------------------------------------------------------------------
# Class files


def _write_csv(path: Path, spec: LabSpec, results: list[StudentResult]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["student", "score", "max_score", *(c.grade_id for c in spec.checks),
                         "execution_time", "notes"])
        for r in results:
            writer.writerow([r.student, _fmt(r.score), _fmt(r.max_score), *(_fmt(t.score) for t in r.tests),
                             f"{r.execution_time:.1f}", " | ".join(_shorten(n) for n in r.notes)])


def _write_report(path: Path, spec: LabSpec, results: list[StudentResult], limits: _Limits, wall: float) -> None:
    scores = [r.score for r in results]
    lines = [
        f"# Grades: {spec.name}",
        "",
        f"{len(results)} submissions, out of {_fmt(spec.max_score)} points: mean {statistics.fmean(scores):.2f}, "
        f"median {_fmt(statistics.median(scores))}, graded in {wall:.0f} s (limits: {limits.cell_timeout:g} s "
        f"a cell, {limits.total_timeout:g} s a notebook, {limits.check_timeout:g} s a check).",
        f"Checks: the check cells of `{spec.solution.name}`, public and hidden parts, run in a fresh "
        "process on the functions each notebook defines.",
        "",
        "| check | points | passed by |",
        "|---|---|---|",
    ]
    for i, check in enumerate(spec.checks):
        passed = sum(1 for r in results if r.tests[i].status == "passed")
        lines.append(f"| {check.grade_id} | {_fmt(check.points)} | {passed}/{len(results)} |")
    if spec.manual:
        manual = ", ".join(f"{gid} ({_fmt(points)} point{'s' * (points != 1)})" for gid, points in spec.manual)
        lines += ["", f"Graded by a person, not included above: {manual}."]
    lines += ["", "| student | score | notes |", "|---|---|---|"]
    for r in results:
        notes = "; ".join(_shorten(n, 160) for n in r.notes).replace("|", "\\|")
        lines.append(f"| {r.student} | {_fmt(r.score)}/{_fmt(r.max_score)} | {notes} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


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
) -> GradeSummary:
    """Grade every submission of ``lab`` in ``submissions_dir``; write the results to ``out_dir``.

    ``lab``: the solution notebook's path, stem or unique prefix in ``solutions_dir`` (see
    :func:`load_lab`). ``cell_timeout``: seconds per notebook cell; ``total_timeout``: seconds for
    running a whole notebook; ``check_timeout``: seconds per check cell. ``max_cell_output`` and
    ``max_output``: characters of output kept per cell and per notebook. ``jobs``: notebooks graded
    at the same time. ``students``: grade only these (names as in the results). See the module
    docstring for what happens to each submission. Returns a :class:`GradeSummary`; raises
    ``ValueError``/``FileNotFoundError`` only for problems of the lab or the folders, never for a
    submission.
    """
    for name, value in (("cell_timeout", cell_timeout), ("total_timeout", total_timeout),
                        ("check_timeout", check_timeout), ("max_cell_output", max_cell_output),
                        ("max_output", max_output), ("jobs", jobs)):
        _check_positive(name, value)
    start = time.monotonic()
    spec = load_lab(lab, solutions_dir)
    submissions = _find_submissions(Path(submissions_dir), spec.name)
    if students is not None:
        wanted = set(students)
        unknown = sorted(wanted - {s for s, _, _ in submissions})
        if unknown:
            raise ValueError(f"no submission for {', '.join(unknown)} in {submissions_dir}; check the names")
        submissions = [s for s in submissions if s[0] in wanted]
    threads = max(1, (os.cpu_count() or 1) // int(jobs))
    limits = _Limits(float(cell_timeout), float(total_timeout), float(check_timeout),
                     int(max_cell_output), int(max_output), threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = _run_async(_grade_all(spec, submissions, out, limits, int(jobs)))
    wall = time.monotonic() - start
    grades_csv, report_md = out / "grades.csv", out / "report.md"
    _write_csv(grades_csv, spec, results)
    _write_report(report_md, spec, results, limits, wall)
    return GradeSummary(spec.name, spec.solution, out, spec.max_score, results, grades_csv, report_md, wall)

