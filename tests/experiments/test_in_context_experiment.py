"""`metacourse reproduce icl-linear` and `icl-sinusoid` in FAST mode, and the readers of their results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metacourse.experiments import in_context as experiment
from metacourse.reproduce import Result, RunOptions, get_experiment

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def linear(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("icl")
    result = get_experiment("icl-linear").run(RunOptions(fast=True, meta_steps=5, out_dir=str(out), progress=False,
                                                         extra={"dim": 2}))
    return result.to_dict()


def test_linear_rows_cover_every_k_method_and_condition(linear):
    d, points = linear["budget"]["x_dim"], linear["budget"]["points"]
    assert (d, points) == (2, 7)
    curves = experiment.linear_curves(linear)
    assert set(curves) == {"clean", "noisy", "scaled"}
    assert set(curves["clean"]) == {"transformer", "least squares", "averaging", "3-nearest neighbours"}
    assert "ridge (Bayes, λ = σ²)" in curves["noisy"]
    assert list(curves["clean"]["transformer"]["k"]) == list(range(points))
    assert curves["clean"]["least squares"]["mean"][-1] < 1e-8         # exact once k ≥ d
    assert any("FAST mode" in note for note in linear["notes"])
    assert any("s CPU (1 thread(s); one session)" in note for note in linear["notes"])
    gaps = experiment.gap_to_least_squares(linear)
    assert sorted(gaps) == list(range(2 * d, points))
    assert all(g["difference"] == pytest.approx(g["transformer"] - g["least squares"]) for g in gaps.values())


def test_linear_result_round_trips_and_plots(linear, tmp_path):
    path = tmp_path / "r.json"
    Result.from_dict(linear).save_json(path)
    figure = experiment.plot_linear(json.loads(path.read_text()))
    assert len(figure.axes) == 3
    from metacourse import viz

    viz.close(figure)


def test_sinusoid_fast_run_and_table(tmp_path):
    options = RunOptions(fast=True, meta_steps=3, out_dir=str(tmp_path), progress=False)
    result = get_experiment("icl-sinusoid").run(options).to_dict()
    assert [r["metric"] for r in result["rows"]] == ["mse_5shot", "mse_10shot"]
    assert result["budget"]["meta_batch_size"] == 25 and "inner_lr" not in result["budget"]
    again = get_experiment("icl-sinusoid").run(options).to_dict()          # resumes from the finished checkpoint
    assert any("resumed at step 3" in note for note in again["notes"])
    stored = json.loads((Path(__file__).parents[2] / "results" / "blackbox-sinusoid.json").read_text())
    table = experiment.sinusoid_table(result, stored)
    assert "| MAML, 10 step(s) | 20,000 |" in table and "| **transformer (in context)** | 3 |" in table
    assert table.count("\n") == 6


def test_unknown_option_is_refused():
    from metacourse.reproduce import with_defaults

    with pytest.raises(ValueError, match="--dim"):
        with_defaults(get_experiment("icl-linear"), {"dims": 3})
