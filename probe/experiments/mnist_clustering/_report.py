"""Figure and text summary of `probe.experiments.mnist_clustering.experiment`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["format_summary", "plot_clustering"]

R_KEYS = ("r_all", "r_between", "r_all_normalised", "r_between_normalised")


def _class_ticks(ax: Any, labels: npt.NDArray[Any]) -> None:
    """Label each class block at its centre and draw white lines at the class boundaries."""
    classes, starts, counts = np.unique(labels, return_index=True, return_counts=True)
    centres = starts + counts / 2 - 0.5
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(centres, [str(c) for c in classes], fontsize=7)
    for b in starts[1:] - 0.5:
        ax.axhline(b, color="w", lw=0.4)
        ax.axvline(b, color="w", lw=0.4)


def _r_text(final: dict[str, dict[str, float]], suffix: str) -> str:
    raw, scaled = final["raw"], final["scaled"]
    return (
        f"r all / between: raw mean {raw['r_all' + suffix]:.3f} / "
        f"{raw['r_between' + suffix]:.3f}\nscaled mean {scaled['r_all' + suffix]:.3f} / "
        f"{scaled['r_between' + suffix]:.3f}"
    )


def plot_clustering(
    matrices: dict[str, npt.NDArray[np.float64]],
    labels: npt.NDArray[Any],
    steps: pd.DataFrame,
    summary: dict[str, Any],
    path: str | Path,
) -> None:
    """Draw the measured and predicted matrices (probe sorted by label) and r over steps.

    Parameters
    ----------
    matrices : dict of str to ndarray of shape (n, n)
        ``measured``, ``measured_scaled``, ``predicted``, ``predicted_normalised``.
    labels : ndarray of shape (n,)
        Sorted probe labels.
    steps : pandas.DataFrame
        One row per (average, step) with the r columns of `R_KEYS`.
    summary : dict
        The experiment summary (``config``, ``final``, ``test_accuracy_mean``).
    path : str or path
        PNG file to write.
    """
    fig = Figure(figsize=(17.0, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 5)
    n_nets, final = summary["config"]["n_nets"], summary["final"]
    titles = {
        "measured": f"measured dist², mean of {n_nets} nets",
        "measured_scaled": f"measured dist² / its mean, mean of {n_nets} nets",
        "predicted": "predicted (class-pair sums)\n" + _r_text(final, ""),
        "predicted_normalised": "predicted / (n_c n_c')\n" + _r_text(final, "_normalised"),
    }
    for ax, (key, title) in zip(axes[:4], titles.items(), strict=True):
        img = ax.imshow(matrices[key], cmap="viridis", interpolation="nearest")
        fig.colorbar(img, ax=ax, shrink=0.8)
        _class_ticks(ax, labels)
        ax.set_title(title, fontsize=7)
    ax = axes[4]
    for average, style in (("raw", "-"), ("scaled", "--")):
        rows = steps[steps["average"] == average]
        x = np.maximum(rows["step"].to_numpy(), 1)  # step 0 drawn at 1 on the log axis
        for colour, key in enumerate(R_KEYS):
            label = f"{key} ({average} mean)"
            ax.plot(x, rows[key], style, color=f"C{colour}", marker=".", ms=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("optimizer step (0 drawn at 1)")
    ax.set_ylabel("Pearson r vs prediction")
    ax.set_title(f"mean test accuracy {summary['test_accuracy_mean']:.4f}", fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=5)
    fig.savefig(path, dpi=130)


def format_summary(summary: dict[str, Any]) -> str:
    """Return the one-screen text summary of `run_mnist_clustering`.

    Parameters
    ----------
    summary : dict
        ``MnistClusteringResult.summary``.

    Returns
    -------
    str
    """
    final, init, cfg = summary["final"], summary["initial"], summary["config"]
    per_net = summary["per_net_final"]
    lines = [
        f"{cfg['dataset']} clustering: {cfg['n_nets']} nets x {cfg['epochs']} epochs on "
        f"{summary['n_train']} images ({summary['n_steps']} steps each), layer "
        f"hidden.{cfg['hidden_layer']}, prediction from {summary['n_pred_images_used']} raw images",
        "test accuracy: " + ", ".join(f"{a:.4f}" for a in summary["test_accuracy"]),
        f"{'r vs prediction':22}{'init':>7}{'final':>7}{'final, scaled mean':>20}"
        f"{'per net (mean ± sd)':>22}",
    ]
    for key in R_KEYS:
        vals = np.asarray(per_net[key])
        lines.append(
            f"{key:22}{init['raw'][key]:7.3f}{final['raw'][key]:7.3f}"
            f"{final['scaled'][key]:20.3f}{vals.mean():>15.3f} ± {vals.std():.3f}"
        )
    raw, scaled = final["raw"], final["scaled"]
    lines.append(
        f"within / between mean dist²: {raw['within_sq_distance']:.4g} / "
        f"{raw['between_sq_distance']:.4g}; between/within {raw['between_over_within']:.3g} "
        f"(scaled mean {scaled['between_over_within']:.3g}, at init "
        f"{init['raw']['between_over_within']:.3g})"
    )
    return "\n".join(lines)
