"""The built-in sections of the report (`probe.report.page`), registered in report order on import.

Learning curves, per-layer summaries, CKA between steps, cluster geometry, embeddings, the
NFA (NFM vs AGOP) and the two-point effective-theory fit. Each returns an HTML fragment, or
`Absent` with the reason when the run lacks what it needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib import colormaps
from matplotlib.lines import Line2D

from probe.analysis import cluster_sweep, features, similarity, summaries
from probe.analysis.curves import curve_metrics
from probe.errors import ProbeError
from probe.export.frames import embed_run
from probe.plots.features import nfa_panel
from probe.report.section import (
    Absent,
    ReportContext,
    figure_html,
    new_figure,
    paragraph,
    register_section,
    step_axis,
    table_html,
)
from probe.store import Run
from probe.theory import effective_fit

_NO_SNAPSHOT = Absent("the run has no committed snapshot.")
_CKA_SAMPLES = 1000  # n x n Gram matrices per step: cap n to bound memory and time
_CLUSTER_TABLE = [
    "silhouette",
    "nc1",
    "knn_accuracy",
    "linear_probe_accuracy",
    "participation_ratio",
    "centroid_separation",
]


def _class_labels(run: Run) -> tuple[npt.NDArray[Any] | None, str]:
    """Return (integer class labels of shape (n_samples,), "") or (None, why not)."""
    y = run.targets
    if y is None:
        return None, "the run stored no probe targets (Recorder(probe=(x, y)))."
    if y.ndim != 1 or y.dtype.kind not in "iub":
        return None, (
            f"the probe targets are not integer class labels (dtype {y.dtype}, shape {y.shape})."
        )
    counts = np.unique(y, return_counts=True)[1]
    if counts.size < 2 or counts.min() < 2:
        return None, "class sections need at least 2 classes with at least 2 samples each."
    return y, ""


# ---------------------------------------------------------------------- learning curves
def _family(name: str) -> str:
    return "loss" if "loss" in name else "accuracy" if "acc" in name else name


@register_section("curves", "Learning curves")
def curves_section(run: Run, ctx: ReportContext) -> str | Absent:
    """Every logged metric against step (one panel per family) and its curve metrics."""
    table = run.metrics()
    names = [c for c in table.columns if c not in ("step", "epoch")]
    if not names:
        return Absent("the run logged no metrics (Recorder.step(loss=...) or Recorder.log(...)).")
    families = list(dict.fromkeys(_family(n) for n in names))
    fig = new_figure(5.0 * min(3, len(families)), 3.4 * -(-len(families) // 3))
    axes = fig.subplots(-(-len(families) // 3), min(3, len(families)), squeeze=False).ravel()
    rows = []
    for ax, fam in zip(axes, families, strict=False):
        for i, name in enumerate(n for n in names if _family(n) == fam):
            part = table[["step", name]].dropna()
            x, v = part["step"].to_numpy(), part[name].to_numpy(float)
            if v.size > 50:  # dense per-step logging: raw faint, moving mean solid
                w = max(1, v.size // 50)
                ax.plot(x, v, color=f"C{i}", alpha=0.2, lw=0.6)
                ax.plot(x, pd.Series(v).rolling(w, min_periods=1).mean(), color=f"C{i}", label=name)
            else:
                ax.plot(x, v, color=f"C{i}", marker="o", ms=3, label=name)
            m = curve_metrics(v)  # as curves_from_run: the logged records, 3RS3R-smoothed
            rows.append((name, v.size, v[-1], v.min(), v.max(), m.start, m.end_minus_start, m.tmax))
        if fam == "loss" and np.nanmin(table[[n for n in names if _family(n) == fam]]) > 0:
            ax.set_yscale("log")
        ax.set(title=fam, xlabel="optimizer step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(families) :]:
        ax.set_visible(False)
    cols = ["metric", "records", "last", "min", "max", "start", "end - start", "tmax"]
    return (
        figure_html(fig, "learning curves")
        + paragraph(
            "Dense per-step metrics are drawn raw (faint) with a moving mean over 1/50 of the "
            "records. start, end - start and tmax are the learning-curve metrics of the "
            "3RS3R-smoothed curve (probe.analysis.curves; tmax is a fraction of the records)."
        )
        + table_html(pd.DataFrame(rows, columns=cols))
    )


# ---------------------------------------------------------------------- per-layer summaries
@register_section("summaries", "Layer summaries over training")
def summaries_section(run: Run, ctx: ReportContext) -> str | Absent:
    """CKA to the previous snapshot, effective rank and centroid separation per layer."""
    if not run.n_snapshots:
        return _NO_SNAPSHOT
    df = summaries.summaries(run, layers=ctx.layers)
    fig = new_figure(15.0, 3.6)
    for ax, name in zip(fig.subplots(1, 3), summaries.SUMMARY_NAMES, strict=True):
        marker = "o" if run.n_snapshots <= 60 else None
        for layer, g in df.groupby("layer", sort=False):
            ax.plot(g["step"], g[name], marker=marker, ms=3, label=str(layer))
        ax.set_title(name)
        step_axis(ax, df["step"])
        v = df[name].to_numpy(float)
        if np.isnan(v).all():  # e.g. centroid_separation without class labels
            ax.text(0.5, 0.5, "undefined for this run", ha="center", transform=ax.transAxes)
            ax.set(xticks=[], yticks=[])
        elif np.nanmax(v) - np.nanmin(v) < 1e-9 * max(1.0, np.nanmax(np.abs(v))):
            mid, pad = np.nanmean(v), 0.05 * max(1.0, np.nanmax(np.abs(v)))
            ax.set_ylim(mid - pad, mid + pad)  # flat up to rounding: no "1e-12 + 1" ticks
    fig.axes[0].legend(fontsize=8, title="layer", title_fontsize=8)
    last = df[df["step"] == df["step"].max()].drop(columns="step")
    return (
        figure_html(fig, "layer summaries")
        + paragraph(
            "cka_prev: linear CKA (biased HSIC, a similarity in [0, 1]) with the previous "
            "snapshot; effective_rank: entropy effective rank of the centred activations' "
            "singular values; centroid_separation: closest pair of class means in units of the "
            "within-class spread (NaN without class labels). Last snapshot "
            f"(step {int(df['step'].max())}):"
        )
        + table_html(last)
    )


# ---------------------------------------------------------------------- CKA between steps
@register_section("change", "Representation change between steps")
def change_section(run: Run, ctx: ReportContext) -> str | Absent:
    """Heatmaps of linear CKA between every pair of the analysed snapshots, per layer."""
    if ctx.steps.size < 2:
        return Absent(f"needs at least 2 snapshots; the run has {ctx.steps.size}.")
    n = run.sample_ids.shape[0]
    if n < 3:
        return Absent(f"linear CKA of {n} centred samples is always 1; needs at least 3.")
    keep = np.sort(np.random.default_rng(ctx.seed).permutation(n)[: min(n, _CKA_SAMPLES)])
    k = len(ctx.layers)
    fig = new_figure(
        3.0 * min(5, k) + 1.4, 2.9 * -(-k // 5) + 0.3, bottom=0.7, right=0.8, hspace=0.4
    )
    axes = fig.subplots(-(-k // 5), min(5, k), squeeze=False).ravel()
    labels = [str(s) for s in ctx.steps]
    for ax, layer in zip(axes, ctx.layers, strict=False):
        frames = [run.acts(layer, int(s))[keep] for s in ctx.steps]
        M = similarity.cka_matrix(frames)
        im = ax.imshow(M, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(f"{layer}: CKA(step_i, step_j)", fontsize=9)
    for ax in axes[k:]:
        ax.set_visible(False)
    fig.colorbar(im, ax=list(axes[:k]), fraction=0.015, pad=0.02, label="linear CKA")
    return figure_html(fig, "CKA between steps") + paragraph(
        f"Linear CKA (biased HSIC; 1 = same up to rotation and isotropic scale) between the "
        f"layer's probe-set activations at each pair of analysed steps, on {keep.size} of {n} "
        f"probe samples (seed {ctx.seed})."
    )


# ---------------------------------------------------------------------- cluster geometry
@register_section("clusters", "Cluster geometry over steps")
def clusters_section(run: Run, ctx: ReportContext) -> str | Absent:
    """`probe.analysis.cluster_sweep.sweep` over the analysed layers and steps, drawn per metric."""
    y, why = _class_labels(run)
    if y is None:
        return Absent(why)
    if not ctx.steps.size:
        return _NO_SNAPSHOT
    steps = ctx.steps.tolist()
    df = cluster_sweep.sweep(run, ctx.layers, steps, progress=ctx.progress, seed=ctx.seed)
    metrics = list(dict.fromkeys(df["metric"]))
    ncols, nrows = 4, -(-len(metrics) // 4)
    fig = new_figure(16.0, 2.7 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, metric in zip(axes, metrics, strict=False):
        for layer, g in df[df["metric"] == metric].groupby("layer", sort=False):
            ax.plot(g["step"], g["value"], marker="o", ms=3, label=str(layer))
        ax.set_title(metric, fontsize=9)
        step_axis(ax, ctx.steps)
        ax.xaxis.label.set_visible(False)
    for ax in axes[len(metrics) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, title="layer", title_fontsize=7)
    last = df[df["step"] == df["step"].max()].pivot(index="layer", columns="metric")["value"]
    last = last.reindex(ctx.layers)[[m for m in _CLUSTER_TABLE if m in last.columns]]
    last.columns.name = None
    return (
        figure_html(fig, "cluster geometry over steps")
        + paragraph(
            f"probe.analysis.clusters.geometry of each layer at {ctx.steps.size} steps, with the "
            f"{np.unique(y).size} probe classes as clusters; kNN and linear-probe accuracies are "
            "cross-validated on the probe set. At the last analysed step "
            f"({int(df['step'].max())}):"
        )
        + table_html(last.reset_index())
    )


# ---------------------------------------------------------------------- embeddings
def _palette(labels: npt.NDArray[Any]) -> dict[float, Any] | None:
    """Return a colour per class when ``labels`` are at most 20 integer classes, else None."""
    classes = np.unique(labels)
    if classes.size > 20 or not np.allclose(classes, np.round(classes)):
        return None
    cmap = colormaps["tab10" if classes.size <= 10 else "tab20"]
    return {float(k): cmap(i) for i, k in enumerate(classes)}


@register_section("embedding", "Embeddings across steps")
def embedding_section(run: Run, ctx: ReportContext) -> str | Absent:
    """Small multiples: one row per layer, one frame per step, points coloured by label."""
    n = int(run.sample_ids.shape[0])
    if not ctx.frame_steps.size:
        return _NO_SNAPSHOT
    if n < 5:
        return Absent(f"embeddings need at least 5 probe samples; the run has {n}.")
    steps = ctx.frame_steps.tolist()
    table, embs = embed_run(run, ctx.layers, steps, method=ctx.method, seed=ctx.seed)
    nr, nc = len(ctx.layers), ctx.frame_steps.size
    fig = new_figure(
        1.8 * nc + 1.3,
        1.8 * nr + 0.4,
        left=0.4,
        right=0.9,
        bottom=0.1,
        top=0.3,
        wspace=0.05,
        hspace=0.05,
    )
    axes = fig.subplots(nr, nc, squeeze=False)
    size = 2 if n >= 1000 else 8
    labels = table["label"].to_numpy(float)
    unlabelled = bool(np.all(np.isnan(labels)))
    palette = None if unlabelled else _palette(labels)
    span = {} if unlabelled else {"vmin": np.nanmin(labels), "vmax": np.nanmax(labels)}
    for r, layer in enumerate(ctx.layers):
        rows = table[table["layer"] == layer]
        lo, hi = rows[["x", "y"]].min().to_numpy(), rows[["x", "y"]].max().to_numpy()
        half = 0.55 * float(np.max(hi - lo)) or 1.0  # one square frame for the whole row
        cx, cy = (lo + hi) / 2
        for j, step in enumerate(ctx.frame_steps):
            ax, part = axes[r, j], rows[rows["step"] == step]
            if unlabelled:
                ax.scatter(part["x"], part["y"], color="0.4", s=size, lw=0)
            elif palette is not None:
                col = [palette[float(k)] for k in part["label"]]
                ax.scatter(part["x"], part["y"], color=col, s=size, lw=0)
            else:
                sc = ax.scatter(part["x"], part["y"], c=part["label"], s=size, lw=0, **span)
            ax.set(xticks=[], yticks=[], xlim=(cx - half, cx + half), ylim=(cy - half, cy + half))
            ax.set_aspect("equal")
            if r == 0:
                ax.set_title(f"step {int(step)}", fontsize=9)
        axes[r, 0].set_ylabel(layer, fontsize=9)
    if palette is not None:
        marks = [Line2D([], [], ls="", marker="o", color=c) for c in palette.values()]
        fig.legend(marks, [f"{k:g}" for k in palette], loc="center right", fontsize=8)
    elif not unlabelled:
        fig.colorbar(sc, ax=axes, shrink=0.6, label="target")
    evr = [
        f"{e.layer}: {sum(e.explained_variance_ratio):.2f}"
        for e in embs
        if e.explained_variance_ratio
    ]
    return figure_html(fig, "embeddings across steps") + paragraph(
        f"{ctx.method.upper()} ({embs[0].fit} fit) of each layer, reference step "
        f"{embs[0].reference_step}, seed {embs[0].seed}: every frame of a row shares one map and "
        "one square frame, so motion between frames is change of the representation. "
        + (
            f"Variance explained by the 2 components at the reference: {'; '.join(evr)}."
            if evr
            else ""
        )
    )


# ---------------------------------------------------------------------- NFA
@register_section("nfa", "Neural Feature Ansatz: NFM vs AGOP")
def nfa_section(run: Run, ctx: ReportContext) -> str | Absent:
    """`probe.analysis.features.nfa_over_steps` of every analysed layer with a recorded AGOP."""
    with_agop = [n for n in ctx.layers if n in run.layers and "agop" in run.keys(n)]
    if not with_agop:
        return Absent(
            f"no AGOP was recorded for the layers {ctx.layers}; the NFA compares each layer's "
            "NFM WᵀW with its AGOP (record with Recorder(..., weights=True, agop=True))."
        )
    df = pd.concat([features.nfa_over_steps(run, layer) for layer in with_agop])
    measures = list(dict.fromkeys(df["measure"]))
    fig = new_figure(4.2 * len(measures), 2.6 * len(with_agop) + 0.4, hspace=0.4)
    axes = fig.subplots(len(with_agop), len(measures), squeeze=False, sharex=True)
    for row, layer in zip(axes, with_agop, strict=True):
        for ax, m in zip(row, measures, strict=True):
            sub = df[(df["layer"] == layer) & (df["measure"] == m)]
            nfa_panel(ax, sub)
            ax.set_title(f"{layer}: {m}", fontsize=9)
            step_axis(ax, sub["step"])
            ax.xaxis.label.set_visible(ax in axes[-1])
        row[0].legend(fontsize=7)
    rows = []
    last = df[df["step"] == df["step"].max()]
    for (layer, m), g in last.groupby(["layer", "measure"], sort=False):
        row = {"layer": layer, "measure": m}
        row |= {f"G^{p:g}": v for p, v in zip(g["power"], g["value"], strict=True)}
        row |= {f"G^{p:g} at init": v for p, v in zip(g["power"], g["init"], strict=True)}
        rows.append(row | {"M vs M0": g["nfm_change"].iloc[0]})
    return (
        figure_html(fig, "NFM vs AGOP over training")
        + paragraph(
            "Correlation of the NFM M = WᵀW with powers G^p of the AGOP (solid), the same at "
            "init (dashed) and the NFM's correlation with its init M0 (dotted): pearson and "
            "cosine over all entries, offdiag over off-diagonal entries. At the last step "
            f"({int(last['step'].iloc[0])}):"
        )
        + table_html(pd.DataFrame(rows))
    )


# ---------------------------------------------------------------------- two-point theory
def _two_point_why(run: Run) -> str:
    """Return why the run cannot be fitted by the two-point theory ("" when it can)."""
    n, y = int(run.sample_ids.shape[0]), run.targets
    if n != 2:
        return f"the fit needs a probe set of exactly 2 samples; the run has {n}."
    if y is None or y.dtype.kind not in "f":
        return "the fit needs regression (float) probe targets; the run has none or labels."
    if run.probe_inputs is None:
        return "the fit needs the probe inputs, which the run did not store."
    if run.n_snapshots < 3:
        return f"the fit needs at least 3 snapshots; the run has {run.n_snapshots}."
    return ""


@register_section("effective", "Two-point effective theory fit")
def effective_section(run: Run, ctx: ReportContext) -> str | Absent:
    """Fit (eta_h, eta_y) of the two-point ODEs to every analysed layer over all snapshots."""
    why = _two_point_why(run)
    if why:
        return Absent(why)
    outputs, inputs, targets = run.outputs(), run.probe_inputs, run.targets
    assert inputs is not None  # checked by _two_point_why
    assert targets is not None
    fig = new_figure(4.2 * min(4, len(ctx.layers)), 3.2 * -(-len(ctx.layers) // 4))
    axes = fig.subplots(-(-len(ctx.layers) // 4), min(4, len(ctx.layers)), squeeze=False).ravel()
    rows: list[dict[str, Any]] = []
    for ax, layer in zip(axes, ctx.layers, strict=False):
        tr = effective_fit.two_point_traces(run.acts(layer), outputs, inputs, targets, run.steps)
        for i, v in enumerate(("h", "y", "w")):
            ax.plot(tr.t, getattr(tr, v), color=f"C{i}", lw=2, label=f"{v} measured")
        try:
            fit = effective_fit.fit_two_point(tr)
        except ProbeError as err:  # e.g. h = 0 at start in this layer: the others still fit
            rows.append({"layer": layer, "note": f"not fitted: {err}"})
        else:
            for v in ("h", "y", "w"):
                ax.plot(fit.prediction.t, getattr(fit.prediction, v), color="k", ls=":", lw=1.4)
            rows.append(
                {"layer": layer, "eta_h": fit.eta_h, "eta_y": fit.eta_y, "rho": fit.rho}
                | {"sse": fit.sse, "h_inf": fit.h_inf}
                | {f"rel_err_{k}": e for k, e in fit.rel_error.items()}
            )
        ax.set_title(layer, fontsize=9)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    for ax in axes[len(ctx.layers) :]:
        ax.set_visible(False)
    axes[0].plot([], [], color="k", ls=":", label="theory (fitted)")
    axes[0].legend(fontsize=7)
    return (
        figure_html(fig, "two-point effective theory fit")
        + paragraph(
            "Measured h = ||dh||², y = ||dŷ||², w = dŷ·(dŷ - dy) of the two probe samples "
            "(solid) and the effective theory's ODE at the fitted rates (dotted; "
            "probe.theory.effective_fit.fit_two_point, least squares over h, y, w). rel_err: "
            "max |measured - predicted| / max |measured| per variable."
        )
        + table_html(pd.DataFrame(rows))
    )
