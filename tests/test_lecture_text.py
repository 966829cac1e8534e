"""Each lecture reads as a lecture: its parts, its length, its words, and results read as data.

- learning objectives and prerequisites at the top; questions, things to try and a reading list
  at the end; at least one concept diagram (a figure under lectures/figures/);
- at most 3,500 words of main text (the research record goes to lectures/appendix/, linked);
- no word of the course's making ("issue", "must show", "target we set") where a student reads;
- no result file opened and parsed by hand: stored runs come through ``metacourse.results``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))
APPENDICES = sorted((ROOT / "lectures" / "appendix").glob("*.ipynb"))
MAX_WORDS = 3_500
HEADINGS = {"learning objectives": r"learning objectives", "prerequisites": r"prerequisites",
            "check your understanding": r"check your understanding", "things to try": r"things to try",
            "reading list": r"reading"}
FORBIDDEN_WORDS = re.compile(r"\bissues?\b|\bmust[- ]show\b|\btargets? we set\b", re.IGNORECASE)
HAND_PARSING = re.compile(r"\bjson\.loads?\(|\bresults_folder\(|\bload_result\(|['\"]\.\./results\b|glob\([^)]*results")
DIAGRAM = re.compile(r"!\[[^\]]*\]\((figures/[^)\s]+)\)|<img[^>]+src=\"(figures/[^\"]+)\"")


def _cells(path: Path) -> list[dict]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        cell["text"] = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    return cells


def _markdown(path: Path) -> str:
    return "\n\n".join(cell["text"] for cell in _cells(path) if cell["cell_type"] == "markdown")


def words(path: Path) -> int:
    """Words of the notebook's markdown cells (its main text)."""
    return len(re.findall(r"\S+", _markdown(path)))


def test_there_are_lectures():
    assert len(LECTURES) >= 9


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_a_lecture_has_objectives_prerequisites_questions_and_reading(path: Path):
    headings = [line.lstrip("#").strip().lower() for line in _markdown(path).splitlines() if line.startswith("#")]
    missing = [name for name, pattern in HEADINGS.items() if not any(re.search(pattern, h) for h in headings)]
    assert not missing, f"{path.name} has no heading for: {', '.join(missing)}"
    first = [h for h in headings if re.search("learning objectives", h)]
    position = headings.index(first[0])
    assert position <= 3, f"{path.name}: the learning objectives come first (heading {position})"


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_a_lecture_shows_a_concept_diagram_that_exists(path: Path):
    found = [a or b for a, b in DIAGRAM.findall(_markdown(path))]
    assert found, f"{path.name} shows no concept diagram (a figure under lectures/figures/)"
    for figure in found:
        assert (path.parent / figure).is_file(), f"{path.name} shows {figure}, which does not exist"


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_a_lecture_is_at_most_3500_words_and_links_its_appendix(path: Path):
    count = words(path)
    assert count <= MAX_WORDS, (f"{path.name}: {count} words of main text; move the research record to "
                                f"lectures/appendix/{path.stem}_appendix.ipynb")
    appendix = path.parent / "appendix" / f"{path.stem}_appendix.ipynb"
    if appendix.is_file():
        assert f"appendix/{appendix.name}" in _markdown(path), f"{path.name} does not link its appendix"


@pytest.mark.parametrize("path", APPENDICES, ids=lambda p: p.stem)
def test_every_appendix_belongs_to_a_lecture(path: Path):
    lecture = ROOT / "lectures" / f"{path.stem.removesuffix('_appendix')}.ipynb"
    assert path.stem.endswith("_appendix") and lecture.is_file(), f"{path.name}: no lecture {lecture.name}"


@pytest.mark.parametrize("path", LECTURES + APPENDICES, ids=lambda p: p.stem)
def test_no_word_of_the_course_s_making(path: Path):
    hits = [(index, match.group(0)) for index, cell in enumerate(_cells(path))
            for match in FORBIDDEN_WORDS.finditer(cell["text"])]
    assert not hits, f"{path.name}: cells {hits} speak of the course's making, not of meta-learning"


@pytest.mark.parametrize("path", LECTURES + APPENDICES, ids=lambda p: p.stem)
def test_results_are_read_through_the_results_api(path: Path):
    hits = [(index, match.group(0)) for index, cell in enumerate(_cells(path)) if cell["cell_type"] == "code"
            for match in HAND_PARSING.finditer(cell["text"])]
    assert not hits, (f"{path.name}: cells {hits} open results by hand; use metacourse.results.load(...) "
                      "and the experiment's own table and figure functions")


@pytest.mark.parametrize("text, forbidden", [
    ("As the issue asks, ...", True), ("Issues of scale", True), ("the must-show claim", True),
    ("targets we set ourselves", True), ("a tissue of lies", False), ("the target network", False)])
def test_the_word_check_on_examples(text: str, forbidden: bool):
    assert bool(FORBIDDEN_WORDS.search(text)) is forbidden


@pytest.mark.parametrize("code, hand", [
    ("stored = json.load(open('../results/x.json'))", True), ("results_folder() / 'x.json'", True),
    ("sorted(Path('..').glob('results/omniglot-*.json'))", True), ("results.load('omniglot', shots=1)", False)])
def test_the_hand_parsing_check_on_examples(code: str, hand: bool):
    assert bool(HAND_PARSING.search(code)) is hand
