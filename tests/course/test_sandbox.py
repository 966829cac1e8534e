"""Tests of the grader's sandbox (metacourse.course.grading.sandbox): what a submission's code can
reach, what it is allowed to use, and that nothing it starts outlives it."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from metacourse.course.grading import sandbox
from metacourse.course.grading.sandbox import Limits, SandboxUnavailable, run_sandboxed, sandbox_available

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "metacourse"
AVAILABLE, WHY = sandbox_available()
REQUIRED = os.environ.get("METACOURSE_REQUIRE_SANDBOX") == "1"  # CI: fail, do not skip
needs_sandbox = pytest.mark.skipif(not AVAILABLE and not REQUIRED, reason=f"no sandbox here: {WHY}")
QUICK = Limits(cpu_seconds=20, wall_seconds=60)


def _python(code: str, tmp_path: Path, limits: Limits = QUICK, **kwargs):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    run = run_sandboxed([sys.executable, "-I", "-c", textwrap.dedent(code)], workdir=kwargs.pop("workdir", None),
                        outdir=out, limits=limits, **kwargs)
    return run, out


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@needs_sandbox
def test_no_network_and_no_view_of_the_host(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "answers.txt").write_text("42")
    run, out = _python(f"""
        import json, os, socket
        r = {{}}
        try:
            socket.create_connection(("1.1.1.1", 80), timeout=2)
            r["net"] = "connected"
        except OSError as error:
            r["net"] = type(error).__name__
        r["secret"] = os.path.exists({str(secret)!r})
        r["solutions"] = os.path.exists({str(ROOT / 'solutions')!r})
        r["repo"] = os.path.exists({str(ROOT / 'pyproject.toml')!r})
        r["grader_home"] = os.path.exists({str(Path.home())!r}) and os.listdir({str(Path.home())!r})
        r["home"] = (os.environ["HOME"], os.listdir(os.environ["HOME"]))
        r["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
        r["ppid"] = os.getppid()
        r["package"] = os.path.isfile({str(PACKAGE / '__init__.py')!r})
        json.dump(r, open({str(tmp_path / 'out' / 'report.json')!r}, "w"))
    """, tmp_path, hidden=[secret])
    assert run.ok, run.stderr_tail
    r = _report(out)
    assert r["net"] in ("OSError", "ConnectionRefusedError") or "Error" in r["net"]
    assert r["net"] != "connected"
    assert not r["secret"] and not r["solutions"] and not r["repo"]
    assert r["home"] == [sandbox.HOME, []]
    on_the_way = {Path(p).resolve().relative_to(Path.home()).parts[0] for p in (sys.base_prefix, sys.prefix)
                  if Path(p).resolve().is_relative_to(Path.home())}
    assert set(r["grader_home"] or []) <= on_the_way  # only the folders leading to Python, if it lives there
    assert r["package"]  # the installed package is there, read-only
    assert len(r["pids"]) <= 3 and r["ppid"] in (0, 1)  # its own process tree only: the grader is not there


@needs_sandbox
def test_the_package_and_the_system_are_read_only(tmp_path: Path) -> None:
    target = PACKAGE / "checks" / "__init__.py"
    before = target.read_bytes()
    run, out = _python(f"""
        import json, os
        r = {{}}
        for path in ({str(target)!r}, "/usr/lib/x", {str(PACKAGE / 'new.py')!r}):
            try:
                open(path, "a").write("x = 1\\n")
                r[path] = "written"
            except OSError as error:
                r[path] = error.errno
        open(os.path.join(os.environ["HOME"], ".bashrc"), "w").write("echo hi")  # private: allowed
        open("/tmp/scratch", "w").write("ok")
        json.dump(r, open({str(tmp_path / 'out' / 'report.json')!r}, "w"))
    """, tmp_path)
    assert run.ok, run.stderr_tail
    assert "written" not in _report(out).values()
    assert target.read_bytes() == before and not (PACKAGE / "new.py").exists()


@needs_sandbox
def test_every_process_it_started_is_killed_when_it_ends(tmp_path: Path) -> None:
    token = f"metacourse-test-{uuid.uuid4().hex}"
    run, _ = _python(f"""
        import subprocess
        subprocess.Popen(["sh", "-c", "sleep 300; echo {token}"], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if __import__("os").fork() == 0:
            __import__("os").setsid()
            __import__("time").sleep(300)
    """, tmp_path)
    assert run.returncode == 0 and not run.timed_out
    alive = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if token.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                alive.append(pid)
        except OSError:
            continue
    assert alive == []


@needs_sandbox
def test_limits_stop_cpu_time_file_size_processes_and_wall_time(tmp_path: Path) -> None:
    cpu, _ = _python("while True: pass", tmp_path, Limits(cpu_seconds=1, wall_seconds=60))
    assert cpu.returncode != 0 and not cpu.timed_out and cpu.wall < 30
    big, _ = _python("open('/tmp/big', 'wb').write(b'x' * 3_000_000)", tmp_path,
                     Limits(cpu_seconds=20, wall_seconds=60, file_bytes=1_000_000))
    assert big.returncode != 0
    forks, out = _python(f"""
        import os, json, time
        made = 0
        try:
            for _ in range(200):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                made += 1
        except OSError:
            pass
        json.dump(made, open({str(tmp_path / 'out' / 'report.json')!r}, "w"))
        os._exit(0)
    """, tmp_path, Limits(cpu_seconds=20, wall_seconds=60, max_processes=20))
    assert _report(out) < 20
    slow, _ = _python("import time; time.sleep(60)", tmp_path, Limits(cpu_seconds=20, wall_seconds=1))
    assert slow.timed_out and slow.wall < 20


@needs_sandbox
def test_overlays_replace_a_package_file_for_one_run_only(tmp_path: Path) -> None:
    target = PACKAGE / "checks" / "__init__.py"
    before = target.read_bytes()
    run, out = _python(f"""
        import json
        json.dump(open({str(target)!r}).read(), open({str(tmp_path / 'out' / 'report.json')!r}, "w"))
    """, tmp_path, overlays={str(target): "REPLACED = True\n"})
    assert run.ok, run.stderr_tail
    assert _report(out) == "REPLACED = True\n" and target.read_bytes() == before
    with pytest.raises(ValueError, match="not a file of the installed package"):
        _python("pass", tmp_path, overlays={str(tmp_path / "x.py"): "x = 1"})


@needs_sandbox
def test_workdir_and_outdir_are_the_only_writable_host_folders(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    run, out = _python(f"""
        import os
        open("here.txt", "w").write(os.getcwd())
        open({str(tmp_path / 'out' / 'there.txt')!r}, "w").write("out")
        try:
            open({str(tmp_path / 'elsewhere.txt')!r}, "w").write("no")
        except OSError:
            pass
    """, tmp_path, workdir=work)
    assert run.ok, run.stderr_tail
    assert (work / "here.txt").read_text() == str(work) and (out / "there.txt").read_text() == "out"
    assert not (tmp_path / "elsewhere.txt").exists()


def test_without_bubblewrap_the_grader_refuses_and_names_the_fix(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    from metacourse.cli import main
    from metacourse.course.grading import grade

    monkeypatch.setattr(sandbox, "_bwrap", lambda: None)
    monkeypatch.setattr(sandbox, "_AVAILABLE", None)
    ok, why = sandbox_available()
    assert not ok and "apt-get install bubblewrap" in why and "--no-sandbox" in why
    fixture = ROOT / "tests" / "fixtures" / "grading" / "solutions" / "lab90_grading_fixture.ipynb"
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        grade(fixture, tmp_path, tmp_path / "out")
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        run_sandboxed(["true"], workdir=None, outdir=tmp_path, limits=QUICK)
    assert main(["grade", str(fixture), str(tmp_path), "--out", str(tmp_path / "out")]) == 2


def test_no_sandbox_runs_the_command_with_the_same_limits(tmp_path: Path) -> None:
    run, out = _python(f"""
        import json, os
        json.dump(os.environ.get("METACOURSE_FAST"), open({str(tmp_path / 'out' / 'report.json')!r}, "w"))
    """, tmp_path, env={"METACOURSE_FAST": "1"}, sandbox=False)
    assert run.ok and _report(out) == "1"
    cpu, _ = _python("while True: pass", tmp_path, Limits(cpu_seconds=1, wall_seconds=60), sandbox=False)
    assert cpu.returncode != 0 and not cpu.timed_out


def test_python_under_tmp_is_bound_on_top_of_the_private_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A virtual environment under /tmp (as in CI) must stay visible: its bind comes after /tmp's tmpfs."""
    venv = Path("/tmp") / f"venv-{uuid.uuid4().hex}"
    venv.mkdir()
    try:
        monkeypatch.setattr(sandbox, "_bwrap", lambda: "/usr/bin/bwrap")
        monkeypatch.setattr(sandbox, "_python_paths", lambda: [venv])
        cmd = sandbox._command(["python"], None, tmp_path, {}, {}, (), Limits(cpu_seconds=5, wall_seconds=5))
        tmpfs = max(i for i, word in enumerate(cmd) if word == "--tmpfs" and cmd[i + 1] == "/tmp")
        bind = next(i for i, word in enumerate(cmd) if word == "--ro-bind" and cmd[i + 1] == str(venv))
        assert tmpfs < bind, "the private /tmp would hide a Python that lives under /tmp"
    finally:
        venv.rmdir()
