"""Reading one image file: decoded as uint8 RGB, or a `DataError` naming the file and the reason.

The bottom of the training layer: the data sets (`data`) and the decoded-image cache (`cache`) both
read through `read_image`, so neither needs the other for it.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import IlsvrcError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class DataError(IlsvrcError):
    """A dataset cannot be opened or read: missing folder, empty class, undecodable image."""


def _decode_with_pil(path: Path) -> Tensor:
    """Decode what torchvision.io cannot or should not (BMP, TIFF, PNG) with PIL, as uint8 3 x H x W RGB."""
    from PIL import Image

    # What PIL's decoders raise on a corrupt file besides OSError (UnidentifiedImageError is one), ValueError
    corrupt = (SyntaxError, EOFError, IndexError, struct.error, Image.DecompressionBombError)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                # 16-bit (or 32-bit integer) greyscale: PIL's convert("RGB") would clip at 255, making
                # almost every pixel white. Scale 0..65535 to 0..255 instead (rounding to nearest).
                wide = np.asarray(image).astype(np.int64).clip(0, 65535)
                grey = ((wide * 255 + 32767) // 65535).astype(np.uint8)
                array = np.repeat(grey[None], 3, axis=0)
                return torch.from_numpy(np.ascontiguousarray(array))
            with warnings.catch_warnings():
                # "Palette images with Transparency expressed in bytes should be converted to RGBA":
                # we drop alpha on purpose (see ImageFolderRGB).
                warnings.simplefilter("ignore", UserWarning)
                rgb = image.convert("RGB")
    except FileNotFoundError as error:  # not a bad image: no file at all
        raise DataError(f"The image {path} does not exist; check the path.") from error
    except IsADirectoryError as error:
        raise DataError(f"{path} is a folder, not an image file; give the path of an image.") from error
    except (OSError, ValueError, *corrupt) as error:
        raise DataError(f"Cannot decode the image {path}: {error}. Remove or replace the file.") from error
    return torch.from_numpy(np.asarray(rgb).transpose(2, 0, 1).copy())


def read_image(path: str | Path) -> Tensor:
    """Read an image file as a uint8 tensor 3 x H x W in RGB order.

    torchvision.io decodes JPEG (greyscale and CMYK too), GIF and WebP; what it refuses (BMP, TIFF)
    goes to PIL. PNG (recognised by its signature, whatever the file's name) goes to PIL too: torchvision
    0.29's PNG decoder crashes the process (segmentation fault) on a corrupt PNG where libpng reports an
    error, while PIL raises; for a valid PNG the two give the same pixels at about the same speed.
    Alpha is dropped, not composited (see `ImageFolderRGB`). A file that cannot be read or decoded
    (missing, unreadable, empty, truncated, not an image) raises `DataError` naming it; truncated
    files are never partly decoded (both decoders refuse them; PIL's LOAD_TRUNCATED_IMAGES is not set).
    """
    from torchvision.io import ImageReadMode, decode_image

    path = Path(path)
    if _is_png(path):
        return _decode_with_pil(path)
    try:
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its decoders in favour of TorchCodec (not a dependency here)
            # and warns on every call; they still work and are the fast path.
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            image = decode_image(str(path), mode=ImageReadMode.RGB)
    except (RuntimeError, NotImplementedError, ValueError):
        # torchvision 0.29: BMP/TIFF "Unsupported image file"; 16-bit PNG "max_all not implemented
        # for 'UInt16'"; a truncated or corrupt file fails here too and then in PIL, with its name.
        return _decode_with_pil(path)
    if image.ndim == 4:  # an animated GIF gives every frame: keep the first, as PIL does
        image = image[0]
    if image.dtype != torch.uint8 or image.shape[0] != 3:
        return _decode_with_pil(path)
    return image


def _is_png(path: Path) -> bool:
    """Whether the file starts with the PNG signature (False when it cannot be read: PIL will say why)."""
    try:
        with open(path, "rb") as file:
            return file.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


def unreadable_reason(path: Path, error: DataError) -> str:
    """A short reason for a `read_image` failure: the underlying error's message, or 'empty file'."""
    try:
        if path.is_file() and path.stat().st_size == 0:
            return "empty file (0 bytes)"
    except OSError:
        pass
    cause = error.__cause__
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
