"""Reinforcement learning for the meta-RL part of the course.

Level 1 (building blocks): ``task_env`` (the one env interface, ``Rollout`` and ``play``), ``envs``
(task families), ``returns`` (discounted returns, GAE),
``ppo`` (clipped surrogate), ``trpo`` (trust region), ``rollout`` (RL²'s recurrent trials),
``value_baseline`` (rllab's linear value baseline V(s_t)), ``classical`` (hand-designed bandit
and tabular-MDP algorithms). Level 2: ``rl2`` (RL², Duan et al. 2016), ``maml_rl``,
``meta_critic``, then ``mbmpo``.
Submodules are imported explicitly (``from metacourse.rl import rl2``); importing this package
alone loads nothing heavy.
"""
