"""FAST runs of the black-box experiments through the command line write the results JSON."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from metacourse.cli import main
from metacourse.experiments.blackbox import instance_accuracy, mann_episodes, presentation
from metacourse.models.blackbox import FeedForward

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _omniglot_available() -> bool:
    from metacourse.tasks.omniglot import find_sources

    try:
        find_sources(os.environ.get("METACOURSE_DATA") or SHARED_DATA)
    except FileNotFoundError:
        return False
    return True


needs_omniglot = pytest.mark.skipif(not _omniglot_available(),
                                    reason="Omniglot not found: set METACOURSE_DATA (CI: ../shared/data)")


@pytest.fixture
def omniglot_data(monkeypatch):
    if not os.environ.get("METACOURSE_DATA"):
        monkeypatch.setenv("METACOURSE_DATA", str(SHARED_DATA))


def _check_schema(path: Path, experiment: str, methods: set[str]) -> dict:
    result = json.loads(path.read_text())
    assert {"experiment", "seed", "device", "wall_seconds", "budget", "rows", "notes"} <= set(result)
    assert result["experiment"] == experiment and result["device"] == "cpu"
    assert {row["method"] for row in result["rows"]} == methods
    for row in result["rows"]:
        assert set(row) == {"method", "metric", "paper", "ours"}
        assert set(row["ours"]) == {"mean", "ci95", "median", "n"}
    assert any("FAST mode" in note for note in result["notes"])
    return result


def test_fast_blackbox_sinusoid_writes_json(tmp_path):
    out = tmp_path / "sinusoid.json"
    assert main(["reproduce", "blackbox-sinusoid", "--fast", "--meta-steps", "5", "--no-progress",
                 "--out-dir", str(tmp_path), "--json", str(out)]) == 0
    result = _check_schema(out, "blackbox-sinusoid", {"MAML", "CNP", "hypernetwork", "LSTM", "SNAIL"})
    metrics = {(r["method"], r["metric"]) for r in result["rows"]}
    assert ("MAML", "mse_5shot_10step") in metrics and ("CNP", "mse_10shot") in metrics


def test_unknown_method_is_rejected(tmp_path, capsys):
    assert main(["reproduce", "blackbox-sinusoid", "--fast", "--methods", "CNP,GPT", "--out-dir", str(tmp_path)]) == 2
    assert "comma-separated subset" in capsys.readouterr().err


@needs_omniglot
def test_fast_mann_omniglot_writes_json(tmp_path, omniglot_data):
    out = tmp_path / "mann.json"
    assert main(["reproduce", "mann-omniglot", "--fast", "--meta-steps", "3", "--no-progress",
                 "--out-dir", str(tmp_path), "--json", str(out)]) == 0
    result = _check_schema(out, "mann-omniglot", {"MANN", "LSTM", "feed-forward"})
    paper = {(r["method"], r["metric"]): r["paper"] for r in result["rows"]}
    assert paper[("MANN", "acc%_instance2")] == 82.8 and paper[("LSTM", "acc%_instance10")] == 62.5
    curves = result["measured"]["curves"]
    assert set(curves) == {"MANN", "LSTM", "feed-forward"}
    for curve in curves.values():  # a point every curve_every steps, on training and test characters
        assert curve["steps"] == [3]
        assert set(curve) == {"steps", "meta_loss", "train_instance2", "train_instance10", "test_instance2",
                              "test_instance10"}


@needs_omniglot
def test_fast_blackbox_omniglot_writes_json_with_the_reference_numbers(tmp_path, omniglot_data):
    out = tmp_path / "omniglot.json"
    assert main(["reproduce", "blackbox-omniglot", "--method", "hypernetwork", "--shots", "1", "--fast",
                 "--meta-steps", "2", "--no-progress", "--out-dir", str(tmp_path), "--json", str(out)]) == 0
    result = _check_schema(out, "blackbox-omniglot", {"hypernetwork"})
    (row,) = result["rows"]
    assert row["metric"] == "accuracy_5w1s_%" and row["paper"] is None and row["ours"]["n"] == 10
    assert result["budget"]["ways"] == 5 and result["measured"]["train_cpu_seconds"] > 0
    assert "train_cpu_seconds" not in result["budget"]  # the plan holds settings only
    notes = " ".join(result["notes"])
    assert "paper 98.7" in notes and "paper 98.8" in notes


@needs_omniglot
def test_blackbox_omniglot_stores_a_learning_curve_and_a_frozen_encoder_stays_frozen(tmp_path, omniglot_data):
    import metacourse
    from metacourse.experiments import blackbox as experiment
    from metacourse.reproduce import RunOptions

    out = tmp_path / "snail.json"
    assert main(["reproduce", "blackbox-omniglot", "--method", "SNAIL", "--encoder", "frozen-protonet", "--fast",
                 "--no-progress", "--out-dir", str(tmp_path), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    curve, plan = result["measured"]["curves"], result["budget"]
    assert plan["encoder"] == "frozen-protonet" and curve["steps"] == list(range(plan["curve_every"],
                                                                              plan["meta_steps"] + 1,
                                                                              plan["curve_every"]))
    for key in ("train_accuracy", "test_accuracy", "meta_loss"):
        assert len(curve[key]) == len(curve["steps"]) and all(np.isfinite(curve[key]))
    assert all(0 <= a <= 100 for a in curve["test_accuracy"])
    assert any("frozen" in note for note in result["notes"])

    # the encoder under the learner is the shipped ProtoNet's and is not trained
    options = RunOptions(fast=True, seed=0, out_dir=str(tmp_path), progress=False,
                         extra={"shots": 1, "encoder": "frozen-protonet"})
    model = experiment.omniglot_model("SNAIL", experiment.omniglot_budget(options))
    shipped = metacourse.pretrained("protonet-omniglot-5w1s").model.state_dict()
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(torch.equal(value, shipped[name]) for name, value in model.encoder.state_dict().items())


def test_an_unknown_encoder_is_refused_with_the_choices():
    from metacourse.experiments import blackbox as experiment
    from metacourse.reproduce import RunOptions

    with pytest.raises(ValueError, match="frozen-protonet"):
        experiment.omniglot_budget(RunOptions(fast=True, extra={"encoder": "imagenet"}))


def test_reference_notes_quote_the_course_runs_when_their_files_exist(tmp_path):
    from metacourse.experiments.blackbox import reference_notes

    (tmp_path / "omniglot-maml-5w1s.json").write_text(json.dumps({
        "rows": [{"ours": {"mean": 95.0, "ci95": 0.4, "n": 600}}], "notes": [],
        "budget": {"meta_steps": 2500, "meta_batch_size": 32}}))
    maml, protonet = reference_notes(5, 1, tmp_path)
    assert "paper 98.7" in maml and "ours 95.00 ± 0.40" in maml and "2,500 steps × 32" in maml
    assert "paper 98.8" in protonet and "no course run found" in protonet


def test_presentation_counts_each_class_and_episodes_hold_every_class_per_class_times():
    labels = torch.tensor([[0, 1, 0, 2, 1, 0]])
    assert presentation(labels, 3).tolist() == [[1, 1, 2, 1, 2, 3]]

    class Images:  # 12 classes of 20 drawings; every pixel of class c equals c
        n_classes, n_per_class = 12, 20

        def get(self, classes, examples):
            classes = np.broadcast_arrays(np.asarray(classes), np.asarray(examples))[0].copy()
            return torch.as_tensor(classes, dtype=torch.float32)[..., None, None, None].expand(
                *classes.shape, 1, 28, 28).clone()

    episodes = mann_episodes(Images(), 3, np.random.default_rng(0), n_classes=5, per_class=10, image_size=20)
    assert episodes.x_support.shape == (3, 50, 1, 20, 20) and episodes.x_query.shape[1] == 0
    assert (torch.bincount(episodes.y_support[0], minlength=5) == 10).all()
    pixel = episodes.x_support[..., 0, 0, 0]              # the dataset class shown at each position
    for e in range(3):
        for label in range(5):                            # one label ↔ one class within an episode
            assert pixel[e][episodes.y_support[e] == label].unique().numel() == 1
    accuracy = instance_accuracy(FeedForward(400, 5, hidden=8), episodes, 5)
    assert sorted(accuracy) == list(range(1, 11)) and all(a.shape == (3,) for a in accuracy.values())
