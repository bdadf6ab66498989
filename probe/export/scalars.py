"""TensorBoard scalars of a run: `to_tensorboard` writes its per-snapshot summaries."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probe.analysis.summaries import SUMMARY_NAMES, summaries
from probe.store import Run

__all__ = ["to_tensorboard"]

PathLike = str | os.PathLike[str]


def to_tensorboard(
    run: Run | PathLike,
    logdir: PathLike | Any,
    *,
    layers: Sequence[str] | None = None,
    key: str = "acts",
) -> Path:
    """Write the `summaries` of a run as TensorBoard scalars ``probe/<layer>/<name>`` at each step.

    Parameters
    ----------
    run : Run or path
        An opened run or its folder.
    logdir : str, path or torch.utils.tensorboard.SummaryWriter
        Folder for a new event file, or an open writer (e.g. a Lightning ``TensorBoardLogger``'s
        ``.experiment``), which is flushed but left open.
    layers : sequence of str, optional
        Layers to write (default: every recorded layer that has array ``key``).
    key : str
        Which recorded array of each layer.

    Returns
    -------
    Path
        The writer's log directory.

    Raises
    ------
    LayerNotInRunError
        A layer in ``layers`` was not recorded, or has no array ``key``.

    Notes
    -----
    The scalar's step is the run's optimizer step. Non-finite values (NaN where undefined, inf
    for a ``centroid_separation`` of collapsed classes) are not written.
    """
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

    frame = summaries(run, layers=layers, key=key)
    if isinstance(logdir, SummaryWriter):
        writer, own = logdir, False
    else:
        writer, own = SummaryWriter(log_dir=os.fspath(logdir)), True
    try:
        for row in frame.itertuples(index=False):
            for name in SUMMARY_NAMES:
                value = float(getattr(row, name))
                if math.isfinite(value):
                    writer.add_scalar(f"probe/{row.layer}/{name}", value, global_step=row.step)
        writer.flush()
    finally:
        if own:
            writer.close()
    return Path(writer.log_dir)
