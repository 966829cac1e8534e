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


# --- Stored runs by name ------------------------------------------------------------------------

def test_the_catalogue_indexes_every_stored_run():
    """results/catalogue.json is what `metacourse results --catalogue` writes from the files."""
    stored = json.loads((REPO_RESULTS / results.CATALOGUE).read_text())
    assert stored == results.build_catalogue(REPO_RESULTS), (
        "results/catalogue.json is stale: run `metacourse results --catalogue` after changing results/")
    files = {entry["file"] for entry in stored}
    runs_on_disk = {p.name for p in REPO_RESULTS.glob("*.json") if p.name.count(".") == 1} - {results.CATALOGUE}
    assert files == runs_on_disk


def test_the_results_page_is_generated_from_the_stored_runs():
    page = (REPO_RESULTS.parent / "docs" / "results.md").read_text()
    assert page == results.markdown_page(REPO_RESULTS), (
        "docs/results.md differs from results/: run `metacourse results --markdown > docs/results.md`")


def test_load_names_a_run_by_what_it_is():
    float32 = results.load("omniglot", method="protonet", shots=1)
    bf16 = results.load("omniglot", method="protonet", shots=1, variant="bf16")
    assert (float32.name, bf16.name) == ("omniglot-protonet-5w1s", "omniglot-protonet-5w1s-bf16")
    assert float32.plan["method"] == "protonet" and "bf16" not in float32.plan and bf16.plan["bf16"] is True
    raw = json.loads((REPO_RESULTS / "omniglot-protonet-5w1s.json").read_text())
    assert float32.row("Prototypical Networks").ours.mean == raw["rows"][0]["ours"]["mean"]
    assert float32.measured["train_cpu_seconds"] == raw["budget"]["train_cpu_seconds"]
    assert float32.cpu_seconds() == raw["budget"]["train_cpu_seconds"]


def test_the_plan_holds_inputs_and_measured_the_outputs():
    for entry in json.loads((REPO_RESULTS / results.CATALOGUE).read_text()):
        stored = results.load(**{k: v for k, v in entry.items() if k not in ("file", "figures", "extras")})
        assert not set(stored.plan) & set(stored.measured)
        assert not any(key.endswith("_seconds") or key == "curves" for key in stored.plan), stored.name
        with pytest.raises(TypeError):
            stored.plan["meta_steps"] = 1  # read-only


def test_runs_lists_every_seed_of_one_variant_in_order():
    seeds = results.runs("mbmpo-pendulum", variant="h2")
    assert [run.seed for run in seeds] == [0, 1, 2, 3, 4]
    assert all(run.entry.get("variant") == "h2" for run in seeds)
    assert [run.seed for run in results.runs("mbmpo-pendulum")] == [0, 1, 2, 3, 4]  # no variant: the main runs


def test_an_ambiguous_or_unknown_selection_says_what_exists():
    with pytest.raises(LookupError, match="add a key") as ambiguous:
        results.load("meta-critic-sinusoid", variant="labelled")
    assert "critic_steps=20000" in str(ambiguous.value)
    with pytest.raises(KeyError, match="stored runs") as missing:
        results.load("omniglot", method="protonet", shots=20)
    assert "method='maml'" in str(missing.value)
    with pytest.raises(KeyError, match="no stored results for experiment 'omniglott'"):
        results.load("omniglott")


def test_rows_figures_and_extras_fail_with_what_they_have():
    stored = results.load("meta-critic-cartpole")
    assert stored.figure().name == "meta-critic-cartpole-seed0.png" and stored.figure("z").is_file()
    assert "interactions_to_195" in stored.extra("details")
    with pytest.raises(FileNotFoundError, match="'main', 'z'"):
        stored.figure("curve")
    with pytest.raises(KeyError, match="details"):
        stored.extra("curve")
    critic = results.load("meta-critic-sinusoid", variant="labelled", critic_steps=60)
    with pytest.raises(KeyError, match="give the metric too"):
        critic.row("actor, meta-critic")
    assert critic.row("actor, meta-critic", "mse_4shot").ours.n > 0


def test_a_stored_run_renders_as_a_markdown_table_with_seed_device_and_time():
    text = results.load("omniglot", method="protonet", shots=1)._repr_markdown_()
    assert "| Prototypical Networks | `accuracy_5w1s_%` | 98.8 |" in text
    assert "seed 0 · cpu · wall" in text and "training CPU" in text and "meta_steps=5000" in text


def test_load_works_without_a_clone(served):
    url, requests = served
    stored = results.load("sinusoid", download=True)
    assert stored.name == "sinusoid" and stored.figure().is_file()
    assert any("catalogue.json" in path for path in requests)
