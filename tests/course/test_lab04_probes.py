"""Lab 4 (sinusoids) graded by probes and judges: honest work keeps its points, forgeries get none.

Most tests run the runner (``python -I -m metacourse.course.grading.runner``) in a plain subprocess
and judge its plain data here, as ``grade()`` does after the sandbox: they need no sandbox. The
forgeries are the notebook builders of ``lab04_submissions.py`` (HOSTILE: name -> builder, the score
an honest grader gives, what it tries). A probe costs about 2.5 CPU seconds (5 for the training
check), so each forgery is probed on the checks it attacks.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab04_submissions as subs  # noqa: E402

from metacourse.course.grading import runner, sentinels  # noqa: E402
from metacourse.course.grading.labs import lab04_maml_sinusoid as lab04_probes  # noqa: E402
from metacourse.course.grading.probes import Verdict, get_lab_probes  # noqa: E402

LAB = subs.LAB
ALL = ("adapt-check", "meta-loss-check", "beats-pretraining-check")
CHECK_OF = {"my_adapt": "adapt-check", "my_meta_loss": "meta-loss-check", "my_meta_step": "beats-pretraining-check"}
pytestmark = pytest.mark.usefixtures("one_thread")


def _score(nb, checks=ALL, **kwargs) -> tuple[float, dict[str, Verdict]]:
    verdicts = {gid: subs.judge_probe(nb, gid, **kwargs) for gid in checks}
    return sum(v.score for v in verdicts.values()), verdicts


# ---------------------------------------------------------------------------------------------
# The probes are the solution's check cells


def test_probes_are_the_check_cells_of_the_solution():
    nb = nbformat.read(subs.make_class.SOLUTION, as_version=4)
    cells = [(c.metadata["nbgrader"]["grade_id"], float(c.metadata["nbgrader"]["points"]), c.source)
             for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]
    answers = {node.name for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
               for node in ast.parse(c.source).body if isinstance(node, ast.FunctionDef)}
    lab = get_lab_probes(LAB)
    assert [(c.grade_id, c.points) for c in lab.checks] == [(gid, points) for gid, points, _ in cells]
    assert set(lab.exercises) == answers
    for check, (_, _, source) in zip(lab.checks, cells):
        assert check.exercise in source  # the cell checks the function the probe calls
    assert get_lab_probes("lab02_protonet") is None  # other labs: the legacy path


def test_requests_are_plain_json_with_fresh_seeds():
    lab = get_lab_probes(LAB)
    first, second = (json.loads(json.dumps(c.request())) for c in (lab.checks[0], lab.checks[0]))
    assert first["public"]["seed"] != second["public"]["seed"]  # no answer key keyed by the seed
    fixed = get_lab_probes(LAB, seed=7).checks[2].request()
    assert fixed["public"]["seed"] == 7 and fixed["public"]["train_seed"] == 0


# ---------------------------------------------------------------------------------------------
# Loading the student's code from source


def _load(sources: list[str], tmp_path: Path) -> tuple[dict, list[str]]:
    namespace: dict = {"__name__": "__main__"}
    notes = runner.load_cells([{"index": i, "source": s} for i, s in enumerate(sources)], tmp_path, namespace)
    return namespace, notes


def test_load_cells_runs_definitions_not_work(tmp_path):
    ns, notes = _load([
        "%matplotlib inline\nimport math\nX = 2 * 3\nY = math.pi\nZ = print('work')\nprint('work')\n"
        "f = lambda x: x + X\nfor i in range(10**9):\n    pass",
        "def g():\n    return X\n!pip install nothing\nresult = g()",
        "import not_a_module_anywhere\ndef h(): pass",
        "def broken(:\n",
        ["def k():\n", "    return 1\n"],
    ], tmp_path)
    assert ns["X"] == 6 and ns["f"](1) == 7 and ns["g"]() == 6 and ns["k"]() == 1
    assert "Z" not in ns and "result" not in ns and "h" not in ns and "broken" not in ns and "i" not in ns
    assert any("cell 2 raised ModuleNotFoundError" in n for n in notes) and any("cell 3" in n for n in notes)


def test_writefile_cells_become_importable_modules(tmp_path):
    _load(["%%writefile helper.py\nVALUE = 41\n", "%%writefile -a helper.py\nVALUE += 1\n",
           "%%writefile pkg/sub.py\nA = 1\n"], tmp_path)
    assert (tmp_path / "helper.py").read_text() == "VALUE = 41\nVALUE += 1\n"
    assert (tmp_path / "pkg" / "sub.py").is_file()
    ns, notes = _load(["%%writefile ../escape.py\nA = 1\n", "%%writefile /tmp/abs-escape.py\nA = 1\n"], tmp_path)
    assert not (tmp_path.parent / "escape.py").exists() and not Path("/tmp/abs-escape.py").exists()
    assert len(notes) == 2 and all("inside the working directory" in n for n in notes)


def test_honest_fixtures_load_the_same_functions_as_the_correct_one(tmp_path):
    """Cells the runner skips (loops, exits, floods, edited check cells) change nothing it loads."""
    def code_of(nb) -> dict:
        ns, _ = _load([c.source for c in nb.cells if c.cell_type == "code"], tmp_path)
        return {name: ns[name].__code__.co_code for name in ("my_adapt", "my_meta_loss", "my_meta_step")}

    fixtures = subs.make_class.make_class()
    correct = code_of(fixtures["correct"][0])
    for name in ("deleted_checks", "infinite_loop", "sys_exit", "kills_kernel", "megabytes"):
        assert code_of(fixtures[name][0]) == correct, name
    edited = code_of(fixtures["edited_checks"][0])
    assert edited["my_adapt"] == correct["my_adapt"] and edited["my_meta_step"] != correct["my_meta_step"]


# ---------------------------------------------------------------------------------------------
# Sentinels


def test_rewritten_sources_keep_everything_but_the_forbidden_bodies():
    files = sentinels.overlays(lab04_probes.FORBIDDEN["my_meta_loss"])
    maml_file = next(path for path in files if path.endswith("algorithms/maml.py"))
    namespace: dict = {"__name__": "metacourse.algorithms.maml_rewritten", "__package__": "metacourse.algorithms"}
    sys.modules[namespace["__name__"]] = type(sys)("placeholder")
    try:
        exec(compile(files[maml_file], maml_file, "exec"), namespace)
    finally:
        sys.modules.pop(namespace["__name__"])
    assert namespace["Config"](inner_lr=0.1).inner_lr == 0.1  # the rest of the module still works
    assert "create_graph" in files[maml_file]  # adapt is kept: my_meta_loss builds on it
    with pytest.raises(sentinels.SentinelError, match="maml.meta_loss"):
        namespace["meta_loss"](None, None, None, None)
    with pytest.raises(ValueError, match="defines no"):
        sentinels.rewrite_source("def f(): pass\n", "m", ["g"])


def test_overlays_cover_cached_bytecode(tmp_path, monkeypatch):
    package = tmp_path / "pkg_with_cache"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text("def secret():\n    return 42\n")
    (package / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"original bytecode")
    monkeypatch.syspath_prepend(str(tmp_path))
    files = sentinels.overlays(["pkg_with_cache.mod:secret"])
    assert set(files) == {str((package / "mod.py").resolve()),
                          str((package / "__pycache__" / "mod.cpython-311.pyc").resolve())}
    assert all("trip('pkg_with_cache.mod.secret')" in text for text in files.values())


# ---------------------------------------------------------------------------------------------
# Honest work: full marks, and a bug costs only its own function's points


def test_correct_solution_full_marks():
    total, verdicts = _score(subs.builder().correct())
    assert total == 8, {g: v.message for g, v in verdicts.items()}
    assert verdicts["adapt-check"].message == "lab04/adapt: 5/5 checks passed\nlab04/adapt (hidden): 5/5 checks passed"


def test_missing_create_graph_costs_only_my_adapt():
    total, verdicts = _score(subs.HOSTILE["no_create_graph"][0]())
    assert total == 5
    message = verdicts["adapt-check"].message
    assert "1 of 5 checks failed" in message and "create_graph=not first_order" in message
    assert verdicts["meta-loss-check"].passed and verdicts["beats-pretraining-check"].passed


def test_code_in_a_writefile_module_counts():
    total, verdicts = _score(subs.writefile_correct())
    assert total == 8, {g: v.message for g, v in verdicts.items()}


@pytest.mark.parametrize("name", ["partial", "overwrites_reference", "raises_at_import"])
def test_honest_fixtures_score_what_their_work_earns(name):
    """make_class's expected scores; overwrites_reference's wrong my_adapt no longer costs the
    correct my_meta_loss and my_meta_step their points (5, not 0)."""
    nb, expected = subs.make_class.make_class()[name]
    total, verdicts = _score(nb)
    assert total == expected, {g: v.message for g, v in verdicts.items()}


def test_loop_over_tasks_full_marks_beside_a_cpu_hog():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        start = time.monotonic()
        total, verdicts = _score(subs.loop_solution())
        wall = time.monotonic() - start
    finally:
        hog.kill()
        hog.wait()
    assert total == 8, {g: v.message for g, v in verdicts.items()}
    assert wall > 0  # CPU-second limits: the hog slows the probes down, it does not fail them


# ---------------------------------------------------------------------------------------------
# Forgeries


_REFERENCE_FORGERIES = [
    ("alias_import_as", "metacourse.algorithms.maml.adapt"),
    ("assign_reference", "metacourse.algorithms.maml.adapt"),
    ("importlib", "metacourse.algorithms.maml.adapt"),
    ("reload", "metacourse.algorithms.maml.adapt"),
    ("exec_source_open", "metacourse.algorithms.maml.adapt"),
    ("exec_source_path", "metacourse.algorithms.maml.adapt"),
    ("exec_getsource", "metacourse.algorithms.maml.adapt"),
    ("gc_walk", "metacourse.algorithms.maml.adapt"),
    ("maml_class", "metacourse.algorithms.maml_module.MAML.adapt"),
    ("planted_bug_import", "metacourse.checks.lab04.adapt_without_create_graph"),
    ("check_reference", "metacourse.checks.lab04._reference_adapt"),
    ("catches_sentinel", "metacourse.algorithms.maml.adapt"),
    ("writefile_wrapper", "metacourse.algorithms.maml.adapt"),
]


@pytest.mark.parametrize("name, reference", _REFERENCE_FORGERIES)
def test_the_library_is_not_an_answer_key(name, reference):
    build, expected, _ = subs.HOSTILE[name]
    verdict = subs.judge_probe(build(), "adapt-check")
    assert (verdict.score, expected) == (0, 0)
    assert verdict.message == f"`my_adapt` calls `{reference}`; write the inner loop yourself"


def test_wrappers_of_all_three_references_score_zero():
    total, verdicts = _score(subs.HOSTILE["wrap_all_three"][0]())
    assert total == 0
    assert "`my_meta_loss` calls `metacourse.algorithms.maml.meta_loss`" in verdicts["meta-loss-check"].message
    assert "`my_meta_step` calls `metacourse.algorithms.maml.meta_step`" in verdicts["beats-pretraining-check"].message


@pytest.mark.parametrize("name, check", [("wrap_meta_loss_only", "meta-loss-check"),
                                         ("wrap_meta_step_only", "beats-pretraining-check")])
def test_a_wrapper_costs_its_own_check_only(name, check):
    verdict = subs.judge_probe(subs.HOSTILE[name][0](), check)
    assert verdict.score == 0 and "calls `metacourse.algorithms.maml." in verdict.message


@pytest.mark.parametrize("name", ["rebind_helpers", "patch_autograd", "patch_savez", "tamper_inputs",
                                  "writes_meta_json", "huge_output", "odd_output", "exits"])
def test_forged_numbers_score_zero(name):
    build, expected, _ = subs.HOSTILE[name]
    verdict = subs.judge_probe(build(), "adapt-check")
    assert (verdict.score, expected) == (0, 0), verdict.message


def test_a_reduce_default_argument_is_never_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    verdict = subs.judge_probe(subs.HOSTILE["reduce_default"][0](), "adapt-check", env={"FORGERY_MARKER": str(marker)})
    assert verdict.score == 0 and "not implemented yet" in verdict.message
    assert not marker.exists()


def test_an_endless_loop_meets_the_cpu_limit():
    verdict = subs.judge_probe(subs.HOSTILE["burns_cpu"][0](), "adapt-check",
                               env={"METACOURSE_PROBE_CPU_SECONDS": "4"})
    assert verdict.score == 0
    assert "ran past its CPU-time limit (4 CPU seconds)" in verdict.message


def _sandbox() -> tuple[bool, str]:
    from metacourse.course.grading.sandbox import sandbox_available

    return sandbox_available()


@pytest.mark.skipif(not _sandbox()[0] and os.environ.get("METACOURSE_REQUIRE_SANDBOX") != "1",
                    reason=f"no sandbox here: {_sandbox()[1]}")
@pytest.mark.parametrize("name", ["exec_source_fileio", "pyc_marshal"])
def test_in_the_sandbox_the_files_hold_no_reference(name, tmp_path):
    """Reads the in-process layer does not see (_io.FileIO, a cached .pyc) meet the overlays."""
    pyc = None
    if name == "pyc_marshal":  # a cache beside the source, as an installed package has
        import importlib.util
        import py_compile

        from metacourse.algorithms import maml

        pyc = Path(importlib.util.cache_from_source(maml.__file__))
        if not pyc.exists():
            py_compile.compile(maml.__file__, cfile=str(pyc), doraise=True)
        else:
            pyc = None  # not ours to remove
    try:
        request, data, meta = subs.run_probe_sandboxed(subs.HOSTILE[name][0](), "adapt-check", tmp_path)
    finally:
        if pyc is not None:
            pyc.unlink(missing_ok=True)
    verdict = get_lab_probes(LAB).check("adapt-check").judge(request, data, meta)
    assert verdict.score == 0
    if name == "pyc_marshal":  # the cache holds the rewritten source, not bytecode
        assert "bad marshal data" in verdict.message
    else:
        assert verdict.message == "`my_adapt` calls `metacourse.algorithms.maml.adapt`; write the inner loop yourself"


def test_every_hostile_submission_is_tested():
    tested = {name for name, _ in _REFERENCE_FORGERIES} | {
        "wrap_all_three", "wrap_meta_loss_only", "wrap_meta_step_only", "rebind_helpers", "patch_autograd",
        "patch_savez", "tamper_inputs", "writes_meta_json", "huge_output", "odd_output", "exits", "reduce_default",
        "burns_cpu", "no_create_graph", "loop_over_tasks", "writefile_correct", "exec_source_path",
        "exec_source_fileio", "pyc_marshal"}
    assert set(subs.HOSTILE) == tested


# ---------------------------------------------------------------------------------------------
# The judge trusts nothing it reads


def _judge(meta: dict, data: dict | None = None, check: str = "adapt-check") -> Verdict:
    probe = get_lab_probes(LAB, seed=3).check(check)
    return probe.judge(probe.request(), data or {}, meta)


def test_judge_fails_on_odd_data():
    assert "did not finish: it stopped" in _judge({"status": "error", "message": "it stopped"}).message
    assert not _judge({"status": "weird"}).passed
    for calls in ("x", [1, 2], [{"tag": "public:0", "error": None, "kind": "dict", "keys": "x"}]):
        verdict = _judge({"status": "ok", "calls": calls})
        assert verdict.score == 0 and "malformed" in verdict.message
    call = {"tag": "public:0", "error": None, "kind": "tensor", "grad": "none", "replaced": False}
    wrong = {"c0.out": np.zeros(3, dtype=np.int64)}
    assert "malformed" in _judge({"status": "ok", "calls": [call]}, wrong).message


def test_judge_names_the_reference_a_sentinel_caught():
    verdict = _judge({"status": "sentinel", "sentinel": "metacourse.algorithms.maml.meta_step"},
                     check="beats-pretraining-check")
    assert verdict == Verdict(False, 0.0, "`my_meta_step` calls `metacourse.algorithms.maml.meta_step`; write the "
                                          "outer step yourself (zero_grad, my_meta_loss, backward, step)")


def test_runner_usage_and_unknown_lab(tmp_path):
    usage = subprocess.run([sys.executable, "-I", "-m", "metacourse.course.grading.runner"], capture_output=True,
                           text=True, timeout=120)
    assert usage.returncode == 2 and "usage" in usage.stderr
    request = tmp_path / "REQUEST.json"
    request.write_text(json.dumps({"lab": "lab99", "grade_id": "x", "cells": [], "request": {}}))
    run = subprocess.run([sys.executable, "-I", "-m", "metacourse.course.grading.runner", str(request),
                          str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 1 and "no probes for lab 'lab99'" in run.stderr
    assert not (tmp_path / "out" / "meta.json").exists()


# ---------------------------------------------------------------------------------------------
# End to end: grade() with its sandboxes (the notebook's run is cut short on purpose: the probes
# grade the source, whatever the kernel did)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from metacourse.course.grading import grade

    base = tmp_path_factory.mktemp("lab04-probes")
    folder = base / "submissions"
    folder.mkdir()
    notebooks = {"no_create_graph": subs.HOSTILE["no_create_graph"][0](),
                 "wrappers": subs.HOSTILE["wrap_all_three"][0]()}
    for name, nb in notebooks.items():
        (folder / f"{name}.ipynb").write_text(nbformat.writes(nb), encoding="utf-8")
    ok, why = _sandbox()
    summary = grade(LAB, folder, base / "out", solutions_dir=subs.ROOT / "solutions", cell_timeout=10,
                    total_timeout=30, jobs=2, sandbox=ok)
    return {Path(str(r.submission)).stem: r for r in summary.results}


@pytest.mark.redteam
def test_grade_scores_through_the_probes(graded):
    assert {name: r.score for name, r in graded.items()} == {"no_create_graph": 5, "wrappers": 0}


@pytest.mark.redteam
def test_grade_reports_name_the_function_at_fault(graded):
    tests = {t.name: t for t in graded["no_create_graph"].tests}
    assert tests["adapt-check"].status == "failed" and "create_graph=not first_order" in tests["adapt-check"].output
    assert tests["meta-loss-check"].status == "passed" and tests["beats-pretraining-check"].status == "passed"
    wrapped = {t.name: t.output for t in graded["wrappers"].tests}
    assert wrapped["adapt-check"] == ("`my_adapt` calls `metacourse.algorithms.maml.adapt`; write the inner loop "
                                      "yourself")
