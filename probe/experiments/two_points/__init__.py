"""Two-point representation dynamics: fit of the effective theory per layer.

Modules: `experiment`, `_report`.
"""
