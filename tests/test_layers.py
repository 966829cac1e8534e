"""One-way doors: the library never imports the instructor wing (``metacourse.course``); only the
command line reaches it, and only inside the commands that need it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "metacourse"


def _imports_course(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module or ''}.{alias.name}" for alias in node.names]
            relative_course = node.level >= 1 and (node.module or "").split(".")[0] == "course"
            parent_course = node.level == 1 and not node.module and any(a.name == "course" for a in node.names)
            if relative_course or parent_course or any(n.startswith("metacourse.course") for n in names):
                lines.append(node.lineno)
        elif isinstance(node, ast.Import) and any(a.name.startswith("metacourse.course") for a in node.names):
            lines.append(node.lineno)
    return lines


def test_library_never_imports_the_course_wing():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "course" or relative.name == "cli.py":
            continue
        if lines := _imports_course(path):
            offenders[str(relative)] = lines
    assert not offenders, f"library modules import metacourse.course (move the shared code down): {offenders}"


def test_the_check_sees_an_import_of_the_course_wing(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from .course.colab import location\n")
    assert _imports_course(sample) == [1]
