"""Settings of the two-point experiments: the authors' table and `TwoPointsConfig`.

docs/dynamics.md §1.5–1.6 (van Rossem & Saxe 2024, ``experiments/model_settings/2 points.txt``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

from probe.errors import ConfigError, ModelConfigError
from probe.models.two_point import ARCHITECTURES, NONLINEARITIES, activation_count
from probe.validation import check_int, check_positive

__all__ = ["FIT_STARTS", "SETTINGS", "TwoPointsConfig"]

T = TypeVar("T")

#: The rows of the authors' ``experiments/model_settings/2 points.txt`` (docs/dynamics.md §1.6):
#: (architecture, nonlinearity, gain, lr, width, hidden layers, epochs, hooked layer index). The
#: hooked index is into the authors' activation list (`probe.models.two_point`): for ``dropout``
#: index 5 is hidden block 2 (dropout outputs are activations of their own), for ``cnn`` the 5th
#: convolution. The ``adam`` row is not included.
SETTINGS: dict[str, tuple[str, str, float, float, int, int, int, int]] = {
    "default": ("MLP", "leaky_relu", 1.0, 0.01, 500, 20, 3000, 10),
    "shallow": ("MLP", "leaky_relu", 0.35, 0.02, 500, 2, 3000, 1),
    "narrow": ("MLP", "leaky_relu", 1.05, 0.01, 50, 20, 3000, 10),
    "linear": ("MLP", "none", 0.85, 0.0025, 500, 20, 3000, 10),
    "tanh": ("MLP", "tanh", 0.85, 0.0025, 500, 20, 3000, 10),
    "elu": ("MLP", "elu", 0.95, 0.0009, 500, 20, 3000, 10),
    "relu": ("MLP", "relu", 1.0, 0.01, 500, 20, 3000, 10),
    "swish": ("MLP", "swish", 1.7, 0.005, 500, 20, 3000, 10),
    "skip": ("ResNet", "leaky_relu", 0.1, 0.02, 500, 20, 3000, 10),
    "cnn": ("CNN", "leaky_relu", 0.95, 0.004, 500, 10, 3000, 5),
    "dropout": ("Dropout", "leaky_relu", 1.0, 0.01, 500, 10, 3000, 5),
    "gain_0.9": ("MLP", "leaky_relu", 0.9, 0.03, 500, 20, 3000, 10),
    "gain_1.1": ("MLP", "leaky_relu", 1.1, 0.005, 500, 20, 3000, 10),
    "gain_1.2": ("MLP", "leaky_relu", 1.2, 0.0025, 500, 20, 3000, 10),
    "gain_1.3": ("MLP", "leaky_relu", 1.3, 0.0015, 500, 20, 3000, 10),
    "gain_1.4": ("MLP", "leaky_relu", 1.4, 0.0005, 500, 20, 3000, 10),
    "gain_1.6": ("MLP", "leaky_relu", 1.6, 3e-6, 500, 20, 3000, 10),
    "two_layer": ("MLP", "none", 0.1, 0.01, 500, 1, 3000, 0),
}


#: Start grids of the fit (``rho_factors`` of `probe.theory.effective_fit.fit_two_point`):
#: ``authors``, their 1-D grid tied by the rich-limit rho; ``wide``, that grid times rho factors
#: 1e-3 .. 1e3 (finds the optimum when the distance shrinks under a large init; 7x the cost).
FIT_STARTS: dict[str, tuple[float, ...]] = {
    "authors": (1.0,),
    "wide": (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3),
}


@dataclass
class TwoPointsConfig:
    """Settings of the two-points experiment (saved as JSON in every run store's ``config``).

    ``setting`` picks a row of `SETTINGS`; any of ``architecture, nonlinearity, gain, lr, width,
    depth, epochs, hooked`` left at None takes the row's value. ``halve_lr`` halves the row's lr
    and doubles its epochs, as the authors' ``2_points.ipynb`` does; ``speedup`` then multiplies
    the lr and divides the epochs (same gradient-flow time in fewer, larger steps). ``layers``
    says which hidden layers are recorded and fitted: None, only the hooked one; ``"all"``;
    or comma-separated indices (the hooked one is always added); ``every``: snapshot interval
    in steps; ``fit_starts``: the fit's start grid (`FIT_STARTS`); ``threads``: torch intra-op
    threads while training (a two-sample batch runs fastest on one: more threads spin and, on a
    busy machine, cost up to 7x the CPU time). Data (§1.5):
    ``x_A = -1``, ``x_B = -1 + sqrt(dx2)``, ``y_A = 0.6``, ``y_B = 0.6 + sqrt(dy2)``; criterion
    ``0.5*F.mse_loss``; full-batch SGD.
    """

    setting: str = "default"
    seeds: int = 3
    seed0: int = 0
    architecture: str | None = None
    nonlinearity: str | None = None
    gain: float | None = None
    lr: float | None = None
    width: int | None = None
    depth: int | None = None
    epochs: int | None = None
    hooked: int | None = None
    halve_lr: bool = True
    speedup: float = 1.0
    layers: str | None = None
    every: int = 1
    threads: int = 1
    dx2: float = 1.0
    dy2: float = 0.5
    dtype: str = "float32"
    fit: bool = True
    fit_starts: str = "authors"

    def resolved(self) -> TwoPointsConfig:
        """Return a copy with every None field filled from the setting's row, after checks.

        Raises
        ------
        ConfigError
            Unknown setting, architecture, nonlinearity or dtype; a size, rate or distance not
            > 0; the hooked layer or a listed layer outside the model's activations.
        """
        if self.setting not in SETTINGS:
            msg = f"setting must be one of {sorted(SETTINGS)}; got {self.setting!r}."
            raise ConfigError(msg)
        arch, phi, gain, lr, width, depth, epochs, hooked = SETTINGS[self.setting]
        check_positive(self.speedup, "speedup", error=ConfigError)
        if self.halve_lr:
            lr, epochs = lr / 2, epochs * 2
        lr, epochs = lr * self.speedup, max(round(epochs / self.speedup), 2)
        r = replace(
            self,
            architecture=_pick(self.architecture, arch),
            nonlinearity=_pick(self.nonlinearity, phi),
            gain=_pick(self.gain, gain),
            lr=_pick(self.lr, lr),
            width=_pick(self.width, width),
            depth=_pick(self.depth, depth),
            epochs=_pick(self.epochs, epochs),
            hooked=_pick(self.hooked, hooked),
        )
        if r.architecture not in ARCHITECTURES:
            msg = f"architecture must be one of {sorted(ARCHITECTURES)}; got {r.architecture!r}."
            raise ConfigError(msg)
        if r.nonlinearity not in NONLINEARITIES:
            msg = f"nonlinearity must be one of {sorted(NONLINEARITIES)}; got {r.nonlinearity!r}."
            raise ConfigError(msg)
        if r.fit_starts not in FIT_STARTS:
            msg = f"fit_starts must be one of {sorted(FIT_STARTS)}; got {r.fit_starts!r}."
            raise ConfigError(msg)
        if r.dtype not in ("float32", "float64"):
            msg = f"dtype must be 'float32' or 'float64'; got {r.dtype!r}."
            raise ConfigError(msg)
        for name in ("seeds", "width", "depth", "epochs", "every", "threads"):
            check_int(getattr(r, name), name)
        for name in ("gain", "lr", "dx2", "dy2"):
            check_positive(getattr(r, name), name)
        n = r.n_activations()
        if not 0 <= r.hooked < n:  # type: ignore[operator]
            msg = f"hooked must be a hidden-layer index in 0 .. {n - 1}; got {r.hooked}."
            raise ConfigError(msg)
        r.layer_indices()
        return r

    def n_activations(self) -> int:
        """Return the number of recordable hidden layers of the resolved config's model."""
        try:
            return activation_count(self.architecture, self.depth)  # type: ignore[arg-type]
        except ModelConfigError as e:
            raise ConfigError(str(e)) from None

    def layer_indices(self) -> list[int]:
        """Hidden-layer indices to record and fit (resolved config), sorted; hooked included.

        Raises
        ------
        ConfigError
            ``layers`` is not ``"all"`` or comma-separated integers in ``0 .. n - 1``.
        """
        n = self.n_activations()
        if self.layers is None:
            return [self.hooked]  # type: ignore[list-item]
        if self.layers.strip() == "all":
            return list(range(n))
        try:
            idx = sorted({int(v) for v in self.layers.split(",")})
        except ValueError:
            idx = [-1]
        if not idx or idx[0] < 0 or idx[-1] >= n:
            msg = (
                f"layers must be 'all' or comma-separated hidden-layer indices in 0 .. {n - 1}; "
                f"got {self.layers!r}."
            )
            raise ConfigError(msg)
        return sorted({*idx, self.hooked})  # type: ignore[arg-type]


def _pick(value: T | None, row: T) -> T:
    return row if value is None else value
