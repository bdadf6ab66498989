"""The MLP of the two-point experiments (van Rossem & Saxe 2024; docs/dynamics.md §1.5–1.6).

`TwoPointMLP` is ``depth`` hidden blocks ``Linear -> nonlinearity`` and a linear readout, with
``xavier_normal_(gain)`` weights and zero biases, like the authors' ``MLP`` model. Each hidden block
is the module ``hidden.<i>``, whose output is the post-nonlinearity activation the authors hook
(``model(x)[1][i]``), so a `hooks.Recorder` with ``layers="hidden.*"`` records every hidden layer.
"""

from __future__ import annotations

import torch
from torch import nn

from probe.errors import ModelConfigError

__all__ = ["NONLINEARITIES", "HiddenBlock", "TwoPointMLP"]

#: Nonlinearities of the authors' settings files; ``leaky_relu`` has negative slope 0.01.
NONLINEARITIES: dict[str, type[nn.Module] | None] = {
    "leaky_relu": nn.LeakyReLU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "swish": nn.SiLU,
    "none": None,
}


class HiddenBlock(nn.Module):
    """``phi(linear(x))`` as one module, so its forward hook sees the post-nonlinearity output."""

    def __init__(self, d_in: int, d_out: int, phi: type[nn.Module] | None, *, bias: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=bias)
        self.phi = phi() if phi is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (n, d_in) to (n, d_out)."""
        return self.phi(self.linear(x))


class TwoPointMLP(nn.Module):
    """MLP ``in_dim -> depth x [Linear(width), phi] -> Linear(out_dim)``.

    Parameters
    ----------
    in_dim, out_dim : int
        Input and output sizes (1 and 1 in the authors' two-point settings).
    width : int
        Width of every hidden layer.
    depth : int
        Number of hidden layers (>= 1).
    nonlinearity : str
        One of `NONLINEARITIES`; ``"none"`` makes a deep linear net.
    gain : float
        Gain of ``torch.nn.init.xavier_normal_`` for every weight (biases start at 0).
    bias : bool, default True
        Whether the Linear layers have biases.

    Raises
    ------
    ModelConfigError
        A size is < 1, ``gain`` is not > 0, or ``nonlinearity`` is unknown.

    Notes
    -----
    Weights are drawn from the global torch RNG (seed it first). The readout is ``out``.
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
        phi = NONLINEARITIES[nonlinearity]
        sizes = [in_dim] + [width] * depth
        self.hidden = nn.ModuleList(
            HiddenBlock(a, b, phi, bias=bias) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )
        self.out = nn.Linear(width, out_dim, bias=bias)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight, gain=gain)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map (n, in_dim) to (n, out_dim)."""
        for block in self.hidden:
            x = block(x)
        return self.out(x)
