"""Polynomial tasks of the finetune-speed experiment: the base task, A and B, the x-grid.

A `PolyTask` holds a polynomial with its two-factor (ProductNet) and two-term (SumNet) forms;
`NETS`, `METRICS` and the other constants are shared by the experiment and its report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.polynomial import polynomial as P

from probe.errors import FinetuneConfigError
from probe.models import ProductNet, SumNet, TwoBranchNet

__all__ = [
    "BASE_TASK",
    "BRANCHES",
    "FINETUNE_TASKS",
    "METRICS",
    "NETS",
    "PRIMARY_METRIC",
    "X_RANGE",
    "PolyTask",
    "grid",
]

X_RANGE = (-2.0, 2.0)
NETS: dict[str, type[TwoBranchNet]] = {"ProductNet": ProductNet, "SumNet": SumNet}
METRICS = ("auc_log10_loss", "steps_to_threshold", "final_loss")
PRIMARY_METRIC = "auc_log10_loss"
BRANCHES = ("branch1", "branch2")


def _poly_str(coeffs: tuple[float, ...]) -> str:
    """Return ``coeffs`` (increasing powers) as text in decreasing powers: ``'x^2 + 2x + 1'``."""
    parts = []
    for k in reversed(range(len(coeffs))):
        v = coeffs[k]
        if v:
            number = "" if v == 1 and k > 0 else f"{v:g}"
            parts.append(number + ("" if k == 0 else "x" if k == 1 else f"x^{k}"))
    return " + ".join(parts) or "0"


@dataclass(frozen=True)
class PolyTask:
    """A polynomial target on x with its two-factor and two-term forms.

    Polynomials are coefficient tuples in increasing powers: ``(c0, c1, c2)`` is
    c0 + c1 x + c2 x^2.

    Parameters
    ----------
    name : str
        Short name (``"base"``, ``"A"``, ``"B"``).
    coeffs : tuple of float
        The target y(x).
    factors : tuple of two coefficient tuples
        Two polynomials whose product is ``coeffs`` (the ProductNet branch targets).
    terms : tuple of two coefficient tuples
        Two polynomials whose sum is ``coeffs`` (the SumNet branch targets).

    Raises
    ------
    FinetuneConfigError
        ``factors`` do not multiply, or ``terms`` do not add, to ``coeffs``.
    """

    name: str
    coeffs: tuple[float, ...]
    factors: tuple[tuple[float, ...], tuple[float, ...]]
    terms: tuple[tuple[float, ...], tuple[float, ...]]

    def __post_init__(self) -> None:
        want = np.trim_zeros(np.asarray(self.coeffs, dtype=np.float64), "b")
        for form, got in (
            ("factors", P.polymul(*self.factors)),
            ("terms", P.polyadd(*self.terms)),
        ):
            got = np.trim_zeros(np.asarray(got, dtype=np.float64), "b")
            if got.shape != want.shape or not np.allclose(got, want, rtol=0.0, atol=1e-12):
                msg = (
                    f"task {self.name!r}: {form} must combine to coeffs {list(self.coeffs)}; "
                    f"got {got.tolist()}. Fix the {form} or the coefficients."
                )
                raise FinetuneConfigError(msg)

    @staticmethod
    def _eval(coeffs: tuple[float, ...], x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros_like(x)
        for c in reversed(coeffs):
            y = y * x + c
        return y

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Return y(x), same shape as ``x`` (e.g. (n, 1))."""
        return self._eval(self.coeffs, x)

    def factor_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the two factors evaluated at ``x``, each of the shape of ``x``."""
        return self._eval(self.factors[0], x), self._eval(self.factors[1], x)

    def term_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the two terms evaluated at ``x``, each of the shape of ``x``."""
        return self._eval(self.terms[0], x), self._eval(self.terms[1], x)

    def branch_targets(
        self, net: TwoBranchNet, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the branch targets of ``net`` at ``x``: factors for ProductNet, else terms."""
        return self.factor_values(x) if isinstance(net, ProductNet) else self.term_values(x)

    def describe(self) -> str:
        """Return the factor form and the expansion, e.g. ``'(x + 1)(x + 2) = x^2 + 3x + 2'``."""
        f1, f2 = (_poly_str(f) for f in self.factors)
        return f"({f1})({f2}) = {_poly_str(self.coeffs)}"


#: y = (x+1)^2: ProductNet branches learn x+1 and x+1, SumNet branches x^2 and 2x+1.
BASE_TASK = PolyTask(
    "base",
    coeffs=(1.0, 2.0, 1.0),
    factors=((1.0, 1.0), (1.0, 1.0)),
    terms=((0.0, 0.0, 1.0), (1.0, 2.0)),
)
#: A changes one factor (x+1 -> x+2); B changes only the linear term (2x+1 -> 2.5x+1).
FINETUNE_TASKS = {
    "A": PolyTask(
        "A",
        coeffs=(2.0, 3.0, 1.0),
        factors=((1.0, 1.0), (2.0, 1.0)),
        terms=((0.0, 0.0, 1.0), (2.0, 3.0)),
    ),
    "B": PolyTask(
        "B",
        coeffs=(1.0, 2.5, 1.0),
        factors=((2.0, 1.0), (0.5, 1.0)),
        terms=((0.0, 0.0, 1.0), (1.0, 2.5)),
    ),
}


def grid(n: int) -> torch.Tensor:
    """Return the fixed input grid: ``n`` equally spaced x in `X_RANGE`, shape (n, 1), float32."""
    return torch.linspace(*X_RANGE, n).reshape(-1, 1)
