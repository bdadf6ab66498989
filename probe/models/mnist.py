"""MNIST-sized classifiers: a leaky-ReLU `MLP` and a two-block `CNN`.

Both take flattened images (n, d) or image batches (n, 1, s, s) and return logits
(n, n_classes). Submodule names are stable, so hooks can address layers by name.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from probe.errors import InputShapeError, ModelConfigError

__all__ = ["CNN", "MLP"]


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        msg = f"{name} must be >= 1; got {value}. Pass a positive size."
        raise ModelConfigError(msg)


class MLP(nn.Module):
    """Fully connected classifier with leaky-ReLU hidden layers.

    ``named_modules()`` yields ``layers.0`` ... ``layers.{depth-1}`` (`torch.nn.Linear`),
    ``acts.0`` ... ``acts.{depth-1}`` (`torch.nn.LeakyReLU`, applied after the matching
    layer) and the readout ``head`` (`torch.nn.Linear`).

    Every linear layer (hidden layers and head) is initialised Kaiming-normal style for
    leaky ReLU, scaled by ``gain``: weights are drawn from N(0, std^2) with

        std = gain * sqrt(2 / ((1 + negative_slope**2) * fan_in)),

    ``fan_in`` being the layer's number of inputs; biases are zero. With ``gain=1`` this is
    ``torch.nn.init.kaiming_normal_(w, a=negative_slope, nonlinearity="leaky_relu")``.

    Parameters
    ----------
    in_features : int, default 784
        Input size d (784 for 28x28 MNIST, 64 for 8x8 digits).
    hidden : int, default 200
        Width of every hidden layer.
    depth : int, default 4
        Number of hidden layers.
    n_classes : int, default 10
        Number of logits.
    gain : float, default 1.0
        Multiplier of the initial weight std.
    negative_slope : float, default 0.01
        Slope of the leaky ReLU for negative inputs (also used by the init).

    Raises
    ------
    ModelConfigError
        A size is < 1 or ``gain`` is not positive.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: int = 200,
        depth: int = 4,
        n_classes: int = 10,
        gain: float = 1.0,
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_features", in_features),
            ("hidden", hidden),
            ("depth", depth),
            ("n_classes", n_classes),
        ):
            _check_positive(name, value)
        if not gain > 0:
            msg = f"gain must be > 0; got {gain}. Pass e.g. gain=1.0."
            raise ModelConfigError(msg)
        self.in_features = in_features
        self.gain = gain
        self.negative_slope = negative_slope
        widths = [in_features] + [hidden] * depth
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.acts = nn.ModuleList(nn.LeakyReLU(negative_slope) for _ in range(depth))
        self.head = nn.Linear(hidden, n_classes)
        self.reset_parameters()

    def init_std(self, fan_in: int) -> float:
        """Return the initial weight std of a linear layer with ``fan_in`` inputs.

        Parameters
        ----------
        fan_in : int
            Number of inputs of the layer.

        Returns
        -------
        float
            ``gain * sqrt(2 / ((1 + negative_slope**2) * fan_in))``.
        """
        return self.gain * math.sqrt(2.0 / ((1.0 + self.negative_slope**2) * fan_in))

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Re-draw every weight with `init_std` of its fan-in and zero every bias."""
        for linear in [*self.layers, self.head]:
            nn.init.normal_(linear.weight, mean=0.0, std=self.init_std(linear.in_features))
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute logits.

        Parameters
        ----------
        x : torch.Tensor
            Shape (n, in_features) or any (n, ...) with ``in_features`` elements per
            sample, e.g. (n, 1, 28, 28).

        Returns
        -------
        torch.Tensor
            Logits of shape (n, n_classes).

        Raises
        ------
        InputShapeError
            A sample does not have ``in_features`` elements.
        """
        x = x.flatten(1) if x.ndim > 1 else x
        if x.ndim != 2 or x.shape[1] != self.in_features:
            msg = (
                f"input must have shape (n, {self.in_features}) or (n, ...) with "
                f"{self.in_features} elements per sample; got {tuple(x.shape)}. "
                "Flatten the images or build the MLP with a matching in_features."
            )
            raise InputShapeError(msg)
        for layer, act in zip(self.layers, self.acts, strict=True):
            x = act(layer(x))
        return self.head(x)


class CNN(nn.Module):
    """Two-block convolutional classifier for square one-channel images.

    ``named_modules()`` yields ``conv1`` and ``conv2`` (each a `torch.nn.Sequential` of
    Conv2d 3x3 padding 1, ReLU, MaxPool2d 2), ``fc1`` (`torch.nn.Sequential` of Linear,
    ReLU) and the readout ``head`` (`torch.nn.Linear`). Capturing ``conv1`` / ``conv2`` /
    ``fc1`` therefore gives post-activation (post-pooling) outputs. Default PyTorch init.

    Shapes for ``image_size`` s and ``channels`` (c1, c2), with p = (s // 2) // 2:
    input (n, 1, s, s) -> conv1 (n, c1, s//2, s//2) -> conv2 (n, c2, p, p) ->
    fc1 (n, hidden) -> head (n, n_classes).

    Parameters
    ----------
    n_classes : int, default 10
        Number of logits.
    channels : tuple of int, default (32, 64)
        Output channels of ``conv1`` and ``conv2``.
    hidden : int, default 128
        Width of ``fc1``.
    image_size : int, default 28
        Side s of the square input images (28 for MNIST, 8 for digits); must be >= 4.

    Raises
    ------
    ModelConfigError
        ``channels`` does not hold two positive sizes, or a size is out of range.
    """

    def __init__(
        self,
        n_classes: int = 10,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 128,
        image_size: int = 28,
    ) -> None:
        super().__init__()
        if len(channels) != 2:
            msg = (
                f"channels must hold two sizes (conv1, conv2); got {channels!r}. "
                "Pass e.g. (32, 64)."
            )
            raise ModelConfigError(msg)
        c1, c2 = channels
        for name, value in (
            ("n_classes", n_classes),
            ("channels[0]", c1),
            ("channels[1]", c2),
            ("hidden", hidden),
        ):
            _check_positive(name, value)
        if image_size < 4:
            msg = (
                f"image_size must be >= 4 (two 2x2 poolings); got {image_size}. "
                "Use 28 for MNIST or 8 for digits."
            )
            raise ModelConfigError(msg)
        self.image_size = image_size
        pooled = (image_size // 2) // 2
        self.conv1 = nn.Sequential(nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.fc1 = nn.Sequential(nn.Linear(c2 * pooled * pooled, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute logits.

        Parameters
        ----------
        x : torch.Tensor
            Shape (n, s*s) or (n, 1, s, s), s = ``image_size``.

        Returns
        -------
        torch.Tensor
            Logits of shape (n, n_classes).

        Raises
        ------
        InputShapeError
            ``x`` has another shape.
        """
        s = self.image_size
        if not (
            (x.ndim == 2 and x.shape[1] == s * s)
            or (x.ndim == 4 and tuple(x.shape[1:]) == (1, s, s))
        ):
            msg = (
                f"input must have shape (n, {s * s}) or (n, 1, {s}, {s}); got {tuple(x.shape)}. "
                "Build the CNN with the image_size of your data."
            )
            raise InputShapeError(msg)
        x = x.reshape(len(x), 1, s, s)
        x = self.conv2(self.conv1(x))
        return self.head(self.fc1(x.flatten(1)))
