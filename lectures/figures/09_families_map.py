"""Draws 09_families_map.svg: the three families of meta-learners and where the course's algorithms sit.

Run from the repository root: ``python lectures/figures/09_families_map.py``.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

plt.rcParams["svg.fonttype"] = "none"  # text stays text: a small, searchable SVG

FAMILIES = [
    ("black-box", "#dbe9f6", "φ = g_θ(D_tr)\na network reads the support set",
     ["hypernetwork, CNP (L3)", "LSTM, MANN, SNAIL (L3)", "RL²: a recurrent policy (L5)",
      "in-context transformer (L10)"], "+ best inside p(T)\n− no guarantee outside; hard to train"),
    ("optimisation-based", "#fde6cf", "φ = θ − α ∇_θ L(θ; D_tr)\ngradient steps from a learned start",
     ["MAML, first-order MAML (L4)", "Meta-SGD, Reptile (L4)", "MAML for RL (L6)", "MB-MPO (L7)"],
     "+ keeps learning off p(T)\n− second-order cost, hard optimisation"),
    ("metric-based", "#dcefd8",
     "p(y = k | x) ∝ exp(−d(f_θ(x), c_k))\ncompare with class centres in a learned embedding",
     ["Prototypical Networks (L2)", "Matching Networks (L2)", "nearest neighbour (baseline, L2)"],
     "+ cheap, strong for classification\n− needs classes: no regression or RL"),
]


def main() -> None:
    figure, ax = plt.subplots(figsize=(11, 5.6))
    ax.set(xlim=(0, 11), ylim=(0, 5.6))
    ax.axis("off")
    ax.text(5.5, 5.35, "meta-learning:  min_θ  E_{T ~ p(T)}  L( A_θ(D_tr,T) ; D_ts,T )", ha="center",
            fontsize=13, weight="bold")
    ax.text(5.5, 4.95, "the three families differ only in the learner A_θ that turns a support set into a predictor",
            ha="center", fontsize=10, style="italic")
    for i, (name, colour, rule, members, verdict) in enumerate(FAMILIES):
        left = 0.2 + i * 3.6
        ax.add_patch(FancyBboxPatch((left, 0.9), 3.3, 3.7, boxstyle="round,pad=0.05", fc=colour, ec="0.3"))
        ax.text(left + 1.65, 4.3, name, ha="center", fontsize=13, weight="bold")
        ax.text(left + 1.65, 3.95, rule, ha="center", va="top", fontsize=9)
        for j, member in enumerate(members):
            ax.text(left + 0.2, 3.0 - 0.42 * j, "• " + member, fontsize=10)
        ax.text(left + 0.2, 1.05, verdict, fontsize=8.5, color="0.25", va="bottom")
    # the meta-critic (L8) straddles two families: its critic reads a trace, its actor takes gradient steps
    ax.add_patch(FancyBboxPatch((2.6, 0.25), 3.0, 0.45, boxstyle="round,pad=0.05", fc="white", ec="0.3", ls="--"))
    ax.text(4.1, 0.47, "meta-critic (L8): black-box critic, gradient-trained actor", ha="center", va="center",
            fontsize=8.5)
    ax.text(9.35, 0.47, "Lk = Lecture k", ha="center", va="center", fontsize=9, color="0.35")
    figure.tight_layout()
    figure.savefig(Path(__file__).with_suffix(".svg"))


if __name__ == "__main__":
    main()
