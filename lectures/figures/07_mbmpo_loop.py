"""Draws 07_mbmpo_loop.svg, the MB-MPO loop of Lecture 7:
python lectures/figures/07_mbmpo_loop.py [preview.png]"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

plt.rcParams["svg.fonttype"] = "none"  # text stays text: a small, searchable SVG
plt.rcParams["svg.hashsalt"] = "metacourse"  # the same element ids on every run


def box(axis, x, y, text, color, width=2.3, height=0.9):
    axis.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05",
                                  facecolor=color, edgecolor="0.3", lw=1))
    axis.text(x, y, text, ha="center", va="center", fontsize=9)


def arrow(axis, start, end, text="", offset=(0, 0.15), **style):
    axis.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="0.25", lw=1.2,
                                   **style))
    if text:
        axis.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text,
                  ha="center", va="bottom", fontsize=8, color="0.2")


figure, axis = plt.subplots(figsize=(10, 4.6))
axis.set(xlim=(0, 12.4), ylim=(-0.2, 5.6))
axis.axis("off")
real, model, meta = "#fde2c4", "#cfe3f7", "#d9f0d3"
box(axis, 1.4, 5.0, "real environment\n(pendulums)", real)
box(axis, 1.4, 2.5, "real data D\n(s, a, s′) of all\nepisodes so far", real, height=1.1)
box(axis, 4.4, 2.5, "fit K dynamics models\nf̂_φ1 … f̂_φK on D\n(eq. 1)", model, height=1.1)
for k, y in enumerate((3.95, 2.5, 1.05)):
    label = ("model 1 = task 1", "model k = task k", "model K = task K")[k]
    box(axis, 7.5, y, f"{label}\nimagined episodes (eq. 2)\nθ′_k = θ + α∇J_k(θ)", model, width=2.6, height=1.1)
    arrow(axis, (5.6, 2.5), (6.15, y))
    arrow(axis, (8.85, y), (9.9, 2.5))
axis.text(7.5, 1.78, "⋮", ha="center", va="center", fontsize=14)
axis.text(7.5, 3.22, "⋮", ha="center", va="center", fontsize=14)
box(axis, 11.0, 2.5, "meta-policy θ\nmax_θ Σ_k J_k(θ′_k)\n(eq. 4, TRPO)", meta, width=2.3, height=1.1)
arrow(axis, (11.0, 3.1), (2.6, 5.0), connectionstyle="angle,angleA=90,angleB=0,rad=0")
axis.text(6.8, 5.1, "collect real episodes with the adapted policies θ′_1 … θ′_K (one per model)",
          ha="center", va="bottom", fontsize=8, color="0.2")
arrow(axis, (1.4, 4.5), (1.4, 3.1), "add", offset=(0.3, -0.1))
arrow(axis, (2.6, 2.5), (3.2, 2.5))
axis.text(7.5, 0.05, "inner loop: one policy-gradient step per model      outer loop: meta-steps on θ",
          ha="center", fontsize=8, style="italic", color="0.3")
figure.tight_layout()
figure.savefig(Path(__file__).with_suffix(".svg"), metadata={"Date": None})  # the same file on every run
if len(sys.argv) > 1:
    figure.savefig(sys.argv[1], dpi=80)
