"""Draws 08_meta_critic.svg, the two networks of Meta-Critic Networks (Lecture 8):
python lectures/figures/08_meta_critic.py [preview.png]"""

from functools import partial

from _diagram import arrow, box, plt, save

box = partial(box, width=2.4, height=1.0)
arrow = partial(arrow, offset=(0, 0.1))


figure, axis = plt.subplots(figsize=(10, 4.2))
axis.set(xlim=(0, 12.4), ylim=(0, 5.4))
axis.axis("off")
task, actor, critic = "#fde2c4", "#f3d9ef", "#cfe3f7"
box(axis, 1.5, 4.3, "task i\n(a pole length ℓ_i,\na sinusoid)", task)
box(axis, 1.5, 1.4, "actor π_φi\n(one per task,\nfresh at meta-test)", actor)
box(axis, 5.0, 4.3, "trace of actor i:\nlast k (s, a, r)", task)
box(axis, 8.2, 4.3, "TAEN ψ (LSTM)\nz_i = code of\ntask and actor (eq. 1)", critic)
box(axis, 8.2, 1.4, "MVN ω (MLP)\nQ_ω(s, a, z_i)", critic)
box(axis, 11.2, 2.85, "TD target (eq. 3)\ncritic step on\n(ω, ψ) (eq. 4)", critic, width=2.0, height=1.1)
arrow(axis, (1.5, 1.95), (1.5, 3.75), "acts: s, a, r", offset=(-0.6, 0.0))
arrow(axis, (2.75, 4.3), (3.75, 4.3))
arrow(axis, (6.25, 4.3), (6.95, 4.3))
arrow(axis, (8.2, 3.75), (8.2, 1.95), "z_i", offset=(0.25, -0.1))
arrow(axis, (6.95, 1.4), (2.75, 1.4), "actor step (eq. 2): raise Σ_a π(a|s) Q(s, a, z_i)", offset=(0, 0.1),
      color="tab:purple")
arrow(axis, (9.45, 1.6), (10.3, 2.35), color="tab:blue")
arrow(axis, (9.45, 4.1), (10.3, 3.35), color="tab:blue")
axis.text(6.2, 0.35, "meta-training (Algorithm 1): many tasks, both steps    ·    "
          "meta-test (Algorithm 2): critic frozen, only the actor step", ha="center", fontsize=8,
          style="italic", color="0.3")
save(figure, __file__)
