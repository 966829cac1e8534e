"""Submissions of Lab 4 (sinusoids) for the probe tests: honest ones and forgeries, as notebook builders.

Each builder returns a notebook (``nbformat`` v4) built from the real lab and its solution, like
``tests/fixtures/grading/make_class.py``; :data:`HOSTILE` maps a name to (builder, the score an honest
grader gives out of 8, what it tries). :func:`probe` runs one check of one notebook through the
runner in a plain subprocess and :func:`grade_notebook` judges all three checks.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat
import numpy as np
from nbformat import NotebookNode

from metacourse.course.grading.probes import Verdict, get_lab_probes

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("make_class", ROOT / "tests/fixtures/grading/make_class.py")
make_class = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_class)

LAB = "lab04_maml_sinusoid"
SEED = 12345


def builder() -> make_class._Builder:
    return make_class._Builder(nbformat.read(make_class.SOLUTION, as_version=4))


def cells_of(nb: NotebookNode) -> list[dict]:
    """The code cells as grade() hands them to the runner."""
    return [{"index": i, "source": cell.source, "status": "ok",
             "nbgrader": cell.get("metadata", {}).get("nbgrader", {})}
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]


def run_probe(nb: NotebookNode, grade_id: str, *, seed: int = SEED, timeout: float = 300, env: dict | None = None,
              workdir: Path | None = None) -> tuple[dict, dict, dict, subprocess.CompletedProcess]:
    """Run the runner on one check in a plain subprocess; return (request, data, meta, process)."""
    lab = get_lab_probes(LAB, seed=seed)
    check = lab.check(grade_id)
    request = check.request()
    with tempfile.TemporaryDirectory(prefix="metacourse-probe-") as tmp:
        tmp = Path(tmp)
        work = workdir or tmp / "work"
        work.mkdir(exist_ok=True)
        out = tmp / "out"
        out.mkdir()
        (tmp / "REQUEST.json").write_text(json.dumps({"lab": LAB, "grade_id": grade_id, "cells": cells_of(nb),
                                                      "request": request}))
        environ = dict(os.environ, OMP_NUM_THREADS="1", METACOURSE_FAST="1", **(env or {}))
        argv = [sys.executable, "-I", "-m", "metacourse.course.grading.runner", str(tmp / "REQUEST.json"), str(out)]
        proc = subprocess.run(argv, cwd=work, env=environ, capture_output=True, text=True, timeout=timeout)
        meta, data = read_outputs(out)
    return request, data, meta, proc


def read_outputs(out: Path) -> tuple[dict, dict]:
    """meta.json and data.npz as the parent reads them (no pickles); {} when missing or malformed."""
    try:
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = {}
    try:
        with np.load(out / "data.npz", allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except (OSError, ValueError):
        data = {}
    return meta, data


def judge_probe(nb: NotebookNode, grade_id: str, **kwargs) -> Verdict:
    request, data, meta, proc = run_probe(nb, grade_id, **kwargs)
    check = get_lab_probes(LAB).check(grade_id)
    if not meta:
        return Verdict(False, 0.0, f"no result (exit {proc.returncode}): {proc.stderr[-500:]}")
    return check.judge(request, data, meta)


def grade_notebook(nb: NotebookNode, **kwargs) -> dict[str, Verdict]:
    return {check.grade_id: judge_probe(nb, check.grade_id, **kwargs) for check in get_lab_probes(LAB).checks}


def after(nb: NotebookNode, key: str, source: str) -> NotebookNode:
    return make_class._Builder.after(nb, key, source)


def replace_answer(nb: NotebookNode, grade_id: str, source: str) -> NotebookNode:
    nb.cells[make_class._index(nb, grade_id)].source = source
    return nb


def loop_solution() -> NotebookNode:
    """The correct solution with my_meta_loss as a loop over tasks (the lab accepts both)."""
    return replace_answer(builder().correct(), "meta-loss", LOOP_META_LOSS)


LOOP_META_LOSS = '''\
def my_meta_loss(model, params, tasks, inner_lr, inner_steps, first_order):
    losses = []
    for i in range(len(tasks)):
        task = tasks[i]
        adapted = my_adapt(model, params, task.x_support, task.y_support, inner_lr, inner_steps, first_order)
        losses.append(mse_loss(forward(model, adapted, task.x_query), task.y_query))
    return torch.stack(losses).mean()'''


HOSTILE: dict[str, tuple[Callable[[], NotebookNode], float, str]] = {}


def _stubs_with(**answers: str) -> NotebookNode:
    """The untouched lab with some answer cells replaced (keys: adapt, meta_loss, meta_step)."""
    nb = builder().lab()
    for key, source in answers.items():
        replace_answer(nb, key.replace("_", "-"), source)
    return nb


def _correct_with(**answers: str) -> NotebookNode:
    nb = builder().correct()
    for key, source in answers.items():
        replace_answer(nb, key.replace("_", "-"), source)
    return nb


_ADAPT_SIG = "def my_adapt(model, params, x_support, y_support, inner_lr, inner_steps, first_order"
_LOSS_SIG = "def my_meta_loss(model, params, tasks, inner_lr, inner_steps, first_order"
_STEP_SIG = "def my_meta_step(model, optimizer, tasks, inner_lr, inner_steps, first_order"
_CFG = "maml.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order)"

WRAP_ADAPT = f'''\
from metacourse.algorithms import maml
from metacourse.tasks.base import Task

{_ADAPT_SIG}):
    task = Task(x_support, y_support, x_support, y_support)
    return maml.adapt(model, params, task, {_CFG})'''

WRAP_META_LOSS = f'''\
from metacourse.algorithms import maml

{_LOSS_SIG}):
    return maml.meta_loss(model, params, tasks, {_CFG})'''

WRAP_META_STEP = f'''\
from metacourse.algorithms import maml

{_STEP_SIG}):
    return maml.meta_step(model, optimizer, tasks, {_CFG})'''

ALIAS_ADAPT = f'''\
from metacourse.algorithms.maml import adapt as _inner, Config as _Config
from types import SimpleNamespace

{_ADAPT_SIG}):
    cfg = _Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order)
    return _inner(model, params, SimpleNamespace(x_support=x_support, y_support=y_support), cfg)'''

IMPORTLIB_ADAPT = f'''\
import importlib
from types import SimpleNamespace

{_ADAPT_SIG}):
    maml = importlib.import_module("metacourse.algorithms." + "maml")
    cfg = maml.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order)
    return maml.adapt(model, params, SimpleNamespace(x_support=x_support, y_support=y_support), cfg)'''

RELOAD_ADAPT = f'''\
import importlib, sys
from types import SimpleNamespace

{_ADAPT_SIG}):
    for name in [n for n in sys.modules if n.startswith("metacourse.algorithms")]:
        sys.modules.pop(name)
    maml = importlib.import_module("metacourse.algorithms.maml")
    maml = importlib.reload(maml)
    cfg = maml.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order)
    return maml.adapt(model, params, SimpleNamespace(x_support=x_support, y_support=y_support), cfg)'''

EXEC_SOURCE_ADAPT = f'''\
import inspect, sys, types
from pathlib import Path
from types import SimpleNamespace
from metacourse.algorithms import maml as _maml

{_ADAPT_SIG}, _how="open"):
    if _how == "open":
        source = open(_maml.__file__).read()
    elif _how == "path":
        source = Path(_maml.__file__).read_text()
    else:
        source = inspect.getsource(_maml)
    module = types.ModuleType("metacourse.algorithms.maml_copy")
    module.__package__ = "metacourse.algorithms"
    sys.modules[module.__name__] = module
    exec(compile(source, "copy", "exec"), module.__dict__)
    cfg = module.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order)
    return module.adapt(model, params, SimpleNamespace(x_support=x_support, y_support=y_support), cfg)'''

PYC_ADAPT = f'''\
import glob, importlib.util, marshal, os, sys, types
from types import SimpleNamespace
from metacourse.algorithms import maml as _maml

{_ADAPT_SIG}):
    folder = os.path.join(os.path.dirname(_maml.__file__), "__pycache__")
    pyc = sorted(glob.glob(os.path.join(folder, "maml.*.pyc")))[0]
    with open(pyc, "rb") as file:
        code = marshal.loads(file.read()[16:])
    module = types.ModuleType("maml_from_pyc")
    module.__package__ = "metacourse.algorithms"
    sys.modules[module.__name__] = module
    exec(code, module.__dict__)
    cfg = module.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order)
    return module.adapt(model, params, SimpleNamespace(x_support=x_support, y_support=y_support), cfg)'''

GC_ADAPT = f'''\
import gc
from types import SimpleNamespace
from metacourse.algorithms import maml as _maml

{_ADAPT_SIG}):
    found = [f for f in gc.get_objects() if callable(f) and getattr(f, "__name__", "") == "adapt"
             and getattr(f, "__module__", "") == "metacourse.algorithms.maml"]
    cfg = _maml.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order)
    return found[0](model, params, SimpleNamespace(x_support=x_support, y_support=y_support), cfg)'''

MAML_CLASS_ADAPT = f'''\
import metacourse

{_ADAPT_SIG}):
    learner = metacourse.MAML(model, lr=inner_lr, first_order=first_order)
    learner._adapted = dict(params)
    for _ in range(inner_steps):
        learner.adapt(mse_loss(learner(x_support), y_support).sum())
    return learner.adapted_params'''

PLANTED_BUG_ADAPT = "from metacourse.checks.lab04 import adapt_without_create_graph as my_adapt"

CHECK_REFERENCE_ADAPT = f'''\
from metacourse.checks import lab04
from types import SimpleNamespace

{_ADAPT_SIG}):
    task = SimpleNamespace(x_support=x_support, y_support=y_support)
    return lab04._reference_adapt(model, params, task, inner_lr, inner_steps, first_order)'''

CATCHES_SENTINEL_ADAPT = f'''\
from metacourse.algorithms import maml
from types import SimpleNamespace

{_ADAPT_SIG}):
    try:
        cfg = maml.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order)
        return maml.adapt(model, params, SimpleNamespace(x_support=x_support, y_support=y_support), cfg)
    except BaseException:
        return dict(params)'''

WRITEFILE_WRAPPER = '''\
%%writefile helpers.py
from types import SimpleNamespace
from metacourse.algorithms import maml

def inner(model, params, x_support, y_support, inner_lr, inner_steps, first_order):
    cfg = maml.Config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order)
    return maml.adapt(model, params, SimpleNamespace(x_support=x_support, y_support=y_support), cfg)'''

REDUCE_DEFAULT = f'''\
import os

class _Payload:
    def __reduce__(self):
        open(os.environ.get("FORGERY_MARKER", "/tmp/forgery-marker"), "w").write("unpickled")
        return (print, ("passed",))

{_ADAPT_SIG}, _payload=_Payload()):
    raise NotImplementedError("Exercise 4.1")'''

REBIND_HELPERS = f'''\
import metacourse.checks as _checks
import metacourse.checks.lab04 as _lab04

{_ADAPT_SIG}):
    ok = lambda *args, **kwargs: True
    for module in (_checks, _lab04):
        for name in ("assert_close", "_close", "run_checks", "_compare", "_grads", "_call_adapt"):
            if hasattr(module, name):
                setattr(module, name, ok)
    return dict(params)'''

PATCH_AUTOGRAD = f'''\
import torch

_real_grad = torch.autograd.grad

def _forged_grad(outputs, inputs, *args, **kwargs):
    return tuple(torch.zeros_like(x) for x in inputs)

{_ADAPT_SIG}):
    torch.autograd.grad = _forged_grad
    return {{name: p.detach().clone() for name, p in params.items()}}'''

PATCH_SAVEZ = f'''\
import numpy as np

_real = np.savez

def _forged(file, **arrays):
    return _real(file, **{{key: np.zeros_like(value) for key, value in arrays.items()}})

np.savez = _forged
import numpy.lib.npyio
numpy.lib.npyio.savez = _forged

{_ADAPT_SIG}):
    return dict(params)'''

WRITES_META = f'''\
import json, os, sys

{_ADAPT_SIG}):
    out = sys.argv[-1]
    calls = [{{"tag": f"{{part}}:{{n}}", "error": None, "kind": "none", "type": "NoneType", "grad": "none",
              "replaced": False}} for part in ("public", "hidden") for n in range(5)]
    with open(os.path.join(out, "meta.json"), "w") as file:
        json.dump({{"status": "ok", "message": "", "sentinel": None, "cpu_seconds": 0.0, "calls": calls}}, file)
    os._exit(0)'''

HUGE_OUTPUT = f'''\
import torch

{_ADAPT_SIG}):
    return {{name: torch.zeros(3_000_000, dtype=torch.float64) for name in params}}'''

ODD_OUTPUT = f'''\
import torch

class Sneaky(dict):
    def __getitem__(self, key):
        raise RuntimeError("no")
    def keys(self):
        raise RuntimeError("no")

{_ADAPT_SIG}):
    if inner_steps == 1:
        return Sneaky(params)
    if first_order:
        return (p for p in params.values())
    return {{name: torch.full_like(p, float("nan")) for name, p in params.items()}}'''

TAMPER_INPUTS = f'''\
import metacourse.checks.lab04 as _lab04
import torch

_real = _lab04._model_and_params

def _zeros(seed, hidden):
    model, params = _real(seed, hidden)
    return model, {{name: torch.zeros_like(p).requires_grad_() for name, p in params.items()}}

_lab04._model_and_params = _zeros

{_ADAPT_SIG}):
    return dict(params)'''

BURNS_CPU = f'''\
{_ADAPT_SIG}):
    while True:
        pass'''

EXITS = f'''\
import sys

{_ADAPT_SIG}):
    sys.exit(0)'''

NO_CREATE_GRAPH = '''\
def my_adapt(model, params, x_support, y_support, inner_lr, inner_steps, first_order):
    adapted = dict(params)
    for _ in range(inner_steps):
        support_loss = mse_loss(forward(model, adapted, x_support), y_support).sum()
        grads = torch.autograd.grad(support_loss, list(adapted.values()))
        adapted = {name: p - inner_lr * g for (name, p), g in zip(adapted.items(), grads)}
    return adapted'''

WRITEFILE_CORRECT = '''\
%%writefile mymaml.py
import torch
from metacourse.functional import expand_over_tasks, forward, mse_loss, params_of


def my_adapt(model, params, x_support, y_support, inner_lr, inner_steps, first_order):
    adapted = dict(params)
    for _ in range(inner_steps):
        support_loss = mse_loss(forward(model, adapted, x_support), y_support).sum()
        grads = torch.autograd.grad(support_loss, list(adapted.values()), create_graph=not first_order)
        adapted = {name: p - inner_lr * g for (name, p), g in zip(adapted.items(), grads)}
    return adapted


def my_meta_loss(model, params, tasks, inner_lr, inner_steps, first_order):
    expanded = expand_over_tasks(params, len(tasks))
    adapted = my_adapt(model, expanded, tasks.x_support, tasks.y_support, inner_lr, inner_steps, first_order)
    return mse_loss(forward(model, adapted, tasks.x_query), tasks.y_query).mean()


def my_meta_step(model, optimizer, tasks, inner_lr, inner_steps, first_order):
    optimizer.zero_grad()
    loss = my_meta_loss(model, params_of(model), tasks, inner_lr, inner_steps, first_order)
    loss.backward()
    optimizer.step()
    return {"meta_loss": loss.item()}'''


def writefile_correct() -> NotebookNode:
    """The correct answers written to a module with %%writefile and imported in the answer cells."""
    nb = builder().lab()
    replace_answer(nb, "adapt", WRITEFILE_CORRECT + "\n")
    after(nb, "adapt", "from mymaml import my_adapt")
    replace_answer(nb, "meta-loss", "from mymaml import my_meta_loss")
    replace_answer(nb, "meta-step", "import mymaml\nmy_meta_step = mymaml.my_meta_step")
    return nb


def writefile_wrapper() -> NotebookNode:
    nb = builder().lab()
    replace_answer(nb, "adapt", WRITEFILE_WRAPPER)
    after(nb, "adapt", "from helpers import inner as my_adapt")
    return nb


HOSTILE.update({
    # the library's reference, reached in every way we know
    "wrap_all_three": (lambda: _stubs_with(adapt=WRAP_ADAPT, meta_loss=WRAP_META_LOSS, meta_step=WRAP_META_STEP),
                       0, "thin wrappers around maml.adapt / meta_loss / meta_step"),
    "wrap_meta_loss_only": (lambda: _correct_with(meta_loss=WRAP_META_LOSS), 5, "my_meta_loss wraps maml.meta_loss"),
    "wrap_meta_step_only": (lambda: _correct_with(meta_step=WRAP_META_STEP), 6, "my_meta_step wraps maml.meta_step"),
    "alias_import_as": (lambda: _stubs_with(adapt=ALIAS_ADAPT), 0, "from maml import adapt as _inner"),
    "assign_reference": (lambda: _stubs_with(adapt="from metacourse.algorithms import maml\nmy_adapt = maml.adapt"),
                         0, "my_adapt = maml.adapt"),
    "importlib": (lambda: _stubs_with(adapt=IMPORTLIB_ADAPT), 0, "importlib.import_module at call time"),
    "reload": (lambda: _stubs_with(adapt=RELOAD_ADAPT), 0, "drop from sys.modules, import and reload"),
    "exec_source_open": (lambda: _stubs_with(adapt=EXEC_SOURCE_ADAPT), 0, "exec(open(maml.__file__).read())"),
    "exec_source_path": (lambda: _stubs_with(adapt=EXEC_SOURCE_ADAPT.replace('_how="open"', '_how="path"')), 0,
                         "exec(Path(maml.__file__).read_text())"),
    "exec_getsource": (lambda: _stubs_with(adapt=EXEC_SOURCE_ADAPT.replace('_how="open"', '_how="inspect"')), 0,
                       "exec(inspect.getsource(maml))"),
    "pyc_marshal": (lambda: _stubs_with(adapt=PYC_ADAPT), 0, "marshal.loads of maml's cached .pyc"),
    "gc_walk": (lambda: _stubs_with(adapt=GC_ADAPT), 0, "the original function found with gc.get_objects()"),
    "maml_class": (lambda: _stubs_with(adapt=MAML_CLASS_ADAPT), 0, "metacourse.MAML(...).adapt"),
    "planted_bug_import": (lambda: _stubs_with(adapt=PLANTED_BUG_ADAPT), 0, "the checks' planted bug as my_adapt"),
    "check_reference": (lambda: _stubs_with(adapt=CHECK_REFERENCE_ADAPT), 0, "lab04._reference_adapt"),
    "catches_sentinel": (lambda: _stubs_with(adapt=CATCHES_SENTINEL_ADAPT), 0, "except BaseException around it"),
    "writefile_wrapper": (writefile_wrapper, 0, "a %%writefile module that wraps maml.adapt"),
    # forging the numbers or the verdict
    "reduce_default": (lambda: _stubs_with(adapt=REDUCE_DEFAULT), 0, "a default argument with __reduce__"),
    "rebind_helpers": (lambda: _stubs_with(adapt=REBIND_HELPERS), 0, "rebinds assert_close, _close, ... in the call"),
    "patch_autograd": (lambda: _stubs_with(adapt=PATCH_AUTOGRAD), 0, "torch.autograd.grad patched in the probe"),
    "patch_savez": (lambda: _stubs_with(adapt=PATCH_SAVEZ), 0, "numpy.savez patched to write zeros"),
    "writes_meta_json": (lambda: _stubs_with(adapt=WRITES_META), 0, "writes meta.json itself and exits"),
    "huge_output": (lambda: _stubs_with(adapt=HUGE_OUTPUT), 0, "returns 3M-element tensors"),
    "odd_output": (lambda: _stubs_with(adapt=ODD_OUTPUT), 0, "a dict subclass that raises, a generator, NaN"),
    "tamper_inputs": (lambda: _stubs_with(adapt=TAMPER_INPUTS), 0, "patches the checks' input generator"),
    "burns_cpu": (lambda: _stubs_with(adapt=BURNS_CPU), 0, "an endless loop in my_adapt"),
    "exits": (lambda: _stubs_with(adapt=EXITS), 0, "sys.exit inside my_adapt"),
    # honest work that must keep its points
    "no_create_graph": (lambda: _correct_with(adapt=NO_CREATE_GRAPH), 5, "one missing create_graph in my_adapt"),
    "loop_over_tasks": (loop_solution, 8, "my_meta_loss as a loop over tasks"),
    "writefile_correct": (writefile_correct, 8, "correct code in a %%writefile module, imported"),
})

FILEIO_ADAPT = EXEC_SOURCE_ADAPT.replace('''        source = open(_maml.__file__).read()''', '''        import _io
        source = _io.FileIO(_maml.__file__).read().decode()''')
HOSTILE["exec_source_fileio"] = (lambda: _stubs_with(adapt=FILEIO_ADAPT), 0,
                                 "exec of maml.py read with _io.FileIO (only the sandbox's overlay stops it)")


def run_probe_sandboxed(nb: NotebookNode, grade_id: str, tmp: Path, *, seed: int = SEED) -> tuple[dict, dict, dict]:
    """One probe as grade() runs it: in a sandbox, the check's overlays mounted over the package."""
    from metacourse.course.grading.sandbox import Limits, run_sandboxed

    check = get_lab_probes(LAB, seed=seed).check(grade_id)
    request = check.request()
    inputs, out = tmp / "in", tmp / "out"
    inputs.mkdir()
    out.mkdir()
    (inputs / "request.json").write_text(json.dumps({"lab": LAB, "grade_id": grade_id, "cells": cells_of(nb),
                                                     "request": request}))
    limits = Limits(cpu_seconds=check.cpu_seconds + 5, wall_seconds=600)
    run_sandboxed([sys.executable, "-I", "-m", "metacourse.course.grading.runner", str(inputs / "request.json"),
                   str(out)], workdir=None, outdir=out, readonly={inputs: str(inputs)}, overlays=check.overlays(),
                  limits=limits, env={"METACOURSE_FAST": "1", "OMP_NUM_THREADS": "1"})
    meta, data = read_outputs(out)
    return request, data, meta
