"""Supervised meta-learners. Each module exposes the same verbs: adapt, task_loss, meta_loss, meta_step."""
