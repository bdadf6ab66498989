"""Two-branch scalar regressors: branch outputs multiplied (`ProductNet`) or added (`SumNet`).

Both map x of shape (n, 1) to y of shape (n, 1) through two identical tanh MLP branches
``branch1`` and ``branch2``; only the way the two scalar branch outputs are combined differs.
"""

from __future__ import annotations

import abc

import torch
from torch import nn

from probe.errors import InputShapeError, ModelConfigError

__all__ = ["ProductNet", "SumNet", "TwoBranchNet"]


def _branch(width: int, depth: int) -> nn.Sequential:
    """Return Linear(1, w), Tanh, (depth - 1) x [Linear(w, w), Tanh], Linear(w, 1) for w = width."""
    widths = [1] + [width] * depth
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b), nn.Tanh()]
    layers.append(nn.Linear(width, 1))
    return nn.Sequential(*layers)


class TwoBranchNet(nn.Module, abc.ABC):
    """Two tanh MLP branches applied to the same scalar input; subclasses define `combine`.

    ``named_modules()`` yields ``branch1`` and ``branch2``, each a `torch.nn.Sequential` of
    ``Linear(1, width)``, ``Tanh``, then ``depth - 1`` times ``Linear(width, width)``, ``Tanh``,
    and a readout ``Linear(width, 1)``. So ``branch1`` is the branch's scalar output (n, 1),
    ``branch1.{2k+1}`` is the k-th hidden tanh layer (n, width) and ``branch1.{2 depth}`` the
    readout. Tanh is used because it is smooth: a low-degree polynomial on a bounded interval is
    then fitted by a smooth function, without the kinks of a ReLU net. Weights use PyTorch's
    default `torch.nn.Linear` init, drawn from the global torch RNG (seed it before building).

    Parameters
    ----------
    width : int, default 32
        Width of every hidden layer of both branches.
    depth : int, default 2
        Number of hidden tanh layers per branch.

    Raises
    ------
    ModelConfigError
        ``width`` or ``depth`` is < 1.
    """

    def __init__(self, width: int = 32, depth: int = 2) -> None:
        super().__init__()
        for name, value in (("width", width), ("depth", depth)):
            if value < 1:
                msg = f"{name} must be >= 1; got {value}. Pass a positive size."
                raise ModelConfigError(msg)
        self.width = width
        self.depth = depth
        self.branch1 = _branch(width, depth)
        self.branch2 = _branch(width, depth)

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the two branch outputs.

        Parameters
        ----------
        x : torch.Tensor
            Inputs of shape (n, 1).

        Returns
        -------
        tuple of torch.Tensor
            ``(branch1(x), branch2(x))``, each of shape (n, 1).

        Raises
        ------
        InputShapeError
            ``x`` is not of shape (n, 1).
        """
        if x.ndim != 2 or x.shape[1] != 1:
            msg = (
                f"input must have shape (n, 1); got {tuple(x.shape)}. "
                "Reshape a vector of scalars with x.reshape(-1, 1)."
            )
            raise InputShapeError(msg)
        return self.branch1(x), self.branch2(x)

    @staticmethod
    @abc.abstractmethod
    def combine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Combine the branch outputs ``a`` and ``b`` (each (n, 1)) into the output (n, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Compute ``combine(branch1(x), branch2(x))``.

        Parameters
        ----------
        x : torch.Tensor
            Inputs of shape (n, 1).

        Returns
        -------
        torch.Tensor
            Outputs of shape (n, 1).

        Raises
        ------
        InputShapeError
            ``x`` is not of shape (n, 1).
        """
        return self.combine(*self.branches(x))


class ProductNet(TwoBranchNet):
    """``y = g1(x) * g2(x)`` with tanh MLP branches ``branch1`` = g1, ``branch2`` = g2.

    See `TwoBranchNet` for the parameters and the submodule names.
    """

    @staticmethod
    def combine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Return the elementwise product ``a * b`` of shape (n, 1)."""
        return a * b


class SumNet(TwoBranchNet):
    """``y = h1(x) + h2(x)`` with tanh MLP branches ``branch1`` = h1, ``branch2`` = h2.

    See `TwoBranchNet` for the parameters and the submodule names.
    """

    @staticmethod
    def combine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Return the elementwise sum ``a + b`` of shape (n, 1)."""
        return a + b
