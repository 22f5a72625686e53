"""Pictures of networks and runs: `ilsvrc draw`, `ilsvrc chart`, `ilsvrc plot`.

Every picture a command writes is opened and checked: its size, that it is not blank, and where the
answer is known, that it shows it (AlexNet's volumes and its two-GPU split, the FC share of the
parameters, one legend entry per run).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from ilsvrc import analyze, get_spec
from ilsvrc.cli import main, resolve
from ilsvrc.networks.spec import Conv, Linear, MaxPool
from ilsvrc.pictures.charts import chart_figure, share_lines
from ilsvrc.pictures.draw import Bar, Box, Branches, build_nodes, diagram_figure
from ilsvrc.pictures.plots import curves_figure, load_runs, plot_runs
from ilsvrc.training.metrics import load_run
from work import HANG_GUARD  # child-process timeouts: a hang guard only, never a time budget

BRANCHED = """
name: branchy
input: [3, 32, 32]
layers:
  - {type: conv, name: conv1, out_channels: 16, kernel: 3, padding: 1}
  - {type: relu}
  - {type: maxpool, kernel: 2}
  - type: concat
    name: inc
    branches:
      - {name: a, layers: [{type: conv, out_channels: 8, kernel: 1}]}
      - {name: b, layers: [{type: conv, out_channels: 8, kernel: 3, padding: 1}]}
      - name: c
        layers: [{type: maxpool, kernel: 3, stride: 1, padding: 1}, {type: conv, out_channels: 8, kernel: 1}]
  - type: residual
    name: res
    body: {layers: [{type: conv, out_channels: 24, kernel: 3, padding: 1}, {type: batchnorm}]}
  - {type: flatten}
  - {type: linear, name: fc, out_features: 10}
"""


def assert_picture(path: Path, min_size: tuple[int, int] = (600, 300)) -> np.ndarray:
    """The file is an image at least `min_size` (width, height) that is not blank; returns its pixels."""
    with Image.open(path) as im:
        assert im.width >= min_size[0] and im.height >= min_size[1], im.size
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 20, "the picture is nearly uniform"
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 100, f"only {len(colours)} colours"
    assert (pixels.min(axis=2) < 100).mean() > 0.005, "almost no dark ink (text, lines)"
    return pixels


def svg_texts(path: Path) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text())


# ---------------------------------------------------------------------------------------------------
# ilsvrc draw


def test_alexnet_diagram_labels_every_volume_with_its_size(tmp_path, capsys) -> None:
    out = tmp_path / "alexnet.svg"
    assert main(["draw", "alexnet", "-o", str(out)]) == 0
    assert f"written: {out}" in capsys.readouterr().out
    texts = svg_texts(out)
    report = analyze(get_spec("alexnet"))
    drawn = [r for r in report.leaves if isinstance(r.layer, (Conv, MaxPool, Linear))]
    for row in drawn:  # 55x55x96, 27x27x96, 27x27x256, ..., 13x13x256, 6x6x256, 4096, 4096, 1000
        assert str(row.output) in texts, row.name
    assert "227x227x3" in texts
    for expected in ("55x55x96", "27x27x256", "13x13x384", "13x13x256", "6x6x256"):
        assert expected in texts
    # kernel/stride between the boxes, parameters per layer
    assert {"11x11/4", "5x5/1 p2 g2", "3x3/1 p1", "3x3/1 p1 g2", "max 3x3/2"} <= set(texts)
    assert "34.9K params" in texts and "37.8M params" in texts


def test_alexnet_two_gpu_split_is_drawn_as_paired_boxes(tmp_path) -> None:
    nodes = build_nodes(analyze(get_spec("alexnet")))
    parts = {n.name(): n.parts for n in nodes}
    # conv1's output is split because conv2 reads it in two groups; conv3 reads across both halves
    assert parts == {"input": 1, "conv1": 2, "pool1": 2, "conv2": 2, "pool2": 2, "conv3": 2, "conv4": 2,
                     "conv5": 2, "pool5": 2, "fc6": 1, "fc7": 1, "fc8": 1}  # fmt: skip
    out = tmp_path / "alexnet.svg"
    main(["draw", "alexnet", "-o", str(out)])
    texts = svg_texts(out)
    assert texts.count("GPU 1") == 8 and texts.count("GPU 2") == 8
    assert "2 groups \u00d7 13x13x192" in texts
    torchvision = build_nodes(analyze(get_spec("alexnet-torchvision")))
    assert all(n.parts == 1 for n in torchvision)  # one GPU: no split


def test_alexnet_png_is_a_readable_picture(tmp_path) -> None:
    out = tmp_path / "alexnet.png"
    assert main(["draw", "alexnet", "-o", str(out)]) == 0
    pixels = assert_picture(out, (1000, 500))
    assert pixels.shape[1] <= 1800, "too wide to read when shown at a page's width"


@pytest.mark.parametrize("model", ["alexnet", "vgg16", "vgg19-bn", "zfnet", "alexnet-lecture", "branched"])
def test_no_label_overlaps_another_or_leaves_the_picture(model, tmp_path) -> None:
    if model == "branched":
        (tmp_path / "b.yaml").write_text(BRANCHED)
        model = str(tmp_path / "b.yaml")
    fig = diagram_figure(analyze(resolve(model)))
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in fig.axes[0].texts if t.get_text()]
    width, height = fig.get_size_inches() * fig.dpi
    for i, (text, box) in enumerate(boxes):
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, text
        for other, other_box in boxes[i + 1 :]:
            both = box.intersection(box, other_box)
            assert both is None or both.width < 0.5 or both.height < 0.5, (text, other)
    assert fig.get_size_inches()[0] <= 14, "rows wrap so that the picture stays readable"


def test_vgg_stages_are_decks_of_same_volume_convolutions() -> None:
    nodes = build_nodes(analyze(get_spec("vgg16")))
    decks = {n.name(): len(n.stats) for n in nodes if isinstance(n, Box) and n.stats and len(n.stats) > 1}
    assert decks == {"conv1_1\u2013conv1_2": 2, "conv2_1\u2013conv2_2": 2, "conv3_1\u2013conv3_3": 3,
                     "conv4_1\u2013conv4_3": 3, "conv5_1\u2013conv5_3": 3}  # fmt: skip
    conv3 = next(n for n in nodes if n.name().startswith("conv3"))
    # per layer: 3*3*128*256 + 256, then twice 3*3*256*256 + 256
    assert conv3.params_text() == "295K + 2\u00d7590K params"
    assert [n.name() for n in nodes if isinstance(n, Bar)] == ["fc6", "fc7", "fc8"]


def test_branches_are_drawn_between_a_fork_and_a_join(tmp_path) -> None:
    spec = tmp_path / "branchy.yaml"
    spec.write_text(BRANCHED)
    nodes = build_nodes(analyze(resolve(str(spec))))
    inc, res = (n for n in nodes if isinstance(n, Branches))
    assert [len(r.nodes) for r in inc.rows] == [1, 1, 2] and inc.labels == ["a", "b", "c"]
    assert res.labels == ["body", "identity"] and res.rows[1].nodes == []
    out = tmp_path / "branchy.svg"
    assert main(["draw", str(spec), "-o", str(out)]) == 0
    texts = svg_texts(out)
    assert {"a: 1x1/1", "b: 3x3/1 p1", "c: max 3x3/1 p1", "identity", "16x16x24", "+"} <= set(texts)
    png = tmp_path / "branchy.png"
    assert main(["draw", str(spec), "-o", str(png)]) == 0
    assert_picture(png, (500, 300))


def test_draw_of_the_tiny_spec_and_default_file_name(tiny, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["draw", tiny]) == 0
    assert capsys.readouterr().out == "written: tiny-diagram.png\n"
    assert_picture(tmp_path / "tiny-diagram.png", (500, 150))


# ---------------------------------------------------------------------------------------------------
# ilsvrc chart


def test_chart_shows_the_fc_share_of_parameters_from_the_report() -> None:
    report = analyze(get_spec("alexnet"))
    fig = chart_figure([report])
    params_ax, macs_ax = fig.axes[0], fig.axes[1]
    (shares,) = [t for t in params_ax.texts if t.get_gid() == "shares"]
    split = report.split()
    fc = re.search(r"FC: ([\d.]+)% of params, ([\d.]+)% of MACs", shares.get_text())
    assert float(fc.group(1)) == round(split["fc"]["params_pct"], 1) == 96.2
    assert float(fc.group(2)) == round(split["fc"]["macs_pct"], 1) == 8.1
    assert share_lines(report)[1] == "conv: 3.8% of params, 91.9% of MACs"
    # one bar per layer with weights, as tall as its parameters and its multiply-adds
    weight_rows = [r for r in report.leaves if isinstance(r.layer, (Conv, Linear))]
    assert [b.get_height() for b in params_ax.patches] == [r.params for r in weight_rows]
    assert [b.get_height() for b in macs_ax.patches] == [r.macs for r in weight_rows]
    assert [t.get_text() for t in params_ax.get_xticklabels()] == [r.name for r in weight_rows]


def test_chart_vs_puts_two_networks_on_one_scale(tmp_path) -> None:
    fig = chart_figure([analyze(get_spec("alexnet")), analyze(get_spec("vgg16"))])
    top_a, top_b, bottom_a, bottom_b = fig.axes[0], fig.axes[1], fig.axes[2], fig.axes[3]
    assert top_a.get_ylim() == top_b.get_ylim() and bottom_a.get_ylim() == bottom_b.get_ylim()
    assert len(top_a.patches) == 8 and len(top_b.patches) == 16
    assert "vgg16" in top_b.get_title(loc="left")
    out = tmp_path / "vs.png"
    assert main(["chart", "alexnet", "--vs", "vgg16", "-o", str(out)]) == 0
    assert_picture(out, (1000, 600))
    svg = tmp_path / "log.svg"
    assert main(["chart", "vgg16", "--log", "-o", str(svg)]) == 0
    assert "FC: 89.4% of params, 0.8% of MACs" in svg_texts(svg)


@pytest.mark.parametrize(
    "names,log",
    [(["alexnet"], True), (["alexnet"], False), (["alexnet", "vgg16"], True), (["vgg16-bn"], True),
     ([BRANCHED], True)],
)  # fmt: skip
def test_chart_header_title_note_and_legend_do_not_cover_each_other(names, log) -> None:
    """The --log note is longer: its end ran under the legend in a one-network chart."""
    from ilsvrc.networks.specfile import loads

    reports = [analyze(loads(n) if "\n" in n else get_spec(n)) for n in names]
    fig = chart_figure(reports, log=log)
    renderer = FigureCanvasAgg(fig).get_renderer()
    (note,) = [t for t in fig.texts if t.get_gid() == "note"]
    (legend,) = fig.legends
    parts = {"title": fig._suptitle, "note": note, "legend": legend}
    boxes = {k: a.get_window_extent(renderer) for k, a in parts.items()}
    boxes.update({f"panel {i}": ax.get_tightbbox(renderer) for i, ax in enumerate(fig.axes)})
    page = fig.bbox
    for name, box in boxes.items():
        assert box.x0 >= page.x0 and box.x1 <= page.x1 and box.y0 >= page.y0 and box.y1 <= page.y1, name
    for a in parts:  # each of the header's parts is clear of the others and of every panel
        for b, box in boxes.items():
            if a != b:
                assert not boxes[a].overlaps(box), f"{a} covers {b}"


# ---------------------------------------------------------------------------------------------------
# ilsvrc plot


def write_metrics(run: Path, epochs: int, speed: float, extra: str = "") -> None:
    run.mkdir(parents=True)
    lines = []
    for e in range(1, epochs + 1):
        lines.append(json.dumps({
            "epoch": e, "step": 10 * e, "train_loss": 2.3 / e, "train_top1_error": 0.9 / e,
            "val_top1_error": 0.95 / e, "val_top5_error": 0.5 / e, "lr": 0.01, "images_per_s": 100.0,
            "seconds": 60.0 * e / speed, "eval_seconds": 1.0, "complete": True,
        }))  # fmt: skip
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n" + extra)


def test_plot_overlays_runs_with_one_legend_entry_each(tmp_path, capsys) -> None:
    write_metrics(tmp_path / "fast", 4, speed=2.0)
    write_metrics(tmp_path / "slow", 3, speed=0.5, extra='{"epoch": 4, "step": 4')  # a crash cut it short
    runs = load_runs([tmp_path / "fast", tmp_path / "slow"])
    assert [len(rows) for _, rows in runs] == [4, 3]
    fig = curves_figure(runs)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["fast", "slow"]
    loss_epochs, loss_time, err_epochs, err_time = fig.axes
    slow_val = err_time.get_lines()[3]  # per run: val top-1, val top-5, train top-1
    assert list(slow_val.get_xdata()) == [2.0, 4.0, 6.0]  # minutes
    assert list(slow_val.get_ydata()) == [0.95, 0.475, 0.95 / 3]
    assert err_epochs.get_xlabel() == "epoch" and "minutes" in err_time.get_xlabel()
    out = tmp_path / "curves.png"
    assert main(["plot", str(tmp_path / "fast"), str(tmp_path / "slow"), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"written: {out}\n"
    assert_picture(out, (1000, 600))


def test_plot_errors_are_one_paragraph_and_exit_2(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "metrics.jsonl").write_text('{"epoch": 1, "ste')
    write_metrics(tmp_path / "ok", 2, speed=1.0)
    cases = {
        str(tmp_path / "missing"): "is not a directory",
        str(tmp_path / "empty"): "has no metrics.jsonl",
        str(tmp_path / "nothing"): "holds no metrics line with an epoch",
    }
    for run, message in cases.items():
        assert main(["plot", run, "-o", str(tmp_path / "c.png")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("ilsvrc: error: ") and message in err and err.count("\n") == 1
    assert main(["plot", str(tmp_path / "ok"), "-o", str(tmp_path / "c.jpg")]) == 2
    assert "end it in .png or .svg" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "ok"), "-o", str(tmp_path / "no" / "c.png")]) == 2
    assert "Cannot write" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_train_redraws_curves_without_failing_on_a_run_with_no_metrics_yet(tmp_path) -> None:
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "metrics.jsonl").write_text("")
    write_metrics(tmp_path / "old", 2, speed=1.0)
    out = plot_runs([tmp_path / "new", tmp_path / "old"], tmp_path / "curves.png")
    assert_picture(out, (1000, 600))
    with pytest.raises(Exception, match="holds no metrics line"):
        load_run(tmp_path / "new")


# ---------------------------------------------------------------------------------------------------
# No torch, as for every analysis


def test_picture_commands_do_not_import_torch(tmp_path) -> None:
    write_metrics(tmp_path / "run", 2, speed=1.0)
    code = (
        "import sys; from ilsvrc.cli import main; d = sys.argv[1]\n"
        "assert main(['draw', 'alexnet', '-o', d + '/a.svg']) == 0\n"
        "assert main(['chart', 'alexnet', '--vs', 'vgg16', '-o', d + '/c.png']) == 0\n"
        "assert main(['plot', d + '/run', '-o', d + '/p.png']) == 0\n"
        "assert main(['report', 'vgg16', '-o', d + '/r.html']) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    command = [sys.executable, "-c", code, str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 0, done.stderr
