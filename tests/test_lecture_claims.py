"""Numbers written in a lecture's prose equal the stored results they quote (lectures/claims/)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from metacourse.course import claims

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted((ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", LECTURES, ids=lambda p: p.stem)
def test_every_quoted_number_is_the_stored_one(path: Path):
    failures = claims.check(path)
    assert not failures, "\n".join(failures)


def test_every_claims_table_belongs_to_a_lecture():
    for table in (ROOT / "lectures" / "claims").glob("*.json"):
        assert (ROOT / "lectures" / f"{table.stem}.ipynb").is_file(), f"{table.name}: no such lecture"


def _lecture(folder: Path, text: str) -> Path:
    lecture = folder / "lectures" / "99_example.ipynb"
    lecture.parent.mkdir(parents=True)
    lecture.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": [text]}],
                                   "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    (lecture.parent / "claims").mkdir()
    return lecture


def _claim(lecture: Path, quote: str, values: list, **extra) -> None:
    table = [{"quote": quote, "result": {"experiment": "omniglot", "method": "protonet", "shots": 1},
              "values": values, **extra}]
    (lecture.parent / "claims" / f"{lecture.stem}.json").write_text(json.dumps(table))


def test_the_check_passes_on_the_stored_number_and_fails_when_it_changes(tmp_path: Path):
    """The drift check itself: the same quote passes on the stored result and fails on a copy of
    results/ where the stored number was changed."""
    folder = tmp_path / "results"
    shutil.copytree(ROOT / "results", folder)
    lecture = _lecture(tmp_path, "ProtoNets reach 99.22 ± 0.12 % after 827 s of CPU.")
    row = ["row", "Prototypical Networks"]
    _claim(lecture, "99.22 ± 0.12", [[*row, "mean"], [*row, "ci95"]])
    assert claims.check(lecture, folder=folder) == []

    stored = json.loads((folder / "omniglot-protonet-5w1s.json").read_text())
    stored["rows"][0]["ours"]["mean"] = 98.1
    (folder / "omniglot-protonet-5w1s.json").write_text(json.dumps(stored))
    failures = claims.check(lecture, folder=folder)
    assert len(failures) == 1 and "99.22 written, the stored result gives 98.1" in failures[0]


def test_the_check_fails_on_a_quote_missing_from_the_text_or_a_wrong_path(tmp_path: Path):
    lecture = _lecture(tmp_path, "Training took 14 min.")
    _claim(lecture, "14 min", [["measured", "train_cpu_seconds"]], scale=[1 / 60])
    assert claims.check(lecture, folder=ROOT / "results") == []  # 827.3 s = 13.8 min
    _claim(lecture, "15 min", [["measured", "train_cpu_seconds"]], scale=[1 / 60])
    assert "not found" in claims.check(lecture, folder=ROOT / "results")[0]
    _claim(lecture, "14 min", [["row", "MAML", "mean"]])
    assert "no row for 'MAML'" in claims.check(lecture, folder=ROOT / "results")[0]
    _claim(lecture, "14 min", [["measured", "train_cpu_seconds"], ["seed"]])
    assert "1 numbers in the quote, 2 values" in claims.check(lecture, folder=ROOT / "results")[0]


@pytest.mark.parametrize("written, value, ok", [("99.22", 99.2222, True), ("99.2", 99.2222, True),
                                                ("99.23", 99.2222, False), ("2,656", 2655.7, True),
                                                ("0.530", 0.5301, True), ("0.53", 0.5351, False)])
def test_rounding_to_the_decimals_written(written: str, value: float, ok: bool):
    assert claims._rounds_to(written, value) is ok  # noqa: SLF001
