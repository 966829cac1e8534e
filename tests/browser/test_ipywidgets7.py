"""The course's sliders and progress bars with ipywidgets 7.7 (Colab's version) in the classic notebook.

Colab ships ipywidgets 7.7; JupyterLab 4 needs 8.x. The widgets the course uses (``interact`` with a
``FloatSlider(continuous_update=False)`` over a matplotlib plot, ``tqdm.auto`` bars) must work with
both. This test runs the browser suite's fixture notebook in the classic notebook (``notebook<7``,
``ipywidgets==7.7.1``, ``widgetsnbextension==3.6.1``) from a separate virtual environment, in headless
Chromium: the slider renders, dragging it redraws the plot, the bar renders, no widget error and no
traceback.

The environment is not built here (about two minutes of pip on two cores): the test is skipped
unless it exists. Build it once with::

    python3.11 -m venv /tmp/metacourse-ipywidgets7
    /tmp/metacourse-ipywidgets7/bin/pip install "notebook<7" "ipywidgets==7.7.1" "widgetsnbextension==3.6.1" \\
        ipykernel matplotlib numpy tqdm

(7.7.1 is Colab's ipywidgets. Unpinned, pip took ipywidgets 7.7.5 with widgetsnbextension 3.6.10, whose
front end fails in the browser, "_deserialize_state is not a function", and shows no slider.)

``METACOURSE_IPYWIDGETS7_VENV`` points elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook


def _sibling(name: str) -> ModuleType:
    """A module of this folder, loaded by path (``conftest`` is not importable by name here)."""
    spec = importlib.util.spec_from_file_location(f"_browser_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_server, _lab = _sibling("conftest"), _sibling("test_jupyterlab")
PLOT_CELL, PROGRESS_CELL = _lab.PLOT_CELL, _lab.PROGRESS_CELL
"""The same slider over a plot and the same progress bar as the JupyterLab fixture notebook."""

pytestmark = pytest.mark.browser

VENV = Path(os.environ.get("METACOURSE_IPYWIDGETS7_VENV", "/tmp/metacourse-ipywidgets7"))
PYTHON = VENV / "bin" / "python"

_ALL_RAN_JS = """() => window.Jupyter && Jupyter.notebook && Jupyter.notebook.get_cells()
  .filter(c => c.cell_type === 'code').every(c => typeof c.input_prompt_number === 'number')
  && !Jupyter.notebook.kernel_busy"""
_KERNEL_READY_JS = """() => !!(window.Jupyter && Jupyter.notebook && Jupyter.notebook.kernel
  && Jupyter.notebook.kernel.is_connected() && document.querySelector('#kernel_indicator_icon.kernel_idle_icon'))"""

if not PYTHON.is_file():
    pytest.skip(f"no ipywidgets 7 environment at {VENV}: build it as this module's docstring says",
                allow_module_level=True)


@pytest.fixture(scope="module")
def classic_notebook(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[tuple[str, Path]]:
    """The classic notebook server of the ipywidgets 7 environment on 127.0.0.1 (no token, no XSRF)."""
    base = tmp_path_factory.mktemp("classic")
    served = base / "served"
    for folder in (served, base / "config", base / "runtime"):
        folder.mkdir()
    port = _server._free_port()
    env = dict(os.environ, METACOURSE_FAST="1", JUPYTER_CONFIG_DIR=str(base / "config"),
               JUPYTER_RUNTIME_DIR=str(base / "runtime"), VIRTUAL_ENV=str(VENV),
               PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MPLBACKEND", None)
    env.pop("PYTHONPATH", None)
    log = base / "classic.log"
    command = [str(PYTHON), "-m", "notebook", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
               "--port-retries=0", f"--notebook-dir={served}", "--NotebookApp.token=", "--NotebookApp.password=",
               "--NotebookApp.disable_check_xsrf=True"]
    with _server.running_server(command, env, served, port, log, artifacts / "classic-notebook.log") as url:
        yield url, served


def test_slider_and_progress_bar_work_with_ipywidgets_7(classic_notebook, chromium, artifacts: Path) -> None:
    url, served = classic_notebook
    version = new_code_cell("import ipywidgets\nprint('ipywidgets', ipywidgets.__version__)")
    nb = new_notebook(cells=[version, new_code_cell(PLOT_CELL), new_code_cell(PROGRESS_CELL)],
                      metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, served / "widgets7.ipynb")
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        page.goto(f"{url}/notebooks/widgets7.ipynb")
        page.wait_for_function(_KERNEL_READY_JS, timeout=120_000, polling=250)
        page.evaluate("() => Jupyter.notebook.execute_all_cells()")
        page.wait_for_function(_ALL_RAN_JS, timeout=180_000, polling=500)
        page.screenshot(path=str(artifacts / "ipywidgets7-after-run.png"))
        outputs = page.locator(".output_area").all_inner_texts()
        assert any("ipywidgets 7." in text for text in outputs), f"not ipywidgets 7: {outputs[:3]}"
        assert not page.get_by_text("Error displaying widget").count(), "a widget failed to display"
        errors = page.locator(".output_error").all_inner_texts()
        assert not errors, f"an output shows an error:\n{errors[0][:2000]}"

        bars = page.locator(".output_area .widget-hprogress")
        assert bars.count() and bars.last.locator(".progress-bar").count(), "no progress bar rendered"

        interacts = page.locator(".widget-interact").filter(has=page.locator(".ui-slider-handle"))
        if not interacts.count():
            shown = page.locator(".code_cell .output_wrapper").nth(1).inner_html()[:3000]
            pytest.fail(f"no interact slider rendered; the cell shows:\n{shown}\nbrowser console:\n"
                        + "\n".join(console[-30:]), pytrace=False)
        interact = interacts.first
        image = interact.locator("img").last
        image.wait_for(timeout=60_000)
        before = image.get_attribute("src")
        track, handle = interact.locator(".ui-slider").first.bounding_box(), \
            interact.locator(".ui-slider-handle").first.bounding_box()
        assert track and handle, "the slider has no size on the page"
        y = handle["y"] + handle["height"] / 2
        page.mouse.move(handle["x"] + handle["width"] / 2, y)
        page.mouse.down()
        page.mouse.move(track["x"] + track["width"] * 0.6, y, steps=10)
        page.mouse.up()
        page.wait_for_function(
            "([el, old]) => { const img = [...el.querySelectorAll('img')].pop(); return img && img.src !== old; }",
            arg=[interact.element_handle(), before], timeout=60_000,
        )
        interact.screenshot(path=str(artifacts / "ipywidgets7-slider-after.png"))
        assert not page.locator(".output_error").count(), "moving the slider raised"
    finally:
        page.close()
