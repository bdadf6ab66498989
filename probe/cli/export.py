"""The ``probe export`` verb: `add_parser(sub)` registers it on the CLI's subparsers.

``probe export RUN --format parquet|csv|npz|tensorboard --method pca|mds|umap|tsne --layers ...
--steps ...`` writes a run's embeddings or activations with `probe.export.frames.export_run`.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

from probe.errors import ConfigError

__all__ = ["add_parser"]

_DESCRIPTION = (
    "Write a run's layers at chosen steps for other tools: a tidy embedding table "
    "(run, step, layer, sample_id, label, method, x, y[, z]) to parquet or CSV with the "
    "embedding's seed and settings in a JSON sidecar, raw activations to .npz, or the "
    "TensorBoard Embedding Projector (one tensor per layer and step, merged into the folder's "
    "projector_config.pbtxt). Every step is drawn in one frame fitted on a reference step."
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``export`` on ``sub`` (from ``parser.add_subparsers``); return its parser."""
    from probe.analysis.embed import METHODS
    from probe.export.formats import FORMATS

    p = sub.add_parser("export", help="export embeddings or activations", description=_DESCRIPTION)
    p.add_argument("run", help="path of a run store (folder written by hooks.Recorder)")
    p.add_argument(
        "--format",
        dest="fmt",
        choices=FORMATS,
        default="parquet",
        help="parquet/csv: tidy embedding table; npz: raw activations; tensorboard: Embedding "
        "Projector log folder (default: %(default)s)",
    )
    p.add_argument(
        "--method",
        choices=METHODS,
        help="projection (default pca for tables; for tensorboard, none writes the raw "
        "activations and the projector computes its own views)",
    )
    p.add_argument(
        "--layers",
        nargs="+",
        metavar="LAYER[:KEY]",
        help="arrays to export: a layer (every output and input array it recorded: acts, "
        "acts.0, acts.hidden, inputs ...) or layer:key for one of them. Outputs name an array "
        "'layer' for its acts, 'layer:key' for the others (default: every array of every layer; "
        "one that cannot be exported, e.g. batch-less, is skipped with a note on stderr)",
    )
    p.add_argument(
        "--steps",
        nargs="+",
        type=int,
        help="recorded steps; negative counts from the end (default: every snapshot)",
    )
    p.add_argument(
        "--fit",
        help="reference | joint | per_step | aligned (umap); default per method: pca, umap: "
        "reference; mds, tsne: per_step",
    )
    p.add_argument("--reference", type=int, help="step of the reference frame (default: last)")
    p.add_argument("--n-components", type=int, choices=[2, 3], help="2 or 3 (default 2)")
    p.add_argument("--seed", type=int, help="random_state of the projection (default 0)")
    p.add_argument("--pre-pca", type=int, help="PCA dimensions before mds/umap/tsne (default 50)")
    p.add_argument(
        "--align",
        action=argparse.BooleanOptionalAction,
        help="Procrustes-align every frame to the reference (default: per_step fits only)",
    )
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="estimator setting, e.g. n_neighbors=30 (value read as JSON, else as a string); "
        "repeatable (default: the method's defaults)",
    )
    p.add_argument(
        "--key",
        help="for bare --layers entries, only this array (acts, acts.0 ...; default: every "
        "array of the layer)",
    )
    p.add_argument("--tag", help="prefix of file and tensor names (default: the run's stem)")
    p.add_argument(
        "--image-shape",
        help="tensorboard sprite: shape of one flat probe input, e.g. 28,28 (default: images "
        "as stored, or the dataset's shape from the run's config)",
    )
    p.add_argument(
        "--out",
        default="artifacts/export",
        help="output folder; files of the same name in it are replaced (default: %(default)s)",
    )
    p.set_defaults(func=_cmd_export)
    return p


def _cmd_export(args: argparse.Namespace) -> int:
    from probe.cli._paths import check_output
    from probe.export.formats import export_run

    out = check_output(args.out, flag="--out", folder=True)
    options = {
        name: getattr(args, name)
        for name in ("fit", "reference", "n_components", "seed", "pre_pca", "align")
        if getattr(args, name) is not None
    }
    if args.settings:
        options["settings"] = _parse_settings(args.settings)
    shape = None if args.image_shape is None else _parse_shape(args.image_shape)
    with warnings.catch_warnings(record=True) as notes:
        warnings.simplefilter("always")
        paths = export_run(
            args.run,
            out,
            fmt=args.fmt,
            method=args.method,
            layers=args.layers,
            steps=args.steps,
            tag=args.tag,
            key=args.key,
            image_shape=shape,
            **options,
        )
    for note in dict.fromkeys(str(w.message) for w in notes):
        print(f"probe export: note: {note}", file=sys.stderr)
    for path in paths:
        print(path)
    return 0


def _parse_settings(items: list[str]) -> dict[str, Any]:
    """Return ``KEY=VALUE`` items as a dict, each value read as JSON when it parses."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            msg = f"--set must be KEY=VALUE (e.g. n_neighbors=30); got {item!r}."
            raise ConfigError(msg)
        try:
            out[name] = json.loads(text)
        except ValueError:
            out[name] = text
    return out


def _parse_shape(text: str) -> tuple[int, ...]:
    """Return ``"28,28"`` as ``(28, 28)``."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError as err:
        msg = f"--image-shape must be comma-separated ints such as 28,28; got {text!r}."
        raise ConfigError(msg) from err
