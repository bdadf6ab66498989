"""Arrays in, numbers out: the analyses of recorded representations.

similarity (distances, CKA, Procrustes), cross_run (CKA of two runs), alignment, clusters and
cluster_sweep, collapse, dimension, margins, features (NFM vs AGOP), local_metric, curves,
readout, smooth, embed, summaries, streaming moments and `stats` (paired, group and curve
statistics). Submodules load on first use.
"""

from probe._lazy import attach

__all__ = [
    "alignment",
    "cluster_sweep",
    "clusters",
    "collapse",
    "cross_run",
    "curves",
    "dimension",
    "embed",
    "features",
    "local_metric",
    "margins",
    "readout",
    "similarity",
    "smooth",
    "stats",
    "streaming",
    "summaries",
]
__getattr__, __dir__ = attach(__name__, __all__)
