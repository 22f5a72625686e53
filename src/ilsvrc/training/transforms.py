"""The papers' augmentations on uint8 C x H x W RGB tensors (no PIL), and the fused normalisation.

Each transform takes the uint8 image a dataset gives and returns a normalised float32 tensor
3 x image_size x image_size. Geometry (resize, crop, flip) runs on uint8, which is smaller and has a
fast antialiased resize; the image becomes float once, just before colour augmentation and
normalisation. Random numbers come from torch's global generator, so `ilsvrc.data.Augmented`, which
seeds it per sample, makes every augmentation reproducible.

Sizes scale with `image_size` as the papers' sizes do with 224: AlexNet resizes to 256 (256/224 of the
crop), VGG draws the shorter side from [256, 512], ResNet from [256, 480]. The evaluation transforms
(resize, centre crop, the same `NormalisedFloat`) are `ilsvrc.training.evaluate.eval_input_transform`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..errors import IlsvrcError

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
    """Resize `image` (C x H x W, uint8) so its shorter side is `size`, keeping the aspect ratio.

    Bilinear with antialiasing (as PIL resizes), uint8 in and out.
    """
    if size < 1:
        raise IlsvrcError(f"Cannot resize to a shorter side of {size} pixels.")
    return F.resize(image, [size], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)


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

    def forward(self, image: Tensor) -> Tensor:
        shift = self.shift
        if self.lighting is not None and self.lighting.alphastd:
            shift = shift + self.lighting.offset().view(3, 1, 1) / self.std
        # in place on the fresh float copy: two passes, no temporary
        return image.to(torch.float32).mul_(self.scale).add_(shift)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def train_transform(
    kind: str, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> Callable[[Tensor], Tensor]:
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
    """
    _check(image_size, mean, std)
    base = round(image_size * 256 / 224)
    flip = v2.RandomHorizontalFlip()
    bilinear = v2.InterpolationMode.BILINEAR
    if kind == "alexnet":
        steps = [v2.Resize([base, base], bilinear, antialias=True), v2.RandomCrop(image_size), flip]
        lighting: PCALighting | None = PCALighting(0.1)
    elif kind == "vgg":
        steps = [RandomShorterSide(base, round(image_size * 512 / 224)), v2.RandomCrop(image_size), flip]
        lighting = PCALighting(0.1)
    elif kind == "resnet":
        steps = [RandomShorterSide(base, round(image_size * 480 / 224)), v2.RandomCrop(image_size), flip]
        lighting = PCALighting(0.1)
    elif kind == "googlenet":
        crop = v2.RandomResizedCrop(image_size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                    interpolation=bilinear, antialias=True)  # fmt: skip
        steps = [crop, flip, v2.ColorJitter(**HOWARD_JITTER)]
        lighting = PCALighting(0.1)
    elif kind in ("rrc", "light"):
        scale = (0.08, 1.0) if kind == "rrc" else (0.35, 1.0)
        steps = [v2.RandomResizedCrop(image_size, scale=scale, interpolation=bilinear, antialias=True), flip]
        lighting = None
    else:
        raise IlsvrcError(f"Unknown augmentation {kind!r}; the choices are {', '.join(TRAIN_AUGMENTATIONS)}.")
    # crops and flips on uint8 (4x less memory to move than float), then one fused pass to float
    return v2.Compose([*steps, NormalisedFloat(mean, std, lighting)])
