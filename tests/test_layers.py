"""One-way doors: the library never imports the instructor wing (``metacourse.course``); only the
command line reaches it, and only inside the commands that need it."""

from __future__ import annotations

import ast
import subprocess
import sys
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


# --- The library's rows: lower rows never import higher rows (docs: design, "Library layout") ----------------

LIBRARY_ROWS = {  # top-level name under metacourse → row; a higher row may import a lower one, never the reverse
    "functional": 0, "utils": 0, "paths": 0, "tasks": 0, "models": 0, "compiled": 0,
    "algorithms": 1, "rl": 1,
    "train": 3, "evaluate": 3, "viz": 3, "distributed": 3, "checkpoints": 3,
    "experiments": 4, "reproduce": 4, "results": 4, "cli": 4, "course": 4, "checks": 4,
}


def _imported_modules(path: Path) -> set[str]:
    """Every ``metacourse.*`` module that ``path`` imports, at the top or inside a function."""
    package = ["metacourse", *path.relative_to(PACKAGE).with_suffix("").parts][:-1]  # the module's package
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("metacourse.")}


def _row_of(module: str) -> tuple[str, int | None]:
    top = module.split(".")[1]
    return top, LIBRARY_ROWS.get(top)


def _upward_imports() -> dict[str, list[str]]:
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        top, row = _row_of("metacourse." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        if row is None or row >= 4:
            continue
        upward = sorted(m for m in _imported_modules(path)
                        if (_row_of(m)[1] or 0) > row and _row_of(m)[0] != top)
        if upward:
            offenders[str(path.relative_to(PACKAGE))] = upward
    return offenders


def test_lower_rows_never_import_higher_rows():
    """e.g. algorithms/ never imports evaluate (which imports algorithms), checkpoints never imports
    experiments: the library (rows 0-3) knows nothing of the experiments or the course."""
    offenders = _upward_imports()
    assert not offenders, f"modules import a higher row of the library (move the shared code down): {offenders}"


def test_the_row_check_resolves_relative_imports(tmp_path, monkeypatch):
    folder = tmp_path / "metacourse" / "algorithms"
    folder.mkdir(parents=True)
    (folder / "sample.py").write_text("from ..evaluate import adaptation_curve\n\ndef f():\n"
                                      "    from ..experiments import omniglot\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "metacourse")
    assert _imported_modules(folder / "sample.py") >= {"metacourse.evaluate", "metacourse.experiments.omniglot"}
    assert _upward_imports() == {"algorithms/sample.py": ["metacourse.evaluate", "metacourse.evaluate.adaptation_curve",
                                                          "metacourse.experiments", "metacourse.experiments.omniglot"]}


def test_every_library_folder_has_a_row():
    tops = {p.stem for p in PACKAGE.iterdir() if (p.suffix == ".py" or p.is_dir()) and not p.name.startswith("_")}
    missing = sorted(tops - set(LIBRARY_ROWS) - {"py", "repository"})
    assert not missing, f"give {missing} a row in LIBRARY_ROWS (see docs: design, 'Library layout')"


LAZY_IMPORT_PROBE = """
import importlib, sys
names = sys.argv[1:]
for name in names:
    importlib.import_module(name)
heavy = sorted(m for m in sys.modules if m.startswith(("torch._dynamo", "torch._inductor")))
print(len(sys.modules), len(heavy), heavy[:5])
"""


def test_importing_an_algorithm_loads_no_compiler():
    """``torch.compile`` is made on first use (``metacourse.compiled``): importing any algorithm or RL module
    loads no TorchDynamo / TorchInductor (about 1,400 modules and seconds of start-up)."""
    modules = [f"metacourse.{folder}.{p.stem}" for folder in ("algorithms", "rl")
               for p in sorted((PACKAGE / folder).glob("*.py")) if p.stem != "__init__"]
    modules += ["metacourse.evaluate", "metacourse.compiled", "metacourse.checkpoints"]
    done = subprocess.run([sys.executable, "-c", LAZY_IMPORT_PROBE, *modules], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    count, heavy, examples = done.stdout.split(maxsplit=2)
    assert heavy == "0", f"importing {modules} loaded {heavy} compiler modules, e.g. {examples}"
