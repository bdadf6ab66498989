"""Select modules of a model by dotted name, glob, module type or predicate.

`unwrap_model` sees through `torch.compile` and DDP wrappers; `layer_names` lists the names;
`match_glob` is the segment-wise glob (``*`` one name segment, ``**`` any number); `resolve_layers`
turns user selectors into ``{name: module}`` with nearest-match errors and a nested-match warning.
"""

from __future__ import annotations

import difflib
import fnmatch
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import cast

from torch import nn

from hooks.errors import LayerNotFoundError, NoLayersError, RecorderConfigError

__all__ = [
    "LayerSelector",
    "layer_names",
    "match_glob",
    "resolve_layers",
    "select_recorded",
    "unwrap_model",
]

LayerSelector = str | type | Callable[[str, nn.Module], bool]
_GLOB_CHARS = set("*?[")


def unwrap_model(model: nn.Module) -> nn.Module:
    """Return the module whose submodules run the forward: through `torch.compile` and DDP/DP.

    Hooks registered on the unwrapped module fire when the wrapper is called, and layer names are
    the user's own ``named_modules()`` paths (no ``_orig_mod.`` or ``module.`` prefix).
    """
    if not isinstance(model, nn.Module):
        msg = f"model must be a torch.nn.Module; got {type(model).__name__}."
        raise RecorderConfigError(msg)
    seen = 0
    while seen < 8:
        seen += 1
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod  # torch.compile's OptimizedModule
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        else:
            break
    return model


def layer_names(model: nn.Module) -> list[str]:
    """Return the dotted names of every submodule of ``model`` (the root, ``""``, excluded).

    Examples
    --------
    >>> from torch import nn
    >>> layer_names(nn.Sequential(nn.Linear(2, 3), nn.ReLU()))
    ['0', '1']
    """
    return [name for name, _ in unwrap_model(model).named_modules() if name]


def match_glob(name: str, pattern: str) -> bool:
    """Return whether the dotted ``name`` matches the glob ``pattern``, segment by segment.

    ``*`` matches exactly one name segment (or, inside a segment, any characters but ``.``),
    ``**`` as a whole segment matches any number of segments, zero included (pathlib's and
    .gitignore's convention), ``?`` one character and ``[...]`` one character of a set, both
    within a segment. A ``**`` inside a longer segment (``h**``) acts as ``*``.

    Examples
    --------
    >>> match_glob("h.1", "h.*"), match_glob("h.1.mlp", "h.*")
    (True, False)
    >>> match_glob("h", "h.**"), match_glob("h.1.mlp", "h.**"), match_glob("h.1.mlp", "**.mlp")
    (True, True, True)
    """
    return _match(tuple(name.split(".")), tuple(pattern.split(".")))


def _match(segments: tuple[str, ...], patterns: tuple[str, ...]) -> bool:
    if not patterns:
        return not segments
    head, rest = patterns[0], patterns[1:]
    if head == "**":
        return any(_match(segments[i:], rest) for i in range(len(segments) + 1))
    return bool(segments) and fnmatch.fnmatchcase(segments[0], head) and _match(segments[1:], rest)


def _warn_nested(selector: str, hits: Sequence[str]) -> None:
    """Warn when a glob selects a module and one of its descendants (their bytes count twice)."""
    nested = [n for n in hits if any(n.startswith(f"{a}.") for a in hits)]
    if not nested:
        return
    by_depth: dict[int, list[str]] = defaultdict(list)
    for n in hits:
        by_depth[n.count(".") + 1].append(n)
    listing = "; ".join(
        f"depth {d}: {', '.join(names[:6])}{f' (+{len(names) - 6} more)' if len(names) > 6 else ''}"
        for d, names in sorted(by_depth.items())
    )
    msg = (
        f"layer selector {selector!r} matches {len(hits)} modules at {len(by_depth)} depths, "
        f"{len(nested)} of them inside another match, so their outputs are recorded twice "
        f"({listing}). Use '*' for one level (e.g. {selector.replace('**', '*')!r}) or list "
        "the layers; hooks.list_layers(model, selector) previews a selection."
    )
    warnings.warn(msg, UserWarning, stacklevel=3)


def _closest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    if not close:
        # Prefix matches help with typos in the last component ("encoder.layr1").
        head = name.rsplit(".", 1)[0]
        close = [n for n in names if n.startswith(head)][:3]
    return ", ".join(repr(c) for c in close) if close else "none"


def _missing(what: str, model: nn.Module, names: Sequence[str]) -> LayerNotFoundError:
    msg = (
        f"No layer {what} in {type(model).__name__}; "
        f"closest: {_closest(what.strip(chr(39)), names)}. "
        f"See hooks.list_layers(model) ({len(names)} layers)."
    )
    return LayerNotFoundError(msg)


def resolve_layers(
    model: nn.Module,
    layers: LayerSelector | Iterable[LayerSelector],
    *,
    warn_nested: bool = True,
) -> dict[str, nn.Module]:
    """Resolve layer selectors to ``{dotted name: module}`` in the model's module order.

    Parameters
    ----------
    model : nn.Module
        The model (wrappers are unwrapped with `unwrap_model`).
    layers : str, type, callable or a list of them
        Exact dotted names (``"encoder.0"``), globs, module types (``nn.Linear``) or predicates
        ``f(name, module) -> bool``. Each selector must match at least one module. A glob's
        ``*`` matches one name segment, ``**`` any number (`match_glob`): ``"encoder.*"`` takes
        the children of ``encoder``, ``"encoder.**"`` it and every descendant, ``"**.attn"``
        every module named ``attn``.
    warn_nested : bool
        Warn (`UserWarning`) when one glob matches a module and one of its descendants, listing
        the matches by depth: both are recorded, so the descendant's bytes count twice.

    Returns
    -------
    dict of str to nn.Module

    Raises
    ------
    LayerNotFoundError
        A name or glob matches nothing; the message lists the closest names.
    NoLayersError
        The selection is empty.
    RecorderConfigError
        ``layers`` or a selector in it is of an unsupported type (e.g. None or an int).

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    >>> list(resolve_layers(net, nn.Linear))
    ['0', '2']
    """
    model = unwrap_model(model)
    modules = [(n, m) for n, m in model.named_modules() if n]
    names = [n for n, _ in modules]
    if isinstance(layers, (str, type)) or callable(layers):
        layers = [layers]
    if not isinstance(layers, Iterable):
        msg = (
            "layers must be a str, an nn.Module subclass, a callable (name, module) -> bool, "
            f"or a list of them (e.g. ['encoder.*', 'head']); got {layers!r}. "
            "See hooks.list_layers(model)."
        )
        raise RecorderConfigError(msg)
    selectors = list(layers)
    if not selectors:
        msg = (
            "layers must name at least one module; got an empty selection. "
            "See hooks.list_layers(model)."
        )
        raise NoLayersError(msg)
    chosen: set[str] = set()
    for sel in selectors:
        if isinstance(sel, str):
            if _GLOB_CHARS & set(sel):
                hits = [n for n in names if match_glob(n, sel)]
                if warn_nested:
                    _warn_nested(sel, hits)
            else:
                hits = [sel] if sel in names else []
            if not hits:
                raise _missing(repr(sel), model, names)
        elif isinstance(sel, type) and issubclass(sel, nn.Module):
            hits = [n for n, m in modules if isinstance(m, sel)]
            if not hits:
                msg = (
                    f"No module of type {sel.__name__} in {type(model).__name__}. "
                    f"See hooks.list_layers(model) ({len(names)} layers)."
                )
                raise LayerNotFoundError(msg)
        elif callable(sel):
            pred = cast("Callable[[str, nn.Module], bool]", sel)
            hits = [n for n, m in modules if pred(n, m)]
        else:
            msg = (
                "each layer selector must be a str, an nn.Module subclass or a callable "
                f"(name, module) -> bool; got {sel!r}."
            )
            raise RecorderConfigError(msg)
        chosen.update(hits)
    if not chosen:
        msg = (
            f"The layer selection matched no module of {type(model).__name__}; got {selectors!r}. "
            f"See hooks.list_layers(model) ({len(names)} layers)."
        )
        raise NoLayersError(msg)
    return {n: m for n, m in modules if n in chosen}


def select_recorded(
    root: nn.Module,
    recorded: dict[str, nn.Module],
    selectors: bool | LayerSelector | Iterable[LayerSelector],
    option: str,
) -> dict[str, nn.Module]:
    """Resolve a per-layer option's selectors to the recorded layers they match (True: all).

    Selectors follow `resolve_layers` (``*`` one name segment, ``**`` any number); a glob that
    matches nested modules does not warn here, since an option records nothing twice.

    Raises
    ------
    RecorderConfigError
        The selectors match no recorded layer.
    LayerNotFoundError
        A selector matches no module.
    """
    if selectors is False or selectors is None:
        return {}
    if selectors is True:
        return dict(recorded)
    chosen = resolve_layers(root, selectors, warn_nested=False)
    kept = {n: m for n, m in chosen.items() if n in recorded}
    if not kept:
        msg = (
            f"{option!r} selects no recorded layer (it matches {sorted(chosen)[:5]}); add them "
            f"to 'layers' or drop them from {option!r}."
        )
        raise RecorderConfigError(msg)
    return kept
