import json

import numpy as np
import pytest
import torch

from metacourse import cli
from metacourse.experiments import meta_sgd
from metacourse.reproduce import RunOptions

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("tasks, metrics", [
    ("maml", {"mse_5shot_1step", "mse_5shot_5step", "mse_5shot_10step"}),
    ("metasgd", {"mse_5shot_1step", "mse_20shot_1step"}),
])
def test_fast_run_writes_meta_sgd_beside_maml_with_the_papers_numbers(tmp_path, capsys, tasks, metrics):
    out = tmp_path / "meta-sgd.json"
    code = cli.main(["reproduce", "meta-sgd", "--fast", "--tasks", tasks, "--meta-steps", "3", "--no-progress",
                     "--out-dir", str(tmp_path), "--json", str(out)])
    assert code == 0 and "FAST mode" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["budget"]["tasks"] == tasks and result["budget"]["meta_steps"] == 3
    assert {(row["method"], row["metric"]) for row in result["rows"]} == {
        ("MAML", metric) for metric in metrics} | {("Meta-SGD", metric) for metric in metrics if "_1step" in metric}
    assert all(np.isfinite(row["ours"]["mean"]) for row in result["rows"])
    papers = {(row["method"], row["metric"]): row["paper"] for row in result["rows"]}
    assert papers[("MAML", "mse_5shot_1step")] == (0.67 if tasks == "maml" else 1.13)
    assert any("learned α" in note for note in result["notes"])


def test_unknown_task_family_is_refused_with_the_choices_named(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "meta-sgd", "--fast", "--tasks", "omniglot", "--out-dir", str(tmp_path)])


def test_frequency_tasks_follow_a_sin_omega_x_plus_b_with_omega_in_range():
    tasks = meta_sgd.FrequencySinusoidTasks().sample(50, 5, 10, np.random.default_rng(0))
    info = tasks.info
    assert info["frequency"].min() >= 0.8 and info["frequency"].max() <= 1.2
    expected = info["amplitude"][:, None] * np.sin(info["frequency"][:, None] * tasks.x_support[..., 0].numpy()
                                                   + info["phase"][:, None])
    assert np.allclose(tasks.y_support[..., 0].numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="frequency"):
        meta_sgd.FrequencySinusoidTasks(frequency=(1.2, 0.8))


def test_meta_sgd_step_sizes_start_uniform_in_the_papers_range_and_are_learned(tmp_path):
    torch.manual_seed(0)
    model = meta_sgd.MLP(1, (40, 40), 1)
    flat = lambda lrs: torch.cat([lr.detach().flatten() for lr in lrs.values()])  # noqa: E731
    values = flat(meta_sgd.init_meta_sgd_lrs(model, seed=0))
    assert values.min() >= 0.005 and values.max() <= 0.1 and values.std() > 0.02
    assert torch.equal(values, flat(meta_sgd.init_meta_sgd_lrs(model, seed=0)))
    options = RunOptions(fast=True, meta_steps=2, progress=False, out_dir=str(tmp_path), extra={"tasks": "metasgd"})
    _, learned, _ = meta_sgd.train_method("Meta-SGD", options, meta_sgd.budget(options))
    assert not torch.equal(flat(learned), values)
