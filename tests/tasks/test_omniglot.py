"""Omniglot loading: layouts, cache, errors (on tiny synthetic zips), and the real data's splits."""

from __future__ import annotations

import io
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metacourse.tasks import omniglot
from metacourse.tasks.omniglot import Omniglot, find_sources, load_omniglot_array

ALPHABETS = {"images_background": ("Latin", "Greek"), "images_evaluation": ("Runic",)}


def _png(seed: int) -> bytes:
    """A 105×105 one-bit drawing: white background, a black stroke that depends on ``seed``."""
    pixels = np.ones((105, 105), dtype=bool)
    pixels[10 + seed % 80: 20 + seed % 80, 5:100] = False
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zips(folder: Path, characters: int = 2) -> Path:
    """Write small zips in the original layout: part/Alphabet/characterNN/XXXX_YY.png."""
    folder.mkdir(parents=True, exist_ok=True)
    seed = 0
    for part, alphabets in ALPHABETS.items():
        with zipfile.ZipFile(folder / f"{part}.zip", "w") as archive:
            for alphabet in alphabets:
                for c in range(1, characters + 1):
                    for d in range(1, 21):
                        seed += 1
                        archive.writestr(f"{part}/{alphabet}/character{c:02d}/{seed:04d}_{d:02d}.png",
                                         _png(seed))
    return folder


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A data folder with tiny zips, and a private cache folder."""
    make_zips(tmp_path / "data" / "omniglot")
    monkeypatch.setenv("METACOURSE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("METACOURSE_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_decodes_zips_into_one_cached_uint8_array(tiny):
    arrays = load_omniglot_array()
    assert arrays["images"].shape == (6, 20, 28, 28) and arrays["images"].dtype == np.uint8
    assert list(arrays["part"]) == [0, 0, 0, 0, 1, 1]
    assert arrays["characters"][0] == "Greek/character01"
    image = arrays["images"][0, 0]
    assert image.max() > 200 and np.median(image) == 0  # strokes bright, background dark
    cached = list((tiny / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("omniglot28-")
    again = load_omniglot_array()
    assert np.array_equal(again["images"], arrays["images"])


def test_extracted_and_torchvision_layouts_match_the_zips(tiny):
    from_zips = load_omniglot_array()
    for layout in ("omniglot-py", "omniglot"):
        root = tiny / layout.replace("-", "_")
        for part in ALPHABETS:
            with zipfile.ZipFile(tiny / "data" / "omniglot" / f"{part}.zip") as archive:
                archive.extractall(root / layout)
        sources = find_sources(root)
        assert all(path.is_dir() for path in sources.values())
        arrays = load_omniglot_array(root)
        assert np.array_equal(arrays["images"], from_zips["images"])


def test_missing_data_says_where_the_files_go(tmp_path):
    with pytest.raises(FileNotFoundError, match="images_background.zip") as error:
        load_omniglot_array(tmp_path / "nowhere", download=False, cache=tmp_path / "cache")
    assert str(tmp_path / "nowhere" / "omniglot") in str(error.value)
    assert "METACOURSE_DATA" in str(error.value)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_zip_is_a_clear_error_and_writes_no_cache(tiny, damage):
    path = tiny / "data" / "omniglot" / "images_evaluation.zip"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a zip" * 100)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_omniglot_array()
    cache = tiny / "cache"
    assert not cache.exists() or not any(cache.iterdir())


def test_a_truncated_cache_file_is_rebuilt(tiny):
    first = load_omniglot_array()
    (cached,) = (tiny / "cache").iterdir()
    cached.write_bytes(cached.read_bytes()[:1000])
    assert np.array_equal(load_omniglot_array()["images"], first["images"])


def test_incomplete_character_is_a_clear_error(tiny):
    path = tiny / "data" / "omniglot" / "images_background.zip"
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("images_background/Latin/character09/9999_01.png", _png(1))
    with pytest.raises(ValueError, match="1 drawings instead of 20"):
        load_omniglot_array()


def test_download_verifies_checksums_and_never_leaves_partial_files(tmp_path, monkeypatch):
    source = make_zips(tmp_path / "upstream")

    def fake_retrieve(url, filename):  # stands in for the network
        shutil.copy(source / Path(url).name, filename)

    monkeypatch.setattr(urllib.request, "urlretrieve", fake_retrieve)
    with pytest.raises(ValueError, match="unknown checksum"):
        omniglot.download_omniglot(tmp_path / "data")
    assert os.listdir(tmp_path / "data" / "omniglot") == []
    monkeypatch.setattr(omniglot, "KNOWN_MD5", {part: (omniglot._md5(source / f"{part}.zip"),)
                                                for part in omniglot.PARTS})
    sources = omniglot.download_omniglot(tmp_path / "data")
    assert sorted(p.name for p in sources.values()) == ["images_background.zip",
                                                        "images_evaluation.zip"]


def test_failed_download_names_where_the_files_go(tmp_path, monkeypatch):
    def offline(url, filename):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    with pytest.raises(FileNotFoundError, match="could not download"):
        load_omniglot_array(tmp_path / "data", download=True, cache=tmp_path / "cache")
    assert os.listdir(tmp_path / "data" / "omniglot") == []


def test_rotations_are_new_classes(tiny):
    data = Omniglot("all")
    assert data.n_classes == 4 * 6 and data.n_per_class == 20
    upright = data.get(np.array([8]), np.array([3]))[0, 0].numpy()
    for turn in (1, 2, 3):
        rotated = data.get(np.array([8 + turn]), np.array([3]))[0, 0].numpy()
        assert np.array_equal(rotated, np.rot90(upright, turn))
    assert data.class_name(9) == f"{data.characters[2]} rot90"


def test_unknown_split_is_rejected(tiny):
    with pytest.raises(ValueError, match="split='validation' is unknown"):
        Omniglot("validation")


needs_data = pytest.mark.skipif(
    not any((Path(os.environ.get("METACOURSE_DATA", "/nonexistent")) / p).exists()
            for p in ("omniglot", "images_background.zip", "omniglot-py")),
    reason="the Omniglot data set is not in METACOURSE_DATA (CI: METACOURSE_DATA=../shared/data)")


@needs_data
def test_real_splits_follow_the_maml_protocol():
    arrays = load_omniglot_array()
    assert arrays["images"].shape == (1623, 20, 28, 28)
    train = omniglot.split_characters(arrays["characters"], arrays["part"], "train")
    test = omniglot.split_characters(arrays["characters"], arrays["part"], "test")
    assert len(train) == 1200 and len(test) == 423 and not set(train) & set(test)
    background = omniglot.split_characters(arrays["characters"], arrays["part"], "background")
    assert len(background) == 964
    assert Omniglot("train").n_classes == 4800 and Omniglot("evaluation").n_classes == 4 * 659
    mean = arrays["images"][:50].mean() / 255
    assert 0.02 < mean < 0.3  # mostly dark background, bright strokes
