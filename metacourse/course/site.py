"""The course website: a Jupyter Book of the lectures, the labs and the reference pages.

``metacourse site [--out DIR]`` copies what the book needs into ``DIR/source`` (default
``build/site``), writes the book's ``_config.yml`` and ``_toc.yml`` there, and runs Jupyter Book
1.0.4 (Sphinx, sphinx-book-theme, MyST-NB), which writes the site into ``DIR/_build/html``.

- **Pages**: the README as the home page, ``lectures/*.ipynb`` and ``lectures/appendix/*.ipynb``,
  the labs (``labs/*.ipynb``, the exercise versions) and ``docs/*.md``
  (:data:`REFERENCE_PAGES`). Notebooks are never executed: the outputs stored in them are
  what the site shows (``execute_notebooks: off``).
- **Links**: the copy keeps the repository's layout, so a lecture's ``../docs/notation.md`` or
  ``../labs/lab04_maml_sinusoid.ipynb`` still points at a page of the book. An image or a stored
  result a page links to (``../results/sinusoid.png``, ``figures/05_rl2_trials.svg``) is copied
  beside the pages; a link to what the book does not hold (``solutions/``, a folder, a ``.py``
  file) is rewritten to the file on GitHub (``[tool.metacourse]`` in
  ``pyproject.toml``). A link to nothing is listed in :attr:`Book.problems`, with its page.
- **Widgets**: a stored ``interact`` shows on a static page as its Python repr; the copy shows a
  note instead (:data:`WIDGET_NOTE`). Plots a widget cell drew when it ran stay.
- **Offline**: the "Open in Colab" badge image is replaced by a local copy, and MathJax is served
  by the site when ``jupyter-server-mathjax`` is installed (the ``site`` extra; otherwise the
  reader's browser fetches it from its CDN), so the site needs nothing from the web. Jupyter
  Book 1.0.4 builds without a network; Jupyter Book 2 (mystmd) downloads its theme at build time
  and fails offline.

Why Jupyter Book 1 and how to view the site: ``docs/site.md``.
"""

from __future__ import annotations

import importlib.util
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import nbformat

from ..repository import Location, location
from .colab import BADGE_IMAGE
from .labs import find_root

__all__ = ["REFERENCE_PAGES", "Book", "LinkRewriter", "book_pages", "build_site", "main", "prepare_book"]

REFERENCE_PAGES = ("docs/notation.md", "docs/results.md", "docs/benchmarks.md", "docs/instructors.md",
                   "docs/site.md")
"""The reference part of the book, in this order (a missing one is skipped)."""
HOME_PAGE = "README.md"
"""The home page of the book (written as ``index.md``)."""
INSTALL_HINT = 'pip install -e ".[site]" (Jupyter Book 1.0.4; Jupyter Book 2 does not build offline)'
IMAGE_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".gif", ".webp")
"""Linked files with these suffixes (and every file under ``results/``) are copied into the book."""
BADGE_COPY = "_assets/colab-badge.svg"
"""Where the local copy of the "Open in Colab" badge goes, in the book's source."""
BADGE_SVG = """\
<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" aria-label="Open in Colab">
<rect width="117" height="20" rx="3" fill="#555"/><rect x="56" width="61" height="20" rx="3" fill="#f9ab00"/>
<rect x="56" width="6" height="20" fill="#f9ab00"/>
<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">
<text x="28" y="14" text-anchor="middle">Open in</text><text x="86.5" y="14" text-anchor="middle">Colab</text></g></svg>
"""

MATHJAX_COPY = "_mathjax/mathjax"
"""Where MathJax's files go in the book's source (Sphinx serves them as ``_static/mathjax/``)."""

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "*An interactive widget: run this notebook in JupyterLab or Colab to use it.*"
"""What the site shows in place of a stored widget (a static page cannot run its slider)."""
_WIDGET_REPR = re.compile(r"^(interactive|HBox|VBox|Box|Output|Tab|Accordion|Button|Dropdown|\w*Slider)\(")

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_TARGET = r"(?P<target><[^>\n]*>|[^)\s]+)"
_MD_IMAGE = re.compile(r"(?P<head>!\[[^\[\]\n]*\]\(\s*)" + _TARGET)
_MD_LINK = re.compile(r"(?P<head>(?<!!)\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*)" + _TARGET)  # may hold an image
_MD_DEFINITION = re.compile(r"(?m)^(?P<head> {0,3}\[[^\]\n]+\]:[ \t]*)(?P<target><[^>\n]*>|\S+)")
_HTML_ATTR = re.compile(r"(?P<head>\b(?:src|href)\s*=\s*\")(?P<target>[^\"]*)(?=\")")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Book:
    """A book's source folder, its pages and what was found while preparing it."""

    source: Path
    """The folder with ``_config.yml``, ``_toc.yml`` and the copied pages."""
    html: Path
    """Where Jupyter Book writes the site (``index.html`` is its home page)."""
    pages: list[str]
    """The pages in the order of the table of contents (POSIX paths in ``source``)."""
    copied: list[str] = field(default_factory=list)
    """Other files of the repository copied because a page links to them (images, results)."""
    problems: list[str] = field(default_factory=list)
    """Links that lead nowhere, each with its page: fix them in the page's source."""
    warnings: list[str] = field(default_factory=list)
    """Sphinx's warnings of the build (empty before :func:`build_site`)."""
    seconds: float = 0.0
    """Wall time of the Jupyter Book build."""


def book_pages(root: Path) -> dict[str, list[str]]:
    """The pages of the book by part, as repository paths: the lectures, their appendix, the labs
    and the reference pages (empty parts are left out)."""
    def notebooks(folder: str) -> list[str]:
        return [path.relative_to(root).as_posix() for path in sorted((root / folder).glob("*.ipynb"))]

    parts = {
        "Lectures": notebooks("lectures"),
        "Appendix": notebooks("lectures/appendix"),
        "Labs (exercises)": notebooks("labs"),
        "Reference": [page for page in REFERENCE_PAGES if (root / page).is_file()],
    }
    return {caption: pages for caption, pages in parts.items() if pages}


def _page_name(path: str) -> str:
    """Where a repository page goes in the book: the README becomes the home page ``index.md``."""
    return "index.md" if path == HOME_PAGE else path


class LinkRewriter:
    """Rewrites the relative links and images of one page so they resolve in the book.

    ``pages`` are the repository paths of the book's pages. A target that is a page stays; an image
    or a stored result goes into :attr:`copies` (copied beside the pages, the link stays); anything
    else of the repository becomes its GitHub address; a target that does not exist is added to
    :attr:`problems`.
    """

    def __init__(self, root: Path, pages: set[str], where: Location):
        self.root = root
        self.pages = pages
        self.where = where
        self.copies: set[str] = set()
        self.problems: list[str] = []

    def target(self, target: str, page: str) -> str:
        """The target, as the page in the book must write it."""
        bracketed = target.startswith("<") and target.endswith(">")
        text = target[1:-1] if bracketed else target
        if not text or text.startswith("#") or text.startswith("/") or _SCHEME.match(text):
            if text == BADGE_IMAGE:
                return posixpath.relpath(BADGE_COPY, posixpath.dirname(_page_name(page)) or ".")
            return target
        path, hash_, fragment = text.partition("#")
        path = unquote(path.split("?", 1)[0])
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(page), path))
        here = posixpath.dirname(_page_name(page)) or "."
        if resolved.startswith("../") or resolved == "..":
            self.problems.append(f"{page}: the link {text!r} leaves the repository")
            return target
        if resolved in self.pages:
            return posixpath.relpath(_page_name(resolved), here) + hash_ + fragment
        on_disk = self.root / resolved
        if on_disk.is_file() and (on_disk.suffix.lower() in IMAGE_SUFFIXES or resolved.startswith("results/")):
            self.copies.add(resolved)
            return target
        if on_disk.exists():
            kind = "tree" if on_disk.is_dir() else "blob"
            url = f"https://github.com/{self.where.repository}/{kind}/{self.where.branch}/{resolved}"
            return url + hash_ + fragment
        self.problems.append(f"{page}: the link {text!r} leads to {resolved}, which does not exist")
        return target

    def markdown(self, text: str, page: str) -> str:
        """Rewrite the links of Markdown ``text`` of ``page``; fenced code is left as it is."""
        out, fence = [], None
        for line in text.splitlines(keepends=True):
            opening = _FENCE.match(line)
            if fence is None and opening:
                fence = opening[1][0] * 3
            elif fence is not None and line.lstrip().startswith(fence):
                fence = None
            elif fence is None:
                for pattern in (_MD_IMAGE, _MD_LINK, _MD_DEFINITION, _HTML_ATTR):
                    line = pattern.sub(lambda m: m["head"] + self.target(m["target"], page), line)
            out.append(line)
        return "".join(out)


def _widget_note(output: dict) -> dict:
    """A stored widget (``interact``) shows on a static page as its Python repr,
    ``interactive(children=(IntSlider(...``: it becomes a note that says where it works."""
    data = output.get("data", {})
    if (output.get("output_type") in ("display_data", "execute_result")
            and set(data) <= {"text/plain", WIDGET_MIME} and (WIDGET_MIME in data or _WIDGET_REPR.match(
                "".join(data.get("text/plain", ""))))):
        return nbformat.v4.new_output("display_data", data={"text/markdown": WIDGET_NOTE})
    return output


def _copy_page(rewriter: LinkRewriter, page: str, source: Path) -> None:
    destination = source / _page_name(page)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if page.endswith(".ipynb"):
        nb = nbformat.read(rewriter.root / page, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = rewriter.markdown(cell.source, page)
            elif cell.cell_type == "code":
                cell.outputs = [_widget_note(output) for output in cell.outputs]
        nbformat.write(nb, destination)
    else:
        destination.write_text(rewriter.markdown((rewriter.root / page).read_text(encoding="utf-8"), page),
                               encoding="utf-8")


def local_mathjax() -> Path | None:
    """MathJax 2.7's files, from the ``jupyter-server-mathjax`` package (the ``site`` extra), when it
    is installed: the site then typesets its equations without fetching MathJax from the web."""
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    folder = Path(spec.origin).parent / "static" if spec is not None and spec.origin else None
    return folder if folder is not None and (folder / "MathJax.js").is_file() else None


def _config(where: Location, mathjax: bool) -> dict:
    sphinx = {"myst_heading_anchors": 4, "myst_linkify_fuzzy_links": False, "nb_merge_streams": True}
    if mathjax:  # MathJax 2.7, served by the site itself from _static/mathjax/, with the fonts it ships
        sphinx |= {"html_static_path": [MATHJAX_COPY.split("/")[0]], "myst_update_mathjax": False,
                   "mathjax_path": "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full",
                   "mathjax2_config": {
                       "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                                   "processEscapes": True},
                       "HTML-CSS": {"availableFonts": [], "webFont": "STIX-Web", "imageFont": None,
                                    "preferredFont": None}}}
    return {
        "title": "metacourse: learning to learn",
        "author": "The metacourse authors",
        "copyright": time.strftime("%Y"),
        "only_build_toc_files": True,
        "exclude_patterns": ["_build", "_mathjax", "**.ipynb_checkpoints"],
        "execute": {"execute_notebooks": "off"},  # the site shows the outputs stored in the notebooks
        "parse": {"myst_enable_extensions": ["amsmath", "colon_fence", "dollarmath", "html_image", "linkify",
                                             "substitution", "tasklist"]},
        "html": {"use_repository_button": True, "home_page_in_navbar": True},
        "launch_buttons": {"colab_url": "https://colab.research.google.com", "notebook_interface": "jupyterlab"},
        "repository": {"url": f"https://github.com/{where.repository}", "branch": where.branch, "path_to_book": ""},
        # Bare addresses become links, but "design.md" or "maml.py" never does (.md and .py are top-level domains).
        "sphinx": {"config": sphinx},
    }


def _toc(parts: dict[str, list[str]]) -> dict:
    return {
        "format": "jb-book",
        "root": "index",
        "parts": [{"caption": caption, "chapters": [{"file": posixpath.splitext(page)[0]} for page in pages]}
                  for caption, pages in parts.items()],
    }


def prepare_book(root: str | os.PathLike[str] | None = None, out: str | os.PathLike[str] | None = None) -> Book:
    """Copy the pages into ``out/source`` (default ``build/site`` in the repository), rewrite their
    links, copy the files they link to, and write ``_config.yml`` and ``_toc.yml``. Builds nothing."""
    import yaml  # Jupyter Book's dependency

    root = find_root(root)
    out = Path(out) if out is not None else root / "build" / "site"
    where = location(root)
    parts = book_pages(root)
    pages = [HOME_PAGE, *(page for part in parts.values() for page in part)]
    source = out.resolve() / "source"
    if source.exists():
        shutil.rmtree(source)  # a page removed from the repository leaves the book too
    source.mkdir(parents=True)
    rewriter = LinkRewriter(root, set(pages), where)
    for page in pages:
        _copy_page(rewriter, page, source)
    for path in sorted(rewriter.copies):
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / path, source / path)
    (source / BADGE_COPY).parent.mkdir(parents=True, exist_ok=True)
    (source / BADGE_COPY).write_text(BADGE_SVG, encoding="utf-8")
    mathjax = local_mathjax()
    if mathjax is not None:
        shutil.copytree(mathjax, source / MATHJAX_COPY)
    (source / "_config.yml").write_text(yaml.safe_dump(_config(where, mathjax is not None), sort_keys=False,
                                                       allow_unicode=True), encoding="utf-8")
    (source / "_toc.yml").write_text(yaml.safe_dump(_toc(parts), sort_keys=False), encoding="utf-8")
    return Book(source=source, html=out.resolve() / "_build" / "html", pages=[_page_name(p) for p in pages],
                copied=sorted(rewriter.copies), problems=rewriter.problems)


def _check_jupyter_book() -> None:
    """Jupyter Book 1 must be installed; Jupyter Book 2 is refused with the reason."""
    try:
        from importlib.metadata import PackageNotFoundError, version
        found = version("jupyter-book")
    except PackageNotFoundError:
        raise ImportError(f"Jupyter Book is not installed: {INSTALL_HINT}", name='"jupyter-book>=1.0.4,<2"') from None
    if int(found.split(".")[0]) != 1:
        raise ImportError(f"Jupyter Book {found} is installed; the site is built with Jupyter Book 1 "
                          f"(Sphinx): {INSTALL_HINT}", name='"jupyter-book>=1.0.4,<2"')


def build_site(root: str | os.PathLike[str] | None = None, out: str | os.PathLike[str] | None = None,
               log=None) -> Book:
    """Prepare the book (:func:`prepare_book`) and build it with Jupyter Book into ``out/_build/html``.

    Sphinx's output goes to ``out/build.log``; its warnings are in :attr:`Book.warnings`. ``log``
    (a file such as ``sys.stderr``) also receives the warnings and the problems as they are found.
    Raises ``RuntimeError`` with the end of the log when the build fails."""
    _check_jupyter_book()
    book = prepare_book(root, out)
    logfile = book.source.parent / "build.log"
    command = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
               "build", str(book.source), "--path-output", str(book.source.parent), "--all"]
    start = time.perf_counter()
    with open(logfile, "w", encoding="utf-8") as output:
        done = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, cwd=book.source, check=False)
    book.seconds = time.perf_counter() - start
    text = logfile.read_text(encoding="utf-8", errors="replace")
    book.warnings = [_ANSI.sub("", line).strip() for line in text.splitlines() if "WARNING" in line or "ERROR" in line]
    if done.returncode != 0 or not (book.html / "index.html").is_file():
        raise RuntimeError(f"Jupyter Book failed (exit code {done.returncode}); the end of {logfile}:\n"
                           + "\n".join(text.splitlines()[-30:]))
    if log is not None:
        for line in [*book.problems, *book.warnings]:
            print(line, file=log)
    return book


def main(out: str | None = None) -> int:
    """``metacourse site [--out DIR]``: build the site and say where it is; 1 when a link leads nowhere."""
    try:
        book = build_site(out=out, log=sys.stderr)
    except RuntimeError as error:  # Sphinx stopped: its log names the page
        print(f"metacourse: error: {error}", file=sys.stderr)
        return 1
    print(f"{len(book.pages)} pages, {len(book.copied)} linked files copied, {len(book.warnings)} Sphinx warning(s), "
          f"built in {book.seconds:.0f} s")
    print(f"site: {book.html / 'index.html'}")
    print(f"view it: python -m http.server --directory {book.html} 8000  (then open http://127.0.0.1:8000)")
    if book.problems:
        print(f"{len(book.problems)} link(s) lead nowhere (listed above): fix them in the pages' sources",
              file=sys.stderr)
        return 1
    return 0
