"""Run one probe: ``python -m metacourse.course.grading.runner REQUEST.json OUTDIR``.

It runs inside the sandbox (and, for trusted work or tests, in a plain process: it behaves the same
way). In this order it

1. sets its own CPU-time limit (the check's ``cpu_seconds``; ``SIGXCPU`` becomes a failed check);
2. reads ``REQUEST.json`` (written by the grader: lab, check, the student's code cells as read from
   the submission file, the check's inputs) and imports what the probe needs;
3. turns the library's answer to the exercise into sentinels (:func:`.sentinels.install`);
4. loads the student's code **from source** (:func:`load_cells`), never from pickles;
5. puts correct versions in place of the functions the exercise builds on (no cascades), calls the
   probe, and writes ``OUTDIR/meta.json`` and ``OUTDIR/data.npz`` (float64 arrays only).

What the grader reads back is plain data; every verdict is decided by the judge in the grader's own
process, so whatever the student's code does in here (patch ``numpy.savez`` or the checks, write
``meta.json`` itself, exit) can at worst spoil its own numbers.

What of the notebook is executed (:func:`load_cells`), cell by cell, in notebook order:

- ``%%writefile [-a] NAME`` cells are written to ``NAME`` in a fresh working directory that the
  runner makes in the (private) temporary folder and enters (relative paths inside it only); it is on
  ``sys.path``: a module the student wrote and imports is the
  student's own code and counts.
- In the other code cells (``%%time`` and ``%%capture`` cells too; other cell magics are skipped),
  IPython line magics and shell escapes become ``pass``, then only these top-level statements run:
  ``import``/``from ... import``, ``def``, ``class``, and assignments of simple values to names
  (literals, names, attributes, arithmetic, lambdas, and calls of ``partial``, of built-in
  constructors or of ``torch``'s ``nn.Module`` classes). Loops, other calls, training runs and
  prints are not run. As in a kernel, a statement that raises ends its cell (the next cell runs).
"""

from __future__ import annotations

import ast
import builtins
import io
import json
import os
import re
import resource
import signal
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["CpuLimitExceeded", "load_cells", "main", "describe_error"]

MAX_REQUEST_BYTES = 20_000_000
MAX_WRITEFILE_BYTES = 2_000_000
MAX_WRITEFILES = 50
MAX_MESSAGE = 2000
MAX_DATA_BYTES = 40_000_000
_CELL_MAGICS_RUN = {"time", "capture", "prun"}
_WRITEFILE = {"writefile", "file"}
_SAFE_CALLS = {"partial", "dict", "list", "tuple", "set", "frozenset", "float", "int", "str", "bool", "range",
               "slice", "complex", "bytes", "object"}
_MAGIC_ASSIGN = re.compile(r"^(\s*)[\w.,\s\[\]()*]+=\s*[%!]")


class CpuLimitExceeded(BaseException):
    """Raised in the probe when it used up its CPU seconds."""


def describe_error(error: BaseException) -> str:
    """A failed call as the lab's checks would name it (``not implemented yet: ...``, ``TypeError: ...``)."""
    from metacourse.checks import _describe

    if isinstance(error, Exception):
        text = _describe(error)
    else:
        text = f"{type(error).__name__}: {error}".rstrip(": ")
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


# ---------------------------------------------------------------------------------------------
# The student's code, from source


def _cell_text(source: Any) -> str:
    if isinstance(source, list):
        return "".join(str(part) for part in source)
    return source if isinstance(source, str) else ""


def _strip_magics(source: str) -> str:
    lines = []
    for line in source.split("\n"):
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        if stripped.startswith(("%", "!")) or _MAGIC_ASSIGN.match(line) or (stripped.endswith("?") and
                                                                                not stripped.startswith("#")):
            lines.append(f"{indent}pass")
        else:
            lines.append(line)
    return "\n".join(lines)


def _simple_call(node: ast.Call) -> bool:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id in _SAFE_CALLS
    if isinstance(func, ast.Attribute):
        root = func
        while isinstance(root, ast.Attribute):
            root = root.value
        if func.attr == "partial":
            return True
        return isinstance(root, ast.Name) and root.id in {"torch", "nn"} and func.attr[:1].isupper()
    return False


def _is_simple(value: ast.expr) -> bool:
    """A value that is cheap and harmless to compute: see the module docstring."""
    for node in ast.walk(value):
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Call):
            if not _simple_call(node):
                return False
        elif isinstance(node, ast.GeneratorExp | ast.ListComp | ast.SetComp | ast.DictComp | ast.Await |
                        ast.Yield | ast.YieldFrom | ast.NamedExpr):
            return False
    return True


def _kept(node: ast.stmt) -> bool:
    if isinstance(node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return True
    if isinstance(node, ast.Assign):
        names = all(isinstance(t, ast.Name) or (isinstance(t, ast.Tuple) and all(isinstance(e, ast.Name)
                                                                                    for e in t.elts))
                    for t in node.targets)
        return names and _is_simple(node.value)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.value is not None and _is_simple(node.value)
    return False


def _writefile(header: str, body: str, workdir: Path, written: list[Path]) -> str | None:
    """Write a ``%%writefile`` cell; return a note when it was refused."""
    parts = header.split()[1:]
    append = bool(parts) and parts[0] in ("-a", "--append")
    names = parts[1:] if append else parts
    if len(names) != 1:
        return f"`{header.strip()}`: give one file name"
    name = names[0].strip("'\"")
    target = (workdir / name).resolve()
    if Path(name).is_absolute() or ".." in Path(name).parts or not target.is_relative_to(workdir.resolve()):
        return f"`{header.strip()}`: only files inside the working directory are written"
    if len(written) >= MAX_WRITEFILES or len(body.encode("utf-8")) > MAX_WRITEFILE_BYTES:
        return f"`{header.strip()}`: too many or too large files"
    text = body if body.endswith("\n") else body + "\n"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a" if append else "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        return f"`{header.strip()}`: {error.strerror or error}"
    written.append(target)
    return None


def load_cells(cells: list[dict], workdir: Path, namespace: dict) -> list[str]:
    """Execute the student's code cells into ``namespace`` (see the module docstring); return notes
    on what did not run (a cell whose statement raised, a refused ``%%writefile``)."""
    notes: list[str] = []
    written: list[Path] = []
    for cell in cells:
        index = cell.get("index", "?")
        text = _cell_text(cell.get("source", ""))
        first, _, rest = text.partition("\n")
        if first.lstrip().startswith("%%"):
            magic = first.lstrip()[2:].split(maxsplit=1)[0] if first.strip() != "%%" else ""
            if magic in _WRITEFILE:
                note = _writefile(first, rest, workdir, written)
                if note:
                    notes.append(f"cell {index}: {note}")
                continue
            if magic not in _CELL_MAGICS_RUN:
                continue
            text = rest
        try:
            tree = ast.parse(_strip_magics(text))
        except (SyntaxError, ValueError) as error:
            notes.append(f"cell {index}: not valid Python ({error})")
            continue
        for node in tree.body:
            if not _kept(node):
                continue
            try:
                code = compile(ast.Module(body=[node], type_ignores=[]), f"<cell {index}>", "exec")
                exec(code, namespace)  # noqa: S102 - the student's code, inside the sandbox
            except (CpuLimitExceeded, _sentinel_error()):
                raise
            except BaseException as error:  # noqa: BLE001 - as in a kernel: the cell stops, the next runs
                notes.append(f"cell {index} raised {describe_error(error)}")
                break
    return notes


def _sentinel_error() -> type[BaseException]:
    from .sentinels import SentinelError

    return SentinelError


# ---------------------------------------------------------------------------------------------
# The run


def _on_cpu_limit(signum: int, frame: Any) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (hard, hard))  # the time left to write the verdict
    raise CpuLimitExceeded()


def _set_cpu_limit(seconds: float) -> None:
    """RLIMIT_CPU of this process: ``seconds`` in all, imports included (at least 1 s from now)."""
    soft = int(max(seconds, _cpu_used() + 1)) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:  # the sandbox's own limit: trip ours 2 s before it kills
        soft = max(1, min(soft, hard - 2))
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 2 if hard == resource.RLIM_INFINITY else hard))
    signal.signal(signal.SIGXCPU, _on_cpu_limit)


def _cpu_used() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


class _Sink(io.TextIOBase):
    """Swallows what the student's code prints (the probe's output is data, not text)."""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


def _missing(name: str, label: str, problem: str) -> Callable:
    reason = (f"`{name}` is not defined once your notebook has run (Exercise {label}){problem}; keep its "
              "answer cell and make sure that cell runs without an error")

    def stub(*args: Any, **kwargs: Any) -> Any:
        raise NameError(reason)

    stub.__name__ = stub.__qualname__ = name
    return stub


def _student_modules(workdir: Path) -> list[types.ModuleType]:
    found = []
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str):
            try:
                if Path(file).resolve().is_relative_to(workdir):
                    found.append(module)
            except (OSError, ValueError):
                continue
    return found


def _bind_stand_ins(namespace: dict, stand_ins: dict[str, Callable], workdir: Path, under_test: Any) -> None:
    """Put each correct version in place of the student's own, wherever the student's code looks it up."""
    for name, replacement in stand_ins.items():
        old = namespace.get(name)
        namespace[name] = replacement
        for module in _student_modules(workdir):
            if name in vars(module) or (old is not None and any(v is old for v in vars(module).values())):
                for key, value in list(vars(module).items()):
                    if key == name or (old is not None and value is old):
                        setattr(module, key, replacement)
        function = getattr(under_test, "__func__", under_test)
        for attr in ("__defaults__",):
            defaults = getattr(function, attr, None)
            if old is not None and isinstance(defaults, tuple) and any(d is old for d in defaults):
                setattr(function, attr, tuple(replacement if d is old else d for d in defaults))


def _write(outdir: Path, meta: dict, data: dict, savez: Callable, dumps: Callable) -> None:
    import numpy as np

    arrays: dict[str, Any] = {}
    total = 0
    for key, value in data.items():
        array = np.array(value, dtype=np.float64, order="C")  # 0-d arrays stay 0-d
        total += array.nbytes
        if total > MAX_DATA_BYTES:
            meta = dict(meta, status="error", message="the probe's data exceeded its size limit")
            arrays = {}
            break
        arrays[str(key)] = array
    with open(outdir / "data.npz", "wb") as file:
        savez(file, **arrays)
    (outdir / "meta.json").write_text(dumps(meta), encoding="utf-8")


def run(request_path: Path, outdir: Path) -> int:
    """The probe process (see the module docstring); returns its exit status."""
    payload = json.loads(request_path.read_bytes()[:MAX_REQUEST_BYTES])
    from .probes import get_lab_probes

    lab = get_lab_probes(str(payload["lab"]))
    if lab is None:
        raise SystemExit(f"no probes for lab {payload['lab']!r}")
    check = lab.check(str(payload["grade_id"]))
    cpu_seconds = check.cpu_seconds
    if os.environ.get("METACOURSE_PROBE_CPU_SECONDS"):  # the grader (or a test) may only lower it
        cpu_seconds = min(cpu_seconds, float(os.environ["METACOURSE_PROBE_CPU_SECONDS"]))
    _set_cpu_limit(cpu_seconds)
    import numpy as np
    import torch

    torch.set_num_threads(1)
    savez, dumps = np.savez, json.dumps  # taken before any student code runs
    from . import sentinels

    sentinels.install(check.forbidden)
    stand_ins = {name: factory() for name, factory in check.stand_ins.items()}
    workdir = Path(tempfile.mkdtemp(prefix="student-")).resolve()  # in the sandbox's private /tmp
    os.chdir(workdir)
    meta: dict[str, Any] = {"status": "ok", "message": "", "sentinel": None, "cpu_seconds": 0.0, "calls": []}
    data: dict[str, Any] = {}
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = builtins
    real_main, real_out, real_err = sys.modules.get("__main__"), sys.stdout, sys.stderr
    sys.modules["__main__"] = main
    sys.path.insert(0, str(workdir))
    sys.stdout = sys.stderr = _Sink()
    try:
        notes = load_cells(list(payload.get("cells", [])), workdir, main.__dict__)
        functions: dict[str, Callable] = {}
        for name in lab.exercises:
            value = main.__dict__.get(name)
            if not callable(value):
                problem = f" (it is {type(value).__name__}, not a function)" if name in main.__dict__ else ""
                if notes:
                    problem += "; " + "; ".join(notes)[:600]
                value = _missing(name, _label(lab, name), problem)
            functions[name] = value
        _bind_stand_ins(main.__dict__, stand_ins, workdir, functions.get(check.exercise))
        functions.update(stand_ins)
        data, calls = check.probe(functions, payload.get("request", {}))
        meta["calls"] = calls
    except sentinels.SentinelError:
        pass
    except CpuLimitExceeded:
        meta.update(status="error", message=(f"it ran past its CPU-time limit ({cpu_seconds:g} CPU seconds); "
                                             f"look for an endless loop in {check.exercise}"))
        data = {}
    except BaseException as error:  # noqa: BLE001 - e.g. SystemExit from a student's module
        meta.update(status="error", message=f"it stopped: {describe_error(error)}")
        data = {}
    finally:
        sys.stdout, sys.stderr = real_out, real_err
        if real_main is not None:
            sys.modules["__main__"] = real_main
    hit = sentinels.tripped()
    if hit:
        meta.update(status="sentinel", sentinel=hit[0], message=f"{check.exercise} calls {hit[0]}")
        data = {}
    meta["cpu_seconds"] = round(_cpu_used(), 3)
    _write(outdir, meta, data, savez, dumps)
    return 0


def _label(lab: Any, name: str) -> str:
    module = sys.modules.get(f"{__package__}.labs.{lab.lab}")
    return getattr(module, "EXERCISE_LABELS", {}).get(name, "?")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m metacourse.course.grading.runner REQUEST.json OUTDIR", file=sys.stderr)
        return 2
    outdir = Path(args[1])
    outdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        status = run(Path(args[0]), outdir)
    except BaseException:  # noqa: BLE001 - the grader reads a missing meta.json as a failed check
        traceback.print_exc(limit=-5)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if os.environ.get("METACOURSE_RUNNER_TIMING"):
        print(f"runner: {time.monotonic() - started:.2f} s wall, {_cpu_used():.2f} s CPU", file=sys.stderr)
    os._exit(status)  # skip interpreter teardown: the student's objects may hang in it


if __name__ == "__main__":
    # run as -m: delegate to the imported module, so that its exceptions are the ones the probes catch
    from metacourse.course.grading.runner import main as _main

    sys.exit(_main())
