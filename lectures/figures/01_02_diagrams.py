"""Draws the diagrams of Lectures 1 and 2: python lectures/figures/01_02_diagrams.py

01_meta_learning_setup.svg: meta-training and meta-test tasks, each split into support and query sets,
    and what normal and meta-learning learn from them.
02_protonet_episode.svg: one 5-way 1-shot episode through a prototypical network.
02_transduction.svg: what goes through the network together, with and without transduction.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

plt.rcParams["svg.fonttype"] = "none"  # text stays text: a small, searchable SVG
HERE = Path(__file__).resolve().parent
SUPPORT, QUERY, LEARNER, META = "#cfe3f7", "#fde2c4", "#d9f0d3", "#eadcf5"


def box(axis, x, y, text, color, width=2.0, height=0.8, fontsize=9, **style):
    axis.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.04",
                                  facecolor=color, edgecolor="0.3", lw=1, **style))
    axis.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def arrow(axis, start, end, text="", offset=(0, 0.08), **style):
    axis.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, color="0.25", lw=1.1,
                                   **style))
    if text:
        axis.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text,
                  ha="center", va="bottom", fontsize=8, color="0.2")


def task(axis, x, y, name, width=1.7):
    """A task: its support set (learn from) over its query set (scored on)."""
    axis.text(x, y + 0.62, name, ha="center", fontsize=8, color="0.2")
    box(axis, x, y + 0.25, "support $D^{tr}_T$", SUPPORT, width=width, height=0.38, fontsize=8)
    box(axis, x, y - 0.22, "query $D^{ts}_T$", QUERY, width=width, height=0.38, fontsize=8)


def setup_figure():
    figure, axis = plt.subplots(figsize=(11, 5.2))
    axis.set(xlim=(0, 13), ylim=(-0.4, 6.0))
    axis.axis("off")
    axis.text(0.1, 5.7, "meta-training tasks  $\\mathcal{T}^{meta-train}$", fontsize=10, weight="bold")
    for i, x in enumerate((1.2, 3.1, 5.0)):
        task(axis, x, 4.6, f"task {i + 1}")
    axis.text(6.25, 4.6, "…", fontsize=16, va="center")
    box(axis, 3.1, 2.8, "meta-learner $f$:  choose θ so that\n$A_\\theta$(support) does well on the query\n"
        "(eq. 3), summed over tasks", META, width=5.2, height=0.95)
    for x in (1.2, 3.1, 5.0):
        arrow(axis, (x, 4.1), (x if x == 3.1 else (2.0 if x < 3 else 4.2), 3.3))
    box(axis, 3.1, 1.25, "learning algorithm $A_\\theta$\n(e.g. gradient steps from θ,\n"
        "prototypes in a learned embedding)", LEARNER, width=4.0, height=0.95)
    arrow(axis, (3.1, 2.3), (3.1, 1.75), "θ", offset=(0.15, -0.08))
    axis.text(7.3, 5.7, "a meta-test task (new, never seen)", fontsize=10, weight="bold")
    task(axis, 8.6, 4.6, "new task", width=2.2)
    box(axis, 11.3, 2.8, "adapted model $M_\\phi$,\n$\\phi = A_\\theta(D^{tr}_T)$", LEARNER, width=2.6,
        height=0.8)
    arrow(axis, (5.1, 1.25), (10.6, 2.38), offset=(0, 0), connectionstyle="arc3,rad=0.15")
    axis.text(8.2, 1.05, "run $A_\\theta$ on the new support set", ha="center", fontsize=8, color="0.2")
    arrow(axis, (9.7, 4.85), (11.6, 3.22), "adapt", offset=(0.45, 0.05), connectionstyle="arc3,rad=-0.3")
    arrow(axis, (10.8, 3.22), (9.72, 4.35), "predict, score", offset=(-0.55, -0.45))
    axis.text(6.5, -0.25, "normal learning: one dataset, a fixed algorithm A learns φ.    "
              "meta-learning: many tasks, the meta-learner learns the algorithm's θ.",
              ha="center", fontsize=8.5, style="italic", color="0.3")
    figure.tight_layout()
    figure.savefig(HERE / "01_meta_learning_setup.svg")


def episode_figure():
    figure, axis = plt.subplots(figsize=(11, 4.4))
    axis.set(xlim=(0, 13), ylim=(0, 5.2))
    axis.axis("off")
    colors = ["C0", "C1", "C2", "C3", "C4"]
    axis.text(0.2, 4.85, "support: 5 classes × 1 image", fontsize=9, weight="bold")
    for k, color in enumerate(colors):
        axis.add_patch(Rectangle((0.3 + 0.62 * k, 3.9), 0.5, 0.6, facecolor="white", edgecolor=color, lw=2))
        axis.text(0.55 + 0.62 * k, 4.2, f"y={k}", ha="center", va="center", fontsize=7)
    axis.text(0.2, 2.6, "query: new drawings\nof the same 5 characters", fontsize=9, weight="bold")
    axis.add_patch(Rectangle((0.8, 1.4), 0.5, 0.6, facecolor="white", edgecolor="0.2", lw=2))
    axis.text(1.05, 1.7, "x", ha="center", va="center", fontsize=9)
    box(axis, 4.9, 3.0, "embedding $f_\\theta$\n(Conv4, shared)", LEARNER, width=2.0, height=1.0)
    arrow(axis, (3.4, 4.2), (3.9, 3.3))
    arrow(axis, (1.5, 1.7), (3.9, 2.7))
    axis.add_patch(Rectangle((6.9, 0.5), 4.4, 4.3, facecolor="#f6f6f6", edgecolor="0.6"))
    axis.text(9.1, 4.55, "embedding space", ha="center", fontsize=9, color="0.3")
    centres = [(7.7, 3.7), (9.6, 4.0), (10.6, 2.6), (8.3, 1.2), (10.0, 1.1)]
    for (cx, cy), color, k in zip(centres, colors, range(5)):
        axis.add_patch(Circle((cx, cy), 0.13, color=color))
        axis.text(cx + 0.2, cy + 0.1, f"$c_{k}$", fontsize=9, color=color)
    query = (8.9, 2.5)
    axis.plot(*query, marker="x", color="0.1", markersize=10, mew=2)
    axis.text(query[0] - 0.25, query[1] - 0.35, "$f_\\theta(x)$", fontsize=9)
    for (cx, cy), color in zip(centres, colors):
        axis.plot([query[0], cx], [query[1], cy], color=color, lw=0.8, ls="--")
    arrow(axis, (5.9, 3.0), (6.85, 3.0))
    axis.text(12.2, 2.7, "$p(y=k\\,|\\,x)$\n$\\propto \\exp(-d(f_\\theta(x), c_k))$\n(eqs. 1–2)",
              ha="center", va="center", fontsize=9)
    axis.text(6.5, 0.1, "1-shot: each prototype $c_k$ is the embedding of the class's one support image; "
              "K-shot: the mean of K.", ha="center", fontsize=8.5, style="italic", color="0.3")
    figure.tight_layout()
    figure.savefig(HERE / "02_protonet_episode.svg")


def transduction_figure():
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.3))
    for axis, title in zip(axes, ("transductive: batch statistics over all 75 queries",
                                  "non-transductive: each query with the support set only")):
        axis.set(xlim=(0, 6), ylim=(0, 4))
        axis.axis("off")
        axis.set_title(title, fontsize=9.5)
    left, right = axes
    box(left, 1.5, 3.0, "5 support images", SUPPORT, width=2.4, height=0.6)
    box(left, 1.5, 1.4, "75 query images\n(all of the task's)", QUERY, width=2.4, height=0.9)
    box(left, 4.5, 3.0, "$f_\\theta$, batch 1", LEARNER, width=1.6, height=0.6)
    box(left, 4.5, 1.4, "$f_\\theta$, batch 2", LEARNER, width=1.6, height=0.6)
    arrow(left, (2.75, 3.0), (3.65, 3.0))
    arrow(left, (2.75, 1.4), (3.65, 1.4))
    left.text(3.0, 0.25, "a query's embedding depends on the other queries", ha="center", fontsize=8,
              style="italic", color="0.3")
    for j, y in enumerate((3.1, 2.1, 0.9)):
        box(right, 1.5, y, "5 support + query " + ("1", "2", "75")[j], SUPPORT, width=2.6, height=0.55,
            fontsize=8)
        box(right, 4.5, y, "$f_\\theta$, one batch", LEARNER, width=1.6, height=0.55, fontsize=8)
        arrow(right, (2.85, y), (3.65, y))
    right.text(1.5, 1.55, "⋮", ha="center", va="center", fontsize=13)
    right.text(3.0, 0.1, "75 batches of 6 images: a query sees only the support set", ha="center",
               fontsize=8, style="italic", color="0.3")
    figure.tight_layout()
    figure.savefig(HERE / "02_transduction.svg")


if __name__ == "__main__":
    setup_figure()
    episode_figure()
    transduction_figure()
