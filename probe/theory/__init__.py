"""Theory to compare measurements with: the two-point effective theory and its fit, linear dynamics.

effective (ODEs), effective_closed (closed forms), effective_fit, linear_dynamics (Saxe et al.
2014), routing (gated deep linear networks) and cluster_theory. See docs/theory.md. Submodules
load on first use.
"""

from probe._lazy import attach

__all__ = [
    "cluster_theory",
    "effective",
    "effective_closed",
    "effective_fit",
    "linear_dynamics",
    "routing",
]
__getattr__, __dir__ = attach(__name__, __all__)
