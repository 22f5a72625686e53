"""The training data pipeline of issue 16: the crops torchvision draws, resized to PIL's values within a
level, each batch normalised at once with the values of one image at a time, and a per-epoch size."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torch.utils.data import DataLoader
from torchvision import transforms as T
from torchvision.transforms import v2

from ilsvrc.errors import IlsvrcError
from ilsvrc.training.data import Augmented, Batch, Skipped, SyntheticShapes, collate_skipping
from ilsvrc.training.evaluate import eval_input_transform
from ilsvrc.training.images import DataError
from ilsvrc.training.transforms import (
    TRAIN_AUGMENTATIONS,
    NormalisedFloat,
    PCALighting,
    Pipeline,
    RandomCropFlip,
    RandomResizedCropFlip,
    resize_shorter,
    resize_uint8,
    train_transform,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 H x W x 3 picture with smooth gradients, edges and fine texture (what resizing filters
    treat differently), deterministic by seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    smooth = 127 + 100 * np.sin(x / 9.0 + rng.uniform(0, 6)) * np.cos(y / 13.0)
    edges = 60 * ((x // 17 + y // 11) % 2)
    noise = rng.normal(0, 20, (height, width))
    channels = [smooth + edges * (c - 1) + noise * (c == 2) for c in range(3)]
    return np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)


def channels_last(hwc: np.ndarray) -> torch.Tensor:
    """3 x H x W view of H x W x 3 pixels: what the decoded cache hands out."""
    return torch.from_numpy(hwc.copy()).permute(2, 0, 1)


# --------------------------------------------------------------------------------------------------
# The resize: PIL's values (the reference pipeline's) within one level


@pytest.mark.parametrize(
    "box, size",
    [((10, 20, 200, 180), 128), ((0, 0, 224, 224), 128), ((30, 5, 150, 90), 128), ((50, 60, 70, 100), 128),
     ((40, 40, 96, 96), 128), ((0, 0, 61, 47), 128), ((7, 3, 128, 128), 128), ((0, 0, 224, 224), 64)],
)  # fmt: skip
def test_resize_of_a_crop_gives_pils_values_within_one_level(box: tuple[int, ...], size: int) -> None:
    """torchvision's RandomResizedCrop on a PIL image crops, then resizes with PIL's bilinear filter
    (antialiased); resize_uint8 shrinks with torch's antialiased filter and enlarges with OpenCV's
    bilinear: the same pixels to within 1 level of 255, whichever way each axis goes."""
    hwc = photo(224, 224)
    top, left, h, w = box
    reference = Image.fromarray(hwc).crop((left, top, left + w, top + h)).resize((size, size), Image.BILINEAR)
    ours = resize_uint8(channels_last(hwc)[:, top : top + h, left : left + w], size, size)
    assert ours.shape == (3, size, size) and ours.dtype == torch.uint8
    difference = (ours.permute(1, 2, 0).int() - torch.from_numpy(np.array(reference)).int()).abs()
    assert difference.max() <= 1, (box, difference.max())
    assert difference.float().mean() < 0.5  # most pixels exactly equal


def test_resize_keeps_the_cache_layout_and_takes_planar_images_too() -> None:
    hwc = photo(100, 120)
    cached, planar = channels_last(hwc), channels_last(hwc).contiguous()
    for crop in ((slice(0, 100), slice(0, 120)), (slice(10, 60), slice(20, 70))):  # shrunk, enlarged
        a = resize_uint8(cached[:, crop[0], crop[1]], 64 if crop[0].stop == 100 else 80, 80)
        b = resize_uint8(planar[:, crop[0], crop[1]], a.shape[1], 80)
        assert torch.equal(a, b)
        assert a.permute(1, 2, 0).is_contiguous()  # H x W x 3 in memory: channels-last


# --------------------------------------------------------------------------------------------------
# The crops: torchvision's distribution


def test_crops_follow_torchvisions_random_resized_crop_distribution() -> None:
    """Area fraction uniform in scale, log aspect ratio uniform in log ratio, position uniform; the
    same law as torchvision's get_params (two-sample Kolmogorov-Smirnov tests on 3,000 draws each)."""
    height, width, n = 180, 240, 3000
    ours = RandomResizedCropFlip(128, (0.08, 1.0))
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    torch.manual_seed(0)
    mine = [ours.params(height, width) for _ in range(n)]
    theirs = [T.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]

    def features(boxes: list) -> dict[str, np.ndarray]:
        top, left, h, w = (np.array([b[k] for b in boxes], dtype=float) for k in range(4))
        return {"area": h * w / (height * width), "log ratio": np.log(w / h),
                "centre x": (left + w / 2) / width, "centre y": (top + h / 2) / height}  # fmt: skip

    a, b = features(mine), features(theirs)
    for name in a:
        assert stats.ks_2samp(a[name], b[name]).pvalue > 1e-3, name
    for top, left, h, w, _ in mine:
        assert 0 <= top <= height - h and 0 <= left <= width - w and h >= 1 and w >= 1
    flips = sum(flip for *_, flip in mine)
    assert abs(flips - n / 2) < 4 * math.sqrt(n / 4)


@pytest.mark.parametrize("shape", [(1, 500), (500, 1), (3, 3), (40, 41)])
def test_when_no_crop_fits_the_fallback_is_torchvisions_centre_crop(shape: tuple[int, int]) -> None:
    height, width = shape
    ours = RandomResizedCropFlip(32, (0.9, 1.0))  # 90-100% of the area: many draws do not fit
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    fallback = T.RandomResizedCrop.get_params(image, [2.0, 2.0], [3 / 4, 4 / 3])  # twice the area: never fits
    if shape[0] == 1 or shape[1] == 1:  # 1-pixel wide: no draw fits, ours falls back every time
        torch.manual_seed(1)
        assert all(ours.params(height, width)[:4] == fallback for _ in range(20))
    out = ours(torch.from_numpy(photo(height, width)).permute(2, 0, 1))
    assert out.shape == (3, 32, 32)


@pytest.mark.parametrize("kind", ["light", "rrc", "googlenet"])
def test_the_smallest_crop_area_bounds_every_crop_and_follows_a_size_change(kind: str) -> None:
    """`min_area` is the lower end of the area fraction each crop draws: with 0.6 no crop of 3,000
    covers less than 60% of the image (the kind's own lower end does), and the transform made at
    another size for progressive resizing keeps it."""
    height, width, n = 180, 240, 3000

    def areas(pipeline: Pipeline) -> np.ndarray:
        crop = pipeline.transforms[0]
        torch.manual_seed(0)
        return np.array([h * w / (height * width) for _, _, h, w, _ in (crop.params(height, width)
                                                                          for _ in range(n))])  # fmt: skip

    own, mild = areas(train_transform(kind, 32, MEAN, STD)), areas(train_transform(kind, 32, MEAN, STD, 0.6))
    assert own.min() < 0.4 and (own < 0.6).mean() > 0.3
    assert mild.min() >= 0.6 - 2 / min(height, width) and mild.max() <= 1
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    theirs = [T.RandomResizedCrop.get_params(image, [0.6, 1.0], [3 / 4, 4 / 3]) for _ in range(n)]
    assert stats.ks_2samp(mild, [h * w / (height * width) for _, _, h, w in theirs]).pvalue > 1e-3
    resized = train_transform(kind, 32, MEAN, STD, 0.6).at_size(16)
    assert resized.image_size == 16 and areas(resized).min() >= 0.6 - 2 / min(height, width)


def test_a_whole_image_crop_area_keeps_a_square_image_whole() -> None:
    """Area 1 leaves only the aspect ratio random: on a square image no other crop has the whole area, so
    every crop is the image itself, resized and perhaps mirrored."""
    square = channels_last(photo(64, 64))
    pipeline = train_transform("light", 32, MEAN, STD, min_area=1.0)
    whole = NormalisedFloat(MEAN, STD)(resize_uint8(square, 32, 32))
    torch.manual_seed(3)
    outs = [pipeline(square) for _ in range(12)]
    assert all(torch.equal(o, whole) or torch.equal(o, whole.flip(-1)) for o in outs)
    assert any(torch.equal(o, whole.flip(-1)) for o in outs) and any(torch.equal(o, whole) for o in outs)


BAD_AREAS = [("alexnet", 0.5, "not of the 'alexnet'"), ("light", 0.0, r"\(0, 1\]"), ("rrc", 1.5, r"\(0, 1\]")]


@pytest.mark.parametrize("kind, area, match", BAD_AREAS)
def test_a_smallest_crop_area_that_cannot_apply_is_an_error_naming_it(
    kind: str, area: float, match: str
) -> None:
    with pytest.raises(IlsvrcError, match=match):
        train_transform(kind, 32, MEAN, STD, min_area=area)


# --------------------------------------------------------------------------------------------------
# Batches: normalised at once, the values of one image at a time


def augmented(kind: str, seed: int = 0, length: int = 20, size: int = 24) -> Augmented:
    base = SyntheticShapes("train", image_size=40, length=length)
    return Augmented(base, train_transform(kind, size, MEAN, STD), seed=seed)


@pytest.mark.parametrize("kind", TRAIN_AUGMENTATIONS)
def test_a_batch_holds_each_items_values_exactly(kind: str) -> None:
    """Every augmentation, paper ones included: the batch a loader fetches equals the items one at a
    time, bit for bit (the same per-sample seeds, the same float operations), laid out channels-last."""
    ds = augmented(kind)
    items = torch.stack([ds[i][0] for i in range(8)])
    images, targets, skipped = collate_skipping(ds.__getitems__(list(range(8))))
    assert torch.equal(images, items) and skipped == []
    assert targets.tolist() == [ds.base[i][1] for i in range(8)]
    assert images.is_contiguous(memory_format=torch.channels_last) and images.dtype == torch.float32
    # default_collate (any other collate function) stacks the same values
    assert torch.equal(next(iter(DataLoader(ds, batch_size=8)))[0], items)


def test_batches_are_the_same_with_any_worker_count_and_seeded() -> None:
    ds = augmented("googlenet", seed=5)  # crops, photometric distortions, PCA lighting

    def epoch(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(ds, batch_size=6, num_workers=workers, collate_fn=collate_skipping)
        return [images for images, _, _ in loader]

    alone, two = epoch(0), epoch(2)
    assert len(alone) == 4 and all(torch.equal(a, b) for a, b in zip(alone, two))
    assert torch.equal(epoch(0)[1], alone[1])  # the same seed: the same augmentations
    other = augmented("googlenet", seed=6)
    assert not torch.equal(collate_skipping(other.__getitems__([0, 1]))[0], alone[0][:2])
    ds.set_epoch(1)
    assert not torch.equal(epoch(0)[0], alone[0])  # another epoch, other crops


def test_skipped_files_leave_the_batch_and_the_others_keep_their_values() -> None:
    ds = augmented("rrc")
    gone = Skipped("/data/broken.jpg", "empty file (0 bytes)")

    class WithAGap(torch.utils.data.Dataset):
        classes = ds.base.classes

        def __len__(self) -> int:
            return len(ds.base)

        def __getitem__(self, i: int):
            return (gone, 3) if i == 2 else ds.base[i]

    gappy = Augmented(WithAGap(), ds.transform)
    batch = gappy.__getitems__([0, 1, 2, 3])
    assert isinstance(batch, Batch) and batch[2] == (gone, 3)
    images, targets, skipped = collate_skipping(batch)
    assert skipped == [gone] and len(images) == 3 and len(targets) == 3
    assert torch.equal(images, torch.stack([ds[i][0] for i in (0, 1, 3)]))
    assert collate_skipping(gappy.__getitems__([2, 2])) == (None, None, [gone, gone])


def test_a_transform_that_is_not_a_pipeline_goes_one_image_at_a_time() -> None:
    ds = Augmented(SyntheticShapes("train", image_size=16, length=4), lambda x: x.float() / 255)
    batch = ds.__getitems__([0, 1])
    assert not isinstance(batch, Batch) and torch.equal(batch[1][0], ds[1][0])
    images, _, _ = collate_skipping(batch)
    assert images.shape == (2, 3, 16, 16)


def test_batch_normalisation_is_forwards_arithmetic_with_per_image_lighting() -> None:
    normalise = NormalisedFloat(MEAN, STD, PCALighting(0.1))
    pixels = [torch.from_numpy(photo(12, 20, seed)) for seed in range(5)]
    torch.manual_seed(3)
    shifts = torch.stack([normalise.image_shift() for _ in pixels])
    torch.manual_seed(3)
    alone = torch.stack([normalise(p.permute(2, 0, 1)) for p in pixels])
    together = normalise.batch(pixels, shifts)
    assert torch.equal(together, alone)
    assert len({tuple(shift.tolist()) for shift in shifts}) == len(pixels)  # a lighting offset each
    with pytest.raises(IlsvrcError, match="NormalisedFloat"):
        Pipeline([T.RandomHorizontalFlip()])


# --------------------------------------------------------------------------------------------------
# Another size each epoch (progressive resizing)


def test_the_image_size_changes_between_epochs_in_persistent_workers_too() -> None:
    ds = augmented("light", length=12, size=32)
    loader = DataLoader(ds, batch_size=12, num_workers=2, persistent_workers=True,
                        collate_fn=collate_skipping)  # fmt: skip
    first = next(iter(loader))[0]
    for size in (16, 24, 32):
        ds.set_image_size(size)
        images = next(iter(loader))[0]
        assert images.shape == (12, 3, size, size) and ds.image_size == size
        assert torch.equal(images, collate_skipping(ds.__getitems__(list(range(12))))[0])
    assert torch.equal(images, first)  # back to 32 px: the same crops as before, exactly
    fresh = augmented("light", length=12, size=16)
    ds.set_image_size(16)
    assert torch.equal(ds[3][0], fresh[3][0])  # the transform at 16 px is train_transform at 16 px


def test_a_paper_augmentation_scales_its_sizes_with_the_image_size() -> None:
    ds = augmented("alexnet", size=32)
    ds.set_image_size(64)
    assert ds.current_transform().transforms[0].size == [73, 73]  # round(64 * 256 / 224)
    assert ds[0][0].shape == (3, 64, 64)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "96", True])
def test_a_bad_image_size_is_an_error_naming_it(bad: object) -> None:
    with pytest.raises(DataError, match="image size"):
        augmented("rrc").set_image_size(bad)  # type: ignore[arg-type]


def test_a_fixed_size_transform_cannot_be_resized() -> None:
    ds = Augmented(SyntheticShapes("train", image_size=16, length=2), lambda x: x.float())
    with pytest.raises(DataError, match="fixed output size"):
        ds.set_image_size(32)
    assert ds.image_size is None


@pytest.mark.parametrize("protocol", ["center", "10crop", "dense"])
def test_evaluation_batches_hold_each_items_values_and_resize_too(protocol: str) -> None:
    base = SyntheticShapes("val", image_size=40, length=6)
    ds = Augmented(base, eval_input_transform(protocol, 24, MEAN, STD))
    images, _, _ = collate_skipping(ds.__getitems__(list(range(6))))
    assert torch.equal(images, torch.stack([ds[i][0] for i in range(6)]))
    ds.set_image_size(32)
    assert torch.equal(ds[2][0], eval_input_transform(protocol, 32, MEAN, STD)(base[2][0]))


@pytest.mark.parametrize(
    "shape, side", [((224, 224), 146), ((100, 150), 160), ((300, 200), 128), ((37, 91), 64)]
)
def test_the_papers_shorter_side_resize_keeps_torchvisions_sizes_and_values(shape, side) -> None:
    """torchvision's sizes; its values exactly where the image shrinks, within 1 level where it grows
    (OpenCV's bilinear there: its 11-bit fixed-point weights put about a quarter of the values 1 level
    off); PIL's within 2 levels (torch's antialiased filter differs from PIL's by up to 2 at some
    factors, 1.5625 here)."""
    height, width = shape
    hwc = photo(height, width, seed=side)
    ours = resize_shorter(channels_last(hwc), side)
    theirs = v2.functional.resize(channels_last(hwc), [side], antialias=True)
    assert ours.shape == theirs.shape and min(ours.shape[1:]) == side
    difference = (ours.int() - theirs.int()).abs().max()
    assert difference == 0 if side < min(shape) else difference <= 1
    reference = np.array(Image.fromarray(hwc).resize((ours.shape[2], ours.shape[1]), Image.BILINEAR))
    from_pil = (ours.permute(1, 2, 0).int() - torch.from_numpy(reference).int()).abs()
    assert from_pil.max() <= 2 and from_pil.float().mean() < 0.5


def test_the_papers_random_crop_and_flip_cover_every_position_evenly() -> None:
    step = RandomCropFlip(4)
    image = torch.arange(6 * 7, dtype=torch.uint8).view(1, 6, 7).expand(3, 6, 7)
    torch.manual_seed(0)
    corners, flips = [], 0
    for _ in range(3000):
        crop = step(image)
        first, last = int(crop[0, 0, 0]), int(crop[0, 0, -1])
        flips += first > last
        corners.append(min(first, last))  # the top-left pixel's value gives the position: 7 * top + left
    counts = np.bincount(corners, minlength=7 * 6)[[7 * t + left for t in range(3) for left in range(4)]]
    assert stats.chisquare(counts).pvalue > 1e-3 and len(counts) == 12 and counts.min() > 0
    assert abs(flips - 1500) < 4 * math.sqrt(750)
    with pytest.raises(IlsvrcError, match="4-pixel crop"):
        step(torch.zeros(3, 3, 9, dtype=torch.uint8))
