"""The benchmarks' own helpers (the benchmarks themselves are run by hand: `python -m benchmarks`)."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest


def harness():
    """benchmarks/harness.py, loaded by path (the benchmarks are scripts, not an installed package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "harness.py"
    spec = importlib.util.spec_from_file_location("benchmarks_harness", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


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
