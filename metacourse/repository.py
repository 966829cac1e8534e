"""Where the course lives on GitHub, read from the repository's ``pyproject.toml``::

    [tool.metacourse]
    repository = "owner/name"   # on GitHub
    branch = "main"

The Colab badges and setup cells (``metacourse.course.colab``) and the stored results fetched
without a clone (``metacourse.results``) both use it. Standard library only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_BRANCH", "DEFAULT_REPOSITORY", "Location", "location", "package_root"]

DEFAULT_REPOSITORY = "metacourse/metacourse"
"""GitHub ``owner/name`` used when no ``pyproject.toml`` with ``[tool.metacourse]`` is found."""
DEFAULT_BRANCH = "main"

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


def package_root() -> Path:
    """The folder that holds the ``metacourse`` package (the repository root in a clone)."""
    return Path(__file__).resolve().parents[1]


def location(root: str | os.PathLike[str] | None = None) -> Location:
    """Read the repository location from ``<root>/pyproject.toml`` (default: the repository this
    package is in). Falls back to the defaults when there is no such file or table; raises
    ``ValueError`` when the table is there but malformed."""
    folder = Path(root) if root is not None else package_root()
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
