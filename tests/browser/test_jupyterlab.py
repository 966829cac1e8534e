"""What a student sees in JupyterLab: the course notebooks run in a real browser.

JupyterLab 4 (a private server on 127.0.0.1) and headless Chromium (Playwright) open a notebook,
run all cells with ``METACOURSE_FAST=1`` through the Run menu, and check what a student would
see: widgets render (no "Error displaying widget"), moving a slider redraws its plot, a progress
bar renders, and no output holds a traceback. ``lectures/04_maml.ipynb`` is opened when it exists;
a small fixture notebook (an ``interact`` slider over a matplotlib plot and a ``tqdm.auto`` bar)
always is, so the harness itself is tested. Screenshots: see ``conftest.py``. Markers: ``browser``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
LECTURE = ROOT / "lectures" / "04_maml.ipynb"
COPIED = ("lectures", "labs", "solutions", "docs", "results")
"""Folders of the repository copied into the served folder (the server never sees the repository
itself, so running a notebook cannot change it)."""
RUN_TIMEOUT_S = float(os.environ.get("METACOURSE_BROWSER_TIMEOUT", "600"))
"""Seconds a notebook may take to run all its cells in the browser (FAST mode)."""

PLOT_CELL = """\
%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
from ipywidgets import FloatSlider, interact


def show(amplitude=1.0):
    x = np.linspace(-5, 5, 200)
    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.plot(x, amplitude * np.sin(x))
    ax.set_ylim(-5.5, 5.5)
    plt.show()


interact(show, amplitude=FloatSlider(value=1.0, min=0.1, max=5.0, step=0.1, continuous_update=False));"""

PROGRESS_CELL = """\
import time

from tqdm.auto import tqdm

for step in tqdm(range(20), desc="meta-training"):
    time.sleep(0.01)"""

# The status bar says "Python 3 (ipykernel) | Idle" once the kernel is connected and idle (the
# toolbar's indicator already says idle while there is no kernel yet).
_KERNEL_IDLE_JS = """() => {
  const bar = document.querySelector('.jp-StatusBar-Widget')?.textContent || '';
  return /\\| Idle/.test(bar) && !bar.includes('No Kernel');
}"""

# Every code cell of the notebook in view has a count once it ran (``[*]`` while it runs); empty
# cells are never run.
_ALL_RAN_JS = """() => {
  const cells = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')];
  const code = cells.filter(c => (c.querySelector('.cm-content')?.textContent || '').trim() !== '');
  return code.length > 0 && code.every(c => /\\[\\d+\\]/.test(c.querySelector('.jp-InputPrompt')?.textContent || ''));
}"""


# JupyterLab marks a modified document with ``jp-mod-dirty``: on its tab (the dot) and on the widget.
_DIRTY_JS = """() => !!document.querySelector(
  '.jp-NotebookPanel:not(.lm-mod-hidden).jp-mod-dirty, '
  + '.lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-current.jp-mod-dirty')"""


def _fixture_notebook() -> nbformat.NotebookNode:
    params = new_code_cell('import os\n\nFAST = os.environ.get("METACOURSE_FAST") == "1"\nprint("FAST =", FAST)')
    params.metadata["tags"] = ["parameters"]
    return new_notebook(
        cells=[new_markdown_cell("# Browser fixture\n\nA slider over a plot, and a progress bar."), params,
               new_code_cell(PLOT_CELL), new_code_cell(PROGRESS_CELL)],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


BROKEN_CELLS = [
    """\
import ipywidgets
import traitlets


class Broken(ipywidgets.DOMWidget):  # its front-end code does not exist
    _model_module = traitlets.Unicode("no-such-module").tag(sync=True)
    _model_name = traitlets.Unicode("BrokenModel").tag(sync=True)
    _view_module = traitlets.Unicode("no-such-module").tag(sync=True)
    _view_name = traitlets.Unicode("BrokenView").tag(sync=True)


Broken()""",
    "1 / 0",
]


def _serve(served: Path, source: Path | nbformat.NotebookNode | None, relative: str) -> str:
    """Put the notebook (and the files beside it) where the server sees it; return its path there.
    ``source``: a notebook file, a notebook, or None for the fixture notebook."""
    target = served / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(source, Path):
        nbformat.write(source or _fixture_notebook(), target)
    else:  # a copy of the course folders, so that relative links and files resolve as in the repository
        for folder in COPIED:
            if (ROOT / folder).is_dir():
                shutil.copytree(ROOT / folder, served / folder, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return relative


class Student:
    """A student's hands on one notebook page."""

    def __init__(self, page, name: str, artifacts: Path):
        self.page, self.name, self.artifacts = page, name, artifacts
        self.notebook = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        """The notebook in view (other tabs stay in the page, hidden)."""

    def shot(self, what: str, locator=None) -> None:
        path = self.artifacts / f"{self.name}-{what}.png"
        (locator or self.page).screenshot(path=str(path))

    def open(self, url: str) -> None:
        self.page.goto(f"{url}?reset")  # a fresh workspace: no tab of an earlier test comes back
        self.notebook.locator(".jp-CodeCell").first.wait_for(timeout=120_000)
        select = self.page.locator(".jp-Dialog button:has-text('Select')")
        if select.count():  # "Select Kernel": a notebook without a kernelspec
            select.first.click()
        self.page.wait_for_function(_KERNEL_IDLE_JS, timeout=120_000, polling=250)

    def run_all(self) -> float:
        start = time.monotonic()
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        try:
            self.page.wait_for_function(_ALL_RAN_JS, timeout=RUN_TIMEOUT_S * 1000, polling=500)
            self.page.wait_for_function(_KERNEL_IDLE_JS, timeout=RUN_TIMEOUT_S * 1000, polling=250)
        except Exception:
            self.shot("run-timeout")
            prompts = self.notebook.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
            raise AssertionError(f"{self.name}: not all cells ran within {RUN_TIMEOUT_S:.0f} s "
                                 f"(prompts {prompts}); see {self.name}-run-timeout.png") from None
        return time.monotonic() - start

    def output_texts(self) -> list[str]:
        return self.notebook.locator(".jp-OutputArea-output").all_inner_texts()

    def plot_image(self, interact) -> str:
        image = interact.locator("img").last
        image.wait_for(timeout=60_000)
        return image.get_attribute("src") or ""

    def drag_slider(self, interact, fraction: float = 0.6) -> None:
        handle = interact.locator(".noUi-handle").first
        track = interact.locator(".noUi-target").first
        box, start = track.bounding_box(), handle.bounding_box()
        assert box and start, "the slider has no size on the page"
        y = start["y"] + start["height"] / 2
        self.page.mouse.move(start["x"] + start["width"] / 2, y)
        self.page.mouse.down()
        self.page.mouse.move(box["x"] + box["width"] * fraction, y, steps=10)
        self.page.mouse.up()


def _check_no_errors(student: Student) -> None:
    """No widget failed ("Error displaying widget", ipywidgets' error widget) and no traceback."""
    notebook = student.notebook
    broken = (notebook.get_by_text("Error displaying widget").count()
              + notebook.locator(".jupyter-widgets-error-widget").count())
    assert not broken, f"{broken} widget(s) failed to display"
    texts = student.output_texts()
    tracebacks = [t for t in texts if "Traceback" in t or re.search(r"^\w+Error\b", t, re.MULTILINE)]
    assert not tracebacks, f"an output shows an error:\n{tracebacks[0][:2000]}"


def _check_slider_redraws_plot(student: Student) -> None:
    interacts = student.notebook.locator(".widget-interact").filter(has=student.page.locator(".noUi-handle"))
    assert interacts.count(), "no interact slider rendered"
    interact = interacts.filter(has=student.page.locator("img")).first
    before = student.plot_image(interact)
    student.shot("slider-before", interact)
    student.drag_slider(interact)
    student.page.wait_for_function(
        "([el, old]) => { const img = [...el.querySelectorAll('img')].pop(); return img && img.src !== old; }",
        arg=[interact.element_handle(), before], timeout=60_000,
    )
    student.shot("slider-after", interact)
    assert student.plot_image(interact) != before


def _check_progress_bar(student: Student) -> None:
    bars = student.notebook.locator(".jp-OutputArea-output :is(.widget-hprogress, .widget-vprogress)")
    assert bars.count(), "no progress bar rendered"
    bar = bars.last.locator("xpath=..")  # the HBox: description, bar, counts
    bar.scroll_into_view_if_needed()
    assert bar.is_visible() and bar.locator(".progress-bar").count()
    student.shot("progress", bar)


def _open_and_run(jupyterlab, chromium, artifacts: Path, name: str, source, relative: str) -> Student:
    url, served = jupyterlab
    path = _serve(served, source, relative)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    student = Student(page, name, artifacts)
    student.open(f"{url}/lab/tree/{path}")
    seconds = student.run_all()
    student.shot("after-run")
    print(f"{name}: all cells ran in the browser in {seconds:.0f} s")
    return student


def test_fixture_notebook_renders_widgets_plots_and_progress(jupyterlab, chromium, artifacts: Path) -> None:
    student = _open_and_run(jupyterlab, chromium, artifacts, "fixture", None, "fixture/widgets.ipynb")
    try:
        _check_no_errors(student)
        assert student.notebook.locator(".jp-OutputArea-output", has_text="FAST = True").count(), "not FAST"
        _check_progress_bar(student)
        _check_slider_redraws_plot(student)
        _check_no_errors(student)
    finally:
        student.page.close()


def test_the_checks_see_broken_widgets_and_tracebacks(jupyterlab, chromium, artifacts: Path) -> None:
    nb = _fixture_notebook()
    nb.cells += [new_code_cell(source) for source in BROKEN_CELLS]
    student = _open_and_run(jupyterlab, chromium, artifacts, "broken", nb, "fixture/broken.ipynb")
    try:
        with pytest.raises(AssertionError, match=r"1 widget\(s\) failed to display"):
            _check_no_errors(student)
        student.notebook.locator(".jupyter-widgets-error-widget").evaluate("el => el.closest('.jp-Cell').remove()")
        with pytest.raises(AssertionError, match="ZeroDivisionError"):
            _check_no_errors(student)
    finally:
        student.page.close()


@pytest.mark.skipif(not LECTURE.is_file(), reason="lectures/04_maml.ipynb is not written yet")
def test_lecture_04_runs_in_jupyterlab(jupyterlab, chromium, artifacts: Path) -> None:
    student = _open_and_run(jupyterlab, chromium, artifacts, "lecture04", LECTURE, "lectures/04_maml.ipynb")
    try:
        _check_no_errors(student)
        _check_progress_bar(student)  # meta-training's tqdm bars
        _check_slider_redraws_plot(student)  # the interactive fit of a test task
        _check_no_errors(student)
    finally:
        student.page.close()


def _saved_differences(stored: dict, saved: dict) -> list[str]:
    """What JupyterLab's save changed: notebook metadata keys, format numbers, cells."""
    found = [f"metadata.{key}: stored {stored['metadata'].get(key)!r}, saved {saved['metadata'].get(key)!r}"
             for key in sorted(set(stored["metadata"]) | set(saved["metadata"]))
             if stored["metadata"].get(key) != saved["metadata"].get(key)]
    found += [f"{key}: stored {stored.get(key)!r}, saved {saved.get(key)!r}"
              for key in ("nbformat", "nbformat_minor") if stored.get(key) != saved.get(key)]
    changed = [index for index, (a, b) in enumerate(zip(stored["cells"], saved["cells"], strict=False)) if a != b]
    if changed or len(stored["cells"]) != len(saved["cells"]):
        found.append(f"cells {changed[:8]} (of {len(stored['cells'])} stored, {len(saved['cells'])} saved)")
    return found


@pytest.mark.skipif(not LECTURE.is_file(), reason="lectures/04_maml.ipynb is not written yet")
@pytest.mark.parametrize("as_stored", [True, False], ids=["stored", "normalised-now"])
def test_opening_a_lecture_does_not_mark_it_modified(jupyterlab, chromium, artifacts: Path, as_stored: bool) -> None:
    """A student who opens a lecture and reads it sees no "unsaved changes" dot, once the kernel
    has started and JupyterLab has written the kernel's ``kernelspec`` and ``language_info`` into
    the notebook. ``stored``: the committed file; ``normalised-now``: the file as
    ``metacourse.course.executed.normalised`` writes it today (tells a stale lecture from a wrong
    ``CANONICAL_METADATA``). When it is marked, the notebook is saved and what JupyterLab rewrote is
    named."""
    from metacourse.course.executed import normalised

    url, served = jupyterlab
    relative = _serve(served, LECTURE, "lectures/04_maml.ipynb")
    if not as_stored:
        relative = "lectures/04_maml_normalised.ipynb"
        nbformat.write(normalised(nbformat.read(LECTURE, as_version=4)), served / relative)
    stored = json.loads((served / relative).read_text())
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    student = Student(page, f"lecture04-open-{'stored' if as_stored else 'normalised'}", artifacts)
    try:
        student.open(f"{url}/lab/tree/{relative}")
        page.wait_for_timeout(2_000)  # the kernel's info reply has arrived; give its handlers time to run
        student.shot("opened")
        if not page.evaluate(_DIRTY_JS):
            return
        page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").click()
        page.keyboard.press("Control+s")
        page.wait_for_function(f"() => !({_DIRTY_JS})()", timeout=30_000, polling=250)
        saved = json.loads((served / relative).read_text())
        changes = _saved_differences(stored, saved) or ["nothing in the file (a change kept in memory only)"]
        fix = ("normalise the lectures again (python -m metacourse.course.notebook normalise lectures/*.ipynb)"
               if as_stored else "store what JupyterLab writes: CANONICAL_METADATA in metacourse/course/executed.py")
        pytest.fail(f"opening {relative} marks it modified; saving it rewrote:\n  " + "\n  ".join(changes)
                    + f"\n{fix}", pytrace=False)
    finally:
        page.close()
