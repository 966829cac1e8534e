"""Lecture 2's tables of the stored Omniglot runs: each run with its evaluation protocol beside the
paper's, and transductive against non-transductive where both are stored."""

import json
import shutil
from pathlib import Path

from metacourse import results
from metacourse.experiments import omniglot

REPO_RESULTS = Path(__file__).resolve().parents[2] / "results"
STEMS = ("omniglot-protonet-5w1s", "omniglot-protonet-5w1s-nontransductive", "omniglot-maml-5w1s")


def _copy(tmp_path: Path, stems=STEMS) -> Path:
    for stem in stems:
        shutil.copy(REPO_RESULTS / f"{stem}.json", tmp_path / f"{stem}.json")
    return tmp_path


def _load(folder: Path, method: str, variant: str | None = None):
    return results.load("omniglot", folder=folder, method=method, ways=5, shots=1,
                        **({"variant": variant} if variant else {}))


def test_each_run_shows_its_protocol_and_the_papers(tmp_path):
    folder = _copy(tmp_path)
    runs = [_load(folder, "maml"), _load(folder, "protonet"), _load(folder, "protonet", "nontransductive")]
    table = omniglot.protocol_results_markdown(runs)
    protonet = runs[2].rows[0].ours
    assert f"| non-transductive | 98.8 (non-transductive) | {protonet.mean:.2f} ± {protonet.ci95:.2f} (600)" in table
    assert "| MAML | 5-way 1-shot | transductive | 98.7 (transductive) |" in table
    assert len([line for line in table.splitlines() if line.startswith("| ")]) == 1 + len(runs)  # header + runs


def test_the_difference_is_transductive_minus_non_transductive(tmp_path):
    folder = _copy(tmp_path)
    with_, without = _load(folder, "protonet"), _load(folder, "protonet", "nontransductive")
    table = omniglot.transduction_markdown([with_, without])
    difference = with_.rows[0].ours.mean - without.rows[0].ours.mean
    assert f"| {difference:+.2f} |" in table


def test_missing_runs_say_which_command_writes_them(tmp_path):
    assert "metacourse reproduce omniglot" in omniglot.protocol_results_markdown([])
    folder = _copy(tmp_path, STEMS[:1])
    assert "scripts/omniglot_transduction.py" in omniglot.transduction_markdown([_load(folder, "protonet")])


def test_a_fast_run_is_marked_as_a_smoke_test(tmp_path):
    data = json.loads((REPO_RESULTS / "omniglot-maml-5w1s.json").read_text())
    data["notes"].append("FAST mode: a smoke test with a tiny budget, not a reproduction")
    (tmp_path / "omniglot-maml-5w1s.json").write_text(json.dumps(data))
    assert "**FAST: a smoke test**" in omniglot.protocol_results_markdown([_load(tmp_path, "maml")])
