"""The report's prediction-alignment section: y, a and w of sample pairs over training.

Per pair of probe samples (docs/dynamics.md §1.1): y = ||dŷ||², a = dŷ·dy and w = y - a. Pairs are
drawn at random with a fixed seed: same-class and different-class pairs separately when the
targets are class labels, otherwise all pairs alike.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from probe.analysis.alignment import alignment, prediction_sq_distances, target_matrix
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

_PAIRS_PER_GROUP = 1000
_QUANTITIES = {
    "y": "y = ‖dŷ‖² (prediction distance)",
    "a": "a = dŷ·dy (alignment)",
    "w": "w = y − a (misalignment)",
}


def pair_groups(
    targets: npt.NDArray[np.generic], n_pairs: int, seed: int
) -> dict[str, npt.NDArray[np.int64]]:
    """Return seeded random pairs ``(i, j)``, ``i != j``, of probe samples, by group.

    Integer class labels give ``"same class"`` and ``"different class"`` pairs (a group with no
    possible pair is left out); other targets give one group, ``"all pairs"``. Each group holds
    at most ``n_pairs`` distinct pairs, each of shape (n, 2).
    """
    n = targets.shape[0]
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, n, size=(20 * n_pairs, 2))
    draw = np.unique(np.sort(draw[draw[:, 0] != draw[:, 1]], axis=1), axis=0)
    draw = draw[rng.permutation(len(draw))]
    if targets.ndim != 1 or targets.dtype.kind not in "iub":
        return {"all pairs": draw[:n_pairs]}
    same = targets[draw[:, 0]] == targets[draw[:, 1]]
    groups = {"same class": draw[same][:n_pairs], "different class": draw[~same][:n_pairs]}
    return {k: v for k, v in groups.items() if len(v)}


def alignment_table(
    run: Run, steps: npt.ArrayLike, *, n_pairs: int = _PAIRS_PER_GROUP, seed: int = 0
) -> pd.DataFrame:
    """Return the mean y, a and w of `pair_groups` pairs at each of ``steps``.

    One row per (step, pair group): ``step, pairs, n_pairs, y, a, w``. Needs run targets.
    """
    groups = pair_groups(np.asarray(run.targets), n_pairs, seed)
    rows = []
    for step in np.asarray(steps):
        out = run.outputs(int(step))
        Yhat = out.reshape(out.shape[0], -1)
        Y = target_matrix(run.targets, Yhat.shape[1])
        for group, pairs in groups.items():
            y = prediction_sq_distances(Yhat, pairs)
            a = alignment(Yhat, Y, pairs)
            rows.append(
                {"step": int(step), "pairs": group, "n_pairs": len(pairs)}
                | {"y": y.mean(), "a": a.mean(), "w": (y - a).mean()}
            )
    return pd.DataFrame(rows)


@register_section("alignment", "Prediction alignment")
def alignment_section(run: Run, ctx: ReportContext) -> str | Absent:
    """Mean y, a and w of sampled probe pairs at every analysed step, per pair group."""
    if run.targets is None:
        return Absent(
            "the run stored no probe targets; a = dŷ·dy needs them (Recorder(probe=(x, y)))."
        )
    if run.sample_ids.shape[0] < 2:
        return Absent("needs at least 2 probe samples to form a pair.")
    df = alignment_table(run, ctx.steps, seed=ctx.seed)
    fig = new_figure(4.0 * len(_QUANTITIES), 2.9, hspace=0.4, bottom=0.65)
    for ax, (q, title) in zip(fig.subplots(1, len(_QUANTITIES)), _QUANTITIES.items(), strict=True):
        for i, (group, g) in enumerate(df.groupby("pairs", sort=False)):
            ax.plot(g["step"], g[q], color=f"C{i}", marker=".", label=group)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_title(f"mean {title}", fontsize=9)
        step_axis(ax, df["step"])
        ax.legend(fontsize=7)
    last = df[df["step"] == df["step"].max()][["pairs", "n_pairs", "y", "a", "w"]]
    return (
        figure_html(fig, "prediction alignment over training")
        + paragraph(
            "For random pairs (i, j) of probe samples (seed "
            f"{ctx.seed}), dŷ = ŷ_j − ŷ_i is the difference of the model outputs and dy that "
            "of the targets (class labels one-hot encoded to the output width). a > 0: the "
            "outputs of the pair move apart along their target difference; w = y − a is the "
            "part of ‖dŷ‖² that does not (w = 0 when dŷ = dy). Same-class pairs have dy = 0, so "
            f"their a is 0 and w = y. At the last analysed step ({int(df['step'].max())}):"
        )
        + table_html(last)
    )
