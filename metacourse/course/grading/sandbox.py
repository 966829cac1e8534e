"""Run one command in a sandbox of its own: how every submission's code is run by the grader.

:func:`run_sandboxed` starts ``argv`` under bubblewrap (``bwrap``, Debian's ``bubblewrap``) in new
user, pid, network, mount, ipc and uts namespaces:

- **no network** (a loopback interface only: the notebook's kernel talks to its client over it);
- **a whitelist of the file system**, read-only: the system's libraries (``/usr``), a few files of
  ``/etc``, the Python installation and the virtual environment, the installed ``metacourse``
  package, the data folder (``METACOURSE_DATA``) and the paths the caller names in ``readonly``.
  Nothing else of the host exists inside: not ``solutions/``, not the submissions folder, not the
  output folder, not the repository, not the grader's ``$HOME`` (``hidden`` paths are covered with
  an empty folder even when a whitelisted folder holds them);
- **private, empty** ``$HOME`` (``/home/student``) and ``/tmp`` (size-limited tmpfs), and two
  writable folders only: ``workdir`` (the working directory) and ``outdir``, bound at their host
  paths so that the same command line works with and without the sandbox;
- ``overlays``: files of the installed package replaced, for this run only, by other source text
  (bind-mounted read-only over the file): how the probes put sentinels in place of the reference;
- **its own process tree**: the processes it starts see only each other in ``/proc``; none of them
  can see or signal the grader or a classmate's sandbox; all are killed when the command ends, when
  it runs past ``limits.wall_seconds`` or when the grader dies (``--die-with-parent``);
- **limits** (``setrlimit`` before ``bwrap`` starts, inherited by everything inside): CPU seconds per
  process, address space, processes (counted per sandbox: each runs in its own user namespace), the
  size of any file written, no core files;
- **no capabilities**: the command runs as uid 65534 inside, cannot remount what is read-only and
  cannot create further user namespaces.

``sandbox=False`` runs the same command with the same limits, environment and working directory but
none of the isolation: for trusted work only (``metacourse grade --no-sandbox``).

Only the standard library is imported here.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HOME", "Limits", "SandboxRun", "SandboxUnavailable", "run_sandboxed", "sandbox_available"]

HOME = "/home/student"
"""The private, empty home folder inside the sandbox."""

BWRAP_FIX = (
    "install bubblewrap (`apt-get install bubblewrap` on Debian/Ubuntu, `dnf install bubblewrap` on Fedora) "
    "on a Linux machine that allows user namespaces (in Docker: `--security-opt seccomp=unconfined "
    "--security-opt apparmor=unconfined`; on Ubuntu 24.04: `sysctl kernel.apparmor_restrict_unprivileged_userns=0`)"
    ", or pass --no-sandbox to run the students' code with your own rights (trusted work only)"
)
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "localtime", "hosts",
        "fonts", "mime.types", "ssl/certs", "alternatives")
_SYSTEM = ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/sbin")
_TAIL = 4000
_UID = 65534


class SandboxUnavailable(RuntimeError):
    """No working sandbox on this machine; the message names the fix."""


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use."""

    cpu_seconds: float
    """CPU seconds of each process (RLIMIT_CPU: SIGXCPU, then SIGKILL 5 s later)."""
    wall_seconds: float
    """Seconds before the whole sandbox is killed."""
    memory_bytes: int = 8 << 30
    """Address space of each process (RLIMIT_AS); PyTorch reserves a few GB of it on import."""
    max_processes: int = 512
    """Processes and threads inside this sandbox (RLIMIT_NPROC, counted in its own user namespace)."""
    file_bytes: int = 256 << 20
    """Largest file any process may write (RLIMIT_FSIZE)."""
    tmp_bytes: int = 512 << 20
    """Size of the private ``/tmp`` and of the private ``$HOME`` (each a tmpfs)."""


@dataclass(frozen=True)
class SandboxRun:
    """How a sandboxed command ended."""

    returncode: int
    """Exit status of the command; negative: killed by that signal."""
    timed_out: bool
    """True when it ran past ``wall_seconds`` and was killed."""
    stdout_tail: str
    stderr_tail: str
    wall: float
    """Seconds from start to end."""
    cpu: float
    """CPU seconds (user + system) of the command and every process it waited for."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


# ---------------------------------------------------------------------------------------------
# Is there a sandbox?

_AVAILABLE: tuple[bool, str] | None = None
_LOCK = threading.Lock()


def _bwrap() -> str | None:
    return shutil.which("bwrap") or ("/usr/bin/bwrap" if os.access("/usr/bin/bwrap", os.X_OK) else None)


def sandbox_available() -> tuple[bool, str]:
    """(True, "") when bubblewrap can start a sandbox here, else (False, what is wrong and the fix)."""
    global _AVAILABLE
    with _LOCK:
        if _AVAILABLE is None:
            _AVAILABLE = _probe()
        return _AVAILABLE


def _probe() -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, f"the grader's sandbox needs Linux (this is {sys.platform}): grade on Linux, {BWRAP_FIX}"
    if _bwrap() is None:
        return False, f"bubblewrap (`bwrap`) is not installed: {BWRAP_FIX}"
    with tempfile.TemporaryDirectory(prefix="metacourse-sandbox-probe-") as scratch:
        try:
            run = run_sandboxed([sys.executable, "-I", "-c", "print('ok')"], workdir=None, outdir=Path(scratch),
                                limits=Limits(cpu_seconds=30, wall_seconds=60))
        except OSError as error:
            return False, f"bubblewrap could not start ({error}): {BWRAP_FIX}"
    if run.returncode != 0 or run.stdout_tail.strip() != "ok":
        why = (run.stderr_tail or run.stdout_tail).strip().splitlines()[-1:] or [f"exit code {run.returncode}"]
        return False, f"bubblewrap cannot create a sandbox here ({why[0]}): {BWRAP_FIX}"
    return True, ""


# ---------------------------------------------------------------------------------------------
# The command line


def _package_dir() -> Path:
    return Path(__file__).resolve().parents[2]  # .../metacourse


def _python_paths() -> list[Path]:
    """What Python needs: the installation, the virtual environment and its site-packages."""
    found = {Path(p).resolve() for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix)}
    found.add(Path(sys.executable).resolve().parent.parent)
    roots = list(found)
    for entry in sys.path:  # site-packages outside the prefixes (a user site, a --target install)
        path = Path(entry or ".").resolve()
        if entry and path.is_dir() and "site-packages" in path.parts and not _inside(path, roots):
            found.add(path)
    return sorted(found)


def _inside(path: Path, others: Iterable[Path]) -> bool:
    return any(path == other or path.is_relative_to(other) for other in others)


def _bind_args(paths: Iterable[Path], flag: str = "--ro-bind") -> list[str]:
    args: list[str] = []
    for path in paths:
        if path.is_symlink() and str(path) in _SYSTEM:  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.exists():
            args += [flag, str(path), str(path)]
    return args


def _command(argv: Sequence[str], workdir: Path | None, outdir: Path, readonly: Mapping[Path, str],
             overlay_files: Mapping[str, Path], hidden: Sequence[Path], limits: Limits) -> list[str]:
    bwrap = _bwrap()
    assert bwrap is not None
    cmd = [bwrap, "--unshare-all", "--unshare-user", "--uid", str(_UID), "--gid", str(_UID), "--disable-userns",
           "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if os.geteuid() == 0:
        cmd += ["--cap-drop", "ALL"]
    cmd += _bind_args(Path(p) for p in _SYSTEM)
    cmd += _bind_args(Path("/etc", name) for name in _ETC)
    ro = [*_python_paths(), _package_dir()]
    data = os.environ.get("METACOURSE_DATA")
    if data and Path(data).is_dir():
        ro.append(Path(data).resolve())
    ro = [p for p in dict.fromkeys(ro) if not _inside(p, [other for other in ro if other != p])]
    # The private /tmp and $HOME first: Python, the package or the data may live under /tmp (a CI
    # virtual environment), and their binds must land on top of the tmpfs, not under it.
    cmd += ["--size", str(limits.tmp_bytes), "--tmpfs", "/tmp"]
    cmd += ["--dir", "/home", "--size", str(limits.tmp_bytes), "--tmpfs", HOME]
    cmd += _bind_args(ro)
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    for path in hidden:  # a whitelisted folder that holds something secret: cover it
        path = Path(path).resolve()
        if _inside(path, ro):
            cmd += ["--tmpfs", str(path)]
    for host, target in readonly.items():
        cmd += ["--ro-bind", str(Path(host).resolve()), str(target)]
    for target, source in overlay_files.items():
        cmd += ["--ro-bind", str(source), str(target)]
    if workdir is not None:
        cmd += ["--bind", str(workdir), str(workdir)]
    cmd += ["--bind", str(outdir), str(outdir)]
    cwd = str(workdir) if workdir is not None else "/tmp"
    cmd += ["--chdir", cwd, "--", *argv]
    return cmd


def _environment(env: Mapping[str, str], sandbox: bool) -> dict[str, str]:
    """A clean environment: nothing of the grader's own (tokens, paths) reaches the student's code."""
    venv_bin = str(Path(sys.executable).parent)
    base = {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "MPLBACKEND": "Agg",
    }
    if sandbox:
        base.update(HOME=HOME, TMPDIR="/tmp", USER="student", LOGNAME="student")
    else:
        for name in ("HOME", "TMPDIR", "USER", "LOGNAME"):
            if name in os.environ:
                base[name] = os.environ[name]
    if "METACOURSE_DATA" in os.environ:
        base["METACOURSE_DATA"] = str(Path(os.environ["METACOURSE_DATA"]).resolve())
    base.update(env)
    return base


def _pids_cgroup(limit: int) -> Path | None:
    """A pids cgroup of its own with ``pids.max = limit`` (None where cgroups are not writable).

    RLIMIT_NPROC counts per user, and not at all for root: when the grader runs as root (CI, a
    container) a fork bomb is stopped by this cgroup instead (cgroup v1 ``pids`` or v2 ``pids``)."""
    for root in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if not (root / "cgroup.procs").is_file() or not os.access(root, os.W_OK):
            continue
        if root == Path("/sys/fs/cgroup") and "pids" not in _read(root / "cgroup.subtree_control"):
            continue
        try:
            group = Path(tempfile.mkdtemp(prefix="metacourse-sandbox-", dir=root))
            (group / "pids.max").write_text(str(limit))
            return group
        except OSError:
            continue
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _end_cgroup(group: Path | None) -> None:
    """Kill what is left in ``group`` (nothing, normally: the pid namespace ended) and remove it."""
    if group is None:
        return
    for _ in range(50):
        pids = [int(p) for p in _read(group / "cgroup.procs").split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)
    try:
        group.rmdir()
    except OSError:
        pass


def _set_limits(limits: Limits, group: Path | None = None) -> None:
    """Run in the child between fork and exec (preexec_fn): limits that everything inside inherits."""
    if group is not None:
        with open(group / "cgroup.procs", "w") as file:
            file.write(str(os.getpid()))
    cpu = max(1, int(limits.cpu_seconds + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _tail(path: Path) -> str:
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        file.seek(max(0, file.tell() - _TAIL))
        return file.read().decode("utf-8", errors="replace")


def run_sandboxed(
    argv: Sequence[str],
    *,
    workdir: Path | None,
    outdir: Path,
    limits: Limits,
    readonly: Mapping[Path, str] | None = None,
    overlays: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    hidden: Sequence[Path] = (),
    sandbox: bool = True,
    stdin: str | None = None,
) -> SandboxRun:
    """Run ``argv`` in a sandbox (see the module docstring); wait for it and every process it started.

    ``workdir`` (None: a folder in the private ``/tmp``) and ``outdir`` are the only writable host
    folders, at their host paths. ``readonly``: host path -> path inside. ``overlays``: path of a
    file inside the installed package -> the text it has inside this sandbox. ``hidden``: host
    folders covered with an empty folder should a whitelisted folder hold them. ``env`` is added to
    a clean environment. Raises :class:`SandboxUnavailable` when ``sandbox`` is true and bubblewrap
    is missing.
    """
    readonly, overlays, env = dict(readonly or {}), dict(overlays or {}), dict(env or {})
    outdir = Path(outdir).resolve()
    workdir = Path(workdir).resolve() if workdir is not None else None
    if sandbox and _bwrap() is None:
        raise SandboxUnavailable(f"bubblewrap (`bwrap`) is not installed: {BWRAP_FIX}")
    with tempfile.TemporaryDirectory(prefix="metacourse-sandbox-") as scratch_name:
        scratch = Path(scratch_name)
        overlay_files: dict[str, Path] = {}
        package = _package_dir()
        for i, (target, text) in enumerate(overlays.items()):
            target_path = Path(target).resolve()
            if not target_path.is_relative_to(package) or not target_path.is_file():
                raise ValueError(f"overlay {target} is not a file of the installed package {package}")
            source = scratch / f"overlay-{i}{target_path.suffix}"
            source.write_text(text, encoding="utf-8")
            os.utime(source, (0, 0))  # never the mtime of the original: its cached .pyc is not used
            overlay_files[str(target_path)] = source
        if sandbox:
            cmd = _command(argv, workdir, outdir, readonly, overlay_files, hidden, limits)
            cwd = None
        else:
            cmd, cwd = list(argv), str(workdir or outdir)
        out_path, err_path = scratch / "stdout", scratch / "stderr"
        start = time.monotonic()
        group = _pids_cgroup(limits.max_processes)
        try:
            return _run(cmd, cwd, env, sandbox, stdin, limits, group, out_path, err_path, start)
        finally:
            _end_cgroup(group)


def _run(cmd: list[str], cwd: str | None, env: dict[str, str], sandbox: bool, stdin: str | None, limits: Limits,
         group: Path | None, out_path: Path, err_path: Path, start: float) -> SandboxRun:
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=_environment(env, sandbox), stdout=out, stderr=err,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            preexec_fn=lambda: _set_limits(limits, group), start_new_session=True, close_fds=True,
        )
        if stdin is not None:  # from a thread: a command that never reads cannot stall the wall-clock limit
            threading.Thread(target=_feed, args=(proc, stdin.encode("utf-8")), daemon=True).start()
        timed_out = _wait(proc, limits.wall_seconds)
    _, status, usage = os.wait4(proc.pid, 0) if proc.returncode is None else (0, 0, None)
    if usage is not None:
        proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = (usage.ru_utime + usage.ru_stime) if usage is not None else 0.0
    if not sandbox:
        _kill_group(proc.pid)  # what the command left running in its session
    return SandboxRun(int(proc.returncode if proc.returncode is not None else -9), timed_out,
                      _tail(out_path), _tail(err_path), time.monotonic() - start, cpu)


def _feed(proc: subprocess.Popen, data: bytes) -> None:
    try:
        proc.stdin.write(data)  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
    except (BrokenPipeError, OSError, ValueError):
        pass


def _wait(proc: subprocess.Popen, seconds: float) -> bool:
    """Wait (without reaping) until ``proc`` exits or ``seconds`` pass; then kill it. True on timeout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        except ChildProcessError:
            return False
        if info is not None:
            return False
        time.sleep(min(0.02, max(0.0, deadline - time.monotonic())))
    _kill_group(proc.pid)
    return True


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
