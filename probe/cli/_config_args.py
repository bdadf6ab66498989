"""Command-line flags generated from an experiment's config dataclass, and back.

Each field ``name: T = default`` becomes ``--name`` (dashes for underscores) of type T; bools
become ``--name/--no-name``; ``T | None`` fields accept T and default to None.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields
from typing import Any, TypeVar

T = TypeVar("T")
_TYPES = {"int": int, "float": float, "str": str}


def add_config_args(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    helps: Mapping[str, str] | None = None,
    choices: Mapping[str, Sequence[str]] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Add one flag per field of the dataclass ``cls`` (``defaults`` override the class's)."""
    helps, choices, defaults = helps or {}, choices or {}, defaults or {}
    for f in fields(cls):
        default = defaults.get(f.name, f.default if f.default is not MISSING else None)
        flag = "--" + f.name.replace("_", "-")
        text = helps.get(f.name, "")
        kind = str(f.type).replace(" | None", "").strip()
        if kind == "bool":
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=default, help=text or None
            )
        else:
            parser.add_argument(
                flag,
                type=_TYPES.get(kind, str),
                default=default,
                choices=choices.get(f.name),
                help=f"{text} (default: %(default)s)",
            )


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Return ``cls`` built from the parsed flags that `add_config_args` added."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})  # type: ignore[arg-type]
