"""Text summary and Markdown report of `probe.experiments.mnist_clustering.experiment`."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["format_report", "format_summary"]

R_KEYS = ("r_all", "r_between", "r_all_normalised", "r_between_normalised")
_SHORT = {"r_all": "r_all", "r_between": "r_betw", "r_all_normalised": "r_all_n",
          "r_between_normalised": "r_betw_n"}  # fmt: skip


def _f(value: Any, spec: str = ".3f") -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else format(
        value, spec
    )


def _ci(entry: dict[str, Any]) -> str:
    return f"{_f(entry['mean'])} [{_f(entry['ci_low'])}, {_f(entry['ci_high'])}]"


def _header(summary: dict[str, Any]) -> list[str]:
    cfg = summary["config"]
    n, kept = cfg["n_nets"], len(summary["averaged_nets"])
    diverged = summary["diverged_nets"]
    which = "all nets (include_diverged)" if cfg["include_diverged"] else f"the {kept} kept nets"
    if cfg.get("until_divergence") and not cfg["include_diverged"]:
        which += " (mean r per snapshot: plus diverged nets before their first bad loss)"
    listed = f" (nets {', '.join(map(str, diverged))})" if diverged else ""
    return [
        f"{cfg['dataset']} clustering: {n} nets x {cfg['epochs']} epochs on "
        f"{summary['n_train']} images ({summary['n_steps']} steps each), layer "
        f"hidden.{cfg['hidden_layer']}, prediction from {summary['n_pred_images_used']} raw images",
        f"divergence rule: {summary['divergence_rule']} (spike_factor {cfg['spike_factor']:g}, "
        f"window {cfg['spike_window']}, accuracy_floor {cfg['accuracy_floor']:g})",
        f"diverged: {len(diverged)} of {n} nets{listed}; averages and CIs over {which}",
    ]


def _net_table(summary: dict[str, Any]) -> list[str]:
    head = f"{'net':>4}{'seed':>6}{'test_acc':>10}{'max_loss':>10}{'max_spike':>11}  {'status':9}"
    lines = [head + "".join(f"{_SHORT[k]:>9}" for k in R_KEYS)]
    for row in summary["nets"]:
        status = "DIVERGED" if row["diverged"] else "kept"
        lines.append(
            f"{row['net']:>4}{row['seed']:>6}{_f(row['test_accuracy'], '.4f'):>10}"
            f"{_f(row['max_loss'], '.3g'):>10}{_f(row['max_spike_ratio'], '.3g'):>11}  "
            f"{status:9}" + "".join(f"{_f(row[k]):>9}" for k in R_KEYS)
        )
    lines += [f"  net {r['net']}: {r['reasons']}" for r in summary["nets"] if r["diverged"]]
    return lines


def _final_lines(summary: dict[str, Any]) -> list[str]:
    cfg, ci = summary["config"], summary["final_ci"]
    n = ci["r_all"]["n_nets"]
    lines = [
        f"r at the last snapshot, mean over {n} net{'s' * (n != 1)} [{cfg['ci_level']:.0%} "
        f"percentile-bootstrap CI, {cfg['n_bootstrap']} resamples of nets]:"
    ]
    pixels = summary["input_pixels"]
    lines += [f"  {k:22}{_ci(ci[k]):26} input pixels {_f(pixels[k])}" for k in R_KEYS]
    final, init = summary["final"], summary["initial"]
    raw, scaled = final["raw"], final["scaled"]
    lines += [
        "r of the net-averaged matrix (init -> final; final of the scaled mean): "
        + ", ".join(
            f"{k} {_f(init['raw'][k])} -> {_f(raw[k])} ({_f(scaled[k])})" for k in R_KEYS[:2]
        ),
        f"within / between mean dist² (averaged matrix): {_f(raw['within_sq_distance'], '.4g')}"
        f" / {_f(raw['between_sq_distance'], '.4g')}; between/within "
        f"{_f(raw['between_over_within'], '.3g')} (at init "
        f"{_f(init['raw']['between_over_within'], '.3g')})",
    ]
    return lines


def format_summary(summary: dict[str, Any]) -> str:
    """Return the one-screen text summary of `run_mnist_clustering`.

    Parameters
    ----------
    summary : dict
        ``MnistClusteringResult.summary``.

    Returns
    -------
    str
        Settings and divergence rule, one row per net (verdict, reasons, final r), the mean r
        over the averaged nets with its bootstrap CI, and the net-averaged matrix's r.
    """
    return "\n".join(_header(summary) + _net_table(summary) + _final_lines(summary))


def format_report(summary: dict[str, Any], trajectory: pd.DataFrame) -> str:
    """Return the Markdown report: `format_summary`, the trajectory table and the conventions.

    Parameters
    ----------
    summary : dict
        ``MnistClusteringResult.summary``.
    trajectory : pandas.DataFrame
        ``trajectory.csv``: mean r and CI per (step, variant).

    Returns
    -------
    str
        Markdown; the trajectory lists every recorded snapshot.
    """
    wide = trajectory.pivot(index="step", columns="variant")
    rows = [
        f"| {step} | {int(wide.loc[step, ('n_nets', 'r_all')])} | "
        + " | ".join(
            _ci({"mean": wide.loc[step, ("mean", k)], "ci_low": wide.loc[step, ("ci_low", k)],
                 "ci_high": wide.loc[step, ("ci_high", k)]})
            for k in R_KEYS
        )
        + " |"
        for step in wide.index
    ]  # fmt: skip
    conventions = [f"- **{k}**: {v}" for k, v in summary["conventions"].items()]
    return "\n".join(
        ["# MNIST clustering against the two-point theory", "", "```", format_summary(summary),
         "```", "", "## r over training (mean over the averaged nets [bootstrap CI])", "",
         "| step | nets | " + " | ".join(R_KEYS) + " |", "|---" * (2 + len(R_KEYS)) + "|",
         *rows, "", "## Conventions", "", *conventions]
    )  # fmt: skip
