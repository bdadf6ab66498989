"""The neural race in a gated deep linear routing network, against the exact solution.

Modules: `experiment`, `_train`, `_report`.
"""
