"""Statistics over runs: paired comparisons, group tests, curve stats, divergence of a run.

Group tests: OLS, nested F, rank tests. Divergence: a stated rule on batch losses and accuracy.

Submodules load on first use.
"""

from probe._lazy import attach

__all__ = [
    "curve_stats",
    "divergence",
    "group_stats",
    "paired",
]
__getattr__, __dir__ = attach(__name__, __all__)
