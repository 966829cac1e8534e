"""Sentinels: while the probe of an exercise runs, the library's answer to it is not there.

An exercise such as ``my_adapt`` has a reference in the library (``metacourse.algorithms.maml.adapt``)
and in the lab's own checks. While the probe of that exercise runs, every such function is a
*sentinel*: calling it raises :class:`SentinelError` and records its name, and the grade says
"`my_adapt` calls `metacourse.algorithms.maml.adapt`; write the inner loop yourself". Two layers:

1. **Source overlays** (:func:`overlays`): each module file that holds a forbidden function is
   rewritten (with :mod:`ast`) so that the function's body is a call of :func:`trip`; the sandbox
   mounts the rewritten text over the file (and over its cached ``.pyc``) for this probe only. A
   ``reload``, an ``exec`` of the module's source, a second import under another name or a read of
   ``__file__`` finds no reference.
2. **In process** (:func:`install`): the code object of every forbidden function already imported
   is swapped for the sentinel's (so aliases, ``from ... import ... as``, wrappers, ``partial`` and
   objects found by walking ``gc`` all reach it), and an import hook, ``linecache`` and
   ``open`` serve the rewritten source of those modules. This covers ``--no-sandbox`` runs and is a
   second wall inside the sandbox.

A forbidden function is named ``"package.module:Qualified.name"``. The functions an exercise builds
on are not forbidden in its probe (the probe of ``my_meta_loss`` keeps ``maml.adapt``), so the
references that the probe hands the student for them keep working.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import importlib.abc
import importlib.util
import io
import linecache
import os
import sys
import tempfile
import types
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["SentinelError", "install", "overlays", "rewrite_source", "tripped", "trip"]

_TRIPPED: list[str] = []


class SentinelError(BaseException):
    """Raised by a forbidden function. A ``BaseException``: ``except Exception`` does not hide it."""

    def __init__(self, name: str):
        super().__init__(f"`{name}` is not available while this exercise is graded: write it yourself")
        self.name = name


def trip(name: str) -> None:
    """Record that ``name`` (a forbidden function) was called, and raise :class:`SentinelError`."""
    _TRIPPED.append(str(name))
    raise SentinelError(str(name))


def tripped() -> list[str]:
    """The forbidden functions called so far in this process, in order (a copy)."""
    return list(_TRIPPED)


def _dotted(spec: str) -> str:
    module, qualname = spec.split(":")
    return f"{module}.{qualname}"


def _by_module(forbidden: Iterable[str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for spec in forbidden:
        module, qualname = spec.split(":")
        grouped.setdefault(module, []).append(qualname)
    return grouped


def _sentinel_body(name: str) -> list[ast.stmt]:
    source = (f"from metacourse.course.grading.sentinels import trip as _metacourse_trip\n"
              f"_metacourse_trip({name!r})\n")
    return ast.parse(source).body


def rewrite_source(source: str, module: str, qualnames: Iterable[str]) -> str:
    """``source`` with the body of each function ``qualnames`` (``"adapt"``, ``"MAML.adapt"``)
    replaced by a call of :func:`trip`; raises ``ValueError`` when one is not found."""
    tree = ast.parse(source)
    wanted = set(qualnames)
    found: set[str] = set()

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = prefix + node.name
                if qualname in wanted:
                    node.body = _sentinel_body(f"{module}.{qualname}")
                    found.add(qualname)

    visit(tree.body, "")
    missing = wanted - found
    if missing:
        raise ValueError(f"{module} defines no {sorted(missing)}: update the forbidden list of the lab's probes")
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _module_file(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ValueError(f"cannot find the source file of {module}; is metacourse installed from source?")
    return Path(spec.origin).resolve()


def overlays(forbidden: Iterable[str]) -> dict[str, str]:
    """Host path -> replacement text for every file that holds a forbidden function: the module's
    ``.py`` and each of its cached ``.pyc`` files that exist (they hold the original code too)."""
    result: dict[str, str] = {}
    for module, qualnames in _by_module(forbidden).items():
        path = _module_file(module)
        text = rewrite_source(path.read_text(encoding="utf-8"), module, qualnames)
        result[str(path)] = text
        cache = path.parent / "__pycache__"
        for pyc in sorted(cache.glob(f"{path.stem}.*.pyc")) if cache.is_dir() else []:
            result[str(pyc.resolve())] = text
    return result


# ---------------------------------------------------------------------------------------------
# In process


def _sentinel_code(name: str, freevars: int) -> types.CodeType:
    """A code object that calls ``trip(name)``, with ``freevars`` free variables (so it can replace
    the code of a function that has a closure, e.g. a method that uses ``super()``)."""
    cells = "".join(f"    _v{i} = None\n" for i in range(freevars))
    uses = "".join(f"        _v{i}\n" for i in range(freevars))
    source = (f"def _factory():\n{cells}"
              f"    def sentinel(*args, **kwargs):\n{uses}"
              f"        __import__('metacourse.course.grading.sentinels', fromlist=['trip']).trip({name!r})\n"
              f"    return sentinel\n")
    namespace: dict = {}
    exec(compile(source, f"<sentinel {name}>", "exec"), namespace)  # noqa: S102 - our own fixed source
    return namespace["_factory"]().__code__


def _resolve(module: types.ModuleType, qualname: str) -> types.FunctionType:
    obj: object = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    obj = getattr(obj, "__func__", obj)
    if not isinstance(obj, types.FunctionType):
        raise TypeError(f"{module.__name__}.{qualname} is not a Python function")
    return obj


class _OverlayLoader(importlib.abc.SourceLoader):
    """Loads a module from its rewritten source (for ``import``, ``importlib`` and ``reload``)."""

    def __init__(self, fullname: str, path: str, text: str):
        self.fullname, self.path, self.text = fullname, path, text

    def get_filename(self, fullname: str) -> str:
        return self.path

    def get_data(self, path: str) -> bytes:
        return self.text.encode("utf-8")

    def path_stats(self, path: str) -> Mapping:
        raise OSError("no bytecode cache for a rewritten module")


class _OverlayFinder(importlib.abc.MetaPathFinder):
    def __init__(self, texts: Mapping[str, tuple[str, str]]):
        self.texts = dict(texts)  # module name -> (path, text)

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self.texts:
            return None
        file, text = self.texts[fullname]
        return importlib.util.spec_from_file_location(fullname, file, loader=_OverlayLoader(fullname, file, text))


def _redirect_open(files: Mapping[str, str]) -> None:
    """Make ``open``/``io.open``/``os.open`` of a rewritten file (or its ``.pyc``) read the rewritten text."""
    folder = tempfile.mkdtemp(prefix="metacourse-overlay-")
    copies: dict[str, str] = {}
    for index, (path, text) in enumerate(files.items()):
        copy = os.path.join(folder, f"{index}.py")
        with open(copy, "w", encoding="utf-8") as file:
            file.write(text)
        copies[os.path.realpath(path)] = copy
    real_open, real_os_open, real_open_code = io.open, os.open, io.open_code

    def swap(path):
        if isinstance(path, int):
            return path
        try:
            return copies.get(os.path.realpath(os.fspath(path)), path)
        except (TypeError, ValueError):
            return path

    def overlay_open(file, *args, **kwargs):
        return real_open(swap(file), *args, **kwargs)

    def overlay_os_open(path, *args, **kwargs):
        return real_os_open(swap(path), *args, **kwargs)

    def overlay_open_code(path):
        return real_open_code(swap(path))

    builtins.open = io.open = overlay_open
    os.open, io.open_code = overlay_os_open, overlay_open_code


def install(forbidden: Iterable[str]) -> dict[str, str]:
    """Turn every forbidden function into a sentinel in this process; return the overlays it uses.

    Imports each module concerned, swaps the code of each forbidden function for the sentinel's,
    and makes the module's source, as ``import``/``reload``/``linecache``/``open`` see it, the
    rewritten one. Call it before any student code runs.
    """
    forbidden = list(forbidden)
    texts: dict[str, tuple[str, str]] = {}
    for module_name, qualnames in _by_module(forbidden).items():
        module = importlib.import_module(module_name)
        for qualname in qualnames:
            function = _resolve(module, qualname)
            freevars = len(function.__code__.co_freevars)
            function.__code__ = _sentinel_code(f"{module_name}.{qualname}", freevars)
        path = str(_module_file(module_name))
        text = rewrite_source(Path(path).read_text(encoding="utf-8"), module_name, qualnames)
        texts[module_name] = (path, text)
        module.__loader__ = _OverlayLoader(module_name, path, text)
        if module.__spec__ is not None:
            module.__spec__.loader = module.__loader__
        module.__cached__ = None
        lines = text.splitlines(keepends=True)
        linecache.cache[path] = (len(text), None, lines, path)  # mtime None: never re-read
    sys.meta_path.insert(0, _OverlayFinder(texts))
    files = overlays(forbidden)
    _redirect_open(files)
    return files
