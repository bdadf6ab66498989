"""Export a run's embeddings and activations in formats other tools read.

`embed_run` embeds chosen layers and steps of a run into one tidy table
(`probe.analysis.embed.embed`), `write_table` writes it to parquet or CSV with the `Embedding`
records as a JSON sidecar and `save_acts` writes raw activations to .npz (`probe.export.formats`
picks one by name). `select_steps`, `select_arrays`, `layer_frames` and `probe_labels` read what
they need from a run.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from probe.analysis.embed import Embedding, embed
from probe.errors import ConfigError, InvalidArrayError, StepNotFoundError
from probe.store import Run, open_run

__all__ = [
    "embed_run",
    "layer_frames",
    "probe_labels",
    "save_acts",
    "select_arrays",
    "select_steps",
    "write_table",
]

PathLike = str | os.PathLike[str]
#: Snapshot arrays of a layer that hold one row per probe sample: outputs and inputs.
_ACTIVATIONS = ("acts", "inputs")


def select_steps(run: Run, steps: Sequence[int] | None = None) -> npt.NDArray[np.int64]:
    """Return the recorded steps named by ``steps`` (negative: from the end), sorted, unique.

    Raises
    ------
    StepNotFoundError
        The run has no snapshot, or one of ``steps`` is not recorded.
    """
    if run.n_snapshots == 0:
        msg = f"the run {str(run.path)!r} has no committed snapshot to embed or export."
        raise StepNotFoundError(msg)
    if steps is None:
        return np.unique(run.steps)
    return np.unique([run.steps[run.snapshot_index(s)] for s in steps]).astype(np.int64)


def select_arrays(
    run: Run, names: Sequence[str] | None = None, *, key: str | None = None
) -> list[str]:
    """Return the per-sample arrays named by ``names``, as ``layer`` or ``layer:key`` names.

    Parameters
    ----------
    run : Run
    names : sequence of str, optional
        Entries ``layer`` (every recorded output and input array of the layer: ``acts``,
        ``acts.0``, ``acts.hidden``, ``inputs``, ``inputs.0`` ..., see `Run.keys`) or
        ``layer:key`` (one array). Default: every layer.
    key : str, optional
        For bare ``layer`` entries, only this array (``acts``, ``acts.0`` ...).

    Returns
    -------
    list of str
        Array names without repeats, in run order: ``layer`` for a layer's ``acts`` (the names
        of earlier versions), ``layer:key`` for the others.

    Raises
    ------
    ConfigError
        ``names`` is empty, or no per-sample array remains (the reasons are listed).
    LayerNotInRunError
        An unknown layer or key (the message lists the closest names).

    Warns
    -----
    UserWarning
        One line per array left out: a batch-less array (no ``sample`` dimension, e.g. a
        position table computed inside the forward) has no row per probe sample to export.
    """
    entries = list(dict.fromkeys(run.layers if names is None else names))
    if not entries:
        msg = f"layers must name at least one recorded layer; got none. Recorded: {run.layers}."
        raise ConfigError(msg)
    chosen, skipped = [], []
    for entry in entries:
        layer, named = run.split_name(entry)
        if named is not None:
            keys = [named]
        elif key is not None:
            keys = [key]
        else:
            keys = [k for k in run.keys(layer) if k.split(".")[0] in _ACTIVATIONS]
        for k in keys:
            name = layer if k == "acts" else f"{layer}:{k}"
            dims = run.dims(layer, k)
            if "sample" in dims:
                chosen.append(name)
                continue
            note = (
                f"skipped {name!r}: a batch-less array (dims {dims}, no 'sample'), the same for "
                "every probe sample, has no row per sample to export."
            )
            skipped.append(note)
            warnings.warn(note, UserWarning, stacklevel=2)
    if not chosen:
        msg = f"no per-sample array to export among {entries}; " + " ".join(skipped)
        raise ConfigError(msg)
    return list(dict.fromkeys(chosen))


def layer_frames(
    run: Run, layer: str, steps: Iterable[int], *, key: str = "acts"
) -> npt.NDArray[Any]:
    """Return a layer's (or ``layer:key`` array's) activations at ``steps``: (n_steps, ...)."""
    return np.stack([run.acts(layer, int(s), key=key) for s in steps])


def probe_labels(run: Run) -> npt.NDArray[Any] | None:
    """Return one label per probe sample: the targets when scalar per sample, else None."""
    targets = run.targets
    if targets is None:
        return None
    flat = targets.reshape(targets.shape[0], -1)
    return flat[:, 0] if flat.shape[1] == 1 else None


def embed_run(
    run: Run | PathLike,
    layers: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    *,
    key: str | None = None,
    run_name: str | None = None,
    **options: Any,
) -> tuple[pd.DataFrame, list[Embedding]]:
    """Embed each chosen layer of a run across the chosen steps; stack the tidy tables.

    Parameters
    ----------
    run : Run or path
        A run (`probe.open_run`) or its folder.
    layers : sequence of str, optional
        Entries ``layer`` or ``layer:key`` (default: every per-sample array of every layer;
        see `select_arrays`). Each array gets its own projection, and its name (``layer`` for
        ``acts``, else ``layer:key``) in the ``layer`` column.
    steps : sequence of int, optional
        Steps with a snapshot, negative values counting from the end (default: all).
    key : str, optional
        For bare ``layer`` entries, only this element of the output (see `Run.keys`).
    run_name : str, optional
        Value of the ``run`` column (default: the run's path).
    **options
        Keyword arguments of `probe.analysis.embed.embed` (``method``, ``fit``, ``reference``,
        ``seed``, ``settings`` ...).

    Returns
    -------
    table : DataFrame
        Columns ``run, step, layer, sample_id, label, method, x, y[, z]``; ``label`` holds the
        probe targets when they are scalar per sample, NaN otherwise.
    embeddings : list of Embedding
        One record per layer.

    Raises
    ------
    ConfigError, LayerNotInRunError, StepNotFoundError
        See `select_arrays`, `select_steps` and `probe.analysis.embed.embed`.
    InvalidArrayError
        No chosen array can be embedded.

    Warns
    -----
    UserWarning
        One line per array left out (see `select_arrays`; an array `probe.analysis.embed.embed`
        rejects, e.g. fewer samples or features than it needs).
    """
    run = _as_run(run)
    chosen, names = select_steps(run, steps), select_arrays(run, layers, key=key)
    tables, embeddings, skipped = [], [], []
    for layer in names:
        try:
            table, emb = embed(
                layer_frames(run, layer, chosen),
                chosen.tolist(),
                sample_ids=run.sample_ids,
                labels=probe_labels(run),
                run=str(run.path) if run_name is None else run_name,
                layer=layer,
                **options,
            )
        except InvalidArrayError as err:  # too few samples or features, constant ...
            skipped.append(f"skipped {layer!r}: {err}")
            warnings.warn(skipped[-1], UserWarning, stacklevel=2)
            continue
        tables.append(table)
        embeddings.append(emb)
    if not tables:
        msg = "no array of the run could be embedded: " + " ".join(skipped)
        raise InvalidArrayError(msg)
    return pd.concat(tables, ignore_index=True), embeddings


def write_table(
    table: pd.DataFrame, path: PathLike, *, embeddings: Sequence[Embedding] = ()
) -> list[Path]:
    """Write a tidy table to parquet (``.parquet``) or CSV (``.csv``), records to ``.json``.

    Parameters
    ----------
    table : DataFrame
        From `embed_run` or `probe.analysis.embed.embed`.
    path : str or path
        Output file; its suffix picks the format. Parent folders are created.
    embeddings : sequence of Embedding
        Written as a JSON list next to the table (same name, suffix ``.json``), so the seed and
        settings travel with the coordinates.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    ConfigError
        The suffix is neither ``.parquet`` nor ``.csv``.

    Notes
    -----
    CSV keeps every float exactly (pandas writes the shortest repr), but its reader guesses
    types: read with ``pd.read_csv(path, dtype={"run": str, "layer": str})`` so that layers named
    ``"0"`` stay strings.
    """
    path = Path(path)
    if path.suffix not in (".parquet", ".csv"):
        msg = f"table path must end in .parquet or .csv; got {path.name!r}."
        raise ConfigError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        table.to_parquet(path, index=False, engine="pyarrow")
    else:
        table.to_csv(path, index=False)
    written = [path]
    if embeddings:
        doc = json.dumps([e.to_dict() for e in embeddings], indent=2)
        written.append(path.with_suffix(".json"))
        written[-1].write_text(doc + "\n")
    return written


def save_acts(
    run: Run | PathLike,
    path: PathLike,
    *,
    layers: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    key: str | None = None,
) -> Path:
    """Write raw activations of chosen layers and steps to one ``.npz`` file.

    Parameters
    ----------
    run : Run or path
    path : str or path
        Output file (``.npz`` is appended when missing).
    layers, steps, key
        As in `embed_run`.

    Returns
    -------
    Path
        The file, holding ``steps`` (n_steps,), ``sample_id`` (n_samples,), ``targets``
        (n_samples, ...) when recorded, and ``acts/<name>`` of shape (n_steps, n_samples, ...)
        per array in the stored dtype (``<name>`` as in `select_arrays`: ``layer`` or
        ``layer:key``). Read with ``np.load(path)``.

    Raises
    ------
    ConfigError, LayerNotInRunError, StepNotFoundError
        See `select_arrays` and `select_steps`.
    """
    run = _as_run(run)
    path = Path(path)
    path = path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
    chosen, names = select_steps(run, steps), select_arrays(run, layers, key=key)
    arrays: dict[str, Any] = {f"acts/{n}": layer_frames(run, n, chosen) for n in names}
    arrays.update(steps=chosen, sample_id=run.sample_ids)
    if run.targets is not None:
        arrays["targets"] = run.targets
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _as_run(run: Run | PathLike) -> Run:
    """Return ``run`` opened when it is a path."""
    return run if isinstance(run, Run) else open_run(run)
