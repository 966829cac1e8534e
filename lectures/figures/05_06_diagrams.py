"""Draws the concept diagrams of lectures 5 and 6 (run from the repository root):

    python lectures/figures/05_06_diagrams.py

writes lectures/figures/05_rl2_trials.svg and lectures/figures/06_maml_rl_loops.svg.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

plt.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable files
plt.rcParams["svg.hashsalt"] = "metacourse"  # the same file on every run
HERE = Path(__file__).resolve().parent


def box(axis, x, y, w, h, text, color, fontsize=9, **kw):
    axis.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                  fc=color, ec="k", lw=0.8, **kw))
    axis.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def arrow(axis, start, end, color="k", style="-|>", lw=1.0, ls="-", rad=0.0):
    axis.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=10, color=color, lw=lw,
                                   linestyle=ls, connectionstyle=f"arc3,rad={rad}"))


def rl2_trials(path):
    figure, axis = plt.subplots(figsize=(12, 4.2))
    axis.set(xlim=(-0.6, 14.2), ylim=(-1.5, 4.1))
    axis.axis("off")
    steps_per_episode, episodes = 2, 3
    x = 0.6
    for task in ("trial 1: task $M_1 \\sim p(M)$", "trial 2: task $M_2 \\sim p(M)$"):
        start = x
        axis.text(x - 0.6, 1.95, "$h=0$", ha="center", va="center", fontsize=9, color="C3")
        previous = None
        for episode in range(episodes):
            ep_start = x
            for _ in range(steps_per_episode):
                box(axis, x, 1.5, 0.8, 0.7, "GRU", "#dbe9f6")
                axis.text(x, 0.35, "$x_t$", ha="center", va="center", fontsize=9)
                arrow(axis, (x, 0.55), (x, 1.13))
                arrow(axis, (x, 1.87), (x, 2.45))
                axis.text(x, 2.62, "$a_t$", ha="center", va="center", fontsize=9)
                if previous is not None:
                    arrow(axis, (previous + 0.42, 1.5), (x - 0.42, 1.5), color="C0", lw=1.6)
                else:
                    arrow(axis, (x - 0.75, 1.5), (x - 0.42, 1.5), color="C3", lw=1.6)
                previous = x
                x += 1.05
            axis.add_patch(FancyBboxPatch((ep_start - 0.5, -0.05), x - ep_start - 0.05, 2.95,
                                          boxstyle="round,pad=0.0,rounding_size=0.1", fc="none", ec="gray",
                                          ls="--", lw=0.8))
            axis.text((ep_start + x - 1.05) / 2, -0.3, f"episode {episode + 1}", ha="center", fontsize=8,
                      color="gray")
        axis.add_patch(FancyBboxPatch((start - 0.75, -0.6), x - start + 0.2, 3.95,
                                      boxstyle="round,pad=0.0,rounding_size=0.15", fc="none", ec="k", lw=1.2))
        axis.text((start + x - 1.05) / 2, 3.55, task, ha="center", fontsize=10)
        x += 1.3
    axis.text(6.8, -0.95, "input $x_t = (s_t, a_{t-1}, r_{t-1}, d_{t-1})$; the hidden state $h$ (blue) is carried "
              "across the episodes of a trial", ha="center", fontsize=9)
    axis.text(6.8, -1.35, "and reset to 0 (red) when a new task starts; the outer RL algorithm maximises the "
              "reward of the whole trial", ha="center", fontsize=9)
    figure.savefig(path, bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)


def maml_rl_loops(path):
    figure, axis = plt.subplots(figsize=(12, 4.6))
    axis.set(xlim=(0, 12.4), ylim=(-1.0, 5.0))
    axis.axis("off")
    box(axis, 1.0, 2.5, 1.4, 0.9, "policy\n$\\theta$", "#fde2c8", fontsize=11)
    for y, task in ((4.0, "$\\mathcal{T}_1$"), (1.0, "$\\mathcal{T}_n$")):
        box(axis, 3.6, y, 2.2, 0.9, f"$\\mathcal{{D}}$: K trajectories\nof $\\pi_\\theta$ in {task}", "#dbe9f6")
        box(axis, 6.3, y, 2.2, 0.9, "inner step\n$\\phi = \\theta - \\alpha \\nabla_\\theta L(\\theta; \\mathcal{D})$",
            "#e3f1dd", fontsize=8)
        box(axis, 9.0, y, 2.2, 0.9, f"$\\mathcal{{D}}'$: K trajectories\nof $\\pi_\\phi$ in {task}", "#dbe9f6")
        box(axis, 11.5, y, 1.5, 0.9, "$L(\\phi; \\mathcal{D}')$", "#f3dcef", fontsize=10)
        arrow(axis, (1.7, 2.5), (2.5, y))
        arrow(axis, (4.7, y), (5.2, y))
        arrow(axis, (7.4, y), (7.9, y))
        arrow(axis, (10.1, y), (10.75, y))
    axis.text(6.3, 2.5, "⋮  (n tasks, batched)", ha="center", va="center", fontsize=10)
    arrow(axis, (11.5, 0.55), (1.0, 2.05), color="C3", lw=1.6, ls="--", rad=-0.25)
    axis.text(6.2, -0.85, "outer step: TRPO on $\\sum_i L(\\phi_i(\\theta); \\mathcal{D}'_i)$, "
              "differentiated through the inner step $\\phi_i(\\theta)$", ha="center", fontsize=9, color="C3")
    axis.text(5.0, 4.8, "inner loop: data from $\\theta$, one policy-gradient step", fontsize=9, ha="center",
              color="C2")
    axis.text(10.1, 4.8, "fresh data from the adapted $\\phi$", fontsize=9, ha="center", color="C0")
    figure.savefig(path, bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)


if __name__ == "__main__":
    rl2_trials(HERE / "05_rl2_trials.svg")
    maml_rl_loops(HERE / "06_maml_rl_loops.svg")
