"""``reproduce omniglot``'s options that change one setting of a method's plan: the query images of
training episodes, MAML's inner steps in training and at test, and the outer step size."""

from __future__ import annotations

import pytest

from metacourse import cli
from metacourse.experiments import omniglot
from metacourse.reproduce import RunOptions, get_experiment, with_defaults


def _plan(fast: bool = False, **extra) -> omniglot.OmniglotBudget:
    return omniglot.budget(RunOptions(fast=fast, extra=extra))


def _settings(plan) -> tuple:
    return plan["n_query_train"], plan["inner_steps"], plan["inner_steps_test"], plan["outer_lr"]


def test_zero_keeps_the_methods_setting_and_a_value_replaces_it():
    assert _settings(_plan(method="maml")) == (1, 1, 3, 1e-3)
    assert _settings(_plan(method="maml", n_query_train=15)) == (15, 1, 3, 1e-3)
    assert _settings(_plan(method="maml", inner_steps=5, inner_steps_test=10, outer_lr=3e-3)) == (1, 5, 10, 3e-3)
    assert _plan(method="protonet", n_query_train=15)["n_query_train"] == 15
    assert _plan(method="reptile", outer_lr=0.5)["outer_lr"] == 0.5
    assert _plan(method="finetune", outer_lr=3e-3)["outer_lr"] == 3e-3


def test_fast_mode_still_caps_the_test_steps():
    assert _plan(fast=True, method="maml", inner_steps_test=10)["inner_steps_test"] == 3


def test_a_training_setting_names_another_checkpoint_and_a_test_setting_does_not():
    options = RunOptions(extra={"method": "maml"})

    def paths(**extra):
        run = RunOptions(extra={"method": "maml", **extra})
        plan = omniglot.budget(run)
        device = omniglot.get_device("cpu")
        return omniglot.checkpoint_path(plan, run, device), omniglot.export_path(plan, run, device)

    base = paths()
    for training in ({"n_query_train": 15}, {"inner_steps": 5}, {"outer_lr": 3e-3}):
        assert paths(**training)[0] != base[0], training
    test_only = paths(inner_steps_test=10)
    assert test_only[0] == base[0] and test_only[1] != base[1]
    assert omniglot.checkpoint_name(omniglot.budget(options)) == "maml-omniglot-5w1s"


@pytest.mark.parametrize(("extra", "message"), [
    ({"method": "protonet", "inner_steps": 5},
     "--inner-steps 5: protonet has no inner loop; drop --inner-steps .or use --method maml, fomaml or reptile."),
    ({"method": "matching", "inner_steps_test": 10}, "--inner-steps-test 10: matching has no inner loop"),
    ({"method": "reptile", "n_query_train": 15}, "reptile trains on its support images only"),
    ({"method": "nearest", "n_query_train": 5}, "pretrains a classifier on image batches, not episodes; "
                                                  "drop --n-query-train"),
    ({"method": "maml", "outer_lr": float("nan")}, "--outer-lr nan: give a finite positive number"),
])
def test_a_setting_the_method_does_not_have_is_an_error_that_names_the_fix(extra, message):
    with pytest.raises(ValueError, match=message):
        _plan(**extra)


def test_negative_or_mistyped_values_are_refused_by_the_command_line_checks():
    experiment = get_experiment("omniglot")
    with pytest.raises(ValueError, match="--outer-lr -0.001: give a finite positive number"):
        _plan(**with_defaults(experiment, {"method": "maml", "outer_lr": -1e-3}))
    with pytest.raises(ValueError, match="--n-query-train must be 0 or more"):
        with_defaults(experiment, {"n_query_train": -1})
    with pytest.raises(TypeError, match="--inner-steps must be int"):
        with_defaults(experiment, {"inner_steps": 2.5})


def test_the_command_line_reads_a_step_size_with_decimals():
    experiment = get_experiment("omniglot")
    extra = cli._experiment_options(experiment, ["--method", "maml", "--outer-lr", "0.003", "--n-query-train", "5"])
    assert (extra["outer_lr"], extra["n_query_train"]) == (0.003, 5)


def test_the_command_of_a_run_repeats_the_options():
    plan = _plan(method="maml", n_query_train=15, outer_lr=3e-3)
    command = omniglot._command(plan, RunOptions(extra={"method": "maml", "n_query_train": 15, "outer_lr": 3e-3}))
    assert "--n-query-train 15" in command and "--outer-lr 0.003" in command and "--inner-steps" not in command


def test_the_baselines_share_one_pretraining_at_every_task_shape():
    device = omniglot.get_device("cpu")

    def paths(**extra):
        run = RunOptions(extra=extra)
        plan = omniglot.budget(run)
        return omniglot.checkpoint_path(plan, run, device), omniglot.export_path(plan, run, device)

    nearest, finetune = paths(method="nearest", shots=1), paths(method="finetune", shots=5)
    assert nearest[0] == finetune[0] and nearest[0].name.startswith("classifier-omniglot-seed0-3000-")
    assert nearest[1] != finetune[1] and finetune[1].name.startswith("finetune-omniglot-5w5s-seed0-")
    assert paths(method="nearest", outer_lr=3e-3)[0] != nearest[0]
    assert paths(method="protonet")[0].name.startswith("protonet-omniglot-5w1s-seed0-5000-")
