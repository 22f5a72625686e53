"""The benchmarks' own helpers (the benchmarks themselves are run by hand: `python -m benchmarks`)."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest


def harness():
    """benchmarks/harness.py (the benchmarks are scripts, not an installed package: see `script`)."""
    return script("harness")


def test_timestamps_labelled_utc_are_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """RESULTS.md's "... UTC" stamps: UTC whatever the machine's time zone (here UTC+5:30)."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert time.strftime("%H:%M", time.localtime(0)) == "05:30"  # the zone is in force
        stamp = harness().utc_stamp
        assert stamp(0) == "1970-01-01 00:00 UTC"
        assert stamp(1_795_000_000) == time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(1_795_000_000))
    finally:
        monkeypatch.undo()
        time.tzset()


def test_results_keep_the_blocks_of_the_cases_not_run(tmp_path: Path) -> None:
    """`python -m benchmarks --only zoo` replaces zoo's block and leaves the others as they were."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "__main__.py"
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location("benchmarks_main", path)
        main = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(main)
    finally:
        sys.path.remove(str(path.parent))
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nBefore.\n")
    main.write_results(results, {"zoo": "zoo, first run", "models": "models, first run"})
    results.write_text(results.read_text() + "\nAfter.\n")
    main.write_results(results, {"zoo": "zoo, second run", "data": "data, second run"})
    text = results.read_text()
    blocks = main.case_blocks(text)
    assert blocks == {"models": "models, first run", "zoo": "zoo, second run", "data": "data, second run"}
    # in the order of CASES, between the markers, the text around them kept
    assert list(blocks) == [c for c in main.CASES if c in blocks]
    assert text.startswith("# Benchmark results\n\nBefore.\n") and text.endswith("\nAfter.\n")
    assert text.count(main.START) == 1 and text.count(main.END) == 1 and "zoo, first run" not in text


def script(name: str):
    """benchmarks/NAME.py, loaded by path with the repository on sys.path (the scripts import
    benchmarks.harness), registered in sys.modules (their dataclasses look their module up)."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    try:
        path = root / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(root))
    return module


def test_the_paired_table_differences_each_seeds_own_views() -> None:
    """What flips and the EMA bought is the mean of each seed's own difference: two seeds a point apart
    whose flips both add half a point read +0.5 points with no spread (unpaired, the spread would be
    the seeds')."""
    fast = script("fast")
    names = [v[0] for v in fast.VIEWS]  # recipe, EMA without flips, own weights with flips, without
    pairs = {"fast:0": dict(zip(names, [0.780, 0.775, 0.778, 0.772])),
             "fast:1": dict(zip(names, [0.790, 0.785, 0.780, 0.776]))}  # fmt: skip
    curves = {e: [{"top1": pairs[e][names[0]]}] for e in pairs}
    section = fast.paired_section(curves, pairs)
    note = section.notes[0]
    assert "the flips bought +0.5 points (sd 0.0, +0.5 to +0.5)" in note
    assert "the EMA +0.6 points (sd 0.6, +0.2 to +1.0)" in note
    assert note.endswith("+0.0 points (sd 0.0, +0.0 to +0.0).")  # `ilsvrc eval` agreed with the runs
    assert [row[0] for row in section.rows] == [names[0] + " (the recipe)"] + names[1:]
    assert section.rows[3][1] == "77.4% (sd 0.3, 77.2-77.6)"
    assert fast.paired_section(curves, {}) is None
    # runs without an EMA: the own weights' two views, and what the flips bought on them
    own = {e: {n: pairs[e][n] for n in names[2:]} for e in pairs}
    section = fast.paired_section(curves, own)
    assert [row[0] for row in section.rows] == [names[2] + " (the recipe)", names[3]]
    assert "the flips bought +0.5 points (sd 0.1, +0.4 to +0.6)" in section.notes[0]
    assert "EMA" not in section.notes[0] and "--weights" not in section.notes[0]
    assert fast._points([-0.0003, 0.0002]) == "+0.0 points (sd 0.0, +0.0 to +0.0)"  # never "-0.0"


def test_paired_skips_the_average_of_a_run_that_kept_none(tmp_path) -> None:
    """`paired` asks for the EMA's views only when the run's saved recipe kept one."""
    fast = script("fast")
    for decay, expected in ((0.995, True), (None, False), (0.0, False)):
        (tmp_path / "config.json").write_text(json.dumps({"recipe": {"polyak_decay": decay}}))
        assert fast.averages(tmp_path) is expected


def test_fast_draws_the_projects_curves_only_from_the_three_seeds(tmp_path) -> None:
    """A run of a few extra entries leaves docs/fast-imagenette.png alone unless --png names a file."""
    fast = script("fast")
    project = fast.HERE.parent / "docs" / "fast-imagenette.png"
    assert fast.curves_png(None, ["fast:0", "fast:1", "fast:2", "cpu"]) == project
    assert fast.curves_png(None, ["fast:0", "with-lr0.2"]) is None
    assert fast.curves_png(tmp_path / "c.png", ["fast:0"]) == tmp_path / "c.png"


def test_conv_layouts_times_the_passes_autograd_runs() -> None:
    """Each timed pass computes what autograd computes for the convolution, in both layouts, and the
    stem's input gradient (which no training step needs) is left out."""
    import torch

    layouts = script("conv_layouts")
    conv = layouts.Conv("test", 4, 6, 5, 2, 2, 11)
    assert conv.out_size() == 6 and conv.macs(2) == 2 * 6 * 6 * 6 * 4 * 5 * 5
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 11, 11, generator=g).requires_grad_()
    w = torch.randn(6, 4, 5, 5, generator=g).requires_grad_()
    dy = torch.randn(2, 6, 6, 6, generator=g)
    y = torch.nn.functional.conv2d(x, w, None, 2, 2)
    y.backward(dy)
    for layout in layouts.LAYOUTS.values():
        run = layouts.passes(conv, 2, layout)
        torch.testing.assert_close(run["forward"](), y.detach(), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(run["input gradient"]()[0], x.grad, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(run["weight gradient"]()[1], w.grad, rtol=1e-4, atol=1e-4)
    assert layouts.wanted(conv) == layouts.PASSES
    assert "input gradient" not in layouts.wanted(layouts.Conv("stem", 3, 8, 7, 2, 3, 32))


def test_an_ablation_is_compared_with_the_recipes_run_of_its_own_seed() -> None:
    """`without-TRICK:SEED` against `fast:SEED`: seeds a point apart that each lose half a point without
    the trick read +0.5 points with no spread; an ablation whose seed has no recipe run is left out."""
    fast = script("fast")
    assert fast.ablation("without-flip:2") == ("without", "flip", 2)
    assert fast.ablation("with-smoothing") == ("with", "smoothing", 0)
    assert fast.ablation("without-nothing") is None and fast.ablation("with-fixres:x") is None

    def curve(top1: float, epoch: float = 10) -> list[dict]:
        return [{"top1": top1, "epoch": epoch, "wall": 21.0, "minutes": 21.0}]

    curves = {"fast:0": curve(0.78), "fast:1": curve(0.79, 11), "without-flip": curve(0.775, 8.8),
              "without-flip:1": curve(0.785), "without-resize:2": curve(0.70)}  # fmt: skip
    budget = {"budget": 21.2, "minutes": 20, "at_rate": 192, "rate": 181, "when": "now", "machine": "here"}
    tricks = fast.sections(curves, budget, "resnet18", None)[1]
    (row,) = tricks.rows
    assert row[0] == fast.TRICKS["flip"][0] and row[1] == "2"
    assert row[4] == "+0.5 points (sd 0.0, +0.5 to +0.5)"
    assert row[5] == "10.0, 8.8; 11.0, 10.0"  # the epochs each seed's pair fitted: with the trick first


def test_the_ablation_tables_heading_says_whether_its_runs_took_a_trick_out_or_added_one() -> None:
    fast = script("fast")
    curve = [{"top1": 0.8, "epoch": 10, "wall": 21.0, "minutes": 21.0}]
    budget = {"budget": 21.2, "minutes": 20, "at_rate": 192, "rate": 181, "when": "now", "machine": "here"}

    def title(*entries: str) -> str:
        return fast.sections({e: curve for e in ("fast:0", *entries)}, budget, "resnet18", None)[1].title

    assert "taken out" in title("without-flip") and "added" not in title("without-flip")
    assert "added" in title("with-lr0.2") and "taken out" not in title("with-lr0.2")
    assert "taken out of it or added to it" in title("without-flip", "with-lr0.2")


def test_fast_views_compares_each_view_with_the_recipes_on_the_same_weights() -> None:
    """The recipe's view leads whatever the order asked; each other view reads as the mean of each seed's
    own difference with it, so two seeds a point apart that each lose 0.4 points read -0.4 with no spread."""
    views = script("fast_views")
    assert views.parse_views("144@0.875, 128@1") == [(128, 0.875), (144, 0.875), (128, 1.0)]
    assert views.parse_views("128@0.875,112") == [(128, 0.875), (112, 0.875)]
    for bad in ("128@1.5", "x@0.875", "0@0.5"):
        with pytest.raises(ValueError, match="view"):
            views.parse_views(bad)
    found = {"fast:0": {(128, 0.875): 0.820, (144, 0.875): 0.816},
             "fast:1": {(128, 0.875): 0.830, (144, 0.875): 0.826}}  # fmt: skip
    table = views.section(found)
    assert [row[0] for row in table.rows] == [
        "128 px from 146 px (crop fraction 0.875) (the recipe)",
        "144 px from 165 px (crop fraction 0.875)",
    ]
    assert table.rows[0][2] == "" and table.rows[1][1] == "82.1% (sd 0.7, 81.6-82.6)"
    assert table.rows[1][2] == "-0.4 points (sd 0.0, -0.4 to -0.4)"
