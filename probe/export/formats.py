"""Export a run in a format chosen by name: `export_run` and its `FORMATS`.

parquet and csv tables of embeddings and npz activations come from `probe.export.frames`, the
TensorBoard projector from `probe.export.projector`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probe.errors import ConfigError
from probe.export.frames import embed_run, save_acts, write_table
from probe.export.projector import export_projector
from probe.store import Run, open_run

__all__ = ["FORMATS", "export_run"]

FORMATS = ("parquet", "csv", "npz", "tensorboard")
PathLike = str | os.PathLike[str]


def export_run(
    run: Run | PathLike,
    out: PathLike = "artifacts/export",
    *,
    fmt: str = "parquet",
    method: str | None = None,
    layers: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    tag: str | None = None,
    key: str | None = None,
    image_shape: Sequence[int] | None = None,
    **options: Any,
) -> list[Path]:
    """Write a run's layers at chosen steps in one of `FORMATS` under the folder ``out``.

    Parameters
    ----------
    run : Run or path
    out : str or path
        Output folder (created); for ``tensorboard`` the projector's log directory.
    fmt : {"parquet", "csv", "npz", "tensorboard"}
        ``parquet``/``csv``: the tidy embedding table ``<tag>_<method>.<fmt>`` plus
        ``<tag>_<method>.json``. ``npz``: raw activations ``<tag>_acts.npz``. ``tensorboard``:
        see `probe.export.projector.export_projector`.
    method : str, optional
        Projection (`probe.analysis.embed.METHODS`); default ``pca`` for tables. For
        ``tensorboard``, None writes the raw activations (the projector computes its own views) and
        a method writes the aligned coordinates. Not allowed for ``npz``.
    layers, steps, key
        As in `embed_run`: by default every per-sample array of every layer, named ``layer``
        (its ``acts``) or ``layer:key`` (``acts.0``, ``acts.hidden``, ``inputs`` ...); arrays
        that cannot be exported are skipped with a one-line `UserWarning` each.
    tag : str, optional
        Name prefix of the files and projector entries (default: the run folder's stem).
    image_shape : sequence of int, optional
        ``tensorboard`` only: shape of one probe input as an image, for the sprite.
    **options
        Keyword arguments of `probe.analysis.embed.embed`; not allowed for ``npz``.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ConfigError
        Unknown ``fmt``, a ``tag`` that is not a plain name, or an option that does not apply
        to ``fmt``; see also `embed_run`.
    """
    if fmt not in FORMATS:
        msg = f"fmt must be one of {list(FORMATS)}; got {fmt!r}."
        raise ConfigError(msg)
    run = _as_run(run)
    tag = run.path.stem if tag is None else tag
    if not tag or tag in (".", "..") or any(c in tag for c in "/\\"):
        msg = f"tag must be a plain file-name prefix (no '/', '\\', '.' or '..'); got {tag!r}."
        raise ConfigError(msg)
    out = Path(out)
    if fmt == "tensorboard":
        return export_projector(
            run,
            out,
            layers=layers,
            steps=steps,
            method=method,
            tag=tag,
            key=key,
            image_shape=image_shape,
            **options,
        )
    if image_shape is not None:
        msg = f"image_shape is for the tensorboard sprite; got it with fmt={fmt!r}. Drop it."
        raise ConfigError(msg)
    given = [k for k, v in {"method": method, **options}.items() if v is not None]
    if fmt == "npz" and given:
        msg = (
            f"npz holds raw activations; {given} apply only to parquet, csv and tensorboard. "
            "Drop them or pick another format."
        )
        raise ConfigError(msg)
    if fmt == "npz":
        return [save_acts(run, out / f"{tag}_acts.npz", layers=layers, steps=steps, key=key)]
    method = method or "pca"
    table, embeddings = embed_run(run, layers, steps, key=key, method=method, **options)
    return write_table(table, out / f"{tag}_{method}.{fmt}", embeddings=embeddings)


def _as_run(run: Run | PathLike) -> Run:
    """Return ``run`` opened when it is a path."""
    return run if isinstance(run, Run) else open_run(run)
