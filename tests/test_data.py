"""Datasets and augmentations: image folders in every colour mode, the generated dataset, reproducible
augmentation, and the papers' transforms (AlexNet's PCA lighting, VGG's scale jittering)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from ilsvrc.errors import IlsvrcError
from ilsvrc.training.data import (
    Augmented,
    ClassInfo,
    DataError,
    ImageFolderRGB,
    SyntheticShapes,
    check_splits,
    load_classes,
    open_dataset,
    save_classes,
)
from ilsvrc.training.evaluate import EvaluationError, eval_input_transform
from ilsvrc.training.transforms import (
    IMAGENET_PCA_EIGVAL,
    IMAGENET_PCA_EIGVEC,
    TRAIN_AUGMENTATIONS,
    NormalisedFloat,
    PCALighting,
    RandomShorterSide,
    resize_shorter,
    train_transform,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def rgb_pattern(height: int = 20, width: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def as_hwc(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------------------------------
# Image folders: every colour mode comes out as 3 x H x W uint8 RGB


@pytest.fixture
def mixed_tree(tmp_path):
    """A train split with one image per colour mode / format, 20 rows x 30 columns unless stated."""
    a = rgb_pattern()
    cls = tmp_path / "train" / "modes"
    cls.mkdir(parents=True)
    other = tmp_path / "train" / "other"
    other.mkdir()
    Image.fromarray(a).convert("L").save(cls / "grey.png")
    Image.fromarray(a).convert("P").save(cls / "palette.png", transparency=0)
    rgba = np.dstack([a, np.where(np.arange(30) < 15, 0, 255).astype(np.uint8)[None].repeat(20, 0)])
    Image.fromarray(rgba).save(cls / "rgba.png")
    Image.fromarray(rgba[..., [0, 3]]).save(cls / "la.png")  # 2 channels: PIL writes LA
    Image.fromarray(a).convert("CMYK").save(cls / "cmyk.jpg", quality=95)
    wide = (np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) * 65535 // 599).astype(np.uint16)
    Image.fromarray(wide).save(cls / "sixteen.png")  # mode I;16
    Image.fromarray(a[:1, :1]).save(cls / "one.png")
    Image.fromarray(a).save(cls / "plain.bmp")
    Image.fromarray(a).save(cls / "plain.tiff")
    Image.fromarray(a).convert("CMYK").save(cls / "cmyk.tif")
    Image.fromarray(a).convert("P").save(cls / "anim.gif")
    frames = [Image.fromarray(np.full((20, 30, 3), v, np.uint8)) for v in (10, 100, 200)]
    frames[0].save(cls / "frames.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(a).save(cls / "lossless.webp", lossless=True)
    Image.fromarray(a).save(cls / "UPPER.JPG", quality=95)
    (cls / "notes.txt").write_text("not an image")
    (cls / ".hidden.png").write_bytes(b"")
    Image.fromarray(a).save(other / "x.png")
    return tmp_path, a, wide


def test_every_colour_mode_comes_out_as_rgb_uint8(mixed_tree):
    root, a, wide = mixed_tree
    ds = ImageFolderRGB(root, "train")
    images = {path.name: ds[i][0] for i, (path, _) in enumerate(ds.samples)}
    assert sorted(images) == sorted(
        ["UPPER.JPG", "anim.gif", "frames.gif", "cmyk.jpg", "cmyk.tif", "grey.png", "la.png", "lossless.webp"]
        + ["one.png", "palette.png", "plain.bmp", "plain.tiff", "rgba.png", "sixteen.png", "x.png"]
    )  # notes.txt and the hidden file are skipped, the upper-case extension is not
    for name, image in images.items():
        expected = (3, 1, 1) if name == "one.png" else (3, 20, 30)
        assert image.dtype == torch.uint8 and tuple(image.shape) == expected, name
    grey = np.asarray(Image.fromarray(a).convert("L"))
    assert (as_hwc(images["grey.png"]) == grey[..., None]).all()  # greyscale repeated on R, G, B
    for exact in ("plain.bmp", "plain.tiff", "lossless.webp", "rgba.png", "x.png"):
        assert (as_hwc(images[exact]) == a).all(), exact  # RGBA: alpha dropped, colours kept
    assert (as_hwc(images["one.png"]) == a[:1, :1]).all()
    palette = np.asarray(Image.fromarray(a).convert("P").convert("RGB"))
    assert (as_hwc(images["palette.png"]) == palette).all()  # transparency dropped, palette colours
    assert (as_hwc(images["anim.gif"]) == palette).all()
    assert (images["frames.gif"] == 10).all()  # an animated GIF: its first frame
    assert (images["la.png"][0] == images["la.png"][2]).all()
    assert (images["la.png"][0].numpy() == a[..., 0]).all()
    for lossy, reference in (("cmyk.jpg", "cmyk.jpg"), ("cmyk.tif", "cmyk.tif"), ("UPPER.JPG", "UPPER.JPG")):
        with Image.open(root / "train" / "modes" / reference) as pil:
            ref = np.asarray(pil.convert("RGB")).astype(int)
        assert np.abs(as_hwc(images[lossy]).astype(int) - ref).max() <= 3, lossy
    # CMYK is converted, not read as RGB + alpha: the colours are still close to the original.
    assert np.abs(as_hwc(images["cmyk.jpg"]).astype(int) - a).mean() < 20
    # 16-bit greyscale is scaled to 8 bits (PIL's convert("RGB") would clip nearly all of it to 255).
    sixteen = images["sixteen.png"]
    assert (sixteen[0] == sixteen[1]).all() and (sixteen[1] == sixteen[2]).all()
    assert (sixteen[0].numpy() == np.round(wide / 257).astype(np.uint8)).all()
    assert sixteen.min() == 0 and sixteen.max() == 255


def test_folder_classes_labels_and_names(tmp_path):
    for split, classes in (("train", ("n02", "n01", "n03")), ("val", ("n01", "n03"))):
        for cid in classes:
            (tmp_path / split / cid).mkdir(parents=True)
            for k in range(3):
                Image.fromarray(rgb_pattern(8, 8, k)).save(tmp_path / split / cid / f"{2 - k}.png")
    (tmp_path / "classes.txt").write_text("# index id name\n0 n01 tench extra=1\n\n1 n02 English_springer\n")
    train = ImageFolderRGB(tmp_path, "train")
    assert train.classes == [
        ClassInfo(0, "n01", "tench"),
        ClassInfo(1, "n02", "English_springer"),
        ClassInfo(2, "n03", "n03"),  # not in classes.txt: the id is the name
    ]
    assert [(p.parent.name, p.name, label) for p, label in train.samples[:4]] == [
        ("n01", "0.png", 0),
        ("n01", "1.png", 0),
        ("n01", "2.png", 0),
        ("n02", "0.png", 1),
    ]
    assert len(train) == 9 and train[8][1] == 2
    # The val split lacks n02: its own numbering would call n03 class 1 (train's n02). check_splits
    # relabels it to the training set's indices.
    val = ImageFolderRGB(tmp_path, "val")
    assert [c.id for c in val.classes] == ["n01", "n03"] and val.samples[-1][1] == 1
    check_splits(train, val)
    assert val.classes == train.classes and val.samples[-1][1] == 2 and val[5][1] == 2


def test_folder_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderRGB(tmp_path / "nowhere", "train")
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=r"no 'val' split folder.*it has train"):
        ImageFolderRGB(tmp_path, "val")
    with pytest.raises(DataError, match="has no class folders"):
        ImageFolderRGB(tmp_path, "train")
    (tmp_path / "train" / "cat").mkdir()
    Image.fromarray(rgb_pattern(4, 4)).save(tmp_path / "train" / "cat" / "a.png")
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "train" / "dog" / "readme.txt").write_text("no pictures here")
    with pytest.raises(DataError, match=r"dog.*\(class 'dog'\) has no images"):
        ImageFolderRGB(tmp_path, "train")
    (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg at all")
    train = ImageFolderRGB(tmp_path, "train")
    with pytest.raises(DataError, match="broken.jpg"):
        train[1]
    (tmp_path / "val" / "cat").mkdir(parents=True)
    (tmp_path / "val" / "zebra").mkdir(parents=True)
    for cid in ("cat", "zebra"):
        Image.fromarray(rgb_pattern(4, 4)).save(tmp_path / "val" / cid / "a.png")
    with pytest.raises(DataError, match="1 class.*training set lacks: zebra"):
        check_splits(train, ImageFolderRGB(tmp_path, "val"))
    (tmp_path / "classes.txt").write_text("0 cat\n")
    with pytest.raises(DataError, match="line 1"):
        ImageFolderRGB(tmp_path, "train")
    assert issubclass(DataError, IlsvrcError)


def test_open_dataset_and_class_list_round_trip(tmp_path):
    synthetic = open_dataset(None, "val", image_size=24, seed=3, num_classes=4, length=12)
    assert (
        isinstance(synthetic, SyntheticShapes)
        and len(synthetic) == 12
        and synthetic[0][0].shape == (3, 24, 24)
    )
    for cid in ("a", "b"):
        (tmp_path / "train" / cid).mkdir(parents=True)
        for k in range(5):
            Image.fromarray(rgb_pattern(4, 4, k)).save(tmp_path / "train" / cid / f"{k}.png")
    folder = open_dataset(tmp_path, "train", length=4)
    assert isinstance(folder, ImageFolderRGB) and len(folder) == 4
    assert sorted(label for _, label in folder.samples) == [0, 0, 1, 1]  # spread over the classes
    assert len(open_dataset(str(tmp_path), "train")) == 10

    path = tmp_path / "run" / "classes.json"
    classes = [ClassInfo(0, "n01440764", "tench"), ClassInfo(1, "n02102040", "English_springer")]
    save_classes(path, classes)
    assert load_classes(path) == classes
    path.write_text('[{"index": 0, "id": "x"}]')
    with pytest.raises(DataError, match="malformed"):
        load_classes(path)
    with pytest.raises(DataError, match="does not exist"):
        load_classes(tmp_path / "missing.json")


# --------------------------------------------------------------------------------------------------
# The generated dataset


def test_synthetic_is_deterministic_per_seed_split_and_index():
    a = SyntheticShapes("train", image_size=32, length=40, seed=0)
    b = SyntheticShapes("train", image_size=32, length=40, seed=0)
    forward = [a[i][0] for i in range(40)]
    backward = [b[i][0] for i in reversed(range(40))][::-1]
    assert all(torch.equal(x, y) for x, y in zip(forward, backward))  # exact: the same drawing, redone
    other_seed = SyntheticShapes("train", image_size=32, length=40, seed=1)
    val = SyntheticShapes("val", image_size=32, length=40, seed=0)
    assert not any(torch.equal(a[i][0], other_seed[i][0]) for i in range(40))
    assert not any(torch.equal(a[i][0], val[i][0]) for i in range(40))
    assert [a[i][1] for i in range(12)] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert len(SyntheticShapes("train")) == 2000 and len(SyntheticShapes("val")) == 500
    assert [c.id for c in SyntheticShapes(num_classes=3).classes] == ["circle", "hstripes", "square"]
    labels = [SyntheticShapes("val", num_classes=7, length=70)[i][1] for i in range(70)]
    assert np.bincount(labels).tolist() == [10] * 7  # balanced
    for size in (16, 17, 50, 129):
        image, _ = SyntheticShapes(image_size=size, length=10)[9]
        assert image.dtype == torch.uint8 and tuple(image.shape) == (3, size, size)
    for bad in (dict(num_classes=1), dict(num_classes=11), dict(image_size=15), dict(split="test")):
        with pytest.raises(DataError):
            SyntheticShapes(**bad)


def test_synthetic_first_k_classes_mix_shapes_and_textures_each_drawn_as_its_id_says():
    """Classes alternate shape and texture, so every subset a run takes (the first k) has both; each
    class is drawn as its id says wherever it sits in the list: stripes change across their direction,
    a shape leaves the border of the image its background (one colour up to noise and shading)."""
    data = SyntheticShapes("train", image_size=48, length=200)
    ids = [c.id for c in data.classes]
    stripes = {"hstripes": 1, "vstripes": 2}  # the image axis along which the colour changes
    shapes = {"circle", "square", "triangle", "ring", "cross"}
    for k in range(2, 11):
        assert shapes & set(ids[:k]) and set(ids[:k]) - shapes, ids[:k]
    for index in range(len(data)):
        image, label = data[index]
        x = image.float()
        if ids[label] in stripes:
            along = stripes[ids[label]]
            across = 3 - along
            change = x.diff(dim=along).abs().mean()
            assert change > 2 * x.diff(dim=across).abs().mean(), (index, ids[label])
        border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1)  # 3 x 192
        inner = x[:, 12:-12, 12:-12].flatten(1)
        if ids[label] in shapes:  # the border is background; the middle holds the shape's colour too
            assert border.std(1).max() < inner.std(1).max(), (index, ids[label])


def test_synthetic_mean_colour_says_little_but_a_small_cnn_learns_it():
    train = SyntheticShapes("train", image_size=24, length=800)
    val = SyntheticShapes("val", image_size=24, length=500)
    x = torch.stack([train[i][0] for i in range(len(train))]).float() / 255
    y = torch.tensor([train[i][1] for i in range(len(train))])
    xv = torch.stack([val[i][0] for i in range(len(val))]).float() / 255
    yv = torch.tensor([val[i][1] for i in range(len(val))])
    # Nearest class mean on the per-channel mean colour: near chance (10%).
    means, means_v = x.mean((2, 3)), xv.mean((2, 3))
    centres = torch.stack([means[y == c].mean(0) for c in range(10)])
    colour_accuracy = (torch.cdist(means_v, centres).argmin(1) == yv).float().mean().item()
    assert colour_accuracy < 0.5
    # A three-layer CNN, four epochs, about two seconds: far above chance (about 50%).
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        *(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.BatchNorm2d(16),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        ),
        *(
            torch.nn.Conv2d(16, 32, 3, padding=1),
            torch.nn.BatchNorm2d(32),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        ),
        *(torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU()),
        *(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10)),
    )
    mu, sigma = x.mean((0, 2, 3), keepdim=True), x.std((0, 2, 3), keepdim=True)
    x, xv = (x - mu) / sigma, (xv - mu) / sigma
    optimiser = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(4):
        for batch in torch.randperm(len(x)).split(64):
            loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        cnn_accuracy = (net(xv).argmax(1) == yv).float().mean().item()
    assert cnn_accuracy > 0.35 > colour_accuracy + 0.1, (cnn_accuracy, colour_accuracy)


# --------------------------------------------------------------------------------------------------
# Augmented: one sample's augmentation depends on (seed, epoch, index) only


def light_dataset(length: int = 12, seed: int = 0) -> Augmented:
    base = SyntheticShapes("train", image_size=32, length=length)
    return Augmented(base, train_transform("rrc", 24, MEAN, STD), seed=seed)


def test_augmented_ignores_order_and_leaves_global_rng_alone():
    ds = light_dataset()
    torch.manual_seed(123)
    forward = [ds[i][0] for i in range(12)]
    after = torch.rand(3)
    torch.manual_seed(123)
    expected_after = torch.rand(3)
    assert torch.equal(after, expected_after)  # the caller's generator was not advanced
    backward = [ds[i][0] for i in reversed(range(12))][::-1]
    assert all(torch.equal(a, b) for a, b in zip(forward, backward))  # exact: the same ops, the same seed
    assert not torch.equal(forward[0], light_dataset(seed=1)[0][0])
    ds.set_epoch(1)
    assert ds.epoch == 1 and not torch.equal(forward[0], ds[0][0])
    ds.set_epoch(0)
    assert torch.equal(forward[0], ds[0][0])
    assert ds.classes == ds.base.classes and len(ds) == 12


def test_augmented_same_batches_with_any_worker_count_and_resume_offset():
    ds = light_dataset(length=12)

    def batches(loader):
        return [images for images, _ in loader]

    single = batches(DataLoader(ds, batch_size=4, num_workers=0))
    workers = batches(DataLoader(ds, batch_size=4, num_workers=2))
    # exact: each sample is made alone by the same ops wherever it runs, and a 3x24x24 image is below
    # torch's parallel grain (32768 elements), so a worker's single thread computes it as the main one does
    assert all(torch.equal(a, b) for a, b in zip(single, workers)) and len(workers) == 3
    resumed = batches(DataLoader(torch.utils.data.Subset(ds, range(5, 12)), batch_size=7))
    assert torch.equal(resumed[0], torch.cat(single)[5:])
    # Persistent workers see set_epoch (the epoch lives in shared memory).
    loader = DataLoader(ds, batch_size=12, num_workers=2, persistent_workers=True)
    epoch0 = batches(loader)[0]
    ds.set_epoch(1)
    epoch1 = batches(loader)[0]
    assert torch.equal(epoch0, torch.cat(single))
    assert torch.equal(epoch1, torch.stack([ds[i][0] for i in range(12)]))
    assert not torch.equal(epoch0, epoch1)


# --------------------------------------------------------------------------------------------------
# Transforms


def test_pca_lighting_offset_statistics():
    """AlexNet: add sum_i p_i a_i lambda_i, a_i ~ N(0, 0.1): the offsets' covariance is
    V diag((0.1 lambda)^2) V^T with V's columns the eigenvectors."""
    lighting = PCALighting(0.1)
    torch.manual_seed(0)
    n = 20000
    offsets = torch.stack([lighting.offset() for _ in range(n)]).double()
    vectors = torch.tensor(IMAGENET_PCA_EIGVEC, dtype=torch.float64)
    values = torch.tensor(IMAGENET_PCA_EIGVAL, dtype=torch.float64)
    expected = vectors @ torch.diag((0.1 * values) ** 2) @ vectors.T
    assert offsets.mean(0).abs().max() < 4 * 0.1 * 0.2175 / n**0.5
    assert torch.allclose(offsets.T.cov(), expected, atol=0.05 * expected.abs().max().item())
    # The first eigenvector (brightness) carries almost all the variance: std about 0.02 per channel.
    assert offsets.std(0).tolist() == pytest.approx([0.0124, 0.0126, 0.0128], abs=3e-4)
    # One offset per image, the same at every pixel; not clamped.
    image = torch.rand(3, 5, 7)
    shifted = lighting(image)
    shift = shifted - image
    assert torch.allclose(shift, shift[:, :1, :1].expand_as(shift), atol=1e-6)
    ones = lighting(torch.ones(3, 2, 2))
    assert ones.max() > 1 or ones.min() < 1
    assert torch.equal(PCALighting(0.0)(image), image)  # exact: x + 0.0 is x


def test_train_transforms_shapes_and_randomness():
    image = torch.from_numpy(rgb_pattern(60, 90).transpose(2, 0, 1).copy())
    for kind in TRAIN_AUGMENTATIONS:
        transform = train_transform(kind, 32, MEAN, STD)
        outputs = []
        for seed in range(6):
            torch.manual_seed(seed)
            outputs.append(transform(image))
        torch.manual_seed(0)
        assert torch.equal(transform(image), outputs[0]), kind  # same seed, same ops: exact
        assert all(o.dtype == torch.float32 and tuple(o.shape) == (3, 32, 32) for o in outputs), kind
        assert len({o.sum().item() for o in outputs}) == 6, kind  # crops and flips vary with the seed
    with pytest.raises(IlsvrcError, match="'cutmix'") as error:
        train_transform("cutmix", 32, MEAN, STD)
    assert all(kind in str(error.value) for kind in TRAIN_AUGMENTATIONS)  # the choices are named


def test_paper_sizes_and_flips():
    alexnet = train_transform("alexnet", 224, MEAN, STD)
    assert list(alexnet.transforms[0].size) == [256, 256]  # resize to 256 x 256, crop 224
    assert isinstance(alexnet.transforms[-1].lighting, PCALighting)
    vgg = train_transform("vgg", 224, MEAN, STD)
    jitter = vgg.transforms[0]
    assert isinstance(jitter, RandomShorterSide) and (jitter.min_size, jitter.max_size) == (256, 512)
    small = train_transform("vgg", 128, MEAN, STD).transforms[0]
    assert (small.min_size, small.max_size) == (146, 293)
    sides = set()
    image = torch.zeros(3, 40, 60, dtype=torch.uint8)
    torch.manual_seed(0)
    for _ in range(200):
        sides.add(min(RandomShorterSide(10, 14)(image).shape[1:]))
    assert sides == {10, 11, 12, 13, 14}
    # Horizontal flips: an image dark on the left half comes out mirrored about half the time.
    half = torch.zeros(3, 64, 64, dtype=torch.uint8)
    half[:, :, 32:] = 255
    transform = train_transform("light", 32, (0, 0, 0), (1, 1, 1))
    flipped = 0
    for seed in range(100):
        torch.manual_seed(seed)
        out = transform(half)
        flipped += int(out[:, :, 0].mean() > out[:, :, -1].mean())
    assert 30 < flipped < 70


def test_eval_transform_resize_then_centre_crop():
    """The one centre-crop evaluation transform: resize and crop on uint8, then the fused float pass."""
    image = torch.from_numpy(rgb_pattern(300, 400).transpose(2, 0, 1).copy())
    transform = eval_input_transform("center", 224, MEAN, STD)  # resize 256 (224 / 0.875), crop 224
    assert isinstance(transform.transforms[-1], NormalisedFloat)  # not ToDtype + Normalize: slower
    out = transform(image)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    torch.manual_seed(1)
    assert torch.equal(transform(image), out)  # no randomness: the same call, exactly the same result
    resized = resize_shorter(image, 256)
    assert resized.dtype == torch.uint8 and tuple(resized.shape) == (3, 256, 341)
    top, left = (256 - 224) // 2, (341 - 224) // 2
    crop = resized[:, top : top + 224, left : left + 224].float() / 255
    manual = (crop - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    assert torch.allclose(out, manual, atol=1e-5)
    assert eval_input_transform("center", 128, MEAN, STD, crop_fraction=1.0)(image).shape == (3, 128, 128)
    with pytest.raises(EvaluationError, match="crop_fraction"):
        eval_input_transform("center", 128, MEAN, STD, crop_fraction=0)
