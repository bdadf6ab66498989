"""Write activations or embeddings in the TensorBoard Embedding Projector's format.

`write_projector` writes one ``tensors.tsv`` and ``metadata.tsv`` per tensor, an optional sprite,
and merges the entries into the folder's ``projector_config.pbtxt``; `make_sprite` tiles images
into one sprite; `export_projector` does both for chosen layers and steps of a run.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from probe.analysis.embed import embed
from probe.errors import (
    ConfigError,
    InvalidArrayError,
    ProjectorConfigError,
    ShapeMismatchError,
)
from probe.export.frames import layer_frames, probe_labels, select_arrays, select_steps
from probe.store import Run, open_run
from probe.validation import as_float_array

__all__ = [
    "CONFIG_NAME",
    "export_projector",
    "make_sprite",
    "write_projector",
]

CONFIG_NAME = "projector_config.pbtxt"
#: Largest sprite side the projector loads (its frontend's texture limit).
MAX_SPRITE_PX = 8192


#: Image shape of the flattened inputs of `probe.experiments.datasets`, read from a run's config.
_DATASET_IMAGES = {"mnist": (28, 28), "digits": (8, 8)}


def make_sprite(
    images: npt.ArrayLike, image_shape: Sequence[int] | None = None
) -> tuple[npt.NDArray[np.uint8], tuple[int, int]]:
    """Tile images row by row into one square sprite, as the projector expects.

    Parameters
    ----------
    images : array_like of shape (n, h, w), (n, c, h, w) or (n, h, w, c) with c in {1, 3}
        One image per sample (e.g. ``Run.probe_inputs``).
    image_shape : sequence of int, optional
        Shape of one image when ``images`` is flat, e.g. ``(28, 28)`` for (n, 784) MNIST rows.

    Returns
    -------
    sprite : ndarray of uint8 of shape (side*h, side*w) or (side*h, side*w, 3)
        ``side = ceil(sqrt(n))``; image ``i`` sits at row ``i // side``, column ``i % side``.
    image_dim : tuple of int
        ``(h, w)`` of one image.

    Raises
    ------
    ShapeMismatchError
        ``image_shape`` does not hold the features of one sample.
    InvalidArrayError
        ``images`` is not a finite numeric image stack.

    Notes
    -----
    Intensities are min-max scaled over the whole set (not per image) so that brightness is
    comparable between samples; a constant set becomes black.

    Examples
    --------
    >>> sprite, dim = make_sprite(np.arange(5 * 4).reshape(5, 2, 2))
    >>> sprite.shape, dim
    ((6, 6), (2, 2))
    """
    X = as_float_array(images, "images", min_ndim=2)
    if image_shape is not None:
        shape = tuple(int(s) for s in image_shape)
        if math.prod(shape) != math.prod(X.shape[1:]):
            msg = (
                f"image_shape must hold the {math.prod(X.shape[1:])} features of one sample "
                f"(images of shape {X.shape}); got {shape}."
            )
            raise ShapeMismatchError(msg)
        X = X.reshape(X.shape[0], *shape)
    X = _as_nhwc(X)
    n, h, w, c = X.shape
    lo, hi = X.min(), X.max()
    scaled = (X - lo) / (hi - lo) if hi > lo else np.zeros_like(X)
    side = math.ceil(math.sqrt(n))
    tiles = np.zeros((side * side, h, w, c), dtype=np.uint8)
    tiles[:n] = np.round(scaled * 255.0)
    sprite = tiles.reshape(side, side, h, w, c).transpose(0, 2, 1, 3, 4).reshape(side * h, -1, c)
    return (sprite[..., 0] if c == 1 else sprite), (h, w)


def _as_nhwc(X: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Return an image stack as (n, h, w, c), reading channels-first (torch) before last."""
    if X.ndim == 3:
        return X[..., None]
    if X.ndim == 4 and X.shape[1] in (1, 3):
        return X.transpose(0, 2, 3, 1)
    if X.ndim == 4 and X.shape[3] in (1, 3):
        return X
    msg = (
        f"images must have shape (n, h, w), (n, c, h, w) or (n, h, w, c) with c in (1, 3); "
        f"got {X.shape}. Pass image_shape=(h, w) for flat rows."
    )
    raise InvalidArrayError(msg)


def write_projector(
    logdir: str | os.PathLike[str],
    tensors: Mapping[str, npt.ArrayLike],
    metadata: pd.DataFrame,
    *,
    sprite: tuple[npt.NDArray[np.uint8], tuple[int, int]] | None = None,
) -> list[Path]:
    """Write tensors for the Embedding Projector and merge them into the folder's config.

    Parameters
    ----------
    logdir : str or path
        The projector's log directory (``tensorboard --logdir``); created if missing.
    tensors : mapping of str to array_like of shape (n_samples, n_features, ...)
        Tensor name to data. A name is also the folder, relative to ``logdir``, that receives
        its ``tensors.tsv`` and ``metadata.tsv``, so ``/`` separates its parts.
    metadata : DataFrame of n_samples rows
        Per-sample columns (at least 2, so the projector reads the first line as a header).
    sprite : tuple, optional
        ``make_sprite``'s output, attached to every tensor; written once as
        ``sprite_<hash>.png`` (named by content, so sprites of other probe sets survive).

    Returns
    -------
    list of Path
        The files written, the config last.

    Raises
    ------
    ConfigError
        A name part that is empty, ``.``, ``..`` or holds a backslash, or fewer than 2
        metadata columns.
    ShapeMismatchError
        A tensor's row count differs from the metadata's.
    ProjectorConfigError
        The existing config cannot be parsed.
    ImportError
        TensorBoard is not installed.

    Notes
    -----
    Entries already in the config keep their place unless a new tensor has the same name, which
    replaces it; so exporting other layers or steps to the same folder adds to what is there.
    Tensors are written as float32 with 9 significant digits, which the projector reads back
    exactly; both files are written with one vectorised call each.
    """
    pb2, text_format = _tensorboard_protos()
    logdir = Path(logdir)
    if metadata.shape[1] < 2:
        msg = (
            f"metadata must have at least 2 columns (a 1-column file has no header in the "
            f"projector); got {list(metadata.columns)}."
        )
        raise ConfigError(msg)
    config_path = logdir / CONFIG_NAME
    config = _read_config(config_path, pb2, text_format)
    # Check every tensor before writing any, so a bad one leaves the folder as it was.
    checked = {}
    for name, data in tensors.items():
        X = np.asarray(data, dtype=np.float32)
        X = X.reshape(X.shape[0], -1) if X.ndim else X
        if X.ndim != 2 or X.shape[0] != len(metadata):
            msg = f"tensor {name!r} must have {len(metadata)} rows like metadata; got {X.shape}."
            raise ShapeMismatchError(msg)
        checked[name] = (_entry_folder(name), X)
    logdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sprite_info = None
    if sprite is not None:
        png = _png_bytes(sprite[0])
        sprite_rel = f"sprite_{hashlib.sha256(png).hexdigest()[:12]}.png"
        (logdir / sprite_rel).write_bytes(png)
        written.append(logdir / sprite_rel)
        h, w = sprite[1]
        sprite_info = pb2.SpriteMetadata(image_path=sprite_rel, single_image_dim=[w, h])
    entries = []
    for name, (rel, X) in checked.items():
        folder = logdir / rel
        folder.mkdir(parents=True, exist_ok=True)
        np.savetxt(folder / "tensors.tsv", X, fmt="%.9g", delimiter="\t")
        metadata.to_csv(folder / "metadata.tsv", sep="\t", index=False, na_rep="")
        written += [folder / "tensors.tsv", folder / "metadata.tsv"]
        info = pb2.EmbeddingInfo(
            tensor_name=name,
            tensor_path=str(rel / "tensors.tsv"),
            metadata_path=str(rel / "metadata.tsv"),
        )
        info.tensor_shape.extend(X.shape)
        if sprite_info is not None:  # single_image_dim is (width, height)
            info.sprite.CopyFrom(sprite_info)
        entries.append(info)
    new = {e.tensor_name for e in entries}
    kept = [e for e in config.embeddings if e.tensor_name not in new]
    merged = pb2.ProjectorConfig()
    merged.CopyFrom(config)
    del merged.embeddings[:]
    merged.embeddings.extend(kept + entries)
    tmp = config_path.with_name(CONFIG_NAME + ".tmp")
    tmp.write_text(text_format.MessageToString(merged))
    os.replace(tmp, config_path)  # readers never see a half-written config
    return [*written, config_path]


def _tensorboard_protos() -> tuple[Any, Any]:
    """Return (projector_config_pb2, protobuf text_format), or raise a helpful ImportError."""
    try:
        from google.protobuf import text_format
        from tensorboard.plugins.projector import projector_config_pb2
    except ImportError as err:
        msg = (
            f"the projector export needs tensorboard ({err}); "
            "pip install tensorboard (or the 'dev' extra)."
        )
        raise ImportError(msg) from err
    return projector_config_pb2, text_format


def _read_config(path: Path, pb2: Any, text_format: Any) -> Any:
    """Return the ProjectorConfig at ``path`` (empty when there is none)."""
    config = pb2.ProjectorConfig()
    if path.is_file():
        try:
            text_format.Parse(path.read_text(), config)
        except text_format.ParseError as err:
            msg = (
                f"{path} is not a projector config ({err}); "
                "move it away or export to another folder."
            )
            raise ProjectorConfigError(msg) from err
    return config


def _entry_folder(name: str) -> PurePosixPath:
    """Return the folder of tensor ``name`` relative to the log directory."""
    parts = name.split("/")
    if any(p in ("", ".", "..") or "\\" in p for p in parts):
        msg = f"tensor name parts must be non-empty, not '.' or '..', without '\\'; got {name!r}."
        raise ConfigError(msg)
    return PurePosixPath(*parts)


def _png_bytes(image: npt.NDArray[np.uint8]) -> bytes:
    """Return ``image`` (h, w) or (h, w, 3) encoded as PNG."""
    from PIL import Image  # pillow comes with matplotlib

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def export_projector(
    run: Run | str | os.PathLike[str],
    logdir: str | os.PathLike[str],
    *,
    layers: Sequence[str] | None = None,
    steps: Sequence[int] | None = None,
    method: str | None = None,
    tag: str | None = None,
    key: str | None = None,
    image_shape: Sequence[int] | None = None,
    **options: Any,
) -> list[Path]:
    """Write a run's layers at chosen steps for the Embedding Projector, one tensor per pair.

    Parameters
    ----------
    run : Run or path
    logdir : str or path
        The projector's log directory; entries already there are kept.
    layers, steps, key
        As in `probe.export.frames.embed_run`.
    method : str, optional
        None: the raw activations, flattened to (n_samples, n_features), as tensor
        ``<tag>/<layer>/step_<step>``. A method (`probe.analysis.embed.METHODS`): the frames of
        `probe.analysis.embed.embed` (comparable across steps) as
        ``<tag>/<layer>/step_<step>/<method>``, with the `Embedding` record in
        ``<tag>/<layer>/<method>.json``.
    tag : str, optional
        First part of every tensor name (default: the run folder's stem).
    image_shape : sequence of int, optional
        Shape of one probe input as an image when the inputs are flat (see `make_sprite`).
    **options
        Keyword arguments of `probe.analysis.embed.embed` (with ``method``).

    Returns
    -------
    list of Path
        The files written, the config last.

    Raises
    ------
    ConfigError
        ``options`` without a ``method``; see also `write_projector`.
    LayerNotInRunError, StepNotFoundError
        Unknown layer, key or step.

    Notes
    -----
    ``metadata.tsv`` has the columns ``sample_id`` and ``label`` (the probe targets when scalar
    per sample, else empty). A sprite is attached when the probe inputs are images, when
    ``image_shape`` says how to read them, or when the run's config names a dataset of
    `probe.experiments.datasets` (``mnist``: 28x28, ``digits``: 8x8); a sprite wider than 8192 px is
    skipped with a warning.
    """
    run = run if isinstance(run, Run) else open_run(run)
    if options and method is None:
        msg = f"embedding options {sorted(options)} need a method; got method=None."
        raise ConfigError(msg)
    tag = run.path.stem if tag is None else tag
    chosen, names = select_steps(run, steps), select_arrays(run, layers, key=key)
    labels = probe_labels(run)
    metadata = pd.DataFrame(
        {"sample_id": run.sample_ids, "label": "" if labels is None else labels}
    )
    sprite = _run_sprite(run, image_shape)
    written: list[Path] = []
    for layer in names:
        frames = layer_frames(run, layer, chosen)
        if method is None:
            tensors = {f"{tag}/{layer}/step_{s}": X for s, X in zip(chosen, frames, strict=True)}
            written += write_projector(logdir, tensors, metadata, sprite=sprite)
            continue
        table, emb = embed(
            frames, chosen.tolist(), method=method, run=str(run.path), layer=layer, **options
        )
        coords = table[["x", "y", "z"][: emb.n_components]].to_numpy()
        coords = coords.reshape(len(chosen), len(metadata), emb.n_components)
        tensors = {
            f"{tag}/{layer}/step_{s}/{method}": c for s, c in zip(chosen, coords, strict=True)
        }
        written += write_projector(logdir, tensors, metadata, sprite=sprite)
        record = Path(logdir) / tag / layer / f"{method}.json"  # names checked by write_projector
        record.write_text(json.dumps(emb.to_dict(), indent=2) + "\n")
        written.append(record)
    config = Path(logdir) / CONFIG_NAME  # rewritten (merged) per layer, like the sprite
    return [p for p in dict.fromkeys(written) if p != config] + [config]


def _run_sprite(
    run: Run, image_shape: Sequence[int] | None
) -> tuple[npt.NDArray[np.uint8], tuple[int, int]] | None:
    """Return the sprite of the run's probe inputs, or None when they are not images."""
    inputs = run.probe_inputs
    if image_shape is None and inputs is not None and inputs.ndim == 2:
        image_shape = _DATASET_IMAGES.get(str(run.attrs.get("config", {}).get("dataset")))
    if inputs is None or (image_shape is None and inputs.ndim not in (3, 4)):
        return None
    sprite, dim = make_sprite(inputs, image_shape)
    if max(sprite.shape[:2]) > MAX_SPRITE_PX:
        warnings.warn(
            f"sprite of {len(inputs)} images of {dim[0]}x{dim[1]} px would be "
            f"{sprite.shape[0]}x{sprite.shape[1]} px, over the projector's {MAX_SPRITE_PX} px "
            "limit; no sprite written. Record a smaller probe set for thumbnails.",
            UserWarning,
            stacklevel=3,
        )
        return None
    return sprite, dim
