"""Output paths checked before a run starts working (standard library only, so the command line can
refuse a bad ``--json`` or ``--out-dir`` before it imports torch)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["check_writable"]


def check_writable(path: str | os.PathLike, name: str, folder: bool = False) -> Path:
    """Make sure a run can write ``path`` (a file, or a ``folder``) before it starts working: create
    the missing folders and try a scratch file there. Raises a ValueError naming ``name`` (e.g.
    ``--json``) and the fix; returns ``path`` as a Path."""
    path = Path(path)
    if not folder and path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder; give a file name, e.g. {str(path / 'result.json')!r}")
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a file; give a folder")
    where = path if folder else path.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise ValueError(f"{name} {str(path)!r} cannot be written ({reason} at {str(where)!r}); "
                         "choose a folder you can write to") from None
    return path
