"""Recurrent classifiers reading an image row by row: `SequenceClassifier`, `RecurrentEncoder`.

The encoder returns the hidden state at every time step, shape (n, T, hidden), as a plain tensor,
so a `hooks.Recorder` on ``"rnn"`` stores it under ``acts`` (no tuple elements to pick from).
"""

from __future__ import annotations

import torch
from torch import nn

from probe.errors import InputShapeError, ModelConfigError

__all__ = ["CELLS", "RecurrentEncoder", "SequenceClassifier"]

#: Recurrent cells `RecurrentEncoder` accepts.
CELLS = ("gru", "lstm")


class RecurrentEncoder(nn.Module):
    """A batch-first GRU or LSTM that returns the top layer's hidden state at every step.

    ``nn.GRU`` / ``nn.LSTM`` return ``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``); this
    wrapper keeps ``output`` only, of shape (n, T, hidden): ``output[:, t]`` is h_{t+1}, the
    state after reading step t+1 (1-based). The initial state h_0 (and c_0) is zero.

    Parameters
    ----------
    input_size : int
        Features per time step d.
    hidden : int
        Hidden size H.
    cell : {"gru", "lstm"}
        Recurrent cell; the wrapped module is ``self.cell``.
    num_layers : int, default 1
        Stacked recurrent layers; only the top layer's states are returned.

    Raises
    ------
    ModelConfigError
        ``cell`` is not in `CELLS`, or a size is < 1.
    """

    def __init__(
        self, input_size: int, hidden: int, cell: str = "gru", num_layers: int = 1
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            msg = f"cell must be one of {CELLS}; got {cell!r}."
            raise ModelConfigError(msg)
        for name, value in (("input_size", input_size), ("hidden", hidden), ("layers", num_layers)):
            if value < 1:
                msg = f"{name} must be >= 1; got {value}. Pass a positive size."
                raise ModelConfigError(msg)
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.cell = rnn(input_size, hidden, num_layers=num_layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the hidden states, shape (n, T, hidden), of a batch x of shape (n, T, d)."""
        out, _ = self.cell(x)
        return out


class SequenceClassifier(nn.Module):
    """Read each sample as a sequence of rows and classify it from the last hidden state.

    A 28x28 MNIST image is 28 time steps of 28 pixels (``input_size=28``); an 8x8 digit is 8
    steps of 8. ``named_modules()`` yields ``rnn`` (`RecurrentEncoder`, output (n, T, hidden)),
    ``rnn.cell`` (the torch GRU/LSTM) and ``head`` (`torch.nn.Linear` on the last step, output
    (n, n_classes)). Default PyTorch initialisation.

    Parameters
    ----------
    input_size : int, default 28
        Features per time step d (the image width).
    hidden : int, default 64
        Hidden size of the recurrent cell.
    n_classes : int, default 10
        Number of logits.
    cell : {"gru", "lstm"}, default "gru"
        Recurrent cell.
    num_layers : int, default 1
        Stacked recurrent layers.

    Raises
    ------
    ModelConfigError
        Unknown ``cell`` or a size < 1.

    Examples
    --------
    >>> import torch
    >>> model = SequenceClassifier(input_size=8, hidden=5, n_classes=2)
    >>> x = torch.zeros(3, 64)  # three flattened 8x8 images
    >>> tuple(model(x).shape), tuple(model.rnn(model.as_sequence(x)).shape)
    ((3, 2), (3, 8, 5))
    """

    def __init__(
        self,
        input_size: int = 28,
        hidden: int = 64,
        n_classes: int = 10,
        cell: str = "gru",
        num_layers: int = 1,
    ) -> None:
        super().__init__()
        if n_classes < 1:
            msg = f"n_classes must be >= 1; got {n_classes}. Pass a positive size."
            raise ModelConfigError(msg)
        self.input_size = input_size
        self.rnn = RecurrentEncoder(input_size, hidden, cell, num_layers)
        self.head = nn.Linear(hidden, n_classes)

    def as_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Reshape a batch to (n, T, input_size), T = elements per sample / input_size.

        Parameters
        ----------
        x : torch.Tensor
            Shape (n, T, input_size), (n, T * input_size) or (n, 1, T, input_size).

        Returns
        -------
        torch.Tensor
            A view of shape (n, T, input_size), row-major: step t is image row t.

        Raises
        ------
        InputShapeError
            A sample's size is not a positive multiple of ``input_size``.
        """
        per_sample = x[0].numel() if x.ndim > 1 and len(x) else 0
        if x.ndim < 2 or per_sample == 0 or per_sample % self.input_size:
            msg = (
                f"input must have shape (n, T, {self.input_size}) or (n, ...) with a multiple "
                f"of {self.input_size} elements per sample; got {tuple(x.shape)}. Build the "
                "model with input_size equal to the image width."
            )
            raise InputShapeError(msg)
        return x.reshape(len(x), per_sample // self.input_size, self.input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape (n, n_classes) from the hidden state after the last row.

        Raises
        ------
        InputShapeError
            See `as_sequence`.
        """
        return self.head(self.rnn(self.as_sequence(x))[:, -1])
