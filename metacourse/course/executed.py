"""Lectures are stored executed: what a reader sees on GitHub, nbviewer or the course site.

:func:`normalise` makes an executed notebook's file stable and clean, so that re-running it
changes only what the code shows, and opening it in JupyterLab does not mark it modified:

- the notebook metadata is the course's canonical kernel, as JupyterLab writes it (no widget state,
  no run times);
- cells keep their tags but lose nbclient's execution timings;
- progress bars and warnings (the standard-error stream) are dropped from stored outputs;
- widget views (sliders, progress bars) are not stored: their state is not saved, and their text
  fallback ("0%|...", "interactive(children=...)") shows a reader nothing;
- execution counts run 1, 2, 3, ... over the cells that ran.

``python -m metacourse.course.notebook normalise lectures/04_maml.ipynb [...]``
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from .labs import _VOLATILE_CELL_METADATA, _write

__all__ = ["CANONICAL_METADATA", "normalise", "normalised", "problems"]

CANONICAL_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {
        "codemirror_mode": {"name": "ipython", "version": 3},
        "file_extension": ".py",
        "mimetype": "text/x-python",
        "name": "python",
        "nbconvert_exporter": "python",
        "pygments_lexer": "ipython3",
    },
}
"""The notebook metadata every course notebook carries: what JupyterLab writes into a notebook when
its kernel connects (the kernelspec of ipykernel, the ``language_info`` of its info reply), so that
opening a lecture does not mark it modified. ``language_info.version`` is added by :func:`normalised`
(the Python the lecture was executed with): a reader on another Python version sees the notebook
marked modified once the kernel reports its own."""
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_TEXT = re.compile(r"(interactive|HBox|VBox|IntProgress|FloatProgress|IntSlider|FloatSlider|FloatLogSlider|"
                         r"Button|Output)\(|\s*\d+%\|")
"""The text fallback of a widget or of a progress bar, stored when a notebook runs headless."""


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else value


def _clean_outputs(outputs: list) -> list:
    kept = []
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            continue
        if output.get("output_type") == "stream":
            # a carriage return rewrites the line: keep what a terminal would finally show
            output["text"] = "\n".join(line.rsplit("\r", 1)[-1] for line in output["text"].split("\n"))
        data = output.get("data")
        if data is not None and (WIDGET_VIEW in data or WIDGET_TEXT.match(_text(data.get("text/plain", "")))):
            continue  # a live widget (a slider, a progress bar): its text fallback shows a reader nothing
        output.get("metadata", {}).pop("execution", None)
        kept.append(output)
    return kept


def normalised(nb: NotebookNode) -> NotebookNode:
    """``nb`` with canonical metadata, clean outputs and renumbered execution counts (in place)."""
    version = nb.metadata.get("language_info", {}).get("version") or platform.python_version()
    nb.metadata = nbformat.from_dict(CANONICAL_METADATA)
    nb.metadata.language_info.version = version  # the executing kernel's, kept when stored
    count = 0
    for cell in nb.cells:
        for key in _VOLATILE_CELL_METADATA:
            cell.get("metadata", {}).pop(key, None)
        if cell.cell_type != "code":
            continue
        cell.outputs = _clean_outputs(cell.get("outputs", []))
        if cell.get("execution_count") is not None:
            count += 1
            cell.execution_count = count
    return nb


def normalise(path: str | os.PathLike[str]) -> bool:
    """Normalise the executed notebook at ``path``; True when the file changed."""
    path = Path(path)
    return _write(normalised(nbformat.read(path, as_version=4)), path)


def problems(path: str | os.PathLike[str]) -> list[str]:
    """Why the stored notebook at ``path`` is not an executed, normalised lecture (empty: it is)."""
    nb = nbformat.read(path, as_version=4)
    found = []
    code = [cell for cell in nb.cells if cell.cell_type == "code" and cell.source.strip()]
    unrun = [index for index, cell in enumerate(nb.cells)
             if cell in code and cell.get("execution_count") is None]
    if unrun:
        found.append(f"code cells {unrun[:8]} were not executed: execute the notebook and commit it with outputs")
    errors = [index for index, cell in enumerate(nb.cells) if cell.cell_type == "code"
              and any(output.get("output_type") == "error" for output in cell.get("outputs", []))]
    if errors:
        found.append(f"cells {errors} stored an error")
    if nbformat.writes(normalised(nbformat.read(path, as_version=4))) != nbformat.writes(nb):
        found.append("not normalised: run `python -m metacourse.course.notebook normalise` on it")
    return found
