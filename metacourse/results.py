"""The course's stored results (``results/*.json`` and their figures), as data, with or without a clone.

Every stored run is named by what it is, never by a file pattern::

    from metacourse import results
    r = results.load("omniglot", method="protonet", shots=1)                 # seed 0, float32
    r = results.load("omniglot", method="protonet", shots=1, variant="bf16")
    runs = results.runs("mbmpo-pendulum", variant="h2")                     # every seed of one variant
    r.plan, r.measured, r.rows, r.row("Prototypical Networks").ours.mean, r.figure()

:func:`load` returns a :class:`StoredResult`: the plan (the settings that decided the run) kept
apart from what it measured (the rows of its table, times, curves) and its artefacts. The
selector keys of every run are in ``results/catalogue.json`` (:func:`catalogue`), which
``metacourse results --catalogue`` regenerates from the files.

The lectures quote full-budget runs stored in the repository's ``results/`` folder. In a clone
(or an editable install) :func:`result_path` finds them there. Without the repository — on Colab,
where the package is installed from GitHub — it fetches the one file asked for from the same
repository and branch as the notebook's "Open in Colab" badge (``[tool.metacourse]`` in
``pyproject.toml``), once, into ``~/.cache/metacourse/results/`` (``$METACOURSE_CACHE``)::

    from metacourse.results import load_result, result_path
    table = load_result("sinusoid.json")                       # the stored run, as a dict
    display(Image(filename=result_path("sinusoid.png")))       # its figure

Fetching happens on Colab, or anywhere with ``METACOURSE_DOWNLOAD=1`` (``download=True``);
``$METACOURSE_RESULTS_URL`` replaces the base URL (``https://raw.githubusercontent.com/OWNER/NAME/
BRANCH/results``). The stored results have no published checksums: a file is kept when it arrived
whole (its announced length) and is at most 20 MB, and it is written atomically.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .repository import location
from .tasks.download import cache_root, download_allowed, fetch

__all__ = ["MAX_BYTES", "Settings", "StoredResult", "build_catalogue", "catalogue", "load", "load_result",
           "markdown_page", "result_path", "results_folder", "runs"]

MAX_BYTES = 20_000_000
"""The largest stored result fetched (the largest in the repository is well under 1 MB)."""
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def results_folder() -> Path | None:
    """The repository's ``results/`` folder, if this is a clone: ``./results``, ``../results`` (a
    notebook in ``lectures/``), or the one beside the installed package; None otherwise."""
    candidates = [Path("results"), Path("..") / "results", Path(__file__).resolve().parents[1] / "results"]
    return next((folder for folder in candidates if folder.is_dir()), None)


def _base_url() -> str:
    where = location()
    return (os.environ.get("METACOURSE_RESULTS_URL")
            or f"https://raw.githubusercontent.com/{where.repository}/{where.branch}/results")


def result_path(name: str, *, download: bool | None = None) -> Path:
    """The local path of the stored result ``name`` (e.g. ``"sinusoid.json"``), fetched if needed.

    ``download`` None: fetch on Colab or with ``METACOURSE_DOWNLOAD=1``. Raises
    ``FileNotFoundError`` naming the fix when the file is neither here nor fetched, and
    :class:`metacourse.tasks.download.DownloadError` when the fetch fails (nothing is kept).
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a file name in results/ (e.g. 'sinusoid.json')")
    folder = results_folder()
    if folder is not None and (folder / name).is_file():
        return folder / name
    base = _base_url()
    cached = cache_root() / "results" / re.sub(r"[^A-Za-z0-9_.-]+", "_", base) / name
    if cached.is_file():
        return cached
    if not download_allowed(download):
        where = f"{folder} has no {name}" if folder is not None else "there is no results/ folder here"
        raise FileNotFoundError(
            f"{where}: run the notebook from a clone of the course (results/ beside lectures/), or set "
            f"METACOURSE_DOWNLOAD=1 (download=True) to fetch {base}/{name}")
    return fetch(f"{base}/{name}", cached, None, max_bytes=MAX_BYTES, quiet=True)


def load_result(name: str, *, download: bool | None = None) -> dict[str, Any]:
    """The stored JSON result ``name`` as a dict (see :func:`result_path`)."""
    path = result_path(name, download=download)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not a JSON result ({error}); delete it and try again") from None


def rows_markdown(rows, digits: int = 3) -> str:
    """Result rows (``method``, ``metric``, ``paper``, ``ours`` with mean, ci95, median and n) as a
    Markdown table, the paper's number beside ours; a non-finite mean reads "diverged"."""
    lines = ["| method | metric | paper | ours (mean ± 95% CI) | median | n |", "|---|---|---|---|---|---|"]
    for row in rows:
        paper = "—" if row.paper is None else f"{row.paper:g}"
        ours = ("diverged" if not math.isfinite(row.ours.mean) else f"{row.ours.mean:.{digits}f}") + (
            f" ± {row.ours.ci95:.{digits}f}" if math.isfinite(row.ours.ci95) else "")
        median = f"{row.ours.median:.{digits}f}" if math.isfinite(row.ours.median) else "—"
        lines.append(f"| {row.method} | `{row.metric}` | {paper} | {ours} | {median} | {row.ours.n} |")
    return "\n".join(lines)


# --- Stored runs by name -----------------------------------------------------------------------

CATALOGUE = "catalogue.json"
"""The index of ``results/``: one entry per stored run, with the keys :func:`load` selects on."""

OPTIONAL_KEYS = ("variant", "meta_steps", "critic_steps")
"""Selector keys a run has only when it differs from its experiment's main run: :func:`load`
picks the run without them unless they are asked for."""

_MEASURED = {"train_segments", "curves", "critic_loss_curve", "mbmpo_final_return", "median_interactions",
             "ppo_steps_to_mbmpo_final", "step_ratio", "steps_to_target", "training_returns_last_10pct",
             "best_actor_critic", "rl2"}
"""Entries of a stored ``budget`` that are outputs of the run, not settings (with every ``*_seconds``):
runs stored before results kept ``measured`` apart wrote them there (``rl2`` held both)."""


def _is_measured(key: str) -> bool:
    return key in _MEASURED or key.endswith("_seconds")


def _selectors(stem: str, data: dict) -> dict[str, Any]:
    """The selector keys of the stored run ``stem`` (a file name without ``.json``).

    A stem is its experiment's name followed by ``-``-separated parts: ``5w1s`` (ways and shots),
    ``seed3``, ``steps20000`` (the steps of the part the variant varies), a bare number (meta-steps),
    the method (Omniglot), and anything else, which names the variant (``bf16``, ``h2``, ``snail``).
    """
    budget = data.get("budget") if isinstance(data.get("budget"), dict) else {}
    experiment = data.get("experiment") or stem
    keys: dict[str, Any] = {"experiment": experiment, "seed": int(data.get("seed") or 0)}
    rest = stem[len(experiment):].strip("-") if stem.startswith(experiment) else ""
    variant = []
    for part in filter(None, rest.split("-")):
        if budget.get("method") == part:
            keys["method"] = part
        elif match := re.fullmatch(r"(\d+)w(\d+)s", part):
            keys["ways"], keys["shots"] = int(match[1]), int(match[2])
        elif match := re.fullmatch(r"seed(\d+)", part):
            if int(match[1]) != keys["seed"]:
                raise ValueError(f"results/{stem}.json: its name says seed {match[1]}, its data seed {keys['seed']}")
        elif match := re.fullmatch(r"steps(\d+)", part):
            keys["critic_steps" if experiment.startswith("meta-critic") else "meta_steps"] = int(match[1])
        elif part.isdigit():
            keys["meta_steps"] = int(part)
        else:
            variant.append(part)
    if variant:
        keys["variant"] = "-".join(variant)
    return keys


def build_catalogue(folder: Path) -> list[dict[str, Any]]:
    """The catalogue of ``folder`` (a ``results/``), as :func:`catalogue` reads it: one entry per
    run (``*.json`` but the auxiliary ``*.curve.json``-style files), with its figures and extras."""
    entries = []
    for path in sorted(folder.glob("*.json")):
        if path.name == CATALOGUE or path.name.count(".") > 1:
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        entries.append({"file": path.name, **_selectors(path.stem, data), "figures": {}, "extras": {}})
    by_stem = sorted(entries, key=lambda entry: -len(entry["file"]))
    for path in sorted([*folder.glob("*.png"), *folder.glob("*.*.json")]):
        name, kind = (path.name.split(".")[0], path.name.split(".")[1])
        for entry in by_stem:
            stem, seed = entry["file"][:-len(".json")], f"seed{entry['seed']}"
            if kind != "png" and name in (stem, f"{stem}-{seed}"):
                entry["extras"][kind] = path.name
            elif kind == "png" and name in (stem, f"{stem}-{seed}"):
                entry["figures"]["main"] = path.name
            elif kind == "png" and name.startswith(f"{stem}-") and name.endswith(f"-{seed}") \
                    and "-" not in name[len(stem) + 1:-len(seed) - 1]:
                entry["figures"][name[len(stem) + 1:-len(seed) - 1]] = path.name
            else:
                continue
            break
    return entries


def catalogue(*, download: bool | None = None) -> list[dict[str, Any]]:
    """Every stored run with its selector keys, e.g. ``{"file": "omniglot-protonet-5w1s.json",
    "experiment": "omniglot", "seed": 0, "method": "protonet", "ways": 5, "shots": 1, ...}``."""
    return json.loads(result_path(CATALOGUE, download=download).read_text(encoding="utf-8"))


def _describe(entry: dict) -> str:
    return ", ".join(f"{key}={entry[key]!r}" for key in entry if key not in ("file", "figures", "extras"))


def _select(experiment: str, keys: dict[str, Any], entries: list[dict]) -> list[dict]:
    known = sorted({entry["experiment"] for entry in entries})
    if experiment not in known:
        raise KeyError(f"no stored results for experiment {experiment!r}; stored: {', '.join(known)}")
    matching = [entry for entry in entries if entry["experiment"] == experiment
                and all(entry.get(key) == value for key, value in keys.items())]
    chosen = [entry for entry in matching if all(key in keys or key not in entry for key in OPTIONAL_KEYS)]
    if not chosen and matching:
        options = "\n  ".join(_describe(entry) for entry in matching)
        raise LookupError(f"{len(matching)} stored runs of {experiment!r} match {keys}; add a key that tells "
                          f"them apart:\n  {options}")
    if not chosen:
        options = "\n  ".join(_describe(e) for e in entries if e["experiment"] == experiment)
        raise KeyError(f"no stored run of {experiment!r} with {keys}; stored runs:\n  {options}")
    return chosen


def _entries(download: bool | None, folder: Path | None) -> list[dict[str, Any]]:
    return catalogue(download=download) if folder is None else build_catalogue(folder)


def load(experiment: str, *, download: bool | None = None, folder: Path | None = None, **keys: Any) -> StoredResult:
    """The one stored run of ``experiment`` with these selector keys (``seed`` 0 unless given).

    ``results.load("omniglot", method="maml", shots=1)``; ``results.load("meta-critic-sinusoid",
    variant="labelled", critic_steps=20000)``. Raises ``KeyError`` listing the stored runs when
    none matches, and ``LookupError`` naming the key to add when several do. ``folder``: read
    another results folder than the course's (a copy, as the tests do).
    """
    keys.setdefault("seed", 0)
    chosen = _select(experiment, keys, _entries(download, folder))
    if len(chosen) > 1:
        options = "\n  ".join(_describe(entry) for entry in chosen)
        raise LookupError(f"{len(chosen)} stored runs of {experiment!r} match {keys}; add a key that tells "
                          f"them apart:\n  {options}")
    return StoredResult(chosen[0], download=download, folder=folder)


def runs(experiment: str, *, download: bool | None = None, folder: Path | None = None,
         **keys: Any) -> list[StoredResult]:
    """Every stored run of ``experiment`` with these keys (all seeds unless ``seed`` is given),
    ordered by seed: ``results.runs("mbmpo-pendulum", variant="h2")``."""
    chosen = _select(experiment, keys, _entries(download, folder))
    return [StoredResult(entry, download=download, folder=folder) for entry in sorted(chosen, key=lambda e: e["seed"])]


class Settings(Mapping):
    """A read-only mapping whose entries also read as attributes: ``plan["meta_steps"]`` or
    ``plan.meta_steps`` (a stored plan keeps every key it was saved with, typed plan or not)."""

    def __init__(self, values: dict[str, Any]):
        self._values = MappingProxyType(dict(values))

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"no setting {key!r}; there are: {', '.join(self._values)}") from None

    def __repr__(self) -> str:
        return f"Settings({dict(self._values)!r})"


def _frozen(mapping: dict) -> Settings:
    return Settings(mapping)


class StoredResult:
    """One stored run: its plan (inputs) apart from what it measured (rows, times, curves).

    ``plan`` and ``measured`` are read-only mappings; ``rows`` the table's rows (method, metric,
    the paper's number and ours as mean ± 95% CI, median, n). Shown as the last expression of a
    notebook cell it renders as a Markdown table with its seed, device, time and plan.
    """

    def __init__(self, entry: dict[str, Any], *, download: bool | None = None, folder: Path | None = None):
        from .reproduce import Result  # the schema reproduce writes; torch loads with it

        self.entry = dict(entry)
        self._download, self._folder = download, folder
        self.name: str = entry["file"][:-len(".json")]
        self.data: dict[str, Any] = self._read(entry["file"])
        budget = self.data.get("budget") if isinstance(self.data.get("budget"), dict) else {}
        self.plan = _frozen({k: v for k, v in budget.items() if not _is_measured(k)})
        self.measured = _frozen({k: v for k, v in budget.items() if _is_measured(k)}
                                | dict(self.data.get("measured") or {}))
        stored = Result.from_dict(self.data) if "rows" in self.data and "experiment" in self.data else None
        self.experiment: str = entry["experiment"]
        self.seed: int = entry["seed"]
        self.device: str = self.data.get("device", "")
        self.wall_seconds: float = float(self.data.get("wall_seconds") or 0.0)
        self.rows = list(stored.rows) if stored else []
        self.notes: list[str] = list(self.data.get("notes", []))
        self.artifacts: dict[str, str] = dict(self.data.get("artifacts", {}))

    def _path(self, name: str) -> Path:
        return self._folder / name if self._folder is not None else result_path(name, download=self._download)

    def _read(self, name: str) -> dict[str, Any]:
        if self._folder is None:
            return load_result(name, download=self._download)
        return json.loads((self._folder / name).read_text(encoding="utf-8"))

    def __repr__(self) -> str:
        return f"<StoredResult {self.name}: {_describe(self.entry)}>"

    def row(self, method: str, metric: str | None = None):
        """The row of ``method`` (and ``metric``, when the method has several rows)."""
        found = [row for row in self.rows if row.method == method and metric in (None, row.metric)]
        if len(found) != 1:
            have = "; ".join(f"{row.method!r} / {row.metric!r}" for row in self.rows)
            what = "no row" if not found else f"{len(found)} rows (give the metric too)"
            raise KeyError(f"{self.name}: {what} for {method!r}{f' / {metric!r}' if metric else ''}; rows: {have}")
        return found[0]

    def figure(self, kind: str = "main") -> Path:
        """The stored figure of this run (``results/<name>.png``; other kinds, e.g. ``"z"``)."""
        if kind not in self.entry.get("figures", {}):
            raise FileNotFoundError(f"{self.name} has no stored figure {kind!r}; it has "
                                    f"{sorted(self.entry.get('figures', {})) or 'none'}")
        return self._path(self.entry["figures"][kind])

    def extra(self, kind: str) -> dict[str, Any]:
        """An auxiliary JSON stored beside the run (``results/<name>.<kind>.json``), as a dict."""
        if kind not in self.entry.get("extras", {}):
            have = sorted(self.entry.get("extras", {})) or "none"
            raise KeyError(f"{self.name} has no stored {kind!r}; it has {have}")
        return self._read(self.entry["extras"][kind])

    def cpu_seconds(self) -> float | None:
        """CPU seconds of training as stored (``train_cpu_seconds`` or ``cpu_seconds``), if recorded."""
        for key in ("train_cpu_seconds", "cpu_seconds"):
            if isinstance(self.measured.get(key), (int, float)):
                return float(self.measured[key])
        return None

    def caption(self) -> str:
        """One line: the run, its seed, device, wall (and CPU) time and its plan's scalar settings."""
        cpu = self.cpu_seconds()
        times = f"wall {self.wall_seconds:,.0f} s" + (f", training CPU {cpu:,.0f} s" if cpu is not None else "")
        plan = ", ".join(f"{k}={v}" for k, v in self.plan.items() if isinstance(v, (int, float, str, bool)))
        fast = " **FAST mode: a smoke test, not a reproduction.**" if any("FAST" in n for n in self.notes) else ""
        device = self.device or "device not recorded"
        return f"`{self.name}` · seed {self.seed} · {device} · {times} · plan: {plan}.{fast}"

    def markdown(self, digits: int = 3) -> str:
        """The rows as a Markdown table (:func:`rows_markdown`) with :meth:`caption` underneath."""
        return rows_markdown(self.rows, digits) + "\n\n" + self.caption()

    def _repr_markdown_(self) -> str:
        return self.markdown()


def markdown_page(folder: Path | None = None) -> str:
    """Every stored run's table, grouped by experiment: the generated page ``docs/results.md``."""
    folder = folder or results_folder()
    if folder is None:
        raise FileNotFoundError("there is no results/ folder here: run this in a clone of the course")
    lines = ["# Stored results", "",
             "Generated by `metacourse results --markdown` from `results/` (do not edit by hand; a test keeps",
             "it in step). Each table: the paper's number beside ours as mean ± 95% confidence interval over",
             "test tasks, with the median and the number of test tasks; under it the run's seed, device, wall",
             "time and plan. `metacourse reproduce NAME --json FILE` writes such a file; speed measurements are",
             "in [benchmarks.md](benchmarks.md).", ""]
    entries = [entry for entry in build_catalogue(folder) if not entry["file"].startswith("bench-")]
    for experiment in sorted({entry["experiment"] for entry in entries}):
        lines += [f"## {experiment}", ""]
        for entry in entries:
            if entry["experiment"] != experiment:
                continue
            stored = StoredResult(entry, folder=folder)
            if not stored.rows:
                continue
            lines += [f"### {_describe(entry)}", "", stored.markdown(), ""]
    return "\n".join(lines).rstrip() + "\n"

