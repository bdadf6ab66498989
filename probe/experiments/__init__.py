"""Reference experiments, each a function plus a CLI verb."""

from probe.experiments.finetune_speed import (
    FinetuneConfig,
    FinetuneResult,
    format_summary,
    run_finetune_speed,
)
from probe.experiments.mnist import ClassifierConfig, ClassifierResult, train_classifier

__all__ = [
    "ClassifierConfig",
    "ClassifierResult",
    "FinetuneConfig",
    "FinetuneResult",
    "format_summary",
    "run_finetune_speed",
    "train_classifier",
]
