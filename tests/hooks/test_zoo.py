"""Model-zoo conformance: every leaf of models nobody here wrote, recorded as plain hooks see it.

Each model is built from a constructor or a tiny config (no weights downloaded) and recorded with
the probe set split into two batches (4 and 3 samples). Every stored array must equal what plain
forward hooks capture on the same batches, with the batch dimension (the array's ``batch_dim``
attr) moved first, or, for an output with no batch dimension, the value every batch repeats; and
`Run.to_xarray` must open the run.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import pytest
import torch
import zarr
from torch import nn

import probe
from hooks import Recorder, unwrap_model

N_PROBE, BATCH = 7, 4  # two probe batches: 4 and 3 samples


def _flat(
    out: object, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], torch.Tensor]]:
    if isinstance(out, torch.Tensor):
        yield path, out
    elif isinstance(out, Mapping):
        for k, v in out.items():
            yield from _flat(v, (*path, str(k)))
    elif isinstance(out, (tuple, list)):
        for i, v in enumerate(out):
            yield from _flat(v, (*path, str(i)))
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        for f in dataclasses.fields(out):
            yield from _flat(getattr(out, f.name), (*path, f.name))


def plain_capture(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, list]:
    """Return ``{store key: [tensor per probe batch]}`` from plain forward hooks (the reference)."""
    got: dict[str, list] = defaultdict(list)
    calls: Counter[str] = Counter()
    modules = dict(unwrap_model(model).named_modules())

    def hook(name: str) -> Callable:
        group = f"layers/{name}" if name else "outputs"

        def f(module: nn.Module, args: object, out: object) -> None:
            k = calls[name]
            calls[name] += 1
            call = (f"call{k}",) if k and name else ()
            for path, t in _flat(out):
                got[f"{group}/{'.'.join(['acts', *call, *path])}"].append(t.detach().clone())

        return f

    handles = [modules[n].register_forward_hook(hook(n)) for n in [*names, ""]]
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], BATCH):
                calls.clear()
                model(x[i : i + BATCH])
    finally:
        for h in handles:
            h.remove()
    return got


def leaves(model: nn.Module) -> list[str]:
    """Every leaf module, and modules with a batch-layout rule (attention, RNN) even if not."""
    return [
        n
        for n, m in unwrap_model(model).named_modules()
        if n and (not list(m.children()) or isinstance(m, nn.MultiheadAttention))
    ]


def check_model(model: nn.Module, x: torch.Tensor, tmp_path) -> dict[str, object]:
    """Record every leaf of ``model`` on ``x`` and compare each array with `plain_capture`.

    Returns the row of the zoo table: leaves recorded, arrays compared, max abs difference,
    seconds (recording, reference capture and comparison).
    """
    torch.manual_seed(0)
    names = leaves(model)
    t0 = time.perf_counter()
    store = tmp_path / "zoo.zarr"
    with Recorder(model, layers=names, store=store, probe=x, batch_size=BATCH) as rec:
        rec.snapshot()
    want = plain_capture(model, x, names)
    run = probe.open_run(store)
    sizes = [min(BATCH, N_PROBE - i) for i in range(0, N_PROBE, BATCH)]
    compared, worst = 0, 0.0
    for key, parts in want.items():
        if len(parts) != len(sizes):  # fired in some batches only: not recorded (warned)
            continue
        arr = zarr.open_array(store / key, mode="r")
        stored = np.asarray(arr[run.n_snapshots - 1])
        d = arr.attrs["batch_dim"]
        if d is None:
            assert all(torch.equal(p, parts[0]) for p in parts), key
            ref = parts[0]
        else:
            assert [p.shape[d] for p in parts] == sizes, (key, arr.attrs.asdict())
            ref = torch.cat([p.movedim(d, 0) for p in parts])
        ref = ref.float() if ref.is_floating_point() else ref
        assert stored.shape == tuple(ref.shape), key
        diff = float(np.max(np.abs(stored - ref.numpy()), initial=0.0))
        assert diff <= 1e-5 * (1 + float(ref.abs().max())) if ref.numel() else True, key
        compared, worst = compared + 1, max(worst, diff)
    ds = run.to_xarray()
    assert len(ds.data_vars) >= compared
    return {
        "leaves": len(names),
        "arrays": compared,
        "max_abs_diff": worst,
        "seconds": round(time.perf_counter() - t0, 2),
    }


# ----------------------------------------------------------------------------- models
def _tv(name: str) -> tuple[nn.Module, torch.Tensor]:
    import torchvision

    model = getattr(torchvision.models, name)(weights=None)
    return model, torch.randn(N_PROBE, 3, 32, 32)


def _vit() -> tuple[nn.Module, torch.Tensor]:
    from torchvision.models import VisionTransformer

    vit = VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    )
    return vit, torch.randn(N_PROBE, 3, 32, 32)


def _ids(vocab: int = 50, seq: int = 10) -> torch.Tensor:
    return torch.randint(0, vocab, (N_PROBE, seq), generator=torch.Generator().manual_seed(0))


def _gpt2() -> tuple[nn.Module, torch.Tensor]:
    from transformers import GPT2Config, GPT2Model

    cfg = GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=2, n_head=2, use_cache=False)
    return GPT2Model(cfg), _ids()


def _bert() -> tuple[nn.Module, torch.Tensor]:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    return BertModel(cfg), _ids()


def _t5() -> tuple[nn.Module, torch.Tensor]:
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=50, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2)
    return T5EncoderModel(cfg), _ids()


class Recurrent(nn.Module):
    """(batch, time, feature) in; an LSTM then a GRU in the given layout."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.lstm = nn.LSTM(3, 6, num_layers=2, batch_first=batch_first)
        self.gru = nn.GRU(6, 5, batch_first=batch_first)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        h = x if self.batch_first else x.transpose(0, 1)
        h = self.gru(self.lstm(h)[0])[0]
        return self.head(h if self.batch_first else h.transpose(0, 1))


def _recurrent(batch_first: bool) -> tuple[nn.Module, torch.Tensor]:
    return Recurrent(batch_first), torch.randn(N_PROBE, 9, 3)


class Encoder(nn.Module):
    """A transformer encoder with a learned position table, in either layout."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        self.batch_first = batch_first
        self.embed = nn.Embedding(20, 8)
        self.pos = nn.Embedding(9, 8)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=batch_first)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(8, 3)

    def forward(self, ids):
        h = self.embed(ids) + self.pos(torch.arange(ids.shape[1]))
        h = self.encoder(h if self.batch_first else h.transpose(0, 1))
        return self.head(h if self.batch_first else h.transpose(0, 1))


def _encoder(batch_first: bool) -> tuple[nn.Module, torch.Tensor]:
    return Encoder(batch_first), torch.randint(0, 20, (N_PROBE, 9))


def _compiled() -> tuple[nn.Module, torch.Tensor]:
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    return torch.compile(net, backend="eager"), torch.randn(N_PROBE, 8)


FAST = {
    "vit": _vit,
    "gpt2": _gpt2,
    "bert": _bert,
    "lstm_gru_seq_first": lambda: _recurrent(False),
    "lstm_gru_batch_first": lambda: _recurrent(True),
    "encoder_seq_first": lambda: _encoder(False),
    "encoder_batch_first": lambda: _encoder(True),
    "branchy": None,  # conftest's fixture: dict/tuple/None outputs, a module called twice
    "compiled": _compiled,
}
SLOW = {
    "resnet18": lambda: _tv("resnet18"),
    "mobilenet_v3_small": lambda: _tv("mobilenet_v3_small"),
    "convnext_tiny": lambda: _tv("convnext_tiny"),
    "swin_t": lambda: _tv("swin_t"),
    "efficientnet_b0": lambda: _tv("efficientnet_b0"),
    "densenet121": lambda: _tv("densenet121"),
    "regnet_y_400mf": lambda: _tv("regnet_y_400mf"),
    "t5_encoder": _t5,
}


@pytest.mark.parametrize("name", list(FAST))
def test_zoo(name, tmp_path, request):
    torch.manual_seed(0)
    build = FAST[name]
    model, x = build() if build else (request.getfixturevalue(name), torch.randn(N_PROBE, 8))
    assert check_model(model, x, tmp_path)["arrays"] >= 2


@pytest.mark.slow
def test_zoo_compiled_model_watched(tmp_path):
    """Hooks on a compiled model's modules fire inside its compiled forward (stream mode)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    model, x = torch.compile(net, backend="eager"), torch.randn(N_PROBE, 8)
    with Recorder(model, layers=["0", "2"], store=tmp_path / "r.zarr") as rec:
        for i in range(0, N_PROBE, BATCH):
            with rec.watch():
                model(x[i : i + BATCH])
    run = probe.open_run(tmp_path / "r.zarr")
    with torch.no_grad():
        np.testing.assert_allclose(run.stream("2").acts, net(x).numpy(), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLOW))
def test_zoo_slow(name, tmp_path):
    torch.manual_seed(0)
    model, x = SLOW[name]()
    assert check_model(model, x, tmp_path)["arrays"] >= 2
