"""Colab support: every notebook's "Open in Colab" badge and its ``colab-setup`` cell.

Both are generated, never written by hand, from one configured repository location, read from
the repository's ``pyproject.toml``::

    [tool.metacourse]
    repository = "owner/name"   # on GitHub
    branch = "main"

When the package is installed without its repository (no ``pyproject.toml`` beside the package),
:data:`DEFAULT_REPOSITORY` and :data:`DEFAULT_BRANCH` are used.

:func:`apply` puts into a notebook

- the badge, on its own line right under the title (the first markdown cell, which must start
  with a ``# Title`` heading), linking to ``https://colab.research.google.com/github/<repository>/
  blob/<branch>/<path of the notebook in the repository>``;
- the setup cell, as the first code cell, tagged ``colab-setup``: on Colab (``"google.colab" in
  sys.modules``) it installs this package from the same repository and branch with pip; elsewhere
  it does nothing. It pins nothing else (pinned numpy or torch versions broke courses on Colab).

:func:`check` lists what :func:`apply` would change. The device helper :func:`metacourse.get_device`
then picks Colab's GPU (CUDA), else Apple's MPS, else the CPU.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .notebook import cell_source

__all__ = [
    "DEFAULT_BRANCH",
    "DEFAULT_REPOSITORY",
    "FIX_HINT",
    "LABS_FIX_HINT",
    "SETUP_TAG",
    "Location",
    "apply",
    "badge",
    "check",
    "location",
    "setup_source",
]

DEFAULT_REPOSITORY = "metacourse/metacourse"
"""GitHub ``owner/name`` used when no ``pyproject.toml`` with ``[tool.metacourse]`` is found."""
DEFAULT_BRANCH = "main"
SETUP_TAG = "colab-setup"
"""The tag of the setup cell."""
FIX_HINT = "run `metacourse colab apply`"
"""The fix :func:`check` suggests for lectures and solutions."""
LABS_FIX_HINT = "run `metacourse labs build` (labs are generated from solutions/)"
"""The fix :func:`check` suggests for ``labs/`` notebooks."""

BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
_BADGE_RE = re.compile(
    r"\[!\[[^\]]*\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\([^)]*\)"
)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Location:
    """Where the course lives on GitHub: ``repository`` (``owner/name``) and ``branch``."""

    repository: str
    branch: str
    root: Path | None = None
    """The local repository root the location was read from (None: the built-in default)."""

    def notebook_url(self, path: str) -> str:
        """Colab's URL of the notebook at ``path`` (POSIX, relative to the repository root)."""
        return f"https://colab.research.google.com/github/{self.repository}/blob/{self.branch}/{path}"

    @property
    def requirement(self) -> str:
        """What the setup cell gives pip: this package from GitHub at ``branch``."""
        return f"metacourse @ git+https://github.com/{self.repository}@{self.branch}"


def _read_tool_table(text: str) -> dict[str, Any]:
    """Return ``[tool.metacourse]`` of a pyproject.toml (tomllib; a small reader on Python 3.10)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = None
    if tomllib is not None:
        return tomllib.loads(text).get("tool", {}).get("metacourse", {})
    table: dict[str, Any] = {}
    inside = False
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if stripped.startswith("["):
            inside = stripped == "[tool.metacourse]"
        elif inside and (match := re.match(r'^([A-Za-z_-]+)\s*=\s*"([^"]*)"$', stripped)):
            table[match[1]] = match[2]
    return table


def _package_root() -> Path:
    return Path(__file__).resolve().parents[2]


def location(root: str | os.PathLike[str] | None = None) -> Location:
    """Read the repository location from ``<root>/pyproject.toml`` (default: the repository this
    package is in). Falls back to the defaults when there is no such file or table; raises
    ``ValueError`` when the table is there but malformed."""
    folder = Path(root) if root is not None else _package_root()
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return Location(DEFAULT_REPOSITORY, DEFAULT_BRANCH)
    table = _read_tool_table(pyproject.read_text(encoding="utf-8"))
    if not table:
        return Location(DEFAULT_REPOSITORY, DEFAULT_BRANCH)
    repository, branch = table.get("repository", DEFAULT_REPOSITORY), table.get("branch", DEFAULT_BRANCH)
    if not isinstance(repository, str) or not _NAME_RE.match(repository):
        raise ValueError(
            f"{pyproject}: [tool.metacourse] repository = {repository!r} is not a GitHub "
            'owner/name; write e.g. repository = "metacourse/metacourse"'
        )
    if not isinstance(branch, str) or not branch or any(c.isspace() for c in branch):
        raise ValueError(f'{pyproject}: [tool.metacourse] branch = {branch!r}; write e.g. branch = "main"')
    return Location(repository, branch, folder)


def _repo_path(path: str | os.PathLike[str], where: Location) -> str:
    """The notebook's POSIX path relative to the repository root."""
    candidate = Path(path)
    if candidate.is_absolute():
        root = where.root or _package_root()
        try:
            candidate = candidate.resolve().relative_to(root.resolve())
        except ValueError:
            raise ValueError(
                f"{path} is not inside the repository {root}; pass the notebook's path relative to "
                "the repository root, e.g. lectures/04_maml.ipynb"
            ) from None
    posix = candidate.as_posix()
    if posix.startswith("../") or not posix.endswith(".ipynb"):
        raise ValueError(f"{path!s}: expected a notebook path inside the repository, e.g. labs/lab04_x.ipynb")
    return posix.removeprefix("./")


def badge(path: str | os.PathLike[str], where: Location | None = None) -> str:
    """The badge's markdown for the notebook at ``path`` (relative to the repository root)."""
    where = where or location()
    return f"[![Open In Colab]({BADGE_IMAGE})]({where.notebook_url(_repo_path(path, where))})"


def setup_source(where: Location | None = None) -> str:
    """The source of the ``colab-setup`` cell."""
    where = where or location()
    return (
        "# Colab setup: on Google Colab, install this course's library; elsewhere, do nothing.\n"
        "# Generated by `metacourse colab apply` from [tool.metacourse] in pyproject.toml: do not edit.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        "    import subprocess\n"
        "\n"
        '    print("Colab: installing the course\'s library (metacourse), and what it needs that Colab "\n'
        f'          "lacks, from github.com/{where.repository}@{where.branch} ...")\n'
        "    subprocess.run(\n"
        '        [sys.executable, "-m", "pip", "install", "--quiet",\n'
        f'         "{where.requirement}"],\n'
        "        check=True,\n"
        "    )\n"
        '    print("Colab: metacourse is installed. A notebook that needs Omniglot downloads it on first use.")'
    )


def _is_setup(cell: Any) -> bool:
    return cell.cell_type == "code" and SETUP_TAG in cell.get("metadata", {}).get("tags", [])


def _title_index(nb: Any) -> int | None:
    """The index of the title cell: the first markdown cell, if it starts with ``# `` and comes
    before any code cell other than the setup cell."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            return index if cell_source(cell).lstrip().startswith("# ") else None
        if cell.cell_type == "code" and not _is_setup(cell):
            return None
    return None


def _with_badge(source: str, markdown: str) -> str:
    """The title cell's source with exactly one badge, on its own line under the heading."""
    without = _BADGE_RE.sub("", source)
    lines = without.strip("\n").split("\n")
    heading, rest = lines[0], "\n".join(lines[1:]).strip("\n")
    rest = re.sub(r"\n{3,}", "\n\n", rest)
    return f"{heading}\n\n{markdown}" + (f"\n\n{rest}" if rest else "")


def _setup_cell(nb: Any, where: Location) -> Any:
    from nbformat.v4 import new_code_cell

    cell = new_code_cell(setup_source(where))
    cell.metadata["tags"] = [SETUP_TAG]
    if (nb.nbformat, nb.get("nbformat_minor", 0)) < (4, 5):
        cell.pop("id", None)  # cell ids arrived with nbformat 4.5
        return cell
    ids, candidate, n = {c.get("id") for c in nb.cells}, SETUP_TAG, 1
    while candidate in ids:
        candidate, n = f"{SETUP_TAG}-{n}", n + 1
    cell.id = candidate
    return cell


def apply(nb: Any, path: str | os.PathLike[str], *, where: Location | None = None) -> Any:
    """Insert or refresh the badge (in the title cell) and the ``colab-setup`` cell (first code
    cell) of ``nb``, the notebook at ``path`` (relative to the repository root, or absolute inside
    it). Changes ``nb`` in place and returns it; applying twice changes nothing more. Raises
    ``ValueError`` when the notebook has no title cell."""
    where = where or location()
    markdown = badge(path, where)
    if _title_index(nb) is None:
        raise ValueError(
            f"{path}: no title cell; make the first cell a markdown cell starting with `# Title` "
            "(the badge goes under it)"
        )
    old = [cell for cell in nb.cells if _is_setup(cell)]
    kept = old[0] if old else _setup_cell(nb, where)
    kept.source, kept.outputs, kept.execution_count = setup_source(where), [], None
    nb.cells = [cell for cell in nb.cells if not _is_setup(cell)]
    title = _title_index(nb)
    nb.cells[title].source = _with_badge(cell_source(nb.cells[title]), markdown)
    first_code = next((i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"), len(nb.cells))
    nb.cells.insert(max(first_code, title + 1), kept)
    return nb


def check(nb: Any, path: str | os.PathLike[str], *, where: Location | None = None) -> list[str]:
    """Return what is missing or stale in ``nb``'s badge and setup cell, one sentence each with
    the fix; an empty list means :func:`apply` would change nothing."""
    where = where or location()
    name = Path(path).as_posix()
    fix = LABS_FIX_HINT if _repo_path(path, where).startswith("labs/") else FIX_HINT
    title = _title_index(nb)
    if title is None:
        return [f"{name} has no title cell: make the first cell a markdown `# Title` cell, then {fix}"]
    problems = []
    found = _BADGE_RE.findall(cell_source(nb.cells[title]))
    expected = badge(path, where)
    if found != [expected]:
        state = "has no Colab badge" if not found else "has a stale or repeated Colab badge"
        problems.append(f"{name} {state} in its title cell (expected {expected}): {fix}")
    setups = [i for i, cell in enumerate(nb.cells) if _is_setup(cell)]
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    if not setups:
        problems.append(f"{name} has no `{SETUP_TAG}` cell: {fix}")
    elif len(setups) > 1:
        problems.append(f"{name} has {len(setups)} `{SETUP_TAG}` cells (cells {setups}): {fix}")
    elif setups[0] != code[0]:
        problems.append(f"{name}: the `{SETUP_TAG}` cell is not the first code cell: {fix}")
    elif cell_source(nb.cells[setups[0]]) != setup_source(where):
        problems.append(f"{name}: the `{SETUP_TAG}` cell differs from the generated one: {fix}")
    return problems
