"""The HTML run report: sections present or absent with a reason, self-contained, rendered."""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from torch import nn

import probe
from hooks import Recorder
from probe.cli.analyze import add_parser, default_out
from probe.errors import ConfigError, LayerNotInRunError, ProbeError
from probe.experiments.datasets import load_digits, stratified_probe
from probe.models import MLP
from probe.report import SECTIONS, Absent, build_report, register_section, write_report
from probe.report import page as report
from probe.report.alignment_section import alignment_table, pair_groups

ALL = ["curves", "summaries", "change", "clusters", "embedding", "nfa", "effective", "alignment"]
CHROMIUM = next(
    (p for p in map(shutil.which, ["chromium", "chromium-browser", "google-chrome"]) if p), None
)


@pytest.fixture(scope="module")
def digits_path(tmp_path_factory):
    """A digits MLP (layers.0, head) trained 30 Adam steps, recorded with weights and AGOP."""
    torch.manual_seed(0)
    x, y = load_digits(train=True)
    xt, yt = load_digits(train=False)
    idx = stratified_probe(yt, 60, seed=0)
    net = MLP(in_features=64, hidden=16, depth=1)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    path = tmp_path_factory.mktemp("report") / "digits.zarr"
    probe_set = (xt[idx], yt[idx], idx)
    with Recorder(
        net, nn.Linear, path, probe_set, every=[0, 10, 30], weights=True, agop=True
    ) as rec:
        for step in range(30):
            batch = torch.randint(0, len(x), (64,))
            out = net(x[batch])
            loss = nn.functional.cross_entropy(out, y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss.detach(), accuracy=(out.argmax(1) == y[batch]).float().mean())
            if step % 15 == 14:
                with torch.no_grad():
                    rec.log(test_loss=float(nn.functional.cross_entropy(net(xt), yt)))
    return path


@pytest.fixture(scope="module")
def digits_html(digits_path):
    return build_report(digits_path, max_steps=3, progress=False)


def sections(text):
    """Return {section id: inner HTML} of a report."""
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', text, flags=re.S))


def record_tiny(path, x, y, steps=3):
    """Record Linear-Tanh-Linear full-batch SGD on (x, y) at every step, no metrics logged."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(x.shape[1], 8), nn.Tanh(), nn.Linear(8, y.shape[1]))
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    with Recorder(net, ["0", "1"], path, (x, y), every=1) as rec:
        for _ in range(steps):
            loss = 0.5 * ((net(x) - y) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step()
    return path


def test_digits_report_has_every_section_with_embedded_figures(digits_html):
    found = sections(digits_html)
    assert list(found) == ALL
    for key in [k for k in ALL if k != "effective"]:
        images = re.findall(r'src="data:image/png;base64,([^"]+)"', found[key])
        assert images, key
        assert all(base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n" for img in images)
    assert "exactly 2 samples; the run has 60" in found["effective"]
    assert "(absent)" in digits_html.split('id="curves"')[0]  # the contents mark it
    # the tables name what was computed: cluster metrics per layer, NFA measures per power
    assert "linear_probe_accuracy" in found["clusters"] and "layers.0" in found["clusters"]
    assert "pearson" in found["nfa"] and "offdiag" in found["nfa"]
    # header: run path, config, analysed steps (max_steps=3 keeps first and last)
    assert "digits.zarr" in digits_html and "analysed steps</th><td>0, 10, 30" in digits_html


def test_report_has_no_external_references(digits_html):
    assert re.findall(r'src="([^"]{5})', digits_html) == ["data:"] * digits_html.count('src="')
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', digits_html))
    for external in ("http://", "https://", "<link", "<script", "url("):
        assert external not in digits_html


def test_sections_that_lack_data_say_why(tmp_path):
    x, y = torch.randn(8, 3), torch.randn(8, 2)  # regression targets, no metrics, no AGOP
    found = sections(build_report(record_tiny(tmp_path / "bare.zarr", x, y), progress=False))
    absent = {k: v for k, v in found.items() if 'class="absent"' in v}
    assert set(absent) == {"curves", "clusters", "nfa", "effective"}
    assert "logged no metrics" in absent["curves"]
    assert "not integer class labels (dtype float32, shape (8, 2))" in absent["clusters"]
    assert "no AGOP was recorded" in absent["nfa"]
    assert "exactly 2 samples; the run has 8" in absent["effective"]
    assert "<img" in found["embedding"] and "<img" in found["summaries"]


def test_two_point_run_gets_the_effective_theory_fit(tmp_path):
    x, y = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]]), torch.tensor([[1.0], [-1.0]])
    path = record_tiny(tmp_path / "two.zarr", x, y, steps=12)
    text = build_report(path, sections=["effective", "embedding", "change"], progress=False)
    found = sections(text)
    assert "<img" in found["effective"] and 'class="absent"' not in found["effective"]
    head, first_row = re.findall(r"<tr[^>]*>(.*?)</tr>", found["effective"], flags=re.S)[:2]
    names = re.findall(r"<th>(.*?)</th>", head)
    row = dict(zip(names, re.findall(r"<td>(.*?)</td>", first_row), strict=True))
    assert row["layer"] == "0" and float(row["eta_h"]) > 0 and float(row["eta_y"]) > 0
    assert 0 <= float(row["rel_err_h"]) < 1  # the fitted ODE follows the measured h
    assert "at least 5 probe samples; the run has 2" in found["embedding"]
    assert "CKA of 2 centred samples is always 1" in found["change"]


@pytest.fixture
def no_sections():
    """Empty the section registry for one test, then restore it."""
    saved = dict(SECTIONS)
    SECTIONS.clear()
    yield
    SECTIONS.clear()
    SECTIONS.update(saved)


@pytest.mark.usefixtures("no_sections")
def test_section_errors_and_warnings_are_reported(digits_path):

    @register_section("fails", "Fails")
    def _fails(run, ctx):
        msg = "this run lacks what the analysis needs"
        raise ProbeError(msg)

    @register_section("warns", "Warns")
    def _warns(run, ctx):
        warnings.warn("a recoverable oddity", UserWarning, stacklevel=2)
        return f"<p>{len(ctx.layers)} layers at steps {ctx.steps.tolist()}</p>"

    found = sections(build_report(digits_path, max_steps=2, progress=False))
    assert "Not included: ProbeError: this run lacks what the analysis needs" in found["fails"]
    assert "2 layers at steps [0, 30]" in found["warns"]
    assert "UserWarning: a recoverable oddity" in found["warns"]


@pytest.mark.usefixtures("no_sections")
def test_register_section_twice_needs_replace():
    register_section("x", "X")(lambda run, ctx: "a")
    with pytest.raises(ConfigError, match="section 'x' is already registered; pass replace=True"):
        register_section("x", "Y")(lambda run, ctx: "b")
    register_section("x", "Y", replace=True)(lambda run, ctx: Absent("none"))
    assert SECTIONS["x"].title == "Y"


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"sections": ["curves", "nope"]}, ConfigError, r"unknown report sections \['nope'\]"),
        ({"max_steps": 0}, ConfigError, "max_steps must be an int >= 1; got 0"),
        ({"method": "lda"}, ConfigError, "method must be one of .*; got 'lda'"),
        ({"layers": ["layers.9"]}, LayerNotInRunError, "No layer 'layers.9' in this run"),
    ],
)
def test_build_report_rejects_bad_options(digits_path, options, error, match):
    with pytest.raises(error, match=match):
        build_report(digits_path, progress=False, **options)


def test_pick_spreads_steps_over_snapshot_indices():
    steps = np.array([0, 1, 2, 4, 8, 16, 32, 64, 128, 256])
    np.testing.assert_array_equal(report._pick(steps, 4), [0, 4, 32, 256])
    np.testing.assert_array_equal(report._pick(steps, 20), steps)


def cli(argv):
    parser = argparse.ArgumentParser(prog="probe")
    add_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_analyze_writes_the_report(digits_path, tmp_path, monkeypatch, capsys):
    assert default_out("artifacts/mnist/run.zarr").as_posix() == "artifacts/mnist/report.html"
    assert default_out("runs/seed0.zarr").as_posix() == "artifacts/seed0/report.html"
    out = tmp_path / "r.html"
    assert cli(["analyze", str(digits_path), "--out", str(out), "--sections", "curves"]) == 0
    assert "Learning curves" in out.read_text() and f"report: {out}" in capsys.readouterr().out
    monkeypatch.chdir(tmp_path)  # the default path is relative: keep it under tmp_path
    argv = ["analyze", str(digits_path), "--sections", "nfa", "--no-progress", "--max-steps", "2"]
    assert cli(argv) == 0
    assert (tmp_path / "artifacts" / "digits" / "report.html").is_file()


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")
def test_headless_chromium_renders_the_report(digits_html, tmp_path):
    page, shot = tmp_path / "report.html", tmp_path / "shot.png"
    page.write_text(digits_html, encoding="utf-8")
    subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars"]
        + [f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (4000, 1280)
    dark = (pixels.mean(axis=2) < 0.5).mean()
    assert pixels.std() > 0.05 and dark > 0.005  # text and figures drawn, not a blank page


def test_write_report_creates_parents(digits_path, tmp_path):
    out = write_report(
        probe.open_run(digits_path), tmp_path / "a" / "b.html", sections=["nfa"], progress=False
    )
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_alignment_section_splits_class_pairs_and_matches_the_definitions(digits_path):
    run = probe.open_run(digits_path)
    text = sections(build_report(run, sections=["alignment"], progress=False))["alignment"]
    assert "<img" in text and "same class" in text and "different class" in text
    groups = pair_groups(run.targets, 1000, 0)
    same, diff = groups["same class"], groups["different class"]
    assert (run.targets[same[:, 0]] == run.targets[same[:, 1]]).all()
    assert (run.targets[diff[:, 0]] != run.targets[diff[:, 1]]).all()
    assert len(np.unique(np.r_[same, diff], axis=0)) == len(same) + len(diff)
    assert (np.r_[same, diff][:, 0] < np.r_[same, diff][:, 1]).all()
    # the section's means equal alignment_over_steps on the same pairs
    df = alignment_table(run, run.steps).set_index(["step", "pairs"])
    ref = probe.analysis.alignment.alignment_over_steps(run, diff)
    for t, step in enumerate(run.steps):
        row = df.loc[(int(step), "different class")]
        assert row["a"] == pytest.approx(ref["a"][t].mean(), rel=1e-12)
        assert row["y"] == pytest.approx(ref["y"][t].mean(), rel=1e-12)
        assert row["w"] == pytest.approx(ref["w"][t].mean(), rel=1e-12)
        same_row = df.loc[(int(step), "same class")]
        assert same_row["a"] == 0 and same_row["w"] == same_row["y"]  # dy = 0 within a class


def test_alignment_section_without_targets_says_why_and_regression_uses_all_pairs(tmp_path):
    x = torch.randn(8, 3)
    with Recorder(nn.Sequential(nn.Linear(3, 2)), ["0"], tmp_path / "r.zarr", x, every=1) as rec:
        rec.step()
    found = sections(build_report(tmp_path / "r.zarr", sections=["alignment"], progress=False))
    assert "stored no probe targets" in found["alignment"]
    y = torch.randn(8, 2)
    found = sections(
        build_report(
            record_tiny(tmp_path / "reg.zarr", x, y), sections=["alignment"], progress=False
        )
    )
    assert "all pairs" in found["alignment"] and "<img" in found["alignment"]
    assert list(pair_groups(y.numpy(), 5, 0)) == ["all pairs"]
    assert len(pair_groups(y.numpy(), 5, 0)["all pairs"]) == 5
