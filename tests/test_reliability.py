"""Runs that survive: torchrun with two processes, SIGTERM, kill -9 at any moment, divergence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ilsvrc.training import checkpoint
from ilsvrc.training.loop import datasets, load_trained, make_config, read_metrics, train
from work import HANG_GUARD  # timeouts and waits: a hang guard only, never a time budget

COMMON = ["--recipe", "cpu", "--image-size", "32", "--synthetic-classes", "4", "--workers", "0"]


def ilsvrc(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "ilsvrc", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kwargs)  # fmt: skip


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint.resolve(run) / "model.safetensors")


def near_ties(run: Path, rel: float = 1e-3) -> int:
    """Validation images whose two best scores under the run's last weights differ by less than `rel`
    of the larger score's size: the only predictions weights that agree to 1e-5 could flip."""
    model, config, _, _ = load_trained(run)
    _, val, _ = datasets(config)
    with torch.no_grad():
        scores = model(torch.stack([val[i][0] for i in range(len(val))]))
    best = scores.topk(2, dim=1).values
    return int(((best[:, 0] - best[:, 1]) < rel * best.abs().max(1).values.clamp_min(1e-6)).sum())


def test_two_processes_step_like_one(spec: str, tmp_path: Path) -> None:
    """torchrun, 2 processes x 32 images = 1 process x 64 (gloo on the CPU)."""
    args = ["train", spec, *COMMON, "--batch-size", "64", "--epochs", "2", "--synthetic-train", "256",
            "--synthetic-val", "64"]  # fmt: skip
    one = ilsvrc(*args, "--out", str(tmp_path / "one"))
    assert one.wait(timeout=HANG_GUARD) == 0, one.stdout.read()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ilsvrc",
         *args, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=HANG_GUARD, env=env,
    )  # fmt: skip
    assert two.returncode == 0, two.stdout + two.stderr
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for key in a:
        rel = (a[key] - b[key]).norm() / a[key].norm().clamp_min(1e-12)
        assert rel <= 1e-5, (key, float(rel))
    ma, mb = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    # evaluation reduced over both ranks: the top-1 error of all 64 images, as one process has it. The
    # weights agree to 1e-5, not bit for bit (the batch is split), so a prediction may flip where its two
    # best scores are that close: those near ties (usually none: then exact) are the only leeway
    leeway = near_ties(tmp_path / "two") / 64
    assert abs(ma[-1]["val_top1_error"] - mb[-1]["val_top1_error"]) <= leeway + 1e-12, leeway
    assert abs(ma[0]["val_top1_error"] - mb[0]["val_top1_error"]) <= 1 / 64 + 1e-12  # no weights kept
    assert ma[-1]["train_loss"] == pytest.approx(mb[-1]["train_loss"], rel=1e-5)
    # only rank 0 wrote: one metrics line per epoch
    assert len(mb) == 2


def test_a_process_with_no_validation_images_does_not_stop_the_run(spec: str, tmp_path: Path) -> None:
    """torchrun, 2 processes, 1 validation image: the second process's share of it is empty, and it
    adds nothing to the evaluation instead of failing (while the first waits for it)."""
    run = tmp_path / "run"
    args = ["train", spec, *COMMON, "--batch-size", "16", "--epochs", "1", "--synthetic-train", "32",
            "--synthetic-val", "1", "--out", str(run)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ilsvrc",
         *args],
        capture_output=True, text=True, timeout=HANG_GUARD, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = read_metrics(run)
    assert line["val_top1_error"] in (0.0, 1.0) and line["skipped_val"] == 0  # one image: right or wrong


def test_a_process_whose_share_is_unreadable_still_steps_with_the_others(spec: str, tmp_path: Path) -> None:
    """torchrun, 2 processes, batches of 4: the second process's half of the first batch is unreadable.
    It takes part in that step with an empty batch (a zero gradient) instead of the ranks agreeing at
    every step whether to skip it: the run ends, every batch made a step, each file is counted once."""
    from PIL import Image

    from ilsvrc.training.data import ImageFolderRGB
    from ilsvrc.training.loop import epoch_batches

    root = tmp_path / "data"
    for c, name in enumerate(("ant", "bee")):
        for split, n in (("train", 8), ("val", 2)):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (36, 36), (40 + 150 * c, 20 * i, 90)).save(root / split / name / f"{i}.png")
    samples = ImageFolderRGB(root, "train").samples
    unreadable = [samples[i][0] for i in epoch_batches(len(samples), 4, 0, 0)[0][2:]]  # rank 1's share
    for path in unreadable:
        path.write_bytes(b"not an image")
    run = tmp_path / "run"
    args = ["train", spec, "--recipe", "cpu", "--image-size", "32", "--workers", "0", "--data", str(root),
            "--no-cache", "--batch-size", "4", "--epochs", "1", "--out", str(run)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "ilsvrc",
         *args],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = read_metrics(run)
    assert line["complete"] and line["step"] == 4  # 16 files in batches of 4: four steps
    assert line["skipped_train"] == 2
    for path in unreadable:
        assert done.stdout.count(f"Skipped unreadable image {path}") == 1, done.stdout


def _wait_for(ready: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Poll until `ready()`; fail if the run ends first (or, as a hang guard only, after HANG_GUARD s)."""
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.stdout.read()}")
        time.sleep(0.02)
    raise AssertionError(f"no {what} after {HANG_GUARD} s (a hang guard)")


def _wait_for_step(run: Path, step: int, proc: subprocess.Popen) -> None:
    """Wait for a checkpoint at `step` or later (the run must be far longer, so that it cannot end first)."""

    def ready() -> bool:
        try:
            return json.loads((run / "checkpoints" / "last.json").read_text())["step"] >= step
        except (OSError, ValueError, KeyError):
            return False

    _wait_for(ready, proc, f"a checkpoint at step {step}")


def test_sigterm_checkpoints_and_names_the_resume_command(spec: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = ilsvrc("train", spec, *COMMON, "--epochs", "50", "--checkpoint-every", "2", "--out", str(run))
    _wait_for_step(run, 2, proc)  # of 50 epochs of 2,000 images: the signal lands long before the end
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert f"ilsvrc train --resume {run}" in out and "SIGTERM" in out
    _, state, _ = checkpoint.load(run)
    assert state["step"] >= 2 and state["epoch"] < 50


def test_sigterm_to_torchrun_checkpoints_once_and_resumes(spec: str, tmp_path: Path) -> None:
    """A cluster stopping the job signals torchrun, which passes SIGTERM on to every worker: the ranks
    agree on one step, rank 0 writes one checkpoint, and torchrun --resume ends the run."""
    run = tmp_path / "run"
    # 4 steps an epoch (128 images, 2 x 16 a step), 500 epochs: the signal lands long before the end
    args = ["train", spec, *COMMON, "--epochs", "500", "--checkpoint-every", "2", "--batch-size", "16",
            "--synthetic-train", "128", "--synthetic-val", "32"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    proc = subprocess.Popen([*launcher, "ilsvrc", *args, "--out", str(run)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
    _wait_for_step(run, 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode != 0  # torchrun reports the signal
    assert f"ilsvrc train --resume {run}" in out and "SIGTERM" in out, out
    assert out.count("continue with `ilsvrc train --resume") == 1, out  # rank 0 alone speaks
    _, state, _ = checkpoint.load(run)
    stopped_at, epochs = state["step"], state["epoch"] + 1  # resume to the end of the epoch it was in
    assert stopped_at >= 2 and epochs < 500
    resumed = subprocess.run([*launcher, "ilsvrc", "train", "--resume", str(run), "--epochs", str(epochs)],
                             capture_output=True, text=True, timeout=HANG_GUARD, env=env)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _, state, _ = checkpoint.load(run)
    assert state["epoch"] == epochs and state["step"] > stopped_at


# kill -9 at a chosen moment: the run is started through PAUSED, which stops it at that moment (after
# the n-th call of one of its steps) and says so in a file; the test waits for the file, kills the
# paused process, and checks what the moment left on disk before resuming. No race with the run's end.
PAUSED = """
import os, sys, time
from torch.optim.optimizer import register_optimizer_step_pre_hook
from ilsvrc.cli import main
from ilsvrc.training import checkpoint

where, n, marker, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
calls = 0


def reached() -> bool:
    global calls
    calls += 1
    if calls == n:
        with open(marker, "w") as f:
            f.write(f"{where} {n}")
        while True:
            time.sleep(60)  # killed here
    return False


if where == "step":  # the n-th optimizer step, after its forward and backward, before the update

    def before_step(optimizer, args, kwargs):
        reached()

    register_optimizer_step_pre_hook(before_step)
elif where == "weights":  # the n-th checkpoint, its weights written, not its state, not yet renamed
    real_save_file = checkpoint.save_file

    def save_file(*args, **kwargs):
        real_save_file(*args, **kwargs)
        reached()

    checkpoint.save_file = save_file
elif where == "pointer":  # the n-th checkpoint renamed into place, its pointer not yet written
    real_write = checkpoint.write_json_atomic

    def write_json_atomic(path, data):
        if path.name == "last.json":
            reached()
        real_write(path, data)

    checkpoint.write_json_atomic = write_json_atomic
sys.exit(main(argv))
"""
KILL_RUN = [
    "--epochs",
    "2",
    "--synthetic-train",
    "48",
    "--synthetic-val",
    "16",
    "--batch-size",
    "8",
    "--checkpoint-every",
    "1",
]  # fmt: skip  (6 steps an epoch, a checkpoint after each)


@pytest.fixture(scope="module")
def reference(spec: str, tmp_path_factory) -> Path:
    """The 12-step run the killed ones must end like, run once without a kill."""
    run = tmp_path_factory.mktemp("reference") / "run"
    done = ilsvrc("train", spec, *COMMON, *KILL_RUN, "--out", str(run))
    assert done.wait(timeout=HANG_GUARD) == 0, done.stdout.read()
    return run


def kill_at(where: str, n: int, spec: str, run: Path) -> None:
    """Start the run, let it reach the n-th `where`, and kill -9 it there."""
    marker = run.parent / "paused"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    argv = ["train", spec, *COMMON, *KILL_RUN, "--out", str(run)]
    proc = subprocess.Popen([sys.executable, "-c", PAUSED, where, str(n), str(marker), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
    _wait_for(marker.exists, proc, f"{where} {n}")
    assert proc.poll() is None  # paused there, not finished
    proc.kill()
    assert proc.wait(timeout=HANG_GUARD) == -signal.SIGKILL


def assert_resumes_like_the_reference(run: Path, reference: Path) -> None:
    resumed = ilsvrc("train", "--resume", str(run))
    out, _ = resumed.communicate(timeout=HANG_GUARD)
    assert resumed.returncode == 0, out
    a, b = weights(reference), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)  # exact resume: the same steps on the same path
    assert [m["epoch"] for m in read_metrics(run) if m["complete"]] == [1, 2]
    assert read_metrics(run)[-1]["val_top1_error"] == read_metrics(reference)[-1]["val_top1_error"]


def test_kill_9_while_writing_the_epochs_checkpoint_then_resume_gives_the_same_weights(
    spec: str, tmp_path: Path, reference: Path
) -> None:
    """Killed at the end of epoch 1 (step 6) after its metrics line, half-way through its checkpoint:
    the weights written under a temporary name, the state not. The checkpoint of step 5 is the last
    one; resuming from it repeats step 6 and the evaluation, and keeps one line for epoch 1."""
    run = tmp_path / "killed"
    kill_at("weights", 6, spec, run)
    (half,) = (run / "checkpoints").glob(".tmp-step-0000006-*")
    assert (half / "model.safetensors").exists() and not (half / "state.pt").exists()
    assert checkpoint.load(run)[1]["step"] == 5
    assert [m["epoch"] for m in read_metrics(run)] == [1]  # written before the checkpoint
    assert_resumes_like_the_reference(run, reference)


@pytest.mark.slow
@pytest.mark.parametrize(
    "where,n,last_step",
    [
        ("step", 2, 1),  # in the second step: only the first one's checkpoint exists
        ("step", 9, 8),  # in epoch 2
        ("weights", 3, 2),  # half-way through a checkpoint within an epoch
        ("pointer", 9, 8),  # a checkpoint complete and renamed, its pointer not yet moved to it
    ],
)
def test_kill_9_at_other_moments_then_resume_gives_the_same_weights(
    spec: str, tmp_path: Path, reference: Path, where: str, n: int, last_step: int
) -> None:
    run = tmp_path / "killed"
    kill_at(where, n, spec, run)
    assert checkpoint.load(run)[1]["step"] == last_step  # a readable checkpoint survives
    assert_resumes_like_the_reference(run, reference)


def test_divergence_stops_with_the_step_and_keeps_the_checkpoint(spec: str, tmp_path: Path) -> None:
    run = tmp_path / "nan"
    cfg = make_config(spec, "cpu", out=str(run), image_size=32, synthetic_classes=4, workers=0, epochs=3,
                      synthetic_train=48, synthetic_val=16, batch_size=8, lr=1e6,
                      schedule="constant")  # fmt: skip
    with pytest.raises(Exception, match=r"at step \d+") as info:
        train(cfg, progress=False, log=lambda *a: None)
    assert "checkpoint" in str(info.value)
    assert not list((run / "checkpoints").glob("step-*")) or checkpoint.load(run)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _tiny_run(spec: str, out: Path) -> Path:
    cfg = make_config(spec, "cpu", out=str(out), image_size=32, synthetic_classes=4, workers=0, epochs=1,
                      synthetic_train=16, synthetic_val=8, batch_size=8)  # fmt: skip
    return train(cfg, progress=False, log=lambda *a: None)


def test_a_checkpoint_that_would_run_code_is_refused(spec: str, tmp_path: Path) -> None:
    import pickle

    run = _tiny_run(spec, tmp_path / "run")
    marker = tmp_path / "pwned"
    state = checkpoint.resolve(run) / "state.pt"
    torch.save({"epoch": 1, "payload": _Payload(marker)}, state, pickle_module=pickle)
    with pytest.raises(checkpoint.CheckpointError, match="refused"):
        checkpoint.load(run)
    assert not marker.exists()
    from ilsvrc.cli import main

    assert main(["eval", str(run)]) == 2
    assert main(["train", "--resume", str(run)]) == 2
    assert not marker.exists()


def test_a_pointer_cannot_lead_outside_the_run(spec: str, tmp_path: Path) -> None:
    run = _tiny_run(spec, tmp_path / "run")
    elsewhere = tmp_path / "step-evil"
    elsewhere.mkdir()
    (run / "checkpoints" / "last.json").write_text(json.dumps({"dir": "../../step-evil"}))
    with pytest.raises(checkpoint.CheckpointError, match="no readable checkpoint"):
        checkpoint.resolve(run)


def test_a_full_disk_keeps_the_previous_checkpoint(spec: str, tmp_path: Path, monkeypatch) -> None:
    import errno

    run = _tiny_run(spec, tmp_path / "run")
    before = checkpoint.resolve(run)
    weights_before = load_file(before / "model.safetensors")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(
        checkpoint.CheckpointError, match="No space left on device.*previous checkpoint is intact"
    ):
        checkpoint.save(run, 999, {"w": torch.zeros(2)}, {"epoch": 9})
    assert checkpoint.resolve(run) == before
    after = load_file(before / "model.safetensors")
    assert all(torch.equal(after[k], weights_before[k]) for k in after)  # the same file, read again
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp")]


def test_a_cut_metrics_line_is_ignored_on_resume(spec: str, tmp_path: Path) -> None:
    run = _tiny_run(spec, tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "step": 4, "train_lo')  # a kill -9 in the middle of a write
    assert [m["epoch"] for m in read_metrics(run)] == [1]


@pytest.fixture
def tmpfs(tmp_path: Path):
    """Mount small tmpfs file systems under tmp_path (needs root and mount rights; skipped otherwise)."""
    mounted: list[Path] = []

    def mount(name: str, size_kb: int) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(point)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def _copy_run(src: Path, dst: Path) -> None:
    import shutil

    for item in src.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, dst / item.name)


def _used_kb(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) // 1024


def test_a_really_full_disk_stops_with_a_clear_error_and_the_run_resumes(spec: str, tmp_path: Path, tmpfs,
                                                                         capsys) -> None:  # fmt: skip
    """A real file system that fills up: the next checkpoint cannot be written; exit 2, one paragraph,
    the previous checkpoint stays readable, and the run resumes once there is room."""
    from ilsvrc.cli import main

    original = _tiny_run(spec, tmp_path / "original")
    disk = tmpfs("disk", _used_kb(original) + 64)  # room for the run, not for another checkpoint
    _copy_run(original, disk)
    before = checkpoint.resolve(disk)
    capsys.readouterr()
    assert main(["train", "--resume", str(disk), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ilsvrc: error: ") and "No space left on device" in err, err
    assert checkpoint.resolve(disk) == before
    checkpoint.load(disk)
    assert not [p for p in (disk / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    roomy = tmp_path / "roomy"
    roomy.mkdir()
    _copy_run(disk, roomy)
    assert main(["train", "--resume", str(roomy), "--epochs", "2"]) == 0


def test_a_read_only_run_directory_is_a_clear_error(spec: str, tmp_path: Path, tmpfs, capsys) -> None:
    from ilsvrc.cli import main

    original = _tiny_run(spec, tmp_path / "original")
    disk = tmpfs("ro", _used_kb(original) + 1024)
    _copy_run(original, disk)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    capsys.readouterr()
    assert main(["train", "--resume", str(disk), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ilsvrc: error: ") and "Read-only file system" in err, err
    assert err.count("\n") == 1
    checkpoint.load(disk)
