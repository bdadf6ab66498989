"""The networks of the two-point experiments (van Rossem & Saxe 2024; docs/dynamics.md §1.5–1.6).

Four architectures of the authors' ``source/models.py``, each with ``xavier_normal_(gain)``
weights and zero biases. Every entry of the authors' activation list (``model(x)[1]``) is the
output of one module ``hidden.<i>``, so the settings table's hooked index ``i`` is the layer
``hidden.<i>`` here and a `hooks.Recorder` with ``layers="hidden.*"`` records them all:

- `TwoPointMLP`: ``depth`` blocks ``Linear -> phi`` and a linear readout ``out``.
- `TwoPointResNet`: the same blocks; from block 2 on, block ``n`` adds the output of block
  ``n - 2`` after its nonlinearity (the authors' ``a = a + activations[-2]``).
- `TwoPointCNN`: ``Linear(in, width) -> phi`` on a one-channel signal, then ``depth + 1``
  ``Conv1d`` (kernel 11, no padding; 20 channels, the last one 1) each ``-> phi``, then
  ``Linear`` readout of the remaining ``width - 10 (depth + 1)`` positions.
- `TwoPointDropout`: ``Dropout(0.1)`` before every Linear; the dropout outputs are activations
  of their own (``hidden.0, 2, 4, ...``), the blocks ``Linear -> phi`` are ``hidden.1, 3, ...``.

Use `two_point_model` to build one by the settings table's model name and `activation_count`
for how many ``hidden.<i>`` layers a model has.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from probe.errors import ModelConfigError

__all__ = [
    "ARCHITECTURES",
    "Dims",
    "NONLINEARITIES",
    "ConvBlock",
    "HiddenBlock",
    "SkipBlock",
    "TwoPointCNN",
    "TwoPointDropout",
    "TwoPointMLP",
    "TwoPointResNet",
    "activation_count",
    "two_point_model",
]

#: Nonlinearities of the authors' settings files; ``leaky_relu`` has negative slope 0.01.
NONLINEARITIES: dict[str, type[nn.Module] | None] = {
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "swish": nn.SiLU,
    "none": None,
}
Phi = type[nn.Module] | None


class Dims(NamedTuple):
    """Sizes of a two-point network: input, output, hidden width and depth."""

    in_dim: int
    out_dim: int
    width: int
    depth: int


#: The authors' CNN: kernel size and channels of every convolution but the last (1 channel).
CNN_KERNEL, CNN_CHANNELS = 11, 20
#: The authors' dropout probability.
DROPOUT_P = 0.1


class HiddenBlock(nn.Module):
    """``phi(linear(x))`` as one module, so its forward hook sees the post-nonlinearity output."""

    def __init__(self, d_in: int, d_out: int, phi: type[nn.Module] | None, *, bias: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=bias)
        self.phi = phi() if phi is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (n, ..., d_in) to (n, ..., d_out)."""
        return self.phi(self.linear(x))


class SkipBlock(HiddenBlock):
    """``phi(linear(x)) + skip``: a residual block whose hook sees the sum."""

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """Map (n, d_in) and an optional skip (n, d_out) to (n, d_out)."""
        a = self.phi(self.linear(x))
        return a if skip is None else a + skip


class ConvBlock(nn.Module):
    """``phi(conv(x))`` with an unpadded ``Conv1d`` of kernel `CNN_KERNEL`."""

    def __init__(self, c_in: int, c_out: int, phi: nn.Module, *, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size=CNN_KERNEL, bias=bias)
        self.phi = phi

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (n, c_in, length) to (n, c_out, length - kernel + 1)."""
        return self.phi(self.conv(x))


def _check(
    in_dim: int, out_dim: int, width: int, depth: int, nonlinearity: str, gain: float
) -> None:
    for name, value in (("in_dim", in_dim), ("out_dim", out_dim), ("width", width)):
        if value < 1:
            msg = f"{name} must be >= 1; got {value}."
            raise ModelConfigError(msg)
    if depth < 1:
        msg = f"depth (hidden layers) must be >= 1; got {depth}."
        raise ModelConfigError(msg)
    if nonlinearity not in NONLINEARITIES:
        msg = f"nonlinearity must be one of {sorted(NONLINEARITIES)}; got {nonlinearity!r}."
        raise ModelConfigError(msg)
    if not gain > 0:
        msg = f"gain must be > 0; got {gain}."
        raise ModelConfigError(msg)


def _init(model: nn.Module, gain: float) -> None:
    """``xavier_normal_(gain)`` on every Linear and Conv1d weight, zero biases (the authors')."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class TwoPointMLP(nn.Module):
    """MLP ``in_dim -> depth x [Linear(width), phi] -> Linear(out_dim)``.

    Parameters
    ----------
    in_dim, out_dim : int
        Input and output sizes (1 and 1 in the authors' two-point settings).
    width : int
        Width of every hidden layer (the CNN: length of the signal its first Linear makes).
    depth : int
        Number of hidden layers (>= 1; the CNN: of 20-channel convolutions).
    nonlinearity : str
        One of `NONLINEARITIES`; ``"none"`` makes a deep linear net.
    gain : float
        Gain of ``torch.nn.init.xavier_normal_`` for every weight (biases start at 0).
    bias : bool, default True
        Whether the Linear (and Conv1d) layers have biases.

    Raises
    ------
    ModelConfigError
        A size is < 1, ``gain`` is not > 0, or ``nonlinearity`` is unknown.

    Notes
    -----
    Weights are drawn from the global torch RNG (seed it first). The readout is ``out``. The
    other architectures subclass this one and take the same arguments (`two_point_model`);
    each builds its own ``hidden`` list and readout in ``_build``.
    """

    def __init__(
        self,
        in_dim: int = 1,
        out_dim: int = 1,
        width: int = 500,
        depth: int = 20,
        nonlinearity: str = "leaky_relu",
        gain: float = 1.0,
        *,
        bias: bool = True,
    ) -> None:
        super().__init__()
        _check(in_dim, out_dim, width, depth, nonlinearity, gain)
        dims = Dims(in_dim, out_dim, width, depth)
        self.hidden, self.out = self._build(dims, NONLINEARITIES[nonlinearity], bias)
        _init(self, gain)

    def _build(self, d: Dims, phi: Phi, bias: bool) -> tuple[nn.ModuleList, nn.Module]:
        sizes = [d.in_dim] + [d.width] * d.depth
        blocks = SkipBlock if isinstance(self, TwoPointResNet) else HiddenBlock
        hidden = nn.ModuleList(
            blocks(a, b, phi, bias=bias) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        return hidden, nn.Linear(d.width, d.out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (n, in_dim) to (n, out_dim)."""
        for block in self.hidden:
            x = block(x)
        return self.out(x)


class TwoPointResNet(TwoPointMLP):
    """`TwoPointMLP` whose block ``n >= 2`` adds block ``n - 2``'s output (authors' ``ResNet``).

    Same parameters as `TwoPointMLP`; ``hidden.<n>`` records ``phi(W_n a_{n-1} + b_n) + a_{n-2}``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (n, in_dim) to (n, out_dim)."""
        acts: list[torch.Tensor] = []
        for n, block in enumerate(self.hidden):
            acts.append(block(acts[-1] if acts else x, acts[-2] if n >= 2 else None))
        return self.out(acts[-1])


class TwoPointDropout(TwoPointMLP):
    """MLP with ``Dropout(0.1)`` before every Linear (authors' ``Dropout`` model).

    Same parameters as `TwoPointMLP`. ``hidden`` holds ``2 depth + 1`` modules, the authors'
    activation list: dropout of the input, block 0, dropout, block 1, ..., block ``depth - 1``,
    dropout; then the readout ``out``. In eval mode (how the recorder and the authors capture) a
    dropout output equals the block output before it.
    """

    def _build(self, d: Dims, phi: Phi, bias: bool) -> tuple[nn.ModuleList, nn.Module]:
        sizes = [d.in_dim] + [d.width] * d.depth
        mods: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            mods += [nn.Dropout(DROPOUT_P), HiddenBlock(a, b, phi, bias=bias)]
        hidden = nn.ModuleList([*mods, nn.Dropout(DROPOUT_P)])
        return hidden, nn.Linear(d.width, d.out_dim, bias=bias)


class TwoPointCNN(TwoPointMLP):
    """1-D CNN of the authors' ``CNN`` model.

    Same parameters as `TwoPointMLP`; ``width`` is the length of the signal the first Linear
    makes, ``depth`` the number of 20-channel convolutions. ``hidden`` holds ``depth + 2``
    blocks: ``hidden.0`` (n, 1, width), ``hidden.k`` (n, 20, width - 10 k) for k = 1 .. depth,
    ``hidden.{depth+1}`` (n, 1, width - 10 (depth + 1)).

    Raises
    ------
    ModelConfigError
        As `TwoPointMLP`, or ``width - 10 (depth + 1) < 1`` (the convolutions use up the signal).

    Notes
    -----
    The authors size the readout as ``width - 11 depth``, which equals the remaining length
    ``width - 10 (depth + 1)`` only at ``depth = 10`` (their setting); this class uses the
    remaining length, so other depths work too.
    """

    def _build(self, d: Dims, phi: Phi, bias: bool) -> tuple[nn.ModuleList, nn.Module]:
        length = d.width - (CNN_KERNEL - 1) * (d.depth + 1)
        if length < 1:
            msg = (
                f"width must exceed 10 * (depth + 1) = {10 * (d.depth + 1)} for the CNN's "
                f"unpadded convolutions; got width {d.width}, depth {d.depth}."
            )
            raise ModelConfigError(msg)
        channels = [1] + [CNN_CHANNELS] * d.depth + [1]
        blocks: list[nn.Module] = [HiddenBlock(d.in_dim, d.width, phi, bias=bias)]
        for a, b in zip(channels[:-1], channels[1:], strict=True):
            blocks.append(ConvBlock(a, b, phi() if phi is not None else nn.Identity(), bias=bias))
        return nn.ModuleList(blocks), nn.Linear(length, d.out_dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (n, in_dim) to (n, out_dim)."""
        return super().forward(x.unsqueeze(1)).flatten(1)


#: The model column of the authors' settings table -> class.
ARCHITECTURES: dict[str, type[nn.Module]] = {
    "MLP": TwoPointMLP,
    "ResNet": TwoPointResNet,
    "CNN": TwoPointCNN,
    "Dropout": TwoPointDropout,
}


def activation_count(architecture: str, depth: int) -> int:
    """Return how many ``hidden.<i>`` layers (authors' activations) a model of ``depth`` has.

    Raises
    ------
    ModelConfigError
        ``architecture`` is not one of `ARCHITECTURES`.

    Examples
    --------
    >>> activation_count("MLP", 20), activation_count("CNN", 10), activation_count("Dropout", 10)
    (20, 12, 21)
    """
    counts = {"MLP": depth, "ResNet": depth, "CNN": depth + 2, "Dropout": 2 * depth + 1}
    if architecture not in counts:
        msg = f"architecture must be one of {sorted(ARCHITECTURES)}; got {architecture!r}."
        raise ModelConfigError(msg)
    return counts[architecture]


def two_point_model(
    architecture: str,
    in_dim: int,
    out_dim: int,
    width: int,
    depth: int,
    nonlinearity: str,
    gain: float,
) -> nn.Module:
    """Build one of `ARCHITECTURES` (seed the torch RNG first).

    Raises
    ------
    ModelConfigError
        Unknown ``architecture``, or what the class itself refuses.
    """
    activation_count(architecture, depth)
    return ARCHITECTURES[architecture](in_dim, out_dim, width, depth, nonlinearity, gain)
