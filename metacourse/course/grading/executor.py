"""Run one student's notebook, inside the sandbox: ``python -I -m metacourse.course.grading.executor OUTDIR``.

The grader (the trusted parent, :mod:`metacourse.course.grading`) starts this module in a sandbox of
the submission's own (:mod:`.sandbox`) and hands it a JSON request on standard input: the notebook
as the parent read it from the submission file, the limits, and for the checks that have no probe
yet (the legacy path) the solution's check cells. Reading the request first thing, from a pipe,
keeps it out of the files the student's code can read.

1. **Executes** the notebook, cell by cell in the student's order, in a fresh Jupyter kernel
   (nbclient; ``METACOURSE_FAST=1``; the sandbox's private working directory). A cell that raises is
   recorded and the next cell runs. A cell past ``cell_timeout`` is interrupted; if the kernel does
   not answer, or a cell ends the kernel (``os._exit``, a crash), that cell is dropped and the
   notebook is run again from the top without it. ``total_timeout`` bounds the whole run. Outputs
   are capped (``max_cell_output`` characters a cell, ``max_output`` a notebook).
2. **Legacy checks** (only for check cells without a probe): takes the exercise functions by name
   from the kernel (``cloudpickle``), ends every process the notebook left behind, and runs the
   solution's check cells (public then hidden part) in fresh processes, one check's failure or hang
   costing that check only. The verdicts of this path are decided in here, beside the student's
   code: weaker than the probes, whose verdicts the parent decides from plain data.
3. Writes ``OUTDIR/executed.ipynb`` (feedback) and ``OUTDIR/run.json``: ``notes`` (one sentence per
   problem), ``cells`` (index and status of every code cell: ok, error, timeout, stuck, dead,
   not-run), ``exported`` and ``checks`` (grade_id -> outcome of the legacy checks). The parent
   validates both files (size, schema) and treats anything else as a failed run.

Only the standard library is imported at import time (nbclient, nbformat and cloudpickle when used).
"""

from __future__ import annotations

import asyncio
import atexit
import builtins
import contextlib
import copy
import ctypes
import functools
import io
import json
import logging
import math
import os
import pickle
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..notebook import cell_source
from .run_limits import NotebookLimits

KERNEL_NAME = "python3"
"""The kernel every submission runs in, whatever kernelspec the notebook names."""

_MAX_KERNEL_STARTS = 4  # a notebook whose cells end the kernel 3 times is given up on
_PING_TIMEOUT = 5.0  # seconds a kernel has to answer after an interrupt
_HARD_GRACE = 15.0  # seconds past a cell's timeout before its kernel is killed outright
_EXPORT_TIMEOUT = 60.0
_WORKER_STARTUP = 120.0  # seconds the grading process may take to import the checks' modules
_MAX_CONTEXT_BYTES = 50_000_000  # notebook values larger than this are not passed to the checks
_MAX_NOTE_CHARS = 300
_TIMEOUT_ENAME = "CellTimeoutError"
_QUIET = logging.getLogger("metacourse.course.grading.kernel")  # nbclient's timeout and kernel messages
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def _shorten(text: str, limit: int = _MAX_NOTE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


@dataclass(frozen=True)
class _Job:
    """What the parent asks for besides the notebook (see the module docstring)."""

    exercises: dict[str, str]
    """Exercise function name -> exercise label, taken from the kernel for the legacy checks."""
    context: list[str]
    """Other names the legacy checks read (``FAST``, a model built in a setup cell)."""
    prelude: list[str]
    """The solution's top-level imports the legacy checks need."""
    checks: list[tuple[str, str, str]]
    """(grade_id, public source, hidden source) of each legacy check cell."""


# ---------------------------------------------------------------------------------------------
# Running one notebook in a kernel


@functools.lru_cache(maxsize=1)
def _client_class() -> type:
    """An nbclient ``NotebookClient`` that caps outputs and records each cell's error reply."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_output

    class CappedClient(NotebookClient):
        def __init__(self, nb, *, max_cell_output: int, max_output: int, **kwargs):
            super().__init__(nb, **kwargs)
            self.max_cell_output, self.max_output = max_cell_output, max_output
            self.cell_chars: dict[int, int] = {}
            self.total_chars = 0
            self.capped: set[int] = set()
            self.errors: dict[int, dict] = {}

        def output(self, outs, msg, display_id, cell_index):
            if cell_index in self.capped:
                return None
            size = _message_size(msg)
            room = min(self.max_cell_output - self.cell_chars.get(cell_index, 0),
                       self.max_output - self.total_chars)
            if size > room:
                self.capped.add(cell_index)
                if msg["msg_type"] == "stream" and room > 0:
                    msg = copy.deepcopy(msg)
                    msg["content"]["text"] = msg["content"]["text"][:room]
                    super().output(outs, msg, display_id, cell_index)
                cell_full = self.cell_chars.get(cell_index, 0) + size > self.max_cell_output
                limit = self.max_cell_output if cell_full else self.max_output
                outs.append(new_output("stream", name="stderr", text=(
                    f"\n[metacourse grade: output cut here, past {limit} characters]\n")))
                size = max(room, 0)
            self.cell_chars[cell_index] = self.cell_chars.get(cell_index, 0) + size
            self.total_chars += size
            return None if cell_index in self.capped else super().output(outs, msg, display_id, cell_index)

        async def _check_raise_for_error(self, cell, cell_index, exec_reply):
            if exec_reply is not None and exec_reply["content"].get("status") == "error":
                self.errors[cell_index] = exec_reply["content"]
            return await super()._check_raise_for_error(cell, cell_index, exec_reply)

    return CappedClient


def _message_size(msg: dict) -> int:
    content = msg.get("content", {})
    if msg.get("msg_type") == "stream":
        return len(content.get("text", ""))
    if msg.get("msg_type") == "error":
        return sum(map(len, content.get("traceback", []))) + len(content.get("evalue", ""))
    return sum(len(str(value)) for value in content.get("data", {}).values())


def _describe_cell(nb: Any, index: int) -> str:
    cell = nb.cells[index]
    first = next((line.strip() for line in cell_source(cell).split("\n") if line.strip()), "")
    cell_id = cell.get("id")
    where = f"cell {index}" + (f" (id {cell_id!r})" if cell_id else "")
    return f"{where} `{_shorten(first, 60)}`"


@dataclass
class _Execution:
    notes: list[str]
    exported: bool
    nb: Any
    statuses: dict[int, str]


async def _responsive(client: Any, timeout: float = _PING_TIMEOUT) -> bool:
    """True when the kernel answers a ``kernel_info`` request within ``timeout`` seconds."""
    from queue import Empty

    try:
        msg_id = client.kc.kernel_info()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            msg = await client.kc.shell_channel.get_msg(timeout=remaining)
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
    except Empty:
        return False


async def _run_cell(client: Any, index: int, timeout: float) -> str:
    """Execute one cell; return ok, error, timeout (interrupted), stuck (no answer) or dead."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    client.timeout = max(1, math.ceil(timeout))
    client.error_on_timeout = {"ename": _TIMEOUT_ENAME, "evalue": f"{client.timeout} s", "traceback": []}
    client.errors.pop(index, None)
    task = asyncio.ensure_future(client.async_execute_cell(client.nb.cells[index], index))
    finished, _ = await asyncio.wait({task}, timeout=client.timeout + _HARD_GRACE)
    if not finished:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        return "stuck"
    try:
        task.result()
    except DeadKernelError:
        return "dead"
    except CellTimeoutError:
        return "stuck"
    reply = client.errors.get(index)
    if reply is None:
        return "ok"
    if reply.get("ename") == _TIMEOUT_ENAME:
        return "timeout" if await _responsive(client) else "stuck"
    return "error"


def _note_for(outcome: str, reply: dict | None, timeout: float) -> str:
    if outcome == "error" and reply is not None:
        ename, evalue = reply.get("ename", "Error"), _shorten(str(reply.get("evalue", "")), 120)
        return f"raised {ename}: {evalue}" if evalue else f"raised {ename}"
    if outcome == "timeout":
        return f"ran past the cell time limit ({timeout:.0f} s) and was interrupted"
    if outcome == "stuck":
        return (f"ran past the cell time limit ({timeout:.0f} s) and did not stop when interrupted; "
                "the notebook was run again without it")
    return "ended the kernel (os._exit or a crash); the notebook was run again without it"


_STARTUP = """\
# Written by metacourse grade: `exit()` and `quit()` end a cell, not the kernel, so that the cells
# before them count whatever the machine's load (the kernel would shut down a moment later).
get_ipython().ask_exit = lambda *args, **kwargs: None
"""


def _kernel_env(limits: NotebookLimits, private: Path) -> dict[str, str]:
    env = dict(os.environ, METACOURSE_FAST="1", PYTHONUNBUFFERED="1")
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, str(limits.threads))
    startup = private / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-metacourse-grade.py").write_text(_STARTUP, encoding="utf-8")
    env["IPYTHONDIR"] = str(private / "ipython")  # never the grader's own ~/.ipython (--no-sandbox)
    return env


async def _execute(nb: Any, job: _Job, limits: NotebookLimits, workdir: Path, export_path: Path) -> _Execution:
    """Run the notebook's code cells; then write the exercise functions to ``export_path``."""
    notes: dict[int, str] = {}
    dropped: set[int] = set()
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and cell_source(cell).strip()]
    deadline = time.monotonic() + limits.total_timeout
    ran: set[int] = set()  # cells that finished in an earlier kernel: replayed past the deadline too
    statuses: dict[int, str] = {}
    for _ in range(_MAX_KERNEL_STARTS):
        client = _client_class()(
            nb, kernel_name=KERNEL_NAME, allow_errors=True, interrupt_on_timeout=True,
            record_timing=False, store_widget_state=False, shutdown_kernel="immediate",
            startup_timeout=120, max_cell_output=limits.max_cell_output, max_output=limits.max_output,
            log=_QUIET,
        )
        restart = started = False
        try:
            async with client.async_setup_kernel(env=_kernel_env(limits, export_path.parent), cwd=str(workdir),
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
                started = True
                restart = await _run_cells(client, nb, code, (dropped, ran, statuses), notes, limits, deadline)
                if not restart:
                    failure = await _export(client, job, export_path)
                    if failure:
                        notes[len(nb.cells)] = f"taking the exercise functions from the kernel {failure}"
                    return _Execution(_ordered_notes(nb, notes), failure is None, nb, statuses)
        except (RuntimeError, TimeoutError) as error:  # the kernel did not start: try again
            if started:
                raise
            atexit.unregister(client._cleanup_kernel)
            notes[len(nb.cells) + 1] = f"a kernel did not start ({_shorten(str(error), 120)})"
    notes[len(nb.cells)] = f"gave up after {_MAX_KERNEL_STARTS} kernel starts"
    return _Execution(_ordered_notes(nb, notes), False, nb, statuses)


async def _run_cells(client: Any, nb: Any, code: list[int], state: tuple[set[int], set[int], dict[int, str]],
                     notes: dict[int, str], limits: NotebookLimits, deadline: float) -> bool:
    """Run the code cells not dropped; return True when the kernel must be restarted.

    ``state`` is (dropped, ran): cells left out for good, and cells that finished in an earlier
    kernel (they are replayed even past the notebook's deadline, so that what ran still counts).
    """
    dropped, ran, statuses = state
    for index in code:
        if index in dropped:
            continue
        nb.cells[index].outputs, nb.cells[index].execution_count = [], None
        remaining = deadline - time.monotonic()
        if remaining < 1 and index not in ran:
            limit = limits.total_timeout
            notes.setdefault(index, f"not run: the notebook used up its time limit ({limit:.0f} s)")
            statuses[index] = "not-run"
            continue
        timeout = limits.cell_timeout if index in ran else min(limits.cell_timeout, remaining)
        outcome = await _run_cell(client, index, timeout)
        statuses[index] = outcome
        if outcome != "ok":
            notes.setdefault(index, _note_for(outcome, client.errors.get(index), timeout))
        if outcome in ("dead", "stuck"):
            dropped.add(index)
            return True
        ran.add(index)
    return False


def _ordered_notes(nb: Any, notes: dict[int, str]) -> list[str]:
    return [
        f"{_describe_cell(nb, index)} {note}" if index < len(nb.cells) else note
        for index, note in sorted(notes.items())
    ]


_EXPORT_SOURCE = """\
def _metacourse_grade_export(namespace, path, exercises, context, max_bytes):
    import functools, pickle
    import cloudpickle
    payload = {"functions": {}, "context": {}, "problems": {}}
    for name in exercises:
        if name not in namespace:
            payload["problems"][name] = ("missing", "")
            continue
        obj = namespace[name]
        if not callable(obj):
            payload["problems"][name] = ("missing", f"it is {type(obj).__name__}, not a function")
            continue
        target = obj.func if isinstance(obj, functools.partial) else obj
        module = getattr(target, "__module__", None)
        if module != "__main__":
            where = f"{module}.{getattr(target, '__qualname__', name)}" if module else repr(obj)
            payload["problems"][name] = ("foreign", where)
            continue
        try:
            payload["functions"][name] = cloudpickle.dumps(obj)
        except Exception as error:
            payload["problems"][name] = ("unpicklable", f"{type(error).__name__}: {error}")
    for name in context:
        if name in namespace and name not in exercises:
            try:
                blob = cloudpickle.dumps(namespace[name])
            except Exception:
                continue
            if len(blob) <= max_bytes:
                payload["context"][name] = blob
    with open(path, "wb") as file:
        pickle.dump(payload, file)
_metacourse_grade_export(globals(), __ARGS__)
del _metacourse_grade_export
"""


async def _export(client: Any, job: _Job, export_path: Path) -> str | None:
    """Write the exercise functions (and the values the checks read) to ``export_path`` from the
    kernel; return None, or what went wrong."""
    from nbformat.v4 import new_code_cell

    context = sorted(set(job.context) - set(job.exercises))
    args = ", ".join(map(repr, (str(export_path), list(job.exercises), context, _MAX_CONTEXT_BYTES)))
    source = _EXPORT_SOURCE.replace("__ARGS__", args)
    client.nb.cells.append(new_code_cell(source))
    index = len(client.nb.cells) - 1
    try:
        outcome = await _run_cell(client, index, _EXPORT_TIMEOUT)
    finally:
        client.nb.cells.pop()
    if outcome == "ok" and export_path.is_file():
        return None
    return _note_for(outcome, client.errors.get(index), _EXPORT_TIMEOUT)


# ---------------------------------------------------------------------------------------------
# Running the checks in a fresh process


class _CappedText(io.TextIOBase):
    """A text sink that keeps the first ``limit`` characters written to it."""

    def __init__(self, limit: int):
        self.limit, self.parts, self.size, self.cut = limit, [], 0, False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        room = self.limit - self.size
        if len(text) > room:
            self.cut = True
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        return len(text)

    def getvalue(self) -> str:
        cut = f"\n[metacourse grade: output cut here, past {self.limit} characters]" if self.cut else ""
        return "".join(self.parts) + cut


def _describe_error(error: BaseException, hidden: bool) -> str:
    message = str(error).strip()
    if isinstance(error, AssertionError) or hidden:
        name = "" if isinstance(error, AssertionError) else f"{type(error).__name__}: "
        return f"{name}{message}" if message or name else "assertion failed"
    lines = traceback.format_exception(type(error), error, error.__traceback__, limit=-4)
    return "".join(lines).strip()


def _missing_stub(name: str, label: str, problem: tuple[str, str] | None) -> Any:
    kind, detail = problem or ("not-run", "")
    reasons = {
        "missing": f"`{name}` is not defined once your notebook has run{f' ({detail})' if detail else ''} "
                   f"(Exercise {label}); keep its answer cell and make sure that cell runs without an error",
        "foreign": f"`{name}` is {detail}, imported instead of written in your notebook (Exercise "
                   f"{label}); define it yourself with `def {name}(...)` in the answer cell",
        "unpicklable": f"`{name}` could not be taken from your notebook ({detail}); keep it a plain "
                       "function whose globals are modules, functions or data (no open files or threads)",
        "not-run": f"`{name}` could not be taken from your notebook because the notebook did not run "
                   "to its end (see the notes above)",
    }
    reason = reasons.get(kind, f"`{name}` is unavailable: {detail}")

    def stub(*args: Any, **kwargs: Any) -> Any:
        raise NameError(reason)

    stub.__name__ = stub.__qualname__ = name
    return stub


def _worker_setup(spec: dict) -> dict:
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    for statement in spec["prelude"]:
        with contextlib.suppress(Exception):
            exec(compile(statement, "<setup imports>", "exec"), namespace)
    payload = {"functions": {}, "context": {}, "problems": {}}
    if os.path.isfile(spec["export"]):
        with open(spec["export"], "rb") as file:
            payload = pickle.load(file)
    for name, blob in payload["context"].items():
        if name not in namespace:  # the solution's imports win over the notebook's values
            with contextlib.suppress(Exception):
                namespace[name] = pickle.loads(blob)
    exported = os.path.isfile(spec["export"])
    for name, label in spec["exercises"].items():
        problem = payload["problems"].get(name) if exported else None
        if name in payload["functions"]:
            try:
                namespace[name] = pickle.loads(payload["functions"][name])
                continue
            except Exception as error:
                problem = ("unpicklable", f"{type(error).__name__}: {error}")
        namespace[name] = _missing_stub(name, label, problem)
    return namespace


def _worker_run_part(source: str, filename: str, namespace: dict, sink: _CappedText, hidden: bool) -> str | None:
    """Run one part of a check cell; return None when it passed, else what went wrong."""
    try:
        code = compile(source, filename, "exec")
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            exec(code, namespace)
    except BaseException as error:  # noqa: BLE001 - SystemExit and KeyboardInterrupt are failures too
        return _describe_error(error, hidden)
    return None


def _worker_main(spec_path: str) -> None:
    """Entry point of the grading process: run the checks listed in ``spec_path``, log to JSONL."""
    with open(spec_path, "rb") as file:
        spec = pickle.load(file)
    with open(spec["progress"], "a", encoding="utf-8") as log:
        def emit(event: dict) -> None:
            log.write(json.dumps(event) + "\n")
            log.flush()

        namespace = _worker_setup(spec)
        emit({"event": "ready"})
        for grade_id, public, hidden in spec["checks"]:
            emit({"event": "start", "grade_id": grade_id})
            sink = _CappedText(spec["max_output"])
            public_error = _worker_run_part(public, f"<check {grade_id}>", namespace, sink, hidden=False)
            hidden_error = None
            if hidden:
                hidden_error = _worker_run_part(hidden, f"<hidden check {grade_id}>", namespace, sink, hidden=True)
            emit({"event": "done", "grade_id": grade_id, "output": sink.getvalue(),
                  "public": public_error, "hidden": hidden_error, "has_hidden": bool(hidden)})
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: the students' objects may hang in it


def _read_events(path: Path, offset: int) -> tuple[list[dict], int]:
    if not path.is_file():
        return [], offset
    with open(path, encoding="utf-8") as file:
        file.seek(offset)
        text = file.read()
    complete = text[: text.rfind("\n") + 1]
    events = [json.loads(line) for line in complete.splitlines() if line.strip()]
    return events, offset + len(complete.encode("utf-8"))


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


async def _run_worker(job: _Job, todo: list[tuple[str, str, str]], export_path: Path, workdir: Path,
                      limits: NotebookLimits, attempt: int) -> tuple[dict[str, dict], str | None]:
    """Start one grading process for ``todo``; return the finished checks and, if it stopped
    early, the grade_id it stopped in (or "" before the first check) with the reason."""
    progress, spec_path = workdir / f"progress-{attempt}.jsonl", workdir / f"checks-{attempt}.pkl"
    payload = {"prelude": list(job.prelude), "export": str(export_path), "exercises": job.exercises,
               "checks": [tuple(check) for check in todo], "progress": str(progress),
               "max_output": limits.max_cell_output}
    spec_path.write_bytes(pickle.dumps(payload))
    stderr_path = workdir / f"worker-{attempt}.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-I", "-m", "metacourse.course.grading.executor", "--worker", str(spec_path),
            cwd=str(workdir), env=_kernel_env(limits, workdir), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr)
    done: dict[str, dict] = {}
    offset, current, since = 0, "", time.monotonic()
    stopped: str | None = None
    while True:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 0.1)
        events, offset = _read_events(progress, offset)
        for event in events:
            if event["event"] == "start":
                current, since = event["grade_id"], time.monotonic()
            elif event["event"] == "done":
                done[event["grade_id"]], current = event, ""
            elif event["event"] == "ready":
                since = time.monotonic()
        if proc.returncode is not None:
            if len(done) < len(todo):
                tail = _tail(stderr_path)
                stopped = (f"the grading process ended during this check (exit code {proc.returncode})"
                           + (f": {tail}" if tail else ""))
            break
        limit = limits.check_timeout if current else max(_WORKER_STARTUP, limits.check_timeout)
        if time.monotonic() - since > limit:
            await _kill(proc)
            stopped = (f"ran past the check time limit ({limits.check_timeout:.0f} s)" if current
                       else f"the grading process did not start within {limit:.0f} s: {_tail(stderr_path)}")
            break
    if stopped is None:
        return done, None
    return done, f"{current}\0{stopped}"


def _tail(path: Path, limit: int = 600) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return text[-limit:]


async def _run_checks(job: _Job, export_path: Path, workdir: Path, limits: NotebookLimits) -> dict[str, dict]:
    """Run every legacy check of ``job``; a check that hangs or ends the process fails alone."""
    results: dict[str, dict] = {}
    for attempt in range(len(job.checks) + 1):
        todo = [check for check in job.checks if check[0] not in results]
        if not todo:
            break
        done, stopped = await _run_worker(job, todo, export_path, workdir, limits, attempt)
        results.update(done)
        if stopped is None:
            continue
        grade_id, reason = stopped.split("\0", 1)
        failed = [grade_id] if grade_id else [check[0] for check in todo if check[0] not in results]
        for name in failed:
            results[name] = {"grade_id": name, "output": "", "public": reason, "hidden": None, "has_hidden": False}
    return results



# ---------------------------------------------------------------------------------------------
# The entry points


def _not_dumpable() -> None:
    """Keep this process's memory (the request, the hidden checks) from the student's processes."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4


def _end_the_others(sandboxed: bool) -> None:
    """Kill every other process of the sandbox (what the notebook left running: daemons, children).

    ``kill(-1)`` reaches every process this one may signal; it is only safe inside a pid namespace of
    our own, whose process 1 is bubblewrap's: checked before, and never done without the sandbox.
    """
    if not sandboxed or os.getpid() == 1:
        return
    try:
        init = Path("/proc/1/comm").read_text().strip()
    except OSError:
        return
    if init != "bwrap":
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(-1, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG) != (0, 0):
            pass


def _fresh(path: Path) -> None:
    """Remove whatever the notebook put at ``path`` (a file, a link, a folder) before writing it."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        import shutil

        shutil.rmtree(path)


async def _main_async(request: dict, outdir: Path) -> dict:
    import nbformat

    limits = NotebookLimits(**request["limits"])
    job = _Job(dict(request["exercises"]), list(request["context"]), list(request["prelude"]),
               [tuple(check) for check in request["checks"]])
    workdir = Path.cwd()
    private = Path(request.get("private") or workdir / ".grader")
    private.mkdir(parents=True, exist_ok=True)
    export_path = private / "exported.pkl"
    nb = nbformat.from_dict(request["notebook"])
    execution = await _execute(nb, job, limits, workdir, export_path)
    _end_the_others(request.get("sandboxed", False))
    checks: dict[str, dict] = {}
    if job.checks and execution.exported:
        checks = await _run_checks(job, export_path, private, limits)
        _end_the_others(request.get("sandboxed", False))
    for name in ("executed.ipynb", "run.json"):
        _fresh(outdir / name)
    nbformat.write(execution.nb, outdir / "executed.ipynb")
    cells = [{"index": i, "status": execution.statuses.get(i, "not-run")}
             for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    return {"notes": execution.notes, "cells": cells, "exported": execution.exported, "checks": checks}


def main(argv: list[str] | None = None) -> int:
    """``executor OUTDIR`` (request on stdin) or ``executor --worker SPEC`` (a legacy check process)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--worker":
        _worker_main(args[1])
        return 0
    if len(args) != 1:
        print("usage: python -m metacourse.course.grading.executor OUTDIR < request.json", file=sys.stderr)
        return 2
    request = json.loads(sys.stdin.buffer.read())
    _not_dumpable()
    outdir = Path(args[0])
    result = asyncio.run(_main_async(request, outdir))
    (outdir / "run.json").write_text(json.dumps(result), encoding="utf-8")
    sys.stdout.flush()
    os._exit(0)  # skip interpreter teardown: nothing of the student's is left to wait for


if __name__ == "__main__":
    sys.exit(main())
