"""The course's stored results (``results/*.json`` and their figures), with or without a clone.

The lectures quote full-budget runs stored in the repository's ``results/`` folder. In a clone
(or an editable install) :func:`result_path` finds them there. Without the repository — on Colab,
where the package is installed from GitHub — it fetches the one file asked for from the same
repository and branch as the notebook's "Open in Colab" badge (``[tool.metacourse]`` in
``pyproject.toml``), once, into ``~/.cache/metacourse/results/`` (``$METACOURSE_CACHE``)::

    from metacourse.results import load_result, result_path
    table = load_result("sinusoid.json")                       # the stored run, as a dict
    display(Image(filename=result_path("sinusoid.png")))       # its figure

Fetching happens on Colab, or anywhere with ``METACOURSE_DOWNLOAD=1`` (``download=True``);
``$METACOURSE_RESULTS_URL`` replaces the base URL (``https://raw.githubusercontent.com/OWNER/NAME/
BRANCH/results``). The stored results have no published checksums: a file is kept when it arrived
whole (its announced length) and is at most 20 MB, and it is written atomically.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .repository import location
from .tasks.download import cache_root, download_allowed, fetch

__all__ = ["MAX_BYTES", "load_result", "result_path", "results_folder"]

MAX_BYTES = 20_000_000
"""The largest stored result fetched (the largest in the repository is well under 1 MB)."""
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def results_folder() -> Path | None:
    """The repository's ``results/`` folder, if this is a clone: ``./results``, ``../results`` (a
    notebook in ``lectures/``), or the one beside the installed package; None otherwise."""
    candidates = [Path("results"), Path("..") / "results", Path(__file__).resolve().parents[1] / "results"]
    return next((folder for folder in candidates if folder.is_dir()), None)


def _base_url() -> str:
    where = location()
    return (os.environ.get("METACOURSE_RESULTS_URL")
            or f"https://raw.githubusercontent.com/{where.repository}/{where.branch}/results")


def result_path(name: str, *, download: bool | None = None) -> Path:
    """The local path of the stored result ``name`` (e.g. ``"sinusoid.json"``), fetched if needed.

    ``download`` None: fetch on Colab or with ``METACOURSE_DOWNLOAD=1``. Raises
    ``FileNotFoundError`` naming the fix when the file is neither here nor fetched, and
    :class:`metacourse.tasks.download.DownloadError` when the fetch fails (nothing is kept).
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a file name in results/ (e.g. 'sinusoid.json')")
    folder = results_folder()
    if folder is not None and (folder / name).is_file():
        return folder / name
    base = _base_url()
    cached = cache_root() / "results" / re.sub(r"[^A-Za-z0-9_.-]+", "_", base) / name
    if cached.is_file():
        return cached
    if not download_allowed(download):
        where = f"{folder} has no {name}" if folder is not None else "there is no results/ folder here"
        raise FileNotFoundError(
            f"{where}: run the notebook from a clone of the course (results/ beside lectures/), or set "
            f"METACOURSE_DOWNLOAD=1 (download=True) to fetch {base}/{name}")
    return fetch(f"{base}/{name}", cached, None, max_bytes=MAX_BYTES, quiet=True)


def load_result(name: str, *, download: bool | None = None) -> dict[str, Any]:
    """The stored JSON result ``name`` as a dict (see :func:`result_path`)."""
    path = result_path(name, download=download)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a JSON result ({error}); delete it and try again") from None
