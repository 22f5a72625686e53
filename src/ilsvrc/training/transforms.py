"""The papers' augmentations on uint8 C x H x W RGB tensors (no PIL), and the fused normalisation.

Each transform takes the uint8 image a dataset gives and returns a normalised float32 tensor
3 x image_size x image_size. Geometry (resize, crop, flip) runs on uint8, which is smaller and has a
fast antialiased resize; the image becomes float once, just before colour augmentation and
normalisation. Random numbers come from torch's global generator, so `ilsvrc.data.Augmented`, which
seeds it per sample, makes every augmentation reproducible.

A training transform is a `Pipeline`: its uint8 steps (`geometry`), then `NormalisedFloat`. Called on
one image it gives that image's float tensor; a loader instead runs `geometry` per image and
normalises the whole batch at once (`Augmented.__getitems__`), with the same values, exactly.
`Pipeline.at_size(n)` makes the same transform for another output size (progressive resizing).

The random resized crop of "rrc", "light" and "googlenet" is `RandomResizedCropFlip`: torchvision's
RandomResizedCrop and RandomHorizontalFlip in one call, with OpenCV's bilinear resize where the crop
is enlarged and torch's antialiased one where it is shrunk (why, and what each costs: `resize_uint8`);
the papers' fixed or jittered resizes go through `resize_uint8` too, and their crop and flip are
`RandomCropFlip`, whose random numbers are drawn in one call.

Sizes scale with `image_size` as the papers' sizes do with 224: AlexNet resizes to 256 (256/224 of the
crop), VGG draws the shorter side from [256, 512], ResNet from [256, 480]. The evaluation transforms
(resize, centre crop, the same `NormalisedFloat`) are `ilsvrc.training.evaluate.eval_input_transform`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2

from ..errors import IlsvrcError
from .recipes import RESIZED_CROP_AREA

# The eigen-decomposition of ImageNet's RGB covariance (RGB in [0, 1]) that fb.resnet.torch and most
# re-implementations use; the AlexNet paper gives none. Eigenvalues largest first; the eigenvectors are
# the COLUMNS of IMAGENET_PCA_EIGVEC (the first, about (-0.57, -0.58, -0.58), is brightness).
IMAGENET_PCA_EIGVAL: tuple[float, float, float] = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC: tuple[tuple[float, float, float], ...] = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)

TRAIN_AUGMENTATIONS: tuple[str, ...] = ("alexnet", "vgg", "resnet", "googlenet", "rrc", "light")

# Andrew Howard's photometric distortions (arXiv:1312.5402), which GoogLeNet trained with: PIL's
# brightness, contrast and colour (saturation) enhancements, each by a factor drawn from [0.5, 1.5], in a
# random order. torchvision's ColorJitter(brightness=0.5, contrast=0.5, saturation=0.5) is the same
# three operations (a blend with black, with the mean grey level, with the grey image) and factors, in a
# random order; no hue change (Howard made none).
HOWARD_JITTER: dict[str, float] = {"brightness": 0.5, "contrast": 0.5, "saturation": 0.5}


class PCALighting(torch.nn.Module):
    """AlexNet's colour augmentation: add `eigvec @ (alpha * eigval)` to every pixel of the image.

    `alpha` (3 values) ~ N(0, alphastd^2) is drawn once per image from torch's global generator; the
    same RGB offset is added to every pixel. Input and output: float C x H x W RGB in [0, 1] (before
    normalisation). Not clamped: the offset is small (std about 0.1 * 0.2175 = 0.02 along the
    brightness axis) and clamping would bias its mean near black and white; the few values that step
    outside [0, 1] are harmless to a network.
    """

    def __init__(
        self,
        alphastd: float = 0.1,
        eigval: Sequence[float] = IMAGENET_PCA_EIGVAL,
        eigvec: Sequence[Sequence[float]] = IMAGENET_PCA_EIGVEC,
    ) -> None:
        super().__init__()
        self.alphastd = float(alphastd)
        self.register_buffer("eigval", torch.tensor(eigval, dtype=torch.float32), persistent=False)
        self.register_buffer("eigvec", torch.tensor(eigvec, dtype=torch.float32), persistent=False)
        if self.eigval.shape != (3,) or self.eigvec.shape != (3, 3):
            raise IlsvrcError("PCA lighting needs 3 eigenvalues and a 3 x 3 eigenvector matrix.")

    def offset(self) -> Tensor:
        """Draw one image's RGB offset, shape (3,): eigvec @ (alpha * eigval), alpha ~ N(0, alphastd^2)."""
        alpha = torch.randn(3) * self.alphastd
        return self.eigvec @ (alpha * self.eigval)

    def forward(self, image: Tensor) -> Tensor:
        """`image` (float 3 x H x W in [0, 1]) plus one random RGB offset for the whole image."""
        if self.alphastd == 0:
            return image
        return image + self.offset().to(image.dtype).view(3, 1, 1)

    def extra_repr(self) -> str:
        return f"alphastd={self.alphastd}"


class RandomShorterSide(torch.nn.Module):
    """VGG's scale jittering: resize so the shorter side is S, S uniform in [min_size, max_size] (ints)."""

    def __init__(self, min_size: int, max_size: int) -> None:
        super().__init__()
        if not 0 < min_size <= max_size:
            raise IlsvrcError(
                f"Scale jittering needs 0 < min_size <= max_size, got [{min_size}, {max_size}]."
            )
        self.min_size = min_size
        self.max_size = max_size

    def forward(self, image: Tensor) -> Tensor:
        size = int(torch.randint(self.min_size, self.max_size + 1, ()).item())
        return resize_shorter(image, size)

    def extra_repr(self) -> str:
        return f"min_size={self.min_size}, max_size={self.max_size}"


def resize_shorter(image: Tensor, size: int) -> Tensor:
    """Resize `image` (3 x H x W, uint8) so its shorter side is `size`, keeping the aspect ratio (the
    longer side rounded down, as torchvision rounds it).

    Bilinear, antialiased where it shrinks (as PIL resizes), uint8 in and out (`resize_uint8`).
    """
    if size < 1:
        raise IlsvrcError(f"Cannot resize to a shorter side of {size} pixels.")
    height, width = image.shape[-2:]
    if height <= width:
        return resize_uint8(image, size, int(size * width / height))
    return resize_uint8(image, int(size * height / width), size)


class Resize(torch.nn.Module):
    """Resize to `size` = [height, width] (`resize_uint8`): AlexNet's 256 x 256 before its crops."""

    def __init__(self, size: Sequence[int]) -> None:
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    def forward(self, image: Tensor) -> Tensor:
        return resize_uint8(image, *self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"


class RandomCropFlip(torch.nn.Module):
    """v2.RandomCrop(size) then v2.RandomHorizontalFlip(), with the three random numbers (top, left,
    flip) drawn in one call from torch's global generator: uint8 3 x H x W in (H, W >= size), uint8
    3 x size x size out. The position is uniform and the flip has probability 1/2, as torchvision's."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = int(size)

    def forward(self, image: Tensor) -> Tensor:
        height, width = image.shape[-2:]
        if height < self.size or width < self.size:
            raise IlsvrcError(f"Cannot cut a {self.size}-pixel crop from a {height} x {width} image.")
        top, left, flip = torch.rand(3).tolist()
        top = min(int(top * (height - self.size + 1)), height - self.size)
        left = min(int(left * (width - self.size + 1)), width - self.size)
        crop = image[:, top : top + self.size, left : left + self.size]
        return crop.flip(-1) if flip < 0.5 else crop

    def extra_repr(self) -> str:
        return f"size={self.size}, flip=0.5"


def resize_uint8(image: Tensor, height: int, width: int) -> Tensor:
    """Resize `image` (uint8 3 x h x w, any strides) to 3 x height x width uint8, bilinear.

    Where the image is shrunk along either axis: torch's bilinear resize with antialiasing (the
    filter widened by the shrink factor, as PIL resizes: nearly every value PIL's, none more than 2
    levels of 255 off). Where it is enlarged (or kept) along both: OpenCV's INTER_LINEAR on
    H x W x 3 pixels, plain bilinear with half-pixel centres, which is what antialiasing comes to
    when nothing shrinks; every value within 1 level of torch's and PIL's (OpenCV's 11-bit
    fixed-point weights put about a quarter of them 1 off), at about a third of torch's time
    (benchmarks/RESULTS.md, "The data pipeline's parts"). OpenCV's INTER_AREA, its antialiased
    shrink, is a box filter (up to about 20 levels from PIL's bilinear on textured images) and slower
    than torch's at the fractional factors a random crop gives (1 to 1.75 for 224 -> 128 px), so it
    is not used. The result is channels-last in memory (a 3 x H x W view of H x W x 3 pixels) when
    the input is, and always where OpenCV resizes.
    """
    h, w = image.shape[-2:]
    if h <= height and w <= width:
        import cv2  # here, not at the top: importing the training layer stays quick

        hwc = image.permute(1, 2, 0).numpy()
        if hwc.strides[1:] != (3, 1):  # OpenCV takes rows with gaps, not planar pixels
            hwc = np.ascontiguousarray(hwc)
        out = cv2.resize(hwc, (width, height), interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(out).permute(2, 0, 1)
    # a batch of one whose batch stride is not 3: `image[None]` would give it stride 3 when the image
    # is channels-last, and torch would then lay the result out planar and take its slower path
    batch = image.permute(1, 2, 0)[None].permute(0, 3, 1, 2)
    return torch.nn.functional.interpolate(batch, size=(height, width), mode="bilinear", align_corners=False,
                                           antialias=True)[0]  # fmt: skip


class RandomResizedCropFlip(torch.nn.Module):
    """torchvision's RandomResizedCrop(size, scale, ratio) then RandomHorizontalFlip(), in one call.

    The crop is drawn as torchvision draws it (area fraction uniform in `scale`, log aspect ratio
    uniform in log `ratio`, up to 10 tries, else the centre crop clamped to `ratio`; position uniform),
    from torch's global generator, but with all its random numbers in one call: torchvision's
    `get_params` makes a dozen small tensor calls per image, about a tenth of the whole crop's time.
    Then `resize_uint8` and a flip with probability 1/2. uint8 3 x H x W in, uint8 3 x size x size out
    (channels-last in memory when the input is, as the decoded cache hands it out).
    """

    def __init__(
        self, size: int, scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3)
    ) -> None:
        super().__init__()
        if not (0 < scale[0] <= scale[1] and 0 < ratio[0] <= ratio[1]):
            raise IlsvrcError(f"A random resized crop needs positive, ordered ranges; got {scale}, {ratio}.")
        self.size = int(size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))

    def params(self, height: int, width: int) -> tuple[int, int, int, int, bool]:
        """(top, left, crop height, crop width, flip) for an image of height x width pixels."""
        draws = torch.rand(41).tolist()  # 10 tries of (area, ratio, top, left), then the flip
        area = height * width
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for k in range(0, 40, 4):
            target = area * (self.scale[0] + draws[k] * (self.scale[1] - self.scale[0]))
            aspect = math.exp(log_lo + draws[k + 1] * (log_hi - log_lo))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = min(int(draws[k + 2] * (height - h + 1)), height - h)
                left = min(int(draws[k + 3] * (width - w + 1)), width - w)
                return top, left, h, w, draws[40] < 0.5
        in_ratio = width / height  # torchvision's fallback: the centre crop, its ratio clamped
        if in_ratio < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w, draws[40] < 0.5

    def forward(self, image: Tensor) -> Tensor:
        top, left, h, w, flip = self.params(image.shape[-2], image.shape[-1])
        out = resize_uint8(image[:, top : top + h, left : left + w], self.size, self.size)
        return out.flip(-1) if flip else out

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}, flip=0.5"


def _check(image_size: int, mean: Sequence[float], std: Sequence[float]) -> None:
    if not isinstance(image_size, int) or image_size < 1:
        raise IlsvrcError(f"image_size must be a positive whole number of pixels, got {image_size!r}.")
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise IlsvrcError(f"mean and std need 3 values each (RGB), std positive; got {mean!r}, {std!r}.")


class NormalisedFloat(torch.nn.Module):
    """uint8 pixels to normalised float32, (x / 255 + lighting - mean) / std, in one fused pass.

    The same values as v2.ToDtype(float32, scale=True), then `lighting` (a `PCALighting`, optional),
    then v2.Normalize(mean, std), to float rounding; one multiply-add per value instead of three passes
    over the image (the time of each: benchmarks/RESULTS.md, "The data pipeline's parts"). The input's
    memory layout is kept.
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], lighting: PCALighting | None = None
    ) -> None:
        super().__init__()
        self.lighting = lighting
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(3, 1, 1), False)
        self.register_buffer("scale", 1.0 / (255.0 * self.std), False)
        self.register_buffer("shift", -self.mean / self.std, False)

    def image_shift(self) -> Tensor:
        """One image's additive term, shape (3,): -mean / std, plus its lighting offset / std (drawn
        now from torch's global generator, as `forward` draws it)."""
        shift = self.shift
        if self.lighting is not None and self.lighting.alphastd:
            shift = shift + self.lighting.offset().view(3, 1, 1) / self.std
        return shift.view(3)

    def forward(self, image: Tensor) -> Tensor:
        # in place on the fresh float copy: two passes, no temporary
        return image.to(torch.float32).mul_(self.scale).add_(self.image_shift().view(3, 1, 1))

    def batch(self, pixels: Sequence[Tensor], shifts: Tensor, out: Tensor | None = None) -> Tensor:
        """A batch at once: `pixels` N uint8 images H x W x 3, `shifts` N x 3 from `image_shift`;
        returns float32 N x 3 x H x W, channels-last in memory (a view of `out`, an N x H x W x 3
        float32 tensor to fill, when given).

        The same operations as `forward` on each image (to float, times the scale, plus the shift),
        so the same values, bit for bit. Each image is one flat row, its scale and shift tiled along
        it: with the 3 channels innermost, a per-channel broadcast makes torch loop 3 values at a
        time, several times slower than these flat passes (measured in benchmarks/pipeline_parts.py).
        """
        n, (h, w) = len(pixels), pixels[0].shape[:2]
        if out is None:
            out = torch.empty((n, h, w, 3), dtype=torch.float32)
        scale = self.scale.view(3).repeat(h * w)
        same = self.lighting is None or not self.lighting.alphastd  # one shift for every image
        shift = shifts[0].repeat(h * w) if same and n else None
        for i, image in enumerate(pixels):
            row = out[i].view(-1).copy_(image.reshape(-1)).mul_(scale)
            row.add_(shift if shift is not None else shifts[i].repeat(h * w))
        return out.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class Pipeline(v2.Compose):
    """uint8 steps, then `NormalisedFloat`: v2.Compose with its two halves named.

    Called on one uint8 image it gives the normalised float image, as v2.Compose does. A loader runs
    `geometry` (every step but the last) per image and `normalise.batch` on the whole batch instead:
    the same values, one float pass per batch (`ilsvrc.training.data.Augmented`). `at_size(n)` makes
    the same transform for n x n outputs, from the `factory` that made this one.
    """

    def __init__(self, transforms: Sequence[Callable], factory: Callable[[int], Pipeline] | None = None,
                 image_size: int | None = None) -> None:  # fmt: skip
        if not transforms or not isinstance(transforms[-1], NormalisedFloat):
            raise IlsvrcError("A Pipeline ends with NormalisedFloat (uint8 steps first, then to float).")
        super().__init__(list(transforms))
        self.factory = factory
        self.image_size = image_size

    @property
    def normalise(self) -> NormalisedFloat:
        return self.transforms[-1]

    def geometry(self, image: Tensor) -> Tensor:
        """The uint8 steps alone: uint8 3 x H x W in and out."""
        for step in self.transforms[:-1]:
            image = step(image)
        return image

    def at_size(self, image_size: int) -> Pipeline:
        """The same transform giving image_size x image_size images (self when the size is this one's)."""
        if image_size == self.image_size:
            return self
        if self.factory is None:
            raise IlsvrcError("This transform cannot change its output size (it was made without a factory).")
        return self.factory(image_size)


def train_transform(
    kind: str, image_size: int, mean: Sequence[float], std: Sequence[float], min_area: float | None = None
) -> Pipeline:
    """A training augmentation by name: uint8 3 x H x W in, normalised float32 3 x size x size out.

    - "alexnet" [AK]: resize to a square of round(size * 256/224), random size x size crop, horizontal
      flip, PCA lighting (alphastd 0.1), normalise.
    - "vgg" [VGG]: shorter side S uniform in [round(size * 256/224), round(size * 512/224)], random crop,
      flip, and the paper's "random RGB colour shift", which it credits to Krizhevsky et al.: PCA
      lighting, as in "alexnet"; normalise.
    - "resnet" [RN]: as "vgg" with the shorter side in [round(size * 256/224), round(size * 480/224)]
      (the paper's [256, 480]), random crop, flip, PCA lighting ("the standard colour augmentation"
      of AlexNet), normalise.
    - "googlenet" [GN]: crops of 8% to 100% of the image's area with aspect ratios in [3/4, 4/3]
      resized to size x size (torchvision's RandomResizedCrop, the paper's sampling), flip, Howard's
      photometric distortions (`HOWARD_JITTER`, on uint8 as PIL made them), and the PCA lighting
      Howard adds to them, normalise.
    - "rrc": torchvision's RandomResizedCrop(size, scale=(0.08, 1)) (the Inception-style crop the
      torchvision references train with), flip, normalise.
    - "light": RandomResizedCrop(size, scale=(0.35, 1)), flip, normalise: milder crops for small data
      and short CPU runs.

    `min_area` replaces the smallest share of the image's area a random resized crop takes (0.08 or
    0.35 above; 1 leaves only the aspect ratio random) in the augmentations that make one.
    """
    _check(image_size, mean, std)
    if min_area is not None:
        if kind not in RESIZED_CROP_AREA:
            raise IlsvrcError(f"A smallest crop area is a setting of the random resized crops of "
                              f"{', '.join(RESIZED_CROP_AREA)}, not of the {kind!r} augmentation; "
                              f"leave it out or choose one of those.")  # fmt: skip
        if not 0 < min_area <= 1:
            raise IlsvrcError(f"The smallest crop area is a share of the image in (0, 1], got {min_area}.")
    area = (RESIZED_CROP_AREA.get(kind, 1.0) if min_area is None else min_area, 1.0)
    base = round(image_size * 256 / 224)
    crop_flip = RandomCropFlip(image_size)
    if kind == "alexnet":
        steps = [Resize([base, base]), crop_flip]
        lighting: PCALighting | None = PCALighting(0.1)
    elif kind == "vgg":
        steps = [RandomShorterSide(base, round(image_size * 512 / 224)), crop_flip]
        lighting = PCALighting(0.1)
    elif kind == "resnet":
        steps = [RandomShorterSide(base, round(image_size * 480 / 224)), crop_flip]
        lighting = PCALighting(0.1)
    elif kind == "googlenet":
        steps = [RandomResizedCropFlip(image_size, area), v2.ColorJitter(**HOWARD_JITTER)]
        lighting = PCALighting(0.1)
    elif kind in ("rrc", "light"):
        steps = [RandomResizedCropFlip(image_size, area)]
        lighting = None
    else:
        raise IlsvrcError(f"Unknown augmentation {kind!r}; the choices are {', '.join(TRAIN_AUGMENTATIONS)}.")
    # crops and flips on uint8 (4x less memory to move than float), then one fused pass to float
    factory = functools.partial(train_transform, kind, mean=tuple(mean), std=tuple(std), min_area=min_area)
    return Pipeline([*steps, NormalisedFloat(mean, std, lighting)], factory, image_size)
