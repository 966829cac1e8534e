"""The Omniglot notebooks on a simulated Colab, top to bottom in FAST mode.

What is simulated: a ``google.colab`` module loaded in the kernel from its start (as on Colab, where
the setup cell tests ``"google.colab" in sys.modules``), an empty home folder, no
``METACOURSE_DATA`` and no ``METACOURSE_CACHE``, the notebook alone in a folder (no ``../results``,
no repository), and the Omniglot zips served from loopback with their real checksums
(``METACOURSE_OMNIGLOT_URL``; the real site is never reached). The setup cell runs as on Colab, except
that it installs the package already here (its GitHub requirement is replaced by ``metacourse``,
and pip may not use an index) instead of fetching it from GitHub. Not simulated: Colab's own
Python and package versions (the test runs in this environment's Python).

The three Omniglot notebooks run one after the other in one simulated Colab (one loopback server,
one home folder, each notebook in its own kernel): the first to run downloads the zips and says
so; the others find the zips and the decoded array in the home folder's cache. (Colab gives every
notebook a fresh machine, so there each one downloads; repeating that here would only add time.)

``METACOURSE_COLAB_SIM_TREE`` names another checkout of the course (say a ``git worktree`` of an
older commit): its notebooks run, and its ``metacourse`` package is the one the kernels import (it
comes first on their ``PYTHONPATH``, standing in for "the package installed from that commit").
It shows what this test catches in a course without Colab support.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from http_loopback import serve

ROOT = Path(__file__).resolve().parents[1]
TREE = Path(os.environ.get("METACOURSE_COLAB_SIM_TREE") or ROOT).resolve()
"""The course whose notebooks (and library) run: this repository unless METACOURSE_COLAB_SIM_TREE says."""
ZIPS = Path(os.environ.get("METACOURSE_DATA") or "/nonexistent") / "omniglot"
NOTEBOOKS = ["solutions/lab02_episodes_protonets.ipynb", "lectures/02_few_shot_classification.ipynb",
             "solutions/lab04_maml_omniglot.ipynb"]

needs_zips = pytest.mark.skipif(not (ZIPS / "images_background.zip").is_file(),
                                reason="the Omniglot zips are not in METACOURSE_DATA/omniglot (CI: ../shared/data)")


def test_the_setup_cell_says_what_it_does_on_colab(monkeypatch, capsys):
    import subprocess
    import types

    from metacourse.course.colab import location, setup_source

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda args, **kwargs: calls.append(args))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(compile(setup_source(), "<colab-setup>", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out.splitlines()
    where = location()
    assert printed[0].startswith("Colab: installing the course's library (metacourse)")
    assert printed[0].endswith(f"from github.com/{where.repository}@{where.branch} ...")
    assert "Omniglot" in printed[-1] and len(calls) == 1


@pytest.fixture(scope="module")
def colab(tmp_path_factory):
    """A Colab-like environment for kernels: the fake module, the empty home, the loopback server."""
    base = tmp_path_factory.mktemp("colab")
    fake = base / "fake"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "colab" / "__init__.py").write_text('"""Stands in for Colab\'s module in tests."""\n')
    (fake / "sitecustomize.py").write_text("import google.colab  # loaded at start, as in Colab's kernels\n")
    home = base / "home"
    home.mkdir()
    saved = dict(os.environ)
    with serve(ZIPS) as (url, requests):
        for name in ("METACOURSE_DATA", "METACOURSE_CACHE", "METACOURSE_DOWNLOAD", "MPLCONFIGDIR"):
            os.environ.pop(name, None)
        os.environ.update(HOME=str(home), METACOURSE_FAST="1", METACOURSE_OMNIGLOT_URL=url, PIP_NO_INDEX="1",
                          PYTHONPATH=os.pathsep.join(filter(None, [str(fake), str(TREE) if TREE != ROOT else None,
                                                                   saved.get("PYTHONPATH")])))
        try:
            yield base, home, requests
        finally:
            os.environ.clear()
            os.environ.update(saved)


def run_on_colab(path: str, base: Path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(TREE / path, as_version=4)
    setup = next(c for c in nb.cells if "colab-setup" in c.metadata.get("tags", []))
    setup.source, n = re.subn(r'"metacourse @ git\+[^"]+"', '"metacourse"', setup.source)
    assert n == 1, "the setup cell no longer installs `metacourse @ git+...`: update this test"
    content = base / "content" / Path(path).stem  # the notebook alone, as in Colab's /content
    content.mkdir(parents=True)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(content)}})
    client.execute()
    return nb


def outputs(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


ZIP_REQUESTS = ["/images_background.zip", "/images_evaluation.zip"]


@pytest.mark.slow
@pytest.mark.notebook
@needs_zips
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[Path(p).stem for p in NOTEBOOKS])
def test_omniglot_notebook_runs_on_colab_with_the_data_downloaded_once(colab, path):
    base, home, requests = colab
    asked_before = len(requests)
    nb = run_on_colab(path, base)
    setup = next(c for c in nb.cells if "colab-setup" in c.metadata.get("tags", []))
    assert "Colab: installing" in outputs(setup), "the setup cell does not say what it is doing"
    if requests[asked_before:]:  # the first of the notebooks to run: it downloads, and says so
        assert "Downloading http://127.0.0.1" in "".join(outputs(c) for c in nb.cells)
    assert requests == ZIP_REQUESTS, "each zip is downloaded once, then read from the home folder's cache"
    cached = home / ".cache" / "metacourse" / "omniglot"
    assert sorted(p.name for p in cached.iterdir()) == ["images_background.zip", "images_evaluation.zip"]
    assert sys.modules.get("google.colab") is None  # the fake stayed inside the kernel
