"""A red team against the grader: submissions that try to hurt the rest of the batch.

One batch of the tiny fixture lab (``tests/fixtures/grading/solutions/``) mixes honest students with
hostile ones: a notebook that kills the grader (its parent process), a daemon that kills every
process it can see, a notebook that edits the installed package and the standard library, one that
writes IPython startup files into ``$HOME``, one that leaves a process behind to rewrite the outputs
after the run, one that reads the solution, a classmate's notebook and the grader's command line,
symbolic links to a classmate's file, and student names that are unicode, collide, are not UTF-8
or look like spreadsheet formulas. Each test asserts what an honest grader gives the hostile
submission, and that classmates' scores, the installed package and ``$HOME`` are unchanged and the
outputs complete. The heavy ones (a fork bomb, a memory hog, a disk filler) are marked ``redteam``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

from metacourse.course import grading
from metacourse.course.grading import GradeSummary, grade
from metacourse.course.grading.sandbox import sandbox_available
from metacourse.course.labs import build_lab

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "grading" / "solutions" / "lab90_grading_fixture.ipynb"
LIMITS = {"cell_timeout": 5, "total_timeout": 60, "check_timeout": 10, "max_cell_output": 100_000, "jobs": 2}
TOKEN = f"redteam-{uuid.uuid4().hex}"
AVAILABLE, WHY = sandbox_available()
REQUIRED = os.environ.get("METACOURSE_REQUIRE_SANDBOX") == "1"  # CI: fail, do not skip
pytestmark = pytest.mark.skipif(not AVAILABLE and not REQUIRED, reason=f"no sandbox here: {WHY}")


def _solution() -> NotebookNode:
    return nbformat.read(FIXTURE, as_version=4)


def _gid(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


ANSWERS = {
    _gid(cell): "\n".join(line for line in cell.source.split("\n") if "SOLUTION" not in line)
    for cell in _solution().cells if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")
}


def _lab() -> NotebookNode:
    return build_lab(_solution())


def _index(nb: NotebookNode, grade_id: str) -> int:
    return next(i for i, cell in enumerate(nb.cells) if _gid(cell) == grade_id)


def _correct(*extra: str, after: str = "step") -> NotebookNode:
    nb = _lab()
    for grade_id, source in ANSWERS.items():
        nb.cells[_index(nb, grade_id)].source = source
    for n, source in enumerate(extra):
        nb.cells.insert(_index(nb, after) + 1 + n, new_code_cell(source))
    return nb


def _with_mean(source: str) -> NotebookNode:
    nb = _correct()
    nb.cells[_index(nb, "mean")].source = source
    return nb


KILL_PARENT = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"

KILLER_DAEMON = f"""\
import os, signal, subprocess, sys
code = '''
import os, signal, time
for _ in range(300):
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    time.sleep(0.1)
'''
subprocess.Popen([sys.executable, "-c", code, "{TOKEN}"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)"""

EDIT_PACKAGE = """\
import metacourse, metacourse.checks, statistics, os
edited = []
new = os.path.join(os.path.dirname(metacourse.__file__), "x.py")
for path in (metacourse.checks.__file__, statistics.__file__, new):
    try:
        with open(path, "a") as file:
            file.write("\\nimport os; os._exit(3)\\n")
        edited.append(path)
    except OSError as error:
        print("cannot edit", path, error)
print("edited", edited)"""

HOME_STARTUP = """\
import os
for folder in ("~/.ipython/profile_default/startup", "~/.config/matplotlib"):
    folder = os.path.expanduser(folder)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "00-evil.py"), "w") as file:
        file.write("import os; os._exit(1)\\n")
with open(os.path.expanduser("~/.bashrc"), "a") as file:
    file.write("echo owned\\n")"""

OUTLIVER = f"""\
import subprocess, sys
code = '''
import json, os, time
deadline = time.time() + 60
while time.time() < deadline:
    for root, dirs, files in os.walk("/"):
        if root.startswith(("/proc", "/sys", "/usr", "/dev")):
            dirs[:] = []
            continue
        for name in files:
            if name in ("results.json", "grades.csv", "report.md"):
                try:
                    with open(os.path.join(root, name), "w") as file:
                        file.write('{{"score": 100}}')
                except OSError:
                    pass
    time.sleep(0.2)
'''
subprocess.Popen(["setsid", sys.executable, "-c", code, "{TOKEN}"], stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)"""

SNOOP_MEAN = f"""\
import glob, os


def _snoop():
    found = []
    for pattern in ({str(FIXTURE)!r}, {str(FIXTURE.parent) + '/*'!r}, "/proc/*/cmdline", "/proc/*/cwd/*",
                    "../*.ipynb", "../*/*.ipynb", {str(ROOT / 'solutions' / '*')!r}, "/tmp/*/*/correct*",
                    "/**/lab90_grading_fixture.ipynb"):
        for path in glob.glob(pattern, recursive=pattern.startswith("/**")):
            try:
                text = open(path, errors="replace").read()
            except OSError:
                continue
            if "BEGIN SOLUTION" in text or "sum(xs) / len(xs)" in text:
                found.append(path)
    return found


FOUND = _snoop()


def mean(xs):
    if FOUND:  # only a reader of the solution (or a classmate's work) knows the answer
        return sum(xs) / len(xs)
    return 0.0"""

# name -> (builder, expected score out of 5)
def _partial() -> NotebookNode:
    nb = _lab()
    nb.cells[_index(nb, "mean")].source = ANSWERS["mean"]
    return nb


HONEST = {"correct": (_correct, 5), "partial": (_partial, 2)}  # untouched stubs, exit(): tests/course/test_grading.py
HOSTILE = {
    "kills_parent": (lambda: _correct(KILL_PARENT), None),  # its run ends: legacy checks cannot run
    "killer_daemon": (lambda: _correct(KILLER_DAEMON, after="mean"), None),
    "edits_package": (lambda: _correct(EDIT_PACKAGE, after="mean"), 5),
    "home_startup": (lambda: _correct(HOME_STARTUP, after="mean"), 5),
    "outlives_the_grader": (lambda: _correct(OUTLIVER), 5),
    "snoops": (lambda: _with_mean(SNOOP_MEAN), 3),
}
# names that are hard on the outputs (file names as bytes): Zoë composed and decomposed, Zoé, a latin-1
# name, a formula, a Chinese name; only the first is a notebook (the others are refused in milliseconds)
NAMES = [b"Zo\xc3\xab", b"Zoe\xcc\x88", b"Zo\xc3\xa9", b"caf\xe9", b"=HYPERLINK(1)", "张伟".encode()]


TARGETS = [ROOT / "metacourse" / "checks" / "__init__.py", Path(__import__("statistics").__file__)]


def _fingerprint() -> str:
    """The files the hostile notebooks try to edit (others edit the rest of the tree meanwhile)."""
    return hashlib.sha256(b"".join(path.read_bytes() for path in TARGETS)).hexdigest()


def _home_listing() -> list[str]:
    home = Path.home()
    places = [home, home / ".ipython" / "profile_default" / "startup", home / ".config" / "matplotlib"]
    return sorted(str(p) for place in places if place.is_dir() for p in place.iterdir())


def _alive(token: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("redteam")
    subs = base / "submissions"
    subs.mkdir()
    for name, (build, _) in {**HONEST, **HOSTILE}.items():
        (subs / f"{name}.ipynb").write_text(nbformat.writes(build()))
    for n, raw in enumerate(NAMES):
        with open(os.path.join(os.fsencode(subs), raw + b".ipynb"), "w") as file:
            file.write(nbformat.writes(_correct()) if n == 0 else '{"cells": [')
    (subs / "linked.ipynb").symlink_to(subs / "correct.ipynb")  # a classmate's file
    (subs / "linked_folder").mkdir()
    (subs / "linked_folder" / "lab90_grading_fixture.ipynb").symlink_to(subs / "correct.ipynb")
    (subs / "linked_dir").symlink_to(subs.parent)
    before = {"package": _fingerprint(), "home": _home_listing()}
    summary = grade(FIXTURE, subs, base / "out", **LIMITS)
    results_after = {p: p.read_bytes() for p in (base / "out").rglob("*") if p.is_file()}
    time.sleep(3)  # time enough for a left-behind process to strike
    return {"summary": summary, "before": before, "results": results_after, "subs": subs}


def _by_submission(summary: GradeSummary) -> dict[str, float]:
    return {os.fsencode(str(r.submission.name)).decode("utf-8", "replace").removesuffix(".ipynb"): r.score
            for r in summary.results}


def test_the_batch_finishes_with_complete_outputs(batch: dict) -> None:
    summary: GradeSummary = batch["summary"]
    count = len(HONEST) + len(HOSTILE) + len(NAMES) + 3  # and three links
    assert len(summary.results) == count
    with open(summary.grades_csv, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == count and all(row["score"] != "" for row in rows)
    assert len({row["student"] for row in rows}) == count  # ids unique
    for result in summary.results:
        data = json.loads((summary.out_dir / result.student / "results.json").read_text())
        assert data["score"] == result.score and len(data["tests"]) == 2
    assert summary.report_md.read_text().startswith("# Grades: lab90_grading_fixture")
    assert summary.answers_csv is not None and summary.answers_csv.is_file()


def test_classmates_scores_are_unchanged(batch: dict) -> None:
    scores = _by_submission(batch["summary"])
    for name, (_, expected) in HONEST.items():
        assert scores[name] == expected, name


def test_hostile_submissions_score_what_their_honest_work_earns(batch: dict) -> None:
    scores = _by_submission(batch["summary"])
    for name, (_, expected) in HOSTILE.items():
        if expected is not None:
            assert scores[name] == expected, (name, next(r.notes for r in batch["summary"].results
                                                         if r.submission.name == f"{name}.ipynb"))
    assert scores["kills_parent"] <= 5 and scores["killer_daemon"] <= 5


def test_the_package_the_standard_library_and_home_are_unchanged(batch: dict) -> None:
    before = batch["before"]
    assert _fingerprint() == before["package"]
    assert _home_listing() == before["home"]
    assert not (ROOT / "metacourse" / "x.py").exists()


def test_nothing_outlives_the_batch_or_changes_its_outputs(batch: dict) -> None:
    assert _alive(TOKEN) == []
    for path, content in batch["results"].items():
        assert path.read_bytes() == content, path


def test_links_to_a_classmates_file_are_refused(batch: dict) -> None:
    summary: GradeSummary = batch["summary"]
    for name in ("linked.ipynb", "linked_folder", "linked_dir"):
        result = next(r for r in summary.results if r.submission.name == name)
        assert result.score == 0 and "symbolic link" in " ".join(result.notes), (name, result.notes)


def test_names_are_kept_unique_and_safe_in_a_spreadsheet(batch: dict) -> None:
    summary: GradeSummary = batch["summary"]
    ids = {r.student for r in summary.results}
    assert {"Zoé", "张伟"} <= ids  # unicode kept
    assert len([i for i in ids if i.startswith("Zoë-")]) == 2  # Zoë twice (two spellings): a stable hash each
    assert any(i.startswith("caf") for i in ids) and not any(i.startswith(("=", "+", "-", "@")) for i in ids)
    with open(summary.grades_csv, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert all(not row["student"].startswith(("=", "+", "-", "@")) for row in rows)
    assert all(not row["submission"].startswith(("=", "+", "-", "@")) for row in rows)
    formula = next(row for row in rows if "HYPERLINK" in row["student"])
    assert formula["submission"].endswith("=HYPERLINK(1).ipynb")
    zoe = next(r for r in summary.results if os.fsencode(r.submission.name) == NAMES[0] + b".ipynb")
    assert zoe.score == 5 and zoe.student.startswith("Zoë-")


def test_hidden_checks_carry_a_visibility(batch: dict) -> None:
    summary: GradeSummary = batch["summary"]
    data = json.loads((summary.out_dir / "correct" / "results.json").read_text())
    visibility = {t["name"]: t["visibility"] for t in data["tests"]}
    expected = {c.grade_id: "after_published" if c.hidden else "visible" for c in grading.load_lab(FIXTURE).checks}
    assert visibility == expected and "after_published" in visibility.values()


# ---------------------------------------------------------------------------------------------
# The probe path, with a probe of the test's own


class _FakeProbe:
    """A probe whose runner cannot know it: the sandboxed runner fails, the check fails alone."""

    grade_id, exercise, cpu_seconds, points, label = "mean-check", "mean", 20.0, 2.0, "lab90/mean"

    def request(self) -> dict:
        return {"xs": [1.0, 2.0, 3.0]}

    def overlays(self) -> dict:
        return {}

    def judge(self, request: dict, data: dict, meta: dict):
        raise AssertionError("never reached: the probe wrote nothing")


def test_a_probe_that_writes_nothing_fails_its_check_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(grading, "_lab_probes", lambda name: {"mean-check": _FakeProbe()})
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "correct.ipynb").write_text(nbformat.writes(_correct()))
    summary = grade(FIXTURE, subs, tmp_path / "out", **LIMITS)
    mean, step = summary.results[0].tests
    assert mean.score == 0 and mean.output.startswith("the probe of mean did not finish")
    assert step.score == 3  # the legacy check of the same notebook


def test_probe_outputs_are_validated(tmp_path: Path) -> None:
    np.savez(tmp_path / "ok.npz", a=np.arange(3.0))
    assert grading._load_npz(tmp_path / "ok.npz")["a"].tolist() == [0.0, 1.0, 2.0]
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError):  # a pickle inside: refused, never unpickled
        grading._load_npz(tmp_path / "objects.npz")
    np.savez(tmp_path / "text.npz", a=np.array(["x"]))
    with pytest.raises(ValueError, match="not numbers"):
        grading._load_npz(tmp_path / "text.npz")
    (tmp_path / "link.npz").symlink_to(tmp_path / "ok.npz")
    with pytest.raises(ValueError, match="missing"):
        grading._load_npz(tmp_path / "link.npz")
    for bad in ([], {"status": 1}, {"status": "ok", "message": "x" * 10_000}, {"status": "ok", "sentinel": 3}):
        with pytest.raises(ValueError):
            grading._valid_meta(bad)
    assert grading._valid_meta({"status": "ok", "message": "", "sentinel": None})["status"] == "ok"


# ---------------------------------------------------------------------------------------------
# Heavy: resource exhaustion (pytest -m redteam)


@pytest.mark.redteam
def test_resource_hogs_hurt_only_themselves(tmp_path: Path) -> None:
    hogs = {
        "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "memory_hog": "blocks = []\nwhile True:\n    blocks.append(bytearray(1 << 28))",
        "disk_filler": "with open('big.bin', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 24))",
        "cpu_children": "import subprocess, sys\nfor _ in range(8):\n    subprocess.Popen([sys.executable, '-c', "
                        "'while True: pass'], start_new_session=True)",
    }
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "correct.ipynb").write_text(nbformat.writes(_correct()))
    for name, source in hogs.items():
        (subs / f"{name}.ipynb").write_text(nbformat.writes(_correct(source, after="mean")))
    summary = grade(FIXTURE, subs, tmp_path / "out", memory_bytes=4 << 30, **LIMITS)
    scores = {r.student: r.score for r in summary.results}
    assert scores["correct"] == 5
    assert len(scores) == 5 and all(score in (0, 5) for score in scores.values())
    assert sys.platform != "linux" or not any((tmp_path / "out").rglob("big.bin"))
