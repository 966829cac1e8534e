"""metacourse: the library behind a Jupyter-first course on meta-learning.

``import metacourse`` stays light: torch and numpy are imported with the first name used from it
(``metacourse.get_device``, ...), never matplotlib, torchvision or learn2learn. Plots live in
``metacourse.viz``; the command line in ``metacourse.cli``.
"""

__version__ = "0.1.0"

__all__ = ["DivergenceError", "MAML", "fast_mode", "get_device", "pretrained", "seed_everything", "__version__"]


def pretrained(name: str):
    """A trained checkpoint shipped with the package, e.g. ``pretrained("protonet-omniglot-5w1s")``:
    its model, its card (how it was trained, its measured accuracy) and ``.evaluate()``.
    ``metacourse.checkpoints.names()`` lists them."""
    from .checkpoints import load

    return load(name)


_FROM_UTILS = ("DivergenceError", "fast_mode", "get_device", "seed_everything")


def __getattr__(name: str):
    if name in _FROM_UTILS:  # imported on first use, so that `metacourse --help` starts without torch
        from . import utils

        return getattr(utils, name)
    if name == "MAML":  # learn2learn-style front end, imported on first use
        from .algorithms.maml_module import MAML

        return MAML
    raise AttributeError(f"module 'metacourse' has no attribute {name!r}")
