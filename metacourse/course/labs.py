"""Build the student labs (``labs/``) from the solution notebooks (``solutions/``).

Each lab is authored once, as ``solutions/labNN_<name>.ipynb``; ``labs/labNN_<name>.ipynb`` is
generated from it by :func:`build_labs` (``metacourse labs build``) and verified by
:func:`check_labs` (``metacourse labs check``). The markers are nbgrader's, so an instructor who
grades with nbgrader can use the solution notebooks as they are.

Cell metadata (``nbgrader`` schema 3, plus a ``metacourse`` key of this course):

- **Answer cell** (code or markdown)::

      metadata.nbgrader   = {"solution": true, "grade": false, "locked": false,
                             "grade_id": "adapt", "schema_version": 3}
      metadata.metacourse = {"exercise": "4.1", "hint": "implement one inner SGD step of MAML"}

  Every line region between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (a cell may hold
  several; they cannot nest) is replaced, at the indentation of the BEGIN marker, by the single
  line ``raise NotImplementedError("Exercise 4.1: implement one inner SGD step of MAML")`` in a
  code cell, and by ``*Your answer here.*`` in a markdown cell. ``metacourse.exercise`` is
  required in code answer cells; ``metacourse.hint`` is optional (the message is then
  ``"Exercise 4.1"``). An answer cell must hold at least one SOLUTION region.
- **Check cell** (code)::

      metadata.nbgrader = {"grade": true, "solution": false, "locked": true, "points": 2,
                           "grade_id": "adapt-check", "schema_version": 3}

  Regions between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` are removed. In the
  lab, check cells and other locked (read-only) cells get ``metadata.deletable = false`` and
  ``metadata.editable = false``.

``grade_id`` is required on every nbgrader cell and unique within a notebook; ``points`` is
required on graded cells. Markers must be written exactly as above on a line of their own (any
number of leading ``#``); a line that looks like a misspelt marker is an error, as are nested,
unclosed or unmatched markers, SOLUTION regions outside answer cells and HIDDEN TESTS regions
outside check cells. Errors are ``ValueError`` naming the notebook, the cell (index counted from
0, and id) and the fix.

Every lab is written without outputs and execution counts; cell ids are copied from the solution
and all other metadata is kept, except volatile run data (cell ``execution``/``ExecuteTime``,
notebook ``widgets`` state). Rebuilding gives byte-identical files. Solutions and labs are both
committed without outputs (:func:`strip_outputs`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .notebook import HIDDEN_TESTS, MARKER_RE, SOLUTION, cell_source, is_answer, is_check, nbgrader_meta

__all__ = [
    "BUILD_HINT",
    "build_lab",
    "build_labs",
    "check_labs",
    "find_root",
    "has_outputs",
    "lab_path_for",
    "strip_outputs",
]

BUILD_HINT = "run `metacourse labs build`"
"""The fix suggested when a lab is missing or out of date."""

MARKDOWN_STUB = "*Your answer here.*"
"""What a SOLUTION region of a markdown answer cell becomes in the lab."""


_LOOKALIKE_RE = re.compile(r"^[ \t]*#+[ \t]*(BEGIN|END)[\s_-]*(SOL|HIDDEN|TEST)", re.IGNORECASE)
_VOLATILE_CELL_METADATA = ("execution", "ExecuteTime")
_VOLATILE_NOTEBOOK_METADATA = ("widgets",)
_LEAK_MIN_CHARS = 12  # shorter secret lines (``return x``) are too generic to call a leak
_MAX_LEAKS_SHOWN = 5


class _MarkerError(ValueError):
    """A marker problem inside one cell; :func:`_cell_error` adds where the cell is."""


@dataclass(frozen=True)
class _Region:
    kind: str  # SOLUTION or HIDDEN_TESTS
    begin: int  # index of the BEGIN marker line
    end: int  # index of the END marker line
    indent: str


# ---------------------------------------------------------------------------------------------
# Parsing cells


def _find_regions(lines: list[str]) -> list[_Region]:
    """Return the marked regions of one cell's lines, or raise :class:`_MarkerError`."""
    regions: list[_Region] = []
    opened: tuple[str, int, str] | None = None
    for i, line in enumerate(lines):
        match = MARKER_RE.match(line)
        if match is None:
            if _LOOKALIKE_RE.match(line):
                raise _MarkerError(
                    f"line {i + 1} looks like a misspelt marker: {line.strip()!r}; write exactly "
                    "`### BEGIN SOLUTION`, `### END SOLUTION`, `### BEGIN HIDDEN TESTS` or "
                    "`### END HIDDEN TESTS` on a line of its own"
                )
            continue
        edge, kind, indent = match["edge"], match["kind"], match["indent"]
        if edge == "BEGIN":
            if opened is not None:
                raise _MarkerError(
                    f"line {i + 1}: `### BEGIN {kind}` inside the {opened[0]} region opened at "
                    f"line {opened[1] + 1}; regions cannot nest: close the first one with "
                    f"`### END {opened[0]}` before opening another"
                )
            opened = (kind, i, indent)
        elif opened is None:
            raise _MarkerError(
                f"line {i + 1}: `### END {kind}` without a matching `### BEGIN {kind}`; add the "
                "BEGIN marker above the region or delete this line"
            )
        elif opened[0] != kind:
            raise _MarkerError(
                f"line {i + 1}: `### END {kind}` cannot close the {opened[0]} region opened at "
                f"line {opened[1] + 1}; write `### END {opened[0]}`"
            )
        else:
            regions.append(_Region(kind, opened[1], i, opened[2]))
            opened = None
    if opened is not None:
        raise _MarkerError(
            f"`### BEGIN {opened[0]}` at line {opened[1] + 1} is never closed; add "
            f"`### END {opened[0]}` after the last line of the region"
        )
    return regions


def _is_locked(cell: NotebookNode) -> bool:
    """Check cells and read-only cells are locked; answer cells never are."""
    meta = nbgrader_meta(cell)
    return is_check(cell) or (bool(meta.get("locked", False)) and not is_answer(cell))


def _cell_error(name: str, index: int, cell: NotebookNode, problem: str) -> ValueError:
    cell_id = cell.get("id")
    where = f"cell {index}" + (f" (id {cell_id!r})" if cell_id else "")
    return ValueError(f"{name}, {where}: {problem}")


def _validate_cell(cell: NotebookNode, regions: list[_Region]) -> None:
    """Check that the cell's metadata fits its regions; raise :class:`_MarkerError` if not."""
    kinds = {region.kind for region in regions}
    if SOLUTION in kinds and not is_answer(cell):
        raise _MarkerError(
            "has a SOLUTION region but is not an answer cell; set metadata.nbgrader "
            '{"solution": true, "grade": false, "locked": false, "grade_id": ..., '
            '"schema_version": 3} (see metacourse.course.labs)'
        )
    if HIDDEN_TESTS in kinds and (not is_check(cell) or cell.cell_type != "code"):
        raise _MarkerError(
            "has a HIDDEN TESTS region but is not a code check cell; set metadata.nbgrader "
            '{"grade": true, "solution": false, "locked": true, "points": ..., '
            '"grade_id": ..., "schema_version": 3} (see metacourse.course.labs)'
        )
    if is_answer(cell) and cell.cell_type in ("code", "markdown") and SOLUTION not in kinds:
        raise _MarkerError(
            "is an answer cell (metadata.nbgrader.solution = true) without a "
            "`### BEGIN SOLUTION` / `### END SOLUTION` region; wrap the answer in these markers "
            "or set solution to false"
        )


def _stub_line(cell: NotebookNode, indent: str) -> str:
    if cell.cell_type == "markdown":
        return indent + MARKDOWN_STUB
    info = cell.get("metadata", {}).get("metacourse", {})
    exercise = info.get("exercise") if isinstance(info, dict) else None
    if not exercise:
        raise _MarkerError(
            'needs metadata.metacourse = {"exercise": "4.1", "hint": "what to implement"} '
            "to write the NotImplementedError stub of its SOLUTION region"
        )
    hint = info.get("hint")
    message = f"Exercise {exercise}: {hint}" if hint else f"Exercise {exercise}"
    return f"{indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})"


def _strip_regions(cell: NotebookNode, lines: list[str], regions: list[_Region]) -> list[str]:
    out: list[str] = []
    pos = 0
    for region in regions:
        out.extend(lines[pos : region.begin])
        if region.kind == SOLUTION:
            out.append(_stub_line(cell, region.indent))
        pos = region.end + 1
    out.extend(lines[pos:])
    return out


def _check_grade_ids(nb: NotebookNode, name: str) -> None:
    seen: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta is None:
            continue
        grade_id = meta.get("grade_id") if isinstance(meta, dict) else None
        if not grade_id:
            raise _cell_error(name, index, cell, "metadata.nbgrader has no grade_id; add one")
        if grade_id in seen:
            raise _cell_error(
                name, index, cell,
                f"grade_id {grade_id!r} is also used by cell {seen[grade_id]}; make it unique",
            )
        seen[grade_id] = index
        if meta.get("grade") and not isinstance(meta.get("points"), int | float):
            raise _cell_error(
                name, index, cell, "is graded (nbgrader.grade = true) but has no numeric points"
            )


# ---------------------------------------------------------------------------------------------
# Outputs


def _clear_cell_outputs(cell: NotebookNode) -> None:
    if cell.cell_type == "code":
        cell.outputs = []
        cell.execution_count = None
    for key in _VOLATILE_CELL_METADATA:
        cell.get("metadata", {}).pop(key, None)


def _clear_outputs(nb: NotebookNode) -> None:
    for cell in nb.cells:
        _clear_cell_outputs(cell)
    for key in _VOLATILE_NOTEBOOK_METADATA:
        nb.metadata.pop(key, None)


def has_outputs(nb: NotebookNode) -> list[int]:
    """Return the indices of the code cells that hold outputs or an execution count."""
    return [
        index
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]


def _serialize(nb: NotebookNode) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _write(nb: NotebookNode, path: Path) -> bool:
    """Write ``nb`` like ``nbformat.write`` (indent 1, trailing newline) if it changed."""
    data = _serialize(nb).encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return True


def strip_outputs(path: str | os.PathLike[str]) -> bool:
    """Remove outputs, execution counts and volatile run metadata from a notebook file.

    Returns True when the file changed (it is rewritten only then).
    """
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    _clear_outputs(nb)
    return _write(nb, path)


# ---------------------------------------------------------------------------------------------
# Building


def _ensure_ids(nb: NotebookNode) -> None:
    """Give id-less cells a deterministic id (nbformat would otherwise invent random ones)."""
    if (nb.nbformat, nb.get("nbformat_minor", 0)) < (4, 5):
        nb.nbformat_minor = 5
    used = {cell.get("id") for cell in nb.cells}
    for cell in nb.cells:
        if cell.get("id"):
            continue
        digest = hashlib.sha1(cell_source(cell).encode("utf-8")).hexdigest()[:8]
        candidate, n = f"cell-{digest}", 1
        while candidate in used:
            candidate, n = f"cell-{digest}-{n}", n + 1
        cell.id = candidate
        used.add(candidate)


def _read(solution_nb: NotebookNode | str | os.PathLike[str]) -> tuple[NotebookNode, str]:
    if isinstance(solution_nb, str | os.PathLike):
        return nbformat.read(Path(solution_nb), as_version=4), os.fspath(solution_nb)
    return copy.deepcopy(solution_nb), "<notebook>"


def _has_colab_setup(nb: NotebookNode) -> bool:
    from .colab import SETUP_TAG

    return any(SETUP_TAG in cell.get("metadata", {}).get("tags", []) for cell in nb.cells)


def build_lab(
    solution_nb: NotebookNode | str | os.PathLike[str], *, name: str | None = None,
    colab_path: str | os.PathLike[str] | None = None,
) -> NotebookNode:
    """Return the student lab generated from a solution notebook (the input is not modified).

    ``solution_nb`` is a notebook or the path of one; ``name`` labels error messages (default:
    the path). With ``colab_path`` (where the lab will live), a solution that has a Colab setup
    cell gets its lab's "Open in Colab" badge and setup cell pointed at that path
    (:func:`metacourse.course.colab.apply`). Raises ``ValueError`` for malformed markers or metadata
    (see the module docstring).
    """
    nb, default_name = _read(solution_nb)
    name = name or default_name
    _check_grade_ids(nb, name)
    for index, cell in enumerate(nb.cells):
        cell.source = cell_source(cell)
        lines = cell.source.split("\n")
        try:
            regions = _find_regions(lines)
            _validate_cell(cell, regions)
            if regions:
                cell.source = "\n".join(_strip_regions(cell, lines, regions))
        except _MarkerError as err:
            raise _cell_error(name, index, cell, str(err)) from None
        if _is_locked(cell):
            cell.metadata["deletable"] = False
            cell.metadata["editable"] = False
    if colab_path is not None and _has_colab_setup(nb):
        from . import colab

        colab.apply(nb, colab_path)
    _clear_outputs(nb)
    _ensure_ids(nb)
    return nb


# ---------------------------------------------------------------------------------------------
# Folders


def find_root(start: str | os.PathLike[str] | None = None) -> Path:
    """Return the repository root: the nearest folder at or above ``start`` (default: the
    current directory) that holds ``pyproject.toml`` and the ``metacourse`` package."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "metacourse").is_dir():
            return folder
    raise FileNotFoundError(
        f"no metacourse repository at or above {here}; run this from the repository root "
        "(the folder with pyproject.toml, solutions/ and labs/)"
    )


def _folders(
    solutions_dir: str | os.PathLike[str], labs_dir: str | os.PathLike[str]
) -> tuple[Path, Path, Path]:
    """Return (solutions, labs, base). Relative folders are taken from the current directory
    when it holds ``solutions_dir``, else from the repository root (so the commands work from a
    subfolder). Messages name files relative to ``base``, the folder holding the solutions."""
    if Path(solutions_dir).is_absolute() or (Path.cwd() / solutions_dir).is_dir():
        start = Path.cwd()
    else:
        start = find_root()
    solutions, labs = start / solutions_dir, start / labs_dir
    return solutions, labs, solutions.parent


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _solutions(solutions: Path) -> list[Path]:
    return sorted(solutions.glob("*.ipynb")) if solutions.is_dir() else []


def lab_path_for(solution: str | os.PathLike[str], labs_dir: str | os.PathLike[str]) -> Path:
    """Return where the lab generated from ``solution`` lives (same file name)."""
    return Path(labs_dir) / Path(solution).name


def build_labs(
    solutions_dir: str | os.PathLike[str] = "solutions",
    labs_dir: str | os.PathLike[str] = "labs",
) -> list[Path]:
    """Build ``labs_dir/X.ipynb`` from every ``solutions_dir/X.ipynb`` and return the lab paths.

    Relative folders are taken from the current directory, or from the repository root when the
    current directory has no ``solutions_dir``. Unchanged labs are not rewritten. Labs without
    a solution are left alone (:func:`check_labs` reports them). Raises ``ValueError`` for a
    malformed solution before writing anything.
    """
    solutions, labs, base = _folders(solutions_dir, labs_dir)
    built = [
        (build_lab(path, name=_rel(path, base), colab_path=lab_path_for(path, labs)), lab_path_for(path, labs))
        for path in _solutions(solutions)
    ]
    for lab, path in built:
        _write(lab, path)
    return [path for _, path in built]


def _secret_lines(nb: NotebookNode) -> dict[str, int]:
    """Map each secret line of a solution (stripped) to its cell index: lines inside a region
    that pass :func:`_is_secret` and occur nowhere outside the regions."""
    secret: dict[str, int] = {}
    public: set[str] = set()
    for index, cell in enumerate(nb.cells):
        lines = cell_source(cell).split("\n")
        inside: set[int] = set()  # marker lines included: they are neither secret nor public
        for region in _find_regions(lines):
            inside.update(range(region.begin, region.end + 1))
        for i, line in enumerate(lines):
            text = line.strip()
            if i not in inside:
                public.add(text)
            elif _is_secret(text, cell.cell_type) and not MARKER_RE.match(line):
                secret.setdefault(text, index)
    return {line: i for line, i in secret.items() if line not in public}


def _is_secret(text: str, cell_type: str) -> bool:
    if len(text) <= _LEAK_MIN_CHARS:
        return False
    return not (cell_type == "code" and text.startswith("#"))


def _leaks(solution: NotebookNode, lab: NotebookNode, sol_name: str, lab_name: str) -> list[str]:
    secret = _secret_lines(solution)
    lab_lines = {line.strip() for cell in lab.cells for line in cell_source(cell).split("\n")}
    leaked = [(index, line) for line, index in secret.items() if line in lab_lines]
    problems = [
        f"{lab_name} leaks solution text of {sol_name} (cell {index}): {line!r}"
        for index, line in leaked[:_MAX_LEAKS_SHOWN]
    ]
    if len(leaked) > _MAX_LEAKS_SHOWN:
        problems.append(f"{lab_name} leaks {len(leaked) - _MAX_LEAKS_SHOWN} more solution lines")
    return problems


def _output_problem(nb: NotebookNode, name: str) -> list[str]:
    cells = has_outputs(nb)
    if not cells:
        return []
    return [
        f"{name} is committed with outputs (cells {', '.join(map(str, cells))}): strip them "
        "with `metacourse labs strip`"
    ]


def _read_or_problem(path: Path, name: str, problems: list[str]) -> NotebookNode | None:
    try:
        return nbformat.read(path, as_version=4)
    except Exception as err:  # unreadable JSON, wrong schema: report and go on
        problems.append(f"{name} cannot be read as a notebook ({type(err).__name__}: {err})")
        return None


def _check_one(solution_path: Path, lab_path: Path, base: Path) -> list[str]:
    sol_name, lab_name = _rel(solution_path, base), _rel(lab_path, base)
    problems: list[str] = []
    solution = _read_or_problem(solution_path, sol_name, problems)
    if solution is None:
        return problems
    problems += _output_problem(solution, sol_name)
    try:
        expected = _serialize(build_lab(solution, name=sol_name, colab_path=lab_path)).encode("utf-8")
    except ValueError as err:
        return [*problems, str(err)]
    if not lab_path.exists():
        return [*problems, f"{lab_name} is missing: {BUILD_HINT}"]
    lab = _read_or_problem(lab_path, lab_name, problems)
    if lab is None:
        return problems
    problems += _output_problem(lab, lab_name)
    problems += _leaks(solution, lab, sol_name, lab_name)
    if lab_path.read_bytes() != expected:
        problems.append(f"{lab_name} is out of date: {BUILD_HINT}")
    return problems


def check_labs(
    solutions_dir: str | os.PathLike[str] = "solutions",
    labs_dir: str | os.PathLike[str] = "labs",
) -> list[str]:
    """Return the problems of the committed labs and solutions, one sentence each with its fix.

    Reports a lab that is missing or differs from a fresh build, a lab without a solution, a
    solution line (inside a SOLUTION or HIDDEN TESTS region, longer than 12 characters, not a
    comment, and not also present outside the regions) found in a lab, notebooks committed with
    outputs, and malformed solutions. An empty list means all is well. Folders are resolved as
    in :func:`build_labs`.
    """
    solutions, labs, base = _folders(solutions_dir, labs_dir)
    problems: list[str] = []
    solution_paths = _solutions(solutions)
    for path in solution_paths:
        problems += _check_one(path, lab_path_for(path, labs), base)
    names = {path.name for path in solution_paths}
    for path in sorted(labs.glob("*.ipynb")) if labs.is_dir() else []:
        if path.name not in names:
            problems.append(
                f"{_rel(path, base)} has no solution {_rel(solutions / path.name, base)}: "
                "delete the lab or add its solution"
            )
    return problems
