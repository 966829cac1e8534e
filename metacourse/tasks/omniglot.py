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
Every load checks that the set is whole: the 30 background alphabets (964 characters) and the 20
evaluation alphabets (659 characters), 20 drawings each (``EXPECTED_ALPHABETS``). A partial copy is
refused with the missing alphabets named, never silently used with fewer characters.

Downloading. When the files are absent and ``download=True`` (or ``METACOURSE_DOWNLOAD=1``, or the
code runs on Google Colab), the two zips (14 MB together) are fetched once into
``data_dir()/omniglot`` from the public source torchvision uses too
(raw.githubusercontent.com/brendenlake/omniglot, ``$METACOURSE_OMNIGLOT_URL`` overrides the folder
URL) and kept only if their size and SHA-256 are those of a known copy (``KNOWN_ZIPS``); see
:mod:`metacourse.tasks.download`. ``METACOURSE_DOWNLOAD=0`` turns the download off, also on Colab.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .download import Known, download_allowed, fetch

__all__ = [
    "EXPECTED_ALPHABETS",
    "KNOWN_ZIPS",
    "SPLITS",
    "data_dir",
    "cache_dir",
    "check_complete",
    "find_sources",
    "download_omniglot",
    "load_omniglot_array",
    "Omniglot",
    "OmniglotImages",
]

PARTS = ("images_background", "images_evaluation")
BASE_URL = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
"""Where the zips are downloaded from (the data set's own repository; torchvision uses it too)."""
KNOWN_ZIPS = {
    "images_background": (
        Known(9_464_212, "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640",
              "the release on github.com/brendenlake/omniglot"),
        Known(8_545_058, "f0b84e5344bc0da0be8f887d6f410545e1ce5d34023761a609cda37b74cd9bbc",
              "the course's re-packed copy: same images"),
    ),
    "images_evaluation": (
        Known(6_462_886, "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee",
              "the release on github.com/brendenlake/omniglot"),
        Known(5_833_360, "47f6305f8546374ad75715bdb3e659c795b3433239816496244e6b294d6164e0",
              "the course's re-packed copy: same images"),
    ),
}
"""Size and SHA-256 of every accepted copy of each zip (the release's as published with
TensorFlow Datasets' checksums; the re-packed copy's computed from the file)."""
EXPECTED_ALPHABETS = {
    "images_background": {
        "Alphabet_of_the_Magi": 20, "Anglo-Saxon_Futhorc": 29, "Arcadian": 26, "Armenian": 41,
        "Asomtavruli_(Georgian)": 40, "Balinese": 24, "Bengali": 46,
        "Blackfoot_(Canadian_Aboriginal_Syllabics)": 14, "Braille": 26, "Burmese_(Myanmar)": 34,
        "Cyrillic": 33, "Early_Aramaic": 22, "Futurama": 26, "Grantha": 43, "Greek": 24, "Gujarati": 48,
        "Hebrew": 22, "Inuktitut_(Canadian_Aboriginal_Syllabics)": 16, "Japanese_(hiragana)": 52,
        "Japanese_(katakana)": 47, "Korean": 40, "Latin": 26, "Malay_(Jawi_-_Arabic)": 40,
        "Mkhedruli_(Georgian)": 41, "N_Ko": 33, "Ojibwe_(Canadian_Aboriginal_Syllabics)": 14,
        "Sanskrit": 42, "Syriac_(Estrangelo)": 23, "Tagalog": 17, "Tifinagh": 55,
    },
    "images_evaluation": {
        "Angelic": 20, "Atemayar_Qelisayer": 26, "Atlantean": 26, "Aurek-Besh": 26, "Avesta": 26,
        "Ge_ez": 26, "Glagolitic": 45, "Gurmukhi": 45, "Kannada": 41, "Keble": 26, "Malayalam": 47,
        "Manipuri": 40, "Mongolian": 30, "Old_Church_Slavonic_(Cyrillic)": 45, "Oriya": 46,
        "Sylheti": 28, "Syriac_(Serto)": 23, "Tengwar": 25, "Tibetan": 42, "ULOG": 26,
    },
}
"""Characters per alphabet of each part: 30 alphabets and 964 characters, 20 and 659."""
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
    return (f"set METACOURSE_DOWNLOAD=1 (or pass download=True) to download the two zips (14 MB) into "
            f"{root / 'omniglot'}, or put images_background.zip and images_evaluation.zip there "
            "yourself (from https://github.com/brendenlake/omniglot/tree/master/python), or set "
            "METACOURSE_DATA to the folder that already holds them")


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


def download_omniglot(root: str | os.PathLike | None = None, base_url: str | None = None) -> dict[str, Path]:
    """Download the two zips into ``root/omniglot`` (once) and verify their size and SHA-256.

    ``base_url`` (default ``$METACOURSE_OMNIGLOT_URL``, else :data:`BASE_URL`) is the folder URL
    that holds ``images_background.zip`` and ``images_evaluation.zip``. A zip already there is
    kept when it is a known copy. Raises :class:`metacourse.tasks.download.DownloadError` (an
    ``OSError``) when the network fails or a download is corrupt; nothing half-written is left.
    """
    target = (Path(root) if root is not None else data_dir()) / "omniglot"
    base = base_url or os.environ.get("METACOURSE_OMNIGLOT_URL") or BASE_URL
    for part in PARTS:
        fetch(f"{base.rstrip('/')}/{part}.zip", target / f"{part}.zip", KNOWN_ZIPS[part])
    return find_sources(target.parent)


def check_complete(characters: dict[str, list[str]], where: object) -> None:
    """Refuse a partial Omniglot: ``characters`` maps each part to its 'Alphabet/characterNN' keys.

    Raises ``ValueError`` naming the missing (or unexpected) alphabets and characters, and the fix.
    """
    problems, found, expected = [], 0, 0
    for part, alphabets in EXPECTED_ALPHABETS.items():
        counts: dict[str, int] = {}
        for key in characters.get(part, []):
            alphabet = key.split("/")[0]
            counts[alphabet] = counts.get(alphabet, 0) + 1
        found += sum(counts.values())
        expected += sum(alphabets.values())
        missing = [f"{a} ({n} characters)" for a, n in alphabets.items() if a not in counts]
        short = [f"{a} ({counts[a]} characters, expected {n})" for a, n in alphabets.items()
                 if a in counts and counts[a] != n]
        unknown = sorted(set(counts) - set(alphabets))
        if missing:
            problems.append(f"{part} lacks {len(missing)} of its {len(alphabets)} alphabets: {', '.join(missing)}")
        if short:
            problems.append(f"{part} has alphabets of the wrong size: {', '.join(short)}")
        if unknown:
            problems.append(f"{part} has alphabets Omniglot does not have: {', '.join(unknown)}")
    if problems:
        raise ValueError(
            f"the Omniglot data in {where} is incomplete ({found:,} characters where the set has {expected:,}): "
            + "; ".join(problems) + ". Copy the two original zips again (or delete them and set "
            "METACOURSE_DOWNLOAD=1 to download them); a partial set would change every split and score")


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
    listed = {part: _list_part(sources[part], part) for part in PARTS}
    where = sources[PARTS[0]].parent
    for part, (characters, _) in listed.items():
        for key, names in characters.items():
            if len(names) != N_DRAWINGS:
                raise ValueError(f"{sources[part]}: character {key} has {len(names)} drawings "
                                 f"instead of {N_DRAWINGS}; the data set is incomplete — copy or "
                                 "download it again")
    check_complete({part: list(characters) for part, (characters, _) in listed.items()}, where)
    images, keys, parts = [], [], []
    for index, part in enumerate(PARTS):
        characters, read = listed[part]
        for key, names in characters.items():
            try:
                images.append(np.stack([_decode_png(read(name)) for name in names]))
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
                raise ValueError(f"cannot decode {key} from {sources[part]} ({error}): the file is "
                                 "truncated or corrupt; delete it and copy or download it "
                                 "again") from None
            keys.append(key)
            parts.append(index)
    return {"images": np.stack(images), "characters": np.array(keys), "part": np.array(parts)}


def _check_arrays(arrays: dict[str, np.ndarray], where: object) -> None:
    """The completeness check on decoded arrays (e.g. a cache written by an older version)."""
    by_part = {part: [str(k) for k in arrays["characters"][arrays["part"] == index]]
               for index, part in enumerate(PARTS)}
    check_complete(by_part, where)
    if arrays["images"].shape[1:] != (N_DRAWINGS, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"the cached Omniglot arrays of {where} have shape {arrays['images'].shape}, expected "
                         f"(characters, {N_DRAWINGS}, {IMAGE_SIZE}, {IMAGE_SIZE}); delete the omniglot28-*.npz "
                         f"files in {cache_dir()} to decode again")


def load_omniglot_array(root: str | os.PathLike | None = None, download: bool | None = None,
                        cache: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """All of Omniglot as arrays: ``images`` uint8 (1623, 20, 28, 28) with strokes bright,
    ``characters`` ('Alphabet/characterNN') and ``part`` (0 background, 1 evaluation).

    Decoded once and cached (see the module docstring). ``download`` None: download when
    ``METACOURSE_DOWNLOAD=1``, or on Colab unless ``METACOURSE_DOWNLOAD=0``. Raises
    ``FileNotFoundError`` (the files are absent: the message names the fix), ``ValueError`` (a
    partial or corrupt set) or ``DownloadError`` (the download failed; nothing is left behind).
    """
    root = Path(root) if root is not None else data_dir()
    try:
        sources = find_sources(root)
    except FileNotFoundError:
        if not download_allowed(download):
            raise
        sources = download_omniglot(root)
    cache = Path(cache) if cache is not None else cache_dir()
    path = cache / f"omniglot{IMAGE_SIZE}-{_fingerprint(sources)}.npz"
    if path.exists():
        try:
            with np.load(path) as stored:
                arrays = {key: stored[key] for key in ("images", "characters", "part")}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # an unreadable cache is rebuilt, never trusted
        else:
            _check_arrays(arrays, root)
            return arrays
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
