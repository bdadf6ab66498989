"""Settings of `probe.experiments.mnist_clustering.experiment`, checked by `validate`."""

from __future__ import annotations

from dataclasses import dataclass

from probe.errors import ConfigError
from probe.validation import check_int, check_positive

__all__ = ["ANALYSIS_FIELDS", "MnistClusteringConfig", "demo_config", "validate"]

#: Settings that only change the analysis (`analyse_mnist_clustering` takes them anew).
ANALYSIS_FIELDS = (
    "spike_factor",
    "spike_window",
    "accuracy_floor",
    "include_diverged",
    "until_divergence",
    "n_bootstrap",
    "ci_level",
    "bootstrap_seed",
)


@dataclass
class MnistClusteringConfig:
    """Settings of the experiment (the authors' ``structure`` row of ``mnist.txt`` by default).

    The authors train 10 nets for 200 epochs on all 60,000 images; the defaults here are that
    architecture and optimiser with fewer epochs. ``max_train`` keeps the first images only.
    The last eight fields (`ANALYSIS_FIELDS`) set the divergence rule
    (`probe.analysis.stats.divergence.RULE`) and the bootstrap.
    """

    dataset: str = "mnist"
    n_nets: int = 10
    epochs: int = 5
    lr: float = 0.005
    batch_size: int = 64
    width: int = 200
    depth: int = 4
    gain: float = 0.5
    hidden_layer: int = 2
    n_probe: int = 100
    n_pred_images: int = 10000
    max_train: int | None = None
    n_log_snapshots: int = 20
    seed: int = 0
    spike_factor: float = 100.0
    spike_window: int = 100
    accuracy_floor: float = 0.9
    include_diverged: bool = False
    until_divergence: bool = False
    n_bootstrap: int = 2000
    ci_level: float = 0.95
    bootstrap_seed: int = 0


def demo_config(dataset: str = "mnist") -> MnistClusteringConfig:
    """Return the small configuration of ``probe demo`` (a few minutes on 2 CPU cores).

    Parameters
    ----------
    dataset : {"mnist", "digits"}
        MNIST: 3 nets, 2 epochs on the first 10,000 images; digits: 3 nets, 20 epochs. The
        accuracy floor is 0.5: short training, so only a blow-up should fail it.

    Returns
    -------
    MnistClusteringConfig
    """
    if dataset == "digits":
        return MnistClusteringConfig(dataset="digits", n_nets=3, epochs=20, accuracy_floor=0.5)
    return MnistClusteringConfig(
        dataset=dataset, n_nets=3, epochs=2, max_train=10000, accuracy_floor=0.5
    )


def validate(cfg: MnistClusteringConfig) -> None:
    """Raise `ConfigError` naming the first setting of ``cfg`` out of range."""
    names = ("n_nets", "epochs", "batch_size", "width", "depth", "n_probe", "n_pred_images")
    for name in (*names, "n_log_snapshots", "spike_window", "n_bootstrap"):
        check_int(getattr(cfg, name), name)
    if cfg.max_train is not None:
        check_int(cfg.max_train, "max_train", hint="Or pass None for all images.")
    if not isinstance(cfg.hidden_layer, int) or not 0 <= cfg.hidden_layer < cfg.depth:
        msg = (
            f"hidden_layer must be an int in [0, depth) = [0, {cfg.depth}); got "
            f"{cfg.hidden_layer!r}. The authors hook index 2 of 4 hidden layers."
        )
        raise ConfigError(msg)
    for name in ("lr", "gain"):
        check_positive(getattr(cfg, name), name)
    if check_positive(cfg.spike_factor, "spike_factor") <= 1.0:
        msg = f"spike_factor must be > 1 (a multiple of the running loss); got {cfg.spike_factor}."
        raise ConfigError(msg)
    for name, low, high in (("accuracy_floor", 0.0, 1.0), ("ci_level", 0.0, 1.0)):
        value = getattr(cfg, name)
        closed = name == "accuracy_floor"
        inside = low <= value <= high if closed else low < value < high
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not inside:
            span = "[0, 1] (0 disables the floor)" if closed else "(0, 1), e.g. 0.95"
            msg = f"{name} must be a number in {span}; got {value!r}."
            raise ConfigError(msg)
