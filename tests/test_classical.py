"""The pre-deep-era pipelines (`ilsvrc train sift-bow|hog-svm`, ilsvrc.training.classical): they learn
the built-in data, are deterministic by seed, cache their descriptors, and their run directories work
with `ilsvrc eval` and `ilsvrc predict` as a network's do."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("skimage")
pytest.importorskip("sklearn")

from ilsvrc.cli import main  # noqa: E402
from ilsvrc.training import classical  # noqa: E402
from ilsvrc.training.data import SyntheticShapes  # noqa: E402

SIZE = 64  # pixels
CLASSES = 10
SMALL = dict(data=None, image_size=SIZE, synthetic_train=400, synthetic_val=200, synthetic_classes=CLASSES,
             progress=False, log=lambda _: None)  # fmt: skip
SIFT = dict(words=64, sample=20_000)  # a small codebook: the data set is small


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """The folder conftest's autouse fixture gives every test as ILSVRC_CACHE_DIR, set for the module's
    own fixtures too (they run before it)."""
    return tmp_path_factory.getbasetemp() / "decoded-cache"


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir) -> dict[str, Path]:
    """One trained run of each pipeline on the built-in data (and sift-bow with Fisher vectors)."""
    root = tmp_path_factory.mktemp("classical")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ILSVRC_CACHE_DIR", str(cache_dir))
        return {
            "hog-svm": classical.train_classical("hog-svm", root / "hog", **SMALL),
            "sift-bow": classical.train_classical("sift-bow", root / "bow", **SMALL, **SIFT),
            "fisher": classical.train_classical(
                "sift-bow", root / "fv", encoding="fisher", words=8, sample=20_000, **SMALL
            ),
        }


def last_line(run: Path) -> dict:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()][-1]


@pytest.mark.parametrize("which", ["hog-svm", "sift-bow", "fisher"])
def test_the_classical_baseline_learns_the_built_in_data(runs, which) -> None:
    chance = 1 - 1 / CLASSES
    line = last_line(runs[which])
    assert line["val_top1_error"] <= chance / 2, line
    assert line["val_top5_error"] <= line["val_top1_error"]
    assert line["train_images"] == SMALL["synthetic_train"] and line["val_images"] == SMALL["synthetic_val"]
    config = json.loads((runs[which] / "config.json").read_text())
    assert config["classical"] is True and config["image_size"] == SIZE
    classes = json.loads((runs[which] / "classes.json").read_text())
    assert [c["index"] for c in classes] == list(range(CLASSES))


def test_the_run_directory_is_read_as_a_network_run_is(runs) -> None:
    from ilsvrc.pictures.plots import load_runs

    (label, rows), *_ = load_runs([runs["sift-bow"]])
    assert rows[-1]["val_top1_error"] == last_line(runs["sift-bow"])["val_top1_error"]
    assert (runs["sift-bow"] / classical.MODEL_FILE).is_file()


def test_eval_gives_the_run_s_own_errors_per_class_and_confusion(runs, capsys) -> None:
    run = runs["hog-svm"]
    assert main(["eval", str(run), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)
    line = last_line(run)
    assert result["top1_error"] == pytest.approx(line["val_top1_error"], abs=1e-6)
    assert result["top5_error"] == pytest.approx(line["val_top5_error"], abs=1e-6)
    confusion = np.asarray(result["confusion"])
    assert confusion.shape == (CLASSES, CLASSES) and confusion.sum() == result["images"] == line["val_images"]
    per_class = np.diag(confusion) / confusion.sum(axis=1)
    assert np.allclose(per_class, result["per_class_accuracy"], atol=1e-6)
    assert 1 - np.trace(confusion) / confusion.sum() == pytest.approx(result["top1_error"], abs=1e-6)
    assert (run / "eval-center.json").is_file() and (run / "confusion-center.png").stat().st_size > 0
    assert main(["eval", str(run), "--weights", "averaged"]) == 2  # it has no average to evaluate
    assert "holds no averaged weights" in capsys.readouterr().err


def test_predict_ranks_as_the_evaluation_does(runs, tmp_path, capsys) -> None:
    from PIL import Image

    run = runs["sift-bow"]
    model, config, classes, _ = classical.load_model(run)
    settings = config.settings.resolved()
    drawn = round(SIZE / classical.CROP_FRACTION)
    val = SyntheticShapes("val", drawn, CLASSES, SMALL["synthetic_val"], seed=0)
    features = classical.extract(val, "val", settings, progress=False, log=lambda _: None)
    assert features.extracted == 0  # the run cached them
    best = classical.scores(classical.encode(features.values, model, settings), model).argmax(axis=1)
    paths = []
    for i in range(4):
        path = tmp_path / f"val{i}.png"
        Image.fromarray(val[int(features.index[i])][0].permute(1, 2, 0).numpy()).save(path)  # lossless
        paths.append(str(path))
    assert main(["predict", str(run), *paths, "--top", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    firsts = [line for line in out if line.strip().startswith("1. ")]
    assert [f", class {classes[int(b)].index}):" in line for line, b in zip(firsts, best[:4])] == [True] * 4
    shares = [float(line.rsplit(": ", 1)[1]) for line in out if line.startswith("  ")]
    assert len(shares) == 12 and all(0 < p <= 1 for p in shares)


def test_the_same_seed_gives_identical_features_and_svms(tmp_path, monkeypatch) -> None:
    made = []
    small = {**SMALL, "synthetic_train": 160, "synthetic_val": 60}
    sift = {"words": 32, "sample": 5_000}
    for attempt in ("a", "b"):  # separate caches: both compute their descriptors
        monkeypatch.setenv("ILSVRC_CACHE_DIR", str(tmp_path / f"cache-{attempt}"))
        run = classical.train_classical("sift-bow", tmp_path / attempt, seed=3, **small, **sift)
        with np.load(run / classical.MODEL_FILE) as z:
            model = {k: z[k] for k in z.files}
        chunks = sorted((tmp_path / f"cache-{attempt}").rglob("chunk-*.npz"))
        made.append((model, [dict(np.load(c)) for c in chunks], last_line(run)))
    (m1, c1, l1), (m2, c2, l2) = made
    assert len(c1) == len(c2) > 0
    for x, y in zip(c1, c2):
        assert np.array_equal(x["values"], y["values"]) and np.array_equal(x["labels"], y["labels"])
    assert m1.keys() == m2.keys() == {"codebook", "svm_coef", "svm_intercept"}
    for key in m1:
        assert np.array_equal(m1[key], m2[key]), key
    assert l1["val_top1_error"] == l2["val_top1_error"]
    monkeypatch.setenv("ILSVRC_CACHE_DIR", str(tmp_path / "cache-a"))
    other = classical.train_classical("sift-bow", tmp_path / "seed4", seed=4, **small, **sift)
    with np.load(other / classical.MODEL_FILE) as z:
        assert not np.array_equal(z["codebook"], m1["codebook"])


def test_a_second_run_uses_the_cache_and_a_killed_extraction_keeps_its_chunks(runs, tmp_path) -> None:
    again = classical.train_classical("hog-svm", tmp_path / "again", **SMALL)
    first, second = last_line(runs["hog-svm"]), last_line(again)
    assert first["extracted_images"] == SMALL["synthetic_train"] + SMALL["synthetic_val"]
    assert second["extracted_images"] == 0
    assert second["val_top1_error"] == first["val_top1_error"]
    assert second["descriptor_cache"] == first["descriptor_cache"]

    # stopped after its first chunk (as a time limit or a kill would leave it), then extracted again
    data = SyntheticShapes("train", 80, 4, length=3 * classical.CHUNK, seed=9)
    settings = classical.Settings("hog-svm", image_size=SIZE).resolved()
    stop = lambda n, rate: n > 0  # after the first chunk
    part = classical.extract(data, "train", settings, workers=1, deadline=stop, progress=False)
    assert not part.complete and part.extracted == classical.CHUNK == len(part.labels)
    assert sorted(np.bincount(part.labels)) == [classical.CHUNK // 4] * 4  # every class in its share
    assert not list(part.folder.glob(".tmp-*"))  # nothing half-written
    rest = classical.extract(data, "train", settings, progress=False, log=lambda _: None)
    assert rest.complete and rest.extracted == 2 * classical.CHUNK and len(rest.labels) == len(data)
    assert np.array_equal(rest.values[: classical.CHUNK], part.values)


def test_a_time_limit_trains_on_the_images_it_had_time_to_describe(tmp_path) -> None:
    said = []
    small = {**SMALL, "synthetic_train": 300, "log": said.append}  # 3 chunks, not cached by another test
    run = classical.train_classical("hog-svm", tmp_path / "limited", time_limit=1e-4, workers=1, **small)
    line = last_line(run)
    assert line["train_images"] == classical.CHUNK < small["synthetic_train"]  # the first chunk only
    assert line["val_images"] == small["synthetic_val"]  # the validation set whole
    assert any(f"{classical.CHUNK} of 300 training images" in x for x in said)


def test_resume_finishes_a_run_stopped_before_its_model(runs, tmp_path, capsys) -> None:
    run = tmp_path / "stopped"
    run.mkdir()
    for name in ("config.json", "classes.json"):
        (run / name).write_text((runs["hog-svm"] / name).read_text())
    (run / "metrics.jsonl").write_text("")
    assert main(["eval", str(run)]) == 2
    assert f"ilsvrc train --resume {run}" in capsys.readouterr().err
    assert main(["train", "--resume", str(run)]) == 0
    assert last_line(run)["val_top1_error"] == last_line(runs["hog-svm"])["val_top1_error"]
    assert main(["train", "--resume", str(run)]) == 2
    assert "Nothing left to do" in capsys.readouterr().err


def test_without_the_extras_the_command_says_how_to_install_them(monkeypatch, capsys) -> None:
    real = builtins.__import__

    def no_opencv(name, *args, **kwargs):
        if name == "cv2" or name.startswith("cv2."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_opencv)
    assert main(["train", "sift-bow"]) == 2
    err = capsys.readouterr().err
    assert "pip install -e '.[classic]'" in err and "opencv-python-headless" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv, says",
    [
        (["train", "sift-bow", "--lr", "0.1"], "--lr is a setting of a network's training"),
        (["train", "hog-svm", "--encoding", "fisher"], "--encoding is a setting of sift-bow"),
        (["train", "hog-svm", "--codebook", "64"], "--codebook is a setting of sift-bow"),
        (["train", "sift-bow", "--image-size", "20"], "--image-size of at least 32"),
        (["train", "hog-svm", "--svm-c", "-1"], "--svm-c must be a positive number"),
        (["train", "alexnet", "--codebook", "64"], "not of a network's training"),
        (["train", "hog-svm", "--synthetic-classes", "11"], "--synthetic-classes takes 2 to 10"),
        (["train", "hog-svm", "--data", "/nonexistent/folder"], "does not exist"),
        (["summary", "sift-bow"], "classical pipeline"),
        (["draw", "hog-svm"], "no layers to analyse"),
    ],
)
def test_bad_options_exit_2_with_one_paragraph(argv, says, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


def test_other_protocols_and_network_views_are_refused_clearly(runs, capsys) -> None:
    for argv, says in (
        (["eval", str(runs["hog-svm"]), "--protocol", "dense"], "center protocol only"),
        (["visualize", "filters", str(runs["hog-svm"])], "no network to load"),
        (["report", "--run", str(runs["hog-svm"])], "no network to show"),
    ):
        assert main(argv) == 2
        assert says in capsys.readouterr().err
