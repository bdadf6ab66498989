"""PEP 562 lazy attributes for `probe` and its subpackages: `attach`.

A package's submodules and re-exported names load on first attribute access, so ``import probe``
(and ``probe.analysis``) imports no torch, matplotlib or scikit-learn until an analysis needs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def attach(
    package: str, public: Iterable[str], names: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return ``__getattr__`` and ``__dir__`` for a package whose public names load lazily.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    public : iterable of str
        The package's ``__all__``: each name is a submodule (``package.<name>``, loaded on first
        access) unless ``names`` maps it to the module that defines it.
    names : mapping of str to str, optional
        Re-exported names, each mapped to the absolute module that defines it.

    Returns
    -------
    tuple
        ``__getattr__`` and ``__dir__`` for the package.
    """
    where = dict(names or {})
    modules = set(public) - set(where)
    listed = sorted(set(public))

    def __getattr__(name: str) -> Any:  # noqa: N807
        if name in modules:
            return importlib.import_module(f"{package}.{name}")
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        msg = f"module {package!r} has no attribute {name!r}; see {package}.__all__."
        raise AttributeError(msg)

    def __dir__() -> list[str]:  # noqa: N807
        return listed

    return __getattr__, __dir__
