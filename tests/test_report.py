"""`ilsvrc report`: one self-contained HTML page, checked as a file and as a browser shows it.

The browser test loads the page in headless Chromium (Debian's `chromium`, which .ci/run installs) at a
laptop's and a phone's width, takes screenshots, and checks that the tables and pictures rendered,
that no console message appeared, and that nothing is wider than a phone's screen.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ilsvrc import analyze, get_spec
from ilsvrc.cli import main, resolve
from ilsvrc.pictures.report import ReportError, build_page
from ilsvrc.training.metrics import run_network as resolve_run
from work import HANG_GUARD  # child-process timeouts: a hang guard only, never a time budget

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--disable-dev-shm-usage"]  # fmt: skip


class Page(HTMLParser):
    """Counts what the page holds: tags, attributes of images and links, table rows, visible text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: dict[str, int] = {}
        self.images: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.body_rows = 0
        self._in_body = False
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "img":
            self.images.append(a)
        for key in ("src", "href"):
            if a.get(key):
                self.urls.append(a[key])
        if tag == "tbody":
            self._in_body = True
        if tag == "tr" and self._in_body:
            self.body_rows += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_png(data: bytes, min_width: int = 300) -> None:
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG" and im.width >= min_width and im.height >= 100
    pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 15 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50


def test_report_page_is_self_contained_with_facts_diagram_table_and_charts(tmp_path, capsys) -> None:
    out = tmp_path / "alexnet.html"
    assert main(["report", "alexnet", "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"written: {out}\n"
    html = out.read_text()
    page = Page(html)
    # nothing outside the file: no scripts, style sheets, fonts or pictures fetched
    assert (
        "script" not in page.tags and "link" not in page.tags and "@import" not in html and "url(" not in html
    )
    assert all(u.startswith(("data:image/png;base64,", "#")) for u in page.urls), page.urls
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    text = " ".join(page.text)
    facts = ("AlexNet, as published", "Krizhevsky, Sutskever & Hinton", "ILSVRC-2012 winner", "60,965,224",
             "FC 96.2%, conv 3.8%", "conv 91.9%, FC 8.1%")  # fmt: skip
    for fact in facts:
        assert fact in text, fact
    report = analyze(get_spec("alexnet"))
    assert page.tags["table"] == 1 and page.body_rows == len(report.rows)
    assert "55x55x96" in text and "34,944" in text and "ilsvrc report alexnet -o" in text
    assert [i["alt"] for i in page.images] == [
        "Architecture diagram of alexnet",
        "Bar charts of parameters and multiply-adds per layer of alexnet",
    ]
    for img in page.images:
        assert_png(base64.b64decode(img["src"].split(",", 1)[1]), min_width=1000)


def test_report_errors_exit_2(tmp_path, capsys) -> None:
    assert main(["report", "alexnet", "-o", str(tmp_path / "r.txt")]) == 2
    assert "name it with .html" in capsys.readouterr().err
    assert main(["report", "alexnet", "--run", str(tmp_path / "none"), "-o", str(tmp_path / "r.html")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["report", "alexnet", "-o", str(tmp_path / "no" / "r.html")]) == 2
    assert "Cannot write" in capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(spec, tmp_path_factory) -> Path:
    """A run of the tiny spec (32 px, 10 classes) at 48 px on 4 classes: two short epochs (about 3 s)."""
    from ilsvrc.training.loop import make_config, train

    out = tmp_path_factory.mktemp("run") / "tiny-run"
    config = make_config(spec, "cpu", out=str(out), epochs=2, image_size=48, synthetic_classes=4,
                         synthetic_train=64, synthetic_val=32, workers=0, batch_size=32)  # fmt: skip
    return Path(train(config, progress=False, log=lambda *_: None))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "disc.png"
    im = Image.new("RGB", (48, 48), (210, 210, 250))
    im.paste((230, 30, 30), (12, 12, 36, 36))
    im.save(path)
    return path


def test_report_with_a_run_adds_its_metrics_curves_and_what_it_learned(
    trained, photo, spec, tmp_path
) -> None:
    out = tmp_path / "run.html"
    assert main(["report", spec, "--run", str(trained), "--image", str(photo), "-o", str(out)]) == 0
    page = Page(out.read_text())
    text = " ".join(page.text)
    assert "Training run" in text and "tiny-run" in text and "best val top-1 error" in text
    alts = [i["alt"] for i in page.images]
    assert alts[:3] == [
        "Architecture diagram of tiny",
        "Bar charts of parameters and multiply-adds per layer of tiny",
        "Training curves of tiny-run",
    ]
    try:
        import ilsvrc.pictures.viz  # noqa: F401
    except ImportError:
        assert "not available" in text
    else:  # each of the pictures of what the network learned is there, or says why not
        for title in ("First-layer filters", "Feature maps", "Occlusion", "Deconvnet projections"):
            assert title in alts or f"{title}: not drawn" in text, title
        assert "First-layer filters" in alts
    for img in page.images:
        assert_png(base64.b64decode(img["src"].split(",", 1)[1]))


def facts(html: str) -> dict[str, str]:
    """The page's facts (the header's, then the run's), as the page shows them."""
    return {k: unescape(v) for k, v in re.findall(r"<dt>([^<]*)</dt><dd>([^<]*)</dd>", html)}


def test_the_report_of_a_run_describes_the_network_as_the_run_trained_it(trained, spec, tmp_path, capsys):
    """tiny is 32 px with 10 classes; the run trained it at 48 px on 4 classes, and the page says so."""
    as_trained = analyze(resolve(spec).with_num_classes(4), (3, 48, 48))
    as_written = analyze(resolve(spec))
    assert as_trained.params != as_written.params
    for model in ([], [spec]):  # MODEL may be left out with --run
        out = tmp_path / f"run{len(model)}.html"
        assert main(["report", *model, "--run", str(trained), "-o", str(out)]) == 0
        html = out.read_text()
        shown = facts(html)
        assert shown["input"] == "48x48x3 (W x H x D)" and shown["outputs (classes)"] == "4"
        assert shown["parameters"].startswith(f"{as_trained.params:,} ")
        assert shown["as trained"] == "by the run tiny-run: its input size and classes"
        assert shown["image size"] == "48"
        assert f"{as_written.params:,}" not in html
    # the page's default name comes from the run's network when MODEL is left out
    here = tmp_path / "here"
    here.mkdir()
    done = subprocess.run([sys.executable, "-m", "ilsvrc", "report", "--run", str(trained)],
                          cwd=here, capture_output=True, text=True, timeout=HANG_GUARD)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [p.name for p in here.iterdir()] == ["tiny-report.html"]


@pytest.mark.parametrize(
    "args,match",
    [
        (["alexnet", "--run", "RUN"], "The run RUN trained SPEC, not alexnet (their layers differ)"),
        (["--run", "RUN", "--input", "64"], "--input does not go with --run"),
        ([], "Name the network to report on"),
    ],
)
def test_a_report_that_would_mix_two_networks_is_refused(trained, spec, args, match, tmp_path, capsys):
    out = tmp_path / "r.html"
    argv = [a.replace("RUN", str(trained)) for a in args]
    assert main(["report", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert match.replace("RUN", str(trained)).replace("SPEC", spec) in err and err.count("\n") == 1, err
    assert not out.exists()


def test_build_page_refuses_an_analysis_of_another_network_than_the_runs(trained) -> None:
    with pytest.raises(ReportError, match="is not of the network the run"):
        build_page(analyze(get_spec("alexnet")), run=trained)
    with pytest.raises(
        ReportError, match=r"tiny at 32x32x3 with 4 classes"
    ):  # the right layers, not the input
        build_page(analyze(resolve_run(trained).network, (3, 32, 32)), run=trained)


def test_the_runs_network_is_read_without_torch(trained) -> None:
    code = (
        "import sys; from ilsvrc.training.metrics import run_network; r = run_network(sys.argv[1]); "
        "assert (r.image_size, r.num_classes, r.network.input_shape) == (48, 4, (3, 48, 48)), r; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(trained)], capture_output=True, text=True, timeout=HANG_GUARD
    )
    assert done.returncode == 0, done.stderr


def test_a_picture_that_fails_leaves_a_note_not_a_broken_page(trained, monkeypatch, tmp_path) -> None:
    viz = pytest.importorskip("ilsvrc.pictures.viz")

    def broken(*args, **kwargs):
        raise RuntimeError("no filters today")

    monkeypatch.setattr(viz, "filters_figure", broken)
    html = build_page(analyze(resolve_run(trained).network), run=trained)
    assert "First-layer filters: not drawn (RuntimeError: no filters today)." in html
    assert "Give --image IMAGE to add feature maps" in html
    assert "Training curves of tiny-run" in html


# ---------------------------------------------------------------------------------------------------
# In a browser

PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const parts = [...document.querySelectorAll("main > *")];
  const wide = parts.filter(e => e.getBoundingClientRect().right > innerWidth + 1);
  document.title = "PROBE" + JSON.stringify({
    tables: document.querySelectorAll("table").length,
    rows: document.querySelectorAll("tbody tr").length,
    images: images.length,
    broken: images.filter(i => !i.complete || i.naturalWidth === 0).length,
    shown: images.filter(i => i.getBoundingClientRect().width > 100).length,
    overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    wide: wide.map(e => e.tagName + "#" + e.id),
  });
});
</script>"""


def chromium(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]


def probe(page: Path, width: int, tmp_path: Path) -> tuple[dict, list[str]]:
    """Load a copy of `page` with the probe script at `width` pixels: (what it found, console lines)."""
    copy = tmp_path / f"probe-{width}.html"
    copy.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    flags = [f"--window-size={width},900", "--virtual-time-budget=10000", "--dump-dom", copy.as_uri()]
    done = chromium(flags, tmp_path)
    found = re.search(r"<title>PROBE(.*?)</title>", done.stdout)
    assert found, f"the probe did not run: {done.stdout[:300]} {done.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"')), console_messages(done.stderr)


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (.ci/run installs it: apt-get install chromium)"
)
def test_report_renders_in_chromium_on_a_laptop_and_a_phone(tmp_path) -> None:
    page = tmp_path / "vgg16.html"
    assert main(["report", "vgg16", "-o", str(page)]) == 0
    rows = len(analyze(resolve("vgg16")).rows)
    for width in (1280, 390):
        found, console = probe(page, width, tmp_path)
        assert console == [], console
        assert found["tables"] == 1 and found["rows"] == rows
        assert found["images"] == 2 and found["broken"] == 0 and found["shown"] == 2, found
        assert found["overflow"] <= 0 and found["wide"] == [], f"wider than {width} px: {found}"
        shot = tmp_path / f"shot-{width}.png"
        done = chromium([f"--window-size={width},2000", f"--screenshot={shot}", page.as_uri()], tmp_path)
        assert shot.exists(), done.stderr[-2000:]
        with Image.open(shot) as im:
            assert im.size == (width, 2000)
            pixels = np.asarray(im.convert("RGB"))
        assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200, "a blank screenshot"
        dark = (pixels.min(axis=2) < 120).mean()
        assert 0.005 < dark < 0.5, f"text and pictures cover {dark:.1%} of the screen"
    # the check itself sees a console error and a broken picture when there are some
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><script>missing();</script><img src='data:image/png;base64,AAAA'></body></html>"
    )
    found, console = probe(bad, 800, tmp_path)
    assert any("Uncaught ReferenceError" in line for line in console) and found["broken"] == 1
