"""The tables and figures of lecture 3 read the stored black-box runs (fast: nothing is trained)."""

import numpy as np
import pytest

from metacourse import results
from metacourse.experiments import blackbox


@pytest.fixture(scope="module")
def sinusoid():
    return results.load("blackbox-sinusoid")


def test_sinusoid_table_has_one_labelled_row_per_learner(sinusoid):
    table = blackbox.sinusoid_table(sinusoid)
    labels = [line.split("|")[1].strip() for line in table.splitlines()[2:] if line.startswith("| ")]
    assert labels == ["MAML, 1 step", "MAML, 10 steps", "CNP", "hypernetwork", "LSTM", "SNAIL"]
    cnp = sinusoid.row("CNP", "mse_5shot").ours
    assert f"{cnp.mean:.3f} ± {cnp.ci95:.3f}" in table
    assert "seed 0" in table and "20,000 meta-steps" in table and "min wall" in table


def test_sinusoid_labels_name_the_steps():
    row = blackbox.Row("MAML", "mse_5shot_10step", 0.35, None)
    assert blackbox._sinusoid_label(row) == ("MAML, 10 steps", 5)
    assert blackbox._sinusoid_label(blackbox.Row("MAML", "mse_10shot_1step", None, None)) == ("MAML, 1 step", 10)
    assert blackbox._sinusoid_label(blackbox.Row("LSTM", "mse_10shot", None, None)) == ("LSTM", 10)


def test_figures_draw_every_learner(sinusoid):
    from matplotlib import pyplot as plt

    figure = blackbox.shift_figure(sinusoid)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()][2:] == ["CNP", "hypernetwork", "LSTM", "SNAIL"]
    plt.close(figure)
    mann = results.load("mann-omniglot")
    figure = blackbox.mann_figure(mann)
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert "MANN, ours" in labels and "MANN, paper" in labels and "chance" in labels
    episodes = mann.plan["meta_steps"] * mann.plan["meta_batch_size"]
    assert f"ours: {episodes:,} training episodes" in figure.axes[0].get_title()
    plt.close(figure)
    shorter = results.load("mann-omniglot", meta_steps=2000)   # an earlier run, a third of the episodes
    figure = blackbox.mann_figure(shorter)
    assert "ours: 32,000 training episodes" in figure.axes[0].get_title()
    plt.close(figure)


def test_omniglot_table_labels_budget_and_training_times():
    hypernetwork, maml = results.load("blackbox-omniglot", shots=1), results.load("omniglot", method="maml", shots=1)
    table = blackbox.omniglot_table({"hypernetwork": hypernetwork, "MAML": maml})
    lines = table.splitlines()
    assert len(lines) == 4 and "training CPU (wall)" in lines[0]
    cpu, wall = (round(hypernetwork.measured[key] / 60) for key in ("train_cpu_seconds", "train_seconds"))
    assert "3,000 steps × 8 episodes" in lines[2] and f"| {cpu} min ({wall} min) |" in lines[2]
    assert "2,500 steps × 32 episodes" in lines[3] and "| not recorded (99 min) |" in lines[3]  # CPU not timed


def test_run_notes_keep_the_run_and_drop_copies_of_other_runs():
    stored = results.load("blackbox-omniglot", shots=1)
    notes = blackbox.run_notes(stored)
    assert notes and notes[0].startswith("hypernetwork:")
    assert not any(note.startswith("reference,") for note in notes)
    assert len(notes) < len(stored.notes)


def test_the_snail_curves_draw_both_runs_on_both_sets_of_characters():
    from matplotlib import pyplot as plt

    runs = {"end to end": results.load("blackbox-omniglot", shots=1, variant="snail"),
            "frozen ProtoNet encoder": results.load("blackbox-omniglot", shots=1, variant="snail-frozen")}
    figure = blackbox.omniglot_curves_figure(runs)
    accuracy, loss = figure.axes
    labels = accuracy.get_legend_handles_labels()[1]
    assert labels == ["end to end: test characters", "end to end: training characters",
                      "frozen ProtoNet encoder: test characters", "frozen ProtoNet encoder: training characters",
                      "chance"]
    for line, run in zip(accuracy.get_lines()[:4:2], runs.values()):  # the test-character curves, as stored
        assert list(line.get_ydata()) == run.measured["curves"]["test_accuracy"]
        assert list(line.get_xdata()) == run.measured["curves"]["steps"]
    assert len(loss.get_lines()) == 2
    plt.close(figure)


def test_the_curve_table_lists_every_stored_point_and_marks_where_a_shorter_run_ended():
    end_to_end = results.load("blackbox-omniglot", shots=1, variant="snail")
    frozen = results.load("blackbox-omniglot", shots=1, variant="snail-frozen")
    lines = blackbox.omniglot_curves_markdown({"end to end": end_to_end, "frozen": frozen}).splitlines()
    steps = end_to_end.measured["curves"]["steps"]
    assert len(lines) == 2 + len(set(steps) | set(frozen.measured["curves"]["steps"]))
    curve = end_to_end.measured["curves"]
    last = f"{curve['test_accuracy'][-1]:.2f} / {curve['train_accuracy'][-1]:.2f}, "
    assert lines[-1].startswith(f"| {steps[-1]:,} | {last}")
    if frozen.plan["meta_steps"] < end_to_end.plan["meta_steps"]:
        assert lines[-1].endswith("| (run ended) |")


def test_the_mann_curves_show_each_learner_at_the_2nd_and_10th_presentation():
    from matplotlib import pyplot as plt

    mann = results.load("mann-omniglot")
    curves = mann.measured["curves"]
    assert set(curves) == {"MANN", "LSTM", "feed-forward"}
    figure = blackbox.mann_curves_figure(mann)
    second, tenth, loss = figure.axes
    assert "2nd presentation" in second.get_title() and "10th presentation" in tenth.get_title()
    for ax, key in ((second, "test_instance2"), (tenth, "test_instance10")):
        for line, curve in zip(ax.get_lines()[:6:2], curves.values()):  # the test-character curves, as stored
            assert list(line.get_ydata()) == curve[key]
            assert list(line.get_xdata()) == curve["steps"]
    assert [line.get_label() for line in loss.get_lines()] == list(curves)
    plt.close(figure)
    lines = blackbox.mann_curves_markdown(mann).splitlines()
    assert len(lines) == 2 + len(curves["MANN"]["steps"])
    assert lines[0].startswith("| meta-step | MANN: 2nd presentation test / training (%), "
                               "10th presentation test / training (%), loss |")
    last = curves["MANN"]
    assert lines[-1].startswith(f"| {last['steps'][-1]:,} | {last['test_instance2'][-1]:.2f} / "
                                f"{last['train_instance2'][-1]:.2f}; {last['test_instance10'][-1]:.2f} / ")


def test_the_learner_without_memory_of_images_is_right_only_on_first_presentations():
    import torch

    labels = torch.tensor([[0, 1, 0, 2, 1, 2]])      # 3 classes, each shown twice
    accuracy = blackbox.elimination_accuracy(labels, 3)
    # first presentations: 3 labels not yet given, then 2 (label 0 given), then 1 (0 and 1 given)
    assert accuracy[1].tolist() == pytest.approx([100 * (1 / 3 + 1 / 2 + 1) / 3])
    # repeats: label 0 again when 1 is not yet given (0); then every label has been given (1/3 each)
    assert accuracy[2].tolist() == pytest.approx([100 * (0 + 1 / 3 + 1 / 3) / 3])
    y, order = blackbox.shuffled_labels(4, np.random.default_rng(0), n_classes=5, per_class=10)
    assert y.shape == (4, 50) and (torch.bincount(y[0], minlength=5) == 10).all()
    assert torch.equal(y, (torch.arange(5).repeat_interleave(10))[order])


def test_the_elimination_table_sets_the_stored_lstm_runs_beside_the_learner_without_memory():
    runs = {"32,000 episodes": results.load("mann-omniglot", meta_steps=2000),
            "100,000 episodes": results.load("mann-omniglot")}
    lines = blackbox.elimination_markdown(runs, episodes=2_000).splitlines()
    assert lines[0].startswith("| presentation | no memory of images") and "LSTM, 100,000 episodes" in lines[0]
    first = lines[2].split(" | ")
    assert first[0] == "| 1" and 44 < float(first[1]) < 47.5   # (1/5 + 1/4 + 1/3 + 1/2 + 1) / 5 = 45.7%
    lstm = runs["32,000 episodes"].row("LSTM", "acc%_instance1").ours
    assert first[2] == f"{lstm.mean:.1f} ± {lstm.ci95:.1f}" and lines[2].endswith("| 24.4 |")
