"""Draws the concept diagram of lecture 3 (run from the repository root):

    python lectures/figures/03_blackbox_diagram.py

writes lectures/figures/03_blackbox_learners.svg: a black-box learner f_θ(D_train, x) → ŷ, and the
four ways the lecture builds it (CNP summary, hypernetwork, recurrent learner with the label one step
late, SNAIL's causal convolutions and attention).
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

plt.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable files
plt.rcParams["svg.hashsalt"] = "metacourse"  # the same file on every run
HERE = Path(__file__).resolve().parent
BLUE, GREEN, ORANGE, GRAY = "#dbe9f6", "#dcf0d5", "#fde3c8", "#eeeeee"


def box(axis, x, y, w, h, text, color, fontsize=9):
    axis.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                  fc=color, ec="k", lw=0.8))
    axis.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def arrow(axis, start, end, color="k", lw=1.0, rad=0.0, ls="-"):
    axis.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, color=color, lw=lw,
                                   linestyle=ls, connectionstyle=f"arc3,rad={rad}"))


def panel(axis, x0, y0, w, h, title):
    axis.add_patch(Rectangle((x0, y0), w, h, fc="none", ec="gray", lw=0.8, ls="--"))
    axis.text(x0 + 0.12, y0 + h - 0.18, title, ha="left", va="top", fontsize=10, weight="bold")


def header(axis):
    """f_θ reads a whole training set and a query, and answers: one forward pass is the learning."""
    box(axis, 3.0, 9.0, 3.0, 0.7, "$D^{tr} = \\{(x_i, y_i)\\}_{i=1}^{K}$", GRAY, 10)
    box(axis, 3.0, 8.0, 3.0, 0.6, "query $x$", GRAY, 10)
    box(axis, 7.6, 8.5, 3.4, 1.3, "black-box learner\n$f_\\theta(D^{tr}, x)$", BLUE, 11)
    box(axis, 10.9, 8.5, 0.8, 0.6, "$\\hat y$", GRAY, 11)
    arrow(axis, (4.5, 9.0), (5.9, 8.7))
    arrow(axis, (4.5, 8.0), (5.9, 8.3))
    arrow(axis, (9.3, 8.5), (10.5, 8.5))
    axis.text(13.4, 8.9, "trained end to end on episodes:", fontsize=9, ha="center")
    axis.text(13.4, 8.45, "minimise the query loss $L(\\hat y, y)$", fontsize=9, ha="center")
    axis.text(13.4, 8.0, "over many tasks $T \\sim p(T)$", fontsize=9, ha="center")


def cnp(axis):
    panel(axis, 0.1, 3.95, 7.35, 3.35, "(a) CNP: a permutation-invariant summary")
    for i, y in enumerate((6.4, 5.6, 4.8)):
        label = "$(x_K, y_K)$" if i == 2 else f"$(x_{i + 1}, y_{i + 1})$"
        box(axis, 1.0, y, 1.2, 0.5, label, GRAY, 8)
        box(axis, 2.6, y, 0.9, 0.5, "$h_\\theta$", GREEN)
        arrow(axis, (1.6, y), (2.15, y))
        arrow(axis, (3.05, y), (3.85, 5.6), rad=0.0)
    box(axis, 4.3, 5.6, 0.9, 0.6, "mean", ORANGE)
    axis.text(4.3, 5.0, "$r$", ha="center", fontsize=10)
    box(axis, 5.9, 5.6, 0.9, 0.6, "$g_\\theta$", GREEN)
    arrow(axis, (4.75, 5.6), (5.45, 5.6))
    box(axis, 5.9, 6.5, 0.9, 0.4, "$x$", GRAY, 9)
    arrow(axis, (5.9, 6.3), (5.9, 5.9))
    arrow(axis, (6.35, 5.6), (6.95, 5.6))
    axis.text(7.15, 5.6, "$\\hat y$", va="center", fontsize=10)
    axis.text(3.7, 4.2, "any order, any K: the mean does not care", ha="center", fontsize=8, style="italic")


def hypernetwork(axis):
    panel(axis, 7.6, 3.95, 7.3, 3.35, "(b) hypernetwork: the task's weights")
    box(axis, 8.7, 5.9, 1.6, 0.6, "$D^{tr}$", GRAY)
    box(axis, 10.45, 5.9, 1.3, 0.6, "embed, MLP", GREEN, 8)
    arrow(axis, (9.5, 5.9), (9.8, 5.9))
    box(axis, 12.2, 5.9, 1.5, 0.6, "weights $w$", ORANGE, 9)
    arrow(axis, (11.1, 5.9), (11.45, 5.9))
    box(axis, 12.2, 4.75, 1.5, 0.6, "$f(x; w)$", BLUE)
    arrow(axis, (12.2, 5.6), (12.2, 5.05))
    box(axis, 10.45, 4.75, 1.0, 0.5, "$x$", GRAY)
    arrow(axis, (10.95, 4.75), (11.45, 4.75))
    arrow(axis, (12.95, 4.75), (13.7, 4.75))
    axis.text(13.85, 4.75, "$\\hat y$", va="center", fontsize=10)
    axis.text(11.2, 4.2, "one output unit per weight of f: costly for big f", ha="center", fontsize=8,
              style="italic")


def recurrent(axis):
    panel(axis, 0.1, 0.1, 7.35, 3.65, "(c) recurrent (LSTM, MANN): the label one step late")
    inputs = ("$(x_1, 0)$", "$(x_2, y_1)$", "$(x_3, y_2)$", "$(x, y_K)$")
    for i, text in enumerate(inputs):
        x = 1.1 + 1.75 * i
        box(axis, x, 1.7, 1.1, 0.6, "LSTM", GREEN)
        axis.text(x, 0.7, text, ha="center", fontsize=9)
        arrow(axis, (x, 0.85), (x, 1.4))
        arrow(axis, (x, 2.0), (x, 2.55))
        axis.text(x, 2.75, f"$\\hat y_{i + 1}$" if i < 3 else "$\\hat y$", ha="center", fontsize=10)
        if i:
            arrow(axis, (x - 1.2, 1.7), (x - 0.55, 1.7), color="C0", lw=1.5)
    axis.text(5.48, 1.6, "…", fontsize=12, ha="center")
    axis.text(3.7, 0.25, "predict $y_t$ first, see it at step $t+1$; MANN adds a memory", ha="center",
              fontsize=8, style="italic")


def snail(axis):
    panel(axis, 7.6, 0.1, 7.3, 3.65, "(d) SNAIL: causal convolutions and attention")
    xs = [8.6 + 1.45 * i for i in range(5)]
    for i, x in enumerate(xs):
        box(axis, x, 0.9, 0.9, 0.5, f"$t={i + 1}$" if i < 4 else "$t$", GRAY, 8)
        box(axis, x, 2.3, 0.9, 0.5, "", BLUE)
    for i in range(1, 5):  # convolution: itself and the step before
        arrow(axis, (xs[i - 1], 1.15), (xs[i] - 0.2, 2.05), color="C2")
        arrow(axis, (xs[i], 1.15), (xs[i], 2.05), color="C2")
    for j in range(4):  # attention from the last position to every earlier one
        arrow(axis, (xs[4] - 0.3, 2.55), (xs[j] + 0.1, 2.55), color="C1", rad=0.3 - 0.04 * j)
    caption = "green: convolution (kernel 2); orange: attention, to positions $\\leq t$ only"
    axis.text(11.1, 0.3, caption, ha="center", fontsize=8, style="italic")


def main():
    figure, axis = plt.subplots(figsize=(12, 7.4))
    axis.set(xlim=(0, 15), ylim=(0, 9.6))
    axis.axis("off")
    header(axis)
    cnp(axis)
    hypernetwork(axis)
    recurrent(axis)
    snail(axis)
    figure.savefig(HERE / "03_blackbox_learners.svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)


if __name__ == "__main__":
    main()
