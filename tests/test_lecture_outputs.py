"""The stored outputs of the lectures stay in step with the code that produces them.

Every lecture and appendix is committed executed. The cells that show stored results (tables,
Markdown and printed notes from :mod:`metacourse.results` and the experiments' table functions) are
tagged ``nbval-check-output``: the suite runs every lecture under nbval in ``--nbval-lax`` mode
(pyproject's ``addopts``), which compares the text outputs (``text/plain``, ``text/markdown``,
``text/html``, streams; not images) of exactly those cells with what the code prints now. A table
function or a result file that changes without the lecture being re-executed fails there.

Here: every lecture has such cells and stores their outputs, and the comparison does fail on drift.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TAG = "nbval-check-output"
LECTURES = sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))
APPENDICES = sorted((ROOT / "lectures" / "appendix").glob("*.ipynb"))
NOTEBOOKS = [*LECTURES, *APPENDICES]
FIGURE_REPRS = ("<Figure size", "<IPython.core.display.Image object>")
REPRODUCE = ("Re-execute it (cd lectures && METACOURSE_FAST=1 jupyter nbconvert --to notebook --execute --inplace "
             "NOTEBOOK), then python -m metacourse.course.notebook normalise NOTEBOOK")


def _tagged(path: Path) -> list[tuple[int, nbformat.NotebookNode]]:
    nb = nbformat.read(path, as_version=4)
    return [(index, cell) for index, cell in enumerate(nb.cells)
            if cell.cell_type == "code" and TAG in cell.get("metadata", {}).get("tags", [])]


def _compared_text(cell: nbformat.NotebookNode) -> list[str]:
    """The outputs of ``cell`` that nbval compares as text (a figure's repr says nothing)."""
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            texts.append(output["text"])
        for mime in ("text/markdown", "text/html", "text/plain"):
            text = output.get("data", {}).get(mime)
            if text and not str(text).startswith(FIGURE_REPRS):
                texts.append(str(text))
    return texts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_lecture_checks_the_outputs_of_its_stored_results(path: Path):
    tagged = _tagged(path)
    assert tagged, (f"{path.name}: no cell is tagged {TAG}; tag (cell metadata tags) the cells that show stored "
                    "results, so nbval compares their outputs with what the code prints now")
    for index, cell in tagged:
        assert _compared_text(cell), (f"{path.name}, cell {index}: tagged {TAG} but stores no text output for "
                                      f"nbval to compare (images are not compared). {REPRODUCE}, or untag it")
        assert not any(output.get("output_type") == "error" for output in cell.outputs), \
            f"{path.name}, cell {index}: the stored output is an error. {REPRODUCE}"
        assert "NBVAL_IGNORE_OUTPUT" not in cell.source, \
            f"{path.name}, cell {index}: tagged {TAG} and marked # NBVAL_IGNORE_OUTPUT; keep one"


def _notebook(path: Path, printed: list[str]) -> None:
    """Cells that each print the same stored number, stored as having printed ``printed`` (one per cell)."""
    load = ('from metacourse import results\n'
            'value = results.load("sinusoid").row("MAML", "mse_5shot_1step").ours.mean\n')
    cells = [nbformat.v4.new_code_cell((load if index == 0 else "") + "print(value)", metadata={"tags": [TAG]},
                                       execution_count=index + 1,
                                       outputs=[nbformat.v4.new_output("stream", name="stdout", text=text)])
             for index, text in enumerate(printed)]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


@pytest.mark.slow
def test_nbval_fails_when_a_stored_output_drifts_from_the_stored_result(tmp_path: Path):
    """Cell 0 stores what the code prints (it passes); cell 1 stores another number (it fails). One kernel."""
    from metacourse import results

    value = results.load("sinusoid").row("MAML", "mse_5shot_1step").ours.mean
    _notebook(tmp_path / "lecture.ipynb", [f"{value}\n", f"{value + 0.01}\n"])
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # none of the repository's options: exactly these
    env = {**os.environ, "METACOURSE_FAST": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "--nbval-lax", "--nbval-current-env",
                          "-p", "no:cacheprovider", "-n", "0", "lecture.ipynb"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    report = run.stdout + run.stderr
    assert "PASSED lecture.ipynb::Cell 0" in report, report
    assert "FAILED lecture.ipynb::Cell 1" in report, report
    assert f"{value + 0.01}" in report and f"{value}" in report, report  # nbval shows both outputs
    assert run.returncode == 1, report
