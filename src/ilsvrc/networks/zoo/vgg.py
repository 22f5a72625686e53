"""VGG (Simonyan & Zisserman, Very Deep Convolutional Networks, arXiv:1409.1556), configs A to E.

Each config is a list, as in the paper's Table 1: a number is a 3x3 convolution (stride 1, padding 1)
with that many filters, `(n, 1)` a 1x1 convolution (config C), "M" a 2x2/2 max pooling, "LRN" the
local response normalisation of A-LRN. Then FC-4096, FC-4096, FC-1000 with dropout 0.5 after the first
two. Layer names follow Caffe's: conv3_2 is the second convolution of the third stage.

The specs follow the paper, with no adaptive pooling: at 224x224 they hold exactly torchvision's
parameters in the same order (torchvision's AdaptiveAvgPool2d(7) does nothing at 224).
"""

from __future__ import annotations

from functools import partial

from ..spec import LRN, BatchNorm, Conv, Layer, MaxPool, ModelInfo, Network, ReLU
from .parts import fc_head
from .registry import register

YEAR = 2014
PAPER = "Simonyan & Zisserman, Very Deep Convolutional Networks, arXiv:1409.1556"
RESULT = "ILSVRC-2014 2nd in classification: 7.3% top-5 test (6.8% after the challenge)"

CONFIGS: dict[str, list] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M",
          512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}  # fmt: skip

# name -> (config, weight layers, batch norm, the paper's Table 3/4 figures where facts.md has them)
VARIANTS: dict[str, tuple[str, int, bool, str]] = {
    "vgg11": ("A", 11, False, RESULT),
    "vgg11-lrn": ("A-LRN", 11, False, "A-LRN: LRN did not help (paper, Table 3)"),
    "vgg13": ("B", 13, False, RESULT),
    "vgg16-c": ("C", 16, False, RESULT),
    "vgg16": ("D", 16, False, "D, single scale, jittered training: 25.6/8.1 top-1/top-5; " + RESULT),
    "vgg19": ("E", 19, False, RESULT),
    "vgg11-bn": ("A", 11, True, "Batch-norm form (torchvision); not in the paper"),
    "vgg13-bn": ("B", 13, True, "Batch-norm form (torchvision); not in the paper"),
    "vgg16-bn": ("D", 16, True, "Batch-norm form (torchvision); not in the paper"),
    "vgg19-bn": ("E", 19, True, "Batch-norm form (torchvision); not in the paper"),
}


def make_layers(config: list, batch_norm: bool) -> list[Layer]:
    """The convolutional part of a VGG config, named conv<stage>_<i> / pool<stage>."""
    layers: list[Layer] = []
    stage, i = 1, 0
    for item in config:
        if item == "M":
            layers.append(MaxPool(f"pool{stage}", 2, 2))
            stage, i = stage + 1, 0
        elif item == "LRN":
            layers.append(LRN(f"norm{stage}", size=5, alpha=1e-4, beta=0.75, k=2.0))
        else:
            filters, kernel = item if isinstance(item, tuple) else (item, 3)
            i += 1
            tag = f"{stage}_{i}"
            layers.append(Conv(f"conv{tag}", filters, kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(BatchNorm(f"bn{tag}"))
            layers.append(ReLU(f"relu{tag}"))
    return layers


def vgg(name: str) -> Network:
    config, depth, batch_norm, result = VARIANTS[name]
    return Network(
        name,
        (3, 224, 224),
        (*make_layers(CONFIGS[config], batch_norm), *fc_head()),
        ModelInfo(
            title=f"VGG config {config}{' with batch norm' if batch_norm else ''}, {depth} weight layers",
            year=2014,
            paper=PAPER,
            result=result,
        ),
    )


for _name in VARIANTS:
    register(_name)(partial(vgg, _name))
