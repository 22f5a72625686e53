"""GoogLeNet (Szegedy et al., Going Deeper with Convolutions, arXiv:1409.4842), the ILSVRC-2014 winner.

Nine Inception modules, each four branches run on the same input and joined along the channels: a 1x1
convolution; a 1x1 reduction then a 3x3; a 1x1 reduction then a 5x5; a 3x3/1 max pooling then a 1x1
projection. The paper's Table 1 gives each module's filters as (#1x1, #3x3 reduce, #3x3, #5x5 reduce,
#5x5, pool proj); `MODULES` below is that table.

- `googlenet`: as published, and as BVLC's Caffe replica (models/bvlc_googlenet) builds it: a ReLU
  after every convolution, LRN after the first pooling and after the 3x3 convolution of the stem,
  Caffe's pooling that rounds its output size up (ceil_mode: 224 -> 112 -> 56 -> 28 -> 14 -> 7), a 7x7
  average pooling, dropout 0.4 and one fully connected layer. Two auxiliary classifiers, on the outputs
  of inception4a and inception4d (5x5/3 average pooling, a 1x1 convolution to 128, FC 1024, dropout
  0.7, FC 1000), add 0.3 of their loss in training and are not run at test time.
- `googlenet-torchvision`: torchvision's model: batch norm (eps 0.001) after every convolution, which
  then has no bias; no LRN; the pooling of every module's pool branch rounds up too; a 2x2 pooling
  before inception5a; adaptive average pooling (to 4x4 in the auxiliary heads, to 1x1 at the top),
  dropout 0.2. Its known quirk: the branch torchvision calls "5x5" is a 3x3 convolution (padding 1),
  kept so that its published weights still load; this spec names it `b3` like the others and gives it
  the 3x3 kernel the weights have.
"""

from __future__ import annotations

from ..spec import (
    LRN,
    AdaptiveAvgPool,
    Aux,
    AvgPool,
    BatchNorm,
    Block,
    Concat,
    Conv,
    Dropout,
    Flatten,
    Layer,
    Linear,
    MaxPool,
    ModelInfo,
    Network,
    ReLU,
)
from .registry import register

YEAR = 2014
ORDER = 1  # after VGG, as the lecture and the challenge's error table tell 2014
PAPER = "Szegedy et al., Going Deeper with Convolutions, arXiv:1409.4842"
RESULT = "ILSVRC-2014 winner: 6.67% top-5 test error (7 models, 144 crops); 1 model, 1 crop: 10.07% top-5 val"

# Table 1: name -> (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); "pool" is a 3x3/2 max pooling
MODULES: list = [
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    "pool3",
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    "aux1",
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    "aux2",
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    "pool4",
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
]  # fmt: skip


def conv(name: str, filters: int, kernel: int, bn: bool, stride: int = 1) -> tuple[Layer, ...]:
    """A convolution and its ReLU; with `bn`, torchvision's BasicConv2d (no bias, batch norm eps 1e-3)."""
    pad = kernel // 2
    if not bn:
        return (Conv(name, filters, kernel, stride=stride, padding=pad), ReLU(f"{name}_relu"))
    return (Conv(name, filters, kernel, stride=stride, padding=pad, bias=False),
            BatchNorm(f"{name}_bn", eps=0.001), ReLU(f"{name}_relu"))  # fmt: skip


def inception(name: str, filters: tuple[int, ...], bn: bool) -> Concat:
    """One Inception module: four branches on the same input, concatenated along the channels."""
    n1, r3, n3, r5, n5, proj = filters
    five = 3 if bn else 5  # torchvision's "5x5" branch is a 3x3 convolution
    return Concat(
        name,
        (
            Block("b1", conv("conv", n1, 1, bn)),
            Block("b2", (*conv("reduce", r3, 1, bn), *conv("conv", n3, 3, bn))),
            Block("b3", (*conv("reduce", r5, 1, bn), *conv("conv", n5, five, bn))),
            Block("b4", (MaxPool("pool", 3, 1, padding=1, ceil_mode=True), *conv("proj", proj, 1, bn))),
        ),
    )


def aux_head(name: str, bn: bool) -> Aux:
    """An auxiliary classifier: 5x5/3 average pooling (torchvision: adaptive, to 4x4), 1x1 conv to 128,
    FC 1024 with ReLU, dropout 0.7, FC 1000; 0.3 of its loss in training."""
    pool = AdaptiveAvgPool("pool", 4) if bn else AvgPool("pool", 5, 3, ceil_mode=True)
    return Aux(
        name,
        (
            pool,
            *conv("conv", 128, 1, bn),
            Flatten("flatten"),
            Linear("fc1", 1024),
            ReLU("fc1_relu"),
            Dropout("drop", 0.7),
            Linear("fc2", 1000),
        ),  # fmt: skip
        weight=0.3,
    )


def googlenet_layers(bn: bool) -> tuple[Layer, ...]:
    # BVLC's LRN: local_size 5, alpha 1e-4, beta 0.75 and Caffe's k = 1; Caffe divides alpha by the
    # size, so in the paper's form (ours, see LRN) alpha is 1e-4 / 5
    lrn = dict(size=5, alpha=1e-4 / 5, beta=0.75, k=1.0)
    stem: list[Layer] = [*conv("conv1", 64, 7, bn, stride=2), MaxPool("pool1", 3, 2, ceil_mode=True)]
    if not bn:
        stem.append(LRN("norm1", **lrn))
    stem += [*conv("conv2_reduce", 64, 1, bn), *conv("conv2", 192, 3, bn)]
    if not bn:
        stem.append(LRN("norm2", **lrn))
    stem.append(MaxPool("pool2", 3, 2, ceil_mode=True))
    body: list[Layer] = []
    for item in MODULES:
        if item == "pool3":
            body.append(MaxPool("pool3", 3, 2, ceil_mode=True))
        elif item == "pool4":  # torchvision pools 2x2/2 here; both give 14 -> 7
            body.append(MaxPool("pool4", 2 if bn else 3, 2, ceil_mode=True))
        elif item in ("aux1", "aux2"):
            body.append(aux_head(item, bn))
        else:
            body.append(inception(*item, bn))
    top = AdaptiveAvgPool("avgpool", 1) if bn else AvgPool("avgpool", 7, 1, ceil_mode=True)
    head = (top, Dropout("dropout", 0.2 if bn else 0.4), Flatten("flatten"), Linear("fc", 1000))
    return (*stem, *body, *head)


@register("googlenet")
def googlenet() -> Network:
    return Network(
        "googlenet",
        (3, 224, 224),
        googlenet_layers(bn=False),
        ModelInfo(
            title="GoogLeNet, as published (Inception v1; BVLC's Caffe replica)",
            year=2014,
            paper=PAPER,
            result=RESULT,
            notes="Caffe's round-up pooling (ceil_mode); LRN as in BVLC's prototxt (k=1, alpha 1e-4/5 "
            "in the paper's form); two auxiliary "
            "classifiers (0.3 of their loss), training only.",
        ),
    )


@register("googlenet-torchvision")
def googlenet_torchvision() -> Network:
    return Network(
        "googlenet-torchvision",
        (3, 224, 224),
        googlenet_layers(bn=True),
        ModelInfo(
            title="GoogLeNet as torchvision ships it (batch norm, no LRN)",
            year=2014,
            paper=PAPER + "; torchvision",
            result="torchvision weights: 69.778 / 89.530 top-1 / top-5 accuracy (centre crop)",
            notes="Batch norm (eps 0.001) after every convolution, which has no bias. torchvision's "
            "'5x5' branch is a 3x3 convolution (its known quirk, kept for its weights).",
        ),
    )
