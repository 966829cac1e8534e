"""Tests of the Colab support (metacourse.course.colab) and of the device helper it relies on.

The Colab branch of the setup cell is simulated: its code runs with a fake ``google.colab``
module and a recording ``subprocess.run``.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
import torch
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import metacourse
from metacourse import repository
from metacourse.course import colab

ROOT = Path(__file__).resolve().parents[1]
HERE = colab.Location("someone/course", "spring-2026")
PATH = "lectures/04_maml.ipynb"
URL = "https://colab.research.google.com/github/someone/course/blob/spring-2026/lectures/04_maml.ipynb"


def _notebook(minor: int = 5) -> NotebookNode:
    nb = new_notebook(cells=[
        new_markdown_cell("# Lecture 4: MAML\n\nInner and outer loops.", id="title"),
        new_markdown_cell("Some words.", id="words"),
        new_code_cell("FAST = True", id="parameters"),
        new_code_cell("print(FAST)", id="body"),
    ])
    nb.nbformat_minor = minor
    if minor < 5:
        for cell in nb.cells:
            del cell["id"]
    return nb


# ---------------------------------------------------------------------------------------------
# The setup cell on Colab and elsewhere


def _run_setup_cell(monkeypatch: pytest.MonkeyPatch, *, on_colab: bool) -> list[list[str]]:
    calls: list[list[str]] = []

    def fake_run(args, **kwargs):
        calls.append(list(args))
        assert kwargs.get("check") is True
        return subprocess.CompletedProcess(args, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    if on_colab:
        monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    cell = colab.apply(_notebook(), PATH, where=HERE).cells[2]
    exec(compile(cell.source, "<colab-setup>", "exec"), {"__name__": "__main__"})
    return calls


def test_setup_cell_installs_the_configured_repository_on_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _run_setup_cell(monkeypatch, on_colab=True)
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet",
                      "metacourse @ git+https://github.com/someone/course@spring-2026"]]


def test_setup_cell_installs_nothing_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _run_setup_cell(monkeypatch, on_colab=False) == []


def test_setup_cell_pins_nothing_else() -> None:
    source = colab.setup_source(HERE)
    assert "==" not in source and "numpy" not in source and "torch" not in source


# ---------------------------------------------------------------------------------------------
# apply and check


def test_apply_inserts_badge_under_title_and_setup_as_first_code_cell() -> None:
    nb = colab.apply(_notebook(), PATH, where=HERE)
    assert nb.cells[0].source == (
        f"# Lecture 4: MAML\n\n[![Open In Colab]({colab.BADGE_IMAGE})]({URL})\n\nInner and outer loops."
    )
    assert [cell.get("id") for cell in nb.cells] == ["title", "words", "colab-setup", "parameters", "body"]
    setup = nb.cells[2]
    assert setup.metadata["tags"] == ["colab-setup"] and setup.source == colab.setup_source(HERE)
    nbformat.validate(nb)


def test_apply_is_idempotent_and_check_is_then_clean() -> None:
    once = colab.apply(_notebook(), PATH, where=HERE)
    text = nbformat.writes(once)
    twice = colab.apply(nbformat.reads(text, as_version=4), PATH, where=HERE)
    assert nbformat.writes(twice) == text
    assert colab.check(twice, PATH, where=HERE) == []


def test_apply_refreshes_a_stale_badge_and_setup_cell_after_a_move() -> None:
    nb = colab.apply(_notebook(), PATH, where=colab.Location("old/place", "main"))
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="x")]
    nb.cells.insert(4, nbformat.v4.new_code_cell("# a duplicate", id="dup"))
    nb.cells[4].metadata["tags"] = ["colab-setup"]
    problems = colab.check(nb, PATH, where=HERE)
    assert any("stale or repeated Colab badge" in p for p in problems)
    assert any("2 `colab-setup` cells" in p for p in problems)
    assert all(p.endswith(colab.FIX_HINT) for p in problems)
    colab.apply(nb, PATH, where=HERE)
    assert colab.check(nb, PATH, where=HERE) == []
    assert nb.cells[0].source.count("colab-badge.svg") == 1 and "old/place" not in nbformat.writes(nb)
    assert nb.cells[2].outputs == []


def test_check_reports_what_is_missing() -> None:
    problems = colab.check(_notebook(), PATH, where=HERE)
    assert problems == [
        f"{PATH} has no Colab badge in its title cell (expected {colab.badge(PATH, HERE)}): {colab.FIX_HINT}",
        f"{PATH} has no `colab-setup` cell: {colab.FIX_HINT}",
    ]
    lab = colab.check(_notebook(), "labs/lab04_x.ipynb", where=HERE)
    assert lab and all(problem.endswith(colab.LABS_FIX_HINT) for problem in lab)  # labs are built


def test_old_notebooks_without_cell_ids_stay_valid() -> None:
    nb = colab.apply(_notebook(minor=4), PATH, where=HERE)
    assert all("id" not in cell for cell in nb.cells)
    nbformat.validate(nb)


def test_notebook_without_title_is_refused_with_the_fix() -> None:
    nb = new_notebook(cells=[new_code_cell("x = 1")])
    with pytest.raises(ValueError, match="no title cell; make the first cell a markdown cell"):
        colab.apply(nb, PATH, where=HERE)


def test_absolute_paths_are_made_relative_to_the_repository() -> None:
    where = colab.Location("someone/course", "main", ROOT)
    assert colab.badge(ROOT / "labs" / "lab04_x.ipynb", where).endswith("/blob/main/labs/lab04_x.ipynb)")
    with pytest.raises(ValueError, match="is not inside the repository"):
        colab.badge(Path("/elsewhere/x.ipynb"), where)


# ---------------------------------------------------------------------------------------------
# The configured location


def test_location_is_read_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "metacourse"\n\n[tool.metacourse]\nrepository = "a-b/c.d"  # ours\nbranch = "dev"\n'
    )
    assert colab.location(tmp_path) == colab.Location("a-b/c.d", "dev", tmp_path)


def test_location_falls_back_without_a_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repository, "package_root", lambda: tmp_path)  # installed from a wheel
    assert colab.location() == colab.Location(colab.DEFAULT_REPOSITORY, colab.DEFAULT_BRANCH)


def test_python310_reader_agrees_with_tomllib(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "pyproject.toml").read_text()
    expected = repository._read_tool_table(text)
    monkeypatch.setitem(sys.modules, "tomllib", None)  # import tomllib now fails, as on 3.10
    assert repository._read_tool_table(text) == expected


def test_malformed_location_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.metacourse]\nrepository = "https://github.com/a/b"\n')
    with pytest.raises(ValueError, match="is not a GitHub owner/name"):
        colab.location(tmp_path)


def test_this_repository_has_a_configured_location() -> None:
    where = colab.location()
    assert where.root == ROOT and "/" in where.repository and where.branch


NOTEBOOKS = sorted(p for folder in ("lectures", "labs", "solutions") for p in (ROOT / folder).glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.relative_to(ROOT).as_posix() for p in NOTEBOOKS])
def test_every_course_notebook_has_its_badge_and_setup_cell(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert colab.check(nb, path.relative_to(ROOT).as_posix()) == []


# ---------------------------------------------------------------------------------------------
# The device helper: CUDA (Colab's GPU), then MPS, then the CPU


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_get_device_prefers_cuda_then_mps_then_cpu(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert metacourse.get_device() == torch.device(expected)
    assert metacourse.get_device("auto") == torch.device(expected)


def test_get_device_without_an_mps_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delattr(torch.backends, "mps")
    assert metacourse.get_device() == torch.device("cpu")
