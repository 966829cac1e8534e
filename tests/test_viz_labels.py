"""Plot labels read as English: "1 step", "0 steps", "3 steps"."""

import numpy as np
import pytest

from metacourse.models import MLP
from metacourse.tasks import SinusoidTasks


@pytest.mark.parametrize("steps, label", [(0, "MAML, 0 steps"), (1, "MAML, 1 step"), (3, "MAML, 3 steps")])
def test_sinusoid_fit_legend_counts_steps(steps, label):
    pytest.importorskip("matplotlib")
    from metacourse import viz

    task = SinusoidTasks().sample(1, k_shot=5, n_query=5, rng=np.random.default_rng(0))
    ax = viz.plot_sinusoid_fit({"MAML": MLP(1, (8,), 1)}, task, inner_lr=0.01, steps=steps)
    try:
        assert label in [text.get_text() for text in ax.get_legend().get_texts()]
    finally:
        viz.close(ax.figure)
