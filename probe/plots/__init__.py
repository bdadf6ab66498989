"""Matplotlib figures of analysis results; analyses never import this package.

Submodules load on first use.
"""

from probe._lazy import attach

__all__ = [
    "clusters",
    "curves",
    "features",
    "local_metric",
    "two_point",
]
__getattr__, __dir__ = attach(__name__, __all__)
