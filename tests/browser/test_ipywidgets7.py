"""Lecture 1's sliders with ipywidgets 7.7 (Colab's version) in the classic notebook, in headless Chromium.

Colab ships ipywidgets 7.7.1 with widgetsnbextension 3.6.1 and the classic notebook 6.5; JupyterLab 4
needs ipywidgets 8. The course's widgets must work with both. This test runs
``lectures/01_what_is_meta_learning.ipynb`` top to bottom in FAST mode in the classic notebook and
checks what a student on Colab would see: the ``interact`` sliders (K and the task) render, dragging
each one redraws the plot (a new image), the kernel really runs ipywidgets 7.7.1, and no widget error
and no traceback appear. Two cells are added at the end: one prints the kernel's ipywidgets version,
one draws a ``tqdm.auto`` bar as ``metacourse.train`` does (FAST mode turns the lecture's own bars off).

The classic notebook and ipywidgets 7 are installed by the test itself: ``pip install --target <tmp>
--no-deps`` of the pins below, into two folders, one put first on the notebook server's
``PYTHONPATH`` (notebook 6.5, widgetsnbextension 3.6.1, jupyter_client 7), one first on its kernel's
(ipywidgets 7.7.1), so they shadow Notebook 7 and ipywidgets 8 while torch, ipykernel and the rest
come from the current environment. pip needs its index (PyPI). ``METACOURSE_IPYWIDGETS7_PACKAGES``
names a folder where they are already installed, as ``server/`` and ``kernel/`` (pip is not run).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest


def _sibling(name: str) -> ModuleType:
    """A module of this folder, loaded by path (``conftest`` is not importable by name here)."""
    spec = importlib.util.spec_from_file_location(f"_browser_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_server, _lab = _sibling("conftest"), _sibling("test_jupyterlab")

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
LECTURE = "lectures/01_what_is_meta_learning.ipynb"
SERVER_PINS = [
    "notebook==6.5.7",  # the classic notebook, where ipywidgets 7's front end (widgetsnbextension) runs
    "nbclassic==1.3.3",  # notebook 6.5 serves its pages and scripts from here
    "widgetsnbextension==3.6.1",  # Colab's; 3.6.10's front end fails ("_deserialize_state is not a function")
    # notebook 6.5 needs jupyter_client<8: with 8 it writes to a kernel's websocket from two threads, the
    # connection breaks ("Uncaught exception in ZMQStream callback") and outputs are lost
    "jupyter_client==7.4.9",
    "entrypoints==0.4",  # jupyter_client 7 needs it
    "ipython_genutils==0.2.0",  # notebook 6 and ipywidgets 7 need it; newer environments lack it
    "nest_asyncio==1.6.0",
]
"""The notebook server's packages, first on its ``PYTHONPATH`` (``--no-deps``: the rest is shared)."""
KERNEL_PINS = ["ipywidgets==7.7.1", "ipython_genutils==0.2.0"]
"""The kernel's: Colab's ipywidgets, first on its ``PYTHONPATH`` (torch, ipykernel, jupyter_client are this
environment's)."""
PIP_TIMEOUT_S = 180

_KERNEL_READY_JS = """() => !!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel
  && Jupyter.notebook.kernel.is_connected() && document.querySelector('#kernel_indicator_icon.kernel_idle_icon'))"""
_ALL_RAN_JS = """() => window.Jupyter && Jupyter.notebook && Jupyter.notebook.get_cells()
  .filter(c => c.cell_type === 'code' && c.get_text().trim() !== '')
  .every(c => typeof c.input_prompt_number === 'number') && !Jupyter.notebook.kernel_busy"""
_NEW_IMAGE_JS = "([el, old]) => { const img = [...el.querySelectorAll('img')].pop(); return img && img.src !== old; }"
_VERSION_CELL = "import ipywidgets\nprint('kernel ipywidgets', ipywidgets.__version__)"
_FIX = "pip needs PyPI; or set METACOURSE_IPYWIDGETS7_PACKAGES to a folder where they are installed"


def _install(packages: Path) -> float:
    """Install :data:`SERVER_PINS` into ``packages/server`` and :data:`KERNEL_PINS` into
    ``packages/kernel`` (two pip processes at once); return the seconds it took."""
    start, running = time.monotonic(), []
    for part, pins in (("server", SERVER_PINS), ("kernel", KERNEL_PINS)):
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                   "--target", str(packages / part), *pins]
        running.append((pins, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                               text=True)))
    for pins, proc in running:
        try:
            _, errors = proc.communicate(timeout=max(1.0, start + PIP_TIMEOUT_S - time.monotonic()))
        except subprocess.TimeoutExpired:
            for _, other in running:
                other.kill()
            pytest.fail(f"pip did not install {pins} within {PIP_TIMEOUT_S} s: {_FIX}", pytrace=False)
        if proc.returncode:
            pytest.fail(f"pip could not install {pins} ({_FIX}):\n{errors[-3000:]}", pytrace=False)
    return time.monotonic() - start


@pytest.fixture(scope="module")
def classic_notebook(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[tuple[str, Path, Path]]:
    """The classic notebook 6.5 with ipywidgets 7.7.1 on 127.0.0.1 (no token, no XSRF): (URL, served
    folder, the server's log)."""
    _server._require()
    base = tmp_path_factory.mktemp("classic")
    given = os.environ.get("METACOURSE_IPYWIDGETS7_PACKAGES")
    packages = Path(given) if given else base / "packages"
    if not given:
        print(f"pip installed the notebook's and the kernel's packages in {_install(packages):.0f} s")
    served, config, kernels = base / "served", base / "config", base / "data" / "kernels" / "python3"
    for folder in (served, config, kernels, base / "runtime"):
        folder.mkdir(parents=True)
    # Only the notebook's own pages: JupyterLab's server extension (enabled in this environment) does
    # not load into Notebook 6.
    (config / "jupyter_notebook_config.json").write_text(
        json.dumps({"NotebookApp": {"nbserver_extensions": {"jupyterlab": False}}}))
    inherited = os.environ.get("PYTHONPATH")
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
        "env": {"PYTHONPATH": os.pathsep.join(filter(None, [str(packages / "kernel"), inherited]))},
    }))
    port = _server._free_port()
    env = dict(os.environ, METACOURSE_FAST="1", JUPYTER_CONFIG_DIR=str(config),
               JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               # the kernel above, and widgetsnbextension's front end and the setting that loads it
               JUPYTER_PATH=os.pathsep.join([str(base / "data"), str(packages / "server" / "share" / "jupyter")]),
               JUPYTER_CONFIG_PATH=str(packages / "server" / "etc" / "jupyter"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(packages / "server"), inherited])))
    env.pop("MPLBACKEND", None)
    command = [sys.executable, "-m", "notebook", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
               "--port-retries=0", f"--notebook-dir={served}", "--NotebookApp.token=", "--NotebookApp.password=",
               "--NotebookApp.disable_check_xsrf=True"]
    log = base / "classic.log"
    with _server.running_server(command, env, served, port, log, artifacts / "classic-notebook.log") as url:
        yield url, served, log


def _check_server(log: Path) -> None:
    """Fail when the server has dropped a kernel message (its websocket then closes: outputs are lost)."""
    dropped = [line for line in log.read_text().splitlines() if "Uncaught exception" in line]
    assert not dropped, f"the notebook server failed to pass kernel messages on (see classic-notebook.log): {dropped}"


def _run_all(page, name: str, artifacts: Path, log: Path) -> float:
    """Run every cell (Cell > Run All); return the seconds until all ran and the kernel is idle."""
    start = time.monotonic()
    page.evaluate("() => Jupyter.notebook.execute_all_cells()")
    while not page.evaluate(_ALL_RAN_JS):
        _check_server(log)
        if time.monotonic() - start > _lab.RUN_TIMEOUT_S:
            page.screenshot(path=str(artifacts / f"{name}-run-timeout.png"))
            raise AssertionError(f"not all cells ran within {_lab.RUN_TIMEOUT_S:.0f} s; see {name}-run-timeout.png")
        page.wait_for_timeout(500)
    return time.monotonic() - start


def _check_no_errors(page) -> None:
    """No widget failed to display and no output holds a traceback."""
    assert not page.get_by_text("Error displaying widget").count(), "a widget failed to display"
    assert not page.locator(".jupyter-widgets-error-widget").count(), "a widget failed to display"
    errors = page.locator(".output_error").all_inner_texts()
    assert not errors, f"an output shows an error:\n{errors[0][:2000]}"


def _drag(page, slider, fraction: float) -> None:
    """Drag a jQuery UI slider's handle (ipywidgets 7) to ``fraction`` of its track."""
    slider.scroll_into_view_if_needed()
    track, handle = slider.locator(".ui-slider").bounding_box(), slider.locator(".ui-slider-handle").bounding_box()
    assert track and handle, "the slider has no size on the page"
    y = handle["y"] + handle["height"] / 2
    page.mouse.move(handle["x"] + handle["width"] / 2, y)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * fraction, y, steps=10)
    page.mouse.up()


def test_lecture_01_sliders_redraw_with_ipywidgets_7(classic_notebook, chromium, artifacts: Path) -> None:
    url, served, log = classic_notebook
    path = _lab._serve(served, ROOT / LECTURE, LECTURE)
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        page.goto(f"{url}/notebooks/{path}")
        page.wait_for_function(_KERNEL_READY_JS, timeout=120_000, polling=250)
        for source in (_VERSION_CELL, _lab.PROGRESS_CELL):
            page.evaluate(f"() => Jupyter.notebook.insert_cell_at_bottom('code').set_text({json.dumps(source)})")
        seconds = _run_all(page, "ipywidgets7-lecture01", artifacts, log)
        print(f"{LECTURE}: all cells ran in the classic notebook in {seconds:.0f} s")
        page.screenshot(path=str(artifacts / "ipywidgets7-lecture01-after-run.png"))
        outputs = page.locator(".output_area").all_inner_texts()
        assert any("kernel ipywidgets 7.7.1" in text for text in outputs), \
            f"the kernel does not run ipywidgets 7.7.1: {[t for t in outputs if 'ipywidgets' in t]}"
        _check_no_errors(page)
        bars = page.locator(".output_area .widget-hprogress")
        assert bars.count() and bars.last.locator(".progress-bar").count(), "no progress bar rendered"

        interacts = page.locator(".widget-interact").filter(has=page.locator(".ui-slider-handle"))
        if not interacts.count():
            pytest.fail("no interact slider rendered; browser console:\n" + "\n".join(console[-30:]), pytrace=False)
        interact = interacts.first
        sliders = interact.locator(".widget-slider")
        labels = [label.strip() for label in interact.locator(".widget-slider .widget-label").all_inner_texts()]
        assert labels[:2] == ["K", "task"], f"expected lecture 1's sliders K and task, found {labels}"
        for index, (label, fraction) in enumerate([("K", 0.6), ("task", 0.8)]):
            image = interact.locator("img").last
            image.wait_for(timeout=60_000)
            before, value = image.get_attribute("src"), sliders.nth(index).locator(".widget-readout").inner_text()
            _drag(page, sliders.nth(index), fraction)
            after = sliders.nth(index).locator(".widget-readout").inner_text()
            try:
                page.wait_for_function(_NEW_IMAGE_JS, arg=[interact.element_handle(), before], timeout=60_000)
            except Exception:
                interact.screenshot(path=str(artifacts / f"ipywidgets7-lecture01-{label}-not-redrawn.png"))
                _check_server(log)
                raise AssertionError(f"slider {label} moved from {value} to {after} but the plot was not redrawn "
                                     f"within 60 s; see ipywidgets7-lecture01-{label}-not-redrawn.png") from None
            assert after != value, f"dragging slider {label} left its value at {value}"
            assert interact.locator("img").count() == 1, f"slider {label}: the plot is shown more than once"
            interact.screenshot(path=str(artifacts / f"ipywidgets7-lecture01-{label}-{after}.png"))
            print(f"slider {label}: {value} -> {after}, the plot was redrawn")
        _check_no_errors(page)
    finally:
        page.close()
    _check_server(log)
