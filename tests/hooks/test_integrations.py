"""Lightning and Hugging Face callbacks, run with the real libraries on a tiny MLP (CPU)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from transformers import TrainerControl, TrainerState
from transformers.trainer_callback import CallbackHandler

import hooks.integrations
from hooks.errors import IntegrationError, IntegrationImportError, RecorderClosedError
from hooks.integrations.huggingface import ProbeTrainerCallback
from hooks.integrations.lightning import ProbeCallback
from probe.store import open_run


def _mlp():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def _data(n=48):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def _probe():
    g = torch.Generator().manual_seed(1)
    return torch.randn(20, 8, generator=g), torch.randint(0, 4, (20,), generator=g)


def _no_hooks(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ---------------------------------------------------------------- Lightning
class TinyModule(pl.LightningModule):
    def __init__(self, fail_at=None):
        super().__init__()
        torch.manual_seed(0)
        self.net = _mlp()
        self.fail_at = fail_at
        self.losses = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at:
            msg = "boom in training_step"
            raise RuntimeError(msg)
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(module, callback, max_steps=6, ckpt_path=None, **kwargs):
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
        **kwargs,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # num_workers and log-every-n hints on a tiny loader
        trainer.fit(module, DataLoader(TensorDataset(*_data()), batch_size=4), ckpt_path=ckpt_path)
    return trainer


def test_lightning_records_snapshots_and_loss(tmp_path):
    module = TinyModule()
    x, y = _probe()
    cb = ProbeCallback(["net.0", "net.2"], tmp_path / "run.zarr", (x, y), every=2)
    _fit(module, cb)
    run = open_run(tmp_path / "run.zarr")
    assert run.steps.tolist() == [0, 2, 4, 6]
    m = run.metrics()
    assert m["step"].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(m["loss"], module.losses, rtol=1e-6)
    assert (m["epoch"] == 0).all()
    # The last snapshot is the trained model's output on the probe set.
    module.eval()
    with torch.no_grad():
        np.testing.assert_allclose(run.acts("net.2", 6), module(x).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(run.targets, y.numpy())
    assert _no_hooks(module)
    with pytest.raises(RecorderClosedError, match="this Recorder is closed"):
        cb.recorder.step()


def test_lightning_accumulation_logs_the_step_mean_loss(tmp_path):
    module = TinyModule()
    cb = ProbeCallback(["net.2"], tmp_path / "run.zarr", _probe(), every=1)
    _fit(module, cb, max_steps=3, accumulate_grad_batches=2)
    run = open_run(tmp_path / "run.zarr")
    assert run.steps.tolist() == [0, 1, 2, 3]
    m = run.metrics()
    assert m["step"].tolist() == [1, 2, 3]
    expected = np.asarray(module.losses).reshape(3, 2).mean(axis=1)
    np.testing.assert_allclose(m["loss"], expected, rtol=1e-6)


def test_lightning_exception_closes_run_and_keeps_snapshots(tmp_path):
    module = TinyModule(fail_at=3)
    cb = ProbeCallback(["net.0"], tmp_path / "run.zarr", _probe(), every=2)
    with pytest.raises(RuntimeError, match="boom in training_step"):
        _fit(module, cb)
    run = open_run(tmp_path / "run.zarr")
    assert run.steps.tolist() == [0, 2]  # no final snapshot after an error
    assert run.metrics()["step"].tolist() == [1, 2, 3]
    assert _no_hooks(module)
    with pytest.raises(RecorderClosedError, match="this Recorder is closed"):
        cb.recorder.step()


def test_lightning_resume_from_checkpoint(tmp_path):
    module = TinyModule()
    store = tmp_path / "run.zarr"
    trainer = _fit(module, ProbeCallback(["net.0"], store, _probe(), every=2), max_steps=4)
    ckpt = tmp_path / "step4.ckpt"
    trainer.save_checkpoint(ckpt)

    # Same store, resume=True: continues at step 5 with no duplicate step.
    _fit(TinyModule(), ProbeCallback(["net.0"], store, _probe(), every=2, resume=True), 6, ckpt)
    run = open_run(store)
    assert run.steps.tolist() == [0, 2, 4, 6]
    assert run.metrics()["step"].tolist() == [1, 2, 3, 4, 5, 6]

    # A fresh store: the restored model is step 4, never step 0.
    fresh = tmp_path / "fresh.zarr"
    resumed = TinyModule()
    _fit(resumed, ProbeCallback(["net.0"], fresh, _probe(), every=2), 6, ckpt)
    run = open_run(fresh)
    assert run.steps.tolist() == [4, 6]
    assert run.metrics()["step"].tolist() == [5, 6]
    np.testing.assert_allclose(run.acts("net.0", 4), open_run(store).acts("net.0", 4), rtol=1e-6)


# ---------------------------------------------------------------- Hugging Face
class DictNet(nn.Module):
    """A plain module the Trainer accepts: forward returns a dict with ``loss``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = _mlp()
        self.losses = []

    def forward(self, x, labels=None):
        logits = self.net(x)
        if labels is None:
            return {"logits": logits}
        loss = F.cross_entropy(logits, labels)
        if self.training:
            self.losses.append(loss.item())
        return {"loss": loss, "logits": logits}


class DictData(Dataset):
    def __init__(self):
        self.x, self.y = _data()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}


def _hf_loop(model, cb, max_steps=6):
    """Train ``model`` with transformers' own event dispatcher, in `Trainer`'s call order.

    `Trainer` itself needs accelerate (see `test_hf_trainer_records_snapshots_and_loss`); this
    drives the callback through the real `CallbackHandler`, `TrainerState` and `TrainerControl`.
    """
    x, y = _data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    handler = CallbackHandler([cb], model, None, opt, None)
    state, control = TrainerState(max_steps=max_steps), TrainerControl()
    steps_per_epoch = len(y) // 4
    control = handler.on_train_begin(None, state, control)
    for i in range(max_steps):
        control = handler.on_step_begin(None, state, control)
        batch = slice(4 * (i % steps_per_epoch), 4 * (i % steps_per_epoch) + 4)
        loss = model(x[batch], labels=y[batch])["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        state.global_step += 1
        state.epoch = i // steps_per_epoch + (i % steps_per_epoch + 1) / steps_per_epoch
        control = handler.on_step_end(None, state, control)
        logs = {"loss": loss.item(), "grad_norm": torch.tensor(0.5), "learning_rate": 0.1}
        control = handler.on_log(None, state, control, logs={**logs, "epoch": state.epoch})
    summary = {"train_runtime": 0.25, "train_loss": float(np.mean(model.losses))}
    handler.on_log(None, state, control, logs={**summary, "epoch": state.epoch})
    handler.on_train_end(None, state, control)


def test_hf_callback_records_snapshots_and_loss(tmp_path):
    model = DictNet()
    x, y = _probe()
    cb = ProbeTrainerCallback(["net.0", "net.2"], tmp_path / "run.zarr", (x, y), every=2)
    _hf_loop(model, cb, max_steps=14)  # 12 steps per epoch: steps 13, 14 are in epoch 1
    run = open_run(tmp_path / "run.zarr")
    assert run.steps.tolist() == [0, 2, 4, 6, 8, 10, 12, 14]
    assert run.epochs.tolist() == [0] * 7 + [1]
    m = run.metrics()
    assert m["step"].tolist() == [*range(1, 15), 14]  # the last row: the train summary
    per_step = m.iloc[:-1]
    np.testing.assert_allclose(per_step["loss"], model.losses, rtol=1e-6)
    assert per_step["epoch"].tolist() == [0] * 12 + [1, 1]
    assert (per_step["grad_norm"] == 0.5).all() and (per_step["learning_rate"] == 0.1).all()
    assert m["train_loss"].iloc[-1] == pytest.approx(np.mean(model.losses))
    with torch.no_grad():
        expected = model.eval().net(x).numpy()
    np.testing.assert_allclose(run.acts("net.2", 14), expected, rtol=1e-5, atol=1e-6)
    assert _no_hooks(model)


def test_hf_trainer_records_snapshots_and_loss(tmp_path):
    pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate")
    from transformers import Trainer, TrainingArguments  # heavy: only where it runs

    model = DictNet()
    x, y = _probe()
    cb = ProbeTrainerCallback(["net.0", "net.2"], tmp_path / "run.zarr", (x, y), every=2)
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=6,
        per_device_train_batch_size=4,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        disable_tqdm=True,
    )
    Trainer(model=model, args=args, train_dataset=DictData(), callbacks=[cb]).train()
    run = open_run(tmp_path / "run.zarr")
    assert run.steps.tolist() == [0, 2, 4, 6]
    m = run.metrics()
    per_step = m.dropna(subset=["loss"])
    assert per_step["step"].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(per_step["loss"], model.losses, rtol=1e-4)
    with torch.no_grad():
        expected = model.eval().net(x).numpy()
    np.testing.assert_allclose(run.acts("net.2", 6), expected, rtol=1e-5, atol=1e-6)
    assert _no_hooks(model)


def test_hf_callback_restored_step_and_log_filtering(tmp_path):
    """Called as the Trainer would after a restore at step 4, with a fresh store."""
    model, control = DictNet(), TrainerControl()
    cb = ProbeTrainerCallback(["net.0"], tmp_path / "run.zarr", _probe(), every=2)
    state = TrainerState(global_step=4, epoch=2.0)
    cb.on_train_begin(None, state, control, model=model)
    state.global_step, state.epoch = 5, 2.5
    cb.on_step_end(None, state, control)
    logs = {
        "loss": 0.5,
        "epoch": 2.5,
        "eval/acc": 0.75,
        "eval/top 5": 0.25,  # made storable, not an error inside the Trainer
        "note": "text",
        "flag": True,
    }
    cb.on_log(None, state, control, logs=logs)
    cb.on_train_end(None, state, control)
    cb.on_log(None, state, control, logs={"loss": 1.0})  # after the end: not recorded
    run = open_run(tmp_path / "run.zarr")
    assert run.steps.tolist() == [4, 5]  # 5: the final snapshot at close
    assert run.epochs.tolist() == [1, 2]  # state.epoch 2.0 ends epoch 1
    m = run.metrics()
    assert list(m.columns) == ["step", "epoch", "eval.acc", "eval.top_5", "loss"]
    assert m.values.tolist() == [[5, 2, 0.75, 0.25, 0.5]]


def test_hf_callback_other_process_records_nothing(tmp_path):
    cb = ProbeTrainerCallback(["net.0"], tmp_path / "run.zarr", _probe(), every=2)
    state = TrainerState(is_world_process_zero=False)
    cb.on_train_begin(None, state, TrainerControl(), model=DictNet())
    assert cb.recorder is None
    assert not (tmp_path / "run.zarr").exists()


def test_no_model_at_train_begin_raises(tmp_path):
    cb = ProbeTrainerCallback(["net.0"], tmp_path / "run.zarr", _probe(), every=2)
    with pytest.raises(IntegrationError, match="needs the model being trained.*got NoneType"):
        cb.on_train_begin(None, TrainerState(), TrainerControl(), model=None)


# ---------------------------------------------------------------- imports
def test_import_hooks_needs_no_framework():
    code = (
        "import sys, hooks, hooks.integrations; "
        "assert not {'lightning', 'transformers'} & set(sys.modules), 'framework imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_attributes():
    assert hooks.integrations.ProbeCallback is ProbeCallback
    assert hooks.integrations.ProbeTrainerCallback is ProbeTrainerCallback
    with pytest.raises(AttributeError, match="has no attribute 'Nope'; it offers"):
        hooks.integrations.Nope  # noqa: B018


@pytest.mark.parametrize(
    ("module", "framework"),
    [("lightning", ["lightning", "lightning.pytorch"]), ("huggingface", ["transformers"])],
)
def test_missing_framework_raises(monkeypatch, module, framework):
    for name in framework:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` fail
    monkeypatch.delitem(sys.modules, f"hooks.integrations.{module}")
    with pytest.raises(IntegrationImportError, match=r"install it with `pip install \w+`"):
        importlib.import_module(f"hooks.integrations.{module}")
