"""MNIST clustering: many nets' class distance matrices against the effective theory.

Modules: `experiment`, `_report`.
"""
