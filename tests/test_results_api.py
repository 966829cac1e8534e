"""metacourse.results: stored results from the clone, or fetched once (served here on loopback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from http_loopback import refused_url, serve

from metacourse import results
from metacourse.tasks import download
from metacourse.tasks.download import DownloadError

REPO_RESULTS = Path(__file__).resolve().parents[1] / "results"


@pytest.fixture
def no_clone(tmp_path, monkeypatch):
    """No results/ folder, a private cache, no Colab, no download switch."""
    monkeypatch.setattr(results, "results_folder", lambda: None)
    monkeypatch.setenv("METACOURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("METACOURSE_DOWNLOAD", raising=False)
    monkeypatch.setattr(download, "on_colab", lambda: False)
    return tmp_path


@pytest.fixture
def served(no_clone, monkeypatch):
    """The repository's results/ served on loopback as the results URL."""
    with serve(REPO_RESULTS) as (url, requests):
        monkeypatch.setenv("METACOURSE_RESULTS_URL", url)
        yield url, requests


def test_a_clone_reads_its_own_results_folder(monkeypatch):
    monkeypatch.chdir(REPO_RESULTS.parent / "lectures")  # where a lecture notebook runs
    assert results.results_folder().resolve() == REPO_RESULTS
    assert results.result_path("sinusoid.json").resolve() == REPO_RESULTS / "sinusoid.json"
    assert results.load_result("sinusoid.json") == json.loads((REPO_RESULTS / "sinusoid.json").read_text())


def test_without_a_clone_a_result_is_fetched_once(served, monkeypatch):
    url, requests = served
    monkeypatch.setattr(download, "on_colab", lambda: True)
    for name in ("sinusoid.json", "sinusoid.png"):
        path = results.result_path(name)
        assert path.read_bytes() == (REPO_RESULTS / name).read_bytes()
        assert results.result_path(name) == path
    assert requests == ["/sinusoid.json", "/sinusoid.png"]
    assert results.load_result("sinusoid.json")["experiment"]


def test_without_a_clone_or_download_the_error_names_the_fix(no_clone):
    with pytest.raises(FileNotFoundError, match="METACOURSE_DOWNLOAD=1.*results/sinusoid.json"):
        results.result_path("sinusoid.json")


def test_the_default_url_is_the_badges_repository(no_clone, monkeypatch):
    from metacourse.course.colab import location

    monkeypatch.delenv("METACOURSE_RESULTS_URL", raising=False)
    where = location()
    assert results._base_url() == f"https://raw.githubusercontent.com/{where.repository}/{where.branch}/results"


@pytest.mark.parametrize("how", ["refused", "truncated", "missing"])
def test_a_failed_fetch_keeps_nothing(served, how, monkeypatch):
    url, _ = served
    if how == "refused":
        monkeypatch.setenv("METACOURSE_RESULTS_URL", refused_url())
    elif how == "truncated":
        monkeypatch.setenv("METACOURSE_RESULTS_URL", url + "/truncated")
    name = "no-such-result.json" if how == "missing" else "sinusoid.json"
    with pytest.raises(DownloadError, match="could not download.*nothing was kept"):
        results.result_path(name, download=True)
    cache = results.cache_root()
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_a_name_outside_results_is_refused(no_clone):
    with pytest.raises(ValueError, match="not a file name in results/"):
        results.result_path("../pyproject.toml", download=True)
