"""Networks the algorithms adapt: the MLP of MAML's sinusoid experiment, and more to come."""

from .mlp import MLP, TaskLinear
from .transformer import InContextTransformer

__all__ = ["MLP", "TaskLinear", "InContextTransformer"]
