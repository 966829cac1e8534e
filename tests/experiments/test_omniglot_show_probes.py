"""The table of short MAML runs that each change one setting of the full 5-way 1-shot plan (fast:
it reads stored results; here copies of the full run with one setting changed)."""

import json
from pathlib import Path

from metacourse import results
from metacourse.experiments import omniglot

REPO_RESULTS = Path(__file__).resolve().parents[2] / "results"


def _store(folder: Path, variant: str, accuracy: float, **changes) -> None:
    data = json.loads((REPO_RESULTS / "omniglot-maml-5w1s.json").read_text())
    data["budget"] |= {"meta_steps": 600, **changes}
    data["measured"] = {"train_cpu_seconds": 300.0, "train_seconds": 900.0}
    data["rows"][0]["ours"] |= {"mean": accuracy, "ci95": 0.5}
    (folder / f"omniglot-maml-5w1s-{variant}.json").write_text(json.dumps(data))


def _probe(folder: Path, variant: str):
    return results.load("omniglot", folder=folder, method="maml", shots=1, variant=variant)


def test_each_probe_names_its_one_change_its_gain_and_its_cpu_per_step(tmp_path):
    _store(tmp_path, "probe-base", 90.0)
    _store(tmp_path, "probe-query15", 93.5, n_query_train=15)
    table = omniglot.maml_probes_markdown([_probe(tmp_path, "probe-base"), _probe(tmp_path, "probe-query15")],
                                          results.load("omniglot", method="maml", shots=1))
    lines = table.splitlines()
    assert lines[2].startswith("| probe-base | none (the full run's settings) | 600 × 32 | 90.00 ± 0.50 (600) "
                               "| +0.00 |")
    assert lines[3].startswith("| probe-query15 | n_query_train 1 → 15 | 600 × 32 | 93.50 ± 0.50 (600) | +3.50 |")
    assert lines[3].endswith("| 5 min | 0.50 s |")
    assert "The full run (2,500 meta-steps): 95.14 ± 0.35 (600 tasks)" in table


def test_without_probes_the_table_says_which_command_stores_one():
    text = omniglot.maml_probes_markdown([], results.load("omniglot", method="maml", shots=1))
    assert text.startswith("No MAML probe stored yet.")
    assert "--method maml --ways 5 --shots 1 --meta-steps 600 --n-query-train 15 " \
           "--json results/omniglot-maml-5w1s-probe-query15.json" in text
    text = omniglot.maml_probes_markdown([], results.load("omniglot", method="fomaml", shots=1))
    assert text.startswith("No first-order MAML probe stored yet.")
    assert "--method fomaml --ways 5 --shots 1 " in text and "results/omniglot-fomaml-5w1s-probe-query15.json" in text


def test_the_stored_probes_start_with_the_unchanged_plan():
    table = omniglot.maml_probes_table().data
    base = results.load("omniglot", method="maml", shots=1, variant="probe-base")
    assert base.plan["meta_steps"] < results.load("omniglot", method="maml", shots=1).plan["meta_steps"]
    first = table.splitlines()[2]
    assert first.startswith("| probe-base | none (the full run's settings) |")
    assert f"{base.rows[0].ours.mean:.2f} ± {base.rows[0].ours.ci95:.2f} (600) | +0.00 |" in first


def test_a_probe_is_compared_with_the_first_probe_of_its_own_budget(tmp_path):
    _store(tmp_path, "probe-base", 90.0)
    data = json.loads((tmp_path / "omniglot-maml-5w1s-probe-base.json").read_text())
    data["budget"] |= {"meta_steps": 200, "n_query_train": 5}
    data["rows"][0]["ours"]["mean"] = 85.0
    (tmp_path / "omniglot-maml-5w1s-200-probe-query5.json").write_text(json.dumps(data))
    data["budget"] |= {"n_query_train": 1}
    data["rows"][0]["ours"]["mean"] = 80.0
    (tmp_path / "omniglot-maml-5w1s-200-probe-base.json").write_text(json.dumps(data))
    probes = [_probe(tmp_path, "probe-base"),
              *(results.load("omniglot", folder=tmp_path, method="maml", shots=1, meta_steps=200, variant=variant)
                for variant in ("probe-base", "probe-query5"))]
    rows = omniglot.maml_probes_markdown(probes, results.load("omniglot", method="maml", shots=1)).splitlines()[2:5]
    assert [row.split(" | ")[4] for row in rows] == ["+0.00", "+0.00", "+5.00"]
    assert "| 200 × 32 |" in rows[2] and "n_query_train 1 → 5" in rows[2]
