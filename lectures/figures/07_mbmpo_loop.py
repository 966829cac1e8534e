"""Draws 07_mbmpo_loop.svg, the MB-MPO loop of Lecture 7:
python lectures/figures/07_mbmpo_loop.py [preview.png]"""

from functools import partial

from _diagram import arrow, box, plt, save

box = partial(box, width=2.3, height=0.9)
arrow = partial(arrow, offset=(0, 0.15), text_color="0.2")


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
save(figure, __file__)
