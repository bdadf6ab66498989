"""Datasets for the toolkit: MNIST (torchvision) and scikit-learn's bundled 8x8 digits.

Every loader returns ``(x, y)``: float32 images flattened to ``(n, d)`` and int64 labels
``(n,)``. `stratified_probe` picks a class-balanced, deterministic probe subset.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import numpy.typing as npt
import torch

from probe.errors import DatasetUnavailableError, SplitSizeError, UnknownDatasetError

__all__ = [
    "DATASETS",
    "MNIST_MEAN",
    "MNIST_STD",
    "data_root",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "stratified_probe",
]

#: Mean and standard deviation of the MNIST training pixels (scaled to [0, 1]).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

#: Names accepted by `load_dataset`.
DATASETS = ("digits", "mnist")

_ENV_VAR = "PROBE_DATA"


def data_root() -> Path:
    """Return the folder datasets are read from and downloaded into.

    Returns
    -------
    pathlib.Path
        ``$PROBE_DATA`` when that environment variable is set (and not empty), else
        ``~/.cache/probe/data``. The folder is not created.
    """
    env = os.environ.get(_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "probe" / "data"


def load_mnist(
    train: bool, root: str | os.PathLike[str] | None = None, download: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an MNIST split through ``torchvision.datasets.MNIST``.

    torchvision looks for the archives in ``root/MNIST/raw/*.gz``; when they are there it
    verifies their MD5 and extracts them without touching the network. Otherwise, with
    ``download=True``, it downloads them.

    Parameters
    ----------
    train : bool
        The 60,000-image training split if True, else the 10,000-image test split.
    root : str or os.PathLike, optional
        Data root holding ``MNIST/raw``; defaults to `data_root()`.
    download : bool, default True
        Let torchvision extract (and, if missing, download) the archives.

    Returns
    -------
    x : torch.Tensor
        Images, float32 of shape (n, 784), pixels scaled to [0, 1] then normalised with
        ``(p - MNIST_MEAN) / MNIST_STD`` (0.1307, 0.3081).
    y : torch.Tensor
        Labels 0-9, int64 of shape (n,).

    Raises
    ------
    DatasetUnavailableError
        The data is not under ``root`` and could not be downloaded (offline machine, no
        archives, corrupted archives, unwritable root).
    """
    from torchvision.datasets import MNIST

    root_path = Path(root).expanduser() if root is not None else data_root()
    try:
        ds = MNIST(str(root_path), train=train, download=download)
    except (RuntimeError, URLError, OSError) as err:
        split = "train" if train else "test"
        msg = (
            f"MNIST ({split} split) must be under the data root {root_path} "
            f"(as {root_path / 'MNIST' / 'raw'}/*.gz) or downloadable; got neither "
            f"({type(err).__name__}: {str(err).strip()}). Copy the four MNIST .gz archives "
            f"there or set the {_ENV_VAR} environment variable to a folder that holds "
            "MNIST/raw/*.gz; offline, use --dataset digits (scikit-learn's bundled 8x8 digits)."
        )
        raise DatasetUnavailableError(msg) from err
    x = ds.data.reshape(len(ds.data), -1).to(torch.float32).div_(255.0)
    x = x.sub_(MNIST_MEAN).div_(MNIST_STD)
    y = ds.targets.to(torch.int64)
    return x, y


def load_digits(
    train: bool, seed: int = 0, test_fraction: float = 0.25
) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a split of scikit-learn's bundled 8x8 digits (1,797 images, offline).

    The split is stratified and deterministic for a seed: within each class a seeded
    permutation sends ``round(test_fraction * n_class)`` images to the test split and the
    rest to the training split; both keep the original order. Features are standardised
    per pixel with the *training* split's mean and std (pixels constant in training,
    i.e. std 0, are only centred).

    Parameters
    ----------
    train : bool
        The training split if True, else the test split.
    seed : int, default 0
        Seed of the split.
    test_fraction : float, default 0.25
        Share of each class that goes to the test split, in the open interval (0, 1).

    Returns
    -------
    x : torch.Tensor
        Images, float32 of shape (n, 64) (8x8 flattened row-major), standardised.
    y : torch.Tensor
        Labels 0-9, int64 of shape (n,).

    Raises
    ------
    SplitSizeError
        ``test_fraction`` is not strictly between 0 and 1.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    if not 0.0 < test_fraction < 1.0:
        msg = (
            f"test_fraction must be strictly between 0 and 1; got {test_fraction!r}. "
            "Pass e.g. test_fraction=0.25."
        )
        raise SplitSizeError(msg)
    bunch = _sk_load_digits()
    images = np.asarray(bunch.data, dtype=np.float64)
    labels = np.asarray(bunch.target, dtype=np.int64)

    rng = np.random.default_rng(seed)
    is_test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_test = int(round(test_fraction * len(idx)))
        is_test[rng.permutation(idx)[:n_test]] = True

    train_x = images[~is_test]
    mean = train_x.mean(axis=0)
    std = train_x.std(axis=0)
    std[std == 0] = 1.0
    keep = ~is_test if train else is_test
    x = (images[keep] - mean) / std
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(labels[keep])


def load_dataset(name: str, train: bool, **kw: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a split of a dataset by name.

    Parameters
    ----------
    name : {"mnist", "digits"}
        ``"mnist"`` dispatches to `load_mnist`, ``"digits"`` to `load_digits`.
    train : bool
        The training split if True, else the test split.
    **kw
        Passed on to the loader (``root``/``download`` for MNIST, ``seed``/``test_fraction``
        for digits).

    Returns
    -------
    x : torch.Tensor
        Images, float32 of shape (n, d): d = 784 for MNIST, 64 for digits.
    y : torch.Tensor
        Labels, int64 of shape (n,).

    Raises
    ------
    UnknownDatasetError
        ``name`` is not one of `DATASETS`.
    """
    if name == "mnist":
        return load_mnist(train, **kw)
    if name == "digits":
        return load_digits(train, **kw)
    valid = ", ".join(repr(d) for d in DATASETS)
    msg = (
        f"dataset must be one of {valid}; got {name!r}. "
        "Use 'mnist' (downloads once) or 'digits' (bundled, works offline)."
    )
    raise UnknownDatasetError(msg)


def stratified_probe(y: npt.ArrayLike | torch.Tensor, n: int, seed: int) -> npt.NDArray[np.int64]:
    """Pick ``n`` sample indices spread as evenly as possible over the classes of ``y``.

    Every class gets ``n // k`` samples (k classes) and a seeded random subset of classes
    one more; a class with fewer samples than its share gives all it has and the rest is
    spread over the others. So per-class counts differ by at most 1 whenever every class
    has at least ``ceil(n / k)`` samples. The same ``(y, n, seed)`` always gives the same
    indices.

    Parameters
    ----------
    y : array-like or torch.Tensor
        Class labels, shape (N,).
    n : int
        Number of samples to pick, 1 <= n <= N.
    seed : int
        Seed of the choice.

    Returns
    -------
    numpy.ndarray
        Sorted, distinct int64 indices into ``y``, shape (n,).

    Raises
    ------
    SplitSizeError
        ``y`` is not 1-D, or ``n`` is outside [1, N].
    """
    labels = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if labels.ndim != 1:
        msg = (
            f"y must be 1-D (one label per sample); got shape {labels.shape}. "
            "Pass the label vector, not one-hot or image arrays."
        )
        raise SplitSizeError(msg)
    if not 1 <= n <= len(labels):
        msg = (
            f"n must be between 1 and len(y) = {len(labels)}; got {n}. "
            f"Ask for at most {len(labels)} samples."
        )
        raise SplitSizeError(msg)

    rng = np.random.default_rng(seed)
    classes, inverse, caps = np.unique(labels, return_inverse=True, return_counts=True)
    alloc = np.zeros(len(classes), dtype=np.int64)
    remaining = n
    while remaining > 0:
        open_ = np.flatnonzero(alloc < caps)
        share = remaining // len(open_)
        if share == 0:
            alloc[rng.choice(open_, size=remaining, replace=False)] += 1
            break
        add = np.minimum(share, caps[open_] - alloc[open_])
        alloc[open_] += add
        remaining -= int(add.sum())

    picked = [
        rng.choice(np.flatnonzero(inverse == c), size=int(k), replace=False)
        for c, k in enumerate(alloc)
        if k > 0
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)
