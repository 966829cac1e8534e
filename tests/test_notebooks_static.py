"""Static checks of every notebook in lectures/, solutions/ and labs/ (nothing is executed).

The conventions of docs/notebooks.md that can be read from the file:

- cell 0 is a markdown title that states the FULL budget;
- the first code cell is tagged ``colab-setup`` and installs the course only inside
  ``if "google.colab" in sys.modules:``, from the repository, pinning nothing;
- the next code cell is tagged ``parameters`` and reads ``metacourse.fast_mode()``;
- labs and solutions are committed without outputs; lectures (and their appendices) executed,
  normalised and without stored errors, so a reader on GitHub sees every figure;
- lectures link the glossary, docs/notation.md;
- no notebook defines (``def``) a function named like a public function of a library module it
  imports (a lecture must not define ``adapt`` while importing ``metacourse.algorithms.maml``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import re
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from nbformat import NotebookNode

from metacourse.course.labs import has_outputs

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("lectures", "solutions", "labs")
NOTEBOOKS = sorted([*(path for folder in FOLDERS for path in (ROOT / folder).glob("*.ipynb")),
                    *(ROOT / "lectures" / "appendix").glob("*.ipynb")])
LECTURES = [path for path in NOTEBOOKS if path.parent.name == "lectures"]
EXECUTED = [path for path in NOTEBOOKS if "lectures" in path.parts]
IDS = [f"{path.parent.name}/{path.name}" for path in NOTEBOOKS]

_REPOSITORY = re.search(r'(?m)^repository\s*=\s*"([^"]+)"',
                        (ROOT / "pyproject.toml").read_text()).group(1)  # [tool.metacourse]
COURSE_URL = f"git+https://github.com/{_REPOSITORY}"
NOTATION_LINK = re.compile(r"\]\((\.\./)?docs/notation\.md(#[^)]*)?\)")
VERSION_PIN = re.compile(r"(==|>=|<=|~=|!=|<|>)\s*\d")


def _read(path: Path) -> NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(nb: NotebookNode) -> list[tuple[int, NotebookNode]]:
    return [(index, cell) for index, cell in enumerate(nb.cells) if cell.cell_type == "code"]


def _parse(source: str, where: str) -> ast.Module:
    """Parse a code cell as Python, with IPython magics (``%matplotlib``, ``!pip``) translated."""
    try:
        return ast.parse(TransformerManager().transform_cell(source))
    except SyntaxError as error:
        raise AssertionError(f"{where} is not valid Python: {error}") from None


def _is_colab_test(node: ast.expr) -> bool:
    """True for the expression ``"google.colab" in sys.modules``."""
    return (
        isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Constant)
        and node.left.value == "google.colab"
        and len(node.ops) == 1
        and isinstance(node.ops[0], ast.In)
        and ast.unparse(node.comparators[0]) == "sys.modules"
    )


def _installs(tree: ast.AST) -> bool:
    """True when the code runs ``pip install`` (as a list of arguments, a string or a magic)."""
    strings = [node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    return "install" in strings or any(re.search(r"\bpip\b.*\binstall\b", s) for s in strings)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_title_cell_states_the_full_budget(path: Path) -> None:
    first = _read(path).cells[0]
    assert first.cell_type == "markdown" and first.source.lstrip().startswith("# "), (
        f"{path.name}: cell 0 must be a markdown title starting with '# '"
    )
    assert re.search(r"\bFULL\b", first.source), (
        f"{path.name}: the title cell must state the FULL budget and its measured wall time, "
        'e.g. "FULL budget: 10,000 meta-steps (measured wall time on CPU: 6 min)"'
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_first_code_cell_is_the_colab_setup(path: Path) -> None:
    code = _code_cells(_read(path))
    assert code, f"{path.name} has no code cell"
    index, cell = code[0]
    where = f"{path.name}, cell {index}"
    assert "colab-setup" in cell.metadata.get("tags", []), (
        f"{where}: the first code cell must be tagged 'colab-setup'"
    )
    tree = _parse(cell.source, where)
    guards = [node for node in tree.body if isinstance(node, ast.If) and _is_colab_test(node.test)]
    assert len(guards) == 1, f'{where}: install inside one `if "google.colab" in sys.modules:`'
    outside = [node for node in tree.body if node is not guards[0]]
    assert not any(_installs(node) for node in outside), (
        f"{where}: installs outside the Colab guard; locally the course is already installed"
    )
    assert all(isinstance(node, ast.Import | ast.ImportFrom | ast.Expr) for node in outside), (
        f"{where}: outside the Colab guard the cell may only import (e.g. `import sys`)"
    )
    body = ast.Module(body=guards[0].body, type_ignores=[])
    strings = [node.value for node in ast.walk(body)
               if isinstance(node, ast.Constant) and isinstance(node.value, str)]
    assert _installs(body) and any(COURSE_URL in s for s in strings), (
        f"{where}: the Colab guard must pip-install the course from {COURSE_URL}"
    )
    pinned = [s for s in strings if VERSION_PIN.search(s)]
    assert not pinned, f"{where}: pins versions {pinned}; Colab's own packages must be left alone"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_second_code_cell_holds_the_parameters(path: Path) -> None:
    code = _code_cells(_read(path))
    assert len(code) >= 2, f"{path.name} needs a 'parameters' cell after the Colab setup"
    index, cell = code[1]
    where = f"{path.name}, cell {index}"
    assert "parameters" in cell.metadata.get("tags", []), (
        f"{where}: the code cell after the Colab setup must be tagged 'parameters'"
    )
    calls = [ast.unparse(node.func) for node in ast.walk(_parse(cell.source, where))
             if isinstance(node, ast.Call)]
    assert "metacourse.fast_mode" in calls, (
        f"{where}: the parameters cell must set FAST = metacourse.fast_mode()"
    )


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p not in EXECUTED],
                         ids=[f"{p.parent.name}/{p.name}" for p in NOTEBOOKS if p not in EXECUTED])
def test_committed_without_outputs(path: Path) -> None:
    cells = has_outputs(_read(path))
    assert not cells, (
        f"{path.name} holds outputs or execution counts in cells {cells}: strip them "
        "(`metacourse labs strip` for solutions/ and labs/, "
        "`metacourse.course.labs.strip_outputs(path)` for a lecture)"
    )


@pytest.mark.parametrize("path", EXECUTED, ids=[f"{p.parent.name}/{p.name}" for p in EXECUTED])
def test_lectures_are_stored_executed_and_normalised(path: Path) -> None:
    from metacourse.course.executed import problems

    found = problems(path)
    assert not found, f"{path.name}: " + "; ".join(found) + (
        " (cd lectures && METACOURSE_FAST=1 jupyter nbconvert --to notebook --execute --inplace NAME.ipynb, "
        "then python -m metacourse.course.notebook normalise NAME.ipynb)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_cell_has_a_unique_id(path: Path) -> None:
    cells = json.loads(path.read_text())["cells"]  # the file as saved (nbformat.read fills gaps)
    ids = [cell.get("id") for cell in cells]
    missing = [index for index, cell_id in enumerate(ids) if not cell_id]
    assert not missing, f"{path.name}: cells {missing} have no id; give each new cell a unique one"
    assert len(set(ids)) == len(ids), f"{path.name}: repeated cell ids"


@pytest.mark.parametrize("path", LECTURES, ids=[p.name for p in LECTURES])
def test_lectures_link_the_notation_glossary(path: Path) -> None:
    assert (ROOT / "docs" / "notation.md").is_file(), "docs/notation.md is missing"
    links = [cell for cell in _read(path).cells
             if cell.cell_type == "markdown" and NOTATION_LINK.search(cell.source)]
    assert links, f"{path.name}: link the glossary in a markdown cell: [...](../docs/notation.md)"


# ---------------------------------------------------------------------------------------------
# Shadowing library functions


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _imported_library_modules(tree: ast.Module) -> set[str]:
    """The ``metacourse`` modules a cell imports from (``import a.b``, ``from a import b``...)."""
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "metacourse":
                    modules.add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "metacourse":
                continue
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                modules.add(child if _is_module(child) else node.module)
    return modules


def _public_functions(module_name: str) -> set[str]:
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    names = exported if exported is not None else [n for n in vars(module) if not n.startswith("_")]
    public = set()
    for name in names:
        obj = getattr(module, name, None)
        if not inspect.isfunction(obj):
            continue
        if exported is not None or obj.__module__ == module.__name__:
            public.add(name)
    return public


def _defined_functions(tree: ast.Module) -> list[str]:
    """Functions a cell defines, methods of classes excepted (``forward`` of an nn.Module)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                continue
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append(child.name)
            visit(child)

    visit(tree)
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_no_function_shadows_the_library(path: Path) -> None:
    trees = [_parse(cell.source, f"{path.name}, cell {index}")
             for index, cell in _code_cells(_read(path))]
    modules = set().union(*(_imported_library_modules(tree) for tree in trees))
    public = {module: _public_functions(module) for module in sorted(modules)}
    clashes = [
        f"`def {name}` shadows {module}.{name}"
        for tree in trees
        for name in _defined_functions(tree)
        for module, names in public.items()
        if name in names
    ]
    assert not clashes, (
        f"{path.name}: {'; '.join(clashes)}. Call the library's function, or give yours another "
        "name (an exercise's function is named like `my_adapt`)"
    )


# ---------------------------------------------------------------------------------------------
# The checkers themselves


def test_shadowing_detector_on_examples() -> None:
    tree = _parse(
        "%matplotlib inline\n"
        "from metacourse.algorithms import maml\n"
        "import metacourse.functional as F\n"
        "class Net:\n    def forward(self, x):\n        return x\n"
        "def adapt(model):\n    pass\n"
        "def my_adapt(model):\n    pass\n",
        "example",
    )
    assert _imported_library_modules(tree) == {"metacourse.algorithms.maml",
                                               "metacourse.functional"}
    assert _defined_functions(tree) == ["adapt", "my_adapt"]
    assert "adapt" in _public_functions("metacourse.algorithms.maml")
    assert "forward" in _public_functions("metacourse.functional")
    assert "fast_mode" in _public_functions("metacourse")


def test_colab_guard_detector_on_examples() -> None:
    good = _parse('import sys\nif "google.colab" in sys.modules:\n    !pip install -q x\n', "good")
    assert _is_colab_test(good.body[1].test) and _installs(good.body[1])
    assert not _is_colab_test(_parse('"colab" in sys.modules', "bad").body[0].value)
    assert VERSION_PIN.search("torch==2.1") and not VERSION_PIN.search(COURSE_URL)
