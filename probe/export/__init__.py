"""Exports of a run: `formats.export_run` writes parquet/CSV/npz or a TensorBoard projector.

Submodules load on first use.
"""

from probe._lazy import attach

__all__ = [
    "formats",
    "frames",
    "projector",
    "scalars",
]
__getattr__, __dir__ = attach(__name__, __all__)
