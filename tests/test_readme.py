"""The README and the docs pages: short, in step with CI, every link alive; the install's extras."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
LINK_RE = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def ci_command(name: str) -> str:
    """A command .ci/run checks the README for (``INSTALL='...'``, ``TEST='...'``)."""
    match = re.search(rf"^{name}='([^']+)'$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.M)
    assert match, f".ci/run no longer defines {name}='...'; update this test with it"
    return match[1]


def test_readme_fits_a_screenful_of_scrolling():
    assert len(README.splitlines()) <= 200, "README.md is over 200 lines: move details into docs/"


@pytest.mark.parametrize("name", ["INSTALL", "TEST"])
def test_readme_shows_the_commands_ci_runs(name):
    command = ci_command(name)
    assert command in README, f"README.md no longer shows `{command}` (.ci/run runs it): keep them in step"


def test_readme_names_the_data_switches_and_the_cpu_torch():
    for text in ("METACOURSE_DATA", "METACOURSE_DOWNLOAD=1", "--index-url https://download.pytorch.org/whl/cpu"):
        assert text in README


def local_links(path: Path) -> list[str]:
    return [t for t in LINK_RE.findall(path.read_text(encoding="utf-8")) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", ["README.md", "docs/results.md", "docs/benchmarks.md", "docs/instructors.md"])
def test_local_links_of_docs_and_results_resolve(page):
    path = ROOT / page
    targets = [t for t in local_links(path) if not t.endswith(".ipynb")]  # notebooks: the next test
    missing = [t for t in targets if not (path.parent / t).exists()]
    assert not missing, f"{page} links to missing files: {missing}"


def test_course_map_lists_every_notebook():
    linked = {Path(t).as_posix() for t in local_links(ROOT / "README.md")}
    notebooks = {p.relative_to(ROOT).as_posix() for folder in ("lectures", "labs", "solutions")
                 for p in (ROOT / folder).glob("*.ipynb")}
    assert not notebooks - linked, f"notebooks missing from the README's course map: {sorted(notebooks - linked)}"


def test_core_install_leaves_jupyter_to_the_extras():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower(): d for d in project["dependencies"]}
    assert "jupyterlab" not in core and "notebook" not in core
    assert core["ipywidgets"].replace(" ", "") == "ipywidgets>=7.7", "Colab ships ipywidgets 7.7: keep it enough"
    extras = project["optional-dependencies"]
    assert any(d.startswith("jupyterlab") for d in extras["lab"])
    assert any(re.match(r"metacourse\[.*\blab\b.*\]", d) for d in extras["dev"])
