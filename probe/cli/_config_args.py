"""Command-line flags generated from an experiment's config dataclass, and back.

Each field ``name: T = default`` becomes ``--name`` (dashes for underscores) of type T; bools
become ``--name/--no-name``; ``T | None`` fields accept T and default to None. Every flag's help
shows its default; its text comes from ``helps`` or else from the field's entry in the class
docstring's numpydoc ``Attributes`` or ``Parameters`` section, whose type spec ``{"a", "b"}``
also gives the flag's choices.
"""

from __future__ import annotations

import argparse
import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields
from typing import Any, TypeVar

T = TypeVar("T")
_TYPES = {"int": int, "float": float, "str": str}
_SECTIONS = ("Attributes", "Parameters")


def add_config_args(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    helps: Mapping[str, str] | None = None,
    choices: Mapping[str, Sequence[str]] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Add one flag per field of the dataclass ``cls`` (``defaults`` override the class's).

    ``helps`` and ``choices`` override what the class docstring documents (see the module).
    """
    helps, choices, defaults = helps or {}, choices or {}, defaults or {}
    documented = field_docs(cls)
    for f in fields(cls):
        default = defaults.get(f.name, f.default if f.default is not MISSING else None)
        flag = "--" + f.name.replace("_", "-")
        text, allowed = helps.get(f.name), choices.get(f.name)
        doc_text, doc_choices = documented.get(f.name, ("", None))
        text = doc_text if text is None else text
        kind = str(f.type).replace(" | None", "").strip()
        if kind == "bool":
            state = {True: "on", False: "off"}.get(default, "none")
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=f"{text} (default: {state})".strip(),
            )
        else:
            parser.add_argument(
                flag,
                type=_TYPES.get(kind, str),
                default=default,
                choices=allowed if allowed is not None else doc_choices,
                help=f"{text} (default: %(default)s)".strip(),
            )


def field_docs(cls: type) -> dict[str, tuple[str, list[str] | None]]:
    """Return each field's (description, choices or None) documented in ``cls``'s docstring.

    The fields are read from the numpydoc ``Attributes`` and ``Parameters`` sections.

    Examples
    --------
    >>> class C:
    ...     '''Settings.
    ...
    ...     Attributes
    ...     ----------
    ...     loss : {"ce", "mse"}
    ...         Training loss.
    ...     '''
    >>> field_docs(C)
    {'loss': ('Training loss.', ['ce', 'mse'])}
    """
    lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
    out: dict[str, tuple[str, list[str] | None]] = {}
    section, name, spec = "", "", ""
    body: list[str] = []
    for i, line in enumerate([*lines, ""]):
        below = lines[i + 1] if i + 1 < len(lines) else ""
        if below and set(below) == {"-"}:  # a section heading
            section = line.strip()
            continue
        if section not in _SECTIONS or set(line) == {"-"}:
            continue
        if line and not line.startswith(" "):  # "name : type"
            if name:
                out[name] = (" ".join(body), _choices(spec))
            name, _, spec = (part.strip() for part in line.partition(":"))
            body = []
        elif line.strip():
            body.append(line.strip())
    if name:
        out[name] = (" ".join(body), _choices(spec))
    return out


def _choices(spec: str) -> list[str] | None:
    """Return the quoted names of a numpydoc type spec ``{"a", "b"}``, else None."""
    if not (spec.startswith("{") and spec.endswith("}")):
        return None
    return re.findall(r"[\"']([^\"']+)[\"']", spec) or None


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """Return ``cls`` built from the parsed flags that `add_config_args` added."""
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})  # type: ignore[arg-type]
