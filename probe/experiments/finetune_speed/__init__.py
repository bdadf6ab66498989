"""ProductNet vs SumNet finetuned to related polynomial tasks: config, training, report, curves.

Modules: `experiment` (config, pretraining, finetuning), `tasks`, `curves`, `_report`.
"""
