"""Fetch a data file once, verified, into a cache folder.

:func:`fetch` downloads a URL into ``target`` only if the received bytes have the size and SHA-256
of one of the known versions of the file. The bytes go to a temporary file beside the target and
are renamed onto it only once verified, so a dropped connection, a full disk or a corrupted
download never leaves a half-written or wrong file under the target's name: the temporary file is
deleted and a :class:`DownloadError` says what happened and what to do.

A file already at ``target`` is checked the same way before it is trusted (hashing 10 MB takes a
few milliseconds); one that matches no known version is deleted, reported, and downloaded again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DownloadError", "Known", "cache_root", "download_allowed", "fetch", "matches", "on_colab", "sha256_of"]


class DownloadError(OSError):
    """A download failed or gave a file that matches no known version (nothing was kept)."""


@dataclass(frozen=True)
class Known:
    """One known version of a file: its size in bytes, its SHA-256 and where it comes from."""

    size: int
    sha256: str
    source: str = ""


def cache_root() -> Path:
    """The per-user cache of the course: ``$METACOURSE_CACHE`` or ``~/.cache/metacourse``."""
    return Path(os.environ.get("METACOURSE_CACHE") or Path.home() / ".cache" / "metacourse")


def on_colab() -> bool:
    """True inside Google Colab (its ``google.colab`` module is loaded or importable)."""
    if "google.colab" in sys.modules:
        return True
    try:
        from importlib.util import find_spec

        return find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def download_allowed(download: bool | None = None) -> bool:
    """``download`` if given; else the ``METACOURSE_DOWNLOAD`` switch if set (``1`` on, ``0`` off);
    else True on Colab only."""
    if download is not None:
        return download
    switch = os.environ.get("METACOURSE_DOWNLOAD", "").strip().lower()
    if switch:
        return switch not in ("0", "false", "no", "off")
    return on_colab()


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def matches(path: str | os.PathLike[str], known: Sequence[Known]) -> Known | None:
    """The known version ``path`` is (same size and SHA-256), or None."""
    size = os.path.getsize(path)
    candidates = [k for k in known if k.size == size]
    if not candidates:
        return None
    digest = sha256_of(path)
    return next((k for k in candidates if k.sha256 == digest), None)


def _describe(known: Sequence[Known]) -> str:
    return "; ".join(f"{k.size:,} bytes, SHA-256 {k.sha256[:16]}… ({k.source})" for k in known)


def fetch(url: str, target: str | os.PathLike[str], known: Sequence[Known] | None, *, timeout: float = 60.0,
          quiet: bool = False, max_bytes: int = 0) -> Path:
    """Make ``target`` a verified copy of ``url`` and return its path.

    Does nothing when ``target`` already holds a known version. Raises :class:`DownloadError`
    when the network fails (nothing is left behind) or when the bytes received match no entry of
    ``known`` (they are deleted, and the message gives their size and SHA-256). ``known=None``
    (files without published checksums, such as the course's stored results) keeps any file of at
    most ``max_bytes`` bytes that arrived whole; an existing ``target`` is then trusted.
    """
    if known is not None and not known:
        raise ValueError("fetch needs at least one known version (size and SHA-256) of the file, or known=None")
    if known is None and max_bytes <= 0:
        raise ValueError("fetch without known versions needs max_bytes, the largest size to accept")
    target = Path(target)
    if target.is_file():
        if known is None or matches(target, known) is not None:
            return target
        print(f"{target} matches no known version of {target.name} (expected {_describe(known)}): "
              "deleted, downloading it again", file=sys.stderr)
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    limit = max(k.size for k in known) if known else max_bytes
    if not quiet:
        print(f"Downloading {url} ({limit / 1e6:.1f} MB) into {target.parent} ...", flush=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while block := response.read(1 << 20):
                size += len(block)
                if size > limit:
                    raise DownloadError(f"{url} sent more than the {limit:,} bytes expected of "
                                        f"{target.name}: stopped and deleted; the source has changed — put "
                                        f"a copy you trust at {target}")
                digest.update(block)
                out.write(block)
            announced = response.headers.get("Content-Length")
        if announced is not None and announced.isdigit() and size != int(announced):
            raise DownloadError(f"could not download {url} (the connection ended after {size:,} of "
                                f"{int(announced):,} bytes); nothing was kept. Try again, or put the file "
                                f"at {target} yourself")
        found = next((k for k in known or () if k.size == size and k.sha256 == digest.hexdigest()), None)
        if found is None and known is not None:
            raise DownloadError(
                f"the download of {url} is corrupt or not the expected file ({size:,} bytes, SHA-256 "
                f"{digest.hexdigest()}; expected {_describe(known)}): it was deleted. Try again; if "
                f"it keeps failing, put a copy you trust at {target}")
        os.replace(tmp, target)
    except DownloadError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as error:  # ValueError: a malformed URL
        reason = getattr(error, "reason", None) or error
        raise DownloadError(f"could not download {url} ({reason}); nothing was kept. Check the network "
                            f"and try again, or put the file at {target} yourself") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target
