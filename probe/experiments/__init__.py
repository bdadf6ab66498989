"""Reference experiments, each a function plus a CLI verb."""

from probe.experiments.finetune_speed.curves import analyse_finetune_curves
from probe.experiments.finetune_speed.experiment import (
    FinetuneConfig,
    FinetuneResult,
    format_summary,
    run_finetune_speed,
)
from probe.experiments.mnist import ClassifierConfig, ClassifierResult, train_classifier
from probe.experiments.mnist_clustering.experiment import (
    MnistClusteringConfig,
    MnistClusteringResult,
    run_mnist_clustering,
)
from probe.experiments.neural_race.experiment import (
    InitScaleSweepConfig,
    NeuralRaceConfig,
    init_scale_sweep,
    run_neural_race,
)
from probe.experiments.nfa.experiment import NfaConfig, NfaResult, run_nfa
from probe.experiments.seq_mnist import (
    SeqMnistConfig,
    SeqMnistResult,
    readout_table,
    train_seq_mnist,
)

__all__ = [
    "analyse_finetune_curves",
    "ClassifierConfig",
    "ClassifierResult",
    "FinetuneConfig",
    "FinetuneResult",
    "InitScaleSweepConfig",
    "MnistClusteringConfig",
    "MnistClusteringResult",
    "NeuralRaceConfig",
    "NfaConfig",
    "NfaResult",
    "SeqMnistConfig",
    "SeqMnistResult",
    "format_summary",
    "init_scale_sweep",
    "readout_table",
    "run_mnist_clustering",
    "run_neural_race",
    "run_nfa",
    "run_finetune_speed",
    "train_classifier",
    "train_seq_mnist",
]
