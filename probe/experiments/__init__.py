"""Reference experiments, each a function plus a CLI verb."""

from probe.experiments.mnist import ClassifierConfig, ClassifierResult, train_classifier

__all__ = ["ClassifierConfig", "ClassifierResult", "train_classifier"]
