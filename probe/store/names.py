"""Array names of a run: ``layer`` for a layer's plain output, ``layer:key`` for any other array.

Exports and reports name every recorded array this way (`probe.export.frames.select_arrays`);
`probe.store.run.Run.split_name` and `Run.acts` read the names back.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["split_array_name"]


def split_array_name(layers: Sequence[str], name: str) -> tuple[str, str | None] | None:
    """Return the layer and key of ``name`` (``layer`` or ``layer:key``), or None if no layer.

    The key is None for a bare layer. The layer is the longest of ``layers`` that ``name`` starts
    with (followed by ``:``), so keys and layer names may themselves hold ``:``.

    Examples
    --------
    >>> split_array_name(["attn", "attn:x"], "attn:x:acts.0")
    ('attn:x', 'acts.0')
    >>> split_array_name(["attn"], "attn"), split_array_name(["attn"], "mlp:acts")
    (('attn', None), None)
    """
    if name in layers:
        return name, None
    hits = [layer for layer in layers if name.startswith(layer + ":")]
    if not hits:
        return None
    layer = max(hits, key=len)
    return layer, name[len(layer) + 1 :]
