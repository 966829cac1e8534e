"""The notebook format, as the course's tools read it: one place for cell sources, nbgrader metadata
and the SOLUTION / HIDDEN TESTS markers.

Used by :mod:`metacourse.course.labs` (building labs from solutions), :mod:`metacourse.course.colab`
(badges and setup cells) and :mod:`metacourse.course.grading` (the grader, in the trusted parent and
inside the sandboxes). Only the standard library is imported: a notebook is JSON, and a student's
file is read here without nbformat's help (any nbformat version, cells as lists or strings).
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

__all__ = [
    "HIDDEN_TESTS",
    "MARKER_RE",
    "SOLUTION",
    "cell_source",
    "code_cells",
    "is_answer",
    "is_check",
    "nbgrader_meta",
    "read_json_nofollow",
    "split_hidden",
]

SOLUTION = "SOLUTION"
HIDDEN_TESTS = "HIDDEN TESTS"
MARKER_RE = re.compile(r"^(?P<indent>[ \t]*)#+[ \t]*(?P<edge>BEGIN|END)[ \t]+(?P<kind>SOLUTION|HIDDEN TESTS)\s*$")
"""A marker line: ``### BEGIN SOLUTION``, ``### END HIDDEN TESTS`` (any number of ``#``)."""


def cell_source(cell: Any) -> str:
    """A cell's source as one string (notebooks store it as a string or a list of lines)."""
    src = cell.get("source", "") if isinstance(cell, dict) else ""
    if isinstance(src, list):
        return "".join(part for part in src if isinstance(part, str))
    return src if isinstance(src, str) else ""


def nbgrader_meta(cell: Any) -> dict:
    """``metadata.nbgrader`` of a cell ({} when absent or malformed)."""
    meta = cell.get("metadata", {}) if isinstance(cell, dict) else {}
    meta = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return meta if isinstance(meta, dict) else {}


def is_answer(cell: Any) -> bool:
    """An answer cell: ``metadata.nbgrader.solution`` is true."""
    return bool(nbgrader_meta(cell).get("solution", False))


def is_check(cell: Any) -> bool:
    """A check cell: graded (``grade`` true) and not an answer cell."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade", False)) and not meta.get("solution", False)


def split_hidden(source: str) -> tuple[str, str]:
    """Split a check cell into (public, hidden) sources.

    The hidden part is the lines between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``.
    When a region is indented (inside a block) it cannot run on its own: the whole cell, markers
    removed, is returned as ``public`` and ``hidden`` is "".
    """
    public: list[str] = []
    hidden: list[str] = []
    inside = indented = False
    for line in source.split("\n"):
        match = MARKER_RE.match(line)
        if match and match["kind"] == HIDDEN_TESTS:
            inside = match["edge"] == "BEGIN"
            indented |= bool(match["indent"])
            continue
        (hidden if inside else public).append(line)
    if indented:
        whole = [line for line in source.split("\n") if not _is_hidden_marker(line)]
        return "\n".join(whole), ""
    return "\n".join(public), "\n".join(hidden).strip("\n")


def _is_hidden_marker(line: str) -> bool:
    match = MARKER_RE.match(line)
    return bool(match and match["kind"] == HIDDEN_TESTS)


def code_cells(nb: Any) -> list[tuple[int, Any]]:
    """(index, cell) of every code cell of a notebook dict, any nbformat version (v3 worksheets too)."""
    if not isinstance(nb, dict):
        return []
    cells = nb.get("cells")
    if cells is None and isinstance(nb.get("worksheets"), list):  # nbformat 3
        cells = [cell for sheet in nb["worksheets"] if isinstance(sheet, dict) for cell in sheet.get("cells", [])]
    if not isinstance(cells, list):
        return []
    found = []
    for index, cell in enumerate(cells):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            if "source" not in cell and "input" in cell:  # nbformat 3 names it input
                cell = {**cell, "source": cell["input"]}
            found.append((index, cell))
    return found


def read_json_nofollow(path: str | os.PathLike[str], *, max_bytes: int, base: Path | None = None) -> Any:
    """Read a JSON file without following a symbolic link at its last component.

    ``base``: the file must lie inside this folder once every link of its parents is resolved
    (a submission's notebook inside the student's own folder). Raises ``ValueError`` naming the
    problem: a link, a file outside ``base``, not a regular file, larger than ``max_bytes``, not JSON.
    """
    path = Path(path)
    if base is not None and not path.parent.resolve().is_relative_to(Path(base).resolve()):
        raise ValueError(f"{path.name} lies outside the submission's folder")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        if os.path.islink(path):
            raise ValueError(f"{path.name} is a symbolic link; submit the notebook file itself") from None
        raise ValueError(f"{path.name} cannot be opened ({error.strerror})") from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"{path.name} is {info.st_size / 1e6:.0f} MB, more than {max_bytes / 1e6:.0f} MB")
        data = file.read(max_bytes + 1)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path.name} is not a notebook (not JSON: {type(error).__name__})") from None


if __name__ == "__main__":  # python -m metacourse.course.notebook normalise NOTEBOOK...
    import sys

    if len(sys.argv) < 3 or sys.argv[1] != "normalise":
        sys.exit("usage: python -m metacourse.course.notebook normalise NOTEBOOK.ipynb [...]")
    from .executed import normalise

    for name in sys.argv[2:]:
        print(f"{name}: {'normalised' if normalise(name) else 'already normalised'}")
