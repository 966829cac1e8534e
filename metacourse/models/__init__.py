"""Networks the algorithms adapt: the MLP of MAML's sinusoid experiment, and more to come."""

from .mlp import MLP, TaskLinear

__all__ = ["MLP", "TaskLinear"]
