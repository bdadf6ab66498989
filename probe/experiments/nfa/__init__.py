"""The Neural Feature Ansatz: NFM (W^T W) vs AGOP per layer over training.

Modules: `experiment`, `_setup`, `_report`.
"""
