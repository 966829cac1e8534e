"""A checkpoint belongs to one plan: named by it, stored with it, resumed only by an equal plan;
saves never share a temporary file, and two runs never train into the same checkpoint at once."""

from __future__ import annotations

import json
import os
import signal
import threading
from functools import partial
from pathlib import Path

import pytest
import torch

from metacourse import train
from metacourse.algorithms import maml
from metacourse.experiments import omniglot, sinusoid
from metacourse.models import MLP
from metacourse.reproduce import RunOptions
from metacourse.tasks import SinusoidTasks
from metacourse.train import CheckpointError, Plan, TrainConfig, meta_train, save_atomically

needs_data = pytest.mark.skipif(
    not any((Path(os.environ.get("METACOURSE_DATA", "/nonexistent")) / p).exists()
            for p in ("omniglot", "images_background.zip", "omniglot-py")),
    reason="the Omniglot data set is not in METACOURSE_DATA (CI: METACOURSE_DATA=../shared/data)")

SAMPLER = partial(SinusoidTasks().sample, k_shot=5, n_query=5)
CPU = torch.device("cpu")


def _plan(**changes) -> Plan:
    fields = dict(experiment="toy", part="MAML", seed=0, budget={"meta_steps": 6, "inner_lr": 0.01})
    return Plan(**fields | changes)


def test_the_digest_changes_with_everything_that_trains_and_only_with_that():
    base = _plan()
    others = [_plan(seed=1), _plan(fast=True), _plan(device="cuda"), _plan(code="abc"),
              _plan(part="FOMAML"), _plan(budget={"meta_steps": 6, "inner_lr": 0.02})]
    assert len({base.digest(), *(p.digest() for p in others)}) == 1 + len(others)
    measured_otherwise = _plan(evaluation={"test_tasks": 10})
    assert measured_otherwise.digest() == base.digest()  # the same training ...
    assert measured_otherwise.digest(training=False) != base.digest(training=False)  # ... another export
    assert _plan(device="cuda:1").digest() == _plan(device="cuda").digest()  # the device type counts
    assert _plan(budget={"sizes": (40, 40)}).budget == {"sizes": [40, 40]}  # stored as JSON
    assert json.loads(json.dumps(base.to_dict()))["budget"] == {"meta_steps": 6, "inner_lr": 0.01}
    assert base.differences(_plan(seed=3).to_dict()) == ["seed: 0 here, 3 there"]


@pytest.mark.parametrize("change", [{"pooling": "max"}, {"train_ways": 8}, {"compile": 1}],
                         ids=lambda change: next(iter(change)))
def test_every_omniglot_option_that_trains_names_its_own_checkpoint_and_export(change, tmp_path):
    def paths(extra, fast=True, device=CPU):
        options = RunOptions(fast=fast, out_dir=str(tmp_path), extra={"method": "protonet"} | extra)
        plan = omniglot.budget(options)
        return omniglot.checkpoint_path(plan, options, device), omniglot.export_path(plan, options, device)

    default = paths({})
    assert paths(change)[0] != default[0] and paths(change)[1] != default[1]
    assert paths({}, fast=False)[0] != default[0]  # FAST is part of the plan
    assert paths({"pooling": "stride"}) == paths({"pooling": "auto"})  # auto is stride: one plan
    assert paths({"test_tasks": 5})[0] == default[0]  # evaluation only: the same training ...
    assert paths({"test_tasks": 5})[1] != default[1]  # ... but its own card


def _setup():
    torch.manual_seed(0)
    model = MLP(1, (16, 16), 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    step = partial(maml.meta_step, model, optimizer, cfg=maml.Config(inner_lr=0.01))
    return model, {"model": model, "optimizer": optimizer}, step


def _run(path, plan, hook=None):
    model, state, step = _setup()
    cfg = TrainConfig(meta_steps=6, meta_batch_size=4, checkpoint_path=str(path), checkpoint_every=2,
                      progress=False, plan=plan)
    return model, meta_train(hook(step) if hook else step, SAMPLER, cfg, state)


def _interrupt_at(call: int):
    def hook(step):
        calls = {"n": 0}

        def wrapped(tasks):
            calls["n"] += 1
            if calls["n"] == call:
                os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C mid-step
            return step(tasks)
        return wrapped
    return hook


def test_an_equal_plan_resumes_and_says_so(tmp_path):
    straight, _ = _run(tmp_path / "a.pt", _plan())
    with pytest.raises(KeyboardInterrupt, match="after step 3"):
        _run(tmp_path / "b.pt", _plan(), _interrupt_at(3))
    resumed, history = _run(tmp_path / "b.pt", _plan())
    assert history.resumed_from == 3 and history.origin(6).startswith("resumed from step 3 of 6, trained earlier for")
    assert history.seconds >= history.earlier_seconds > 0
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    _, again = _run(tmp_path / "b.pt", _plan())
    assert again.origin(6).startswith("reused a finished checkpoint (6 of 6 steps)")


def test_another_plans_checkpoint_is_never_loaded(tmp_path):
    path = tmp_path / "ck.pt"
    _run(path, _plan())
    model, state, step = _setup()
    before = [p.detach().clone() for p in model.parameters()]
    cfg = TrainConfig(meta_steps=6, meta_batch_size=4, checkpoint_path=str(path), progress=False,
                      plan=_plan(budget={"meta_steps": 6, "inner_lr": 0.5}))
    with pytest.raises(CheckpointError, match=r"budget.inner_lr: 0.5 here, 0.01 there.*delete it"):
        meta_train(step, SAMPLER, cfg, state)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    cfg = TrainConfig(meta_steps=6, meta_batch_size=4, checkpoint_path=str(path), progress=False)
    other = torch.nn.Linear(3, 3)  # another model's weights at that path
    with pytest.raises(CheckpointError, match="another model's model"):
        meta_train(step, SAMPLER, cfg, {"model": other})


def test_a_second_run_of_the_same_checkpoint_is_refused_while_the_first_holds_it(tmp_path):
    path = tmp_path / "ck.pt"
    with train._exclusive(path):
        with pytest.raises(CheckpointError, match=f"another run \\(pid {os.getpid()}\\) is training into"):
            _run(path, _plan())
    _run(path, _plan())  # released: the next run trains
    assert train.checkpoint_info(path)["step"] == 6


def test_concurrent_saves_never_share_a_temporary_file(tmp_path):
    path, errors = tmp_path / "ck.pt", []

    def save_many(value):
        try:
            for _ in range(40):
                save_atomically({"value": value, "weights": torch.zeros(1000)}, path)
        except Exception as error:  # noqa: BLE001 - any failure is what this test looks for
            errors.append(error)

    threads = [threading.Thread(target=save_many, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert torch.load(path, weights_only=False)["value"] in range(4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]  # no temporary file left behind


def test_sinusoid_plans_in_one_folder_keep_their_own_checkpoints(tmp_path):
    options = RunOptions(fast=True, meta_steps=3, out_dir=str(tmp_path), progress=False)
    plan = sinusoid.budget(options)
    first, _, history = sinusoid.train_method("MAML", options, plan, CPU)
    other_plan = plan.replace(meta_batch_size=5)
    _, _, other = sinusoid.train_method("MAML", options, other_plan, CPU)
    assert history.origin(3) == other.origin(3) == "trained from scratch"
    assert sinusoid.checkpoint_path("MAML", options, plan, CPU) != sinusoid.checkpoint_path(
        "MAML", options, other_plan, CPU)
    again, _, reused = sinusoid.train_method("MAML", options, plan, CPU)
    assert reused.origin(3).startswith("reused a finished checkpoint")
    for p, q in zip(first.parameters(), again.parameters()):
        assert torch.equal(p, q)
    record = sinusoid.training_record("MAML", options, plan, CPU, reused)
    assert record["resumed_from_step"] == 3 and Path(record["checkpoint"]).exists()


@needs_data
def test_an_omniglot_run_stopped_and_resumed_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    def options(folder):
        return RunOptions(fast=True, out_dir=str(tmp_path / folder), progress=False,
                          extra={"method": "protonet", "test_tasks": 4})

    straight = omniglot.run(options("a"))
    build_step = omniglot.build_step

    def interrupted_at_step_2(plan, model):
        step, state = build_step(plan, model)
        return _interrupt_at(2)(step), state

    monkeypatch.setattr(omniglot, "build_step", interrupted_at_step_2)
    with pytest.raises(KeyboardInterrupt, match="after step 2"):
        omniglot.run(options("b"))
    monkeypatch.setattr(omniglot, "build_step", build_step)
    resumed = omniglot.run(options("b"))
    (record,) = resumed.training.values()
    assert record["resumed_from_step"] == 2 and record["origin"].startswith("resumed from step 2 of 4")
    assert any("this run resumed from step 2 of 4" in note for note in resumed.notes)
    assert resumed.rows[0].ours == straight.rows[0].ours
    weights = [torch.load(r.artifacts["checkpoint"], weights_only=False)["state_dict"] for r in (straight, resumed)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
