"""The registered ``omniglot`` experiment: budgets, and tiny FAST runs of every method end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from metacourse import cli
from metacourse.experiments import omniglot
from metacourse.reproduce import RunOptions, get_experiment, with_defaults

needs_data = pytest.mark.skipif(
    not any((Path(os.environ.get("METACOURSE_DATA", "/nonexistent")) / p).exists()
            for p in ("omniglot", "images_background.zip", "omniglot-py")),
    reason="the Omniglot data set is not in METACOURSE_DATA (CI: METACOURSE_DATA=../shared/data)")


def _plan(**extra) -> omniglot.OmniglotBudget:
    return omniglot.budget(RunOptions(extra=extra))


def test_maml_budget_is_the_cbfinn_setup():
    five = _plan(method="maml", ways=5, shots=1)
    assert (five["meta_batch_size"], five["inner_lr"], five["inner_steps"],
            five["inner_steps_test"], five["n_query_train"]) == (32, 0.4, 1, 3, 1)
    twenty = _plan(method="fomaml", ways=20, shots=5)
    assert (twenty["meta_batch_size"], twenty["inner_lr"], twenty["inner_steps"]) == (16, 0.1, 5)
    assert omniglot.budget(RunOptions(device="cuda", extra={"method": "maml"}))["meta_steps"] == 60_000


def test_protonet_budget_follows_the_paper_and_options_override():
    plan = _plan(method="protonet", ways=20, shots=5)
    assert (plan["train_ways"], plan["k_shot_train"], plan["n_query_train"]) == (60, 5, 5)
    assert _plan(method="protonet", train_ways=20)["train_ways"] == 20
    assert omniglot.budget(RunOptions(meta_steps=7, extra={"method": "matching"}))["meta_steps"] == 7
    assert _plan(method="protonet")["compile"] is False
    assert _plan(method="matching", compile=1)["compile"] is True


def test_unknown_method_or_shape_is_a_clear_error():
    experiment = get_experiment("omniglot")
    with pytest.raises(ValueError, match="--method 'siamese' is not allowed"):
        with_defaults(experiment, {"method": "siamese"})
    with pytest.raises(ValueError, match="--ways 10 is not allowed"):
        with_defaults(experiment, {"ways": 10})


def test_bf16_is_for_the_first_order_methods_and_names_its_checkpoints():
    assert "bf16" not in _plan(method="protonet")
    plan = _plan(method="fomaml", bf16=1)
    assert plan["bf16"] is True and omniglot.checkpoint_name(plan) == "fomaml-omniglot-5w1s-bf16"
    with pytest.raises(ValueError, match="--bf16 1 is for protonet, matching, fomaml, reptile; maml"):
        _plan(method="maml", bf16=1)


@pytest.mark.parametrize("method", ["protonet", "fomaml"])
def test_a_bf16_step_keeps_float32_weights_and_float32s_loss_to_bfloat16_precision(method, image_tasks):
    plan = _plan(method=method, train_ways=5).replace(meta_batch_size=2)
    tasks = image_tasks(n_tasks=2, ways=5, shots=1, queries=plan["n_query_train"], size=28)
    losses = {}
    for bf16 in (False, True):
        torch.manual_seed(1)
        model = omniglot.build_model(omniglot.model_spec(plan))
        step, _ = omniglot.build_step(plan.replace(bf16=bf16), model)
        losses[bf16] = step(tasks)["meta_loss"]
        assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32
                   for p in model.parameters() if p.grad is not None)
    assert losses[True] == pytest.approx(losses[False], rel=0.05)


@needs_data
def test_a_bf16_reptile_run_end_to_end(tmp_path):
    options = RunOptions(fast=True, out_dir=str(tmp_path), progress=False,
                         extra={"method": "reptile", "test_tasks": 4, "bf16": 1})
    result = omniglot.run(options)
    card = json.loads(Path(result.artifacts["card"]).read_text())
    assert card["name"] == "reptile-omniglot-5w1s-bf16" and card["budget"]["bf16"] is True
    assert "--bf16 1" in card["command"] and 0 <= result.rows[0].ours.mean <= 100


@needs_data
def test_compiled_protonet_run_scores_as_its_checkpoint_does_in_eager_mode(tmp_path):
    options = RunOptions(fast=True, out_dir=str(tmp_path), progress=False,
                         extra={"method": "protonet", "test_tasks": 4, "compile": 1})
    result = omniglot.run(options)
    (row,) = result.rows
    plan = json.loads(Path(result.artifacts["card"]).read_text())["budget"]
    assert plan["compile"] is True
    model = omniglot.load_file(result.artifacts["checkpoint"])
    eager = 100 * omniglot.evaluate_model({**plan, "compile": False}, model,
                                          omniglot.test_tasks(plan))
    assert eager.mean() == pytest.approx(row.ours.mean, abs=1e-4)


@needs_data
@pytest.mark.parametrize("method", omniglot.METHODS)
def test_fast_run_of_every_method_writes_a_loadable_checkpoint(method, tmp_path):
    options = RunOptions(fast=True, out_dir=str(tmp_path), progress=False,
                         extra={"method": method, "test_tasks": 4})
    result = omniglot.run(options)
    (row,) = result.rows
    assert row.ours.n == 4 and 0 <= row.ours.mean <= 100
    assert row.paper == omniglot.PAPER.get(method, {}).get((5, 1))
    assert any("FAST mode" in note for note in result.notes)
    card = json.loads(Path(result.artifacts["card"]).read_text())
    assert card["name"] == f"{method}-omniglot-5w1s" and card["fast"] is True
    assert card["test_accuracy"]["mean"] == pytest.approx(row.ours.mean)
    assert "--method " + method in card["command"]
    model = omniglot.load_file(result.artifacts["checkpoint"])
    again = 100 * omniglot.evaluate_model(card["budget"], model, omniglot.test_tasks(card["budget"]))
    assert again.mean() == pytest.approx(row.ours.mean, abs=1e-4)
    assert Path(result.artifacts["checkpoint"]).stat().st_size < 1_000_000


@needs_data
def test_command_line_twenty_way_five_shot_json(tmp_path, capsys):
    out = tmp_path / "result.json"
    code = cli.main(["reproduce", "omniglot", "--fast", "--no-progress", "--out-dir", str(tmp_path),
                     "--json", str(out), "--method", "protonet", "--ways", "20", "--shots", "5",
                     "--test-tasks", "2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "Prototypical Networks" in printed and "98.90" in printed
    saved = json.loads(out.read_text())
    assert saved["budget"]["ways"] == 20 and saved["rows"][0]["metric"] == "accuracy_20w5s_%"
    assert torch.get_num_threads() >= 1


def test_timing_sums_the_segments_of_a_resumed_run():
    first = {"steps": [0, 40], "wall_seconds": 100.0, "cpu_seconds": 60.0}
    second = {"steps": [40, 100], "wall_seconds": 50.0, "cpu_seconds": 45.0}
    timing = omniglot._timing([first, second], 100)
    assert (timing["train_seconds"], timing["train_cpu_seconds"]) == (150.0, 105.0)
    # a part whose CPU time was not recorded: the CPU total is unknown, the wall total is not
    assert omniglot._timing([first | {"cpu_seconds": None}, second], 100)["train_cpu_seconds"] is None
    # parts that do not cover the whole run: no totals rather than a wrong one
    assert omniglot._timing([second], 100)["train_seconds"] is None


@needs_data
def test_resumed_fast_run_records_both_segments_and_the_table_shows_them(tmp_path):
    def options(steps):
        return RunOptions(fast=True, meta_steps=steps, out_dir=str(tmp_path), progress=False,
                          extra={"method": "protonet", "test_tasks": 2})

    first = omniglot.run(options(3))
    checkpoint = omniglot.checkpoint_path(omniglot.budget(options(3)), options(3), torch.device("cpu"))
    payload = torch.load(checkpoint, weights_only=False)
    payload["step"] = 2  # as if the first run had been stopped after step 2
    torch.save(payload, checkpoint)
    segments = json.loads(checkpoint.with_suffix(".times.json").read_text())["segments"]
    checkpoint.with_suffix(".times.json").write_text(json.dumps({"segments": [
        segments[0] | {"steps": [0, 2]}]}))
    second = omniglot.run(options(3))
    card = json.loads(Path(second.artifacts["card"]).read_text())
    assert [s["steps"] for s in card["train_segments"]] == [[0, 2], [2, 3]]
    assert card["train_seconds"] == pytest.approx(sum(s["wall_seconds"] for s in card["train_segments"]))
    assert second.measured["train_segments"] == 2 and first.measured["train_segments"] == 1
    assert "train_segments" not in second.budget  # the plan holds settings, the run's record is measured
    path = tmp_path / "omniglot-protonet-5w1s.json"
    second.save_json(path)
    table = omniglot.results_table([path])
    assert "Prototypical Networks **FAST: smoke test, not a reproduction**" in table
    assert "| 98.8 |" in table and "2 segments" in table
