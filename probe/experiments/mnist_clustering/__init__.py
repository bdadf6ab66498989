"""MNIST clustering: many nets' class distance matrices against the effective theory.

Modules: `experiment` (training loop over nets, re-analysis of stores), `_config`, `_train` (one
net), `_analysis` (per-net r over training, bootstrap CIs, net averages), `_report` (text and
Markdown), `_figures` (matrices; r over training with CI bands, losses, accuracies).
"""
