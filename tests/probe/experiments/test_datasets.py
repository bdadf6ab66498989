"""Tests of probe.experiments.datasets: MNIST and digits loaders, dispatch, stratified probes."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from probe.errors import DatasetUnavailableError, ProbeError, SplitSizeError, UnknownDatasetError
from probe.experiments.datasets import (
    DATASETS,
    data_root,
    load_dataset,
    load_digits,
    load_mnist,
    stratified_probe,
)

N_DIGITS = 1797


# --------------------------------------------------------------------------- data_root


def test_data_root_uses_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("PROBE_DATA", str(tmp_path))
    assert data_root() == tmp_path


def test_data_root_default_is_user_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("PROBE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_root() == tmp_path / ".cache" / "probe" / "data"


# --------------------------------------------------------------------------- MNIST


def test_load_mnist_test_split(mnist_root):
    x, y = load_mnist(train=False, root=mnist_root)
    assert x.shape == (10_000, 784)
    assert x.dtype == torch.float32
    assert y.shape == (10_000,)
    assert y.dtype == torch.int64
    assert y[0].item() == 7
    assert set(y.unique().tolist()) == set(range(10))
    # Normalised with the training-set statistics: the test set is close to N(0, 1)
    # (measured: mean 0.0059, std 1.0077).
    assert abs(x.mean().item()) < 0.05
    assert abs(x.std().item() - 1.0) < 0.05
    # Black background pixels map to -mean/std.
    assert x.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)


def test_load_mnist_train_split(mnist_root):
    x, y = load_mnist(train=True, root=mnist_root)
    assert x.shape == (60_000, 784)
    assert x.dtype == torch.float32
    assert y.shape == (60_000,)
    assert y.dtype == torch.int64
    assert y[:5].tolist() == [5, 0, 4, 1, 9]
    assert abs(x.mean().item()) < 0.01
    assert abs(x.std().item() - 1.0) < 0.01


def test_load_mnist_default_root_is_probe_data(mnist_root, monkeypatch):
    monkeypatch.setenv("PROBE_DATA", str(mnist_root))
    x, y = load_mnist(train=False, download=False)
    assert x.shape == (10_000, 784)
    assert y[0].item() == 7


def test_load_dataset_mnist(mnist_root):
    x, y = load_dataset("mnist", train=False, root=mnist_root)
    assert x.shape == (10_000, 784)
    assert y[0].item() == 7


def test_load_mnist_missing_without_download(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="--dataset digits") as info:
        load_mnist(train=False, root=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "PROBE_DATA" in message
    assert isinstance(info.value, ProbeError)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.fixture
def offline(monkeypatch):
    """Make every torchvision MNIST download fail as on a machine without network."""
    import urllib.request

    import torchvision.datasets.mnist
    import torchvision.datasets.utils

    calls = []

    def fail(*args, **kwargs):
        calls.append(args)
        msg = "network is unreachable (test)"
        raise URLError(msg)

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", fail)
    monkeypatch.setattr(torchvision.datasets.utils, "download_url", fail)
    monkeypatch.setattr(urllib.request, "urlopen", fail)
    return calls


def test_load_mnist_download_fails_offline(tmp_path, offline, monkeypatch):
    monkeypatch.setenv("PROBE_DATA", str(tmp_path))
    with pytest.raises(DatasetUnavailableError, match="--dataset digits") as info:
        load_mnist(train=True)
    assert offline, "the download was not attempted"
    assert str(tmp_path) in str(info.value)
    assert "PROBE_DATA" in str(info.value)
    assert info.value.__cause__ is not None


def test_load_mnist_unwritable_root_is_unavailable(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("not a folder")
    with pytest.raises(DatasetUnavailableError, match=r"--dataset digits") as info:
        load_mnist(train=False, root=not_a_dir, download=True)
    assert isinstance(info.value.__cause__, OSError)


# --------------------------------------------------------------------------- digits


def _row_set(x: torch.Tensor) -> set[bytes]:
    return {row.tobytes() for row in x.numpy()}


def test_load_digits_shapes_and_dtypes():
    x_train, y_train = load_digits(train=True)
    x_test, y_test = load_digits(train=False)
    assert x_train.shape == (1347, 64)
    assert x_test.shape == (450, 64)
    assert len(x_train) + len(x_test) == N_DIGITS
    assert x_train.dtype == x_test.dtype == torch.float32
    assert y_train.dtype == y_test.dtype == torch.int64
    assert y_train.shape == (1347,)
    assert y_test.shape == (450,)


def test_load_digits_standardised_with_train_stats():
    x_train, _ = load_digits(train=True)
    mean = x_train.mean(0)
    std = x_train.std(0, unbiased=False)
    assert torch.allclose(mean, torch.zeros(64), atol=1e-5)
    varying = std > 0
    # Pixels constant in training are only centred (all zero); the others have unit std.
    assert torch.allclose(std[varying], torch.ones(int(varying.sum())), atol=1e-4)
    assert torch.all(x_train[:, ~varying] == 0)
    assert int(varying.sum()) > 55


def test_load_digits_deterministic_and_seeded():
    a = load_digits(train=False, seed=3)
    b = load_digits(train=False, seed=3)
    c = load_digits(train=False, seed=4)
    assert torch.equal(a[0], b[0])
    assert torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_load_digits_stratified():
    from sklearn.datasets import load_digits as sk_load_digits

    full = np.bincount(sk_load_digits().target)
    _, y_test = load_digits(train=False, test_fraction=0.25)
    _, y_train = load_digits(train=True, test_fraction=0.25)
    test_counts = np.bincount(y_test.numpy(), minlength=10)
    np.testing.assert_array_equal(test_counts, np.round(0.25 * full).astype(int))
    np.testing.assert_array_equal(np.bincount(y_train.numpy(), minlength=10), full - test_counts)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("test_fraction", [0.25, 0.5])
def test_load_digits_splits_partition_the_data(seed, test_fraction):
    # The 1797 digits images are distinct, and both splits go through the same per-pixel
    # (injective) standardisation, so distinct rows stay distinct.
    x_train, _ = load_digits(train=True, seed=seed, test_fraction=test_fraction)
    x_test, _ = load_digits(train=False, seed=seed, test_fraction=test_fraction)
    train_rows, test_rows = _row_set(x_train), _row_set(x_test)
    assert not train_rows & test_rows
    assert len(train_rows) + len(test_rows) == N_DIGITS


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_load_digits_bad_test_fraction(bad):
    with pytest.raises(SplitSizeError, match="test_fraction must be strictly between 0 and 1"):
        load_digits(train=True, test_fraction=bad)


def test_load_dataset_digits_matches_load_digits():
    x, y = load_dataset("digits", train=True, seed=2)
    x_ref, y_ref = load_digits(train=True, seed=2)
    assert torch.equal(x, x_ref)
    assert torch.equal(y, y_ref)


def test_load_dataset_unknown_name():
    with pytest.raises(UnknownDatasetError, match=r"dataset must be one of 'digits', 'mnist'"):
        load_dataset("cifar10", train=True)
    assert issubclass(UnknownDatasetError, ValueError)
    assert issubclass(UnknownDatasetError, ProbeError)
    assert DATASETS == ("digits", "mnist")


# --------------------------------------------------------------------------- stratified_probe


def test_stratified_probe_balanced():
    y = np.repeat(np.arange(10), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    for n in (1, 9, 10, 95, 100, 1001):
        idx = stratified_probe(y, n, seed=0)
        assert idx.shape == (n,)
        assert idx.dtype == np.int64
        assert len(np.unique(idx)) == n
        assert np.all(np.diff(idx) > 0), "indices must be sorted"
        counts = np.bincount(y[idx], minlength=10)
        assert counts.max() - counts.min() <= 1, (n, counts)


def test_stratified_probe_small_class_gives_all_it_has():
    y = np.array([0] * 2 + [1] * 50 + [2] * 50)
    idx = stratified_probe(y, 30, seed=1)
    counts = np.bincount(y[idx], minlength=3)
    assert counts.tolist() == [2, 14, 14]


def test_stratified_probe_whole_set():
    y = np.array([3, 1, 3, 2, 1])
    np.testing.assert_array_equal(stratified_probe(y, 5, seed=0), np.arange(5))


def test_stratified_probe_deterministic_and_seeded():
    y = np.random.default_rng(0).integers(0, 5, size=500)
    a = stratified_probe(y, 50, seed=7)
    b = stratified_probe(y, 50, seed=7)
    c = stratified_probe(y, 50, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_stratified_probe_accepts_tensor():
    y = np.random.default_rng(1).integers(0, 4, size=200)
    np.testing.assert_array_equal(
        stratified_probe(torch.from_numpy(y), 40, seed=0), stratified_probe(y, 40, seed=0)
    )


@pytest.mark.parametrize("n", [0, -1, 11])
def test_stratified_probe_bad_n(n):
    y = np.arange(10) % 2
    with pytest.raises(SplitSizeError, match=r"n must be between 1 and len\(y\) = 10"):
        stratified_probe(y, n, seed=0)
    assert issubclass(SplitSizeError, ValueError)


def test_stratified_probe_rejects_non_1d_labels():
    with pytest.raises(SplitSizeError, match="y must be 1-D"):
        stratified_probe(np.zeros((10, 2)), 3, seed=0)


def test_mnist_root_fixture_layout(mnist_root):
    assert isinstance(mnist_root, Path)
    assert (mnist_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").is_file()
