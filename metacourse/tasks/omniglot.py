"""Omniglot (Lake et al. 2015): 1,623 handwritten characters of 50 alphabets, 20 drawings each.

Preprocessing as MAML (Finn et al. 2017, §5.2) and its official code: every 105×105 drawing is
resized to 28×28 (Lanczos) and inverted so that strokes are bright (1.0) on a dark (0.0)
background; rotations by 0/90/180/270° make four classes of each character; 1,200 characters drawn
with a fixed seed (irrespective of alphabet) are for meta-training, the other 423 for meta-testing.
The original background / evaluation alphabet split (964 / 659 characters) is available too.

Where the data comes from. ``data_dir()`` is ``$METACOURSE_DATA`` (default: the per-user cache
``~/.cache/metacourse``). Inside it, any of these layouts is read::

    omniglot/images_background.zip, omniglot/images_evaluation.zip   (the original zips)
    images_background.zip, images_evaluation.zip
    omniglot/images_background/<Alphabet>/<characterNN>/*.png      (extracted folders)
    omniglot-py/images_background/...                               (torchvision's layout)

The first load decodes all 32,460 drawings once (≈ 20 s) into one uint8 array of shape
(1623, 20, 28, 28) cached as ``omniglot28-<hash>.npz`` in ``cache_dir()`` (``$METACOURSE_CACHE``,
default ``~/.cache/metacourse``); later loads read that file in well under a second. The cache is
written to a temporary file and renamed, so an interrupted decode never leaves half a file.
When the data is absent and ``download=True`` (or ``METACOURSE_DOWNLOAD=1``), the zips are fetched
from the dataset's canonical location (github.com/brendenlake/omniglot) and their checksums verified.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "SPLITS",
    "data_dir",
    "cache_dir",
    "find_sources",
    "download_omniglot",
    "load_omniglot_array",
    "Omniglot",
    "OmniglotImages",
]

PARTS = ("images_background", "images_evaluation")
URLS = {part: f"https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{part}.zip"
        for part in PARTS}
KNOWN_MD5 = {  # torchvision's checksums of the canonical zips, and the re-packed copy in shared/data
    "images_background": ("68d2efa1b9178cc56df9314c21c6e718", "76d44e89c5d76ad44170386b4c96d3e5"),
    "images_evaluation": ("6b91aef0f799c5bb55b94e3f2daec811", "109404ffb47629c48c25d9383a3bd0a6"),
}
SPLITS = ("train", "test", "background", "evaluation", "all")
N_DRAWINGS = 20
N_TRAIN_CHARACTERS = 1200
SPLIT_SEED = 1
"""Seed of the random 1,200 / 423 character split (numpy ``default_rng(SPLIT_SEED)``)."""
IMAGE_SIZE = 28
_FORMAT = "v1-lanczos28-inverted"


def data_dir() -> Path:
    """Where the Omniglot files are looked for: ``$METACOURSE_DATA`` or ``~/.cache/metacourse``."""
    return Path(os.environ.get("METACOURSE_DATA") or Path.home() / ".cache" / "metacourse")


def cache_dir() -> Path:
    """Where the decoded array is cached: ``$METACOURSE_CACHE`` or ``~/.cache/metacourse``."""
    return Path(os.environ.get("METACOURSE_CACHE") or Path.home() / ".cache" / "metacourse")


def _where_files_go(root: Path) -> str:
    return (f"put images_background.zip and images_evaluation.zip in {root / 'omniglot'} (from "
            "https://github.com/brendenlake/omniglot/tree/master/python), or set METACOURSE_DATA "
            "to the folder that holds them, or call with download=True (METACOURSE_DOWNLOAD=1) "
            "where the network is allowed")


def find_sources(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """The zip file or extracted folder of each part (background, evaluation) under ``root``.

    Raises ``FileNotFoundError`` naming where the files go when a part is missing.
    """
    root = Path(root) if root is not None else data_dir()
    found = {}
    for part in PARTS:
        candidates = [root / "omniglot" / f"{part}.zip", root / f"{part}.zip",
                      root / "omniglot" / part, root / "omniglot-py" / part,
                      root / "omniglot" / "omniglot-py" / part, root / part]
        hit = next((c for c in candidates if c.is_file() or c.is_dir()), None)
        if hit is None:
            raise FileNotFoundError(f"Omniglot's {part} set was not found under {root}: "
                                    + _where_files_go(root))
        found[part] = hit
    return found


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_omniglot(root: str | os.PathLike | None = None) -> dict[str, Path]:
    """Download the two zips into ``root/omniglot`` from the canonical URLs and verify their MD5."""
    target = (Path(root) if root is not None else data_dir()) / "omniglot"
    target.mkdir(parents=True, exist_ok=True)
    for part, url in URLS.items():
        final = target / f"{part}.zip"
        if final.exists():
            continue
        handle, tmp = tempfile.mkstemp(dir=target, suffix=".part")
        os.close(handle)
        try:
            urllib.request.urlretrieve(url, tmp)
            if _md5(Path(tmp)) not in KNOWN_MD5[part]:
                raise ValueError(f"the download of {url} has an unknown checksum (corrupt or "
                                 f"changed upstream); download it by hand into {target}")
            os.replace(tmp, final)
        except OSError as error:
            raise FileNotFoundError(f"could not download {url} ({error}); "
                                    + _where_files_go(target.parent)) from None
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    return find_sources(target.parent)


def _fingerprint(sources: dict[str, Path]) -> str:
    """A hash of the source files (content of zips, names and sizes of folders) and the format."""
    digest = hashlib.sha256(_FORMAT.encode())
    for part in PARTS:
        path = sources[part]
        if path.is_file():
            digest.update(_md5(path).encode())
        else:
            for png in sorted(path.rglob("*.png")):
                digest.update(f"{png.relative_to(path)}:{png.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def _decode_png(data: bytes) -> np.ndarray:
    from PIL import Image  # imported here: only a first decode needs Pillow

    image = Image.open(io.BytesIO(data)).convert("L")
    image = image.resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.LANCZOS)
    return 255 - np.asarray(image, dtype=np.uint8)


def _list_part(path: Path, part: str) -> tuple[dict[str, list[str]], object]:
    """Character key 'Alphabet/characterNN' → sorted drawing names, and a reader of one name."""
    if path.is_file():
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise ValueError(f"{path} is not a readable zip file ({error}): it is truncated or "
                             "corrupt; delete it and copy or download it again") from None
        names = [n for n in archive.namelist() if n.endswith(".png")]
        read = archive.read
    else:
        names = [str(p.relative_to(path.parent)) for p in path.rglob("*.png")]
        read = (lambda name: (path.parent / name).read_bytes())  # noqa: E731
    characters: dict[str, list[str]] = {}
    for name in names:
        pieces = Path(name).parts
        if len(pieces) < 3:
            continue
        characters.setdefault("/".join(pieces[-3:-1]), []).append(name)
    return {k: sorted(v) for k, v in sorted(characters.items())}, read


def _decode(sources: dict[str, Path]) -> dict[str, np.ndarray]:
    images, keys, parts = [], [], []
    for index, part in enumerate(PARTS):
        characters, read = _list_part(sources[part], part)
        for key, names in characters.items():
            if len(names) != N_DRAWINGS:
                raise ValueError(f"{sources[part]}: character {key} has {len(names)} drawings "
                                 f"instead of {N_DRAWINGS}; the data set is incomplete — copy or "
                                 "download it again")
            try:
                images.append(np.stack([_decode_png(read(name)) for name in names]))
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
                raise ValueError(f"cannot decode {key} from {sources[part]} ({error}): the file is "
                                 "truncated or corrupt; delete it and copy or download it "
                                 "again") from None
            keys.append(key)
            parts.append(index)
    if not images:
        raise ValueError(f"no drawings found in {sources}; " + _where_files_go(data_dir()))
    return {"images": np.stack(images), "characters": np.array(keys), "part": np.array(parts)}


def load_omniglot_array(root: str | os.PathLike | None = None, download: bool | None = None,
                        cache: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """All of Omniglot as arrays: ``images`` uint8 (1623, 20, 28, 28) with strokes bright,
    ``characters`` ('Alphabet/characterNN') and ``part`` (0 background, 1 evaluation).

    Decoded once and cached (see the module docstring); ``download`` None reads
    ``METACOURSE_DOWNLOAD``.
    """
    root = Path(root) if root is not None else data_dir()
    try:
        sources = find_sources(root)
    except FileNotFoundError:
        if download is None:
            download = os.environ.get("METACOURSE_DOWNLOAD", "") not in ("", "0")
        if not download:
            raise
        sources = download_omniglot(root)
    cache = Path(cache) if cache is not None else cache_dir()
    path = cache / f"omniglot{IMAGE_SIZE}-{_fingerprint(sources)}.npz"
    if path.exists():
        try:
            with np.load(path) as stored:
                return {key: stored[key] for key in ("images", "characters", "part")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # an unreadable cache is rebuilt, never trusted
    arrays = _decode(sources)
    cache.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=cache, suffix=".npz.tmp")
    os.close(handle)
    try:
        with open(tmp, "wb") as out:
            np.savez(out, **arrays)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return arrays


def split_characters(characters: np.ndarray, part: np.ndarray, split: str) -> np.ndarray:
    """Indices of the characters in ``split`` (see ``SPLITS``), in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown; choose one of {SPLITS}")
    every = np.arange(len(characters))
    if split == "all":
        return every
    if split in ("background", "evaluation"):
        return every[part == PARTS.index(f"images_{split}")]
    order = np.random.default_rng(SPLIT_SEED).permutation(len(characters))
    chosen = order[:N_TRAIN_CHARACTERS] if split == "train" else order[N_TRAIN_CHARACTERS:]
    return np.sort(chosen)


@dataclass
class OmniglotImages:
    """A labelled image set with ``n_per_class`` images of each of ``n_classes`` classes.

    ``images`` is uint8 ``(n_characters, 20, 28, 28)``; class c is character ``c // n_rotations``
    rotated by ``rotations[c % n_rotations]`` quarter turns. ``get(classes, examples)`` returns the
    float images (strokes 1.0) as a tensor of shape ``classes.shape + (1, 28, 28)``.
    """

    images: np.ndarray
    characters: np.ndarray
    rotations: tuple[int, ...] = (0, 1, 2, 3)
    split: str = "custom"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (characters, drawings, H, W), got "
                             f"{self.images.dtype} {self.images.shape}")
        if not self.rotations or any(r not in (0, 1, 2, 3) for r in self.rotations):
            raise ValueError(f"rotations={self.rotations!r}: use quarter turns from (0, 1, 2, 3)")

    @property
    def n_classes(self) -> int:
        return len(self.images) * len(self.rotations)

    @property
    def n_per_class(self) -> int:
        return self.images.shape[1]

    def class_name(self, label: int) -> str:
        turns = self.rotations[label % len(self.rotations)]
        return f"{self.characters[label // len(self.rotations)]} rot{90 * turns}"

    def get(self, classes: np.ndarray, examples: np.ndarray) -> torch.Tensor:
        """Images of ``classes[...]`` at drawing ``examples[...]`` (same shape, broadcast)."""
        classes, examples = np.broadcast_arrays(np.asarray(classes), np.asarray(examples))
        n_rot = len(self.rotations)
        pixels = self.images[classes // n_rot, examples]
        turns = np.asarray(self.rotations)[classes % n_rot]
        for turn in set(self.rotations) - {0}:
            mask = turns == turn
            if mask.any():
                pixels[mask] = np.rot90(pixels[mask], turn, axes=(-2, -1))
        out = torch.from_numpy(pixels).unsqueeze(-3)
        return out.to(torch.float32).div_(255.0)


def Omniglot(split: str = "train", rotations: tuple[int, ...] = (0, 1, 2, 3),
             root: str | os.PathLike | None = None, download: bool | None = None) -> OmniglotImages:
    """One split of Omniglot as a labelled image set (4 classes per character with rotations).

    ``split``: ``"train"`` (1,200 characters drawn with a fixed seed, MAML's protocol),
    ``"test"`` (the other 423), ``"background"`` / ``"evaluation"`` (the alphabet split), ``"all"``.
    """
    arrays = load_omniglot_array(root, download)
    chosen = split_characters(arrays["characters"], arrays["part"], split)
    return OmniglotImages(arrays["images"][chosen], arrays["characters"][chosen],
                          tuple(rotations), split)
