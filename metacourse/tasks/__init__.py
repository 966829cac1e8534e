"""Task distributions p(T). A task is a support set and a query set (``Task``, ``TaskBatch``)."""

from .base import Task, TaskBatch, stack_tasks
from .sinusoid import SinusoidTasks

__all__ = ["Task", "TaskBatch", "stack_tasks", "SinusoidTasks"]
