"""metacourse.course.executed: what a stored lecture keeps of a headless run, and what it drops."""

from __future__ import annotations

import nbformat

from metacourse.course.executed import CANONICAL_METADATA, normalise, problems


def _executed(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("train()", execution_count=7)
    cell.metadata["execution"] = {"iopub.execute_input": "2026-12-07T12:00:00"}
    cell.metadata["tags"] = ["nbval-check-output"]
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="100%|██████| 300/300 [00:02<00:00]\n"),
        nbformat.v4.new_output("stream", name="stdout", text="step 1\rstep 2\rstep 3\ndone\n"),
        nbformat.v4.new_output("display_data", data={"text/plain": "  0%|          | 0/300 [00:00<?, ?it/s]"}),
        nbformat.v4.new_output("display_data", data={"text/plain": "interactive(children=(IntSlider(value=5)…",
                                                     "application/vnd.jupyter.widget-view+json": {"model_id": "x"}}),
        nbformat.v4.new_output("display_data", data={"text/markdown": "| a | b |", "text/plain": "<Markdown>"}),
    ]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), cell]
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3"}, "widgets": {"state": {}}}
    path = tmp_path / "lecture.ipynb"
    nbformat.write(nb, path)
    return path


def test_normalise_keeps_what_a_reader_sees_and_drops_the_rest(tmp_path):
    path = _executed(tmp_path)
    assert "not normalised" in " ".join(problems(path))
    assert normalise(path) is True and normalise(path) is False  # stable
    nb = nbformat.read(path, as_version=4)
    cell = nb.cells[1]
    assert [o.get("name") or sorted(o["data"]) for o in cell.outputs] == ["stdout", ["text/markdown", "text/plain"]]
    assert cell.outputs[0]["text"] == "step 3\ndone\n"  # what a terminal shows after the carriage returns
    assert cell.execution_count == 1 and cell.metadata == {"tags": ["nbval-check-output"]}
    assert "widgets" not in nb.metadata
    assert nb.metadata["kernelspec"] == CANONICAL_METADATA["kernelspec"]
    assert nb.metadata["language_info"]["version"]  # JupyterLab writes it on opening
    assert problems(path) == []


def test_an_unexecuted_or_failed_lecture_is_reported(tmp_path):
    path = _executed(tmp_path)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("never_ran()"))
    nb.cells[1].outputs.append(nbformat.v4.new_output("error", ename="ValueError", evalue="x", traceback=[]))
    nbformat.write(nb, path)
    normalise(path)
    found = " ".join(problems(path))
    assert "were not executed" in found and "stored an error" in found
