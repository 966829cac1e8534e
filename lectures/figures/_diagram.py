"""What the concept diagrams of Lectures 7 and 8 share: boxes, arrows and a deterministic SVG.

Imported by the diagram scripts beside it (``python lectures/figures/07_mbmpo_loop.py``)."""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

plt.rcParams["svg.fonttype"] = "none"  # text stays text: a small, searchable SVG
plt.rcParams["svg.hashsalt"] = "metacourse"  # the same element ids on every run


def box(axis, x, y, text, color, width, height):
    axis.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.05",
                                  facecolor=color, edgecolor="0.3", lw=1))
    axis.text(x, y, text, ha="center", va="center", fontsize=9)


def arrow(axis, start, end, text="", offset=(0, 0.1), color="0.25", text_color=None, **style):
    axis.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=color, lw=1.2, **style))
    if text:
        axis.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text,
                  ha="center", va="bottom", fontsize=8, color=text_color or color)


def save(figure, script: str) -> None:
    """``script``'s SVG beside it (no date: the same file on every run); a PNG preview if asked."""
    figure.tight_layout()
    figure.savefig(Path(script).with_suffix(".svg"), metadata={"Date": None})
    if len(sys.argv) > 1:
        figure.savefig(sys.argv[1], dpi=80)
