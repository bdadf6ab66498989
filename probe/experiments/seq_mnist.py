"""Sequential MNIST on a pair of classes: a GRU/LSTM reads the image row by row (rows = time steps).

`train_seq_mnist` trains one binary classifier with a `hooks.Recorder` attached (a snapshot of the
hidden state at every time step at initialisation and each epoch end); `readout_table` turns the
run into a tidy table of per-epoch, per-time-step held-out read-out accuracies (kNN k=3 and
logistic regression): the information-processing curves of features.md section 3.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from hooks import Recorder
from probe.errors import ConfigError
from probe.experiments.datasets import DATASETS, load_dataset, stratified_probe
from probe.models.sequence import CELLS, SequenceClassifier
from probe.store import open_run
from probe.validation import check_int, check_positive

__all__ = [
    "READOUTS",
    "SeqMnistConfig",
    "SeqMnistResult",
    "readout_table",
    "train_seq_mnist",
    "validate_config",
]

#: Read-out classifiers of `readout_table`: kNN with k=3 and L2 logistic regression (C=1).
READOUTS = ("knn", "logreg")


@dataclass
class SeqMnistConfig:
    """Settings of one sequential-MNIST run (saved as JSON in the run store's ``config``).

    ``pair`` (a, b) is the binary task: class a is label 0, class b label 1. ``n_train`` is
    per class (None: every training image of the two classes). ``probe_size`` is at most that
    many test images of the pair, stratified; the whole test split of the pair when smaller.
    ``shuffle_labels`` permutes the training labels (the label-reshuffled null model).
    """

    dataset: str = "mnist"
    pair: tuple[int, int] = (0, 1)
    model: str = "gru"
    hidden: int = 32
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    n_train: int | None = None
    probe_size: int = 400
    shuffle_labels: bool = False
    seed: int = 0


@dataclass
class SeqMnistResult:
    """What a run produced: the store, final test metrics, per-epoch history, wall time."""

    store: Path
    test_accuracy: float
    test_loss: float
    n_steps: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(cfg: SeqMnistConfig) -> None:
    """Check every setting of ``cfg`` without loading data.

    Raises
    ------
    ConfigError
        A choice outside its allowed values, a size that is not a positive int, a
        non-positive ``lr`` or a ``pair`` that is not two distinct classes in 0-9.
    """
    for name, allowed in (("dataset", DATASETS), ("model", CELLS)):
        if getattr(cfg, name) not in allowed:
            msg = f"{name} must be one of {allowed}; got {getattr(cfg, name)!r}."
            raise ConfigError(msg)
    pair = cfg.pair
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(_is_int(c) and 0 <= c <= 9 for c in pair)
        or pair[0] == pair[1]
    ):
        msg = f"pair must be two distinct classes in 0-9, e.g. (3, 8); got {pair!r}."
        raise ConfigError(msg)
    sizes = ["hidden", "epochs", "batch_size", "probe_size", "seed"]
    for name in sizes + (["n_train"] if cfg.n_train is not None else []):
        check_int(getattr(cfg, name), name, minimum=0 if name == "seed" else 1)
    check_positive(cfg.lr, "lr", hint="Pass e.g. lr=1e-3.")


@functools.lru_cache(maxsize=4)
def _split(name: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    # A sweep worker runs many configs in one process: load each split once.
    return load_dataset(name, train=train)


def _pair_data(cfg: SeqMnistConfig, train: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (x, binary y, index into the split) of the pair's images, ``n_train`` per class."""
    x, y = _split(cfg.dataset, train)
    a, b = cfg.pair
    gen = torch.Generator().manual_seed(cfg.seed)
    keep = []
    for c in (a, b):
        idx = torch.nonzero(y == c).flatten()
        if train and cfg.n_train is not None:
            if cfg.n_train > len(idx):
                msg = (
                    f"n_train must be at most {len(idx)} (the {cfg.dataset} training images "
                    f"of class {c}); got {cfg.n_train}. Lower n_train or pass n_train=None."
                )
                raise ConfigError(msg)
            idx = idx[torch.randperm(len(idx), generator=gen)[: cfg.n_train]].sort().values
        keep.append(idx)
    index = torch.cat(keep).sort().values
    return x[index], (y[index] == b).long(), index


def train_seq_mnist(
    cfg: SeqMnistConfig, out: str | Path, *, progress: bool = True
) -> SeqMnistResult:
    """Train one binary GRU/LSTM on rows-as-time-steps images and record it into ``out/run.zarr``.

    Records layers ``rnn`` (hidden states, (n_probe, T, hidden) per snapshot) and ``head`` plus
    the logits, on a fixed stratified probe set from the pair's test images. Snapshots: one
    at initialisation and one at each epoch end. The recorder's ``epoch`` counts *completed*
    epochs: 0 at initialisation, e after epoch e (metrics logged while training epoch e carry
    epoch e). Metrics: ``loss``/``accuracy`` every step (training batch), ``test_loss``/
    ``test_accuracy`` on all of the pair's test images at initialisation and every epoch end.

    Parameters
    ----------
    cfg : SeqMnistConfig
        Data, model, optimisation (Adam, cross-entropy) and seed.
    out : str or path
        Output folder; the run store is ``out/run.zarr`` (replaced if present).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    SeqMnistResult

    Raises
    ------
    ConfigError
        A setting is invalid (see `validate_config`) or ``n_train`` exceeds the images of a class.
    """
    validate_config(cfg)
    torch.manual_seed(cfg.seed)
    x_tr, y_tr, _ = _pair_data(cfg, train=True)
    x_te, y_te, te_index = _pair_data(cfg, train=False)
    gen = torch.Generator().manual_seed(cfg.seed)  # label permutation, then batch order
    if cfg.shuffle_labels:
        y_tr = y_tr[torch.randperm(len(y_tr), generator=gen)]
    probe_idx = torch.from_numpy(
        stratified_probe(y_te, min(cfg.probe_size, len(y_te)), seed=cfg.seed)
    )
    width = round(x_tr.shape[1] ** 0.5)  # square images: 28 for MNIST, 8 for digits
    model = SequenceClassifier(input_size=width, hidden=cfg.hidden, n_classes=2, cell=cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.functional.cross_entropy
    store = Path(out) / "run.zarr"
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()

    @torch.no_grad()
    def evaluate(epoch: int) -> None:
        model.eval()
        logits = model(x_te)
        model.train()
        loss, acc = float(loss_fn(logits, y_te)), float((logits.argmax(1) == y_te).float().mean())
        rec.log(test_loss=loss, test_accuracy=acc)
        rec.snapshot()
        history.append({"epoch": epoch, "test_loss": loss, "test_accuracy": acc})

    with Recorder(
        model,
        layers=["rnn", "head"],
        store=store,
        probe=(x_te[probe_idx], y_te[probe_idx], te_index[probe_idx]),
        overwrite=True,
        config=asdict(cfg),
        seed=cfg.seed,
    ) as rec:
        evaluate(0)
        steps_per_epoch = -(-len(x_tr) // cfg.batch_size)
        label = f"{cfg.dataset} {cfg.model} {cfg.pair[0]}v{cfg.pair[1]}"
        bar = tqdm(total=cfg.epochs * steps_per_epoch, desc=label, disable=not progress)
        for epoch in range(1, cfg.epochs + 1):
            perm = torch.randperm(len(x_tr), generator=gen)
            for i in range(0, len(x_tr), cfg.batch_size):
                idx = perm[i : i + cfg.batch_size]
                logits = model(x_tr[idx])
                loss = loss_fn(logits, y_tr[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                accuracy = (logits.argmax(1) == y_tr[idx]).float().mean()
                rec.step(epoch=epoch, loss=loss.detach(), accuracy=accuracy)
                bar.update()
            evaluate(epoch)
            bar.set_postfix(test_acc=f"{history[-1]['test_accuracy']:.3f}")
        bar.close()
    return SeqMnistResult(
        store=store,
        test_accuracy=history[-1]["test_accuracy"],
        test_loss=history[-1]["test_loss"],
        n_steps=rec.step_,
        wall_s=time.perf_counter() - t0,
        history=history,
    )


def _heldout_accuracy(
    h: npt.NDArray[np.floating], y: npt.NDArray[np.int64], folds: int, seed: int
) -> dict[str, npt.NDArray[np.float64]]:
    """Return {readout: accuracy per time step (T,)} of stratified k-fold predictions of y."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier
    from threadpoolctl import threadpool_limits

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(h[:, 0], y))
    make = {
        "knn": lambda: KNeighborsClassifier(n_neighbors=3),
        "logreg": lambda: LogisticRegression(max_iter=1000),
    }
    out = {name: np.zeros(h.shape[1]) for name in READOUTS}
    # Hundreds of tiny fits: starting BLAS/OpenMP threads costs ~10x the fit itself.
    with threadpool_limits(limits=1):
        for t in range(h.shape[1]):
            for name in READOUTS:
                for fit, score in splits:
                    pred = make[name]().fit(h[fit, t], y[fit]).predict(h[score, t])
                    out[name][t] += np.count_nonzero(pred == y[score]) / len(y)
    return out


def readout_table(store: str | Path, *, folds: int = 2, seed: int = 0) -> pd.DataFrame:
    """Return held-out read-out accuracy of the ``rnn`` hidden states per snapshot and time step.

    Parameters
    ----------
    store : str or path
        A run store written by `train_seq_mnist` (layer ``rnn`` with acts of shape
        (n_snapshots, n_probe, T, hidden)).
    folds : int, default 2
        Stratified folds of the probe set; every probe sample is predicted once by a read-out
        fitted on the other folds.
    seed : int, default 0
        Seed of the fold assignment.

    Returns
    -------
    pandas.DataFrame
        One row per (snapshot, time step, read-out), columns ``epoch`` (completed epochs, 0 =
        initialisation), ``step``, ``t`` (1-based time step, 1..T), ``readout`` (`READOUTS`),
        ``accuracy`` (held-out fraction correct, in [0, 1]) and the epoch's ``train_loss``
        (mean training-batch loss of that epoch; NaN at epoch 0), ``test_loss`` and
        ``test_accuracy`` (all of the pair's test images), repeated on the epoch's rows.

    Raises
    ------
    ConfigError
        ``folds`` is not an int >= 2, or a class has fewer than ``folds`` probe samples.

    Notes
    -----
    features.md section 3.1: the authors score kNN (k=3) on the same training-batch states it
    was fitted on (resubstitution, which counts each point as its own neighbour); following
    section 3.5 this scores held-out predictions on the fixed probe set from the test split.
    """
    check_int(folds, "folds", minimum=2)
    run = open_run(store)
    y = np.asarray(run.targets, dtype=np.int64)
    counts = np.bincount(y, minlength=2)
    if counts.min() < folds:
        msg = (
            f"every class needs at least folds={folds} probe samples; got counts "
            f"{counts.tolist()}. Record a larger probe set (probe_size) or lower folds."
        )
        raise ConfigError(msg)
    m = run.metrics()
    per_epoch = pd.DataFrame(
        {
            "train_loss": m.groupby("epoch")["loss"].mean(),
            "test_loss": m.dropna(subset=["test_loss"]).groupby("epoch")["test_loss"].last(),
            "test_accuracy": m.dropna(subset=["test_loss"])
            .groupby("epoch")["test_accuracy"]
            .last(),
        }
    )
    rows = []
    for step, epoch in zip(run.steps, run.epochs, strict=True):
        acc = _heldout_accuracy(run.acts("rnn", int(step)), y, folds, seed)
        for name, values in acc.items():
            rows.append(
                pd.DataFrame(
                    {
                        "epoch": int(epoch),
                        "step": int(step),
                        "t": np.arange(1, len(values) + 1),
                        "readout": name,
                        "accuracy": values,
                    }
                )
            )
    table = pd.concat(rows, ignore_index=True)
    return table.join(per_epoch, on="epoch")
