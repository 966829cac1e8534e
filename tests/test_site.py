"""``metacourse site``: the book's pages, its configuration and how links are rewritten (no build here;
tests/browser/test_site_browser.py builds the site and reads it in Chromium)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell, new_notebook

from metacourse import cli
from metacourse.course import site
from metacourse.repository import Location

WHERE = Location("owner/course", "main")
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.example/nb)"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small course repository: two lectures, a lab, a solution, notation, a stored figure."""
    (tmp_path / "pyproject.toml").write_text('[tool.metacourse]\nrepository = "owner/course"\nbranch = "main"\n')
    (tmp_path / "metacourse").mkdir()
    (tmp_path / "metacourse" / "maml.py").write_text("")
    for folder in ("lectures/appendix", "labs", "solutions", "docs", "results"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "results" / "sinusoid.png").write_bytes(b"\x89PNG")
    (tmp_path / "README.md").write_text("# Course\n\n[Lecture 4](lectures/04_maml.ipynb), [the results](results/)\n")
    (tmp_path / "docs" / "notation.md").write_text("# Notation\n\nθ: the initialisation. [Home](../README.md)\n")
    notebooks = {
        "lectures/01_intro.ipynb": f"# Lecture 1\n\n{BADGE}\n\nNext: [MAML](04_maml.ipynb#the-inner-loop).",
        "lectures/04_maml.ipynb": "# Lecture 4\n\n![curves](../results/sinusoid.png) [symbols](../docs/notation.md)"
                                  " [code](../metacourse/maml.py) [the lab](../labs/lab04.ipynb)",
        "lectures/appendix/04_more.ipynb": "# Appendix\n\n[back](../04_maml.ipynb)",
        "labs/lab04.ipynb": "# Lab 4\n\n[solved](../solutions/lab04.ipynb)",
        "solutions/lab04.ipynb": "# Lab 4, solved",
    }
    for path, text in notebooks.items():
        nbformat.write(new_notebook(cells=[new_markdown_cell(text)]), tmp_path / path)
    return tmp_path


def rewriter(repo: Path) -> site.LinkRewriter:
    pages = {"README.md", "docs/notation.md", "lectures/01_intro.ipynb", "lectures/04_maml.ipynb", "labs/lab04.ipynb"}
    return site.LinkRewriter(repo, pages, WHERE)


def test_links_to_pages_stay_and_the_readme_is_the_home_page(repo):
    links = rewriter(repo)
    assert links.target("../docs/notation.md", "lectures/04_maml.ipynb") == "../docs/notation.md"
    assert links.target("04_maml.ipynb#the-inner-loop", "lectures/01_intro.ipynb") == "04_maml.ipynb#the-inner-loop"
    assert links.target("../README.md", "docs/notation.md") == "../index.md"
    assert links.target("docs/notation.md", "README.md") == "docs/notation.md"
    assert not links.problems and not links.copies


def test_images_and_results_are_copied_and_the_rest_goes_to_github(repo):
    links = rewriter(repo)
    assert links.target("../results/sinusoid.png", "lectures/04_maml.ipynb") == "../results/sinusoid.png"
    assert links.copies == {"results/sinusoid.png"}
    assert (links.target("../solutions/lab04.ipynb", "labs/lab04.ipynb")
            == "https://github.com/owner/course/blob/main/solutions/lab04.ipynb")
    assert (links.target("../metacourse/maml.py#L1", "lectures/04_maml.ipynb")
            == "https://github.com/owner/course/blob/main/metacourse/maml.py#L1")
    assert links.target("results/", "README.md") == "https://github.com/owner/course/tree/main/results"
    assert not links.problems


def test_links_that_lead_nowhere_are_named_with_their_page(repo):
    links = rewriter(repo)
    assert links.target("appendix/missing.ipynb", "lectures/04_maml.ipynb") == "appendix/missing.ipynb"
    assert links.target("../../elsewhere.md", "lectures/04_maml.ipynb") == "../../elsewhere.md"
    assert links.problems == [
        "lectures/04_maml.ipynb: the link 'appendix/missing.ipynb' leads to lectures/appendix/missing.ipynb, "
        "which does not exist",
        "lectures/04_maml.ipynb: the link '../../elsewhere.md' leaves the repository",
    ]


def test_markdown_rewrites_links_images_and_the_badge_but_not_code(repo):
    text = (f"{BADGE}\n[solved](../solutions/lab04.ipynb) and ![c](../results/sinusoid.png)\n"
            "```python\n# [not a link](../solutions/lab04.ipynb)\n```\n"
            '<img src="../results/sinusoid.png">\n[web](https://example.org) [top](#top)\n'
            "[ref]: ../metacourse/maml.py\n")
    out = rewriter(repo).markdown(text, "lectures/04_maml.ipynb")
    assert "[![Open In Colab](../_assets/colab-badge.svg)](https://colab.example/nb)" in out
    assert "[solved](https://github.com/owner/course/blob/main/solutions/lab04.ipynb)" in out
    assert "# [not a link](../solutions/lab04.ipynb)" in out
    assert '<img src="../results/sinusoid.png">' in out and "![c](../results/sinusoid.png)" in out
    assert "[web](https://example.org) [top](#top)" in out
    assert "[ref]: https://github.com/owner/course/blob/main/metacourse/maml.py" in out


def test_prepare_book_writes_the_config_the_toc_and_the_pages(repo, tmp_path):
    yaml = pytest.importorskip("yaml")
    book = site.prepare_book(repo, tmp_path / "out")
    assert book.pages == ["index.md", "lectures/01_intro.ipynb", "lectures/04_maml.ipynb",
                          "lectures/appendix/04_more.ipynb", "labs/lab04.ipynb", "docs/notation.md"]
    assert book.problems == [] and book.copied == ["results/sinusoid.png"]
    config = yaml.safe_load((book.source / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["repository"] == {"url": "https://github.com/owner/course", "branch": "main", "path_to_book": ""}
    toc = yaml.safe_load((book.source / "_toc.yml").read_text())
    assert toc["root"] == "index"
    assert [(part["caption"], [c["file"] for c in part["chapters"]]) for part in toc["parts"]] == [
        ("Lectures", ["lectures/01_intro", "lectures/04_maml"]), ("Appendix", ["lectures/appendix/04_more"]),
        ("Labs (exercises)", ["labs/lab04"]), ("Reference", ["docs/notation"])]
    lab = json.loads((book.source / "labs" / "lab04.ipynb").read_text())
    assert "https://github.com/owner/course/blob/main/solutions/lab04.ipynb" in "".join(lab["cells"][0]["source"])
    assert (book.source / "results" / "sinusoid.png").is_file() and (book.source / site.BADGE_COPY).is_file()
    assert not (book.source / "solutions").exists()
    (repo / "docs" / "notation.md").unlink()  # a page removed from the repository leaves the book
    assert not (site.prepare_book(repo, tmp_path / "out").source / "docs").exists()


def test_the_site_needs_jupyter_book_1(monkeypatch, capsys):
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.0.1")
    with pytest.raises(ImportError, match=r"Jupyter Book 2\.0\.1 is installed; .*pip install -e \"\.\[site\]\""):
        site.build_site()
    assert cli.main(["site", "--out", "unused"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("metacourse: error: Jupyter Book 2.0.1 is installed") and "jupyter-book>=1.0.4,<2" in error


def test_site_command_takes_only_out():
    with pytest.raises(SystemExit) as stop:
        cli.main(["site", "--execute"])
    assert stop.value.code == 2


@pytest.mark.parametrize("installed", [True, False])
def test_mathjax_is_served_by_the_site_when_installed(repo, tmp_path, monkeypatch, installed):
    yaml = pytest.importorskip("yaml")
    mathjax = tmp_path / "mathjax-package"
    mathjax.mkdir()
    (mathjax / "MathJax.js").write_text("// MathJax")
    monkeypatch.setattr(site, "local_mathjax", lambda: mathjax if installed else None)
    book = site.prepare_book(repo, tmp_path / "out")
    sphinx = yaml.safe_load((book.source / "_config.yml").read_text())["sphinx"]["config"]
    assert (book.source / site.MATHJAX_COPY / "MathJax.js").is_file() == installed
    assert sphinx.get("mathjax_path", "").startswith("mathjax/MathJax.js?config=") == installed


def test_a_stored_widget_becomes_a_note_and_other_outputs_stay():
    from nbformat.v4 import new_output

    widget = new_output("execute_result", data={"text/plain": "interactive(children=(IntSlider(value=0),))"})
    view = new_output("display_data", data={"text/plain": "HBox()", site.WIDGET_MIME: {"model_id": "1"}})
    plot = new_output("display_data", data={"image/png": "iVBOR", "text/plain": "<Figure size 640x480>"})
    text = new_output("execute_result", data={"text/plain": "interactive use of MAML"})
    for output in (widget, view):
        assert site._widget_note(output)["data"] == {"text/markdown": site.WIDGET_NOTE}
    assert site._widget_note(plot) is plot and site._widget_note(text) is text


def test_a_failed_build_is_one_error_with_the_end_of_its_log(monkeypatch, capsys):
    def fail(**_):
        raise RuntimeError("Jupyter Book failed (exit code 2); the end of build.log:\nExtension error")

    monkeypatch.setattr(site, "build_site", fail)
    assert site.main("unused") == 1
    assert capsys.readouterr().err.startswith("metacourse: error: Jupyter Book failed (exit code 2)")
