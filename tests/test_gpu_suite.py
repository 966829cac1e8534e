"""The GPU suite's rehearsal: every part runs on the CPU with FAST budgets through the same code
paths as on a GPU, and leaves its result (the ``reproduce`` schema), its log and its summary line."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"


def _suite_module():
    spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fit_counts_what_the_time_holds():
    suite = _suite_module()
    assert suite._fit(100.0, 0.5, 20.0, 60_000) == 160
    assert suite._fit(100.0, 0.001, 0.0, 60_000) == 60_000  # never past the paper's budget
    assert suite._fit(10.0, 5.0, 20.0, 60_000) == 1  # at least one step


def test_bad_parts_are_refused(capsys):
    suite = _suite_module()
    with pytest.raises(SystemExit):
        suite.main(["--out", "/tmp/x", "--parts", "maml,nonsense"])
    assert "unknown part(s)" in capsys.readouterr().err


@pytest.mark.slow
def test_dry_run_leaves_every_part_behind(tmp_path):
    if not os.environ.get("METACOURSE_DATA"):
        pytest.skip("METACOURSE_DATA (the folder holding omniglot/*.zip) is not set")
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SUITE), "--dry-run", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dry_run"] is True and summary["environment"]["device"] == "cpu"
    for name in _suite_module().PARTS:
        entry = summary["parts"][name]
        assert entry["status"] in ("ok",) or entry["status"].startswith("skipped"), (name, entry)
        assert (tmp_path / f"{name}.log").exists()
        if entry.get("skipped"):
            continue
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert {"experiment", "seed", "device", "wall_seconds", "budget", "rows"} <= set(result)
        assert result["rows"], name
        assert any("FAST" in note for note in result["notes"]), "a dry run must say it is a smoke test"
    assert summary["parts"]["maml-omniglot"]["meta_steps_per_second"] > 0
