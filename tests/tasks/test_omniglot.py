"""Omniglot loading: layouts, cache, completeness, download, errors (on tiny synthetic zips, served
over HTTP on loopback where a download is tested), and the real data's splits and checksums."""

from __future__ import annotations

import io
import os
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from http_loopback import refused_url, serve
from PIL import Image

from metacourse.tasks import download, omniglot
from metacourse.tasks.download import DownloadError, Known, matches, sha256_of
from metacourse.tasks.omniglot import Omniglot, find_sources, load_omniglot_array

ALPHABETS = {"images_background": ("Latin", "Greek"), "images_evaluation": ("Runic",)}
TINY_EXPECTED = {part: {alphabet: 2 for alphabet in alphabets} for part, alphabets in ALPHABETS.items()}


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
def tiny_expected(monkeypatch):
    """The tiny zips' alphabets count as the whole set; no Colab, no download switch."""
    monkeypatch.setattr(omniglot, "EXPECTED_ALPHABETS", TINY_EXPECTED)
    monkeypatch.delenv("METACOURSE_DOWNLOAD", raising=False)
    monkeypatch.delenv("METACOURSE_OMNIGLOT_URL", raising=False)
    monkeypatch.setattr(download, "on_colab", lambda: False)


@pytest.fixture
def tiny(tmp_path, monkeypatch, tiny_expected):
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


def test_missing_data_says_where_the_files_go(tmp_path, tiny_expected):
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


@pytest.fixture
def upstream(tmp_path, monkeypatch, tiny_expected):
    """Tiny zips served on loopback as the download source, with their checksums as the known copies."""
    source = make_zips(tmp_path / "upstream")
    known = {part: (Known(os.path.getsize(source / f"{part}.zip"), sha256_of(source / f"{part}.zip"), "tiny"),)
             for part in omniglot.PARTS}
    monkeypatch.setattr(omniglot, "KNOWN_ZIPS", known)
    monkeypatch.setenv("METACOURSE_CACHE", str(tmp_path / "cache"))
    with serve(source) as (url, requests):
        monkeypatch.setenv("METACOURSE_OMNIGLOT_URL", url)
        yield source, requests


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_fetches_once_verifies_and_decodes(tmp_path, upstream):
    source, requests = upstream
    arrays = load_omniglot_array(tmp_path / "data", download=True)
    assert arrays["images"].shape == (6, 20, 28, 28)
    assert requests == ["/images_background.zip", "/images_evaluation.zip"]
    for part in omniglot.PARTS:
        assert (tmp_path / "data" / "omniglot" / f"{part}.zip").read_bytes() == (source / f"{part}.zip").read_bytes()
    load_omniglot_array(tmp_path / "data", download=True)
    omniglot.download_omniglot(tmp_path / "data")  # verified copies are kept, not fetched again
    assert len(requests) == 2


def test_colab_downloads_without_being_asked_unless_switched_off(tmp_path, upstream, monkeypatch):
    monkeypatch.setattr(download, "on_colab", lambda: True)
    monkeypatch.setenv("METACOURSE_DOWNLOAD", "0")
    with pytest.raises(FileNotFoundError, match="METACOURSE_DOWNLOAD=1"):
        load_omniglot_array(tmp_path / "data")
    monkeypatch.delenv("METACOURSE_DOWNLOAD")
    assert load_omniglot_array(tmp_path / "data")["images"].shape[0] == 6


def test_download_switch_from_the_environment(tmp_path, upstream, monkeypatch):
    monkeypatch.setenv("METACOURSE_DOWNLOAD", "1")
    assert load_omniglot_array(tmp_path / "data")["images"].shape[0] == 6


def test_on_colab_sees_a_google_colab_module(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert download.on_colab()


def test_no_network_is_a_clear_error_and_leaves_nothing(tmp_path, tiny_expected, monkeypatch):
    monkeypatch.setenv("METACOURSE_OMNIGLOT_URL", refused_url())
    with pytest.raises(DownloadError, match=r"could not download http://127\.0\.0\.1:\d+/images_background\.zip "
                                            r"\(.*refused.*\); nothing was kept") as error:
        load_omniglot_array(tmp_path / "data", download=True, cache=tmp_path / "cache")
    assert isinstance(error.value, OSError)
    assert leftovers(tmp_path / "data" / "omniglot") == [] and leftovers(tmp_path / "cache") == []


def test_dropped_connection_leaves_nothing(tmp_path, upstream, monkeypatch):
    monkeypatch.setenv("METACOURSE_OMNIGLOT_URL", os.environ["METACOURSE_OMNIGLOT_URL"] + "/truncated")
    with pytest.raises(DownloadError, match=r"the connection ended after [\d,]+ of [\d,]+ bytes\); nothing was kept"):
        omniglot.download_omniglot(tmp_path / "data")
    assert leftovers(tmp_path / "data" / "omniglot") == []


@pytest.mark.parametrize("damage", ["flip one byte", "append bytes"])
def test_corrupt_download_is_deleted_and_reported(tmp_path, upstream, damage):
    source, _ = upstream
    path = source / "images_evaluation.zip"
    data = bytearray(path.read_bytes())
    if damage == "flip one byte":
        data[len(data) // 2] ^= 0xFF
    else:
        data += b"junk"
    path.write_bytes(bytes(data))
    pattern = "is corrupt or not the expected file" if damage == "flip one byte" else "sent more than"
    with pytest.raises(DownloadError, match=pattern) as error:
        omniglot.download_omniglot(tmp_path / "data")
    assert "deleted" in str(error.value)
    assert leftovers(tmp_path / "data" / "omniglot") == ["images_background.zip"]  # the good one is kept


def test_a_corrupt_zip_in_the_cache_is_replaced(tmp_path, upstream, capsys):
    source, requests = upstream
    target = tmp_path / "data" / "omniglot"
    target.mkdir(parents=True)
    (target / "images_background.zip").write_bytes(b"half a file")
    omniglot.download_omniglot(tmp_path / "data")
    assert "matches no known version" in capsys.readouterr().err
    assert (target / "images_background.zip").read_bytes() == (source / "images_background.zip").read_bytes()


def test_missing_data_names_both_switches(tmp_path, tiny_expected):
    with pytest.raises(FileNotFoundError) as error:
        load_omniglot_array(tmp_path / "nowhere", cache=tmp_path / "cache")
    assert "METACOURSE_DOWNLOAD=1" in str(error.value) and "METACOURSE_DATA" in str(error.value)


def drop_alphabets(source: Path, target: Path, part: str, dropped: set[str]) -> None:
    """Copy ``source``'s zip of ``part`` into ``target`` without the ``dropped`` alphabets."""
    with zipfile.ZipFile(source / f"{part}.zip") as old, zipfile.ZipFile(target / f"{part}.zip", "w") as new:
        for info in old.infolist():
            if Path(info.filename).parts[1:2] and Path(info.filename).parts[1] in dropped:
                continue
            new.writestr(info, old.read(info))


def test_a_partial_set_is_refused_with_the_missing_alphabets_named(tiny):
    source = tiny / "data" / "omniglot"
    partial = tiny / "partial" / "omniglot"
    partial.mkdir(parents=True)
    drop_alphabets(source, partial, "images_background", {"Greek"})
    (partial / "images_evaluation.zip").write_bytes((source / "images_evaluation.zip").read_bytes())
    with pytest.raises(ValueError, match=r"incomplete \(4 characters where the set has 6\): "
                                         r"images_background lacks 1 of its 2 alphabets: "
                                         r"Greek \(2 characters\)\. .*METACOURSE_DOWNLOAD=1"):
        load_omniglot_array(tiny / "partial")
    assert leftovers(tiny / "cache") == []


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


SHARED = Path(os.environ.get("METACOURSE_DATA") or "/nonexistent") / "omniglot"


@pytest.mark.skipif(not (SHARED / "images_background.zip").is_file(),
                    reason="the Omniglot zips are not in METACOURSE_DATA/omniglot (CI: ../shared/data)")
def test_real_zips_download_over_loopback_with_their_checksums(tmp_path, monkeypatch):
    """The real zips, served on loopback, pass the shipped size and SHA-256 check; a copy missing two
    alphabets is refused before any decoding, naming them."""
    with serve(SHARED) as (url, _):
        sources = omniglot.download_omniglot(tmp_path / "data", base_url=url)
    assert all(matches(sources[p], omniglot.KNOWN_ZIPS[p]) for p in omniglot.PARTS)
    partial = tmp_path / "partial" / "omniglot"
    partial.mkdir(parents=True)
    drop_alphabets(SHARED, partial, "images_evaluation", {"Keble", "ULOG"})
    os.symlink(SHARED / "images_background.zip", partial / "images_background.zip")
    with pytest.raises(ValueError, match=r"\(1,571 characters where the set has 1,623\): "
                                         r"images_evaluation lacks 2 of its 20 alphabets: "
                                         r"Keble \(26 characters\), ULOG \(26 characters\)"):
        load_omniglot_array(tmp_path / "partial", cache=tmp_path / "cache")
