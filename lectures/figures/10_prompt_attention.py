"""Draws 10_prompt_attention.svg: a prompt (x1, y1, ..., xK, yK, x_query) through a causal transformer,
with the attention from the query's token to the examples.

Run from the repository root: ``python lectures/figures/10_prompt_attention.py``.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

plt.rcParams["svg.fonttype"] = "none"  # text stays text: a small, searchable SVG

TOKENS = ["x₁", "y₁", "x₂", "y₂", "…", "x_K", "y_K", "x_q"]
POSITIONS = ["0", "1", "2", "3", "", "2K−2", "2K−1", "2K"]
COLOURS = {"x": "#9ecae1", "y": "#fdae6b", "…": "white"}


def main() -> None:
    figure, ax = plt.subplots(figsize=(11, 5.4))
    ax.set(xlim=(-0.8, 8.6), ylim=(-1.3, 5.2))
    ax.axis("off")
    xs = [i * 1.1 + 0.3 for i in range(len(TOKENS))]
    query = xs[-1]
    for x, token, position in zip(xs, TOKENS, POSITIONS):
        colour = "#c7e9c0" if token == "x_q" else COLOURS.get(token[0], "white")
        ax.add_patch(FancyBboxPatch((x - 0.38, -0.25), 0.76, 0.6, boxstyle="round,pad=0.03", fc=colour,
                                    ec="0.3" if token != "…" else "white"))
        ax.text(x, 0.05, token, ha="center", va="center", fontsize=13)
        ax.text(x, -0.55, position, ha="center", va="center", fontsize=8, color="0.35")
        if token != "…":
            ax.add_patch(FancyArrowPatch((x, 0.38), (x, 1.0), arrowstyle="-|>", mutation_scale=10, color="0.4"))
    ax.text(-0.75, 0.05, "prompt\ntokens", fontsize=9, va="center")
    ax.text(-0.75, -0.55, "position", fontsize=8, va="center", color="0.35")
    ax.text(-0.75, -1.05, "features:  x-token = [x, 0, 0],   y-token = [0, y, 1]   (x ∈ R^d, y ∈ R)",
            fontsize=9, color="0.25")
    # the transformer
    ax.add_patch(FancyBboxPatch((-0.2, 1.05), 8.4, 1.9, boxstyle="round,pad=0.05", fc="#f2f2f2", ec="0.3"))
    ax.text(0.0, 2.7, "causal transformer M_θ  (L blocks of masked self-attention + MLP)", fontsize=10,
            weight="bold", va="center")
    # attention arcs from the query's token to every example token (and itself)
    weights = [0.9, 0.6, 0.9, 0.6, 0.0, 0.9, 0.6]
    for x, token, w in zip(xs[:-1], TOKENS[:-1], weights):
        if token == "…":
            continue
        ax.add_patch(FancyArrowPatch((query, 1.3), (x, 1.3), connectionstyle="arc3,rad=0.18",
                                     arrowstyle="-|>", mutation_scale=9, lw=0.8 + 1.6 * w,
                                     color="tab:green", alpha=0.85))
    ax.text(0.0, 2.4, "attention: the query reads every example token (and itself), never a later token",
            fontsize=9, color="tab:green", va="center")
    # outputs
    ax.add_patch(FancyArrowPatch((query, 2.95), (query, 3.65), arrowstyle="-|>", mutation_scale=12, color="k"))
    ax.text(query, 3.95, "ŷ_q", ha="center", fontsize=14, weight="bold")
    for x, token in zip(xs, TOKENS):
        if token.startswith("x") and token != "x_q":
            ax.add_patch(FancyArrowPatch((x, 2.95), (x, 3.5), arrowstyle="-|>", mutation_scale=9, color="0.55"))
            ax.text(x, 3.75, "ŷ" + token[1:], ha="center", fontsize=10, color="0.4")
    ax.text(-0.75, 4.75, "training: ŷ_i is read at x_i's token, from the examples before it (the mask hides y_i)\n"
            "test: the answer for a new x is read at x_q's token — adapting to a task is writing its examples "
            "into the prompt", fontsize=9.5, va="center")
    figure.tight_layout()
    figure.savefig(Path(__file__).with_suffix(".svg"))


if __name__ == "__main__":
    main()
