"""Statistics over runs: paired comparisons, group tests (OLS, nested F, rank tests), curve stats.

Submodules load on first use.
"""

from probe._lazy import attach

__all__ = [
    "curve_stats",
    "group_stats",
    "paired",
]
__getattr__, __dir__ = attach(__name__, __all__)
