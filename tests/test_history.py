"""`ilsvrc history`: the challenge's table and chart (issue 14, item 1)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ilsvrc.analysis.history import best_by_year, drops, history, largest_drop
from ilsvrc.cli import main
from ilsvrc.networks.history import ENTRIES, HUMAN, Entry
from ilsvrc.pictures.history import history_figure


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_the_analyzer_columns_are_the_summarys_own(capsys) -> None:
    table = run_json(capsys, "history", "--format", "json")
    networks = [e for e in table["entries"] if e["network"]]
    assert len(networks) == sum(1 for e in ENTRIES if e.model)
    for entry in networks:
        totals = run_json(capsys, "summary", entry["network"], "--format", "json")["totals"]
        assert entry["depth_lecture"] == totals["depth_lecture"]
        assert entry["params"] == totals["params"]
        assert entry["macs"] == totals["macs"]


def test_the_lectures_depths_and_the_classical_entries(capsys) -> None:
    table = run_json(capsys, "history", "--format", "json")
    by_year = {}
    for e in table["entries"]:
        by_year.setdefault(e["year"], []).append(e)
    # the lecture: 8, 8, 19, 22, 152 layers with weights for 2012-2015 (VGG counted as configuration E)
    depths = [e["depth_lecture"] for e in table["entries"] if e["network"]]
    assert depths == [8, 8, 19, 22, 152]
    # before 2012: hand-made features, no network and no analysis figures
    for year in (2010, 2011):
        (e,) = by_year[year]
        assert e["network"] is None and e["params"] is None and e["depth_lecture"] is None
    # every figure names where it comes from
    assert all(e["source"] for e in table["entries"]) and all(h["source"] for h in table["human"])


def test_the_largest_fall_is_2012() -> None:
    drop = largest_drop()
    assert drop.year == 2012 and drop.before == 25.8 and drop.after == 16.4
    assert drop.points == pytest.approx(9.4)
    # each year's best falls, every year
    assert all(d.points > 0 for d in drops())
    assert best_by_year()[2014] == min(e.top5_error for e in ENTRIES if e.year == 2014)


def test_a_year_of_two_entries_is_drawn_by_its_best() -> None:
    entries = [
        Entry(2000, "a", "t", 20.0, "m", None, "s"),
        Entry(2001, "b", "t", 12.0, "m", None, "s"),
        Entry(2001, "c", "t", 10.0, "m", None, "s"),
        Entry(2002, "d", "t", 9.0, "m", None, "s"),
    ]
    assert best_by_year(entries) == {2000: 20.0, 2001: 10.0, 2002: 9.0}
    assert [d.points for d in drops(entries)] == [10.0, 1.0]


@pytest.mark.parametrize("fmt", ["text", "markdown", "csv", "latex"])
def test_every_format_has_every_entry(capsys, fmt: str) -> None:
    assert main(["history", "--format", fmt]) == 0
    out = capsys.readouterr().out
    for e in ENTRIES:
        assert e.entry in out and f"{e.top5_error:g}" in out
    if fmt != "csv":  # CSV is the rows alone
        percent = "\\%" if fmt == "latex" else "%"
        assert all(f"{h.top5_error:g}{percent}" in out for h in HUMAN)
    else:
        rows = list(csv.reader(io.StringIO(out)))
        header = rows[0]
        body = [r for r in rows[1:] if len(r) == len(header)]
        assert len(body) == len(ENTRIES)
        assert [r[header.index("network")] for r in body] == [e.model or "-" for e in ENTRIES]
        macs = [r[header.index("MACs")].replace(",", "") for r in body]
        assert macs == [str(r.macs) if r.macs else "-" for r in history()]  # exact in files


def test_the_chart_is_labelled_and_marks_the_fall() -> None:
    fig = history_figure(history())
    texts = [t.get_text() for t in fig.findobj(lambda o: hasattr(o, "get_text"))]
    joined = "\n".join(texts)
    for e in ENTRIES:
        assert f"{e.entry}  {e.top5_error:g}%" in joined
    for h in HUMAN:
        assert h.label in joined
    assert "2012: -9.4 points" in joined
    upper, lower = fig.axes[:2]
    assert "top-5 error" in upper.get_ylabel() and lower.get_yscale() == "log"
    assert [t.get_text() for t in lower.get_xticklabels()] == [str(y) for y in best_by_year()]
    depth = next(line for line in lower.get_lines() if line.get_gid() == "depth")
    assert list(depth.get_ydata()) == [r.depth for r in history() if r.report is not None]


def test_the_chart_command_writes_a_picture_that_is_not_blank(tmp_path: Path) -> None:
    out = tmp_path / "history.png"
    assert main(["history", "--chart", "-o", str(out)]) == 0
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape[0] > 600 and image.shape[1] > 900
    assert (image < 250).any(axis=2).mean() > 0.03  # ink on more than 3% of the page
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 50  # colours: points, lines, text
    svg = tmp_path / "history.svg"
    assert main(["history", "--chart", "-o", str(svg)]) == 0
    text = svg.read_text()
    assert 'id="drop"' in text and 'id="depth"' in text and 'id="macs"' in text


def test_bad_requests_exit_2_and_write_nothing(tmp_path: Path, capsys) -> None:
    assert main(["history", "-o", str(tmp_path / "h.png")]) == 2
    assert "--chart" in capsys.readouterr().err
    assert main(["history", "--chart", "-o", str(tmp_path / "h.txt")]) == 2
    assert ".png or .svg" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
